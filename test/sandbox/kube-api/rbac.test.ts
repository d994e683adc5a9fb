/**
 * RBAC over the wire: bearer-token users get exactly what their Roles and ClusterRoles allow,
 * denials are the API server's 403 word for word, and the self-subject reviews answer
 * `kubectl auth can-i` / `auth whoami` and client-node.
 */
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './harness.ts';
import { bootstrapPolicyObjects } from '../../../src/sandbox/kube-api/rbac.ts';

let h: Harness;
const ALICE = { username: 'alice', groups: ['dev'], token: 'alice-token-0123456789' };
const BOB = { username: 'bob', groups: [], token: 'bob-token-0123456789' };


let kubeconfig = '';
async function kubectl(user: string, args: string[]) {
  return execa('/usr/bin/kubectl', ['--kubeconfig', kubeconfig, '--context', user, ...args], { reject: false, env: { HOME: h.dir, KUBECONFIG: '' }, extendEnv: false, timeout: 30_000 });
}

beforeAll(async () => {
  h = await startHarness({ users: [ALICE, BOB] });
  const t = (g: string, r: string) => h.store.typeOrThrow(g, r);
  const rbac = 'rbac.authorization.k8s.io';
  for (const o of bootstrapPolicyObjects()) h.store.create(t(rbac, o.kind === 'ClusterRole' ? 'clusterroles' : 'clusterrolebindings'), o);
  h.store.create(t('', 'namespaces'), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team' } });
  h.store.create(t(rbac, 'clusterroles'), { apiVersion: `${rbac}/v1`, kind: 'ClusterRole', metadata: { name: 'pod-reader' }, rules: [{ apiGroups: [''], resources: ['pods', 'pods/log'], verbs: ['get', 'list', 'watch'] }] });
  h.store.create(t(rbac, 'rolebindings'), { apiVersion: `${rbac}/v1`, kind: 'RoleBinding', metadata: { name: 'devs-read-pods', namespace: 'team' }, roleRef: { apiGroup: rbac, kind: 'ClusterRole', name: 'pod-reader' }, subjects: [{ kind: 'Group', name: 'dev' }] });
  h.store.create(t(rbac, 'roles'), { apiVersion: `${rbac}/v1`, kind: 'Role', metadata: { name: 'one-cm', namespace: 'team' }, rules: [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['settings'], verbs: ['get', 'update'] }] });
  h.store.create(t(rbac, 'rolebindings'), { apiVersion: `${rbac}/v1`, kind: 'RoleBinding', metadata: { name: 'bob-settings', namespace: 'team' }, roleRef: { apiGroup: rbac, kind: 'Role', name: 'one-cm' }, subjects: [{ kind: 'User', name: 'bob', apiGroup: rbac }] });
  kubeconfig = join(h.dir, 'users-kubeconfig');
  const ca = Buffer.from(h.tls.caPem).toString('base64');
  await writeFile(kubeconfig, [
    'apiVersion: v1', 'kind: Config',
    'clusters:', '- name: s', '  cluster:', `    server: ${h.server.url}`, `    certificate-authority-data: ${ca}`,
    'users:', `- name: alice`, `  user: {token: ${ALICE.token}}`, `- name: bob`, `  user: {token: ${BOB.token}}`,
    'contexts:', '- name: alice', '  context: {cluster: s, user: alice, namespace: team}', '- name: bob', '  context: {cluster: s, user: bob, namespace: team}',
    'current-context: alice', '',
  ].join('\n'), { mode: 0o600 });
});
afterAll(async () => {
  await h?.close();
});

