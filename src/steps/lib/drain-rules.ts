/**
 * `kubectl drain`'s rules as one pure filter chain, with a typed verdict for every pod on a node,
 * plus the PodDisruptionBudget analysis that tells a drain which can never succeed from one that
 * only has to wait. Pure: no gateway, no clock (the caller passes `now` where time matters), so
 * `plan` and `apply` reach the same verdicts from the same objects.
 *
 * The chain follows kubectl's `pkg/drain/filters.go` in its order and messages
 * (skip-deleted, DaemonSet, mirror, local storage, unreplicated), with this tool's flag names:
 * `--delete-emptydir-data` (as kubectl) and `--drain-force` (kubectl's `--force`). DaemonSet pods
 * are always ignored, as with `kubectl drain --ignore-daemonsets`: the drain only replaces the node.
 *
 * It also holds the node helpers the drain step needs (pool, readiness, cordon, VMSS instance,
 * node choice), a superset of the ones at the top of `05-drain.ts`, with the same inputs.
 */
import type { KubeObject } from '../../kube/gateway.ts';
import { isCordoned, isReady, poolOf, vmssOfNode, type VmssRef } from './nodes.ts';

// ---- kubectl's messages (pkg/drain/filters.go), with this tool's flag names -------------------

/** kubectl's warning for DaemonSet pods under `--ignore-daemonsets` (always on here). */
export const DAEMONSET_WARNING = 'ignoring DaemonSet-managed Pods';
/** kubectl's refusal for pods with `emptyDir` volumes. */
export const LOCAL_STORAGE_FATAL = 'Pods with local storage (use --delete-emptydir-data to override)';
/** kubectl's warning when local storage is deleted under the flag. */
export const LOCAL_STORAGE_WARNING = 'deleting Pods with local storage';
/** kubectl's refusal for pods without a controller (kubectl says `--force`; this tool `--drain-force`). */
export const UNMANAGED_FATAL = 'cannot delete Pods that declare no controller (use --drain-force to override)';
/** kubectl's warning when such pods are deleted under the flag. */
export const UNMANAGED_WARNING = 'deleting Pods that declare no controller';

/** The flags that lift a drain rule's refusal. */
export type DrainFlag = '--delete-emptydir-data' | '--drain-force';

/**
 * What the drain does with a pod:
 * - `skip`: left on the node (DaemonSet and mirror pods);
 * - `evict`: through the Eviction API, honouring PodDisruptionBudgets;
 * - `delete`: a finished pod (Succeeded/Failed), removed without any budget involved;
 * - `wait`: already terminating, or its budget is exhausted for now: the drain waits for it;
 * - `block`: the drain cannot proceed as asked (a flag is missing, or a budget never allows it).
 */
export type DrainAction = 'skip' | 'evict' | 'delete' | 'wait' | 'block';

/** Stable code of the rule that decided a verdict (for journals, JSON output and tests). */
export type DrainRule =
  | 'terminating'
  | 'daemonset'
  | 'daemonset-orphaned'
  | 'mirror'
  | 'finished'
  | 'local-storage'
  | 'unreplicated'
  | 'controlled'
  | 'pdb-never-allows'
  | 'pdb-exhausted'
  | 'pdb-multiple';

/** The verdict on one pod. */
export interface DrainVerdict {
  /** `namespace/name`. */
  pod: string;
  action: DrainAction;
  /** kubectl's wording where kubectl has one; always says why. */
  reason: string;
  /** The flag that would lift a `block` (the first one missing, in kubectl's filter order), or that allowed an `evict`. */
  flag?: DrainFlag;
  /** Every flag this pod needs, when it needs more than one (a bare pod with an `emptyDir`). */
  flags?: DrainFlag[];
  rule: DrainRule;
  /** The PodDisruptionBudget(s) behind a `pdb-*` verdict, as `namespace/name`. */
  budgets?: string[];
  /** For a `block`: what the operator can do, each one a change that would make the drain work. */
  fixes?: string[];
}

