/**
 * Step 5, `drain`: in every node pool, drain one node and make it fresh, so that a node MIC
 * never touched proves the VMSS assignment alone carries each identity (DOMAIN.md section 7).
 *
 * Per pool two actions (pools concurrently, `--parallel-pools` at a time, default all):
 * - `pool/<pool>/drain` (`drain-node`): cordon the node and evict its pods with `kubectl
 *   drain`'s semantics (see `executors/drain-node.ts`).
 * - `pool/<pool>/replace` (`replace-node`): `reimage` (default) reimages the node's VMSS instance,
 *   waits for it to come back Ready with a new boot id and uncordons it; `delete` deletes the
 *   instance and waits for the cluster autoscaler to bring a new node into the pool (the tool
 *   never resizes an AKS-managed scale set or agent pool itself: AKS owns that count and a direct
 *   VMSS scale fights its reconciler); `none` uncordons the same node.
 *
 * The fresh node of each pool is the replace action's result; `afterActions` records them as
 * `setData('freshNodes', { pool: node })` for the `test` step. Rollback uncordons every node this
 * step cordoned that still exists; a reimaged or deleted node is not un-replaced.
 */
import { DEFAULT_STEP_TIMEOUT_MS, formatDuration } from '../engine/durations.ts';
import type { ActionRecord, Blocker, CheckResult, StepOutcome, StepPlan } from '../engine/step.ts';
import type { KubeObject } from '../kube/gateway.ts';
import { KINDS } from '../kube/kinds.ts';
import type { DrainNodeDetails } from './executors/drain-node.ts';
import { action, type MigrationAction } from './executors/index.ts';
import type { ReplaceNodeDetails, ReplacePreState } from './executors/replace-node.ts';
import type { Ctx, MigrationStep } from './lib/context.ts';
import {
  chooseNode,
  dispositionOf,
  drainTimeoutOf,
  freshNodesFrom,
  isJobPod,
  isServicePod,
  nodeNameOf,
  podKey,
  strategyOf,
  workloadGap,
  type DrainPreState,
  type DrainResult,
  type DrainStrategy,
  type NodeCandidate,
  type WorkloadRef,
} from './lib/drain.ts';
import { analyseNodeDrain, candidateOf, drainBlockers, podVerdict, type DrainRuleOptions } from './lib/drain-rules.ts';
import { inventoryFor, nmiRefOf } from './lib/inventory-source.ts';
import type { InventoryDocument } from './lib/inventory-model.ts';
import { isCordoned, isReady, poolOf, vmssOfNode, type VmssRef } from './lib/nodes.ts';
import { checkNmiHealth, findNmiPod } from './lib/probe.ts';

export { chooseNode, dispositionOf, DEFAULT_DRAIN_TIMEOUT_MS, EVICTION_RETRY_MS, type DrainStrategy, type NodeCandidate, type PodDisposition } from './lib/drain.ts';
export { isCordoned, isReady, poolOf, vmssOfNode } from './lib/nodes.ts';

function pools(inv: InventoryDocument): { name: string; scaleSet?: string }[] {
  return [...inv.pools].sort((a, b) => a.name.localeCompare(b.name));
}

/** Records of this step's actions that are still in force (not undone by a rollback). */
function liveRecords(ctx: Ctx): ActionRecord[] {
  return ctx.journal.records().filter((r) => !r.rolledBack);
}

/** The pre-state of an action's first intent among `records` (only that one carries it). */
function firstPre<T>(records: ActionRecord[], actionId: string): T | undefined {
  return records.find((r) => r.actionId === actionId && r.preState !== undefined)?.preState as T | undefined;
}

function lastRecord(records: ActionRecord[], actionId: string): ActionRecord | undefined {
  return records.filter((r) => r.actionId === actionId).at(-1);
}

/** Workloads evicted from the pool's node, from the drain action's result. */
function evictedWorkloads(ctx: Ctx, pool: string): WorkloadRef[] {
  const rec = liveRecords(ctx).filter((r) => r.actionId === `pool/${pool}/drain` && r.status === 'done').at(-1);
  return (rec?.result as DrainResult | undefined)?.workloads ?? [];
}

