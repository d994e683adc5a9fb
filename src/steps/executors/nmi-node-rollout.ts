/**
 * `nmi-node-rollout`: restarts one node's NMI pod on the DaemonSet's current template while no
 * service pod is on that node (step `nmi-managed` with `--nmi-rollout drain`; the DaemonSet is
 * `OnDelete` meanwhile, so nothing else restarts NMI). In order: cordon the node, evict its
 * pods with the drain step's eviction code (PodDisruptionBudgets honoured, `kubectl drain`'s
 * rules), delete the node's NMI pod if it still runs the old template, wait until a *new* NMI
 * pod (another uid, the template's args, Ready) answers `Active` on `/healthz`, uncordon.
 *
 * Why the new pod's identity matters: upstream NMI keeps answering `Active` during its own
 * termination gap (it sleeps 10 s after deleting its iptables chain), so the old pod's body
 * proves nothing; only the replacement's does.
 *
 * Writes: the cordon (none when a `cordon-nodes` action of the step, `cordonedWith`, cordoned
 * it already), one eviction per pod, the NMI pod delete, the uncordon. Undo uncordons the node
 * unless it was cordoned before the rollout (the args go back with the `patch-container` action
 * that changed them).
 *
 * Deadlock fallback: while the other nodes of the pool stay cordoned, a pod evicted here may
 * have nowhere to start; if a PodDisruptionBudget then refuses the next eviction because the
 * pods it covers are Pending, waiting would only run out `--drain-timeout`. The rollout then
 * uncordons the pool's nodes still waiting for their turn (`laterInPool`), so those pods start
 * there (in standard mode, where MIC assigns them as before the migration), and each of those
 * nodes is cordoned again when its own turn comes.
 */
import { KINDS } from '../../kube/kinds.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import type { Ctx, Executor } from '../lib/context.ts';
import { isReady as nodeIsReady } from '../lib/nodes.ts';
import { cordon, isCordoned, uncordon } from '../lib/nodes.ts';
import { checkNmiHealth } from '../lib/probe.ts';
import { POLL_MS, remainingMs, sameJson } from '../lib/util.ts';
import { evictAll } from './drain-node.ts';
import { wasCordonedBefore, type CordonNodesPreState } from './cordon-nodes.ts';

/** Details of an `nmi-node-rollout` action. */
export interface NmiNodeRolloutDetails {
  pool: string;
  node: string;
  /** The NMI DaemonSet. */
  namespace: string;
  name: string;
  container: string;
  /** Also evict pods no controller re-creates (`--drain-force`). */
  force: boolean;
  /** Also evict pods with `emptyDir` volumes (`--delete-emptydir-data`). */
  deleteEmptyDirData?: boolean;
  /** The step's `cordon-nodes` action that cordoned this node ahead of its turn (its pre-state tells whether the node was cordoned before). */
  cordonedWith?: string;
  /** Nodes of the same pool whose turn comes later (cordoned meanwhile): the deadlock fallback may uncordon them. */
  laterInPool?: string[];
}

/** Pre-state: whether the node was cordoned before the first attempt. */
export interface NmiNodeRolloutPreState {
  node: string;
  wasUnschedulable: boolean;
}

/** Result: pods evicted from the node and the NMI pod that answers Active now. */
export interface NmiNodeRolloutResult {
  evicted: number;
  nmiPod: string;
  restarted: boolean;
  /** Nodes of the pool the deadlock fallback uncordoned (absent: none). */
  reopened?: string[];
}

type Container = { name: string; args?: string[] };

function containerOf(spec: unknown, name: string): Container | undefined {
  return (spec as { containers?: Container[] } | undefined)?.containers?.find((c) => c.name === name);
}

async function daemonSet(ctx: Ctx, d: NmiNodeRolloutDetails): Promise<KubeObject> {
  const ds = await ctx.kube.get(KINDS.DaemonSet, d.namespace, d.name);
  if (!ds) throw new Error(`daemonset ${d.namespace}/${d.name} disappeared during the NMI rollout`);
  return ds;
}