/** The drain's flags, as the step options carry them. */
export interface DrainRuleOptions {
  /** `--delete-emptydir-data`: evict pods whose `emptyDir` data is lost with the pod. */
  deleteEmptyDirData?: boolean;
  /** `--drain-force`: evict pods without a controller (they are not recreated), and orphaned DaemonSet pods. */
  force?: boolean;
  /**
   * DaemonSets that exist, as `namespace/name`. When given, a DaemonSet pod whose DaemonSet is
   * gone is orphaned (kubectl: deleted with `--force`, refused without); when absent, every
   * DaemonSet pod is taken as managed.
   */
  existingDaemonSets?: ReadonlySet<string>;
}

// ---- small pod and node readers ------------------------------------------------------------

/** Pool labels AKS puts on nodes (the older one first seen on clusters created before 2021). */
export const POOL_LABELS = ['kubernetes.azure.com/agentpool', 'agentpool'] as const;

/** The annotation the kubelet puts on the API mirror of a static pod. */
export const MIRROR_POD_ANNOTATION = 'kubernetes.io/config.mirror';

/** `namespace/name`. */
export function podKey(pod: KubeObject): string {
  return `${pod.metadata?.namespace}/${pod.metadata?.name}`;
}

/** The node a pod is bound to. */
export function nodeNameOf(pod: KubeObject): string | undefined {
  return (pod.spec as { nodeName?: string } | undefined)?.nodeName;
}

/** The pod's controlling owner (`ownerReferences[].controller`), as `metav1.GetControllerOf`. */
export function controllerOf(obj: KubeObject): { kind: string; name: string } | undefined {
  const ref = obj.metadata?.ownerReferences?.find((o) => o.controller) ?? undefined;
  return ref ? { kind: ref.kind, name: ref.name } : undefined;
}

/** The pod's phase. */
export function phaseOf(pod: KubeObject): string | undefined {
  return (pod.status as { phase?: string } | undefined)?.phase;
}

/** Succeeded or Failed: kubectl's "any finished pod can be removed". */
export function isFinished(pod: KubeObject): boolean {
  const phase = phaseOf(pod);
  return phase === 'Succeeded' || phase === 'Failed';
}

/** Already being deleted (has a `deletionTimestamp`). */
export function isTerminating(pod: KubeObject): boolean {
  return Boolean(pod.metadata?.deletionTimestamp);
}

/** A static pod's mirror. */
export function isMirrorPod(pod: KubeObject): boolean {
  return pod.metadata?.annotations?.[MIRROR_POD_ANNOTATION] !== undefined;
}

/** kubectl's `hasLocalStorage`: any `emptyDir` volume. */
export function hasLocalStorage(pod: KubeObject): boolean {
  const volumes = (pod.spec as { volumes?: { emptyDir?: unknown }[] } | undefined)?.volumes ?? [];
  return volumes.some((v) => v.emptyDir !== undefined && v.emptyDir !== null);
}

/** A pod of a Job (comes and goes; never counted when choosing a node). */
export function isJobPod(pod: KubeObject): boolean {
  return controllerOf(pod)?.kind === 'Job';
}

/** A pod of a long-lived service using Pod Identity (carries `aadpodidbinding`, not a Job pod). */
export function isServicePod(pod: KubeObject): boolean {
  return Boolean(pod.metadata?.labels?.['aadpodidbinding']) && !isJobPod(pod);
}

/** True when the pod's `Ready` condition is `True`. */
export function isPodReady(pod: KubeObject): boolean {
  const conds = (pod.status as { conditions?: { type?: string; status?: string }[] } | undefined)?.conditions ?? [];
  return conds.some((c) => c.type === 'Ready' && c.status === 'True');
}

// Node helpers have one implementation (nodes.ts); the drain rules use and re-export them.
export { isCordoned, isReady, poolOf, vmssOfNode, type VmssRef };

// ---- the filter chain ----------------------------------------------------------------------

/** How `kubectl drain` treats a pod, in the coarse terms of `05-drain.ts` (kept for its callers). */
export type PodDisposition = 'daemonset' | 'mirror' | 'unreplicated' | 'evict';

/** The coarse disposition of `05-drain.ts`: DaemonSet and mirror pods stay; pods without a controller are refused unless forced. */
export function dispositionOf(pod: KubeObject): PodDisposition {
  if (isMirrorPod(pod)) return 'mirror';
  const ctl = controllerOf(pod);
  if (ctl?.kind === 'DaemonSet') return 'daemonset';
  if (!ctl) return 'unreplicated';
  return 'evict';
}

