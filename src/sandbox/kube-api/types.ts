/**
 * The built-in REST types the sandbox's API server serves, described the way discovery
 * reports them on a v1.32 cluster (verbs, short names, categories, subresources).
 *
 * Custom resources (the four `aadpodidentity.k8s.io/v1` kinds) are not listed here: the
 * store registers their type when their CustomResourceDefinition object is created, exactly
 * as the real apiextensions server starts serving a CRD once it is established.
 */
import type { ObjectStore, ResourceType } from '../store.ts';

const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
// Namespaces cannot be deleted as a collection through the API (no deletecollection).
const NO_COLLECTION_DELETE = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

type Def = Omit<ResourceType, 'listKind' | 'verbs'> & { verbs?: string[] };

function def(d: Def): ResourceType {
  return { ...d, listKind: `${d.kind}List`, verbs: d.verbs ?? ALL_VERBS, subresources: d.subresources ?? [] };
}

/** Every built-in type, in discovery order (group by group). */
export const BUILTIN_TYPES: readonly ResourceType[] = [
  def({ group: '', version: 'v1', resource: 'namespaces', singular: 'namespace', kind: 'Namespace', namespaced: false, shortNames: ['ns'], verbs: NO_COLLECTION_DELETE, subresources: ['status', 'finalize'] }),
  def({ group: '', version: 'v1', resource: 'nodes', singular: 'node', kind: 'Node', namespaced: false, shortNames: ['no'], subresources: ['status', 'proxy'] }),
  def({ group: '', version: 'v1', resource: 'pods', singular: 'pod', kind: 'Pod', namespaced: true, shortNames: ['po'], categories: ['all'], subresources: ['status', 'eviction', 'log', 'proxy', 'exec', 'attach', 'portforward'] }),
  def({ group: '', version: 'v1', resource: 'serviceaccounts', singular: 'serviceaccount', kind: 'ServiceAccount', namespaced: true, shortNames: ['sa'], subresources: ['token'] }),
  def({ group: '', version: 'v1', resource: 'configmaps', singular: 'configmap', kind: 'ConfigMap', namespaced: true, shortNames: ['cm'] }),
  def({ group: '', version: 'v1', resource: 'endpoints', singular: 'endpoints', kind: 'Endpoints', namespaced: true, shortNames: ['ep'] }),
  def({ group: '', version: 'v1', resource: 'events', singular: 'event', kind: 'Event', namespaced: true, shortNames: ['ev'] }),
  def({ group: '', version: 'v1', resource: 'secrets', singular: 'secret', kind: 'Secret', namespaced: true }),
  def({ group: '', version: 'v1', resource: 'services', singular: 'service', kind: 'Service', namespaced: true, shortNames: ['svc'], categories: ['all'], subresources: ['status', 'proxy'] }),
  def({ group: 'apps', version: 'v1', resource: 'deployments', singular: 'deployment', kind: 'Deployment', namespaced: true, shortNames: ['deploy'], categories: ['all'], subresources: ['status', 'scale'] }),
  def({ group: 'apps', version: 'v1', resource: 'replicasets', singular: 'replicaset', kind: 'ReplicaSet', namespaced: true, shortNames: ['rs'], categories: ['all'], subresources: ['status', 'scale'] }),
  def({ group: 'apps', version: 'v1', resource: 'daemonsets', singular: 'daemonset', kind: 'DaemonSet', namespaced: true, shortNames: ['ds'], categories: ['all'], subresources: ['status'] }),
  def({ group: 'batch', version: 'v1', resource: 'jobs', singular: 'job', kind: 'Job', namespaced: true, categories: ['all'], subresources: ['status'] }),
  def({ group: 'policy', version: 'v1', resource: 'poddisruptionbudgets', singular: 'poddisruptionbudget', kind: 'PodDisruptionBudget', namespaced: true, shortNames: ['pdb'], subresources: ['status'] }),
  def({ group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'clusterroles', singular: 'clusterrole', kind: 'ClusterRole', namespaced: false }),
  def({ group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'clusterrolebindings', singular: 'clusterrolebinding', kind: 'ClusterRoleBinding', namespaced: false }),
  def({ group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'roles', singular: 'role', kind: 'Role', namespaced: true }),
  def({ group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'rolebindings', singular: 'rolebinding', kind: 'RoleBinding', namespaced: true }),
  def({ group: 'apiextensions.k8s.io', version: 'v1', resource: 'customresourcedefinitions', singular: 'customresourcedefinition', kind: 'CustomResourceDefinition', namespaced: false, shortNames: ['crd', 'crds'], categories: ['api-extensions'], subresources: ['status'] }),
  def({ group: 'coordination.k8s.io', version: 'v1', resource: 'leases', singular: 'lease', kind: 'Lease', namespaced: true }),
  // The same Events as core/v1, in the events.k8s.io/v1 schema (stored as the core ones).
  def({ group: 'events.k8s.io', version: 'v1', resource: 'events', singular: 'event', kind: 'Event', namespaced: true, shortNames: ['ev'], verbs: ['create', 'get', 'list', 'watch'] }),
  // Reviews are answered, never stored: create is their only verb.
  def({ group: 'authentication.k8s.io', version: 'v1', resource: 'selfsubjectreviews', singular: 'selfsubjectreview', kind: 'SelfSubjectReview', namespaced: false, verbs: ['create'] }),
  def({ group: 'authorization.k8s.io', version: 'v1', resource: 'selfsubjectaccessreviews', singular: 'selfsubjectaccessreview', kind: 'SelfSubjectAccessReview', namespaced: false, verbs: ['create'] }),
  def({ group: 'authorization.k8s.io', version: 'v1', resource: 'selfsubjectrulesreviews', singular: 'selfsubjectrulesreview', kind: 'SelfSubjectRulesReview', namespaced: false, verbs: ['create'] }),
];

/**
 * Registers every built-in type with the store. Call once, before any object is created;
 * calling it again only refreshes the type descriptions.
 */
export function registerBuiltinTypes(store: ObjectStore): void {
  for (const t of BUILTIN_TYPES) store.registerType(structuredClone(t));
}

/** The namespaces every cluster has from the start. */
export const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'] as const;

/**
 * Creates the system namespaces (`default`, `kube-system`, `kube-public`,
 * `kube-node-lease`) that a real control plane creates at start-up, each `Active` with the
 * `kubernetes` finalizer. Existing ones are left alone, so it is safe to call twice. The
 * API server itself never creates them: whoever builds the cluster calls this (or creates
 * them) after {@link registerBuiltinTypes}.
 */
export function bootstrapNamespaces(store: ObjectStore, names: readonly string[] = SYSTEM_NAMESPACES): void {
  const t = store.typeOrThrow('', 'namespaces');
  for (const name of names) {
    if (store.peek(t, undefined, name)) continue;
    store.create(t, {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, labels: { 'kubernetes.io/metadata.name': name } },
      spec: { finalizers: ['kubernetes'] },
      status: { phase: 'Active' },
    });
  }
}
