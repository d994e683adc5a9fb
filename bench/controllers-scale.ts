/**
 * Benchmark: the sandbox's workload controllers alone (store, scheduler, Deployment/ReplicaSet
 * controllers, kubelet on a manual-free scaled clock) bringing 100 Deployments x 100 replicas
 * on 500 nodes to Running. Prints the real time it took, pods per second and the heap, and the
 * same for a tenth of the load side by side, so the figure reads as a ratio on any machine.
 *
 *   node bench/controllers-scale.ts
 */
import { deployment, startCluster } from '../test/sandbox/controllers/helpers.ts';

async function run(nodesCount: number, deployments: number, replicas: number): Promise<{ seconds: number; pods: number; heapMb: number }> {
  const nodes = Array.from({ length: nodesCount }, (_, i) => ({ name: `aks-pool${i % 5}-${String(i).padStart(6, '0')}`, pool: `pool${i % 5}` }));
  const t0 = performance.now();
  const c = await startCluster({ nodes, namespaces: ['apps'] });
  try {
    for (let d = 0; d < deployments; d++) c.create(deployment(`svc-${d}`, replicas, { namespace: 'apps', nodeSelector: { agentpool: `pool${d % 5}` } }));
    const pods = c.t('', 'pods');
    const want = deployments * replicas;
    await c.until(
      `${want} pods Running`,
      () => {
        let running = 0;
        for (const p of c.store.scan(pods)) if (p.status?.phase === 'Running') running++;
        return running === want;
      },
      600_000,
      2000,
    );
    return { seconds: (performance.now() - t0) / 1000, pods: want, heapMb: process.memoryUsage().heapUsed / 1024 / 1024 };
  } finally {
    await c.stop();
  }
}

const small = await run(50, 10, 100);
const large = await run(500, 100, 100);
console.log(`controllers, ${small.pods} pods on 50 nodes: ${small.seconds.toFixed(1)} s real time (${(small.pods / small.seconds).toFixed(0)} pods/s), heap ${small.heapMb.toFixed(0)} MB`);
console.log(`controllers, ${large.pods} pods on 500 nodes: ${large.seconds.toFixed(1)} s real time (${(large.pods / large.seconds).toFixed(0)} pods/s), heap ${large.heapMb.toFixed(0)} MB`);
console.log(`ratio: 10x the pods took ${(large.seconds / small.seconds).toFixed(1)}x the time (goal: under 60 s for 10,000 pods on the build machines)`);
