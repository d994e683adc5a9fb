import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeInfraEvent } from '../../../src/sandbox/controllers/node-lifecycle.ts';
import type { KObject } from '../../../src/sandbox/store.ts';
import { deployment, isReady, startCluster, type TestCluster } from './helpers.ts';

let c: TestCluster | undefined;
afterEach(async () => {
  await c?.stop();
  c = undefined;
});

function pdb(name: string, spec: Record<string, any>): KObject {
  return { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name, namespace: 'default' }, spec: { selector: { matchLabels: { app: 'web' } }, ...spec } };
}
const getPdb = (name: string): any => c!.store.get(c!.t('policy', 'poddisruptionbudgets'), 'default', name)!;

describe('disruption controller', () => {
  it('computes PDB status for minAvailable and maxUnavailable, int and percent', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }, { name: 'n2', pool: 'a' }] });
    c.create(deployment('web', 4));
    c.create(pdb('min-int', { minAvailable: 3 }));
    c.create(pdb('min-pct', { minAvailable: '50%' }));
    c.create(pdb('max-int', { maxUnavailable: 1 }));
    c.create(pdb('max-pct', { maxUnavailable: '30%' }));
    await c.until('4 ready', () => c!.pods().filter(isReady).length === 4);
    await c.run(1000);
    expect(getPdb('min-int').status).toMatchObject({ currentHealthy: 4, desiredHealthy: 3, disruptionsAllowed: 1, expectedPods: 4, observedGeneration: 1 });
    expect(getPdb('min-pct').status).toMatchObject({ currentHealthy: 4, desiredHealthy: 2, disruptionsAllowed: 2, expectedPods: 4 });
    expect(getPdb('max-int').status).toMatchObject({ currentHealthy: 4, desiredHealthy: 3, disruptionsAllowed: 1, expectedPods: 4 });
    // 30% of 4 rounds up to 2 unavailable.
    expect(getPdb('max-pct').status).toMatchObject({ currentHealthy: 4, desiredHealthy: 2, disruptionsAllowed: 2, expectedPods: 4 });
    expect(getPdb('min-int').status.conditions[0]).toMatchObject({ type: 'DisruptionAllowed', status: 'True', reason: 'SufficientPods' });

    // Two pods go away: the budget that needs 3 healthy allows nothing.
    const pods = c.pods();
    for (const p of pods.slice(0, 2)) c.store.delete(c.t('', 'pods'), 'default', p.metadata.name, { gracePeriodSeconds: 30 });
    await c.run(500);
    expect(getPdb('min-int').status).toMatchObject({ currentHealthy: 2, disruptionsAllowed: 0 });
    expect(getPdb('min-int').status.conditions[0]).toMatchObject({ status: 'False', reason: 'InsufficientPods' });
    await c.until('recovered', () => getPdb('min-int').status.currentHealthy === 4);
    expect(getPdb('min-int').status.disruptionsAllowed).toBe(1);
  });

  it('keeps evicted pods out of currentHealthy via disruptedPods until they terminate', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(deployment('web', 2));
    c.create(pdb('b', { minAvailable: 1 }));
    await c.until('allowed', () => getPdb('b').status?.disruptionsAllowed === 1);
    const victim = c.pods()[0].metadata.name;
    // What the eviction API writes before it deletes the pod.
    c.store.mutate(c.t('policy', 'poddisruptionbudgets'), 'default', 'b', (o) => {
      o.status.disruptedPods = { [victim]: new Date(c!.clock.now()).toISOString() };
      o.status.disruptionsAllowed = 0;
    }, { subresource: 'status' });
    await c.run(1000);
    expect(getPdb('b').status).toMatchObject({ currentHealthy: 1, disruptionsAllowed: 0, disruptedPods: { [victim]: expect.any(String) } });
    c.store.delete(c.t('', 'pods'), 'default', victim, { gracePeriodSeconds: 30 });
    await c.run(1000);
    expect(getPdb('b').status.disruptedPods).toBeUndefined();
  });
});

describe('garbage collector', () => {
  it('cascades a deployment delete to its ReplicaSet and pods (background)', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(deployment('web', 3));
    await c.until('3 ready', () => c!.pods().filter(isReady).length === 3);
    c.store.delete(c.t('apps', 'deployments'), 'default', 'web');
    await c.run(500);
    expect(c.list(c.t('apps', 'replicasets'))).toHaveLength(0);
    expect(c.pods().every((p) => p.metadata.deletionTimestamp)).toBe(true);
    await c.until('pods gone', () => c!.pods().length === 0, 60_000);
  });

  it('foreground deletion removes dependents before the owner; orphan keeps them', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(deployment('fg', 2));
    c.create(deployment('orphaned', 2, { labels: { app: 'orphaned' } }));
    await c.until('4 ready', () => c!.pods().filter(isReady).length === 4);
    const deployType = c.t('apps', 'deployments');
    const order: string[] = [];
    const unsub = c.store.subscribe((ev) => {
      if (ev.type === 'DELETED' && ev.object.metadata.labels?.app === 'fg') order.push(ev.object.kind);
    });
    // What the API server does for propagationPolicy=Foreground / Orphan: add the finalizer, then delete.
    c.store.mutate(deployType, 'default', 'fg', (o) => void (o.metadata.finalizers = ['foregroundDeletion']));
    c.store.delete(deployType, 'default', 'fg');
    c.store.mutate(deployType, 'default', 'orphaned', (o) => void (o.metadata.finalizers = ['orphan']));
    c.store.delete(deployType, 'default', 'orphaned');
    await c.until('fg gone', () => !c!.store.get(deployType, 'default', 'fg'), 60_000);
    unsub();
    // Dependents first: pods, then their ReplicaSet, then the Deployment.
    expect(order).toEqual(['Pod', 'Pod', 'ReplicaSet', 'Deployment']);
    expect(c.pods({ labelSelector: 'app=fg' })).toHaveLength(0);
    expect(c.store.get(deployType, 'default', 'orphaned')).toBeUndefined();
    const rs = c.list(c.t('apps', 'replicasets'), { labelSelector: 'app=orphaned' });
    expect(rs).toHaveLength(1);
    expect(rs[0].metadata.ownerReferences).toBeUndefined();
    expect(c.pods({ labelSelector: 'app=orphaned' }).filter(isReady)).toHaveLength(2);
  });
});

