/**
 * Step 3, `nmi-managed`: switches the existing NMI DaemonSet to managed mode in place (same
 * name, same namespace, so no second NMI ever fights for the host ports), one node at a time.
 * Only the container args and the update strategy change; everything else is kept.
 */
import pLimit from 'p-limit';
import type { AzureGateway } from '../azure/gateway.ts';
import type { KubeGateway, KubeObject } from '../kube/gateway.ts';
import type { CheckResult, PlannedAction, Step, StepOutcome, StepPlan } from '../engine/step.ts';
import { inventoryFor, podIdentityFor, withScopedGateways, type Ctx } from './01-inventory.ts';
import type { InventoryDocument } from './inventory-model.ts';
import {
  POLL_MS,
  daemonSetRolloutGap,
  healthBodies,
  helmManagedValues,
  managedNmiArgs,
  podSelectorOf,
  remainingMs,
  waitForDaemonSetRollout,
  type PodIdentityWorkload,
} from './pod-identity.ts';
import { runTokenProbe } from './probe.ts';
import { KINDS } from '../kube/kinds.ts';

export const NMI_ACTION_ID = 'nmi/managed-mode';

/** The update strategy the rollout uses: one node at a time, and never two NMIs on a node (they share host ports). */
export const NMI_UPDATE_STRATEGY = { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } } as const;

/** Details of the patch action. */
export interface NmiDetails {
  namespace: string;
  name: string;
  container: string;
  containerIndex: number;
  args: string[];
  updateStrategy: unknown;
}

/** Pre-state: the container and update strategy exactly as they were. */
export interface NmiPreState {
  namespace: string;
  name: string;
  containerIndex: number;
  container: Record<string, unknown>;
  updateStrategy: unknown;
}

type Container = { name: string; args?: string[]; [k: string]: unknown };

function containerAt(ds: KubeObject, index: number): Container | undefined {
  return (ds.spec as { template?: { spec?: { containers?: Container[] } } } | undefined)?.template?.spec?.containers?.[index];
}

/** NMI's health port: `--http-probe-port`, else NMI's default 8080. */
export function nmiProbePort(args: readonly string[]): number {
  for (const [i, a] of args.entries()) {
    const m = /^--?http-probe-port(?:=(.*))?$/.exec(a);
    if (m) return Number(m[1] ?? args[i + 1]) || 8080;
  }
  return 8080;
}

/** Describes the arg change for the plan line, e.g. `+ --operation-mode=managed, + --forceNamespaced, - --host-ip=$(HOST_IP)`. */
export function describeArgChange(before: readonly string[], after: readonly string[]): string {
  const added = after.filter((a) => !before.includes(a)).map((a) => `+ ${a}`);
  const removed = before.filter((a) => !after.includes(a)).map((a) => `- ${a}`);
  return [...removed.filter((r) => /operation-mode/.test(r)), ...added, ...removed.filter((r) => !/operation-mode/.test(r))].join(', ');
}

function strategyIsWanted(s: unknown): boolean {
  const u = s as { type?: string; rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string } } | undefined;
  return u?.type === 'RollingUpdate' && String(u.rollingUpdate?.maxUnavailable ?? 1) === '1' && String(u.rollingUpdate?.maxSurge ?? 0) === '0';
}

