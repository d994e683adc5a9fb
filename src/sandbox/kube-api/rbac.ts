/**
 * Authentication and RBAC authorization for the sandbox's API server, evaluated the way the
 * real `RBAC` authorizer does: a request is allowed when a rule of a ClusterRole bound by a
 * ClusterRoleBinding, or of a Role / ClusterRole bound by a RoleBinding in the request's
 * namespace, matches its verb, API group, resource (and subresource) and name; members of
 * `system:masters` are allowed everything.
 *
 * Evaluation is indexed: bindings are indexed by subject as the store changes, and the rules
 * that apply to one user are compiled once per change of any RBAC object, so a request costs
 * the rules of its user, never a scan of every binding.
 */
import type { KObject, ObjectStore, ResourceType, WatchEvent } from '../store.ts';
import { ApiError } from './status.ts';

/** Who a request is from. */
export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
}

/** A user the API server accepts a bearer token for. */
export interface TokenUser extends UserInfo {
  token: string;
}

/** What a resource request asks to do, in authorization terms. */
export interface ResourceAttributes {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

/** What a non-resource request (`/version`, `/openapi/v3`) asks to do. */
export interface NonResourceAttributes {
  verb: string;
  path: string;
}

export interface Decision {
  allowed: boolean;
  /** `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "z"` when allowed. */
  reason: string;
}

export interface PolicyRule {
  verbs?: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

interface BoundRule {
  rule: PolicyRule;
  /** For the decision's reason. */
  via: string;
}

interface CompiledUser {
  generation: number;
  cluster: BoundRule[];
  byNamespace: Map<string, BoundRule[]>;
}

const RBAC_GROUP = 'rbac.authorization.k8s.io';
const MASTERS = 'system:masters';

function subjectKeys(user: UserInfo): string[] {
  const keys = [`User:${user.username}`, ...user.groups.map((g) => `Group:${g}`)];
  const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user.username);
  if (sa) keys.push(`ServiceAccount:${sa[1]}:${sa[2]}`);
  return keys;
}

function bindingSubjectKeys(binding: Readonly<KObject>): string[] {
  const out: string[] = [];
  for (const s of (binding.subjects ?? []) as { kind?: string; name?: string; namespace?: string }[]) {
    if (s.kind === 'User' || s.kind === 'Group') out.push(`${s.kind}:${s.name}`);
    else if (s.kind === 'ServiceAccount') out.push(`ServiceAccount:${s.namespace ?? binding.metadata.namespace ?? ''}:${s.name}`);
  }
  return out;
}

function has(list: string[] | undefined, value: string): boolean {
  return !!list && (list.includes('*') || list.includes(value));
}

function resourceMatches(rule: PolicyRule, resource: string, subresource: string | undefined): boolean {
  const rs = rule.resources ?? [];
  if (rs.includes('*')) return true;
  if (!subresource) return rs.includes(resource);
  const full = `${resource}/${subresource}`;
  return rs.includes(full) || rs.includes(`*/${subresource}`) || rs.includes(`${resource}/*`);
}

/** True when `rule` allows the resource request. */
export function ruleAllows(rule: PolicyRule, a: ResourceAttributes): boolean {
  if (!has(rule.verbs, a.verb)) return false;
  if (!has(rule.apiGroups, a.group)) return false;
  if (!resourceMatches(rule, a.resource, a.subresource)) return false;
  const names = rule.resourceNames ?? [];
  if (names.length === 0) return true;
  return a.name !== undefined && a.name !== '' && names.includes(a.name);
}

function nonResourceAllows(rule: PolicyRule, a: NonResourceAttributes): boolean {
  if (!has(rule.verbs, a.verb)) return false;
  for (const u of rule.nonResourceURLs ?? []) {
    if (u === '*' || u === a.path) return true;
    if (u.endsWith('*') && a.path.startsWith(u.slice(0, -1))) return true;
  }
  return false;
}

/** Evaluates RBAC over the store's Roles, ClusterRoles and bindings. */
export class RbacAuthorizer {
  private readonly store: ObjectStore;
  /** subject key -> binding keys (`crb/<name>` or `rb/<ns>/<name>`). */
  private readonly bySubject = new Map<string, Set<string>>();
  /** binding key -> the subject keys it was indexed under. */
  private readonly bindingSubjects = new Map<string, string[]>();
  private readonly compiled = new Map<string, CompiledUser>();
  private generation = 0;
  private readonly unsubscribe: () => void;

