/**
 * Step 5, `drain`: in every node pool, drain one node and make it fresh, so that a node MIC
 * never touched proves the VMSS assignment alone carries each identity (DOMAIN.md section 7).
 *
 * Per pool (one pool at a time) two journaled actions:
 * - `pool/<pool>/drain` (Kubernetes): cordon the node, evict its pods with `kubectl drain`'s
 *   semantics: DaemonSet and mirror pods are skipped, pods without a controller are refused
 *   unless `drainForce`, a PodDisruptionBudget refusal (429) is retried every 5 s until the
 *   drain timeout (`drainTimeoutMs`, default 5 min) runs out, each pod's grace period is kept,
 *   and every evicted pod is awaited until it is gone.
 * - `pool/<pool>/replace`: `reimage` (default) reimages the node's VMSS instance and waits for
 *   the node to come back Ready with a new boot id, then uncordons it; `delete` deletes the
 *   instance and waits for the cluster autoscaler to bring a new node into the pool (the tool
 *   never resizes an AKS-managed scale set or agent pool itself: AKS owns that count and a direct
 *   VMSS scale fights its reconciler); `none` uncordons the same node.
 *
 * The fresh node of each pool is recorded as `setData('freshNodes', { pool: node })` for the
 * `test` step. Rollback uncordons every node this step cordoned that still exists; a reimaged
 * or deleted node is not un-replaced.
 */
import { DEFAULT_STEP_TIMEOUT_MS, formatDuration } from '../engine/runner.ts';
import { StepFailedError } from '../engine/errors.ts';
import type { ActionRecord, CheckResult, PlannedAction, Step, StepContext, StepOutcome, StepPlan, Blocker } from '../engine/step.ts';
import type { AzureGateway } from '../azure/gateway.ts';
import type { KubeGateway, KubeObject } from '../kube/gateway.ts';
import { asInventory, type InventoryDocument } from './inventory-model.ts';
import { checkNmiHealth, findNmiPod } from './probe.ts';
import { KINDS } from '../kube/kinds.ts';

type Ctx = StepContext<KubeGateway, AzureGateway>;

/** How the drained node is made fresh. */
export type DrainStrategy = 'reimage' | 'delete' | 'none';

/** Default time evictions on one node may be retried while a PodDisruptionBudget refuses. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 5 * 60_000;

/** kubectl drain's retry interval after a PodDisruptionBudget refusal. */
export const EVICTION_RETRY_MS = 5_000;

/** Poll interval of node and pod waits. */
const POLL_MS = 300;

/** Pool labels AKS puts on nodes (the older one first seen on clusters created before 2021). */
const POOL_LABELS = ['kubernetes.azure.com/agentpool', 'agentpool'];

/** What the drain action records before it cordons (rollback uncordons from it). */
export interface DrainPreState {
  pool: string;
  node: string;
  /** Whether the node was already cordoned before this step (then rollback leaves it cordoned). */
  wasUnschedulable: boolean;
}

/** What the drain action returns: the workloads whose pods were evicted (checked for their replicas later). */
export interface DrainResult {
  evicted: number;
  workloads: WorkloadRef[];
}

