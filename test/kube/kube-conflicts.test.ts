/**
 * 409 Conflict on a write: the gateway reads the object again, re-checks the precondition the
 * write was planned on, and retries a bounded number of times; a real concurrent change ends in
 * ConcurrentChangeError carrying the difference. Against the scripted HTTPS API server with the
 * real client-node transport.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startScriptedKubeApi, type ScriptedKubeApi } from './scripted-kube-api.ts';
import { createKubeGateway, expectFields, KINDS, MAX_CONFLICT_ATTEMPTS } from '../../src/kube/gateway.ts';
import { ConcurrentChangeError, ConflictRetriesExhaustedError } from '../../src/kube/errors.ts';

let api: ScriptedKubeApi;
let original: Record<string, unknown>;
beforeAll(async () => {
  api = await startScriptedKubeApi({ pods: 1 });
  original = structuredClone(api.daemonSet);
});
afterAll(async () => {
  await api.close();
});
beforeEach(() => {
  api.seen.length = 0;
  api.faults.length = 0;
  for (const k of Object.keys(api.daemonSet)) delete api.daemonSet[k];
  Object.assign(api.daemonSet, structuredClone(original));
});

const fast = { retry: { baseDelayMs: 10 }, rateLimit: { qps: 1000, burst: 1000 } };
const DS = '/apis/apps/v1/namespaces/default/daemonsets/nmi';
const conflict = (then?: () => void) => ({
  method: 'PATCH',
  path: new RegExp(`^${DS}$`),
  status: 409,
  body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Conflict', code: 409, message: 'Operation cannot be fulfilled on daemonsets.apps "nmi": the object has been modified; please apply your changes to the latest version and try again' },
  then,
});
const writes = () => api.seen.filter((r) => r.path === DS).map((r) => r.method);
const argsPointer = '/spec/template/spec/containers/0/args';
const plannedArgs = ['--node=$(NODE_NAME)', '--http-probe-port=8085'];
const patch = { spec: { template: { spec: { containers: [{ name: 'nmi', args: ['--operation-mode=managed', '--http-probe-port=8085'] }] } } } };

describe('409 Conflict on a Kubernetes write', () => {
  it('a conflict once: the object is read again and the same patch is sent again, successfully', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    api.faults.push(conflict());
    const r = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', patch, 'strategic');
    expect((r.spec as any).template.spec.containers[0].args).toEqual(['--operation-mode=managed', '--http-probe-port=8085']);
    expect(writes()).toEqual(['PATCH', 'GET', 'PATCH']);
  });

  it('a conflict with a precondition that still holds is retried', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    // Someone changed a label in between: not what the write was planned on.
    api.faults.push(conflict(() => (api.daemonSet.metadata.labels = { team: 'platform' })));
    const r = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', patch, 'strategic', { precondition: expectFields({ [argsPointer]: plannedArgs }) });
    expect((r.spec as any).template.spec.containers[0].args[0]).toBe('--operation-mode=managed');
    expect(r.metadata?.labels).toEqual({ team: 'platform' });
  });

  it('a concurrent change to what the write was planned on stops with the diff and what to do; nothing more is sent', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    api.faults.push(conflict(() => (api.daemonSet.spec.template.spec.containers[0].args = ['--node=$(NODE_NAME)', '--http-probe-port=9999'])));
    const err = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', patch, 'strategic', { precondition: expectFields({ [argsPointer]: plannedArgs }) }).catch((e) => e);
    expect(err).toBeInstanceOf(ConcurrentChangeError);
    expect(err.target).toBe('daemonset default/nmi');
    expect(err.diff).toEqual([`${argsPointer}: planned ["--node=$(NODE_NAME)","--http-probe-port=8085"], now ["--node=$(NODE_NAME)","--http-probe-port=9999"]`]);
    expect(err.message).toContain('daemonset default/nmi was changed by someone else');
    expect(err.hint).toContain('kubectl get daemonset nmi -n default -o yaml --show-managed-fields');
    expect(err.exitCode).toBe(1);
    expect(writes()).toEqual(['PATCH', 'GET']);
    expect(api.daemonSet.spec.template.spec.containers[0].args[1]).toBe('--http-probe-port=9999');
  });

  it('an object deleted after the conflict is reported as a concurrent change', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    api.faults.push(conflict());
    api.faults.push({ method: 'GET', path: new RegExp(`^${DS}$`), status: 404, body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'daemonsets.apps "nmi" not found' } });
    const err = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', patch, 'strategic').catch((e) => e);
    expect(err).toBeInstanceOf(ConcurrentChangeError);
    expect(err.diff).toEqual(['the object was deleted']);
  });

  it('conflicts on every attempt end after a bounded number of writes with a retryable error', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    for (let i = 0; i < MAX_CONFLICT_ATTEMPTS + 2; i++) api.faults.push(conflict());
    const err = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', patch, 'strategic').catch((e) => e);
    expect(err).toBeInstanceOf(ConflictRetriesExhaustedError);
    expect(err.message).toBe(`daemonset default/nmi kept changing: ${MAX_CONFLICT_ATTEMPTS} writes in a row met 409 Conflict (each after a fresh read).`);
    expect(writes().filter((m) => m === 'PATCH')).toHaveLength(MAX_CONFLICT_ATTEMPTS);
  });

  it('the backoff between conflicting attempts honours the AbortSignal', async () => {
    const controller = new AbortController();
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, rateLimit: fast.rateLimit, retry: { baseDelayMs: 60_000, maxDelayMs: 60_000 } }).scoped({ signal: controller.signal });
    api.faults.push(conflict(() => setTimeout(() => controller.abort(new Error('interrupted by the operator')), 50)));
    const t0 = Date.now();
    const err = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', patch, 'strategic').catch((e) => e);
    expect(err.message).toBe('interrupted by the operator');
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(writes()).toEqual(['PATCH']);
  });

  it('a replace with a stale resourceVersion is a concurrent change unless the caller rebases or vouches with a precondition', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    const read = (await kube.get(KINDS.DaemonSet, 'default', 'nmi'))!;
    // A real concurrent write: the server's resourceVersion moves on.
    await kube.patch(KINDS.DaemonSet, 'default', 'nmi', { metadata: { labels: { by: 'helm' } } }, 'merge');
    const mine = structuredClone(read);
    mine.metadata!.annotations = { 'podid-migrate/touched': 'yes' };
    api.seen.length = 0;
    const err = await kube.replace(mine).catch((e) => e);
    expect(err).toBeInstanceOf(ConcurrentChangeError);
    expect(err.diff[0]).toMatch(/^\/metadata\/resourceVersion: planned "7", now "8" \(the object was written since it was read\)$/);
    expect(writes()).toEqual(['PUT', 'GET']);

    api.seen.length = 0;
    const rebased = await kube.replace(mine, {
      precondition: expectFields({ [argsPointer]: plannedArgs }),
      rebase: (current) => ({ ...current, metadata: { ...current.metadata, annotations: { 'podid-migrate/touched': 'yes' } } }),
    });
    expect(rebased.metadata?.labels).toEqual({ by: 'helm' });
    expect(rebased.metadata?.annotations).toEqual({ 'podid-migrate/touched': 'yes' });
    expect(writes()).toEqual(['PUT', 'GET', 'PUT']);
  });

  it('a merge patch pinned to a resourceVersion is re-pinned only when the precondition vouches for the fresh object', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    api.daemonSet.metadata.resourceVersion = '20';
    const pinned = { metadata: { resourceVersion: '19', labels: { migrated: 'true' } } };
    const err = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', pinned, 'merge').catch((e) => e);
    expect(err).toBeInstanceOf(ConcurrentChangeError);
    const ok = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', pinned, 'merge', { precondition: expectFields({ [argsPointer]: plannedArgs }) });
    expect(ok.metadata?.labels).toEqual({ migrated: 'true' });
    const sent = api.seen.filter((r) => r.method === 'PATCH').map((r) => (r.body as any).metadata.resourceVersion);
    expect(sent).toEqual(['19', '19', '20']);
  });
});