  constructor(store: ObjectStore) {
    this.store = store;
    for (const resource of ['clusterrolebindings', 'rolebindings']) {
      const t = store.type(RBAC_GROUP, resource);
      if (!t) continue;
      for (const b of store.scan(t)) this.index(t, b);
    }
    this.unsubscribe = store.subscribe((ev) => this.onEvent(ev));
  }

  close(): void {
    this.unsubscribe();
  }

  private onEvent(ev: WatchEvent): void {
    const t = ev.resourceType;
    if (t.group !== RBAC_GROUP) return;
    this.generation++;
    if (t.resource === 'clusterrolebindings' || t.resource === 'rolebindings') {
      if (ev.type === 'DELETED') this.unindex(bindingKey(t, ev.object));
      else this.index(t, ev.object);
    }
  }

  private index(t: ResourceType, b: Readonly<KObject>): void {
    const key = bindingKey(t, b);
    this.unindex(key);
    const subjects = bindingSubjectKeys(b);
    this.bindingSubjects.set(key, subjects);
    for (const s of subjects) {
      let set = this.bySubject.get(s);
      if (!set) this.bySubject.set(s, (set = new Set()));
      set.add(key);
    }
  }

  private unindex(key: string): void {
    for (const s of this.bindingSubjects.get(key) ?? []) this.bySubject.get(s)?.delete(key);
    this.bindingSubjects.delete(key);
  }

  private rulesOfRole(kind: string, namespace: string | undefined, name: string): PolicyRule[] {
    const t = this.store.type(RBAC_GROUP, kind === 'ClusterRole' ? 'clusterroles' : 'roles');
    if (!t) return [];
    const role = this.store.peek(t, kind === 'ClusterRole' ? undefined : namespace, name);
    return (role?.rules ?? []) as PolicyRule[];
  }

  private compile(user: UserInfo): CompiledUser {
    const cacheKey = `${user.username}\u0000${[...user.groups].sort().join('\u0000')}`;
    const hit = this.compiled.get(cacheKey);
    if (hit && hit.generation === this.generation) return hit;
    const out: CompiledUser = { generation: this.generation, cluster: [], byNamespace: new Map() };
    const crbType = this.store.type(RBAC_GROUP, 'clusterrolebindings');
    const rbType = this.store.type(RBAC_GROUP, 'rolebindings');
    const seen = new Set<string>();
    for (const subject of subjectKeys(user)) {
      for (const key of this.bySubject.get(subject) ?? []) {
        if (seen.has(key)) continue;
        seen.add(key);
        const [, a, b] = key.split('/');
        const isCluster = key.startsWith('crb/');
        const binding = isCluster ? (crbType && this.store.peek(crbType, undefined, a)) : (rbType && this.store.peek(rbType, a, b));
        if (!binding) continue;
        const ref = binding.roleRef ?? {};
        const ns = isCluster ? undefined : a;
        const rules = this.rulesOfRole(ref.kind, ns, ref.name);
        const via = `${isCluster ? 'ClusterRoleBinding' : 'RoleBinding'} "${binding.metadata.name}${ns ? `/${ns}` : ''}" of ${ref.kind} "${ref.name}" to ${subject.split(':')[0]} "${subject.slice(subject.indexOf(':') + 1)}"`;
        const bound = rules.map((rule) => ({ rule, via }));
        if (isCluster) out.cluster.push(...bound);
        else {
          let list = out.byNamespace.get(ns!);
          if (!list) out.byNamespace.set(ns!, (list = []));
          list.push(...bound);
        }
      }
    }
    if (this.compiled.size > 1000) this.compiled.clear();
    this.compiled.set(cacheKey, out);
    return out;
  }