/** A controller whose pods were evicted. */
export interface WorkloadRef {
  kind: 'Deployment' | 'StatefulSet' | 'ReplicaSet';
  namespace: string;
  name: string;
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

/** The VMSS instance behind a node, from its `spec.providerID`. */
export interface VmssRef {
  resourceGroup: string;
  name: string;
  instanceId: string;
}

/** Details of the drain action (fingerprinted: only stable values). */
interface DrainDetails {
  pool: string;
  node: string;
  force: boolean;
}

/** Details of the replace action. */
interface ReplaceDetails {
  pool: string;
  node: string;
  strategy: DrainStrategy;
  vmss?: VmssRef;
}

// ---- pure helpers (unit-tested) ------------------------------------------------------------

/** The pool a node belongs to, from its AKS labels. */
export function poolOf(node: KubeObject): string | undefined {
  const labels = node.metadata?.labels ?? {};
  for (const l of POOL_LABELS) if (labels[l]) return labels[l];
  return undefined;
}

/** True when the node's `Ready` condition is `True`. */
export function isReady(node: KubeObject): boolean {
  const conds = ((node.status as { conditions?: { type?: string; status?: string }[] } | undefined)?.conditions ?? []);
  return conds.some((c) => c.type === 'Ready' && c.status === 'True');
}

/** True when the node is cordoned. */
export function isCordoned(node: KubeObject): boolean {
  return Boolean((node.spec as { unschedulable?: boolean } | undefined)?.unschedulable);
}

/**
 * After a crash between sending a reimage and recording it: whether that reimage was sent.
 * The instance is read before the node, so a reimage that finishes between the two reads still
 * shows on the node (rebooting, or a new boot id) instead of looking as if it never started;
 * a node that was Ready when drained and is NotReady now is taken to be rebooting from it (if
 * it comes back with its old boot id, the wait fails and the next run reimages it then).
 * Never true for a reimage that was not sent, so a resumed drain never reimages twice.
 */
async function reimageAlreadySent(ctx: Ctx, d: ReplaceDetails, first: ReplacePreState): Promise<boolean> {
  const instances = await ctx.azure.listInstances(d.vmss!.resourceGroup, d.vmss!.name);
  const inst = instances.find((i) => i.instanceId === d.vmss!.instanceId);
  if (inst?.provisioningState === 'Updating') return true;
  const node = await ctx.kube.get(KINDS.Node, undefined, d.node);
  if (!node) return false;
  if (first.bootId && bootIdOf(node) && bootIdOf(node) !== first.bootId) return true;
  return !isReady(node);
}

function bootIdOf(node: KubeObject): string | undefined {
  return (node.status as { nodeInfo?: { bootID?: string } } | undefined)?.nodeInfo?.bootID;
}

/** Parses `azure:///subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachineScaleSets/<vmss>/virtualMachines/<id>`. */
export function vmssOfNode(node: KubeObject): VmssRef | undefined {
  const id = String((node.spec as { providerID?: string } | undefined)?.providerID ?? '');
  const m = /\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)\/virtualMachines\/(\d+)$/i.exec(id);
  return m ? { resourceGroup: m[1], name: m[2], instanceId: m[3] } : undefined;
}

function controllerOf(pod: KubeObject): { kind: string; name: string } | undefined {
  const ref = pod.metadata?.ownerReferences?.find((o) => o.controller) ?? undefined;
  return ref ? { kind: ref.kind, name: ref.name } : undefined;
}

/** How `kubectl drain` treats a pod on the node. */
export type PodDisposition = 'daemonset' | 'mirror' | 'unreplicated' | 'evict';

/** kubectl drain's filters: DaemonSet pods and mirror (static) pods stay; pods without a controller are refused unless forced. */
export function dispositionOf(pod: KubeObject): PodDisposition {
  if (pod.metadata?.annotations?.['kubernetes.io/config.mirror']) return 'mirror';
  const ctl = controllerOf(pod);
  if (ctl?.kind === 'DaemonSet') return 'daemonset';
  if (!ctl) return 'unreplicated';
  return 'evict';
}

function isJobPod(pod: KubeObject): boolean {
  return controllerOf(pod)?.kind === 'Job';
}

function isServicePod(pod: KubeObject): boolean {
  return Boolean(pod.metadata?.labels?.['aadpodidbinding']) && !isJobPod(pod);
}

function podKey(pod: KubeObject): string {
  return `${pod.metadata?.namespace}/${pod.metadata?.name}`;
}

function nodeNameOf(pod: KubeObject): string | undefined {
  return (pod.spec as { nodeName?: string } | undefined)?.nodeName;
}

/** A node candidate for a pool, with the counts the choice is made on. */
export interface NodeCandidate {
  name: string;
  ready: boolean;
  cordoned: boolean;
  /** Pods of long-lived services (carry `aadpodidbinding`, not Job pods). */
  servicePods: number;
  /** Pods that would be evicted, Job pods excluded (they come and go). */
  stablePods: number;
}

