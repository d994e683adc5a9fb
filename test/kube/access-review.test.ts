/**
 * The gateway's accessReview: one SelfSubjectAccessReview per question, answered by the
 * sandbox's RBAC, and sent even in client dry-run (it persists nothing).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKubeGateway } from '../../src/kube/index.ts';
import { bootstrapPolicyObjects } from '../../src/sandbox/kube-api/rbac.ts';
import { type Harness, startHarness } from '../sandbox/kube-api/harness.ts';

let h: Harness;
let kubeconfig = '';
const RBAC = 'rbac.authorization.k8s.io';

beforeAll(async () => {
  h = await startHarness({ users: [{ username: 'eve', groups: [], token: 'eve-token-0123456789abcdef' }] });
  for (const o of bootstrapPolicyObjects()) h.store.create(h.store.typeOrThrow(RBAC, o.kind === 'ClusterRole' ? 'clusterroles' : 'clusterrolebindings'), o);
  h.store.create(h.store.typeOrThrow(RBAC, 'clusterroles'), { apiVersion: `${RBAC}/v1`, kind: 'ClusterRole', metadata: { name: 'evict' }, rules: [{ apiGroups: [''], resources: ['pods/eviction'], verbs: ['create'] }] });
  h.store.create(h.store.typeOrThrow(RBAC, 'rolebindings'), { apiVersion: `${RBAC}/v1`, kind: 'RoleBinding', metadata: { name: 'eve-evicts', namespace: 'kube-system' }, roleRef: { apiGroup: RBAC, kind: 'ClusterRole', name: 'evict' }, subjects: [{ kind: 'User', name: 'eve' }] });
  kubeconfig = join(h.dir, 'eve');
  const ca = Buffer.from(h.tls.caPem).toString('base64');
  await writeFile(kubeconfig, `apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster: {server: '${h.server.url}', certificate-authority-data: ${ca}}\nusers:\n- name: eve\n  user: {token: eve-token-0123456789abcdef}\ncontexts:\n- name: eve\n  context: {cluster: s, user: eve}\ncurrent-context: eve\n`, { mode: 0o600 });
});
afterAll(async () => {
  await h?.close();
});

describe('KubeGateway.accessReview', () => {
  it('answers per namespace and subresource, also in client dry-run, without counting as a write', async () => {
    const kube = createKubeGateway({ kubeconfig, dryRun: 'client' });
    expect(await kube.accessReview({ verb: 'create', group: '', resource: 'pods', subresource: 'eviction', namespace: 'kube-system' })).toMatchObject({ allowed: true });
    expect((await kube.accessReview({ verb: 'create', group: '', resource: 'pods', subresource: 'eviction', namespace: 'default' })).allowed).toBe(false);
    expect((await kube.accessReview({ verb: 'create', group: '', resource: 'pods', subresource: 'eviction' })).allowed).toBe(false);
    expect(kube.dryRunLog()).toEqual([]);
    expect(h.metrics.snapshot().mutations.kube).toBe(0);
  });

  it('reports unknown (not denied) when the server will not answer the review', async () => {
    const rb = h.store.typeOrThrow(RBAC, 'clusterrolebindings');
    h.store.delete(rb, undefined, 'system:basic-user');
    const kube = createKubeGateway({ kubeconfig });
    expect(await kube.accessReview({ verb: 'get', group: '', resource: 'nodes' })).toMatchObject({ allowed: false, unknown: true });
  });
});
