import { describe, expect, it } from 'vitest';
import { deployment, startCluster } from './helpers.ts';

describe('scale', () => {
  it('500 nodes and 10,000 pods from Deployments reach Running', async () => {
    const nodes = Array.from({ length: 500 }, (_, i) => ({ name: `aks-pool${i % 5}-${String(i).padStart(6, '0')}`, pool: `pool${i % 5}` }));
    const c = await startCluster({ nodes, namespaces: ['apps'] });
    try {
      for (let d = 0; d < 100; d++) c.create(deployment(`svc-${d}`, 100, { namespace: 'apps', nodeSelector: { agentpool: `pool${d % 5}` } }));
      const pods = c.t('', 'pods');
      let running = 0;
      await c.until(
        '10,000 pods Running',
        () => {
          running = 0;
          for (const p of c.store.scan(pods)) if (p.status?.phase === 'Running') running++;
          return running === 10_000;
        },
        600_000,
        2000,
      );
      // How long it takes is measured by bench/controllers-scale.ts, not asserted here.
      // Spread evenly: 2,000 pods per pool of 100 nodes.
      const perNode = new Map<string, number>();
      for (const p of c.store.scan(pods)) perNode.set(p.spec.nodeName, (perNode.get(p.spec.nodeName) ?? 0) + 1);
      expect(perNode.size).toBe(500);
      expect(Math.max(...perNode.values())).toBe(20);
    } finally {
      await c.stop();
    }
  }, 120_000);
});
