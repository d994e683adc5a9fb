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
import { CheckFailedError } from '../engine/errors.ts';
import type { ExtensionJournal } from '../engine/journal.ts';
import type { PlannedAction } from '../engine/step.ts';
import type { KubeGateway } from '../kube/gateway.ts';
import { KINDS } from '../kube/kinds.ts';
import { nmiArgsAreManaged, waitForDaemonSetRollout } from '../steps/lib/pod-identity.ts';
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

/** The pre-state every drift record carries: its kind and details (undo needs no plan), plus what `capture` read. */
type PreState<K extends DriftActionKind> = { kind: K; details: DriftActionDetails[K] } & Record<string, unknown>;

/** What a verification found (like a step's check). */
interface Verification {
  ok: boolean;
  evidence: string[];
  failures: string[];
}

/**
 * One action kind, in the shape of a shared executor: `capture` reads the pre-state (or says why
 * there is nothing to do), `do` makes the change, `undo` reverses it from the recorded pre-state
 * and result, `verifyUndo` proves the pre-state is back.
 */
interface Executor<K extends DriftActionKind> {
  capture(ctx: FixContext, details: DriftActionDetails[K]): Promise<PreState<K> | { skip: string }>;
  do(ctx: FixContext, pre: PreState<K>): Promise<{ result: unknown; line: string }>;
  undo(ctx: FixContext, pre: PreState<K>, result: unknown): Promise<string>;
  verifyUndo(ctx: FixContext, pre: PreState<K>, result: unknown): Promise<Verification>;
}

const lc = (s: string) => s.toLowerCase();
const verified = (failures: string[], evidence: string): Verification => ({ ok: failures.length === 0, evidence: failures.length ? [] : [evidence], failures });

/** Identities a `vmss-add-identities` record may have added: asked for, and not on the scale set before. */
function addedByFix(pre: PreState<'vmss-add-identities'>): string[] {
  const before = new Set(((pre.before as string[] | undefined) ?? []).map(lc));
  return pre.details.identities.map((i) => i.id).filter((id) => !before.has(lc(id)));
}

const addIdentities: Executor<'vmss-add-identities'> = {
  async capture(ctx, d) {
    const set = await ctx.azure.getScaleSet(d.resourceGroup, d.scaleSet);
    if (!set) throw new Error(`vmss ${d.scaleSet} no longer exists in ${d.resourceGroup}; run drift again`);
    return { kind: 'vmss-add-identities', details: d, before: Object.keys(set.userAssignedIdentities) };
  },
  async do(ctx, pre) {
    const d = pre.details;
    ctx.progress(`vmss ${d.scaleSet}: adding ${d.identities.map((i) => i.name).join(', ')}`);
    const r = await ctx.azure.assignIdentities(d.resourceGroup, d.scaleSet, d.identities.map((i) => i.id));
    const kept = (pre.before as string[]).length;
    return { result: r, line: `vmss ${d.scaleSet}: ${r.added.length} identit${r.added.length === 1 ? 'y' : 'ies'} added (${r.patches} PATCH), ${kept} kept` };
  },
  async undo(ctx, pre) {
    const d = pre.details;
    const ours = addedByFix(pre);
    if (!ours.length) return `vmss ${d.scaleSet}: nothing to remove`;
    const r = await ctx.azure.unassignIdentities(d.resourceGroup, d.scaleSet, ours);
    return `vmss ${d.scaleSet}: ${r.removed.length} identit${r.removed.length === 1 ? 'y' : 'ies'} removed; the ${(pre.before as string[]).length} it carried before kept`;
  },
  async verifyUndo(ctx, pre) {
    const d = pre.details;
    const set = await ctx.azure.getScaleSet(d.resourceGroup, d.scaleSet);
    const have = new Set(Object.keys(set?.userAssignedIdentities ?? {}).map(lc));
    const before = (pre.before as string[]) ?? [];
    const lost = before.filter((id) => !have.has(lc(id)));
    // Removed by the undo, but a running writer (MIC, once its replicas are back) may assign it again: evidence, not a failure.
    const back = addedByFix(pre).filter((id) => have.has(lc(id)));
    return {
      ok: lost.length === 0,
      evidence: lost.length ? [] : [`vmss ${d.scaleSet}: the ${before.length} identities it carried before${back.length ? `; assigned again since (by MIC?): ${back.map((id) => id.split('/').pop()).join(', ')}` : ', none the fix added'}`],
      failures: lost.map((id) => `vmss ${d.scaleSet} lost ${id}, which it carried before the fix`),
    };
  },
};

