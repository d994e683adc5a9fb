import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import { startScriptedKubeApi } from './scripted-kube-api.ts';
import type { ScriptedKubeApi } from './scripted-kube-api.ts';
import { createKubeGateway, KINDS } from '../../src/kube/gateway.ts';
import { KubeApiError, WaitTimeoutError, DryRunViolationError } from '../../src/kube/errors.ts';
import { PermissionDeniedError } from '../../src/engine/errors.ts';
import { formatDryRunEntry } from '../../src/kube/dry-run.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { CallCounter } from '../../src/kube/call-counter.ts';
import { DryRunRecorder } from '../../src/kube/dry-run.ts';

let api: ScriptedKubeApi;
beforeAll(async () => {
  api = await startScriptedKubeApi({ pods: 1234 });
});
afterAll(async () => {
  await api.close();
});
beforeEach(() => {
  api.seen.length = 0;
  api.faults.length = 0;
  api.pdbBlocking = undefined;
});

const fast = { retry: { baseDelayMs: 10, maxRetryAfterMs: 200 }, rateLimit: { qps: 1000, burst: 1000 } };

describe('KubeGateway over HTTPS with client-node', () => {
  it('uses the requested context and reads the cluster identity', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, context: 'scripted-ctx', ...fast });
    const id = await kube.clusterIdentity();
    expect(id).toEqual({ server: api.url, contextName: 'scripted-ctx', clusterName: 'scripted', kubeSystemUid: 'ks-uid-1234' });
    expect(() => createKubeGateway({ kubeconfig: api.kubeconfigPath, context: 'nope' })).toThrow(/context nope is not in .*contexts: scripted-ctx, other/);
  });

  it('pages through more than one page of pods with limit=500 and continue', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    const pods = await kube.list(KINDS.Pod);
    expect(pods).toHaveLength(1234);
    expect(new Set(pods.map((p) => p.metadata?.name)).size).toBe(1234);
    expect(pods[0].kind).toBe('Pod');
    const lists = api.seen.filter((r) => r.path === '/api/v1/pods');
    expect(lists.map((r) => [r.query.get('limit'), r.query.get('continue')])).toEqual([
      ['500', null],
      ['500', '500'],
      ['500', '1000'],
    ]);
    expect(kube.calls().byKey['list pods']).toBe(3);
    const web = await kube.list(KINDS.Pod, { namespace: 'team-a', labelSelector: 'app=web' });
    expect(web.every((p) => p.metadata?.namespace === 'team-a' && p.metadata?.labels?.app === 'web')).toBe(true);
  });

  it('limits the request rate with a token bucket (burst, then qps)', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, rateLimit: { qps: 10, burst: 5 } });
    await kube.get(KINDS.Namespace, undefined, 'kube-system'); // discovery + one token used
    await new Promise((r) => setTimeout(r, 600)); // let the bucket refill to its burst
    api.seen.length = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 25 }, () => kube.get(KINDS.Namespace, undefined, 'kube-system')));
    const elapsed = performance.now() - t0;
    const times = api.seen.map((r) => r.at).sort((a, b) => a - b);
    expect(times).toHaveLength(25);
    // 5 at once from the full bucket, the other 20 at 10/s: about 2 s in all.
    expect(elapsed).toBeGreaterThan(1800);
    expect(elapsed).toBeLessThan(3500);
    for (let i = 0; i < times.length; i++) {
      const inWindow = times.filter((t) => t >= times[i] && t < times[i] + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(5 + 10 + 1);
    }
  });

  it('strategic-merge patches one container of a DaemonSet and keeps the other', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    const args = ['--node=$(NODE_NAME)', '--http-probe-port=8085', '--operation-mode=managed', '--forceNamespaced'];
    const out = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', { spec: { template: { spec: { containers: [{ name: 'nmi', args }] } } } }, 'strategic');
    const containers = (out as any).spec.template.spec.containers;
    expect(containers.map((c: any) => c.name)).toEqual(['nmi', 'sidecar']);
    expect(containers[0].args).toEqual(args);
    expect(containers[0].image).toContain('nmi:v1.8.17');
    expect(api.daemonSet.spec.template.spec.containers[0].args).toEqual(args);
    expect(api.seen.find((r) => r.method === 'PATCH')?.contentType).toBe('application/strategic-merge-patch+json');
  });

  it('classifies an eviction refused by a PodDisruptionBudget, and NotFound', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    api.pdbBlocking = 'web-pdb';
    const r = await kube.evict('team-b', 'pod-00000');
    expect(r.kind).toBe('blocked-by-pdb');
    if (r.kind === 'blocked-by-pdb') {
      expect(r.message).toContain("Cannot evict pod as it would violate the pod's disruption budget.");
      expect(r.budgets[0]).toContain('web-pdb');
    }
    // A PDB refusal is the drain step's to retry, never the transport's.
    expect(api.seen.filter((s) => s.path.endsWith('/eviction'))).toHaveLength(1);
    expect(await kube.evict('team-b', 'no-such-pod')).toEqual({ kind: 'not-found' });
  });

  it('retries a 429 that is not an eviction, honouring a capped Retry-After', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    await kube.get(KINDS.Namespace, undefined, 'kube-system');
    api.faults.push({ method: 'GET', path: /kube-system$/, status: 429, headers: { 'retry-after': '1200' } });
    const t0 = Date.now();
    const ns = await kube.get(KINDS.Namespace, undefined, 'kube-system');
    expect(ns?.metadata?.uid).toBe('ks-uid-1234');
    expect(Date.now() - t0).toBeLessThan(1500); // waited the 200 ms cap, not 1200 s
    expect(kube.calls().retries).toBe(1);
  });

  it('fails fast with a typed error on other 4xx, and treats NotFound on delete as success', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    expect(await kube.delete(KINDS.Deployment, 'default', 'gone')).toBe('not-found');
    expect(await kube.get(KINDS.Deployment, 'default', 'absent')).toBeUndefined();
    api.faults.push({ method: 'GET', path: /daemonsets\/nmi$/, status: 403, body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Forbidden', message: 'daemonsets.apps "nmi" is forbidden', code: 403 } });
    const err = await kube.get(KINDS.DaemonSet, 'default', 'nmi').catch((e) => e);
    // A 403 is an environment problem with its own typed error; the API error is its cause.
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(err.cause).toBeInstanceOf(KubeApiError);
    expect(err.cause.status).toBe(403);
    expect(err.cause.reason).toBe('Forbidden');
    expect(err.message).not.toContain(api.token);
    expect(api.seen.filter((s) => s.path.endsWith('/daemonsets/nmi'))).toHaveLength(1);
  });

  it('server dry-run sends dryRun=All, leaves the server state alone and logs the write', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, dryRun: 'server', ...fast });
    const before = structuredClone(api.daemonSet);
    const out = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', { spec: { template: { spec: { containers: [{ name: 'nmi', args: ['--x'] }] } } } }, 'strategic');
    expect((out as any).spec.template.spec.containers[0].args).toEqual(['--x']);
    expect(api.daemonSet).toEqual(before);
    const scaled = await kube.scale('default', 'mic', 0);
    expect(scaled).toEqual({ previousReplicas: api.deployment.spec.replicas, replicas: 0 });
    expect(api.deployment.spec.replicas).toBe(2);
    const writes = api.seen.filter((s) => s.method !== 'GET');
    expect(writes).toHaveLength(2);
    expect(writes.every((w) => w.query.get('dryRun') === 'All')).toBe(true);
    const log = kube.dryRunLog();
    expect(log.map((e) => e.sentAsServerDryRun)).toEqual([true, true]);
    expect(formatDryRunEntry(log[1])).toMatch(/^sent with dryRun=All: PATCH \/apis\/apps\/v1\/namespaces\/default\/deployments\/mic\/scale\?dryRun=All/);
  });

  it('client dry-run makes no write call at all, answers from the live object, and logs the would-be writes', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, dryRun: 'client', ...fast });
    const before = structuredClone(api.daemonSet);
    const out = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', { spec: { template: { spec: { containers: [{ name: 'nmi', args: ['--y'] }] } } } }, 'strategic');
    expect((out as any).spec.template.spec.containers.map((c: any) => c.args[0])).toEqual(['--y', 'sleep']);
    await kube.scale('default', 'mic', 0);
    expect(await kube.evict('team-a', 'pod-00001')).toEqual({ kind: 'evicted', dryRun: true });
    expect(await kube.delete(KINDS.Deployment, 'default', 'gone')).toBe('not-found');
    expect(api.seen.filter((s) => s.method !== 'GET')).toHaveLength(0);
    expect(api.daemonSet).toEqual(before);
    expect(kube.dryRunLog().map((e) => `${e.method} ${e.description}`)).toEqual([
      'PATCH strategic patch DaemonSet default/nmi',
      'PATCH scale Deployment default/mic from 2 to 0',
      'POST evict pod team-a/pod-00001',
    ]);
    expect(kube.calls().suppressedWrites).toBe(3);
  });

  it('the transport itself refuses writes in client dry-run (no path around the gateway)', async () => {
    const client = KubeClient.load({ kubeconfig: api.kubeconfigPath, ...fast });
    const t = client.transport({ counter: new CallCounter(), dryRun: new DryRunRecorder('client') });
    await expect(t.request('DELETE', '/api/v1/namespaces/team-a/pods/pod-00001')).rejects.toBeInstanceOf(DryRunViolationError);
    expect(api.seen).toHaveLength(0);
  });

  it('counts calls per scoped view and in the parent', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    const step = kube.scoped({});
    await step.get(KINDS.DaemonSet, 'default', 'nmi');
    await step.list(KINDS.Pod, { namespace: 'team-a' });
    expect(step.calls().byKey['get daemonsets.apps']).toBe(1);
    expect(step.calls().byKey['list pods']).toBe(2);
    expect(kube.calls().total).toBeGreaterThanOrEqual(step.calls().total);
  });

  it('waitFor polls until the value appears, and times out naming what it awaited', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    let n = 0;
    const v = await kube.waitFor(async () => (++n >= 3 ? 'ready' : undefined), { describe: 'three polls', timeoutMs: 2000, intervalMs: 10 });
    expect(v).toBe('ready');
    const err = await kube
      .waitFor(
        async (note) => {
          note('1/3 updated');
          return false;
        },
        { describe: 'daemonset default/nmi rollout', timeoutMs: 150, intervalMs: 20 },
      )
      .catch((e) => e);
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect(err.message).toMatch(/waiting for daemonset default\/nmi rollout \(last seen: 1\/3 updated\)/);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('interrupted')), 50);
    await expect(kube.waitFor(async () => false, { describe: 'never', timeoutMs: 10_000, intervalMs: 20, signal: ac.signal })).rejects.toThrow('interrupted');
  });
});