/** Running NMI pods of the DaemonSet (one list call). */
async function nmiPods(ctx: Ctx, ds: KubeObject): Promise<KubeObject[]> {
  const pods = await ctx.kube.list(KINDS.Pod, { namespace: ds.metadata?.namespace, labelSelector: podSelectorOf(ds) });
  return pods.filter((p) => !p.metadata?.deletionTimestamp && p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet' && o.name === ds.metadata?.name));
}

/** Waits until every NMI pod of the DaemonSet answers `Active` on `/healthz`; returns the bodies seen. */
async function waitAllActive(ctx: Ctx, ds: KubeObject, port: number): Promise<{ pod: string; node?: string; body: string }[]> {
  return ctx.kube.waitFor(
    async (note) => {
      const pods = await nmiPods(ctx, ds);
      const bodies = await healthBodies(ctx.kube, pods, port);
      const bad = bodies.filter((b) => b.status !== 200 || b.body !== 'Active');
      note(bad.length ? `${bad.length}/${bodies.length} NMI pods not Active (${bad.slice(0, 3).map((b) => `${b.pod}: ${b.body || b.status}`).join('; ')})` : 'no NMI pods');
      return bodies.length > 0 && bad.length === 0 ? bodies : undefined;
    },
    { describe: `every NMI pod of ${ds.metadata?.namespace}/${ds.metadata?.name} reporting Active`, timeoutMs: Math.min(remainingMs(ctx.deadline), 120_000), intervalMs: POLL_MS },
  );
}

/** One node per pool and, for each, an identity that pool needs with a service (namespace, selector) that uses it there. */
export function probeTargets(inv: InventoryDocument, nodesByPool: Map<string, string[]>): { pool: string; node: string; namespace: string; selector: string; identity: { name: string; resourceId: string; clientId: string; principalId?: string } }[] {
  const out = [];
  for (const p of inv.pools) {
    const node = nodesByPool.get(p.name)?.[0];
    if (!node) continue;
    for (const i of inv.identities) {
      if (i.type !== 0 || !i.resourceId || !i.clientId || !(i.pools ?? []).includes(p.name)) continue;
      const svc = i.services.find((s) => (s.pools ?? []).includes(p.name) && s.selector);
      if (!svc) continue;
      out.push({ pool: p.name, node, namespace: svc.name.split('/')[0], selector: svc.selector!, identity: { name: i.name, resourceId: i.resourceId, clientId: i.clientId, ...(i.principalId ? { principalId: i.principalId } : {}) } });
      break;
    }
  }
  return out;
}

async function readyNodesByPool(ctx: Ctx): Promise<Map<string, string[]>> {
  const nodes = await ctx.kube.list(KINDS.Node);
  const out = new Map<string, string[]>();
  for (const n of nodes.sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))) {
    const l = n.metadata?.labels ?? {};
    const pool = l['kubernetes.azure.com/agentpool'] ?? l.agentpool;
    const spec = (n.spec ?? {}) as { unschedulable?: boolean };
    const ready = ((n.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
    if (!pool || !ready || spec.unschedulable) continue;
    out.set(pool, [...(out.get(pool) ?? []), n.metadata?.name ?? '']);
  }
  return out;
}

async function liveNmi(ctx: Ctx): Promise<PodIdentityWorkload> {
  const { nmi } = await podIdentityFor(ctx);
  if (!nmi) throw new Error('the NMI DaemonSet was not found; re-run the inventory step');
  return nmi;
}

const nmiManaged: Step<KubeGateway, AzureGateway> = {
  id: 'nmi-managed',
  title: 'Switch NMI to managed mode in place',

  async plan(ctx): Promise<StepPlan> {
    await inventoryFor(ctx);
    const nmi = await liveNmi(ctx);
    const args = managedNmiArgs(nmi.args, nmi.version);
    const strategy = (nmi.object.spec as { updateStrategy?: unknown } | undefined)?.updateStrategy;
    const actions: PlannedAction[] = [];
    const notes: string[] = [];
    const argsChange = JSON.stringify(args) !== JSON.stringify(nmi.args);
    const strategyChange = !strategyIsWanted(strategy);
    if (argsChange || strategyChange) {
      const parts = [];
      if (argsChange) parts.push(`args: ${describeArgChange(nmi.args, args)}`);
      if (strategyChange) parts.push('updateStrategy: RollingUpdate maxUnavailable 1');
      actions.push({
        id: NMI_ACTION_ID,
        op: '~',
        target: `daemonset ${nmi.namespace}/${nmi.name}`,
        summary: `${parts.join('; ')} (NMI ${nmi.version}, one node at a time)`,
        api: 'kube',
        writes: 1,
        details: { namespace: nmi.namespace, name: nmi.name, container: nmi.container, containerIndex: nmi.containerIndex, args, updateStrategy: NMI_UPDATE_STRATEGY } satisfies NmiDetails,
      });
    }
    if (nmi.install === 'helm') {
      notes.push(`NMI is a Helm install: keep this with \`${helmManagedValues(nmi.helmRelease)}\`; a later helm upgrade with operationMode=standard reverts NMI and brings MIC back`);
    }
    notes.push('each node has a gap of up to ~10 s while its NMI restarts (pods then reach IMDS directly)');
    return { stepId: 'nmi-managed', actions, blockers: [], notes };
  },

  async apply(ctx, plan): Promise<StepOutcome> {
    const action = plan.actions.find((a) => a.id === NMI_ACTION_ID);
    if (!action) {
      if (ctx.dryRun !== 'none') return { summary: 'NMI already in managed mode' };
      // Already patched, possibly by an attempt that stopped before its rollout finished: finish waiting for it.
      const nmi = await liveNmi(ctx);
      ctx.progress(`waiting for the NMI rollout of ${nmi.namespace}/${nmi.name} (one node at a time)`);
      const ds = await waitForDaemonSetRollout(ctx.kube, nmi.namespace, nmi.name, ctx.deadline, ctx.signal);
      const bodies = await waitAllActive(ctx, ds, nmiProbePort(nmi.args));
      return { summary: `NMI ${nmi.namespace}/${nmi.name} already in managed mode; ${bodies.length} pods Active` };
    }
    const d = action.details as NmiDetails;
    const live = await ctx.kube.get(KINDS.DaemonSet, d.namespace, d.name);
    if (!live) throw new Error(`daemonset ${d.namespace}/${d.name} disappeared; re-run the inventory step`);
    const container = containerAt(live, d.containerIndex);
    if (container?.name !== d.container) throw new Error(`daemonset ${d.namespace}/${d.name} changed: container ${d.containerIndex} is no longer ${d.container}; plan again`);
    const pre: NmiPreState = {
      namespace: d.namespace,
      name: d.name,
      containerIndex: d.containerIndex,
      container: structuredClone(container),
      updateStrategy: structuredClone((live.spec as { updateStrategy?: unknown }).updateStrategy ?? null),
    };
    const base = `/spec/template/spec/containers/${d.containerIndex}`;
    const patch = [
      { op: 'test', path: `${base}/name`, value: d.container },
      { op: 'add', path: `${base}/args`, value: d.args },
      { op: 'add', path: '/spec/updateStrategy', value: d.updateStrategy },
    ];
    ctx.progress(`patching daemonset ${d.namespace}/${d.name} to managed mode`);
    await ctx.journal.runAction(action, pre, async () => {
      const r = await ctx.kube.patch(KINDS.DaemonSet, d.namespace, d.name, patch, 'json');
      return { generation: r.metadata?.generation };
    });
    if (ctx.dryRun !== 'none') return { summary: `daemonset ${d.namespace}/${d.name} would switch to managed mode` };
    ctx.progress(`waiting for the NMI rollout (one node at a time)`);
    const ds = await waitForDaemonSetRollout(ctx.kube, d.namespace, d.name, ctx.deadline, ctx.signal);
    const bodies = await waitAllActive(ctx, ds, nmiProbePort(d.args));
    return { summary: `NMI ${d.namespace}/${d.name} in managed mode on ${bodies.length} nodes` };
  },

  async check(ctx): Promise<CheckResult> {
    const inv = await inventoryFor(ctx);
    const nmi = await liveNmi(ctx);
    const evidence: string[] = [];
    const failures: string[] = [];
    const want = managedNmiArgs(nmi.args, nmi.version);
    if (JSON.stringify(want) !== JSON.stringify(nmi.args)) failures.push(`daemonset ${nmi.namespace}/${nmi.name} args are not managed mode: ${nmi.args.join(' ')}`);
    else evidence.push(`daemonset ${nmi.namespace}/${nmi.name} args: ${nmi.args.join(' ')}`);
    const gap = daemonSetRolloutGap(nmi.object);
    if (gap) failures.push(`daemonset ${nmi.namespace}/${nmi.name} rollout not complete: ${gap}`);
    else {
      const st = nmi.object.status as { desiredNumberScheduled?: number; observedGeneration?: number };
      evidence.push(`rollout complete: generation ${st.observedGeneration} observed, ${st.desiredNumberScheduled}/${st.desiredNumberScheduled} updated and available`);
    }
    const pods = await nmiPods(ctx, nmi.object);
    const bodies = await healthBodies(ctx.kube, pods, nmiProbePort(nmi.args));
    const inactive = bodies.filter((b) => b.status !== 200 || b.body !== 'Active');
    if (!bodies.length) failures.push('no NMI pods found');
    else if (inactive.length) failures.push(...inactive.map((b) => `NMI ${b.pod} on ${b.node}: /healthz says ${JSON.stringify(b.body)} (HTTP ${b.status})`));
    else evidence.push(`${bodies.length}/${bodies.length} NMI pods report Active on /healthz`);

    const targets = probeTargets(inv, await readyNodesByPool(ctx));
    const limit = pLimit(5);
    const results = await Promise.all(
      targets.map((t) =>
        limit(async () => ({ t, r: await runTokenProbe(ctx.kube, { namespace: t.namespace, nodeName: t.node, selector: t.selector, identity: t.identity, timeoutMs: Math.min(80_000, remainingMs(ctx.deadline)), signal: ctx.signal }) })),
      ),
    );
    for (const { t, r } of results) {
      if (r.ok) evidence.push(`pool ${t.pool}: token for ${t.identity.name} on ${t.node} (${t.namespace}, aadpodidbinding=${t.selector}) — ${r.message}`);
      else failures.push(`pool ${t.pool}: token round trip for ${t.identity.name} on ${t.node} failed: ${r.message}${r.mismatches.length ? ` (${r.mismatches.join('; ')})` : ''}`);
    }
    return { ok: failures.length === 0, evidence, failures };
  },

  async rollback(ctx): Promise<StepOutcome> {
    const record = ctx.journal.records().find((r) => r.actionId === NMI_ACTION_ID && !r.rolledBack);
    const pre = ctx.journal.firstPreState<NmiPreState>(NMI_ACTION_ID);
    if (!record || !pre) return { summary: 'nothing recorded to undo' };
    const base = `/spec/template/spec/containers/${pre.containerIndex}`;
    const patch: unknown[] = [
      { op: 'test', path: `${base}/name`, value: pre.container.name },
      { op: 'replace', path: base, value: pre.container },
    ];
    patch.push(pre.updateStrategy === null ? { op: 'remove', path: '/spec/updateStrategy' } : { op: 'add', path: '/spec/updateStrategy', value: pre.updateStrategy });
    ctx.progress(`restoring daemonset ${pre.namespace}/${pre.name}`);
    await ctx.kube.patch(KINDS.DaemonSet, pre.namespace, pre.name, patch, 'json');
    const ds = await waitForDaemonSetRollout(ctx.kube, pre.namespace, pre.name, ctx.deadline, ctx.signal);
    const bodies = await waitAllActive(ctx, ds, nmiProbePort((pre.container.args as string[] | undefined) ?? []));
    await ctx.journal.markRolledBack(NMI_ACTION_ID);
    return { summary: `NMI ${pre.namespace}/${pre.name} restored; ${bodies.length} pods Active` };
  },

  async verifyRollback(ctx): Promise<CheckResult> {
    const pre = ctx.journal.firstPreState<NmiPreState>(NMI_ACTION_ID);
    if (!pre) return { ok: true, evidence: ['nothing was changed'], failures: [] };
    const ds = await ctx.kube.get(KINDS.DaemonSet, pre.namespace, pre.name);
    const failures: string[] = [];
    const evidence: string[] = [];
    if (!ds) return { ok: false, evidence, failures: [`daemonset ${pre.namespace}/${pre.name} not found`] };
    const now = containerAt(ds, pre.containerIndex);
    if (JSON.stringify(sortKeys(withoutAddedDefaults(now, pre.container))) !== JSON.stringify(sortKeys(pre.container))) failures.push(`daemonset ${pre.namespace}/${pre.name}: container differs from the original`);
    else evidence.push(`daemonset ${pre.namespace}/${pre.name}: container spec is the original (args ${((now?.args as string[]) ?? []).join(' ')})`);
    const strategy = (ds.spec as { updateStrategy?: unknown }).updateStrategy ?? null;
    if (pre.updateStrategy !== null && JSON.stringify(sortKeys(withoutAddedDefaults(strategy, pre.updateStrategy))) !== JSON.stringify(sortKeys(pre.updateStrategy))) failures.push(`daemonset ${pre.namespace}/${pre.name}: updateStrategy differs from the original`);
    const gap = daemonSetRolloutGap(ds);
    if (gap) failures.push(`rollout not complete: ${gap}`);
    const bodies = await healthBodies(ctx.kube, await nmiPods(ctx, ds), nmiProbePort((pre.container.args as string[] | undefined) ?? []));
    const inactive = bodies.filter((b) => b.body !== 'Active');
    if (inactive.length) failures.push(...inactive.map((b) => `NMI ${b.pod}: ${b.body}`));
    else evidence.push(`${bodies.length} NMI pods report Active`);
    return { ok: failures.length === 0, evidence, failures };
  },
};

/** Fields the API server fills in when a container or update strategy is written without them. */
const API_DEFAULTS: Record<string, unknown> = {
  terminationMessagePath: '/dev/termination-log',
  terminationMessagePolicy: 'File',
  imagePullPolicy: 'IfNotPresent',
  rollingUpdate: { maxUnavailable: 1, maxSurge: 0 },
};

/**
 * `now` without the API server's defaults that `original` did not spell out, so an original
 * stored before defaulting compares equal to the same spec written back through the API.
 */
export function withoutAddedDefaults(now: unknown, original: unknown): unknown {
  if (!now || typeof now !== 'object' || !original || typeof original !== 'object') return now;
  const out = { ...(now as Record<string, unknown>) };
  for (const [k, v] of Object.entries(API_DEFAULTS)) {
    if (!(k in (original as object)) && JSON.stringify(sortKeys(out[k])) === JSON.stringify(sortKeys(v))) delete out[k];
  }
  return out;
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
  return v;
}

/** Step 3 of the runbook. */
export const nmiManagedStep = withScopedGateways(nmiManaged);
export default nmiManagedStep;