/** One link of the chain: a verdict that ends the chain, or undefined to pass the pod on. */
type PodFilter = (pod: KubeObject, opts: DrainRuleOptions) => Omit<DrainVerdict, 'pod'> | undefined;

// kubectl's skipDeletedFilter: a pod already being deleted is not evicted again; the drain
// waits for it to go (kubectl waits too, unless it is older than --skip-wait-for-delete-timeout).
const terminatingFilter: PodFilter = (pod) =>
  isTerminating(pod) ? { action: 'wait', rule: 'terminating', reason: 'already terminating: the drain waits until it is gone' } : undefined;

const daemonSetFilter: PodFilter = (pod, opts) => {
  const ctl = controllerOf(pod);
  if (ctl?.kind !== 'DaemonSet') return undefined;
  // kubectl: "Any finished pod can be removed."
  if (isFinished(pod)) return undefined;
  const ds = `${pod.metadata?.namespace}/${ctl.name}`;
  if (opts.existingDaemonSets && !opts.existingDaemonSets.has(ds)) {
    if (opts.force) return { action: 'evict', rule: 'daemonset-orphaned', flag: '--drain-force', reason: `daemonsets.apps "${ctl.name}" not found: the orphaned DaemonSet pod is deleted` };
    return { action: 'block', rule: 'daemonset-orphaned', flag: '--drain-force', reason: `daemonsets.apps "${ctl.name}" not found (use --drain-force to delete the orphaned pod)` };
  }
  return { action: 'skip', rule: 'daemonset', reason: DAEMONSET_WARNING };
};

const mirrorFilter: PodFilter = (pod) => (isMirrorPod(pod) ? { action: 'skip', rule: 'mirror', reason: 'mirror pod of a static pod: the kubelet owns it' } : undefined);

const finishedFilter: PodFilter = (pod) =>
  isFinished(pod) ? { action: 'delete', rule: 'finished', reason: `finished (${phaseOf(pod)}): any finished pod can be removed, no disruption budget involved` } : undefined;

/**
 * The last two filters of kubectl's chain, merged so that a pod needing both flags names both
 * (kubectl stops at the first and the operator finds the second on the next try).
 */
const storageAndControllerFilter: PodFilter = (pod, opts) => {
  const missing: DrainFlag[] = [];
  const reasons: string[] = [];
  const warnings: string[] = [];
  if (hasLocalStorage(pod)) {
    if (opts.deleteEmptyDirData) warnings.push(LOCAL_STORAGE_WARNING);
    else {
      missing.push('--delete-emptydir-data');
      reasons.push(LOCAL_STORAGE_FATAL);
    }
  }
  const bare = controllerOf(pod) === undefined;
  if (bare) {
    if (opts.force) warnings.push(`${UNMANAGED_WARNING}: it is not recreated`);
    else {
      missing.push('--drain-force');
      reasons.push(UNMANAGED_FATAL);
    }
  }
  if (missing.length) {
    return {
      action: 'block',
      rule: missing[0] === '--delete-emptydir-data' ? 'local-storage' : 'unreplicated',
      flag: missing[0],
      ...(missing.length > 1 ? { flags: missing } : {}),
      reason: reasons.join('; '),
    };
  }
  if (warnings.length) {
    const flag: DrainFlag = bare ? '--drain-force' : '--delete-emptydir-data';
    return { action: 'evict', rule: bare ? 'unreplicated' : 'local-storage', flag, ...(bare && hasLocalStorage(pod) ? { flags: ['--delete-emptydir-data', '--drain-force'] as DrainFlag[] } : {}), reason: warnings.join('; ') };
  }
  return undefined;
};

/** kubectl's order: deleted, DaemonSet, mirror, (finished), local storage, unreplicated. */
const CHAIN: readonly PodFilter[] = [terminatingFilter, daemonSetFilter, mirrorFilter, finishedFilter, storageAndControllerFilter];

/** The chain's verdict on one pod, before any PodDisruptionBudget is considered. */
export function podVerdict(pod: KubeObject, opts: DrainRuleOptions = {}): DrainVerdict {
  for (const filter of CHAIN) {
    const v = filter(pod, opts);
    if (v) return { pod: podKey(pod), ...v };
  }
  const ctl = controllerOf(pod)!;
  return { pod: podKey(pod), action: 'evict', rule: 'controlled', reason: `managed by ${ctl.kind} ${ctl.name}: recreated elsewhere` };
}

