import { describe, expect, it } from 'vitest';
import type { AzureGateway } from '../../src/azure/gateway.ts';
import { snapshotAzureGateway } from '../../src/azure/read-snapshot.ts';
import { KINDS } from '../../src/kube/kinds.ts';
import { ReadSnapshot, snapshotKubeGateway } from '../../src/kube/read-snapshot.ts';
import { FakeAzure, FakeKube, KUBELET_ID, NODE_RG, idOf } from '../steps/fakes.ts';

/** FakeAzure with every read counted by method. */
function countingAzure(): { azure: FakeAzure; counts: Record<string, number> } {
  const azure = new FakeAzure();
  azure.addSet('pay', [KUBELET_ID]);
  azure.addSet('batch', [KUBELET_ID]);
  const counts: Record<string, number> = {};
  for (const m of ['getManagedCluster', 'listScaleSets', 'getScaleSet', 'listInstances', 'getIdentity', 'listIdentities', 'canAssign'] as const) {
    const original = (azure[m] as (...a: unknown[]) => Promise<unknown>).bind(azure);
    (azure as unknown as Record<string, unknown>)[m] = async (...args: unknown[]) => {
      counts[m] = (counts[m] ?? 0) + 1;
      return original(...args);
    };
  }
  azure.reimageInstances = async () => {};
  return { azure, counts };
}

describe('read snapshot over the Azure gateway', () => {
  it('checks each identity\'s assign permission once per command; a denied one stays denied', async () => {
    const { azure, counts } = countingAzure();
    azure.denied.add(idOf('api-id').toLowerCase());
    const reads = new ReadSnapshot();
    const gw = snapshotAzureGateway(azure, reads);
    const answers = await reads.run('shared', async () => [
      await gw.canAssign(idOf('api-id')),
      await gw.canAssign(idOf('api-id').toUpperCase()),
      await gw.canAssign(idOf('worker-id')),
      await gw.canAssign(idOf('api-id')),
    ]);
    expect(answers.map((a) => a.allowed)).toEqual([false, false, true, false]);
    // Each answer names the id as the caller spelled it.
    expect(answers[1].identityId).toBe(idOf('api-id').toUpperCase());
    expect(counts.canAssign).toBe(2);
    // Outside a shared phase (an apply), the permission is read again.
    await gw.canAssign(idOf('api-id'));
    expect(counts.canAssign).toBe(3);
  });

  it('answers scale set GETs from the resource group\'s list; a PATCH drops that scale set, its list and its instances only', async () => {
    const { azure, counts } = countingAzure();
    const reads = new ReadSnapshot();
    const gw = snapshotAzureGateway(azure, reads);
    const readAll = () =>
      reads.run('shared', async () => ({
        list: await gw.listScaleSets(NODE_RG),
        pay: await gw.getScaleSet(NODE_RG, 'aks-pay-12345678-vmss'),
        batchInstances: await gw.listInstances(NODE_RG, 'aks-batch-12345678-vmss'),
        payInstances: await gw.listInstances(NODE_RG, 'AKS-PAY-12345678-VMSS'),
        cluster: await gw.getManagedCluster('/subscriptions/x/resourceGroups/prod/providers/Microsoft.ContainerService/managedClusters/prod-weu'),
        none: await gw.getScaleSet(NODE_RG, 'aks-none-vmss'),
      }));
    const before = await readAll();
    expect(before.pay?.name).toBe('aks-pay-12345678-vmss');
    expect(before.none).toBeUndefined();
    expect(counts).toEqual({ listScaleSets: 1, listInstances: 2, getManagedCluster: 1 });
    await reads.run('live', () => gw.assignIdentities(NODE_RG, 'aks-pay-12345678-vmss', [idOf('api-id')]));
    const after = await readAll();
    expect(Object.keys(after.pay!.userAssignedIdentities)).toContain(idOf('api-id'));
    expect(counts).toEqual({ listScaleSets: 2, listInstances: 3, getManagedCluster: 1 });
    // A copy each time: changing what a caller got changes nothing in the snapshot.
    after.list[0].tags.changed = 'yes';
    expect((await reads.run('shared', () => gw.listScaleSets(NODE_RG)))[0].tags.changed).toBeUndefined();
  });

  it('an instance operation also drops the Kubernetes nodes and pods of the shared snapshot', async () => {
    const { azure } = countingAzure();
    const kube = new FakeKube();
    kube.add({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'aks-pay-12345678-vmss000000' } });
    const reads = new ReadSnapshot();
    const az: AzureGateway = snapshotAzureGateway(azure, reads);
    const k = snapshotKubeGateway(kube, reads);
    const readBoth = () => reads.run('shared', () => Promise.all([k.list(KINDS.Node), k.list(KINDS.Deployment), az.listInstances(NODE_RG, 'aks-pay-12345678-vmss')]));
    await readBoth();
    kube.reads.length = 0;
    await az.reimageInstances(NODE_RG, 'aks-pay-12345678-vmss', ['0']);
    await readBoth();
    expect(kube.reads.sort()).toEqual(['list Deployment', 'list Node']);
  });

  it('in a dry run no write is sent, so nothing is invalidated', async () => {
    const { azure, counts } = countingAzure();
    Object.defineProperty(azure, 'dryRunMode', { value: 'client' });
    const reads = new ReadSnapshot();
    const gw = snapshotAzureGateway(azure, reads);
    await reads.run('shared', () => gw.listScaleSets(NODE_RG));
    await gw.unassignIdentities(NODE_RG, 'aks-pay-12345678-vmss', [KUBELET_ID]).catch(() => {});
    await reads.run('shared', () => gw.listScaleSets(NODE_RG));
    expect(counts.listScaleSets).toBe(1);
  });
});
