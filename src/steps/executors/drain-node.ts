/**
 * `drain-node`: cordons the node and evicts its pods with `kubectl drain`'s semantics:
 * DaemonSet and mirror pods are skipped, pods without a controller are refused unless `force`,
 * a PodDisruptionBudget refusal (429) is retried every 5 s until the drain timeout
 * (`drainTimeoutMs`, default 5 min) runs out, each pod's grace period is kept, and every evicted
 * pod is awaited until it is gone. Writes: the cordon, one eviction per pod. Undo uncordons the
 * node unless it was cordoned before the first attempt.
 */
import { StepFailedError } from '../../engine/errors.ts';
import { formatDuration } from '../../engine/durations.ts';
import type { KubeGateway, KubeObject } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import type { Ctx, Executor } from '../lib/context.ts';
import { podVerdict } from '../lib/drain-rules.ts';
import { drainTimeoutOf, retryIntervalOf, type DrainPreState, type DrainResult, type WorkloadRef } from '../lib/drain.ts';
import { controllerOf, cordon, isCordoned, uncordon } from '../lib/nodes.ts';
import { POLL_MS, sleep } from '../lib/util.ts';

/** Details of a `drain-node` action (fingerprinted: only stable values). */
export interface DrainNodeDetails {
  pool: string;
  node: string;
  force: boolean;
  /** `--delete-emptydir-data` (absent: false; older journals have no such field). */
  deleteEmptyDirData?: boolean;
}

/**
 * Evicts every evictable pod on the node in parallel, as `kubectl drain` does, and waits until
 * each is gone. A PodDisruptionBudget refusal is retried every {@link EVICTION_RETRY_MS} until the
 * drain timeout; then the step fails with a message naming the budget.
 */
/**
 * Called when a PodDisruptionBudget refuses an eviction: `pending()` lists the pods that budget
 * covers that are Pending with no node (they cannot start, so the budget will not allow the
 * eviction by itself), and the caller may make room for them. The hook decides whether to look
 * (the list costs two reads); it resolves once it has done what it can, and the eviction is
 * retried as usual.
 */
export type BudgetDeadlockHook = (pod: KubeObject, pending: () => Promise<KubeObject[]>) => Promise<void>;

