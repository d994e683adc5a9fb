/**
 * The drift analysis over the in-memory gateway fakes (a small cluster after the cutover):
 * no finding when the cluster matches; then each kind of drift the live read can show, with the
 * typed action that repairs it or the manual fix, and never an action on an identity a scale set
 * already carries.
 */
import { describe, expect, it } from 'vitest';
import { analyseDrift } from '../../src/drift/analyse.ts';
import { readDriftState } from '../../src/drift/read.ts';
import { AKS_ID, idOf, KUBELET_ID } from '../steps/fakes.ts';
import { MANAGED, migrated } from './fake-cluster.ts';

async function analyse(c: ReturnType<typeof migrated>) {
  const live = await readDriftState(c.kube, c.azure, { aksId: AKS_ID, inventory: c.inventory });
  return analyseDrift(c.inventory, live, { inventoryPath: 'inventory/prod-weu.yaml' });
}

describe('drift analysis', () => {
  it('finds nothing on a cluster that matches its inventory', async () => {
    const a = await analyse(migrated());
    expect(a.findings).toEqual([]);
    expect(a.actions).toEqual([]);
    expect(a.ok).toEqual(expect.arrayContaining(['MIC absent', '0 AzureAssignedIdentities']));
  });

  it('an identity gone from a scale set: one add-identities action with the delta only, the kubelet identity never named', async () => {
    const c = migrated();
    delete c.azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities[idOf('api-id')];
    const a = await analyse(c);
    expect(a.findings.map((f) => [f.code, f.subject, f.fixKind])).toEqual([['identity-missing-on-vmss', 'vmss aks-pay-12345678-vmss', 'auto']]);
    expect(a.actions).toHaveLength(1);
    expect(a.actions[0]).toMatchObject({ kind: 'vmss-add-identities', api: 'arm', writes: { kube: 0, arm: 1 }, details: { scaleSet: 'aks-pay-12345678-vmss', identities: [{ id: idOf('api-id'), name: 'api-id' }] } });
    expect(JSON.stringify(a.actions)).not.toContain(KUBELET_ID);
  });

  it('NMI back in standard mode and MIC running: both fixable; the NMI action carries the managed args', async () => {
    const c = migrated();
    (c.kube.find('DaemonSet', 'default', 'nmi')!.spec as any).template.spec.containers[0].args = ['--node=$(NODE_NAME)', '--http-probe-port=8085'];
    c.kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'mic', namespace: 'default', labels: { component: 'mic' } }, spec: { replicas: 2, template: { spec: { containers: [{ name: 'mic', image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/mic:v1.8.17' }] } } } });
    const a = await analyse(c);
    expect(a.findings.map((f) => f.code).sort()).toEqual(['mic-running', 'nmi-not-managed']);
    const nmi = a.actions.find((x) => x.kind === 'nmi-managed-args')!;
    expect(nmi.details).toMatchObject({ args: ['--node=$(NODE_NAME)', '--operation-mode=managed', '--forceNamespaced', '--http-probe-port=8085'] });
    expect(a.actions.find((x) => x.kind === 'mic-scale-zero')?.details).toEqual({ namespace: 'default', name: 'mic', replicasBefore: 2 });
  });

  it('manual findings: a binding only in another namespace, a hostNetwork pod on a pool with several identities, AzureAssignedIdentities, an NMI pod missing on a node', async () => {
    const c = migrated();
    c.kube.objects.delete('AzureIdentityBinding/batch/shared-storage-id-binding');
    c.kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'agent-0', namespace: 'payments', labels: { aadpodidbinding: 'api' } }, spec: { nodeName: 'aks-pay-12345678-vmss000000', nodeSelector: { 'kubernetes.azure.com/agentpool': 'pay' }, hostNetwork: true }, status: { phase: 'Running' } });
    c.kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity', metadata: { name: 'x-payments-api-id', namespace: 'default' }, spec: {} });
    c.kube.objects.delete('Pod/default/nmi-batch');
    const a = await analyse(c);
    const byCode = Object.fromEntries(a.findings.map((f) => [f.code, f]));
    expect(Object.keys(byCode).sort()).toEqual(['assigned-identities-present', 'cross-namespace-binding', 'nmi-bypass', 'nmi-not-on-node']);
    expect(byCode['cross-namespace-binding'].fix).toContain('Copy the binding and its identity into batch');
    expect(byCode['nmi-bypass'].message).toContain('hostNetwork on pool pay');
    expect(byCode['nmi-not-on-node'].message).toContain('aks-batch-12345678-vmss000000');
    expect(a.findings.every((f) => f.fixKind === 'manual' && f.actionIds.length === 0)).toBe(true);
  });

  it('objects the inventory does not know, and a new pool: the inventory update adds them; an unused new pool is only a notice', async () => {
    const c = migrated();
    c.kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity', metadata: { name: 'ml-id', namespace: 'ml' }, spec: { type: 0, resourceID: idOf('ml-id'), clientID: 'client-ml' } });
    c.kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: 'ml-binding', namespace: 'ml' }, spec: { azureIdentity: 'ml-id', selector: 'ml' } });
    const gpu = c.azure.addSet('gpu', [KUBELET_ID]);
    c.kube.add({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'aks-gpu-12345678-vmss000000', labels: { 'kubernetes.azure.com/agentpool': 'gpu' } }, spec: { providerID: `azure://${gpu.id}/virtualMachines/0` } });
    c.kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nmi-gpu', namespace: 'default', labels: { component: 'nmi' } }, spec: { nodeName: 'aks-gpu-12345678-vmss000000', containers: [{ name: 'nmi', args: MANAGED }] }, status: { phase: 'Running' } });
    let a = await analyse(c);
    expect(a.findings.map((f) => [f.code, f.severity, f.fixKind])).toEqual([
      ['pool-not-in-inventory', 'notice', 'inventory'],
      ['identity-not-in-inventory', 'drift', 'inventory'],
    ]);
    const update = a.actions.find((x) => x.kind === 'inventory-update')!;
    expect(update.details).toMatchObject({ pools: [{ name: 'gpu', identitiesBefore: [KUBELET_ID] }], identities: [{ name: 'ml-id', namespace: 'ml', bindings: [{ name: 'ml-binding', namespace: 'ml', selector: 'ml' }] }] });

    // A workload that may run on the new pool makes it need the identity.
    c.kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'trainer', namespace: 'ml' }, spec: { template: { metadata: { labels: { aadpodidbinding: 'ml' } }, spec: { nodeSelector: { 'kubernetes.azure.com/agentpool': 'gpu' } } } } });
    a = await analyse(c);
    const f = a.findings.find((x) => x.code === 'new-pool-missing-identities')!;
    expect(f.subject).toBe('pool gpu (new since the inventory)');
    expect(f.message).toContain('deployment ml/trainer may be scheduled here');
    expect(a.actions.find((x) => x.kind === 'vmss-add-identities')?.details).toMatchObject({ scaleSet: 'aks-gpu-12345678-vmss', identities: [{ name: 'ml-id' }] });
  });
});