// ---- PodDisruptionBudgets ------------------------------------------------------------------

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/**
 * Whether a PodDisruptionBudget selects a pod (same namespace, label selector). In policy/v1 an
 * empty selector selects every pod of the namespace; a missing one selects none.
 */
export function budgetSelects(pdb: KubeObject, pod: KubeObject): boolean {
  if (pdb.metadata?.namespace !== pod.metadata?.namespace) return false;
  const sel = (pdb.spec as { selector?: LabelSelector | null } | undefined)?.selector;
  if (!sel) return false;
  const labels = pod.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    const values = e.values ?? [];
    if (e.operator === 'In' && !(has && values.includes(labels[e.key]))) return false;
    if (e.operator === 'NotIn' && has && values.includes(labels[e.key])) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/** An int-or-percent scaled as the disruption controller does (`GetScaledValueFromIntOrPercent`, rounding up). */
export function scaledValue(value: number | string, total: number): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+)%$/.exec(value.trim());
  if (m) return Math.ceil((Number(m[1]) * total) / 100);
  const n = Number(value);
  if (Number.isInteger(n)) return n;
  throw new Error(`invalid int-or-percent value ${JSON.stringify(value)}`);
}

/** How a budget stands for a drain that must evict some of its pods. */
export interface BudgetStanding {
  /** `namespace/name`. */
  budget: string;
  /** `minAvailable: 2`, `maxUnavailable: 0`, `minAvailable: 100%`. */
  rule: string;
  /** Pods the budget counts (the controllers' replicas for percentages and maxUnavailable). */
  expectedPods: number;
  /** Healthy pods it needs to keep. */
  desiredHealthy: number;
  /** Healthy pods now. */
  currentHealthy: number;
  /** Evictions allowed now. */
  disruptionsAllowed: number;
  /** `never`: even with every pod healthy the budget allows no eviction; `exhausted`: none now, some once pods are healthy; `allows`: evictions allowed now. */
  state: 'never' | 'exhausted' | 'allows';
}

/**
 * A budget's standing, from its spec and the pods it selects. `expectedPods` is the status's
 * when the disruption controller has computed it (it uses the controllers' scale for
 * percentages and `maxUnavailable`), else the number of selected, unfinished pods; healthy pods
 * are the Ready ones not terminating (the status's `currentHealthy` is used when newer than the
 * spec: it also leaves out pods evicted a moment ago).
 */
export function budgetStanding(pdb: KubeObject, pods: readonly KubeObject[]): BudgetStanding {
  const spec = (pdb.spec ?? {}) as { minAvailable?: number | string; maxUnavailable?: number | string };
  const status = (pdb.status ?? {}) as { expectedPods?: number; currentHealthy?: number; observedGeneration?: number };
  const selected = pods.filter((p) => budgetSelects(pdb, p) && !isFinished(p));
  const fresh = status.observedGeneration !== undefined && status.observedGeneration >= (pdb.metadata?.generation ?? 1);
  const expected = fresh && typeof status.expectedPods === 'number' ? status.expectedPods : selected.length;
  const healthyNow = selected.filter((p) => isPodReady(p) && !isTerminating(p)).length;
  const healthy = fresh && typeof status.currentHealthy === 'number' ? Math.min(status.currentHealthy, healthyNow) : healthyNow;
  let desired: number;
  let rule: string;
  if (spec.maxUnavailable !== undefined && spec.maxUnavailable !== null) {
    desired = Math.max(0, expected - scaledValue(spec.maxUnavailable, expected));
    rule = `maxUnavailable: ${spec.maxUnavailable}`;
  } else {
    const min = spec.minAvailable ?? 1;
    desired = scaledValue(min, expected);
    rule = `minAvailable: ${min}`;
  }
  const allowed = Math.max(0, healthy - desired);
  const state = expected - desired <= 0 ? 'never' : allowed > 0 ? 'allows' : 'exhausted';
  return { budget: podKey(pdb), rule, expectedPods: expected, desiredHealthy: desired, currentHealthy: healthy, disruptionsAllowed: allowed, state };
}