export async function evictAll(ctx: Ctx, d: { pool: string; node: string; force: boolean; deleteEmptyDirData?: boolean }, stepId: 'drain' | 'nmi-managed' = 'drain', onBudgetDeadlock?: BudgetDeadlockHook): Promise<DrainResult> {
  const kube = ctx.kube;
  const timeoutMs = drainTimeoutOf(ctx.options);
  const giveUpAt = Date.now() + timeoutMs;
  const dry = ctx.dryRun !== 'none';
  const workloads = new Map<string, WorkloadRef>();
  let evicted = 0;
  // Pods can still arrive between the list and the cordon taking effect: list again until none are left.
  for (let round = 0; ; round++) {
    const all = await kube.list(KINDS.Pod, { fieldSelector: `spec.nodeName=${d.node}` });
    // kubectl drain's filter chain (drain-rules.ts), the same verdicts `plan` showed.
    const rules = { force: d.force, deleteEmptyDirData: d.deleteEmptyDirData === true };
    const verdicts = all.map((p) => ({ p, v: podVerdict(p, rules) }));
    const onNode = verdicts.filter(({ v }) => v.action === 'evict' || v.action === 'delete' || (v.action === 'wait' && v.rule === 'terminating')).map(({ p }) => p);
    const refused = verdicts.filter(({ v }) => v.action === 'block');
    if (refused.length) {
      const flags = [...new Set(refused.flatMap(({ v }) => v.flags ?? (v.flag ? [v.flag] : [])))].sort();
      throw new StepFailedError(
        `step "${stepId}" stopped: node ${d.node} runs pods a drain would lose: ${refused.map(({ v }) => `${v.pod} (${v.reason})`).join(', ')}.`,
        `The node is cordoned. Options:\n  podid-migrate rollback --step ${stepId}      # uncordon and stop here\n  move or delete those pods${flags.length ? ` (or allow it: ${flags.join(' ')})` : ''}, then: podid-migrate apply --step ${stepId}`,
        stepId,
      );
    }
    if (onNode.length === 0 || (dry && round > 0)) break;
    if (round > 20) throw new Error(`pods keep arriving on cordoned node ${d.node}; is something pinning pods to it by nodeName?`);
    ctx.progress(`pool ${d.pool}: evicting ${onNode.length} pod${onNode.length === 1 ? '' : 's'} from ${d.node}`);
    let remaining = onNode.length;
    await Promise.all(
      onNode.map(async (pod) => {
        await evictOne(ctx, pod, giveUpAt, timeoutMs, d, stepId, onBudgetDeadlock);
        const ref = await topWorkload(kube, pod);
        if (ref) workloads.set(`${ref.kind}/${ref.namespace}/${ref.name}`, ref);
        evicted++;
        remaining--;
        ctx.progress(`pool ${d.pool}: evicting from ${d.node}, ${remaining} left`);
      }),
    );
    if (dry) break;
  }
  return { evicted, workloads: [...workloads.values()].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`)) };
}

async function evictOne(ctx: Ctx, pod: KubeObject, giveUpAt: number, timeoutMs: number, d: { pool: string; node: string }, stepId: 'drain' | 'nmi-managed', onBudgetDeadlock?: BudgetDeadlockHook): Promise<void> {
  const kube = ctx.kube;
  const ns = pod.metadata!.namespace!;
  const name = pod.metadata!.name!;
  const uid = pod.metadata?.uid;
  const grace = (pod.spec as { terminationGracePeriodSeconds?: number } | undefined)?.terminationGracePeriodSeconds ?? 30;
  let lastRefusal: { message: string; budgets: string[] } | undefined;
  if (!pod.metadata?.deletionTimestamp) {
    for (;;) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const r = await kube.evict(ns, name);
      if (r.kind === 'evicted') {
        if (r.dryRun) return;
        break;
      }
      if (r.kind === 'not-found') return;
      lastRefusal = r;
      if (onBudgetDeadlock) await onBudgetDeadlock(pod, () => pendingUnderBudget(ctx, pod));
      // Like kubectl: keep retrying until the timeout itself has passed, with a last attempt at it.
      if (Date.now() >= giveUpAt) throw await pdbTimeout(ctx, pod, lastRefusal, timeoutMs, d, stepId);
      const retryMs = Math.min(retryIntervalOf(ctx.options), giveUpAt - Date.now());
      // A budget exhausted for now (a pod is starting): wait in sight, up to --drain-timeout.
      ctx.progress(`pool ${d.pool}: ${ns}/${name} waits for ${r.budgets.length ? r.budgets.join('; ') : 'its PodDisruptionBudget'}; ${formatDuration(Math.max(0, giveUpAt - Date.now()))} left of --drain-timeout ${formatDuration(timeoutMs)}`);
      ctx.log.debug(`pod ${ns}/${name}: ${r.message}; retrying in ${(retryMs / 1000).toFixed(1)} s`);
      await sleep(retryMs, ctx.signal);
    }
  }
  // Gone means: no pod of that name, or one with another uid (a StatefulSet recreates the name).
  await kube.waitFor(
    async (note) => {
      const now = await kube.get(KINDS.Pod, ns, name);
      if (!now || (uid && now.metadata?.uid !== uid)) return true;
      note(now.metadata?.deletionTimestamp ? 'terminating' : 'still running');
      return false;
    },
    { describe: `pod ${ns}/${name} to terminate after its eviction`, timeoutMs: Math.max(giveUpAt - Date.now(), 0) + (grace + 30) * 1000, intervalMs: POLL_MS, signal: ctx.signal },
  );
}

/** The UX message of a drain that ran out of time against a PodDisruptionBudget. */
async function pdbTimeout(ctx: Ctx, pod: KubeObject, refusal: { message: string; budgets: string[] }, timeoutMs: number, d: { pool: string; node: string }, stepId: 'drain' | 'nmi-managed'): Promise<StepFailedError> {
  const ns = pod.metadata!.namespace!;
  const names = refusal.budgets.map((b) => /disruption budget (\S+)/i.exec(b)?.[1]).filter((x): x is string => Boolean(x));
  if (!names.length) {
    // The API server did not name it: find the budgets whose selector matches the pod.
    const pdbs = await ctx.kube.list(KINDS.PodDisruptionBudget, { namespace: ns }).catch(() => []);
    for (const pdb of pdbs) if (selects(pdb, pod)) names.push(pdb.metadata!.name!);
  }
  const budgetText = names.length ? names.map((n) => `PodDisruptionBudget ${ns}/${n}`).join(', ') : 'a PodDisruptionBudget';
  const why = refusal.budgets.length ? refusal.budgets.join('; ') : refusal.message;
  const longerMinutes = Math.ceil(Math.max(timeoutMs * 3, 15 * 60_000) / 60_000);
  return new StepFailedError(
    `step "${stepId}" stopped: pod ${ns}/${pod.metadata!.name} cannot be evicted.\n  ${budgetText}: ${why}; eviction retried for ${formatDuration(timeoutMs)}.`,
    `The node ${d.node} (pool ${d.pool}) is still cordoned. Options:\n  podid-migrate rollback --step ${stepId}      # uncordon and stop here\n  podid-migrate apply --step ${stepId} --drain-timeout ${longerMinutes}m`,
    stepId,
  );
}