describe('node lifecycle', () => {
  function nodes() {
    return ['aks-pool1-000000', 'aks-pool1-000001'].map((name) => ({ name, pool: 'pool1' }));
  }
  function nmi(): KObject {
    return {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'nmi', namespace: 'default' },
      spec: { selector: { matchLabels: { component: 'nmi' } }, template: { metadata: { labels: { component: 'nmi' } }, spec: { hostNetwork: true, containers: [{ name: 'nmi', image: 'nmi:v1.8.17' }] } } },
    };
  }

  it('reimage: node NotReady, containers killed, non-DaemonSet pods lost; Ready again with the DaemonSet pod restarted', async () => {
    const infra = new EventEmitter();
    c = await startCluster({ nodes: nodes(), infra });
    c.create(nmi());
    c.create(deployment('web', 4));
    await c.until('all ready', () => c!.pods().filter(isReady).length === 6);
    const node = 'aks-pool1-000000';
    const before = c.pods().filter((p) => p.spec.nodeName === node);
    const dsPod = before.find((p) => p.metadata.labels.component === 'nmi')!;
    const ev = (phase: 'started' | 'completed'): NodeInfraEvent => ({ type: 'reimage', scaleSet: 'aks-pool1-vmss', instanceId: '0', computerName: node, phase });
    infra.emit('event', ev('started'));
    // Every container of the node died at once.
    expect(c.controllers.kubelet!.runningPods).toBe(3);
    await c.run(1000);
    const n = c.store.get(c.t('', 'nodes'), undefined, node)!;
    expect(n.status.conditions.find((x: any) => x.type === 'Ready').status).toBe('False');
    expect(n.spec.taints).toEqual([expect.objectContaining({ key: 'node.kubernetes.io/not-ready', effect: 'NoSchedule' })]);
    const during = c.pods().filter((p) => p.spec.nodeName === node);
    expect(during.map((p) => p.metadata.name)).toEqual([dsPod.metadata.name]);
    expect(isReady(during[0])).toBe(false);
    // The web pods were replaced on the other node.
    await c.until('web back to 4', () => c!.pods({ labelSelector: 'app=web' }).filter(isReady).length === 4);
    expect(c.pods({ labelSelector: 'app=web' }).every((p) => p.spec.nodeName === 'aks-pool1-000001')).toBe(true);
    infra.emit('event', ev('completed'));
    await c.until('ds pod ready again', () => isReady(c!.pod('default', dsPod.metadata.name)!));
    const after = c.pod('default', dsPod.metadata.name)!;
    expect(after.metadata.uid).toBe(dsPod.metadata.uid);
    expect(after.status.containerStatuses[0].restartCount).toBe(1);
    expect(c.store.get(c.t('', 'nodes'), undefined, node)!.spec.taints).toBeUndefined();
  });

  it('instance-deleted removes the node and its pods; instance-created registers a node like its siblings', async () => {
    const infra = new EventEmitter();
    c = await startCluster({ nodes: nodes(), infra });
    c.create(nmi());
    await c.until('2 nmi ready', () => c!.pods().filter(isReady).length === 2);
    infra.emit('event', { type: 'instance-deleted', scaleSet: 'aks-pool1-vmss', instanceId: '1', computerName: 'aks-pool1-000001' });
    await c.run(1000);
    expect(c.store.get(c.t('', 'nodes'), undefined, 'aks-pool1-000001')).toBeUndefined();
    expect(c.pods().map((p) => p.spec.nodeName)).toEqual(['aks-pool1-000000']);
    infra.emit('event', { type: 'instance-created', scaleSet: 'aks-pool1-vmss', instanceId: '2', computerName: 'aks-pool1-000002' });
    await c.until('nmi on new node', () => c!.pods().filter(isReady).length === 2);
    const n = c.store.get(c.t('', 'nodes'), undefined, 'aks-pool1-000002')!;
    expect(n.metadata.labels).toMatchObject({ 'kubernetes.azure.com/agentpool': 'pool1', agentpool: 'pool1', 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': 'aks-pool1-000002' });
    expect(n.spec.providerID).toBe('azure:///subscriptions/sub/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool1-vmss/virtualMachines/2');
    expect(n.status.addresses.find((a: any) => a.type === 'InternalIP').address).toMatch(/^10\.224\.\d+\.\d+$/);
    expect(c.pods().map((p) => p.spec.nodeName).sort()).toEqual(['aks-pool1-000000', 'aks-pool1-000002']);
  });
});
