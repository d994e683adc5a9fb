/**
 * The Kubernetes permissions each step needs (to plan, apply, check and roll back), and the
 * preflight that asks the API server about each of them with a SelfSubjectAccessReview (what
 * `kubectl auth can-i` does) so that `plan` reports a missing one as a blocker before anything
 * is written.
 *
 * The table is the single source of the permission list in README.md ("Kubernetes
 * permissions") and of the sandbox's `operator` user; a test keeps the three equal.
 */
import type { Blocker } from '../../engine/step.ts';
import type { AccessReviewRequest, AccessReviewResult } from '../../kube/gateway.ts';

export type { AccessReviewRequest, AccessReviewResult };

/**
 * Where a permission is needed: `cluster` for cluster-scoped resources; `all-namespaces` for
 * namespaced resources used wherever the workloads are (lists across namespaces, evictions);
 * `nmi` / `mic` for the namespace the NMI DaemonSet / MIC Deployment run in.
 */
export type PermissionScope = 'cluster' | 'all-namespaces' | 'nmi' | 'mic';

/** One verb on one resource (`resource` may carry a subresource: `pods/eviction`). */
export interface Permission {
  verb: string;
  /** API group, `''` for the core group. */
  group: string;
  resource: string;
  scope: PermissionScope;
}

const AAD = 'aadpodidentity.k8s.io';
const RBAC = 'rbac.authorization.k8s.io';

function p(scope: PermissionScope, group: string, resource: string, verbs: string[]): Permission[] {
  return verbs.map((verb) => ({ verb, group, resource, scope }));
}

/** What every step's plan reads to see the cluster. */
const READ_CLUSTER: Permission[] = [
  ...p('cluster', '', 'namespaces', ['get']),
  ...p('cluster', '', 'nodes', ['list']),
  ...p('all-namespaces', '', 'pods', ['list']),
  ...p('all-namespaces', 'apps', 'deployments', ['list']),
  ...p('all-namespaces', 'apps', 'daemonsets', ['list']),
  ...p('all-namespaces', 'apps', 'replicasets', ['list']),
  ...p('all-namespaces', 'batch', 'jobs', ['list']),
  ...p('all-namespaces', AAD, 'azureidentities', ['list']),
  ...p('all-namespaces', AAD, 'azureidentitybindings', ['list']),
  ...p('all-namespaces', AAD, 'azureassignedidentities', ['list']),
  ...p('all-namespaces', AAD, 'azurepodidentityexceptions', ['list']),
];

/** Probe pods (token tests, NMI health) that checks run and remove. */
const PROBE_PODS: Permission[] = [...p('all-namespaces', '', 'pods', ['create', 'delete', 'list']), ...p('all-namespaces', '', 'pods/log', ['get'])];

/** The MIC leader-election lock and NMI / MIC health through the pod proxy. */
const MIC_LOCK: Permission[] = [...p('mic', '', 'endpoints', ['get', 'patch']), ...p('all-namespaces', '', 'pods/proxy', ['get'])];

