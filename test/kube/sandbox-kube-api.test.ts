/** The Kubernetes gateway against the sandbox's own API server (src/sandbox/kube-api) over HTTPS. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startHarness, runningPod } from '../sandbox/kube-api/harness.ts';
import type { Harness } from '../sandbox/kube-api/harness.ts';
import { createKubeGateway, KINDS } from '../../src/kube/gateway.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const fast = { rateLimit: { qps: 2000, burst: 2000 }, retry: { baseDelayMs: 10, maxRetryAfterMs: 200 } };

const ds = {
  apiVersion: 'apps/v1',
  kind: 'DaemonSet',
  metadata: { name: 'nmi', namespace: 'default' },
  spec: {
    selector: { matchLabels: { app: 'nmi' } },
    template: {
      metadata: { labels: { app: 'nmi' } },
      spec: {
        containers: [
          { name: 'nmi', image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17', args: ['--node=$(NODE_NAME)', '--http-probe-port=8085'] },
          { name: 'probe', image: 'busybox', args: ['sleep', '3600'] },
        ],
      },
    },
  },
};

describe('KubeGateway against the sandbox API server', () => {
  it('creates through the wire, pages a list of more than 500 pods, and reads the cluster identity', async () => {
    const kube = createKubeGateway({ kubeconfig: h.kubeconfigPath, ...fast });
    const id = await kube.clusterIdentity();
    expect(id.server).toBe(h.server.url);
    expect(id.kubeSystemUid).toMatch(/\S/);
    await Promise.all(Array.from({ length: 520 }, (_, i) => kube.create(runningPod(`p-${i}`, { namespace: 'default', labels: { app: 'web' } }) as any)));
    h.metrics.reset();
    const pods = await kube.list(KINDS.Pod, { namespace: 'default', labelSelector: 'app=web' });
    expect(pods).toHaveLength(520);
    expect(h.metrics.count({ api: 'kube', verb: 'list', resource: 'pods' })).toBe(2);
  });

  it('strategic-merge patches the NMI container args and keeps the other container', async () => {
    const kube = createKubeGateway({ kubeconfig: h.kubeconfigPath, ...fast });
    await kube.create(structuredClone(ds));
    const args = ['--node=$(NODE_NAME)', '--http-probe-port=8085', '--operation-mode=managed', '--forceNamespaced'];
    await kube.patch(KINDS.DaemonSet, 'default', 'nmi', { spec: { template: { spec: { containers: [{ name: 'nmi', args }] } } } }, 'strategic');
    const live = await kube.get<any>(KINDS.DaemonSet, 'default', 'nmi');
    expect(live.spec.template.spec.containers.map((c: any) => c.name)).toEqual(['nmi', 'probe']);
    expect(live.spec.template.spec.containers[0].args).toEqual(args);
    expect(live.spec.template.spec.containers[1].args).toEqual(['sleep', '3600']);
  });

  it('server dry-run: the store is unchanged and the sandbox metrics show dryRun, not a mutation', async () => {
    const kube = createKubeGateway({ kubeconfig: h.kubeconfigPath, dryRun: 'server', ...fast });
    const before = await kube.get<any>(KINDS.DaemonSet, 'default', 'nmi');
    h.metrics.reset();
    const answer = await kube.patch<any>(KINDS.DaemonSet, 'default', 'nmi', { spec: { template: { spec: { containers: [{ name: 'nmi', args: ['--changed'] }] } } } }, 'strategic');
    expect(answer.spec.template.spec.containers[0].args).toEqual(['--changed']);
    expect(await kube.delete(KINDS.Pod, 'default', 'p-1')).toBe('deleted');
    const after = await kube.get<any>(KINDS.DaemonSet, 'default', 'nmi');
    expect(after.spec).toEqual(before.spec);
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    expect(await kube.get(KINDS.Pod, 'default', 'p-1')).toBeDefined();
    const snap = h.metrics.snapshot();
    expect(snap.dryRunRequests).toBe(2);
    expect(snap.mutations.kube).toBe(0);
  });

  it('client dry-run: no write request reaches the server at all', async () => {
    const kube = createKubeGateway({ kubeconfig: h.kubeconfigPath, dryRun: 'client', ...fast });
    h.metrics.reset();
    await kube.patch(KINDS.DaemonSet, 'default', 'nmi', { spec: { template: { spec: { containers: [{ name: 'nmi', args: ['--x'] }] } } } }, 'strategic');
    await kube.delete(KINDS.Pod, 'default', 'p-2');
    expect(await kube.evict('default', 'p-3')).toEqual({ kind: 'evicted', dryRun: true });
    expect(h.metrics.count({ api: 'kube', mutating: true })).toBe(0);
    expect(kube.dryRunLog()).toHaveLength(3);
  });
});