// ---- the step ------------------------------------------------------------------------------

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = await inventoryFor(ctx);
  const strategy = strategyOf(ctx.options);
  const force = ctx.options.drainForce === true;
  const kube = ctx.kube;
  const [nodes, pods, pdbs] = await Promise.all([kube.list(KINDS.Node), kube.list(KINDS.Pod), kube.list(KINDS.PodDisruptionBudget).catch(() => [] as KubeObject[])]);
  const rules: DrainRuleOptions = { force, deleteEmptyDirData: ctx.options.deleteEmptyDirData === true };
  const podsByNode = new Map<string, KubeObject[]>();
  for (const p of pods) {
    const n = nodeNameOf(p);
    if (!n || p.metadata?.deletionTimestamp) continue;
    const phase = (p.status as { phase?: string } | undefined)?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    (podsByNode.get(n) ?? podsByNode.set(n, []).get(n)!).push(p);
  }
  const records = liveRecords(ctx);
  // Each pool's actions in order (drain, then replace); pools are then interleaved into waves.
  const perPool: MigrationAction[][] = [];
  let actions: MigrationAction[] = [];
  const blockers: Blocker[] = [];
  const notes: string[] = [];
  const fresh = freshNodesFrom(records);

  for (const pool of pools(inv)) {
    if (actions.length) perPool.push(actions);
    actions = [];
    const drainId = `pool/${pool.name}/drain`;
    const replaceId = `pool/${pool.name}/replace`;
    const drainRec = lastRecord(records, drainId);
    const replaceRec = lastRecord(records, replaceId);
    if (fresh[pool.name]) {
      notes.push(`pool ${pool.name}: already drained; fresh node ${fresh[pool.name]}`);
      continue;
    }
    const poolNodes = nodes.filter((n) => poolOf(n) === pool.name);
    // A drain that started earlier continues on the same node, whatever the counts say now.
    const resumeNode = firstPre<DrainPreState>(records, drainId)?.node;
    let node: KubeObject | undefined;
    if (resumeNode) {
      node = poolNodes.find((n) => n.metadata?.name === resumeNode);
      if (!node && replaceRec && strategy === 'delete') {
        // The instance is already gone; the replace action finishes by waiting for the new node.
        const pre = firstPre<ReplacePreState>(records, replaceId);
        actions.push(replaceAction(pool.name, resumeNode, strategy, pre?.vmss));
        continue;
      }
      if (!node) {
        blockers.push({
          code: 'drained-node-gone',
          subject: `node ${resumeNode}`,
          message: `the node this step started draining in pool ${pool.name} no longer exists`,
          fix: `Roll the step back (podid-migrate rollback --step drain) and apply it again to pick another node.`,
        });
        continue;
      }
    } else {
      const candidates: NodeCandidate[] = poolNodes.map((n) => candidateOf(n, podsByNode.get(n.metadata!.name!) ?? [], rules));
      const choice = chooseNode(pool.name, candidates);
      if (!choice.node) {
        blockers.push({
          code: 'pool-cannot-drain',
          subject: `pool ${pool.name}`,
          message: `${choice.problem}.`,
          fix: `Add a node to the pool first (az aks nodepool scale --name ${pool.name} --node-count <n+1> ...), or uncordon a node, then plan again.`,
        });
        continue;
      }
      node = poolNodes.find((n) => n.metadata?.name === choice.node!.name)!;
    }
    const nodeName = node.metadata!.name!;
    const vmss = vmssOfNode(node);
    if (strategy !== 'none' && !vmss) {
      blockers.push({
        code: 'node-not-vmss',
        subject: `node ${nodeName}`,
        message: `node ${nodeName} (pool ${pool.name}) has no VMSS instance in its providerID, so it cannot be ${strategy === 'reimage' ? 'reimaged' : 'deleted'}.`,
        fix: 'Use --drain-strategy none for this cluster, or check the pool is backed by a virtual machine scale set.',
      });
      continue;
    }
    const onNode = podsByNode.get(nodeName) ?? [];
    if (drainRec?.status !== 'done') {
      // kubectl drain's rules and the budgets, as apply will meet them: every pod that blocks,
      // with the flag that allows it, and every budget that can never allow the eviction.
      const analysis = analyseNodeDrain({ node: nodeName, pool: pool.name, pods, pdbs, options: rules });
      const found = drainBlockers(analysis);
      if (found.length) {
        blockers.push(...found);
        continue;
      }
      const allowed = analysis.verdicts.filter((v) => v.action === 'evict' && v.flag);
      if (allowed.length) notes.push(`pool ${pool.name}: ${allowed.map((v) => `${v.pod} (allowed by ${(v.flags ?? [v.flag!]).join(' ')})`).join(', ')} will be removed from ${nodeName}`);
      const waits = analysis.verdicts.filter((v) => v.rule === 'pdb-exhausted');
      if (waits.length) notes.push(`pool ${pool.name}: ${waits.map((v) => v.reason).join('; ')}`);
    }
    if (drainRec?.status !== 'done') {
      const evictable = onNode.filter((p) => podVerdict(p, rules).action === 'evict');
      const stable = evictable.filter((p) => !isJobPod(p)).length;
      const jobs = evictable.length - stable;
      const details: DrainNodeDetails = { pool: pool.name, node: nodeName, force, ...(rules.deleteEmptyDirData ? { deleteEmptyDirData: true } : {}) };
      actions.push(
        action({
          id: drainId,
          kind: 'drain-node',
          op: '~',
          target: `node ${nodeName}`,
          summary: `cordon, evict ${stable} pod${stable === 1 ? '' : 's'}${jobs ? ` (+${jobs} job pod${jobs === 1 ? '' : 's'} now)` : ''}; pool ${pool.name}`,
          api: 'kube',
          // The cordon and one eviction per long-lived pod (job pods come and go: counted when they are there).
          writes: { kube: 1 + stable, arm: 0 },
          details,
        }),
      );
    }
    actions.push(replaceAction(pool.name, nodeName, strategy, vmss));
  }
  if (actions.length) perPool.push(actions);
  const parallel = parallelPoolsOf(ctx.options, perPool.length);
  actions = poolWaves(perPool, parallel);
  if (strategy === 'delete') notes.push('drain strategy delete: each pool\'s capacity is restored by the cluster autoscaler; the tool does not resize AKS-managed scale sets');
  if (strategy === 'none') notes.push('drain strategy none: the same nodes are uncordoned, so the test step runs on nodes MIC has touched before');
  notes.push(`drain timeout ${formatDuration(drainTimeoutOf(ctx.options))} per node; ${parallel >= perPool.length ? 'every pool drained at once' : `${parallel} pool${parallel === 1 ? '' : 's'} at a time`} (--parallel-pools), one node per pool`);
  return { stepId: 'drain', actions, blockers, notes };
}