/** Pods covered by a budget that covers `pod`, still Pending with no node (none, or no budget covers it). */
async function pendingUnderBudget(ctx: Ctx, pod: KubeObject): Promise<KubeObject[]> {
  const ns = pod.metadata!.namespace!;
  const pdbs = (await ctx.kube.list(KINDS.PodDisruptionBudget, { namespace: ns }).catch(() => [])).filter((b) => selects(b, pod));
  if (!pdbs.length) return [];
  const pods = await ctx.kube.list(KINDS.Pod, { namespace: ns });
  return pods.filter((p) => !p.metadata?.deletionTimestamp && !(p.spec as { nodeName?: string } | undefined)?.nodeName && (p.status as { phase?: string } | undefined)?.phase === 'Pending' && pdbs.some((b) => selects(b, p)));
}

function selects(pdb: KubeObject, pod: KubeObject): boolean {
  const sel = (pdb.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector?.matchLabels;
  if (!sel) return false;
  const labels = pod.metadata?.labels ?? {};
  return Object.entries(sel).every(([k, v]) => labels[k] === v);
}

/** The Deployment / StatefulSet / ReplicaSet a pod belongs to (Job pods: none). */
async function topWorkload(kube: KubeGateway, pod: KubeObject): Promise<WorkloadRef | undefined> {
  const ctl = controllerOf(pod);
  const ns = pod.metadata!.namespace!;
  if (!ctl) return undefined;
  if (ctl.kind === 'StatefulSet') return { kind: 'StatefulSet', namespace: ns, name: ctl.name };
  if (ctl.kind !== 'ReplicaSet') return undefined;
  const rs = await kube.get(KINDS.ReplicaSet, ns, ctl.name).catch(() => undefined);
  const owner = rs ? controllerOf(rs) : undefined;
  if (owner?.kind === 'Deployment') return { kind: 'Deployment', namespace: ns, name: owner.name };
  // The ReplicaSet is gone (a rollout replaced it): derive the Deployment from the name hash.
  const m = /^(.*)-[a-z0-9]{5,10}$/.exec(ctl.name);
  if (!rs && m) return { kind: 'Deployment', namespace: ns, name: m[1] };
  return { kind: 'ReplicaSet', namespace: ns, name: ctl.name };
}

export const drainNode: Executor<DrainNodeDetails, DrainPreState, DrainResult> = {
  kind: 'drain-node',
  async capture(ctx, { details: d }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) throw new Error(`node ${d.node} (pool ${d.pool}) no longer exists`);
    // Only the first attempt's pre-state is kept: a resumed drain sees the node cordoned by itself.
    return { pool: d.pool, node: d.node, wasUnschedulable: isCordoned(node) };
  },
  async do(ctx, { action: { details: d } }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) throw new Error(`node ${d.node} (pool ${d.pool}) no longer exists`);
    ctx.progress(`pool ${d.pool}: cordon node ${d.node}`);
    if (!isCordoned(node)) await cordon(ctx.kube, d.node);
    return evictAll(ctx, d);
  },
  async reconcile(ctx, { action: { details: d } }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) return { applied: false, reason: `node ${d.node} no longer exists` };
    if (!isCordoned(node)) return { applied: false, reason: `node ${d.node} is not cordoned` };
    // Cordoned: finish the evictions the interrupted run was making (evicting is idempotent).
    return { applied: true, result: await evictAll(ctx, d) };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) return `node ${d.node}: gone, nothing to uncordon`;
    if (!isCordoned(node) || pre?.wasUnschedulable) return `node ${d.node}: ${isCordoned(node) ? 'left cordoned as before' : 'already schedulable'}`;
    ctx.progress(`uncordon ${d.node}`);
    await uncordon(ctx.kube, d.node);
    return `uncordoned ${d.node}`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) return { ok: true, evidence: [`node ${d.node} no longer exists (replaced by the drain)`], failures: [] };
    if (isCordoned(node) && !pre?.wasUnschedulable) return { ok: false, evidence: [], failures: [`node ${d.node} is still cordoned`] };
    return { ok: true, evidence: [`node ${d.node} ${isCordoned(node) ? 'cordoned as before' : 'schedulable'}`], failures: [] };
  },
};
