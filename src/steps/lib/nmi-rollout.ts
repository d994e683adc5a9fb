/**
 * How step `nmi-managed` rolls NMI out (`--nmi-rollout`, `--nmi-max-unavailable`), the shape of
 * the cluster that decides its cost, and the estimates `plan` shows: pods a `drain` rollout
 * evicts, pod-seconds of NMI gap an `in-place` rollout is expected to cost, and how long either
 * takes. Pure: the step feeds it what it has read.
 */
import { UsageError } from '../../engine/errors.ts';
import { DEFAULT_STEP_TIMEOUT_MS, formatDuration } from '../../engine/durations.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import { DEFAULT_KUBE_RATE_LIMIT } from '../../kube/rate-limiter.ts';
import { dispositionOf, isJobPod, isServicePod, nodeNameOf } from './drain.ts';
import { poolOf } from './nodes.ts';

/** `in-place`: the DaemonSet's rolling update; `drain`: NMI restarted on nodes emptied of service pods. */
export type NmiRollout = 'in-place' | 'drain';
export const NMI_ROLLOUTS: readonly NmiRollout[] = ['in-place', 'drain'];

/**
 * The default rollout: `drain`. Measured on the default scenario (README, "Outage"): `in-place`
 * leaves every node without interception while its NMI restarts, `drain` has no service pod there
 * at that moment, for the price of one eviction per pod.
 */
export const DEFAULT_NMI_ROLLOUT: NmiRollout = 'drain';

/**
 * Simulated seconds one node's NMI restart leaves its pods without interception (NMI deletes
 * its iptables chain on SIGTERM and sleeps 10 s; the new pod needs about two more to be Active).
 */
export const NMI_GAP_SECONDS = 12;
/** Seconds per node of an in-place rollout (restart and the DaemonSet's availability check, measured at ~16 s). */
export const IN_PLACE_NODE_SECONDS = 16;
/**
 * Cluster seconds per wave of a drain rollout that no request rate shortens: the evicted pods'
 * termination, NMI's 10 s termination sleep, the new pod's start-up until Active, the uncordon.
 */
export const DRAIN_NODE_SECONDS = 22;
/**
 * Kubernetes requests of a drain rollout, fitted on the sandbox's default (13 nodes, 45
 * evictions) and large (200 nodes, 2,222 evictions) scenarios: per eviction the POST, the polls
 * until the pod is gone and its owner's read; per node the cordon, the pod lists, the NMI pod
 * delete, the polls until the new pod answers Active, the uncordon. The tool's client sends at
 * most {@link DEFAULT_KUBE_RATE_LIMIT} requests per second, so a wave with many evictions takes
 * as long as its requests need, whatever the cluster's own pace.
 */
export const DRAIN_REQUESTS_PER_EVICTION = 3.3;
export const DRAIN_REQUESTS_PER_NODE = 14;

/** Validates `--nmi-rollout`. @throws UsageError naming the flag */
export function parseNmiRollout(value: string | undefined): NmiRollout | undefined {
  if (value === undefined) return undefined;
  if (!(NMI_ROLLOUTS as readonly string[]).includes(value)) throw new UsageError(`--nmi-rollout: "${value}" is not a rollout strategy.`, `Use one of: ${NMI_ROLLOUTS.join(', ')}.`);
  return value as NmiRollout;
}

/** Validates `--nmi-max-unavailable` (`N` or `P%`, like a DaemonSet's `maxUnavailable`). @throws UsageError naming the flag */
export function parseMaxUnavailable(value: string | undefined): number | string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^[1-9]\d*$/.test(v)) return Number(v);
  const m = /^(\d+)%$/.exec(v);
  if (m && Number(m[1]) > 0 && Number(m[1]) <= 100) return v;
  throw new UsageError(`--nmi-max-unavailable: "${value}" is not a count or a percentage.`, 'Give a positive number of nodes (e.g. 2) or a percentage of 1-100 (e.g. 25%).');
}

/** `--nmi-max-unavailable` from the step options (default 1). */
export function maxUnavailableOf(options: Record<string, unknown>): number | string {
  const v = options.nmiMaxUnavailable;
  return typeof v === 'number' || typeof v === 'string' ? v : 1;
}

/** `maxUnavailable` resolved against `total` nodes, rounded up as the DaemonSet controller does, at least 1. */
export function resolveMaxUnavailable(value: number | string, total: number): number {
  if (typeof value === 'number') return Math.max(1, value);
  const pct = Number(value.replace('%', ''));
  return Math.max(1, Math.ceil((pct * total) / 100));
}

/** `--step-timeout` as handed to the steps, else the default. */
export function stepTimeoutOf(options: Record<string, unknown>): number {
  return typeof options.stepTimeoutMs === 'number' ? options.stepTimeoutMs : DEFAULT_STEP_TIMEOUT_MS;
}