  /** Decides a resource request. */
  authorize(user: UserInfo, a: ResourceAttributes): Decision {
    if (user.groups.includes(MASTERS)) return { allowed: true, reason: '' };
    const c = this.compile(user);
    for (const r of c.cluster) if (ruleAllows(r.rule, a)) return { allowed: true, reason: `RBAC: allowed by ${r.via}` };
    if (a.namespace) for (const r of c.byNamespace.get(a.namespace) ?? []) if (ruleAllows(r.rule, a)) return { allowed: true, reason: `RBAC: allowed by ${r.via}` };
    return { allowed: false, reason: '' };
  }

  /** Decides a non-resource request. */
  authorizeNonResource(user: UserInfo, a: NonResourceAttributes): Decision {
    if (user.groups.includes(MASTERS)) return { allowed: true, reason: '' };
    for (const r of this.compile(user).cluster) if (nonResourceAllows(r.rule, a)) return { allowed: true, reason: `RBAC: allowed by ${r.via}` };
    return { allowed: false, reason: '' };
  }

  /** What SelfSubjectRulesReview answers: the rules that apply in `namespace`. */
  rulesFor(user: UserInfo, namespace: string): { resourceRules: PolicyRule[]; nonResourceRules: PolicyRule[] } {
    if (user.groups.includes(MASTERS)) {
      return { resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }], nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }] };
    }
    const c = this.compile(user);
    const all = [...c.cluster, ...(c.byNamespace.get(namespace) ?? [])].map((r) => r.rule);
    const resourceRules = all.filter((r) => (r.resources ?? []).length > 0).map((r) => clean({ verbs: r.verbs, apiGroups: r.apiGroups, resources: r.resources, resourceNames: r.resourceNames }));
    const nonResourceRules = all.filter((r) => (r.nonResourceURLs ?? []).length > 0).map((r) => clean({ verbs: r.verbs, nonResourceURLs: r.nonResourceURLs }));
    return { resourceRules, nonResourceRules };
  }
}

function clean(r: PolicyRule): PolicyRule {
  const out: PolicyRule = {};
  for (const [k, v] of Object.entries(r)) if (Array.isArray(v) && v.length) (out as any)[k] = v;
  return out;
}

function bindingKey(t: ResourceType, b: Readonly<KObject>): string {
  return t.resource === 'clusterrolebindings' ? `crb/${b.metadata.name}` : `rb/${b.metadata.namespace}/${b.metadata.name}`;
}

/** The message of the 403 the API server answers, word for word. */
export function forbiddenMessage(user: UserInfo, a: ResourceAttributes): string {
  const qualified = a.group ? `${a.resource}.${a.group}` : a.resource;
  const subject = a.name ? `${qualified} "${a.name}"` : qualified;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const scope = a.namespace ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
  return `${subject} is forbidden: User "${user.username}" cannot ${a.verb} resource "${resource}" in API group "${a.group}" ${scope}`;
}

/** The 403 message for a non-resource path. */
export function forbiddenPathMessage(user: UserInfo, a: NonResourceAttributes): string {
  return `forbidden: User "${user.username}" cannot ${a.verb} path "${a.path}"`;
}

/**
 * The ClusterRoles and ClusterRoleBindings of the bootstrap policy that every cluster has and
 * that the sandbox's users rely on: `cluster-admin` for `system:masters`, and what every
 * authenticated user may do (discovery, version, access reviews about itself).
 */