/** Per step id: every permission its plan, apply, check and rollback use. */
export const STEP_PERMISSIONS: Readonly<Record<string, readonly Permission[]>> = {
  inventory: [
    ...READ_CLUSTER,
    // Copies of an AzureIdentity / binding into the namespaces that use them (rollback deletes them).
    ...p('all-namespaces', AAD, 'azureidentities', ['get', 'create', 'delete']),
    ...p('all-namespaces', AAD, 'azureidentitybindings', ['get', 'create', 'delete']),
  ],
  assign: [
    ...READ_CLUSTER,
    ...p('nmi', 'apps', 'daemonsets', ['get']),
    ...p('mic', 'apps', 'deployments', ['get', 'patch']),
    ...MIC_LOCK,
  ],
  'nmi-managed': [
    ...READ_CLUSTER,
    ...p('nmi', 'apps', 'daemonsets', ['get', 'patch']),
    ...p('mic', 'apps', 'deployments', ['get']),
    ...p('all-namespaces', '', 'pods/proxy', ['get']),
    ...PROBE_PODS,
  ],
  'mic-scale': [
    ...READ_CLUSTER,
    ...p('nmi', 'apps', 'daemonsets', ['get']),
    ...p('mic', 'apps', 'deployments', ['get']),
    ...p('mic', 'apps', 'deployments/scale', ['get', 'patch']),
    ...MIC_LOCK,
  ],
  drain: [
    ...READ_CLUSTER,
    ...p('cluster', '', 'nodes', ['get', 'patch']),
    ...p('all-namespaces', '', 'pods', ['get']),
    ...p('all-namespaces', '', 'pods/eviction', ['create']),
    ...p('all-namespaces', 'apps', 'replicasets', ['get']),
    ...p('all-namespaces', 'apps', 'deployments', ['get']),
    ...p('all-namespaces', '', 'pods/proxy', ['get']),
  ],
  test: [...READ_CLUSTER, ...PROBE_PODS],
  cleanup: [
    ...READ_CLUSTER,
    ...p('mic', 'apps', 'deployments', ['get', 'create', 'delete']),
    ...p('mic', '', 'serviceaccounts', ['get', 'create', 'delete']),
    ...p('mic', '', 'configmaps', ['get', 'create', 'delete']),
    ...p('mic', '', 'endpoints', ['get', 'create', 'delete']),
    // Rollback re-creates MIC's ClusterRole and its binding: the API server's escalation check
    // then requires holding MIC's permissions, or `escalate` / `bind` on cluster roles.
    ...p('cluster', RBAC, 'clusterroles', ['get', 'create', 'delete', 'escalate', 'bind']),
    ...p('cluster', RBAC, 'clusterrolebindings', ['get', 'list', 'create', 'delete']),
    ...p('cluster', 'apiextensions.k8s.io', 'customresourcedefinitions', ['get']),
    ...p('all-namespaces', 'policy', 'poddisruptionbudgets', ['list']),
    ...p('all-namespaces', AAD, 'azurepodidentityexceptions', ['get', 'create', 'delete']),
    ...p('all-namespaces', AAD, 'azureassignedidentities', ['get', 'create', 'patch', 'delete']),
    ...PROBE_PODS,
  ],
};

function key(x: Permission): string {
  return `${x.scope}|${x.group}|${x.resource}|${x.verb}`;
}

/** Every permission of the given steps (default all), without duplicates, in a stable order. */
export function requiredPermissions(stepIds: readonly string[] = Object.keys(STEP_PERMISSIONS)): Permission[] {
  const seen = new Map<string, Permission>();
  for (const id of stepIds) for (const x of STEP_PERMISSIONS[id] ?? []) if (!seen.has(key(x))) seen.set(key(x), x);
  return [...seen.values()].sort((a, b) => (a.group + '/' + a.resource + ' ' + a.verb).localeCompare(b.group + '/' + b.resource + ' ' + b.verb));
}

/** The gateway method that sends one SelfSubjectAccessReview. */
export type AccessReview = (request: AccessReviewRequest) => Promise<AccessReviewResult>;

/** The namespaces that `nmi` / `mic` scopes resolve to (from the inventory); unknown ones are checked in every namespace. */
export interface PermissionNamespaces {
  nmi?: string;
  mic?: string;
}

/** Reads the NMI and MIC namespaces from an inventory document, if it has them. */
export function namespacesFromInventory(doc: unknown): PermissionNamespaces {
  const pi = (doc as { podIdentity?: { nmi?: { namespace?: string }; mic?: { namespace?: string } } } | undefined)?.podIdentity;
  return { nmi: pi?.nmi?.namespace, mic: pi?.mic?.namespace };
}

