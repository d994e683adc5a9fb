/**
 * Pods that bypass NMI, and the pools where the migration puts them at risk (DOMAIN.md section 9).
 *
 * Two kinds of pod reach IMDS without NMI choosing an identity for them:
 * - `hostNetwork: true` pods: NMI's iptables redirect covers pod-network traffic only, so their
 *   calls to 169.254.169.254 go straight to IMDS;
 * - pods matched by an `AzurePodIdentityException` in their namespace (any of its `podLabels`,
 *   value compared case-insensitively as NMI's `labelInExceptionList` does): NMI passes their
 *   request to IMDS as it is.
 * Either way IMDS decides from the request alone: with exactly one user-assigned identity on the
 * scale set a call without `client_id` / `object_id` / `msi_res_id` silently gets that one; with
 * several it gets 400 "Multiple user assigned identities exist, please specify the clientId /
 * resourceId of the identity in the token request". So a pool whose scale set goes from one
 * user-assigned identity to several during `assign` breaks such callers that worked before.
 *
 * Pure: no gateway. The inventory and plan steps feed it what they have already read.
 */
import type { KubeObject } from '../../kube/gateway.ts';
import { isFinished, isTerminating, nodeNameOf, podKey, poolOf } from './drain-rules.ts';

/** Why a pod's IMDS calls do not go through NMI's identity selection. */
export type BypassRoute = 'hostNetwork' | 'exception';

/** A pod that calls IMDS without NMI picking its identity. */
export interface BypassPod {
  /** `namespace/name`. */
  pod: string;
  node?: string;
  pool?: string;
  via: BypassRoute[];
  /** The AzurePodIdentityExceptions that match it, as `namespace/name`. */
  exceptions: string[];
  /** Its `aadpodidbinding` label: it expects a pod identity, and NMI never hands it one. */
  binding?: string;
}

/** A VMSS's user-assigned identities now, by pool (the kubelet and add-on identities included). */
export interface PoolScaleSet {
  pool: string;
  vmss: string;
  identityIds: readonly string[];
}

/** What `assign` will add to a VMSS. */
export interface PlannedAssignment {
  vmss: string;
  identityIds: readonly string[];
}

/** A pool's exposure. */
export interface PoolBypassRisk {
  pool: string;
  vmss?: string;
  /** User-assigned identities on the VMSS before and after `assign` (case-insensitive union). */
  identitiesBefore: number;
  identitiesAfter: number;
  /** `assign` raises the VMSS from at most one user-assigned identity to several: bypassing calls without a client id start failing with 400. */
  raisedToSeveral: boolean;
  /** The VMSS already carries several: such calls fail today already (not caused by the migration). */
  alreadySeveral: boolean;
  pods: BypassPod[];
}

/** Input of {@link analyseNmiBypass}. */
export interface NmiBypassInput {
  pods: readonly KubeObject[];
  nodes: readonly KubeObject[];
  /** `AzurePodIdentityException` objects (any namespace; each applies to its own namespace only). */
  exceptions: readonly KubeObject[];
  scaleSets: readonly PoolScaleSet[];
  assignments: readonly PlannedAssignment[];
}

/** What {@link analyseNmiBypass} returns. */
export interface NmiBypassAnalysis {
  /** Every bypassing pod, sorted by pod key (Pod Identity's own NMI and MIC pods left out). */
  pods: BypassPod[];
  /** One entry per pool with bypassing pods or a VMSS, sorted by pool. */
  pools: PoolBypassRisk[];
}

/** A plan warning in the engine's blocker shape (`code`, `subject`, `message`, `fix`). */
export interface BypassWarning {
  code: 'nmi-bypass-several-identities' | 'nmi-bypass-already-several';
  subject: string;
  message: string;
  fix: string;
}

function labelsOf(pod: KubeObject): Record<string, string> {
  return pod.metadata?.labels ?? {};
}

/** True for `spec.hostNetwork: true`. */
export function usesHostNetwork(pod: KubeObject): boolean {
  return (pod.spec as { hostNetwork?: boolean } | undefined)?.hostNetwork === true;
}

/** The exceptions (same namespace) whose `spec.podLabels` match one of the pod's labels: key exact, value case-insensitive, as NMI compares them. */
export function matchingExceptions(pod: KubeObject, exceptions: readonly KubeObject[]): KubeObject[] {
  const labels = labelsOf(pod);
  return exceptions.filter((e) => {
    if (e.metadata?.namespace !== pod.metadata?.namespace) return false;
    const podLabels = (e.spec as { podLabels?: Record<string, string> } | undefined)?.podLabels ?? {};
    return Object.entries(podLabels).some(([k, v]) => Object.prototype.hasOwnProperty.call(labels, k) && labels[k].toLowerCase() === String(v).toLowerCase());
  });
}

/** Pod Identity's own pods: NMI always names the identity it asks for, and MIC is removed by the migration. */
function isPodIdentityComponent(pod: KubeObject): boolean {
  const containers = (pod.spec as { containers?: { image?: string }[] } | undefined)?.containers ?? [];
  return containers.some((c) => /\/aad-pod-identity\/(nmi|mic):/.test(String(c.image ?? '')));
}