/**
 * Picks the node to drain in a pool: among Ready, schedulable nodes, the one with the fewest
 * service pods, then the fewest other long-lived pods, then by name (deterministic, so a plan
 * made a minute ago names the same node). Refuses when the pool has no other Ready node to take
 * the evicted pods. Job pods are ignored: under churn they would make the choice flicker.
 */
export function chooseNode(pool: string, candidates: readonly NodeCandidate[]): { node?: NodeCandidate; problem?: string } {
  const ready = candidates.filter((c) => c.ready);
  const usable = ready.filter((c) => !c.cordoned);
  if (ready.length < 2) return { problem: `pool ${pool} has ${ready.length} Ready node${ready.length === 1 ? '' : 's'}; draining ${ready.length ? 'it' : 'one'} would leave its pods nowhere to run` };
  if (usable.length === 0) return { problem: `every Ready node of pool ${pool} is cordoned` };
  const sorted = [...usable].sort((a, b) => a.servicePods - b.servicePods || a.stablePods - b.stablePods || a.name.localeCompare(b.name));
  return { node: sorted[0] };
}

function strategyOf(options: Record<string, unknown>): DrainStrategy {
  const s = options.drainStrategy;
  if (s === undefined) return 'reimage';
  if (s === 'reimage' || s === 'delete' || s === 'none') return s;
  throw new Error(`drain strategy ${JSON.stringify(s)} is not one of reimage, delete, none`);
}

function drainTimeoutOf(options: Record<string, unknown>): number {
  const t = options.drainTimeoutMs;
  return typeof t === 'number' && t > 0 ? t : DEFAULT_DRAIN_TIMEOUT_MS;
}

/** kubectl's 5 s between eviction attempts; `evictionRetryMs` shortens it for rehearsals on a fast sandbox clock. */
function retryIntervalOf(options: Record<string, unknown>): number {
  const t = options.evictionRetryMs;
  return typeof t === 'number' && t > 0 ? t : EVICTION_RETRY_MS;
}

function pools(inv: InventoryDocument): { name: string; scaleSet?: string }[] {
  return [...inv.pools].sort((a, b) => a.name.localeCompare(b.name));
}

function inventoryOf(ctx: Ctx): InventoryDocument {
  if (ctx.inventory === undefined) throw new Error(`no inventory at ${ctx.inventoryPath}: the inventory step writes it`);
  return asInventory(ctx.inventory, ctx.inventoryPath);
}

/** NMI DaemonSet location: what the inventory step recorded, else the inventory file. */
export function nmiRefOf(ctx: Pick<Ctx, 'journal' | 'inventory'>): { namespace: string; name: string } {
  const recorded = ctx.journal.of('inventory').getData<{ nmi?: { namespace?: string; name?: string } }>('podIdentity');
  if (recorded?.nmi?.namespace && recorded.nmi.name) return { namespace: recorded.nmi.namespace, name: recorded.nmi.name };
  const inv = ctx.inventory as InventoryDocument | undefined;
  const nmi = inv?.podIdentity?.nmi;
  if (nmi?.namespace && nmi.name) return { namespace: nmi.namespace, name: nmi.name };
  throw new Error('the NMI DaemonSet is not known yet: the inventory step records it');
}

/** Records of this step's actions that are still in force (not undone by a rollback). */
function liveRecords(ctx: Ctx): ActionRecord[] {
  return ctx.journal.records().filter((r) => !r.rolledBack);
}

function lastRecord(records: ActionRecord[], actionId: string): ActionRecord | undefined {
  return records.filter((r) => r.actionId === actionId).at(-1);
}

