/**
 * How NMI (and MIC) match a pod to identities, read from the store without side effects.
 * Both the NMI program (which then waits, asks IMDS and answers) and the outage meter (which
 * only predicts) use these, so the meter's verdict is the NMI's verdict.
 *
 * Upstream: pkg/nmi/standard.go, pkg/nmi/managed.go, pkg/k8s/client.go (`ListPodIds`,
 * `ListPodIdsWithBinding`, `ListPodIdentityExceptions`), pkg/pod (`IsPodExcepted`).
 */
import type { KObject, ObjectStore } from '../store.ts';
import {
  BINDING_LABEL,
  bindingIdentityName,
  bindingSelector,
  crdType,
  identityClientId,
  identityResourceId,
  isNamespacedIdentity,
} from './common.ts';

/**
 * Upstream `IsPodExcepted`: any `AzurePodIdentityException` in the pod's namespace whose
 * `spec.podLabels` has one label the pod carries with the same value.
 */
export function isExceptedPod(store: ObjectStore, pod: Readonly<KObject>): boolean {
  const t = crdType(store, 'azurepodidentityexceptions');
  if (!t) return false;
  const labels = pod.metadata.labels ?? {};
  for (const ex of store.scan(t, { namespace: pod.metadata.namespace })) {
    for (const [k, v] of Object.entries(ex.spec?.podLabels ?? {})) if (labels[k] === v) return true;
  }
  return false;
}

/** Upstream `isMIC`: pods of a ReplicaSet whose name starts with `mic` in NMI's `--MICNamespace`. */
export function isMicPod(pod: Readonly<KObject>, micNamespace: string): boolean {
  if ((pod.metadata.namespace ?? '').toLowerCase() !== micNamespace.toLowerCase()) return false;
  const rs = pod.metadata.ownerReferences?.find((o) => o.kind === 'ReplicaSet')?.name ?? '';
  return /^mic/.test(rs);
}

/**
 * Managed mode (`ListPodIdsWithBinding`): identities named by bindings in the pod's namespace
 * whose selector equals the pod's `aadpodidbinding` label, that live in the same namespace.
 */
export function managedModeIdentities(store: ObjectStore, pod: Readonly<KObject>): Readonly<KObject>[] {
  const bt = crdType(store, 'azureidentitybindings');
  const it = crdType(store, 'azureidentities');
  const ns = pod.metadata.namespace;
  const label = pod.metadata.labels?.[BINDING_LABEL];
  if (!bt || !it || !label) return [];
  const wanted = new Set<string>();
  for (const b of store.scan(bt, { namespace: ns })) if (bindingSelector(b) === label) wanted.add(bindingIdentityName(b));
  const out: Readonly<KObject>[] = [];
  for (const id of store.scan(it, { namespace: ns })) if (wanted.has(id.metadata.name!)) out.push(id);
  return out;
}

/** Managed-mode choice (`ManagedClient.GetIdentities`): by client id, by resource id, else the first in the pod's namespace. */
export function pickManaged(ids: readonly Readonly<KObject>[], podNamespace: string, clientId: string, resourceId: string): Readonly<KObject> | undefined {
  const unspecified = !clientId && !resourceId;
  for (const id of ids) {
    if (clientId && identityClientId(id) === clientId) return id;
    if (resourceId && identityResourceId(id) === resourceId) return id;
    if (unspecified && (id.metadata.namespace ?? '').toLowerCase() === podNamespace.toLowerCase()) return id;
  }
  return undefined;
}

/**
 * Standard mode (`ListPodIds`): the pod's AzureAssignedIdentities, grouped by `status.status`
 * (`''` for objects written by MIC before states existed), as their embedded AzureIdentity.
 * With `--enableScaleFeatures` NMI's informer only sees objects labelled `nodename=<node>`.
 */
export function assignedIdentitiesByState(store: ObjectStore, nodeName: string, pod: { namespace: string; name: string }, scaleFeatures: boolean): Map<string, Readonly<KObject>[]> {
  const t = crdType(store, 'azureassignedidentities');
  const out = new Map<string, Readonly<KObject>[]>();
  if (!t) return out;
  for (const a of store.scan(t, scaleFeatures ? { labelSelector: `nodename=${nodeName}` } : {})) {
    if (a.spec?.pod !== pod.name || a.spec?.podNamespace !== pod.namespace) continue;
    const state = String(a.status?.status ?? '');
    const ref = a.spec?.azureIdentityRef;
    if (!ref) continue;
    const list = out.get(state) ?? [];
    list.push(ref);
    out.set(state, list);
  }
  return out;
}

