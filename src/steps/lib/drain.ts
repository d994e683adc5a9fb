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

// The pod and node rules are kubectl drain's filter chain (drain-rules.ts): one implementation.
export { chooseNode, dispositionOf, isJobPod, isServicePod, nodeNameOf, podKey, type NodeCandidate, type PodDisposition } from './drain-rules.ts';

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