/** The Deployment / StatefulSet / ReplicaSet a pod's budget is about, named for a `kubectl scale` hint. */
function workloadHint(pod: KubeObject): string | undefined {
  const ctl = controllerOf(pod);
  if (!ctl) return undefined;
  if (ctl.kind === 'ReplicaSet') {
    // A Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`.
    const m = /^(.*)-[a-z0-9]{5,10}$/.exec(ctl.name);
    return m ? `deployment/${m[1]}` : `replicaset/${ctl.name}`;
  }
  if (ctl.kind === 'StatefulSet') return `statefulset/${ctl.name}`;
  return undefined;
}

function budgetFixes(pdb: KubeObject, s: BudgetStanding, pods: readonly KubeObject[], pool: string | undefined): string[] {
  const ns = pdb.metadata!.namespace!;
  const name = pdb.metadata!.name!;
  const fixes: string[] = [];
  const workloads = [...new Set(pods.map(workloadHint).filter((w): w is string => Boolean(w)))].sort();
  const spec = (pdb.spec ?? {}) as { minAvailable?: number | string; maxUnavailable?: number | string };
  const scalable = typeof spec.minAvailable === 'number' || (spec.maxUnavailable === undefined && spec.minAvailable === undefined);
  // Scaling up only helps when the budget is a fixed count; a percentage or maxUnavailable: 0 grows with it.
  if (scalable && workloads.length) {
    for (const w of workloads) fixes.push(`scale the workload up so the budget leaves room: kubectl scale -n ${ns} ${w} --replicas=${s.desiredHealthy + 1}`);
  }
  const relaxed = spec.maxUnavailable !== undefined && spec.maxUnavailable !== null ? '{"spec":{"maxUnavailable":1}}' : `{"spec":{"minAvailable":${Math.max(0, s.expectedPods - 1)}}}`;
  fixes.push(`relax the budget for the cutover (and restore it afterwards): kubectl patch pdb -n ${ns} ${name} --type merge -p '${relaxed}'`);
  fixes.push(pool ? `skip the drain of pool ${pool} (its fresh-node test then runs on a node MIC has touched)` : 'skip the drain of this pool (its fresh-node test then runs on a node MIC has touched)');
  return fixes;
}

/** What the drain of one node has to do, pod by pod. */
export interface NodeDrainAnalysis {
  node: string;
  pool?: string;
  /** One verdict per pod bound to the node, sorted by pod key. */
  verdicts: DrainVerdict[];
  /** The standing of every budget that selects a pod the drain evicts. */
  budgets: BudgetStanding[];
  /** Verdicts with `action: 'block'`: the drain cannot proceed as asked. */
  blockers: DrainVerdict[];
  /** Pods to evict now (budgets allowing) and pods to delete (finished). */
  evict: string[];
  delete: string[];
  /** Pods the drain waits for (terminating, or their budget is exhausted for now). */
  wait: string[];
}

/** Input of {@link analyseNodeDrain}. */
export interface NodeDrainInput {
  node: string;
  pool?: string;
  /** Every pod the analysis may need: at least those on the node and every pod in their namespaces (a budget counts them all). */
  pods: readonly KubeObject[];
  /** PodDisruptionBudgets of those namespaces (others are ignored). */
  pdbs: readonly KubeObject[];
  options?: DrainRuleOptions;
}

/**
 * The verdict on every pod of a node: the filter chain, then, for each pod the chain would evict,
 * its PodDisruptionBudgets: a budget that allows no eviction even with every pod healthy
 * (`maxUnavailable: 0`, `minAvailable` equal to the replicas, `100%`, or a percentage that rounds
 * up to all of them) blocks, naming the budget and its pods on this node with fixes; one that is
 * only exhausted now (a pod is starting) makes the drain wait; a pod selected by more than one
 * budget blocks, since the Eviction API refuses it outright.
 */
