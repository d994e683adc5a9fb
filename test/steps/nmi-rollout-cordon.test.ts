/**
 * The drain NMI rollout's cordon of every node still on the old NMI, over the fake gateway: the
 * nodes are cordoned ahead of their turn, each is uncordoned after its NMI, a node cordoned before
 * the rollout stays cordoned, and a PodDisruptionBudget that refuses an eviction while the pods it
 * covers are Pending (nowhere to start) uncordons the pool's later nodes instead of waiting out
 * --drain-timeout; rollback leaves every node as it was.
 */
import { describe, expect, it } from 'vitest';
import { action, type MigrationAction } from '../../src/steps/executors/index.ts';
import type { KubeObject } from '../../src/kube/gateway.ts';
import type { StepPlan } from '../../src/engine/step.ts';
import { nmiManagedStep } from '../../src/steps/03-nmi-managed.ts';
import { applyPlan, rollbackStep, verifyRollback } from './run-actions.ts';
import { contextFor, standardCluster, tempDir, type FakeKube } from './fakes.ts';
import { nodeObject, podObject } from './steps-5-7-fakes.ts';

const CORDON = 'nmi/cordon-old-nmi';

function cordoned(kube: FakeKube, node: string): boolean {
  return Boolean((kube.find('Node', undefined, node)!.spec as { unschedulable?: boolean }).unschedulable);
}

/** Pool pay with three nodes, each with an NMI pod already on the DaemonSet's template (Ready) and one api pod. */
function payPool(kube: FakeKube): string[] {
  const ds = kube.find('DaemonSet', 'default', 'nmi')!;
  const args = (ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args;
  const nodes = [0, 1, 2].map((i) => kube.add(nodeObject('pay', i)).metadata!.name!);
  for (const n of nodes) {
    kube.add({
      ...podObject('default', `nmi-${n}`, n, { kind: 'DaemonSet', name: 'nmi' }, { component: 'nmi' }),
      spec: { nodeName: n, containers: [{ name: 'nmi', args }] },
      status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
    });
    kube.add(podObject('payments', `api-${n.slice(-1)}`, n, { kind: 'ReplicaSet', name: 'api-5c6d8f9b7' }, { app: 'api', aadpodidbinding: 'api' }, 0));
  }
  return nodes;
}

function rolloutPlan(nodes: string[]): StepPlan {
  const node = (n: string, later: string[]): MigrationAction =>
    action({
      id: `nmi/node/${n}`,
      kind: 'nmi-node-rollout',
      op: '~',
      target: `node ${n}`,
      summary: 'evict, restart NMI, await Active, uncordon',
      api: 'kube',
      writes: { kube: 2, arm: 0 },
      details: { pool: 'pay', node: n, namespace: 'default', name: 'nmi', container: 'nmi', force: false, cordonedWith: CORDON, laterInPool: later },
    });
  return {
    stepId: 'nmi-managed',
    blockers: [],
    notes: [],
    actions: [
      action({ id: CORDON, kind: 'cordon-nodes', op: '~', target: '3 nodes', summary: 'cordon', api: 'kube', writes: { kube: 2, arm: 0 }, details: { nodes: [...nodes].sort(), reason: 'still on the old NMI' } }),
      node(nodes[0], [nodes[1], nodes[2]]),
      node(nodes[1], [nodes[2]]),
      node(nodes[2], []),
    ],
  };
}

describe('drain NMI rollout: cordon ahead of the turn', () => {
  it('cordons every node first, uncordons each after its NMI, keeps a node cordoned before as it was, and rolls back to the start', async () => {
    const { kube, azure } = standardCluster();
    const nodes = payPool(kube);
    // Cordoned by someone else before the rollout: it must stay so.
    (kube.find('Node', undefined, nodes[2])!.spec as { unschedulable?: boolean }).unschedulable = true;
    const states: string[] = [];
    kube.evictionPolicy = (pod) => {
      // What the scheduler would see when the evicted pod's replacement looks for a node.
      if (/^api-\d$/.test(pod.metadata!.name!)) states.push(`${pod.metadata!.name}: ${nodes.map((n) => (cordoned(kube, n) ? 'C' : '-')).join('')}`);
      return 'allow';
    };
    const dir = tempDir();
    const ctx = await contextFor('nmi-managed', kube, azure, dir, { options: { evictionRetryMs: 20 } });
    await applyPlan(nmiManagedStep, ctx, rolloutPlan(nodes));
    // While node 0 empties, nodes 1 and 2 are cordoned (nothing lands on the old NMI); node 1's
    // replacement pods can only go to node 0, switched and uncordoned by then.
    expect(states).toEqual(['api-0: CCC', 'api-1: -CC', 'api-2: --C']);
    expect(nodes.map((n) => cordoned(kube, n))).toEqual([false, false, true]);
    const cordonWrites = kube.writeLines().filter((l) => l.startsWith('patch Node'));
    expect(cordonWrites.filter((l) => l.includes('"unschedulable":true'))).toHaveLength(2);

    await rollbackStep(await contextFor('nmi-managed', kube, azure, dir));
    expect(nodes.map((n) => cordoned(kube, n))).toEqual([false, false, true]);
    expect((await verifyRollback(await contextFor('nmi-managed', kube, azure, dir))).ok).toBe(true);
  });

  it('a budget that refuses while the pods it covers are Pending uncordons the later nodes of the pool; each is cordoned again at its turn', async () => {
    const { kube, azure } = standardCluster();
    const nodes = payPool(kube);
    kube.add({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'api-pdb', namespace: 'payments' }, spec: { minAvailable: 3, selector: { matchLabels: { app: 'api' } } } });
    // The replacement of an api pod evicted earlier, with nowhere to start while the pool is cordoned.
    const pending: KubeObject = { ...podObject('payments', 'api-new', '', { kind: 'ReplicaSet', name: 'api-5c6d8f9b7' }, { app: 'api', aadpodidbinding: 'api' }), spec: {}, status: { phase: 'Pending' } };
    kube.add(pending);
    // The budget allows the eviction of node 0's api pod only once the pending pod could start,
    // i.e. once a node other than node 0 is schedulable again.
    kube.evictionPolicy = (pod) => (pod.metadata!.name === 'api-0' && cordoned(kube, nodes[1]) && cordoned(kube, nodes[2]) ? { budget: 'api-pdb', healthy: 2, needed: 3 } : 'allow');
    const dir = tempDir();
    const ctx = await contextFor('nmi-managed', kube, azure, dir, { options: { evictionRetryMs: 20 } });
    const plan = rolloutPlan(nodes);
    await applyPlan(nmiManagedStep, ctx, plan);
    const first = ctx.journal.records().find((r) => r.actionId === `nmi/node/${nodes[0]}` && r.status === 'done')!;
    expect((first.result as { reopened?: string[] }).reopened).toEqual([nodes[1], nodes[2]]);
    expect(ctx.messages.some((m) => /api-0 waits for its PodDisruptionBudget while 1 pod\(s\) it covers cannot start \(api-new\): uncordoned/.test(m))).toBe(true);
    // Nodes 1 and 2 were cordoned again at their own turn, and every node ends schedulable.
    const lines = kube.writeLines().filter((l) => l.startsWith('patch Node'));
    for (const n of [nodes[1], nodes[2]]) expect(lines.filter((l) => l.includes(n) && l.includes('"unschedulable":true'))).toHaveLength(2);
    expect(nodes.map((n) => cordoned(kube, n))).toEqual([false, false, false]);
  });
});