export function bootstrapPolicyObjects(): KObject[] {
  const labels = { 'kubernetes.io/bootstrapping': 'rbac-defaults' };
  const annotations = { 'rbac.authorization.kubernetes.io/autoupdate': 'true' };
  const role = (name: string, rules: PolicyRule[]): KObject => ({ apiVersion: `${RBAC_GROUP}/v1`, kind: 'ClusterRole', metadata: { name, labels, annotations }, rules });
  const binding = (name: string, roleName: string, group: string): KObject => ({
    apiVersion: `${RBAC_GROUP}/v1`,
    kind: 'ClusterRoleBinding',
    metadata: { name, labels, annotations },
    roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: roleName },
    subjects: [{ apiGroup: RBAC_GROUP, kind: 'Group', name: group }],
  });
  return [
    role('cluster-admin', [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }, { nonResourceURLs: ['*'], verbs: ['*'] }]),
    role('system:basic-user', [
      { apiGroups: ['authorization.k8s.io'], resources: ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'], verbs: ['create'] },
      { apiGroups: ['authentication.k8s.io'], resources: ['selfsubjectreviews'], verbs: ['create'] },
    ]),
    role('system:discovery', [{ nonResourceURLs: ['/api', '/api/*', '/apis', '/apis/*', '/healthz', '/livez', '/openapi', '/openapi/*', '/readyz', '/version', '/version/'], verbs: ['get'] }]),
    role('system:public-info-viewer', [{ nonResourceURLs: ['/healthz', '/livez', '/readyz', '/version', '/version/'], verbs: ['get'] }]),
    binding('cluster-admin', 'cluster-admin', MASTERS),
    binding('system:basic-user', 'system:basic-user', 'system:authenticated'),
    binding('system:discovery', 'system:discovery', 'system:authenticated'),
    binding('system:public-info-viewer', 'system:public-info-viewer', 'system:authenticated'),
  ];
}

/**
 * The RBAC escalation check the API server applies to writes of Roles, ClusterRoles and their
 * bindings: a user may only write a role whose every permission it holds itself (or with the
 * `escalate` verb on that role), and may only bind a role whose permissions it holds (or with
 * the `bind` verb on that role). Throws the API server's 403.
 */
export function checkEscalation(rbac: RbacAuthorizer, user: UserInfo, resource: string, obj: KObject, store: ObjectStore): void {
  if (user.groups.includes(MASTERS)) return;
  const namespace = obj.metadata.namespace;
  const holdsAll = (rules: PolicyRule[]): string | undefined => {
    for (const r of rules) {
      for (const verb of r.verbs ?? []) {
        if (r.nonResourceURLs?.length) {
          for (const path of r.nonResourceURLs) if (!rbac.authorizeNonResource(user, { verb, path }).allowed) return `${verb} ${path}`;
          continue;
        }
        for (const group of r.apiGroups ?? []) {
          for (const res of r.resources ?? []) {
            const [resourceName, sub] = res.split('/');
            const names = r.resourceNames?.length ? r.resourceNames : [undefined];
            for (const name of names) {
              if (!rbac.authorize(user, { verb, group, resource: resourceName, subresource: sub, namespace, name }).allowed) return `${verb} ${res}${group ? `.${group}` : ''}`;
            }
          }
        }
      }
    }
    return undefined;
  };
  const roleKind = resource === 'clusterroles' ? 'ClusterRole' : 'Role';
  if (resource === 'clusterroles' || resource === 'roles') {
    const missing = holdsAll((obj.rules ?? []) as PolicyRule[]);
    if (missing && !rbac.authorize(user, { verb: 'escalate', group: RBAC_GROUP, resource, namespace, name: obj.metadata.name }).allowed) {
      throw new ApiError(403, 'Forbidden', `${resource}.${RBAC_GROUP} "${obj.metadata.name}" is forbidden: user "${user.username}" (groups=${JSON.stringify(user.groups)}) is attempting to grant RBAC permissions not currently held: ${missing}`, { name: obj.metadata.name, group: RBAC_GROUP, kind: resource });
    }
    return;
  }
  const ref = obj.roleRef ?? {};
  const refResource = ref.kind === 'ClusterRole' ? 'clusterroles' : 'roles';
  const t = store.type(RBAC_GROUP, refResource);
  const role = t ? store.peek(t, ref.kind === 'ClusterRole' ? undefined : namespace, ref.name) : undefined;
  const missing = holdsAll(((role?.rules ?? []) as PolicyRule[]));
  if (missing && !rbac.authorize(user, { verb: 'bind', group: RBAC_GROUP, resource: refResource, namespace: ref.kind === 'ClusterRole' ? undefined : namespace, name: ref.name }).allowed) {
    throw new ApiError(403, 'Forbidden', `${resource}.${RBAC_GROUP} "${obj.metadata.name}" is forbidden: user "${user.username}" (groups=${JSON.stringify(user.groups)}) is attempting to grant RBAC permissions not currently held: ${missing}`, { name: obj.metadata.name, group: RBAC_GROUP, kind: resource });
  }
  void roleKind;
}