/** `--parallel-pools` (default: every pool). */
export function parallelPoolsOf(options: Record<string, unknown>, pools: number): number {
  const v = options.parallelPools;
  return typeof v === 'number' && v >= 1 ? Math.min(v, Math.max(pools, 1)) : Math.max(pools, 1);
}

/**
 * Orders the pools' action lists into waves of `parallel` pools: the wave's first actions (the
 * drains) run concurrently, then its second actions (the replacements), then the next wave. A
 * failure in one pool lets the others finish the action they are in (their next safe point)
 * and starts nothing more; the journal's done records say which pools finished.
 */
export function poolWaves(perPool: MigrationAction[][], parallel: number): MigrationAction[] {
  const out: MigrationAction[] = [];
  for (let w = 0; w * parallel < perPool.length; w++) {
    const wave = perPool.slice(w * parallel, (w + 1) * parallel);
    const depth = Math.max(...wave.map((a) => a.length));
    for (let i = 0; i < depth; i++) {
      const layer = wave.map((a) => a[i]).filter((a): a is MigrationAction => Boolean(a));
      const group = `drain-wave-${w}-${i}`;
      for (const a of layer) out.push(layer.length > 1 ? { ...a, parallelGroup: group, parallelLimit: layer.length } : a);
    }
  }
  return out;
}

function replaceAction(pool: string, node: string, strategy: DrainStrategy, vmss: VmssRef | undefined): MigrationAction {
  const details: ReplaceNodeDetails = { pool, node, strategy, ...(vmss ? { vmss } : {}), drainActionId: `pool/${pool}/drain` };
  if (strategy === 'none') return action({ id: `pool/${pool}/replace`, kind: 'replace-node', op: '~', target: `node ${node}`, summary: 'uncordon (same node, not replaced)', api: 'kube', writes: { kube: 1, arm: 0 }, details });
  return action({
    id: `pool/${pool}/replace`,
    kind: 'replace-node',
    op: '~',
    target: `vmss ${vmss!.name} instance ${vmss!.instanceId}`,
    summary: strategy === 'reimage' ? `reimage node ${node}, wait until Ready, uncordon` : `delete node ${node}; the cluster autoscaler adds a new one`,
    api: 'arm',
    // A reimage is followed by the uncordon of the node it brings back.
    writes: { kube: strategy === 'reimage' ? 1 : 0, arm: 1 },
    details,
  });
}
async function check(ctx: Ctx): Promise<CheckResult> {
  const inv = await inventoryFor(ctx);
  const fresh = freshNodesFrom(ctx.journal.records());
  const nmi = nmiRefOf(ctx);
  const evidence: string[] = [];
  const failures: string[] = [];
  for (const pool of pools(inv)) {
    const name = fresh[pool.name];
    if (!name) {
      failures.push(`pool ${pool.name}: no fresh node recorded; run podid-migrate apply --step drain`);
      continue;
    }
    const node = await ctx.kube.get(KINDS.Node, undefined, name);
    if (!node) {
      failures.push(`pool ${pool.name}: fresh node ${name} no longer exists; run podid-migrate apply --step drain to drain another`);
      continue;
    }
    if (!isReady(node)) failures.push(`pool ${pool.name}: node ${name} is not Ready`);
    if (isCordoned(node)) failures.push(`pool ${pool.name}: node ${name} is still cordoned (kubectl uncordon ${name})`);
    const pod = await findNmiPod(ctx.kube, nmi, name);
    if (!pod) failures.push(`pool ${pool.name}: no NMI pod of daemonset ${nmi.namespace}/${nmi.name} runs on node ${name}`);
    else {
      const h = await checkNmiHealth(ctx.kube, pod);
      if (!h.active) failures.push(`pool ${pool.name}: NMI ${pod.metadata!.name} on node ${name} reports "${h.body}", not Active`);
      else evidence.push(`pool ${pool.name}: node ${name} Ready, schedulable, NMI ${pod.metadata!.name} Active`);
    }
    for (const w of evictedWorkloads(ctx, pool.name)) {
      const gap = await workloadGap(ctx.kube, w);
      if (gap) failures.push(`pool ${pool.name}: ${gap} after the drain`);
    }
    const back = evictedWorkloads(ctx, pool.name).length;
    if (back) evidence.push(`pool ${pool.name}: ${back} evicted workload(s) back at their replica counts`);
  }
  return { ok: failures.length === 0, evidence, failures };
}

