/**
 * `drift --fix` and `drift --rollback`: the executors of the drift actions, one small function
 * pair per kind (do, undo), each write journalled (intent with the pre-state, then done) under
 * the journal's `drift-fix` extension so the migration steps' records stay untouched.
 *
 * Safety rules: a scale set only ever gains identities (one PATCH per scale set, delta only);
 * undo removes only identities this fix added (what the scale set did not carry before it),
 * never the kubelet, add-on or hand-assigned ones.
 */
import { readFile } from 'node:fs/promises';
import type { AzureGateway } from '../azure/gateway.ts';
import { writeFileAtomic } from '../engine/atomic-file.ts';
import type { ExtensionJournal } from '../engine/journal.ts';
import type { PlannedAction } from '../engine/step.ts';
import type { KubeGateway } from '../kube/gateway.ts';
import { KINDS } from '../kube/kinds.ts';
import { nmiArgsAreManaged, waitForDaemonSetRollout } from '../steps/pod-identity.ts';
import type { DriftAction, DriftActionDetails, DriftActionKind } from './model.ts';
import { sha256, updateInventoryFile } from './update-inventory.ts';

/** The journal extension key of drift fixes. */
export const DRIFT_FIX_JOURNAL_KEY = 'drift-fix';

/** What an executor works with. */
export interface FixContext {
  kube: KubeGateway;
  azure: AzureGateway;
  journal: ExtensionJournal;
  /** Epoch ms by which waits (NMI rollout) must end. */
  deadline: number;
  signal?: AbortSignal;
  progress(message: string): void;
}

/** The pre-state every drift record carries: its kind and details (undo needs no plan), plus what the executor read. */
type PreState<K extends DriftActionKind> = { kind: K; details: DriftActionDetails[K] } & Record<string, unknown>;

interface Executor<K extends DriftActionKind> {
  /** Performs the action through `journal.runAction`; returns one summary line. */
  run(ctx: FixContext, action: PlannedAction, details: DriftActionDetails[K]): Promise<string>;
  /** Undoes what the record says the action did; returns one summary line. */
  undo(ctx: FixContext, pre: PreState<K>, result: unknown): Promise<string>;
}

const lc = (s: string) => s.toLowerCase();

const addIdentities: Executor<'vmss-add-identities'> = {
  async run(ctx, action, d) {
    const set = await ctx.azure.getScaleSet(d.resourceGroup, d.scaleSet);
    if (!set) throw new Error(`vmss ${d.scaleSet} no longer exists in ${d.resourceGroup}`);
    const before = Object.keys(set.userAssignedIdentities);
    ctx.progress(`vmss ${d.scaleSet}: adding ${d.identities.map((i) => i.name).join(', ')}`);
    const r = await ctx.journal.runAction(action, { kind: 'vmss-add-identities', details: d, before }, () =>
      ctx.azure.assignIdentities(
        d.resourceGroup,
        d.scaleSet,
        d.identities.map((i) => i.id),
      ),
    );
    return `vmss ${d.scaleSet}: ${r.added.length} identit${r.added.length === 1 ? 'y' : 'ies'} added (${r.patches} PATCH), ${before.length} kept`;
  },
  async undo(ctx, pre) {
    const d = pre.details;
    const before = new Set(((pre.before as string[] | undefined) ?? []).map(lc));
    // Only what this fix could have added: asked for, and not there before it.
    const ours = d.identities.map((i) => i.id).filter((id) => !before.has(lc(id)));
    if (!ours.length) return `vmss ${d.scaleSet}: nothing to remove`;
    const r = await ctx.azure.unassignIdentities(d.resourceGroup, d.scaleSet, ours);
    const after = await ctx.azure.getScaleSet(d.resourceGroup, d.scaleSet);
    const have = new Set(Object.keys(after?.userAssignedIdentities ?? {}).map(lc));
    const lost = [...before].filter((id) => !have.has(id));
    if (lost.length) throw new Error(`vmss ${d.scaleSet} lost identities it carried before the fix: ${lost.join(', ')}`);
    return `vmss ${d.scaleSet}: ${r.removed.length} identit${r.removed.length === 1 ? 'y' : 'ies'} removed; the ${before.size} it carried before kept`;
  },
};

function argsPatch(index: number, container: string, args: string[]): unknown[] {
  return [
    { op: 'test', path: `/spec/template/spec/containers/${index}/name`, value: container },
    { op: 'replace', path: `/spec/template/spec/containers/${index}/args`, value: args },
  ];
}

const nmiManagedArgs: Executor<'nmi-managed-args'> = {
  async run(ctx, action, d) {
    const ds = await ctx.kube.get(KINDS.DaemonSet, d.namespace, d.name);
    const c = (ds?.spec as { template?: { spec?: { containers?: { name: string; args?: string[] }[] } } } | undefined)?.template?.spec?.containers?.[d.containerIndex];
    if (!ds || c?.name !== d.container) throw new Error(`daemonset ${d.namespace}/${d.name} changed since the plan (no container ${d.container} at index ${d.containerIndex}); run drift again`);
    if (nmiArgsAreManaged(c.args ?? [])) return `daemonset ${d.namespace}/${d.name}: already managed`;
    ctx.progress(`daemonset ${d.namespace}/${d.name}: managed-mode args, rolling out`);
    await ctx.journal.runAction(action, { kind: 'nmi-managed-args', details: { ...d, argsBefore: c.args ?? [] } }, async () => {
      const r = await ctx.kube.patch(KINDS.DaemonSet, d.namespace, d.name, argsPatch(d.containerIndex, d.container, d.args), 'json');
      return { generation: r.metadata?.generation };
    });
    await waitForDaemonSetRollout(ctx.kube, d.namespace, d.name, ctx.deadline, ctx.signal);
    return `daemonset ${d.namespace}/${d.name}: managed mode rolled out`;
  },
  async undo(ctx, pre) {
    const d = pre.details;
    await ctx.kube.patch(KINDS.DaemonSet, d.namespace, d.name, argsPatch(d.containerIndex, d.container, d.argsBefore), 'json');
    await waitForDaemonSetRollout(ctx.kube, d.namespace, d.name, ctx.deadline, ctx.signal);
    return `daemonset ${d.namespace}/${d.name}: args restored`;
  },
};