/** One node running NMI, and what is on it. */
export interface NmiNode {
  name: string;
  pool: string;
  cordoned: boolean;
  /** Its NMI pod's container args (undefined: no NMI pod there). */
  nmiArgs?: string[];
  /** Long-lived pods a drain evicts (not DaemonSet, mirror, job, finished or terminating). */
  stablePods: number;
  /** Of those, pods with an `aadpodidbinding` label (their token requests cross the NMI gap). */
  servicePods: number;
  /** Pods a drain refuses without `--drain-force` (no controller), as `namespace/name`. */
  unreplicated: string[];
  /** MIC pods on the node (its NMI restarts last in its pool, so MIC keeps assigning meanwhile). */
  micPods?: number;
}

/** Nodes with their NMI pod and workload, grouped by pool (pools and nodes sorted by name). */
export function clusterShape(nodes: readonly KubeObject[], pods: readonly KubeObject[], nmi: { namespace: string; name: string; container: string }, isMicPod: (pod: KubeObject) => boolean = () => false): Map<string, NmiNode[]> {
  const byNode = new Map<string, KubeObject[]>();
  for (const p of pods) {
    const n = nodeNameOf(p);
    if (!n) continue;
    (byNode.get(n) ?? byNode.set(n, []).get(n)!).push(p);
  }
  const out = new Map<string, NmiNode[]>();
  for (const node of [...nodes].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))) {
    const name = node.metadata?.name ?? '';
    const pool = poolOf(node) ?? '(no pool)';
    const onNode = byNode.get(name) ?? [];
    const nmiPod = onNode.find((p) => !p.metadata?.deletionTimestamp && p.metadata?.namespace === nmi.namespace && p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet' && o.name === nmi.name));
    const live = onNode.filter((p) => {
      const phase = (p.status as { phase?: string } | undefined)?.phase;
      return !p.metadata?.deletionTimestamp && phase !== 'Succeeded' && phase !== 'Failed';
    });
    const evict = live.filter((p) => dispositionOf(p) === 'evict' && !isJobPod(p));
    const unreplicated = live.filter((p) => dispositionOf(p) === 'unreplicated').map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).sort();
    const nmiContainer = (nmiPod?.spec as { containers?: { name: string; args?: string[] }[] } | undefined)?.containers?.find((c) => c.name === nmi.container);
    const entry: NmiNode = {
      name,
      pool,
      cordoned: Boolean((node.spec as { unschedulable?: boolean } | undefined)?.unschedulable),
      ...(nmiPod ? { nmiArgs: nmiContainer?.args ?? [] } : {}),
      stablePods: evict.length,
      servicePods: evict.filter(isServicePod).length,
      unreplicated,
      micPods: live.filter(isMicPod).length,
    };
    (out.get(pool) ?? out.set(pool, []).get(pool)!).push(entry);
  }
  return new Map([...out.entries()].sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Drain-rollout waves: wave `w` takes, in every pool, its nodes `w*k .. w*k+k-1` where `k` is
 * `maxUnavailable` resolved against that pool's node count. Nodes that run MIC come last in
 * their pool (by name otherwise): a pod that started on a standard-mode node just before the
 * rollout still needs MIC to assign its identity, and a MIC leader evicted early would leave it
 * waiting out the lease.
 */
export function rolloutWaves(byPool: Map<string, NmiNode[]>, maxUnavailable: number | string, only?: ReadonlySet<string>): NmiNode[][] {
  const waves: NmiNode[][] = [];
  for (const all of byPool.values()) {
    const k = resolveMaxUnavailable(maxUnavailable, all.length);
    const ordered = [...all].sort((a, b) => Number((a.micPods ?? 0) > 0) - Number((b.micPods ?? 0) > 0) || a.name.localeCompare(b.name));
    const nodes = only ? ordered.filter((n) => only.has(n.name)) : ordered;
    nodes.forEach((n, i) => {
      const w = Math.floor(i / k);
      (waves[w] ??= []).push(n);
    });
  }
  return waves;
}

/** The figures the plan shows about a rollout of `nodes` (the nodes whose NMI restarts). */
export interface RolloutEstimate {
  nodes: number;
  evictions: number;
  servicePods: number;
  /** Expected pod-seconds of NMI gap of an in-place rollout. */
  gapPodSeconds: number;
  /** Expected wall-clock duration of the chosen rollout, ms (what `--step-timeout` limits). */
  durationMs: number;
  /** True when the client's request rate, not the cluster, sets most of that time (more nodes at once would not help). */
  requestBound?: boolean;
}

/** What the duration estimate depends on besides the cluster's shape. */
export interface EstimateEnv {
  /**
   * Cluster seconds per wall-clock second: 1 on a real cluster; the sandbox's `--time-scale`
   * (its NMI sleeps and pod terminations pass that much faster, its API calls do not).
   */
  clusterTimeScale?: number;
  /** Requests per second the Kubernetes client may send (default: the gateway's rate limit). */
  qps?: number;
}

/**
 * Estimates for the chosen rollout. A drain wave runs all its nodes at once and lasts the
 * longer of its cluster waits ({@link DRAIN_NODE_SECONDS}, at the cluster's pace) and the time
 * its requests need at the client's rate limit (every pool's evictions share one client). An
 * in-place rollout is the DaemonSet controller's pace, one batch of nodes after another.
 */
export function estimateRollout(rollout: NmiRollout, waves: NmiNode[][], maxUnavailable: number | string, env: EstimateEnv = {}): RolloutEstimate {
  const all = waves.flat();
  const servicePods = all.reduce((n, x) => n + x.servicePods, 0);
  const evictions = all.reduce((n, x) => n + x.stablePods, 0);
  const scale = env.clusterTimeScale && env.clusterTimeScale > 0 ? env.clusterTimeScale : 1;
  const qps = env.qps ?? DEFAULT_KUBE_RATE_LIMIT.qps;
  let seconds: number;
  let bound = 0;
  if (rollout === 'in-place') seconds = (Math.ceil(all.length / resolveMaxUnavailable(maxUnavailable, all.length)) * IN_PLACE_NODE_SECONDS) / scale;
  else {
    seconds = 0;
    // The first wave's pods start on their pools' later nodes and are evicted once more there.
    const movedTwice = waves.length > 1 ? waves[0].reduce((n, x) => n + x.stablePods, 0) : 0;
    for (const [w, wave] of waves.entries()) {
      const requests = wave.reduce((n, x) => n + x.stablePods * DRAIN_REQUESTS_PER_EVICTION + DRAIN_REQUESTS_PER_NODE, 0) + (w === 1 ? movedTwice * DRAIN_REQUESTS_PER_EVICTION : 0);
      const cluster = DRAIN_NODE_SECONDS / scale;
      seconds += Math.max(cluster, requests / qps);
      if (requests / qps > cluster) bound += requests / qps;
    }
  }
  return { nodes: all.length, evictions, servicePods, gapPodSeconds: servicePods * NMI_GAP_SECONDS, durationMs: Math.round(seconds * 1000), ...(rollout === 'drain' ? { requestBound: bound > seconds / 2 } : {}) };
}

/** The plan's lines about the trade-off and the duration (a warning when it exceeds `--step-timeout`). */
export function rolloutNotes(rollout: NmiRollout, maxUnavailable: number | string, e: RolloutEstimate, stepTimeoutMs: number): string[] {
  const s = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const notes: string[] = [];
  if (rollout === 'in-place') {
    notes.push(
      `NMI rollout in-place (rolling update, maxUnavailable ${maxUnavailable}): each node has a gap of ~${NMI_GAP_SECONDS} s while its NMI restarts, when pods reach IMDS directly; expected ~${e.gapPodSeconds} pod-seconds of NMI gap for ${s(e.servicePods, 'service pod')} on ${s(e.nodes, 'node')} (--nmi-rollout drain: 0, for ${s(e.evictions, 'eviction')})`,
    );
  } else {
    notes.push(
      `NMI rollout drain (${maxUnavailable} node(s) per pool at a time, updateStrategy OnDelete meanwhile): evicts ${s(e.evictions, 'pod')} (${e.servicePods} with a pod identity) from ${s(e.nodes, 'node')}, so no service pod is on a node while its NMI restarts (--nmi-rollout in-place: no eviction, ~${e.gapPodSeconds} pod-seconds of NMI gap expected)`,
    );
  }
  notes.push(`estimated duration ~${formatDuration(e.durationMs)} (wall clock, ${s(e.nodes, 'node')}${rollout === 'drain' ? `, ${s(e.evictions, 'eviction')} at the client's ${DEFAULT_KUBE_RATE_LIMIT.qps} requests/s` : ''})`);
  if (e.durationMs > stepTimeoutMs) {
    const faster = e.requestBound ? 'or use --nmi-rollout in-place (no eviction; more nodes at once would not help: the evictions\' requests set the pace)' : 'or --nmi-max-unavailable';
    notes.push(`warning: the estimated ${formatDuration(e.durationMs)} exceeds --step-timeout ${formatDuration(stepTimeoutMs)}; raise --step-timeout (e.g. --step-timeout ${Math.ceil((e.durationMs * 1.5) / 60_000)}m) ${faster}`);
  }
  return notes;
}
