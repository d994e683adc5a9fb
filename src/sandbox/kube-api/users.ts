/**
 * The sandbox's Kubernetes users besides the administrator, and the RBAC objects that give
 * them their rights, so rehearsals run with the permissions a real operator has:
 *
 * - `readonly`: get, list and watch on everything, nothing else;
 * - `operator`: exactly what podid-migrate needs (the union of `STEP_PERMISSIONS`, the table
 *   README.md lists under "Kubernetes permissions");
 * - the scenario's own users, bound to ClusterRoles or to rules of their own.
 */
import { randomBytes } from 'node:crypto';
import { requiredPermissions } from '../../steps/lib/permission-preflight.ts';
import type { ScenarioUser } from '../scenario.ts';
import type { KObject } from '../store.ts';
import type { PolicyRule, TokenUser } from './rbac.ts';

const RBAC = 'rbac.authorization.k8s.io';
const LABELS = { 'app.kubernetes.io/managed-by': 'podid-migrate-sandbox' };

/** The ClusterRole rules of the `operator` user: one rule per resource with the verbs it needs. */
export function operatorRules(): PolicyRule[] {
  const byResource = new Map<string, { group: string; resource: string; verbs: Set<string> }>();
  for (const p of requiredPermissions()) {
    const k = `${p.group}|${p.resource}`;
    let e = byResource.get(k);
    if (!e) byResource.set(k, (e = { group: p.group, resource: p.resource, verbs: new Set() }));
    e.verbs.add(p.verb);
  }
  return [...byResource.values()].map((e) => ({ apiGroups: [e.group], resources: [e.resource], verbs: [...e.verbs].sort() }));
}

/** A sandbox user with its token and the RBAC objects to create for it. */
export interface SandboxUser extends TokenUser {
  /** The kubeconfig context (and user entry) name. */
  context: string;
  objects: KObject[];
}

function clusterRole(name: string, rules: PolicyRule[]): KObject {
  return { apiVersion: `${RBAC}/v1`, kind: 'ClusterRole', metadata: { name, labels: LABELS }, rules };
}

function binding(name: string, roleName: string, user: string, namespace?: string): KObject {
  return {
    apiVersion: `${RBAC}/v1`,
    kind: namespace ? 'RoleBinding' : 'ClusterRoleBinding',
    metadata: { name, ...(namespace ? { namespace } : {}), labels: LABELS },
    roleRef: { apiGroup: RBAC, kind: 'ClusterRole', name: roleName },
    subjects: [{ apiGroup: RBAC, kind: 'User', name: user }],
  };
}

/** Builds the `readonly`, `operator` and scenario users, each with a fresh random token. */
export function sandboxUsers(scenarioUsers: readonly ScenarioUser[]): SandboxUser[] {
  const token = () => randomBytes(24).toString('hex');
  const users: SandboxUser[] = [
    {
      context: 'readonly',
      username: 'readonly',
      groups: [],
      token: token(),
      objects: [clusterRole('podid-migrate:readonly', [{ apiGroups: ['*'], resources: ['*'], verbs: ['get', 'list', 'watch'] }]), binding('podid-migrate:readonly', 'podid-migrate:readonly', 'readonly')],
    },
    {
      context: 'operator',
      username: 'operator',
      groups: [],
      token: token(),
      objects: [clusterRole('podid-migrate:operator', operatorRules()), binding('podid-migrate:operator', 'podid-migrate:operator', 'operator')],
    },
  ];
  for (const u of scenarioUsers) {
    const objects: KObject[] = [];
    for (const role of u.clusterRoles) objects.push(binding(`sandbox-user:${u.name}:${role}`, role, u.name, u.namespace));
    if (u.rules.length) {
      const own = `sandbox-user:${u.name}`;
      objects.push(clusterRole(own, u.rules), binding(own, own, u.name, u.namespace));
    }
    users.push({ context: u.name, username: u.name, groups: u.groups, token: token(), objects });
  }
  return users;
}