/** Why a pod bypasses NMI, or undefined when its calls go through NMI's identity selection. */
export function bypassOf(pod: KubeObject, exceptions: readonly KubeObject[]): Pick<BypassPod, 'via' | 'exceptions'> | undefined {
  const via: BypassRoute[] = [];
  if (usesHostNetwork(pod)) via.push('hostNetwork');
  const matched = matchingExceptions(pod, exceptions).map(podKey).sort();
  if (matched.length) via.push('exception');
  return via.length ? { via, exceptions: matched } : undefined;
}

/** Every live pod that bypasses NMI, with its node and pool. */
export function findBypassPods(pods: readonly KubeObject[], nodes: readonly KubeObject[], exceptions: readonly KubeObject[]): BypassPod[] {
  const poolByNode = new Map(nodes.map((n) => [n.metadata?.name, poolOf(n)]));
  const out: BypassPod[] = [];
  for (const pod of pods) {
    if (isFinished(pod) || isTerminating(pod) || isPodIdentityComponent(pod)) continue;
    const b = bypassOf(pod, exceptions);
    if (!b) continue;
    const node = nodeNameOf(pod);
    const pool = node ? poolByNode.get(node) : undefined;
    const binding = labelsOf(pod)['aadpodidbinding'];
    out.push({ pod: podKey(pod), ...(node ? { node } : {}), ...(pool ? { pool } : {}), ...b, ...(binding ? { binding } : {}) });
  }
  return out.sort((a, b) => a.pod.localeCompare(b.pod));
}

function distinctIds(ids: Iterable<string>): Set<string> {
  return new Set([...ids].map((i) => i.toLowerCase()));
}

/**
 * Which pods bypass NMI, per pool, and which pools `assign` raises from one user-assigned
 * identity (or none) to several. Scale sets are matched to assignments by name, case-insensitively.
 */
export function analyseNmiBypass(input: NmiBypassInput): NmiBypassAnalysis {
  const pods = findBypassPods(input.pods, input.nodes, input.exceptions);
  const planned = new Map<string, string[]>();
  for (const a of input.assignments) planned.set(a.vmss.toLowerCase(), [...(planned.get(a.vmss.toLowerCase()) ?? []), ...a.identityIds]);
  const pools = new Map<string, PoolBypassRisk>();
  for (const s of input.scaleSets) {
    const before = distinctIds(s.identityIds);
    const after = distinctIds([...before, ...(planned.get(s.vmss.toLowerCase()) ?? [])]);
    pools.set(s.pool, { pool: s.pool, vmss: s.vmss, identitiesBefore: before.size, identitiesAfter: after.size, raisedToSeveral: before.size <= 1 && after.size > 1, alreadySeveral: before.size > 1, pods: [] });
  }
  for (const p of pods) {
    if (!p.pool) continue;
    const entry = pools.get(p.pool) ?? pools.set(p.pool, { pool: p.pool, identitiesBefore: 0, identitiesAfter: 0, raisedToSeveral: false, alreadySeveral: false, pods: [] }).get(p.pool)!;
    entry.pods.push(p);
  }
  return { pods, pools: [...pools.values()].sort((a, b) => a.pool.localeCompare(b.pool)) };
}

function describePods(pods: readonly BypassPod[], limit = 8): string {
  const names = pods.map((p) => `${p.pod} (${p.via.join(' + ')}${p.binding ? `, binding ${p.binding}` : ''})`);
  return names.length > limit ? `${names.slice(0, limit).join(', ')} and ${names.length - limit} more` : names.join(', ');
}

const FIX =
  'Make each of these pods name its identity in the token request (client_id, object_id or msi_res_id; e.g. AZURE_CLIENT_ID with DefaultAzureCredential, or ManagedIdentityCredential with a client id), or move it off the host network / out of the exception so NMI serves it, before assign.';

/** One warning per pool with bypassing pods whose VMSS `assign` raises to several identities (and a note where it already has several). */
export function bypassWarnings(a: NmiBypassAnalysis): BypassWarning[] {
  const out: BypassWarning[] = [];
  for (const p of a.pools) {
    if (!p.pods.length) continue;
    if (p.raisedToSeveral) {
      out.push({
        code: 'nmi-bypass-several-identities',
        subject: `pool ${p.pool}`,
        message: `assign raises vmss ${p.vmss} from ${p.identitiesBefore} user-assigned identit${p.identitiesBefore === 1 ? 'y' : 'ies'} to ${p.identitiesAfter}; ${p.pods.length} pod${p.pods.length === 1 ? '' : 's'} on the pool call IMDS without NMI and get 400 "Multiple user assigned identities exist" unless they name a client id: ${describePods(p.pods)}.`,
        fix: FIX,
      });
    } else if (p.alreadySeveral) {
      out.push({
        code: 'nmi-bypass-already-several',
        subject: `pool ${p.pool}`,
        message: `vmss ${p.vmss} already carries ${p.identitiesBefore} user-assigned identities; ${p.pods.length} pod${p.pods.length === 1 ? '' : 's'} on the pool call IMDS without NMI and already need a client id (not changed by the migration): ${describePods(p.pods)}.`,
        fix: FIX,
      });
    }
  }
  return out;
}