// ---- the step ------------------------------------------------------------------------------

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = inventoryOf(ctx);
  const strategy = strategyOf(ctx.options);
  const force = ctx.options.drainForce === true;
  const kube = ctx.kube;
  const [nodes, pods] = await Promise.all([kube.list(KINDS.Node), kube.list(KINDS.Pod)]);
  const podsByNode = new Map<string, KubeObject[]>();
  for (const p of pods) {
    const n = nodeNameOf(p);
    if (!n || p.metadata?.deletionTimestamp) continue;
    const phase = (p.status as { phase?: string } | undefined)?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    (podsByNode.get(n) ?? podsByNode.set(n, []).get(n)!).push(p);
  }
  const records = liveRecords(ctx);
  const actions: PlannedAction[] = [];
  const blockers: Blocker[] = [];
  const notes: string[] = [];
  const fresh = ctx.journal.getData<Record<string, string>>('freshNodes') ?? {};

  for (const pool of pools(inv)) {
    const drainId = `pool/${pool.name}/drain`;
    const replaceId = `pool/${pool.name}/replace`;
    const drainRec = lastRecord(records, drainId);
    const replaceRec = lastRecord(records, replaceId);
    if (replaceRec?.status === 'done' && fresh[pool.name]) {
      notes.push(`pool ${pool.name}: already drained; fresh node ${fresh[pool.name]}`);
      continue;
    }
    const poolNodes = nodes.filter((n) => poolOf(n) === pool.name);
    // A drain that started earlier continues on the same node, whatever the counts say now.
    const resumeNode = (drainRec?.preState as DrainPreState | undefined)?.node;
    let node: KubeObject | undefined;
    if (resumeNode) {
      node = poolNodes.find((n) => n.metadata?.name === resumeNode);
      if (!node && replaceRec && strategy === 'delete') {
        // The instance is already gone; the replace action finishes by waiting for the new node.
        const pre = replaceRec.preState as ReplacePreState;
        actions.push(replaceAction(pool.name, resumeNode, strategy, pre.vmss));
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
      const candidates: NodeCandidate[] = poolNodes.map((n) => {
        const onNode = podsByNode.get(n.metadata!.name!) ?? [];
        const evictable = onNode.filter((p) => dispositionOf(p) !== 'daemonset' && dispositionOf(p) !== 'mirror');
        return {
          name: n.metadata!.name!,
          ready: isReady(n) && !n.metadata?.deletionTimestamp,
          cordoned: isCordoned(n),
          servicePods: evictable.filter(isServicePod).length,
          stablePods: evictable.filter((p) => !isJobPod(p)).length,
        };
      });
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
    const unreplicated = onNode.filter((p) => dispositionOf(p) === 'unreplicated');
    if (unreplicated.length && !force && drainRec?.status !== 'done') {
      blockers.push({
        code: 'unreplicated-pods',
        subject: `node ${nodeName}`,
        message: `pods not managed by a ReplicaSet, StatefulSet, Job or DaemonSet would be lost by the drain: ${unreplicated.map(podKey).sort().join(', ')}.`,
        fix: 'Move them to a controller, delete them yourself, or allow the drain to delete them (apply --drain-force), then plan again.',
      });
      continue;
    }
    if (drainRec?.status !== 'done') {
      const evictable = onNode.filter((p) => dispositionOf(p) === 'evict' || (force && dispositionOf(p) === 'unreplicated'));
      const stable = evictable.filter((p) => !isJobPod(p)).length;
      const jobs = evictable.length - stable;
      const details: DrainDetails = { pool: pool.name, node: nodeName, force };
      actions.push({
        id: drainId,
        op: '~',
        target: `node ${nodeName}`,
        summary: `cordon, evict ${stable} pod${stable === 1 ? '' : 's'}${jobs ? ` (+${jobs} job pod${jobs === 1 ? '' : 's'} now)` : ''}; pool ${pool.name}`,
        api: 'kube',
        writes: 1 + stable,
        details,
      });
    }
    actions.push(replaceAction(pool.name, nodeName, strategy, vmss));
  }
  if (strategy === 'delete') notes.push('drain strategy delete: each pool\'s capacity is restored by the cluster autoscaler; the tool does not resize AKS-managed scale sets');
  if (strategy === 'none') notes.push('drain strategy none: the same nodes are uncordoned, so the test step runs on nodes MIC has touched before');
  notes.push(`drain timeout ${formatDuration(drainTimeoutOf(ctx.options))} per node; pools are drained one at a time`);
  return { stepId: 'drain', actions, blockers, notes };
}

function replaceAction(pool: string, node: string, strategy: DrainStrategy, vmss: VmssRef | undefined): PlannedAction {
  const details: ReplaceDetails = { pool, node, strategy, ...(vmss ? { vmss } : {}) };
  if (strategy === 'none') return { id: `pool/${pool}/replace`, op: '~', target: `node ${node}`, summary: 'uncordon (same node, not replaced)', api: 'kube', writes: 1, details };
  return {
    id: `pool/${pool}/replace`,
    op: '~',
    target: `vmss ${vmss!.name} instance ${vmss!.instanceId}`,
    summary: strategy === 'reimage' ? `reimage node ${node}, wait until Ready, uncordon` : `delete node ${node}; the cluster autoscaler adds a new one`,
    api: 'arm',
    writes: 1,
    details,
  };
}

async function apply(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const strategy = strategyOf(ctx.options);
  const lines: string[] = [];
  let evictedTotal = 0;
  const poolsDone: string[] = [];
  for (const action of p.actions) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (action.id.endsWith('/drain')) {
      const d = action.details as DrainDetails;
      const result = await drainNode(ctx, action, d);
      evictedTotal += result.evicted;
    } else {
      const d = action.details as ReplaceDetails;
      const freshNode = await replaceNode(ctx, action, d);
      const fresh = { ...(ctx.journal.getData<Record<string, string>>('freshNodes') ?? {}), [d.pool]: freshNode };
      await ctx.journal.setData('freshNodes', fresh);
      poolsDone.push(d.pool);
      lines.push(`${d.pool}: ${freshNode}`);
    }
  }
  const dry = ctx.dryRun !== 'none' ? ' (dry run)' : '';
  if (!poolsDone.length) return { summary: 'every pool already has a fresh node' };
  return { summary: `${poolsDone.length} pool${poolsDone.length === 1 ? '' : 's'} drained (${evictedTotal} pods evicted), ${strategy}${dry}; fresh nodes ${lines.join(', ')}` };
}

