/**
 * Drain domain rules shared by the drain step (plan, check) and its executors: how `kubectl
 * drain` treats each pod, which node of a pool to drain, the drain flags, and the fresh node
 * each pool ended with.
 */
import type { ActionRecord } from '../../engine/step.ts';
import type { KubeGateway, KubeObject } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import { controllerOf } from './nodes.ts';

/** How the drained node is made fresh. */
export type DrainStrategy = 'reimage' | 'delete' | 'none';

/** Default time evictions on one node may be retried while a PodDisruptionBudget refuses. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 5 * 60_000;

/** kubectl drain's retry interval after a PodDisruptionBudget refusal. */
export const EVICTION_RETRY_MS = 5_000;

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

export function isJobPod(pod: KubeObject): boolean {
  return controllerOf(pod)?.kind === 'Job';
}

export function isServicePod(pod: KubeObject): boolean {
  return Boolean(pod.metadata?.labels?.['aadpodidbinding']) && !isJobPod(pod);
}

export function podKey(pod: KubeObject): string {
  return `${pod.metadata?.namespace}/${pod.metadata?.name}`;
}

export function nodeNameOf(pod: KubeObject): string | undefined {
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

export function strategyOf(options: Record<string, unknown>): DrainStrategy {
  const s = options.drainStrategy;
  if (s === undefined) return 'reimage';
  if (s === 'reimage' || s === 'delete' || s === 'none') return s;
  throw new Error(`drain strategy ${JSON.stringify(s)} is not one of reimage, delete, none`);
}

export function drainTimeoutOf(options: Record<string, unknown>): number {
  const t = options.drainTimeoutMs;
  return typeof t === 'number' && t > 0 ? t : DEFAULT_DRAIN_TIMEOUT_MS;
}

/** kubectl's 5 s between eviction attempts; `evictionRetryMs` shortens it for rehearsals on a fast sandbox clock. */
export function retryIntervalOf(options: Record<string, unknown>): number {
  const t = options.evictionRetryMs;
  return typeof t === 'number' && t > 0 ? t : EVICTION_RETRY_MS;
}

/** Why a workload is below its desired replica count, or undefined when it is back. */
export async function workloadGap(kube: KubeGateway, w: WorkloadRef): Promise<string | undefined> {
  const ref = w.kind === 'Deployment' ? KINDS.Deployment : w.kind === 'StatefulSet' ? KINDS.StatefulSet : KINDS.ReplicaSet;
  const obj = await kube.get(ref, w.namespace, w.name);
  if (!obj) return undefined; // deleted meanwhile by its owner: nothing to wait for
  const want = (obj.spec as { replicas?: number } | undefined)?.replicas ?? 1;
  const st = (obj.status ?? {}) as { availableReplicas?: number; readyReplicas?: number };
  const have = w.kind === 'StatefulSet' ? (st.readyReplicas ?? 0) : (st.availableReplicas ?? 0);
  return have >= want ? undefined : `${w.kind.toLowerCase()} ${w.namespace}/${w.name} ${have}/${want} available`;
}


/** Pre-state of a drain action (rollback uncordons from it). */
export interface DrainPreState {
  pool: string;
  node: string;
  /** Whether the node was already cordoned before this step (then rollback leaves it cordoned). */
  wasUnschedulable: boolean;
}

/** Result of a replace action. */
export interface ReplaceResult {
  /** The pool's fresh node (the same name after a reimage, a new node after a delete). */
  fresh: string;
}

/**
 * The fresh node of each pool, from the replace actions recorded done (not rolled back) in
 * the drain step's journal.
 */
export function freshNodesFrom(records: readonly ActionRecord[]): Record<string, string> {
  const fresh: Record<string, string> = {};
  for (const r of records) {
    if (r.rolledBack || r.status !== 'done' || !/^pool\/[^/]+\/replace$/.test(r.actionId)) continue;
    const pool = r.actionId.split('/')[1];
    const result = r.result as ReplaceResult | string | undefined;
    const node = typeof result === 'string' ? result : result?.fresh;
    if (node) fresh[pool] = node;
  }
  return fresh;
}