export function analyseNodeDrain(input: NodeDrainInput): NodeDrainAnalysis {
  const opts = input.options ?? {};
  const onNode = input.pods.filter((p) => nodeNameOf(p) === input.node).sort((a, b) => podKey(a).localeCompare(podKey(b)));
  const chained = onNode.map((p) => ({ pod: p, verdict: podVerdict(p, opts) }));
  const standings = new Map<string, BudgetStanding>();
  const standingOf = (pdb: KubeObject): BudgetStanding => {
    const key = podKey(pdb);
    let s = standings.get(key);
    if (!s) standings.set(key, (s = budgetStanding(pdb, input.pods)));
    return s;
  };
  const evicted = chained.filter((c) => c.verdict.action === 'evict');
  // Per budget, the pods on this node the drain would evict (for the blocker's message).
  const podsOfBudget = new Map<string, KubeObject[]>();
  for (const c of evicted) {
    for (const pdb of input.pdbs) if (budgetSelects(pdb, c.pod)) (podsOfBudget.get(podKey(pdb)) ?? podsOfBudget.set(podKey(pdb), []).get(podKey(pdb))!).push(c.pod);
  }
  const verdicts = chained.map(({ pod, verdict }): DrainVerdict => {
    if (verdict.action !== 'evict') return verdict;
    const budgets = input.pdbs.filter((b) => budgetSelects(b, pod));
    if (budgets.length === 0) return verdict;
    if (budgets.length > 1) {
      const names = budgets.map(podKey).sort();
      return {
        pod: verdict.pod,
        action: 'block',
        rule: 'pdb-multiple',
        budgets: names,
        reason: `This pod has more than one PodDisruptionBudget, which the eviction subresource does not support (${names.join(', ')})`,
        fixes: [`make exactly one budget select the pod: delete or narrow all but one of ${names.join(', ')}`, input.pool ? `skip the drain of pool ${input.pool}` : 'skip the drain of this pool'],
      };
    }
    const pdb = budgets[0];
    const s = standingOf(pdb);
    const names = (podsOfBudget.get(s.budget) ?? []).map(podKey).sort();
    if (s.state === 'never') {
      return {
        pod: verdict.pod,
        action: 'block',
        rule: 'pdb-never-allows',
        budgets: [s.budget],
        reason: `PodDisruptionBudget ${s.budget} (${s.rule}) allows no disruption even with all ${s.expectedPods} pod${s.expectedPods === 1 ? '' : 's'} healthy (needs ${s.desiredHealthy}): the drain can never evict ${names.join(', ')}`,
        fixes: budgetFixes(pdb, s, podsOfBudget.get(s.budget) ?? [], input.pool),
      };
    }
    if (s.state === 'exhausted') {
      return {
        pod: verdict.pod,
        action: 'wait',
        rule: 'pdb-exhausted',
        budgets: [s.budget],
        reason: `PodDisruptionBudget ${s.budget} (${s.rule}) allows no disruption now: ${s.currentHealthy} healthy of ${s.desiredHealthy} needed (a pod is starting); the eviction is retried until the drain timeout`,
      };
    }
    return { ...verdict, budgets: [s.budget] };
  });
  const budgetsSeen = [...standings.values()].sort((a, b) => a.budget.localeCompare(b.budget));
  return {
    node: input.node,
    ...(input.pool ? { pool: input.pool } : {}),
    verdicts,
    budgets: budgetsSeen,
    blockers: verdicts.filter((v) => v.action === 'block'),
    evict: verdicts.filter((v) => v.action === 'evict').map((v) => v.pod),
    delete: verdicts.filter((v) => v.action === 'delete').map((v) => v.pod),
    wait: verdicts.filter((v) => v.action === 'wait').map((v) => v.pod),
  };
}

/** A plan blocker in the engine's shape (`code`, `subject`, `message`, `fix`). */
export interface DrainBlocker {
  code: string;
  subject: string;
  message: string;
  fix: string;
}

/**
 * The blockers of a node's analysis, grouped as an operator fixes them: one per missing flag
 * (naming every pod it concerns) and one per budget (naming its pods on the node).
 */