function argsPatch(index: number, container: string, args: string[]): unknown[] {
  return [
    { op: 'test', path: `/spec/template/spec/containers/${index}/name`, value: container },
    { op: 'replace', path: `/spec/template/spec/containers/${index}/args`, value: args },
  ];
}

type NmiContainer = { name: string; args?: string[] };
async function nmiContainer(ctx: FixContext, d: DriftActionDetails['nmi-managed-args']): Promise<NmiContainer | undefined> {
  const ds = await ctx.kube.get(KINDS.DaemonSet, d.namespace, d.name);
  return (ds?.spec as { template?: { spec?: { containers?: NmiContainer[] } } } | undefined)?.template?.spec?.containers?.[d.containerIndex];
}

const nmiManagedArgs: Executor<'nmi-managed-args'> = {
  async capture(ctx, d) {
    const c = await nmiContainer(ctx, d);
    if (c?.name !== d.container) throw new Error(`daemonset ${d.namespace}/${d.name} changed since the plan (no container ${d.container} at index ${d.containerIndex}); run drift again`);
    if (nmiArgsAreManaged(c.args ?? [])) return { skip: `daemonset ${d.namespace}/${d.name}: already managed` };
    return { kind: 'nmi-managed-args', details: { ...d, argsBefore: c.args ?? [] } };
  },
  async do(ctx, pre) {
    const d = pre.details;
    ctx.progress(`daemonset ${d.namespace}/${d.name}: managed-mode args, rolling out`);
    const r = await ctx.kube.patch(KINDS.DaemonSet, d.namespace, d.name, argsPatch(d.containerIndex, d.container, d.args), 'json');
    await waitForDaemonSetRollout(ctx.kube, d.namespace, d.name, ctx.deadline, ctx.signal);
    return { result: { generation: r.metadata?.generation }, line: `daemonset ${d.namespace}/${d.name}: managed mode rolled out` };
  },
  async undo(ctx, pre) {
    const d = pre.details;
    await ctx.kube.patch(KINDS.DaemonSet, d.namespace, d.name, argsPatch(d.containerIndex, d.container, d.argsBefore), 'json');
    await waitForDaemonSetRollout(ctx.kube, d.namespace, d.name, ctx.deadline, ctx.signal);
    return `daemonset ${d.namespace}/${d.name}: args restored`;
  },
  async verifyUndo(ctx, pre) {
    const d = pre.details;
    const c = await nmiContainer(ctx, d);
    return verified(JSON.stringify(c?.args ?? []) === JSON.stringify(d.argsBefore) ? [] : [`daemonset ${d.namespace}/${d.name} args are ${JSON.stringify(c?.args)}, not ${JSON.stringify(d.argsBefore)}`], `daemonset ${d.namespace}/${d.name}: args as before the fix`);
  },
};

async function replicasOf(ctx: FixContext, d: DriftActionDetails['mic-scale-zero']): Promise<number | undefined> {
  const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
  return dep ? ((dep.spec as { replicas?: number } | undefined)?.replicas ?? 1) : undefined;
}

