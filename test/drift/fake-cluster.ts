/** A small cluster after the cutover, over the in-memory gateway fakes, and its inventory. */
import type { AzureGateway, ManagedIdentity } from '../../src/azure/gateway.ts';
import type { InventoryDocument } from '../../src/steps/lib/inventory-model.ts';
import { FakeAzure, FakeKube, idOf, KUBELET_ID, standardCluster } from '../steps/fakes.ts';

export const MANAGED = ['--node=$(NODE_NAME)', '--operation-mode=managed', '--forceNamespaced', '--http-probe-port=8085'];

/** The fake cluster as the migration leaves it: copies in batch, identities on the scale sets, NMI managed, MIC gone. */
export function migrated(): { kube: FakeKube; azure: FakeAzure; inventory: InventoryDocument } {
  const { kube, azure } = standardCluster({ nmiArgs: MANAGED });
  kube.objects.delete('Deployment/default/mic');
  kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity', metadata: { name: 'shared-storage-id', namespace: 'batch', labels: { 'podid-migrate.io/copied-from': 'platform.shared-storage-id' } }, spec: { type: 0, resourceID: idOf('shared-storage-id'), clientID: 'client-shared-storage-id' } });
  kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: 'shared-storage-id-binding', namespace: 'batch' }, spec: { azureIdentity: 'shared-storage-id', selector: 'shared-storage' } });
  for (const pool of ['pay', 'batch']) {
    kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `nmi-${pool}`, namespace: 'default', labels: { component: 'nmi' } }, spec: { nodeName: `aks-${pool}-12345678-vmss000000`, containers: [{ name: 'nmi', args: MANAGED }] }, status: { phase: 'Running' } });
  }
  azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities[idOf('api-id')] = { clientId: 'client-api-id' };
  azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities[idOf('shared-storage-id')] = { clientId: 'client-shared-storage-id' };
  azure.sets.get('aks-batch-12345678-vmss')!.userAssignedIdentities[idOf('shared-storage-id')] = { clientId: 'client-shared-storage-id' };
  // Azure knows the identities (the fake's own list is empty).
  const known: ManagedIdentity[] = ['api-id', 'shared-storage-id', 'ml-id'].map((name) => ({ id: idOf(name), name, resourceGroup: 'identities', clientId: name === 'ml-id' ? 'client-ml' : `client-${name}`, principalId: `principal-of-${name}` }));
  (azure as { listIdentities: AzureGateway['listIdentities'] }).listIdentities = async () => structuredClone(known);
  // Scale sets record the client id the identity has in Azure, as ARM does.
  const assign = azure.assignIdentities.bind(azure);
  azure.assignIdentities = async (rg, vmss, ids) => {
    const r = await assign(rg, vmss, ids);
    for (const id of r.added) azure.sets.get(vmss)!.userAssignedIdentities[id] = { clientId: known.find((k) => k.id.toLowerCase() === id.toLowerCase())?.clientId };
    return r;
  };
  const inventory: InventoryDocument = {
    apiVersion: 'podid-migrate/v1',
    kind: 'Inventory',
    cluster: { name: 'prod-weu', kubeSystemUid: 'ks-uid' },
    identities: [
      { name: 'api-id', namespace: 'payments', type: 0, resourceId: idOf('api-id'), clientId: 'client-api-id', pools: ['pay'], namespaces: ['payments'], bindings: [{ name: 'api-id-binding', namespace: 'payments', selector: 'api' }], services: [{ name: 'payments/api', testCases: [{ kind: 'token' }] }] },
      {
        name: 'shared-storage-id',
        namespace: 'platform',
        type: 0,
        resourceId: idOf('shared-storage-id'),
        clientId: 'client-shared-storage-id',
        pools: ['batch', 'pay'],
        namespaces: ['batch', 'platform'],
        bindings: [
          { name: 'shared-storage-id-binding', namespace: 'batch', selector: 'shared-storage' },
          { name: 'shared-storage-id-binding', namespace: 'platform', selector: 'shared-storage' },
        ],
        services: [{ name: 'batch/archiver', testCases: [{ kind: 'token' }] }, { name: 'platform/backup', testCases: [{ kind: 'token' }] }],
      },
    ],
    pools: [
      { name: 'batch', scaleSet: azure.sets.get('aks-batch-12345678-vmss')!.id, identitiesBefore: [KUBELET_ID] },
      { name: 'pay', scaleSet: azure.sets.get('aks-pay-12345678-vmss')!.id, identitiesBefore: [KUBELET_ID] },
    ],
  };
  return { kube, azure, inventory };
}

