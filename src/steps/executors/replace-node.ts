/**
 * `replace-node`: makes a drained node fresh, so a node MIC never touched proves the VMSS
 * assignment alone carries each identity.
 * - `reimage`: reimages the node's VMSS instance, waits for it to come back Ready with a new boot
 *   id, uncordons it. Writes: the reimage (ARM) and the uncordon (Kubernetes).
 * - `delete`: deletes the instance and waits for the cluster autoscaler to bring a new node into
 *   the pool (the tool never resizes an AKS-managed scale set itself). Writes: the delete (ARM).
 * - `none`: uncordons the same node. Writes: the uncordon.
 * Then it waits for NMI on the fresh node to answer `Active` and for the workloads the pool's
 * drain evicted to be back at their replica counts. A replaced node cannot be un-replaced: undo
 * changes nothing and says so.
 */
import { KINDS } from '../../kube/kinds.ts';
import type { Ctx, Executor } from '../lib/context.ts';
import { workloadGap, type DrainResult, type DrainStrategy, type ReplaceResult } from '../lib/drain.ts';
import { nmiRefOf } from '../lib/inventory-source.ts';
import { bootIdOf, isCordoned, isReady, poolOf, uncordon, type VmssRef } from '../lib/nodes.ts';
import { checkNmiHealth, findNmiPod } from '../lib/probe.ts';
import { POLL_MS, remainingMs } from '../lib/util.ts';

/** Details of a `replace-node` action. */
export interface ReplaceNodeDetails {
  pool: string;
  node: string;
  strategy: DrainStrategy;
  vmss?: VmssRef;
  /** The drain action whose evicted workloads are awaited afterwards. */
  drainActionId: string;
}

/** What the replace action records before it reimages or deletes. */
export interface ReplacePreState {
  pool: string;
  node: string;
  strategy: DrainStrategy;
  bootId?: string;
  vmss?: VmssRef;
  /** Nodes of the pool before a delete: the new node is the one not among them. */
  poolNodes?: string[];
}

/**
 * After a crash between sending a reimage and recording it: whether that reimage was sent.
 * The instance is read before the node, so a reimage that finishes between the two reads still
 * shows on the node (rebooting, or a new boot id) instead of looking as if it never started;
 * a node that was Ready when drained and is NotReady now is taken to be rebooting from it (if
 * it comes back with its old boot id, the wait fails and the next run reimages it then).
 * Never true for a reimage that was not sent, so a resumed drain never reimages twice.
 */
async function reimageAlreadySent(ctx: Ctx, d: ReplaceNodeDetails, first: ReplacePreState): Promise<boolean> {
  const instances = await ctx.azure.listInstances(d.vmss!.resourceGroup, d.vmss!.name);
  const inst = instances.find((i) => i.instanceId === d.vmss!.instanceId);
  if (inst?.provisioningState === 'Updating') return true;
  const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
  if (!node) return false;
  if (first.bootId && bootIdOf(node) && bootIdOf(node) !== first.bootId) return true;
  return !isReady(node);
}