const micScaleZero: Executor<'mic-scale-zero'> = {
  async capture(ctx, d) {
    const replicas = await replicasOf(ctx, d);
    if (replicas === undefined) return { skip: `deployment ${d.namespace}/${d.name}: gone` };
    if (replicas === 0) return { skip: `deployment ${d.namespace}/${d.name}: already at 0` };
    return { kind: 'mic-scale-zero', details: { ...d, replicasBefore: replicas } };
  },
  async do(ctx, pre) {
    const d = pre.details;
    const r = await ctx.kube.scale(d.namespace, d.name, 0);
    return { result: r, line: `deployment ${d.namespace}/${d.name}: ${d.replicasBefore} -> 0` };
  },
  async undo(ctx, pre) {
    const d = pre.details;
    await ctx.kube.scale(d.namespace, d.name, d.replicasBefore);
    return `deployment ${d.namespace}/${d.name}: back to ${d.replicasBefore}`;
  },
  async verifyUndo(ctx, pre) {
    const d = pre.details;
    const replicas = await replicasOf(ctx, d);
    return verified(replicas === d.replicasBefore ? [] : [`deployment ${d.namespace}/${d.name} has ${replicas ?? 'no'} replicas, not ${d.replicasBefore}`], `deployment ${d.namespace}/${d.name}: ${d.replicasBefore} replicas`);
  },
};

const inventoryUpdate: Executor<'inventory-update'> = {
  async capture(_ctx, d) {
    const text = await readFile(d.path, 'utf8');
    return { kind: 'inventory-update', details: d, text, sha256: sha256(text) };
  },
  async do(_ctx, pre) {
    const d = pre.details;
    const u = await updateInventoryFile(d.path, d);
    return { result: { sha256: sha256(u.after), added: u.added }, line: `inventory ${d.path}: ${u.added.length ? u.added.join(', ') : 'nothing to add'}` };
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
  async verifyUndo(_ctx, pre, result) {
    const d = pre.details;
    const now = await readFile(d.path, 'utf8').catch(() => undefined);
    const sum = now === undefined ? undefined : sha256(now);
    const written = (result as { sha256?: string } | undefined)?.sha256;
    if (sum === pre.sha256) return verified([], `inventory ${d.path}: as before the update`);
    return verified([], `inventory ${d.path}: ${sum === written ? 'still the updated text' : 'edited by the operator since'}; left as it is`);
  },
};

const EXECUTORS: { [K in DriftActionKind]: Executor<K> } = {
  'vmss-add-identities': addIdentities,
  'nmi-managed-args': nmiManagedArgs,
  'mic-scale-zero': micScaleZero,
  'inventory-update': inventoryUpdate,
};

function isSkip(x: object): x is { skip: string } {
  return !('kind' in x) && typeof (x as { skip?: unknown }).skip === 'string';
}

/** capture, then `do` inside the journal's intent/done pair. */
async function runOne<K extends DriftActionKind>(ctx: FixContext, executor: Executor<K>, action: PlannedAction, details: DriftActionDetails[K]): Promise<string> {
  const captured = await executor.capture(ctx, details);
  if (isSkip(captured)) return captured.skip;
  const pre = captured;
  // The journal keeps what `do` returned (the result undo needs, and the summary line).
  const out = await ctx.journal.runAction(action, pre, () => executor.do(ctx, pre));
  return out.line;
}

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
    lines.push(await runOne(ctx, EXECUTORS[kind] as Executor<DriftActionKind>, { ...planned, kind, id: `${runId}/${a.id}`, details }, details as never));
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
  const failures: string[] = [];
  for (const id of ids.reverse()) {
    const pre = ctx.journal.firstPreState<PreState<DriftActionKind>>(id)!;
    const done = records.filter((r) => r.actionId === id && r.status === 'done').at(-1);
    const executor = EXECUTORS[pre.kind] as Executor<DriftActionKind>;
    if (!executor) throw new Error(`journal record ${id} has an unknown drift action kind ${String(pre.kind)}`);
    ctx.progress(`undoing ${id}`);
    const result = (done?.result as { result?: unknown } | undefined)?.result;
    lines.push(await executor.undo(ctx, pre as never, result));
    const v = await executor.verifyUndo(ctx, pre as never, result);
    if (!v.ok) failures.push(...v.failures);
    lines.push(...v.evidence.map((e) => `  verified: ${e}`));
    await ctx.journal.markRolledBack(id);
  }
  if (failures.length) {
    throw new CheckFailedError(`drift rollback did not restore everything: ${failures.join('; ')}.`, 'The journal keeps the pre-states (podid-migrate history); restore what is listed by hand, e.g. az vmss identity assign.', DRIFT_FIX_JOURNAL_KEY, failures);
  }
  if (ids.length) await ctx.journal.archive();
  return lines;
}