function request(x: Permission, ns: PermissionNamespaces): AccessReviewRequest {
  const [resource, subresource] = x.resource.split('/');
  const namespace = x.scope === 'nmi' ? ns.nmi : x.scope === 'mic' ? ns.mic : undefined;
  return { verb: x.verb, group: x.group, resource, ...(subresource ? { subresource } : {}), ...(namespace ? { namespace } : {}) };
}

/** `deployments.apps/scale`, `pods/eviction`, `nodes`. */
function qualified(x: Permission): string {
  const [resource, sub] = x.resource.split('/');
  return `${resource}${x.group ? `.${x.group}` : ''}${sub ? `/${sub}` : ''}`;
}

function describeWhere(r: AccessReviewRequest, x: Permission): string {
  if (x.scope === 'cluster') return 'at the cluster scope';
  return r.namespace ? `in namespace "${r.namespace}"` : 'in all namespaces';
}

/**
 * Checks one step's permissions; each one the API server denies is a blocker naming the verb,
 * resource, namespace and step. `cache` (shared across steps of one plan) keeps one review
 * per distinct question.
 */
export async function permissionBlockers(stepId: string, review: AccessReview, namespaces: PermissionNamespaces = {}, cache: Map<string, Promise<AccessReviewResult>> = new Map()): Promise<Blocker[]> {
  const blockers: Blocker[] = [];
  const perms = STEP_PERMISSIONS[stepId] ?? [];
  const unique = new Map<string, Permission>();
  for (const x of perms) unique.set(key(x), x);
  const answers = await Promise.all(
    [...unique.values()].map(async (x) => {
      const r = request(x, namespaces);
      const k = JSON.stringify(r);
      let answer = cache.get(k);
      if (!answer) cache.set(k, (answer = review(r)));
      return { x, r, result: await answer };
    }),
  );
  for (const { x, r, result } of answers) {
    // A server that will not answer the question is not proof of a missing permission.
    if (result.allowed || result.unknown) continue;
    const where = describeWhere(r, x);
    const groupText = x.group === '' ? 'core' : x.group;
    blockers.push({
      code: 'kube-permission-missing',
      subject: `${x.verb} ${qualified(x)} ${r.namespace ? `namespace ${r.namespace}` : x.scope === 'cluster' ? '(cluster)' : '(all namespaces)'}`,
      message: `step ${stepId} needs to ${x.verb} ${x.resource} (API group ${groupText}) ${where}, and the current Kubernetes user may not (SelfSubjectAccessReview denied it${result.reason ? `: ${result.reason}` : ''}).`,
      fix: `Grant it (see "Kubernetes permissions" in README.md), or use a context that has it; check with: kubectl auth can-i ${x.verb} ${x.resource.split('/')[0]}${x.group ? `.${x.group}` : ''}${x.resource.includes('/') ? ` --subresource=${x.resource.split('/')[1]}` : ''} ${r.namespace ? `-n ${r.namespace}` : x.scope === 'cluster' ? '' : '--all-namespaces'}`.trim(),
    });
  }
  return blockers;
}

/** Answers reused across the steps of one plan (and the re-plans of one apply) for a minute. */
const CACHE_MS = 60_000;
const caches = new WeakMap<object, { at: number; answers: Map<string, Promise<AccessReviewResult>> }>();

/**
 * The runner's entry point: the permission blockers of one step, asked through the gateway's
 * `accessReview` (a gateway without one, like a unit-test fake, is not checked). NMI and MIC
 * namespaces come from the inventory document when there is one.
 */
export async function kubePermissionBlockers(stepId: string, kube: unknown, inventoryDocument?: unknown): Promise<Blocker[]> {
  const gateway = kube as { accessReview?: AccessReview } | undefined;
  if (!gateway || typeof gateway.accessReview !== 'function') return [];
  let cache = caches.get(gateway);
  if (!cache || Date.now() - cache.at > CACHE_MS) caches.set(gateway, (cache = { at: Date.now(), answers: new Map() }));
  return permissionBlockers(stepId, (r) => gateway.accessReview!(r), namespacesFromInventory(inventoryDocument), cache.answers);
}