/** Per pool: its own actions' time (drain + replace, newest done records), the fresh node and the pods evicted. */
export interface PoolTiming {
  pool: string;
  node: string;
  seconds: number;
  evicted: number;
}

export function poolTimingsFrom(records: readonly ActionRecord[], fresh: Record<string, string>): PoolTiming[] {
  const out: PoolTiming[] = [];
  for (const pool of Object.keys(fresh).sort()) {
    let ms = 0;
    let evicted = 0;
    for (const id of [`pool/${pool}/drain`, `pool/${pool}/replace`]) {
      const done = records.filter((r) => r.actionId === id && r.status === 'done' && !r.rolledBack).at(-1);
      if (!done) continue;
      if (done.doneAt) ms += Math.max(0, Date.parse(done.doneAt) - Date.parse(done.intentAt));
      const e = (done.result as { evicted?: unknown } | undefined)?.evicted;
      if (typeof e === 'number') evicted += e;
    }
    out.push({ pool, node: fresh[pool], seconds: Math.round(ms) / 1000, evicted });
  }
  return out;
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const fresh = freshNodesFrom(ctx.journal.records());
  await ctx.journal.setData('freshNodes', fresh);
  if (ctx.dryRun === 'none') await ctx.journal.setData('poolTimings', poolTimingsFrom(ctx.journal.records(), fresh));
  const done = p.actions.filter((a) => a.kind === 'replace-node').map((a) => (a.details as ReplaceNodeDetails).pool);
  const all = Object.entries(fresh).sort(([a], [b]) => a.localeCompare(b)).map(([pool, node]) => `${pool}: ${node}`);
  if (!done.length) return { summary: `every pool already has a fresh node; fresh nodes ${all.join(', ') || 'none'}` };
  const evicted = ctx.journal.records().filter((r) => r.status === 'done' && p.actions.some((a) => a.id === r.actionId && a.kind === 'drain-node')).reduce((n, r) => n + ((r.result as DrainResult | undefined)?.evicted ?? 0), 0);
  const dry = ctx.dryRun !== 'none';
  const strategy = strategyOf(ctx.options);
  const lines = Object.keys(fresh).sort().map((pool) => `${pool}: ${fresh[pool]}`);
  if (dry) {
    const replaced = p.actions.filter((a) => a.kind === 'drain-node').map((a) => (a.details as DrainNodeDetails).node);
    return { summary: `would drain and ${strategy === 'none' ? 'uncordon' : strategy} ${replaced.length ? replaced.join(', ') : 'the nodes drained before'} (${done.length} pool${done.length === 1 ? '' : 's'}); fresh nodes ${lines.join(', ')}` };
  }
  const drainedPools = Object.keys(fresh).length;
  const earlier = drainedPools - done.length;
  return { summary: `${drainedPools} pool${drainedPools === 1 ? '' : 's'} drained${earlier > 0 ? ` (${earlier} in an earlier run)` : ''} (${evicted} pods evicted this run), ${strategy}; fresh nodes ${lines.join(', ')}` };
}

/** The `drain` step. */
export const drainStep: MigrationStep = {
  id: 'drain',
  title: 'Drain and replace one node per pool',
  plan,
  afterActions,
  check,
  deadlineMs(options) {
    // Each pool may spend the drain timeout on evictions plus a reimage (minutes on Azure).
    return Math.max(DEFAULT_STEP_TIMEOUT_MS, 8 * (drainTimeoutOf(options) + 10 * 60_000));
  },
};

export default drainStep;
