/**
 * Benchmark: RBAC decisions of the sandbox's API server as the number of unrelated bindings
 * grows. Decisions are indexed by subject and compiled per user, so the cost per request must
 * not grow with the cluster's bindings: the figures are printed side by side, with the ratio.
 *
 *   node bench/rbac-authorize.ts
 */
import { ManualClock } from '../src/sandbox/clock.ts';
import { RbacAuthorizer } from '../src/sandbox/kube-api/rbac.ts';
import { registerBuiltinTypes, bootstrapNamespaces } from '../src/sandbox/kube-api/types.ts';
import { ObjectStore } from '../src/sandbox/store.ts';

const RBAC = 'rbac.authorization.k8s.io';

function cluster(unrelated: number): { store: ObjectStore; rbac: RbacAuthorizer } {
  const store = new ObjectStore(new ManualClock());
  registerBuiltinTypes(store);
  bootstrapNamespaces(store);
  const roles = store.typeOrThrow(RBAC, 'clusterroles');
  const bindings = store.typeOrThrow(RBAC, 'clusterrolebindings');
  store.create(roles, { apiVersion: `${RBAC}/v1`, kind: 'ClusterRole', metadata: { name: 'reader' }, rules: [{ apiGroups: [''], resources: ['pods', 'nodes'], verbs: ['get', 'list', 'watch'] }, { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'patch'] }] });
  for (let i = 0; i < unrelated; i++) {
    store.create(bindings, { apiVersion: `${RBAC}/v1`, kind: 'ClusterRoleBinding', metadata: { name: `other-${i}` }, roleRef: { apiGroup: RBAC, kind: 'ClusterRole', name: 'reader' }, subjects: [{ kind: 'User', name: `user-${i}` }] });
  }
  store.create(bindings, { apiVersion: `${RBAC}/v1`, kind: 'ClusterRoleBinding', metadata: { name: 'me' }, roleRef: { apiGroup: RBAC, kind: 'ClusterRole', name: 'reader' }, subjects: [{ kind: 'User', name: 'operator' }] });
  return { store, rbac: new RbacAuthorizer(store) };
}

function decisionsPerSecond(rbac: RbacAuthorizer, n: number): number {
  const user = { username: 'operator', groups: ['system:authenticated'] };
  const asks = [
    { verb: 'list', group: '', resource: 'pods', namespace: 'default' },
    { verb: 'patch', group: 'apps', resource: 'deployments', namespace: 'kube-system', name: 'mic' },
    { verb: 'delete', group: '', resource: 'nodes', name: 'n1' },
  ];
  let allowed = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) if (rbac.authorize(user, asks[i % asks.length]).allowed) allowed++;
  const ms = performance.now() - t0;
  if (allowed !== Math.ceil((n * 2) / 3) && allowed !== Math.floor((n * 2) / 3)) throw new Error(`unexpected decisions: ${allowed} of ${n} allowed`);
  return n / (ms / 1000);
}

const N = 200_000;
const small = cluster(100);
const large = cluster(10_000);
// Warm up both (JIT, the per-user compilation).
decisionsPerSecond(small.rbac, 10_000);
decisionsPerSecond(large.rbac, 10_000);
const a = decisionsPerSecond(small.rbac, N);
const b = decisionsPerSecond(large.rbac, N);
console.log(`RBAC decisions with 100 unrelated bindings:    ${Math.round(a).toLocaleString('en')} /s`);
console.log(`RBAC decisions with 10,000 unrelated bindings: ${Math.round(b).toLocaleString('en')} /s`);
console.log(`ratio (10,000 / 100): ${(b / a).toFixed(2)} (1.00 = independent of the number of bindings)`);
// A change to any RBAC object recompiles the user's rules once, on its next request.
const binding = large.store.typeOrThrow(RBAC, 'clusterrolebindings');
const t0 = performance.now();
for (let i = 0; i < 100; i++) {
  large.store.mutate(binding, undefined, `other-${i}`, (o) => void (o.metadata.labels = { touched: String(i) }));
  large.rbac.authorize({ username: 'operator', groups: [] }, { verb: 'list', group: '', resource: 'pods' });
}
console.log(`binding change + next decision (10,000 bindings): ${((performance.now() - t0) / 100).toFixed(3)} ms`);
small.rbac.close();
large.rbac.close();