const micScaleZero: Executor<'mic-scale-zero'> = {
  async run(ctx, action, d) {
    const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
    if (!dep) return `deployment ${d.namespace}/${d.name}: gone`;
    const replicas = (dep.spec as { replicas?: number } | undefined)?.replicas ?? 1;
    if (replicas === 0) return `deployment ${d.namespace}/${d.name}: already at 0`;
    await ctx.journal.runAction(action, { kind: 'mic-scale-zero', details: { ...d, replicasBefore: replicas } }, () => ctx.kube.scale(d.namespace, d.name, 0));
    return `deployment ${d.namespace}/${d.name}: ${replicas} -> 0`;
  },
  async undo(ctx, pre) {
    const d = pre.details;
    await ctx.kube.scale(d.namespace, d.name, d.replicasBefore);
    return `deployment ${d.namespace}/${d.name}: back to ${d.replicasBefore}`;
  },
};

const inventoryUpdate: Executor<'inventory-update'> = {
  async run(ctx, action, d) {
    const before = await readFile(d.path, 'utf8');
    const r = await ctx.journal.runAction(action, { kind: 'inventory-update', details: d, text: before, sha256: sha256(before) }, async () => {
      const u = await updateInventoryFile(d.path, d);
      return { sha256: sha256(u.after), added: u.added };
    });
    return `inventory ${d.path}: ${r.added.length ? r.added.join(', ') : 'nothing to add'}`;
  },
  async undo(_ctx, pre, result) {
    const d = pre.details;
    const now = await readFile(d.path, 'utf8').catch(() => undefined);
    const written = (result as { sha256?: string } | undefined)?.sha256;
    if (now === undefined) return `inventory ${d.path}: gone, not restored`;
    // The operator may have edited it since: never overwrite their work.
    if (written && sha256(now) !== written) return `inventory ${d.path}: edited since the update, left as it is (the previous text is in the journal)`;
    await writeFileAtomic(d.path, String(pre.text), { mode: 0o644 });
    return `inventory ${d.path}: restored`;
  },
};

const EXECUTORS: { [K in DriftActionKind]: Executor<K> } = {
  'vmss-add-identities': addIdentities,
  'nmi-managed-args': nmiManagedArgs,
  'mic-scale-zero': micScaleZero,
  'inventory-update': inventoryUpdate,
};

/**
 * Runs `actions` in order (scale sets first: pods need their identities before NMI stops
 * waiting for MIC), journalling each under `runId/<action id>`. Returns one line per action.
 */
export async function runDriftFixes(ctx: FixContext, actions: readonly DriftAction[], runId: string): Promise<string[]> {
  const order: DriftActionKind[] = ['vmss-add-identities', 'nmi-managed-args', 'mic-scale-zero', 'inventory-update'];
  const sortedActions = [...actions].sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind));
  await ctx.journal.log('drift-fix-start', `run ${runId}: ${sortedActions.map((a) => a.id).join(', ')}`);
  const lines: string[] = [];
  for (const a of sortedActions) {
    const { kind, details, ...planned } = a;
    const executor = EXECUTORS[kind] as Executor<typeof kind>;
    lines.push(await executor.run(ctx, { ...planned, id: `${runId}/${a.id}`, details }, details as never));
  }
  await ctx.journal.setData('lastRun', { runId, actions: sortedActions.map((a) => a.id) });
  return lines;
}

/**
 * Undoes every fix the journal records and has not undone yet, newest first, each from its
 * first pre-state; then archives the records. Returns one line per undone action.
 */
export async function rollbackDriftFixes(ctx: FixContext): Promise<string[]> {
  const records = ctx.journal.records().filter((r) => !r.rolledBack && r.preState !== undefined);
  const ids: string[] = [];
  for (const r of records) if (!ids.includes(r.actionId)) ids.push(r.actionId);
  const lines: string[] = [];
  for (const id of ids.reverse()) {
    const pre = ctx.journal.firstPreState<PreState<DriftActionKind>>(id)!;
    const done = records.filter((r) => r.actionId === id && r.status === 'done').at(-1);
    const executor = EXECUTORS[pre.kind] as Executor<DriftActionKind>;
    if (!executor) throw new Error(`journal record ${id} has an unknown drift action kind ${String(pre.kind)}`);
    ctx.progress(`undoing ${id}`);
    lines.push(await executor.undo(ctx, pre as never, done?.result));
    await ctx.journal.markRolledBack(id);
  }
  if (ids.length) await ctx.journal.archive();
  return lines;
}