export function drainBlockers(a: NodeDrainAnalysis): DrainBlocker[] {
  const out: DrainBlocker[] = [];
  const where = `node ${a.node}${a.pool ? ` (pool ${a.pool})` : ''}`;
  const byFlag = new Map<DrainFlag, string[]>();
  for (const v of a.blockers) {
    if (!v.rule.startsWith('pdb-')) for (const f of v.flags ?? (v.flag ? [v.flag] : [])) (byFlag.get(f) ?? byFlag.set(f, []).get(f)!).push(v.pod);
  }
  for (const [flag, pods] of [...byFlag].sort((x, y) => x[0].localeCompare(y[0]))) {
    const what = flag === '--delete-emptydir-data' ? `pods with emptyDir volumes (their data is lost with the pod)` : `pods that declare no controller (they would not be recreated)`;
    out.push({
      code: flag === '--delete-emptydir-data' ? 'drain-local-storage' : 'drain-unreplicated',
      subject: where,
      message: `the drain of ${where} would remove ${what}: ${pods.join(', ')}.`,
      fix: `apply with ${flag} to allow it, or move or delete those pods first.`,
    });
  }
  const byBudget = new Map<string, DrainVerdict[]>();
  for (const v of a.blockers) if (v.rule.startsWith('pdb-')) for (const b of v.budgets ?? []) (byBudget.get(b) ?? byBudget.set(b, []).get(b)!).push(v);
  for (const [budget, vs] of [...byBudget].sort((x, y) => x[0].localeCompare(y[0]))) {
    out.push({
      code: vs[0].rule === 'pdb-multiple' ? 'pdb-multiple' : 'pdb-blocks-drain',
      subject: `PodDisruptionBudget ${budget}`,
      message: `${vs[0].reason}${vs[0].rule === 'pdb-multiple' ? `: ${vs.map((v) => v.pod).join(', ')}` : ''}; on ${where}.`,
      fix: (vs[0].fixes ?? []).join('; or '),
    });
  }
  // Orphaned DaemonSet pods: their own flag message.
  for (const v of a.blockers) if (v.rule === 'daemonset-orphaned' && !byFlag.has('--drain-force')) out.push({ code: 'drain-orphaned-daemonset-pod', subject: where, message: `${v.pod}: ${v.reason}.`, fix: 'apply with --drain-force to delete it.' });
  return out;
}

// ---- node choice -----------------------------------------------------------------------------

/** A node candidate for a pool, with the counts the choice is made on. */
export interface NodeCandidate {
  name: string;
  ready: boolean;
  cordoned: boolean;
  /** Pods of long-lived services (carry `aadpodidbinding`, not Job pods). */
  servicePods: number;
  /** Pods that would be evicted, Job pods excluded (they come and go). */
  stablePods: number;
  /** Pods whose verdict blocks the drain of this node (with the options given); 0 when not computed. */
  blockedPods?: number;
}

/**
 * A node's candidate record from its pods (skipped, finished and terminating pods left out of the counts).
 * `options` only feeds `blockedPods`.
 */
export function candidateOf(node: KubeObject, podsOnNode: readonly KubeObject[], options: DrainRuleOptions = {}): NodeCandidate {
  const verdicts = podsOnNode.map((p) => ({ p, v: podVerdict(p, options) }));
  const evictable = verdicts.filter(({ v }) => v.action === 'evict' || (v.action === 'block' && !v.rule.startsWith('pdb-') && v.rule !== 'daemonset-orphaned')).map(({ p }) => p);
  return {
    name: node.metadata!.name!,
    ready: isReady(node) && !node.metadata?.deletionTimestamp,
    cordoned: isCordoned(node),
    servicePods: evictable.filter(isServicePod).length,
    stablePods: evictable.filter((p) => !isJobPod(p)).length,
    blockedPods: verdicts.filter(({ v }) => v.action === 'block').length,
  };
}

/**
 * Picks the node to drain in a pool: among Ready, schedulable nodes, the one with the fewest
 * blocked pods, then the fewest service pods, then the fewest other long-lived pods, then by name
 * (deterministic, so a plan made a minute ago names the same node). Refuses when the pool has no
 * other Ready node to take the evicted pods. Job pods are ignored: under churn they would make
 * the choice flicker.
 */
export function chooseNode(pool: string, candidates: readonly NodeCandidate[]): { node?: NodeCandidate; problem?: string } {
  const ready = candidates.filter((c) => c.ready);
  const usable = ready.filter((c) => !c.cordoned);
  if (ready.length < 2) return { problem: `pool ${pool} has ${ready.length} Ready node${ready.length === 1 ? '' : 's'}; draining ${ready.length ? 'it' : 'one'} would leave its pods nowhere to run` };
  if (usable.length === 0) return { problem: `every Ready node of pool ${pool} is cordoned` };
  const sorted = [...usable].sort((a, b) => (a.blockedPods ?? 0) - (b.blockedPods ?? 0) || a.servicePods - b.servicePods || a.stablePods - b.stablePods || a.name.localeCompare(b.name));
  return { node: sorted[0] };
}