/** The NMI pods of the DaemonSet on the node (terminating ones included). */
async function nmiPodsOnNode(ctx: Ctx, d: NmiNodeRolloutDetails): Promise<KubeObject[]> {
  const pods = await ctx.kube.list(KINDS.Pod, { namespace: d.namespace, fieldSelector: `spec.nodeName=${d.node}` });
  return pods.filter((p) => p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet' && o.name === d.name));
}

function runsTemplate(pod: KubeObject, ds: KubeObject, container: string): boolean {
  const want = containerOf((ds.spec as { template?: { spec?: unknown } }).template?.spec, container);
  const have = containerOf(pod.spec, container);
  return Boolean(want && have && sameJson(have.args ?? [], want.args ?? []));
}

function podReady(pod: KubeObject): boolean {
  const st = pod.status as { phase?: string; conditions?: { type: string; status: string }[] } | undefined;
  return st?.phase === 'Running' && Boolean(st.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
}

/** Waits for an NMI pod on the node that runs the template, is not `oldUid`, is Ready and answers Active. */
async function waitForFreshActive(ctx: Ctx, d: NmiNodeRolloutDetails, oldUid: string | undefined): Promise<KubeObject> {
  return ctx.kube.waitFor(
    async (note) => {
      const ds = await daemonSet(ctx, d);
      const pods = await nmiPodsOnNode(ctx, d);
      const fresh = pods.find((p) => !p.metadata?.deletionTimestamp && p.metadata?.uid !== oldUid && runsTemplate(p, ds, d.container));
      if (!fresh) {
        note(pods.some((p) => p.metadata?.deletionTimestamp) ? 'old NMI pod terminating' : 'no new NMI pod yet');
        return undefined;
      }
      if (!podReady(fresh)) {
        note(`NMI pod ${fresh.metadata?.name} not Ready`);
        return undefined;
      }
      const h = await checkNmiHealth(ctx.kube, fresh).catch((e: Error) => ({ active: false, body: e.message }));
      if (!h.active) note(`NMI pod ${fresh.metadata?.name}: /healthz says ${JSON.stringify(h.body)}`);
      return h.active ? fresh : undefined;
    },
    { describe: `a new NMI pod on node ${d.node} answering Active`, timeoutMs: Math.min(remainingMs(ctx.deadline), 180_000), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

/** Whether the node was cordoned before the rollout: per the step's `cordon-nodes` pre-state when it cordoned the node, else as it is now. */
function cordonedBeforeRollout(ctx: Ctx, d: NmiNodeRolloutDetails, live: KubeObject): boolean {
  const pre = d.cordonedWith ? wasCordonedBefore(ctx.journal.firstPreState<CordonNodesPreState>(d.cordonedWith), d.node) : undefined;
  return pre ?? isCordoned(live);
}

/**
 * The deadlock fallback (see the module comment): uncordons, once, the pool's later nodes that
 * the step's `cordon-nodes` action cordoned and that are still cordoned.
 */
function deadlockFallback(ctx: Ctx, d: NmiNodeRolloutDetails, reopened: string[]) {
  let done = false;
  let lookedAt = 0;
  return async (pod: KubeObject, listPending: () => Promise<KubeObject[]>): Promise<void> => {
    if (done || !d.laterInPool?.length || !d.cordonedWith) return;
    // A budget refuses often for a moment (a replacement is starting): look at most every 10 s.
    if (Date.now() - lookedAt < 10_000) return;
    lookedAt = Date.now();
    const pending = await listPending();
    if (!pending.length) return;
    done = true;
    const pre = ctx.journal.firstPreState<CordonNodesPreState>(d.cordonedWith);
    for (const name of d.laterInPool) {
      const node = await ctx.kube.get(KINDS.Node, undefined, name);
      if (!node || !isCordoned(node) || wasCordonedBefore(pre, name) !== false) continue;
      await uncordon(ctx.kube, name);
      reopened.push(name);
    }
    if (reopened.length) {
      ctx.progress(
        `pool ${d.pool}: ${pod.metadata?.namespace}/${pod.metadata?.name} waits for its PodDisruptionBudget while ${pending.length} pod(s) it covers cannot start (${pending.map((p) => p.metadata?.name).slice(0, 3).join(', ')}): uncordoned ${reopened.join(', ')} until their turn`,
      );
    }
  };
}

/** The rest of the rollout on a cordoned node: evict, restart NMI if still old, wait, uncordon. */
async function finish(ctx: Ctx, d: NmiNodeRolloutDetails, pre: NmiNodeRolloutPreState | undefined): Promise<NmiNodeRolloutResult> {
  const reopened: string[] = [];
  const { evicted } = await evictAll(ctx, { pool: d.pool, node: d.node, force: d.force, deleteEmptyDirData: d.deleteEmptyDirData }, 'nmi-managed', deadlockFallback(ctx, d, reopened));
  const dry = ctx.dryRun !== 'none';
  const ds = await daemonSet(ctx, d);
  const pods = (await nmiPodsOnNode(ctx, d)).filter((p) => !p.metadata?.deletionTimestamp);
  const old = pods.find((p) => !runsTemplate(p, ds, d.container));
  let restarted = false;
  if (old) {
    ctx.progress(`pool ${d.pool}: restarting NMI ${old.metadata!.name} on ${d.node} (no service pod left there)`);
    await ctx.kube.delete(KINDS.Pod, d.namespace, old.metadata!.name!);
    restarted = true;
  }
  let nmiPod = old?.metadata?.name ?? pods[0]?.metadata?.name ?? '';
  if (!dry) {
    ctx.progress(`pool ${d.pool}: waiting for the new NMI on ${d.node} to answer Active`);
    nmiPod = (await waitForFreshActive(ctx, d, old?.metadata?.uid)).metadata!.name!;
  }
  const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
  if (node && isCordoned(node) && !pre?.wasUnschedulable) {
    ctx.progress(`pool ${d.pool}: uncordon ${d.node}`);
    await uncordon(ctx.kube, d.node);
  }
  return { evicted, nmiPod, restarted, ...(reopened.length ? { reopened } : {}) };
}

export const nmiNodeRollout: Executor<NmiNodeRolloutDetails, NmiNodeRolloutPreState, NmiNodeRolloutResult> = {
  kind: 'nmi-node-rollout',
  async capture(ctx, { details: d }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) throw new Error(`node ${d.node} (pool ${d.pool}) no longer exists; plan again`);
    return { node: d.node, wasUnschedulable: cordonedBeforeRollout(ctx, d, node) };
  },
  async do(ctx, { action: { details: d }, firstPreState }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) throw new Error(`node ${d.node} (pool ${d.pool}) no longer exists; plan again`);
    if (!isCordoned(node)) {
      ctx.progress(`pool ${d.pool}: cordon ${d.node} for its NMI restart`);
      await cordon(ctx.kube, d.node);
    } else ctx.progress(`pool ${d.pool}: ${d.node} (cordoned) next for its NMI restart`);
    return finish(ctx, d, firstPreState);
  },
  async reconcile(ctx, { action: { details: d }, firstPreState }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) return { applied: false, reason: `node ${d.node} no longer exists` };
    const ds = await daemonSet(ctx, d);
    const pods = (await nmiPodsOnNode(ctx, d)).filter((p) => !p.metadata?.deletionTimestamp);
    const current = pods.find((p) => runsTemplate(p, ds, d.container));
    if (isCordoned(node) && !firstPreState?.wasUnschedulable) {
      // Cordoned by the interrupted run: finish what it was doing (each part is idempotent).
      return { applied: true, result: await finish(ctx, d, firstPreState) };
    }
    if (current && nodeIsReady(node)) {
      const h = await checkNmiHealth(ctx.kube, current).catch(() => ({ active: false, body: '' }));
      if (h.active) return { applied: true, result: { evicted: 0, nmiPod: current.metadata!.name!, restarted: true } };
    }
    return { applied: false, reason: `node ${d.node} is not cordoned and its NMI does not run the new template yet` };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) return `node ${d.node}: gone, nothing to uncordon`;
    if (!isCordoned(node) || pre?.wasUnschedulable) return `node ${d.node}: ${isCordoned(node) ? 'left cordoned as before' : 'schedulable'}`;
    ctx.progress(`uncordon ${d.node}`);
    await uncordon(ctx.kube, d.node);
    return `uncordoned ${d.node}`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    if (!node) return { ok: true, evidence: [`node ${d.node} no longer exists`], failures: [] };
    if (isCordoned(node) && !pre?.wasUnschedulable) return { ok: false, evidence: [], failures: [`node ${d.node} is still cordoned`] };
    return { ok: true, evidence: [`node ${d.node} ${isCordoned(node) ? 'cordoned as before' : 'schedulable'}`], failures: [] };
  },
};