/** Whether an embedded identity is the one a request names (case-insensitive, as `isRequestedIdentity`). */
export function isRequestedIdentity(id: Readonly<KObject>, clientId: string, resourceId: string): boolean {
  return (!!clientId && clientId.toLowerCase() === identityClientId(id).toLowerCase()) || (!!resourceId && resourceId.toLowerCase() === identityResourceId(id).toLowerCase());
}

/**
 * One attempt of `listPodIDsWithRetry`: the identities to use when NMI may stop waiting now,
 * `created` when an object exists but is not yet `Assigned`, or `none` when nothing matches.
 */
export function standardAttempt(byState: Map<string, Readonly<KObject>[]>, clientId: string, resourceId: string): { kind: 'found'; ids: Readonly<KObject>[] } | { kind: 'created' } | { kind: 'none' } {
  const unspecified = !clientId && !resourceId;
  const legacy = byState.get('') ?? [];
  const assigned = byState.get('Assigned') ?? [];
  const created = byState.get('Created') ?? [];
  if (unspecified) {
    if (legacy.length) return { kind: 'found', ids: legacy };
    if (assigned.length) return { kind: 'found', ids: assigned };
    return created.length ? { kind: 'created' } : { kind: 'none' };
  }
  if (legacy.some((i) => isRequestedIdentity(i, clientId, resourceId))) return { kind: 'found', ids: legacy };
  if (assigned.some((i) => isRequestedIdentity(i, clientId, resourceId))) return { kind: 'found', ids: assigned };
  return created.some((i) => isRequestedIdentity(i, clientId, resourceId)) ? { kind: 'created' } : { kind: 'none' };
}

/**
 * The rest of `StandardClient.GetIdentities`: drop identities of other namespaces when
 * namespaced, then the first (no selector) or the requested one. `panic` reproduces
 * upstream indexing an empty list (answered 500 by NMI's recover handler).
 */
export function pickStandard(ids: readonly Readonly<KObject>[], podNamespace: string, namespaced: boolean, clientId: string, resourceId: string): Readonly<KObject> | 'panic' | undefined {
  const filtered = ids.filter((id) => !(namespaced || isNamespacedIdentity(id)) || id.metadata.namespace === podNamespace);
  if (!clientId && !resourceId) return filtered.length ? filtered[0] : 'panic';
  for (const id of filtered) {
    if (clientId && identityClientId(id) === clientId) return id;
    if (resourceId && identityResourceId(id) === resourceId) return id;
  }
  return undefined;
}

/**
 * The identities MIC would assign for a pod (`createDesiredAssignedIdentityList`): bindings
 * anywhere whose selector equals the label, identity looked up by name, and, when MIC or the
 * identity is namespaced, identity, binding and pod all in one namespace.
 */
export function desiredAssignments(
  pod: Readonly<KObject>,
  bindings: readonly Readonly<KObject>[],
  identitiesByName: Map<string, Readonly<KObject>>,
  namespaced: boolean,
): { identity: Readonly<KObject>; binding: Readonly<KObject> }[] {
  const label = pod.metadata.labels?.[BINDING_LABEL];
  if (!label) return [];
  const out: { identity: Readonly<KObject>; binding: Readonly<KObject> }[] = [];
  for (const b of bindings) {
    if (bindingSelector(b) !== label) continue;
    const id = identitiesByName.get(bindingIdentityName(b));
    if (!id) continue;
    if ((namespaced || isNamespacedIdentity(id)) && !(id.metadata.namespace === b.metadata.namespace && b.metadata.namespace === pod.metadata.namespace)) continue;
    out.push({ identity: id, binding: b });
  }
  return out;
}

/**
 * Upstream `convertIDListToMap`: identities keyed by name only, so with the same name in two
 * namespaces the last listed wins (a real upstream quirk).
 */
export function identitiesByName(store: ObjectStore): Map<string, Readonly<KObject>> {
  const t = crdType(store, 'azureidentities');
  const m = new Map<string, Readonly<KObject>>();
  if (!t) return m;
  for (const id of store.scan(t)) m.set(id.metadata.name!, id);
  return m;
}