/** Cordons the node and evicts its pods (the drain action). */
async function drainNode(ctx: Ctx, action: PlannedAction, d: DrainDetails): Promise<DrainResult> {
  const kube = ctx.kube;
  const node = await kube.get(KINDS.Node, undefined, d.node);
  if (!node) throw new Error(`node ${d.node} (pool ${d.pool}) no longer exists`);
  const pre: DrainPreState = { pool: d.pool, node: d.node, wasUnschedulable: isCordoned(node) && !wasCordonedByUs(ctx, d.node) };
  return ctx.journal.runAction(action, pre, async () => {
    ctx.progress(`pool ${d.pool}: cordon node ${d.node}`);
    if (!isCordoned(node)) await kube.patch(KINDS.Node, undefined, d.node, { spec: { unschedulable: true } }, 'merge');
    return evictAll(ctx, d);
  });
}

function wasCordonedByUs(ctx: Ctx, node: string): boolean {
  return liveRecords(ctx).some((r) => r.actionId.endsWith('/drain') && (r.preState as DrainPreState | undefined)?.node === node);
}

/**
 * Evicts every evictable pod on the node in parallel, as `kubectl drain` does, and waits until
 * each is gone. A PodDisruptionBudget refusal is retried every {@link EVICTION_RETRY_MS} until the
 * drain timeout; then the step fails with a message naming the budget.
 */