describe('RBAC', () => {
  it('allows what a RoleBinding grants in its namespace only, and answers the 403 as the API server words it', async () => {
    const ok = await kubectl('alice', ['get', 'pods', '-n', 'team']);
    expect(ok.exitCode, ok.stderr).toBe(0);
    const other = await kubectl('alice', ['get', 'pods', '-n', 'default']);
    expect(other.stderr).toContain('Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"');
    const nodes = await kubectl('alice', ['get', 'nodes']);
    expect(nodes.stderr).toContain('nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope');
    const create = await kubectl('alice', ['create', 'configmap', 'x', '-n', 'team']);
    expect(create.stderr).toContain('configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "team"');
  });

  it('honours resourceNames and answers kubectl auth can-i and whoami', async () => {
    h.store.create(h.store.typeOrThrow('', 'configmaps'), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'team' }, data: { a: '1' } });
    expect((await kubectl('bob', ['get', 'configmap', 'settings'])).exitCode).toBe(0);
    const list = await kubectl('bob', ['get', 'configmaps']);
    expect(list.stderr).toContain('configmaps is forbidden: User "bob" cannot list resource "configmaps"');
    const named = await kubectl('bob', ['delete', 'configmap', 'settings']);
    expect(named.stderr).toContain('configmaps "settings" is forbidden: User "bob" cannot delete resource "configmaps" in API group "" in the namespace "team"');
    expect((await kubectl('bob', ['auth', 'can-i', 'update', 'configmap/settings'])).stdout.trim()).toBe('yes');
    expect((await kubectl('bob', ['auth', 'can-i', 'update', 'configmap/other'])).stdout.trim()).toBe('no');
    expect((await kubectl('alice', ['auth', 'can-i', 'get', 'pods', '--subresource=log'])).stdout.trim()).toBe('yes');
    expect((await kubectl('alice', ['auth', 'can-i', 'create', 'pods/eviction'])).stdout.trim()).toBe('no');
    const who = await kubectl('alice', ['auth', 'whoami']);
    expect(who.stdout).toMatch(/Username\s+alice/);
    expect(who.stdout).toMatch(/Groups\s+\[dev system:authenticated\]/);
    const rules = await kubectl('alice', ['auth', 'can-i', '--list', '-n', 'team']);
    expect(rules.stdout).toMatch(/pods\s+\[\]\s+\[\]\s+\[get list watch\]/);
    expect(rules.stdout).toMatch(/selfsubjectaccessreviews\.authorization\.k8s\.io\s+\[\]\s+\[\]\s+\[create\]/);
  });

  it('re-evaluates as soon as a binding changes', async () => {
    expect((await kubectl('bob', ['get', 'pods'])).exitCode).not.toBe(0);
    const rb = h.store.typeOrThrow('rbac.authorization.k8s.io', 'rolebindings');
    h.store.mutate(rb, 'team', 'devs-read-pods', (o) => void o.subjects.push({ kind: 'User', name: 'bob' }));
    expect((await kubectl('bob', ['get', 'pods'])).exitCode).toBe(0);
    h.store.delete(rb, 'team', 'devs-read-pods');
    expect((await kubectl('bob', ['get', 'pods'])).exitCode).not.toBe(0);
    expect((await kubectl('alice', ['get', 'pods'])).stderr).toContain('forbidden');
  });

  it('refuses to let a user grant permissions it does not hold, unless it may escalate or bind', async () => {
    const rbac = 'rbac.authorization.k8s.io';
    const t = (r: string) => h.store.typeOrThrow(rbac, r);
    h.store.create(t('clusterroles'), { apiVersion: `${rbac}/v1`, kind: 'ClusterRole', metadata: { name: 'role-writer' }, rules: [{ apiGroups: [rbac], resources: ['clusterroles', 'clusterrolebindings'], verbs: ['create', 'get'] }] });
    h.store.create(t('clusterrolebindings'), { apiVersion: `${rbac}/v1`, kind: 'ClusterRoleBinding', metadata: { name: 'bob-writes-roles' }, roleRef: { apiGroup: rbac, kind: 'ClusterRole', name: 'role-writer' }, subjects: [{ kind: 'User', name: 'bob' }] });
    const role = 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: node-patcher}\nrules: [{apiGroups: [""], resources: [nodes], verbs: [patch]}]\n';
    const refused = await execa('/usr/bin/kubectl', ['--kubeconfig', kubeconfig, '--context', 'bob', 'create', '-f', '-'], { input: role, reject: false, env: { HOME: h.dir, KUBECONFIG: '' }, extendEnv: false });
    expect(refused.stderr).toContain('clusterroles.rbac.authorization.k8s.io "node-patcher" is forbidden: user "bob" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held: patch nodes');
    h.store.mutate(t('clusterroles'), undefined, 'role-writer', (o) => void o.rules.push({ apiGroups: [rbac], resources: ['clusterroles'], verbs: ['escalate', 'bind'] }));
    const allowed = await execa('/usr/bin/kubectl', ['--kubeconfig', kubeconfig, '--context', 'bob', 'create', '-f', '-'], { input: role, reject: false, env: { HOME: h.dir, KUBECONFIG: '' }, extendEnv: false });
    expect(allowed.stdout).toContain('clusterrole.rbac.authorization.k8s.io/node-patcher created');
    const bind = await execa('/usr/bin/kubectl', ['--kubeconfig', kubeconfig, '--context', 'bob', 'create', 'clusterrolebinding', 'np', '--clusterrole=node-patcher', '--user=carol'], { reject: false, env: { HOME: h.dir, KUBECONFIG: '' }, extendEnv: false });
    expect(bind.stdout).toContain('clusterrolebinding.rbac.authorization.k8s.io/np created');
  });

  it('keeps the control API to the administrator and still refuses unknown tokens', async () => {
    const ctl = await kubectl('alice', ['get', '--raw', '/_sandbox/status']);
    expect(ctl.stderr).toContain('Forbidden');
    const r = await execa('/usr/bin/kubectl', ['--kubeconfig', h.kubeconfigPath, 'get', '--raw', '/api'], { reject: false, env: { HOME: h.dir, KUBECONFIG: '' }, extendEnv: false });
    expect(r.exitCode).toBe(0);
  });
});