/** NMI comes back on a rejoined node as a new DaemonSet pod; the node is only useful once it intercepts IMDS. */
async function waitForNmiActive(ctx: Ctx, pool: string, node: string): Promise<void> {
  const nmi = nmiRefOf(ctx);
  ctx.progress(`pool ${pool}: waiting for NMI on ${node} to report Active`);
  await ctx.kube.waitFor(
    async (note) => {
      const pod = await findNmiPod(ctx.kube, nmi, node);
      if (!pod) {
        note('no NMI pod yet');
        return false;
      }
      const h = await checkNmiHealth(ctx.kube, pod).catch((e: Error) => ({ active: false, body: e.message }));
      note(`NMI ${pod.metadata!.name}: ${h.body || 'no answer'}`);
      return h.active;
    },
    { describe: `NMI on node ${node} to report Active`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

async function waitForWorkloads(ctx: Ctx, d: ReplaceNodeDetails): Promise<void> {
  const rec = ctx.journal.records().filter((r) => r.actionId === d.drainActionId && r.status === 'done' && !r.rolledBack).at(-1);
  const workloads = (rec?.result as DrainResult | undefined)?.workloads ?? [];
  if (!workloads.length) return;
  ctx.progress(`pool ${d.pool}: waiting for ${workloads.length} evicted workload(s) to be back at their replica counts`);
  await ctx.kube.waitFor(
    async (note) => {
      const gaps = (await Promise.all(workloads.map((w) => workloadGap(ctx.kube, w)))).filter(Boolean);
      if (gaps.length) note(gaps.join(', '));
      return gaps.length === 0;
    },
    { describe: `evicted workloads of pool ${d.pool} back at their replica counts`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

/** After the reimage was sent: the node back Ready with a new boot id, NMI Active, then uncordoned, workloads back. */
async function finishReimage(ctx: Ctx, d: ReplaceNodeDetails, first: ReplacePreState): Promise<ReplaceResult> {
  const kube = ctx.kube;
  ctx.progress(`pool ${d.pool}: waiting for ${d.node} to rejoin Ready`);
  await kube.waitFor(
    async (note) => {
      const n = await kube.get(KINDS.Node, undefined, d.node);
      if (!n) throw new Error(`node ${d.node} disappeared while it was being reimaged`);
      const rebooted = !first.bootId || bootIdOf(n) !== first.bootId;
      note(`${isReady(n) ? 'Ready' : 'NotReady'}, ${rebooted ? 'new' : 'same'} boot id`);
      return isReady(n) && rebooted;
    },
    { describe: `node ${d.node} to come back Ready after its reimage`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS, signal: ctx.signal },
  );
  // NMI first, then the uncordon: a pod scheduled on the node before its NMI intercepts IMDS
  // would reach IMDS directly (400 with several identities on the scale set).
  await waitForNmiActive(ctx, d.pool, d.node);
  const node = await kube.get(KINDS.Node, undefined, d.node);
  if (!node || isCordoned(node)) {
    ctx.progress(`pool ${d.pool}: uncordon ${d.node}`);
    await uncordon(kube, d.node);
  }
  await waitForWorkloads(ctx, d);
  return { fresh: d.node };
}

/** After the delete was sent: a new Ready node in the pool, NMI Active on it, workloads back. */
async function finishDelete(ctx: Ctx, d: ReplaceNodeDetails, first: ReplacePreState): Promise<ReplaceResult> {
  const before = new Set(first.poolNodes ?? []);
  ctx.progress(`pool ${d.pool}: waiting for the cluster autoscaler to add a node`);
  const fresh = await ctx.kube.waitFor(
    async (note) => {
      const all = (await ctx.kube.list(KINDS.Node)).filter((n) => poolOf(n) === d.pool);
      const added = all.filter((n) => !before.has(n.metadata!.name!) && isReady(n) && !isCordoned(n));
      note(`${all.length} node(s) in pool, ${added.length} new and Ready`);
      return added.sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!))[0]?.metadata?.name;
    },
    { describe: `a new Ready node in pool ${d.pool} after deleting ${d.node} (is the cluster autoscaler enabled on the pool? otherwise: az aks nodepool scale --name ${d.pool} ...)`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS, signal: ctx.signal },
  );
  await waitForNmiActive(ctx, d.pool, fresh);
  await waitForWorkloads(ctx, d);
  return { fresh };
}

export const replaceNode: Executor<ReplaceNodeDetails, ReplacePreState, ReplaceResult> = {
  kind: 'replace-node',
  async capture(ctx, { details: d }) {
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    const poolNodes = (await ctx.kube.list(KINDS.Node)).filter((n) => poolOf(n) === d.pool).map((n) => n.metadata!.name!).sort();
    return { pool: d.pool, node: d.node, strategy: d.strategy, bootId: node ? bootIdOf(node) : undefined, vmss: d.vmss, poolNodes };
  },
  async do(ctx, { action: { details: d }, firstPreState }) {
    const dry = ctx.dryRun !== 'none';
    const first = firstPreState!;
    if (d.strategy === 'none') {
      ctx.progress(`pool ${d.pool}: uncordon ${d.node}`);
      await uncordon(ctx.kube, d.node);
      return { fresh: d.node };
    }
    if (d.strategy === 'reimage') {
      ctx.progress(`pool ${d.pool}: reimaging ${d.node} (vmss ${d.vmss!.name} instance ${d.vmss!.instanceId})`);
      await ctx.azure.reimageInstances(d.vmss!.resourceGroup, d.vmss!.name, [d.vmss!.instanceId]);
      if (dry) {
        // A dry run still shows the uncordon that follows the reimage.
        await uncordon(ctx.kube, d.node);
        return { fresh: d.node };
      }
      return finishReimage(ctx, d, first);
    }
    ctx.progress(`pool ${d.pool}: deleting ${d.node} (vmss ${d.vmss!.name} instance ${d.vmss!.instanceId})`);
    await ctx.azure.deleteInstances(d.vmss!.resourceGroup, d.vmss!.name, [d.vmss!.instanceId]);
    if (dry) return { fresh: d.node };
    return finishDelete(ctx, d, first);
  },
  async reconcile(ctx, { action: { details: d }, firstPreState }) {
    const first = firstPreState!;
    if (d.strategy === 'none') {
      const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
      return node && !isCordoned(node) ? { applied: true, result: { fresh: d.node } } : { applied: false, reason: `node ${d.node} is still cordoned` };
    }
    if (d.strategy === 'reimage') {
      // Never reimage twice: only a reimage proven not sent is planned again.
      if (!(await reimageAlreadySent(ctx, d, first))) return { applied: false, reason: `no sign that the reimage of ${d.node} was sent` };
      return { applied: true, result: await finishReimage(ctx, d, first) };
    }
    const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
    const instances = node ? await ctx.azure.listInstances(d.vmss!.resourceGroup, d.vmss!.name) : [];
    const inst = instances.find((i) => i.instanceId === d.vmss!.instanceId);
    if (node && inst && inst.provisioningState !== 'Deleting') return { applied: false, reason: `instance ${d.vmss!.instanceId} of ${d.vmss!.name} still exists` };
    return { applied: true, result: await finishDelete(ctx, d, first) };
  },
  async undo(_ctx, { action: { details: d } }) {
    if (d.strategy === 'none') return `node ${d.node} was not replaced`;
    return `node ${d.node} stays ${d.strategy === 'reimage' ? 'reimaged' : 'deleted'} (a reimage or delete cannot be undone; evicted pods were rescheduled)`;
  },
  async verifyUndo() {
    return { ok: true, evidence: [], failures: [] };
  },
};