export async function evictAll(ctx: Ctx, d: { pool: string; node: string; force: boolean }): Promise<DrainResult> {
  const kube = ctx.kube;
  const timeoutMs = drainTimeoutOf(ctx.options);
  const giveUpAt = Date.now() + timeoutMs;
  const dry = ctx.dryRun !== 'none';
  const workloads = new Map<string, WorkloadRef>();
  let evicted = 0;
  // Pods can still arrive between the list and the cordon taking effect: list again until none are left.
  for (let round = 0; ; round++) {
    const all = await kube.list(KINDS.Pod, { fieldSelector: `spec.nodeName=${d.node}` });
    const onNode = all.filter((p) => {
      const disp = dispositionOf(p);
      return disp === 'evict' || (disp === 'unreplicated' && d.force);
    });
    const refused = all.filter((p) => dispositionOf(p) === 'unreplicated' && !d.force);
    if (refused.length) {
      throw new StepFailedError(
        `step "drain" stopped: node ${d.node} runs pods without a controller that a drain would lose: ${refused.map(podKey).join(', ')}.`,
        `The node is cordoned. Options:\n  podid-migrate rollback --step drain      # uncordon and stop here\n  move or delete those pods, then: podid-migrate apply --step drain`,
        'drain',
      );
    }
    if (onNode.length === 0 || (dry && round > 0)) break;
    if (round > 20) throw new Error(`pods keep arriving on cordoned node ${d.node}; is something pinning pods to it by nodeName?`);
    ctx.progress(`pool ${d.pool}: evicting ${onNode.length} pod${onNode.length === 1 ? '' : 's'} from ${d.node}`);
    let remaining = onNode.length;
    await Promise.all(
      onNode.map(async (pod) => {
        await evictOne(ctx, pod, giveUpAt, timeoutMs, d);
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

async function evictOne(ctx: Ctx, pod: KubeObject, giveUpAt: number, timeoutMs: number, d: { pool: string; node: string }): Promise<void> {
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
      // Like kubectl: keep retrying until the timeout itself has passed, with a last attempt at it.
      if (Date.now() >= giveUpAt) throw await pdbTimeout(ctx, pod, lastRefusal, timeoutMs, d);
      const retryMs = Math.min(retryIntervalOf(ctx.options), giveUpAt - Date.now());
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
async function pdbTimeout(ctx: Ctx, pod: KubeObject, refusal: { message: string; budgets: string[] }, timeoutMs: number, d: { pool: string; node: string }): Promise<StepFailedError> {
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
    `step "drain" stopped: pod ${ns}/${pod.metadata!.name} cannot be evicted.\n  ${budgetText}: ${why}; eviction retried for ${formatDuration(timeoutMs)}.`,
    `The node ${d.node} (pool ${d.pool}) is still cordoned. Options:\n  podid-migrate rollback --step drain      # uncordon and stop here\n  podid-migrate apply --step drain --drain-timeout ${longerMinutes}m`,
    'drain',
  );
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

/** Makes the drained node fresh (the replace action); returns the fresh node's name. */
async function replaceNode(ctx: Ctx, action: PlannedAction, d: ReplaceDetails): Promise<string> {
  const kube = ctx.kube;
  const dry = ctx.dryRun !== 'none';
  const node = await kube.get(KINDS.Node, undefined, d.node);
  const poolNodes = (await kube.list(KINDS.Node)).filter((n) => poolOf(n) === d.pool).map((n) => n.metadata!.name!).sort();
  const pre: ReplacePreState = { pool: d.pool, node: d.node, strategy: d.strategy, bootId: node ? bootIdOf(node) : undefined, vmss: d.vmss, poolNodes };
  return ctx.journal.runAction(action, pre, async () => {
    // A resumed action keeps the first pre-state: it tells whether the reimage already happened.
    const first = ctx.journal.firstPreState<ReplacePreState>(action.id) ?? pre;
    if (d.strategy === 'none') {
      ctx.progress(`pool ${d.pool}: uncordon ${d.node}`);
      if (node && isCordoned(node)) await uncordon(kube, d.node);
      return d.node;
    }
    if (d.strategy === 'reimage') {
      const resumed = ctx.journal.records().filter((r) => r.actionId === action.id).length > 1;
      if (dry || !(resumed && (await reimageAlreadySent(ctx, d, first)))) {
        ctx.progress(`pool ${d.pool}: reimaging ${d.node} (vmss ${d.vmss!.name} instance ${d.vmss!.instanceId})`);
        await ctx.azure.reimageInstances(d.vmss!.resourceGroup, d.vmss!.name, [d.vmss!.instanceId]);
      }
      if (dry) return d.node;
      ctx.progress(`pool ${d.pool}: waiting for ${d.node} to rejoin Ready`);
      await kube.waitFor(
        async (note) => {
          const n = await kube.get(KINDS.Node, undefined, d.node);
          if (!n) throw new Error(`node ${d.node} disappeared while it was being reimaged`);
          const rebooted = !first.bootId || bootIdOf(n) !== first.bootId;
          note(`${isReady(n) ? 'Ready' : 'NotReady'}, ${rebooted ? 'new' : 'same'} boot id`);
          return isReady(n) && rebooted;
        },
        { describe: `node ${d.node} to come back Ready after its reimage`, timeoutMs: Math.max(ctx.deadline - Date.now(), 1), intervalMs: POLL_MS, signal: ctx.signal },
      );
      ctx.progress(`pool ${d.pool}: uncordon ${d.node}`);
      await uncordon(kube, d.node);
      await waitForNmiActive(ctx, d.pool, d.node);
      await waitForWorkloads(ctx, d.pool);
      return d.node;
    }
    // delete
    const exists = await kube.get(KINDS.Node, undefined, d.node);
    if (exists) {
      const instances = dry ? [] : await ctx.azure.listInstances(d.vmss!.resourceGroup, d.vmss!.name);
      const inst = instances.find((i) => i.instanceId === d.vmss!.instanceId);
      if (dry || (inst && inst.provisioningState !== 'Deleting')) {
        ctx.progress(`pool ${d.pool}: deleting ${d.node} (vmss ${d.vmss!.name} instance ${d.vmss!.instanceId})`);
        await ctx.azure.deleteInstances(d.vmss!.resourceGroup, d.vmss!.name, [d.vmss!.instanceId]);
      }
    }
    if (dry) return d.node;
    const before = new Set(first.poolNodes ?? []);
    ctx.progress(`pool ${d.pool}: waiting for the cluster autoscaler to add a node`);
    const fresh = await kube.waitFor(
      async (note) => {
        const all = (await kube.list(KINDS.Node)).filter((n) => poolOf(n) === d.pool);
        const added = all.filter((n) => !before.has(n.metadata!.name!) && isReady(n) && !isCordoned(n));
        note(`${all.length} node(s) in pool, ${added.length} new and Ready`);
        return added.sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!))[0]?.metadata?.name;
      },
      { describe: `a new Ready node in pool ${d.pool} after deleting ${d.node} (is the cluster autoscaler enabled on the pool? otherwise: az aks nodepool scale --name ${d.pool} ...)`, timeoutMs: Math.max(ctx.deadline - Date.now(), 1), intervalMs: POLL_MS, signal: ctx.signal },
    );
    await waitForNmiActive(ctx, d.pool, fresh);
    await waitForWorkloads(ctx, d.pool);
    return fresh;
  });
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
      const h = await checkNmiHealth(ctx.kube, pod);
      note(`NMI ${pod.metadata!.name}: ${h.body || 'no answer'}`);
      return h.active;
    },
    { describe: `NMI on node ${node} to report Active`, timeoutMs: Math.max(ctx.deadline - Date.now(), 1), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

async function uncordon(kube: KubeGateway, node: string): Promise<void> {
  // A merge patch with null removes the field, leaving the Node as it was before the cordon.
  await kube.patch(KINDS.Node, undefined, node, { spec: { unschedulable: null } }, 'merge');
}

/** Workloads evicted from the pool's node, from the drain action's result. */
function evictedWorkloads(ctx: Ctx, pool: string): WorkloadRef[] {
  const rec = liveRecords(ctx).filter((r) => r.actionId === `pool/${pool}/drain` && r.status === 'done').at(-1);
  return (rec?.result as DrainResult | undefined)?.workloads ?? [];
}

/** Why a workload is below its desired replica count, or undefined when it is back. */
async function workloadGap(kube: KubeGateway, w: WorkloadRef): Promise<string | undefined> {
  const ref = w.kind === 'Deployment' ? KINDS.Deployment : w.kind === 'StatefulSet' ? KINDS.StatefulSet : KINDS.ReplicaSet;
  const obj = await kube.get(ref, w.namespace, w.name);
  if (!obj) return undefined; // deleted meanwhile by its owner: nothing to wait for
  const want = (obj.spec as { replicas?: number } | undefined)?.replicas ?? 1;
  const st = (obj.status ?? {}) as { availableReplicas?: number; readyReplicas?: number };
  const have = w.kind === 'StatefulSet' ? (st.readyReplicas ?? 0) : (st.availableReplicas ?? 0);
  return have >= want ? undefined : `${w.kind.toLowerCase()} ${w.namespace}/${w.name} ${have}/${want} available`;
}

async function waitForWorkloads(ctx: Ctx, pool: string): Promise<void> {
  const workloads = evictedWorkloads(ctx, pool);
  if (!workloads.length) return;
  ctx.progress(`pool ${pool}: waiting for ${workloads.length} evicted workload(s) to be back at their replica counts`);
  await ctx.kube.waitFor(
    async (note) => {
      const gaps = (await Promise.all(workloads.map((w) => workloadGap(ctx.kube, w)))).filter(Boolean);
      if (gaps.length) note(gaps.join(', '));
      return gaps.length === 0;
    },
    { describe: `evicted workloads of pool ${pool} back at their replica counts`, timeoutMs: Math.max(ctx.deadline - Date.now(), 1), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const inv = inventoryOf(ctx);
  const fresh = ctx.journal.getData<Record<string, string>>('freshNodes') ?? {};
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

async function rollback(ctx: Ctx): Promise<StepOutcome> {
  const records = liveRecords(ctx);
  const seen = new Set<string>();
  let uncordoned = 0;
  const replaced: string[] = [];
  for (const r of [...records].reverse()) {
    if (r.actionId.endsWith('/replace') && r.status === 'done') {
      const pre = r.preState as ReplacePreState | undefined;
      if (pre && pre.strategy !== 'none') replaced.push(`${pre.node} (${pre.strategy === 'reimage' ? 'reimaged' : 'deleted'})`);
    }
  }
  for (const r of [...records].reverse()) {
    if (!r.actionId.endsWith('/drain')) continue;
    const pre = r.preState as DrainPreState | undefined;
    if (!pre || seen.has(pre.node)) continue;
    seen.add(pre.node);
    const node = await ctx.kube.get(KINDS.Node, undefined, pre.node);
    if (node && isCordoned(node) && !pre.wasUnschedulable) {
      ctx.progress(`uncordon ${pre.node}`);
      await uncordon(ctx.kube, pre.node);
      uncordoned++;
    }
  }
  for (const r of records) await ctx.journal.markRolledBack(r.actionId);
  const note = replaced.length ? `; replaced node${replaced.length === 1 ? '' : 's'} ${replaced.join(', ')} stay replaced (a reimage or delete cannot be undone; evicted pods were rescheduled)` : '';
  return { summary: `uncordoned ${uncordoned} node${uncordoned === 1 ? '' : 's'}${note}` };
}

async function verifyRollback(ctx: Ctx): Promise<CheckResult> {
  const evidence: string[] = [];
  const failures: string[] = [];
  const seen = new Set<string>();
  for (const r of ctx.journal.records()) {
    if (!r.actionId.endsWith('/drain')) continue;
    const pre = r.preState as DrainPreState | undefined;
    if (!pre || seen.has(pre.node)) continue;
    seen.add(pre.node);
    const node = await ctx.kube.get(KINDS.Node, undefined, pre.node);
    if (!node) evidence.push(`node ${pre.node} no longer exists (deleted by the drain)`);
    else if (isCordoned(node) && !pre.wasUnschedulable) failures.push(`node ${pre.node} is still cordoned`);
    else evidence.push(`node ${pre.node} ${isCordoned(node) ? 'cordoned as before' : 'schedulable'}`);
  }
  return { ok: failures.length === 0, evidence, failures };
}

async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw signal.reason;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The `drain` step. */
export const drainStep: Step<KubeGateway, AzureGateway> = {
  id: 'drain',
  title: 'Drain and replace one node per pool',
  plan,
  apply,
  check,
  rollback,
  verifyRollback,
  deadlineMs(options) {
    // Each pool may spend the drain timeout on evictions plus a reimage (minutes on Azure).
    return Math.max(DEFAULT_STEP_TIMEOUT_MS, 8 * (drainTimeoutOf(options) + 10 * 60_000));
  },
};

export default drainStep;
