import { afterEach, describe, expect, it } from 'vitest';
import type { KObject } from '../../../src/sandbox/store.ts';
import { deployment, isReady, startCluster, type TestCluster } from './helpers.ts';

let c: TestCluster | undefined;
afterEach(async () => {
  await c?.stop();
  c = undefined;
});

const NODES = [
  { name: 'aks-sys-0', pool: 'sys' },
  { name: 'aks-batch-0', pool: 'batch' },
  { name: 'aks-batch-1', pool: 'batch' },
  { name: 'aks-batch-2', pool: 'batch' },
];

function byNode(pods: KObject[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of pods) out[p.spec.nodeName ?? '<none>'] = (out[p.spec.nodeName ?? '<none>'] ?? 0) + 1;
  return out;
}

describe('scheduler', () => {
  it('honours nodeSelector and spreads evenly over the matching nodes', async () => {
    c = await startCluster({ nodes: NODES });
    c.create(deployment('worker', 6, { nodeSelector: { 'kubernetes.azure.com/agentpool': 'batch' } }));
    await c.until('6 ready', () => c!.pods().filter(isReady).length === 6);
    expect(byNode(c.pods())).toEqual({ 'aks-batch-0': 2, 'aks-batch-1': 2, 'aks-batch-2': 2 });
    const p = c.pods()[0];
    expect(p.status.conditions.find((x: any) => x.type === 'PodScheduled').status).toBe('True');
    // Pod IPs come from each node's own pod CIDR.
    const cidrs = new Map(c.list(c.t('', 'nodes')).map((n) => [n.metadata.name, n.spec.podCIDR.replace(/0\/24$/, '')]));
    for (const q of c.pods()) expect(q.status.podIP.startsWith(cidrs.get(q.spec.nodeName)!)).toBe(true);
    expect(new Set(c.pods().map((q) => q.status.podIP)).size).toBe(6);
  });

  it('skips cordoned nodes, reports why a pod cannot be placed, and places it once a node is uncordoned', async () => {
    c = await startCluster({ nodes: NODES });
    const nodes = c.t('', 'nodes');
    for (const n of ['aks-batch-0', 'aks-batch-1', 'aks-batch-2']) c.store.mutate(nodes, undefined, n, (o) => void (o.spec.unschedulable = true));
    c.create(deployment('worker', 2, { nodeSelector: { agentpool: 'batch' } }));
    await c.run(5000);
    const pending = c.pods();
    expect(pending.every((p) => !p.spec.nodeName)).toBe(true);
    const cond = pending[0].status.conditions.find((x: any) => x.type === 'PodScheduled');
    expect(cond).toMatchObject({ status: 'False', reason: 'Unschedulable' });
    expect(cond.message).toBe(
      "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 3 node(s) were unschedulable. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.",
    );
    // The node lifecycle controller mirrors the cordon as a taint, like the real one.
    expect(c.store.get(nodes, undefined, 'aks-batch-1')!.spec.taints).toEqual([expect.objectContaining({ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' })]);
    c.store.mutate(nodes, undefined, 'aks-batch-1', (o) => void delete o.spec.unschedulable);
    await c.until('2 ready', () => c!.pods().filter(isReady).length === 2);
    expect(byNode(c.pods())).toEqual({ 'aks-batch-1': 2 });
    expect(c.store.get(nodes, undefined, 'aks-batch-1')!.spec.taints).toBeUndefined();
  });

  it('respects taints and tolerations, and the per-node pod capacity', async () => {
    c = await startCluster({ nodes: [{ name: 'gpu-0', pool: 'gpu', capacityPods: 3 }, { name: 'small-0', pool: 'small', capacityPods: 2 }] });
    c.store.mutate(c.t('', 'nodes'), undefined, 'gpu-0', (o) => void (o.spec.taints = [{ key: 'sku', value: 'gpu', effect: 'NoSchedule' }]));
    c.create(deployment('plain', 4));
    c.create(deployment('tolerant', 2, { podSpec: { tolerations: [{ key: 'sku', operator: 'Equal', value: 'gpu', effect: 'NoSchedule' }] }, labels: { app: 'tolerant' } }));
    await c.run(10_000);
    const plain = c.pods({ labelSelector: 'app=plain' });
    expect(byNode(plain)).toEqual({ 'small-0': 2, '<none>': 2 });
    const stuck = plain.find((p) => !p.spec.nodeName)!;
    expect(stuck.status.conditions[0].message).toMatch(/^0\/2 nodes are available: (1 Too many pods, 1 node\(s\) had untolerated taint \{sku: gpu\}|1 node\(s\) had untolerated taint \{sku: gpu\}, 1 Too many pods)\./);
    const tolerant = c.pods({ labelSelector: 'app=tolerant' });
    expect(tolerant.every((p) => p.spec.nodeName === 'gpu-0')).toBe(true);
  });

  it('does not place pods on NotReady nodes', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }, { name: 'n2', pool: 'a' }] });
    c.store.mutate(
      c.t('', 'nodes'),
      undefined,
      'n1',
      (o) => void (o.status.conditions.find((x: any) => x.type === 'Ready').status = 'False'),
      { subresource: 'status' },
    );
    c.create(deployment('web', 4));
    await c.until('4 ready', () => c!.pods().filter(isReady).length === 4);
    expect(byNode(c.pods())).toEqual({ n2: 4 });
  });
});
