import { applyPlan, rollbackStep, verifyRollback } from './run-actions.ts';
import { readFileSync, writeFileSync } from 'node:fs';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { inventoryStep, nodeAdmits, placementUnconstrained, poolsAdmitting } from '../../src/steps/01-inventory.ts';
import type { KubeObject } from '../../src/kube/gateway.ts';
import { loadInventory, validateInventory, type InventoryDocument } from '../../src/steps/lib/inventory-model.ts';
import { COPIED_FROM_LABEL } from '../../src/steps/lib/pod-identity.ts';
import { contextFor, idOf, standardCluster, tempDir } from './fakes.ts';

describe('inventory plan', () => {
  it('plans copies of a binding and identity used from another namespace, never a move, and the file write', async () => {
    const { kube, azure } = standardCluster();
    const ctx = await contextFor('inventory', kube, azure, tempDir());
    const plan = await inventoryStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    expect(plan.actions.map((a) => `${a.op} ${a.target}`)).toEqual([
      '+ copy azureidentity platform/shared-storage-id -> batch/shared-storage-id',
      '+ copy azureidentitybinding platform/shared-storage-id-binding -> batch/shared-storage-id-binding',
      `+ file ${ctx.inventoryPath}`,
    ]);
    const doc = (plan.actions[2].details as { document: InventoryDocument }).document;
    expect(validateInventory(doc)).toEqual([]);
    const shared = doc.identities.find((i) => i.name === 'shared-storage-id')!;
    expect(shared).toMatchObject({ namespace: 'platform', pools: ['batch', 'pay'], namespaces: ['batch', 'platform'] });
    expect(shared.services.map((s) => s.name)).toEqual(['batch/archiver', 'platform/backup']);
    expect(shared.bindings).toEqual([
      { name: 'shared-storage-id-binding', namespace: 'batch', selector: 'shared-storage' },
      { name: 'shared-storage-id-binding', namespace: 'platform', selector: 'shared-storage' },
    ]);
    expect(doc.pools.map((p) => [p.name, p.scaleSet?.split('/').pop(), p.identitiesBefore?.length])).toEqual([
      ['batch', 'aks-batch-12345678-vmss', 1],
      ['pay', 'aks-pay-12345678-vmss', 1],
    ]);
    expect(doc.identities.find((i) => i.name === 'api-id')!.services[0]).toMatchObject({ name: 'payments/api', kind: 'Deployment', selector: 'api', pools: ['pay'], testCases: [{ kind: 'token' }] });
    // Discovery is list calls only: no GET per pod.
    expect(kube.reads.filter((r) => !r.startsWith('list'))).toEqual([]);
  });

  it('reports every blocker at once, each with a fix', async () => {
    const { kube, azure } = standardCluster({ nmiImage: 'mcr.microsoft.com/k8s/aad-pod-identity/nmi:1.5.2' });
    kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity', metadata: { name: 'legacy-id', namespace: 'payments' }, spec: { Type: 0, ResourceID: idOf('legacy-id'), ClientID: 'c' } });
    azure.denied.add(idOf('api-id').toLowerCase());
    // A pool on an availability set that runs a pod with an identity.
    kube.add({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'aks-legacy-0', labels: { agentpool: 'legacy' } }, spec: { providerID: 'azure:///subscriptions/s/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachines/aks-legacy-0' } });
    kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'old-api', namespace: 'payments', labels: { aadpodidbinding: 'api' } }, spec: { nodeName: 'aks-legacy-0' }, status: { phase: 'Running' } });
    const ctx = await contextFor('inventory', kube, azure, tempDir());
    const plan = await inventoryStep.plan(ctx);
    expect(plan.blockers.map((b) => `${b.code} ${b.subject}`).sort()).toEqual([
      'cannot-assign-identity azureidentity payments/api-id',
      'legacy-field-names azureidentity payments/legacy-id',
      'nmi-too-old daemonset default/nmi',
      'pool-not-vmss pool legacy',
    ]);
    for (const b of plan.blockers) expect(b.fix.length).toBeGreaterThan(10);
    expect(plan.blockers.find((b) => b.code === 'legacy-field-names')!.message).toContain('ClientID');
  });
});

describe('inventory blockers give the command that fixes them', () => {
  it('an old Helm-installed NMI gets the helm upgrade line for its release, namespace and chart', async () => {
    const { kube, azure } = standardCluster({ helm: true, nmiImage: 'mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.5.5' });
    const plan = await inventoryStep.plan(await contextFor('inventory', kube, azure, tempDir()));
    const tooOld = plan.blockers.find((b) => b.code === 'nmi-too-old')!;
    expect(tooOld.subject).toBe('daemonset default/aad-pod-identity-nmi');
    expect(tooOld.message).toContain('v1.5.5');
    expect(tooOld.fix).toContain('helm upgrade pi aad-pod-identity/aad-pod-identity -n default --reuse-values --version 4.1.18 --set operationMode=standard');
  });

  it('a raw-manifest NMI is told to upgrade, without a helm line', async () => {
    const { kube, azure } = standardCluster({ nmiImage: 'mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.5.5' });
    const plan = await inventoryStep.plan(await contextFor('inventory', kube, azure, tempDir()));
    expect(plan.blockers.find((b) => b.code === 'nmi-too-old')!.fix).not.toContain('helm');
  });

  it('a binding with legacy field casing is a legacy-field-names blocker, not "no binding matches (no identity today either)"', async () => {
    const { kube, azure } = standardCluster();
    kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: 'old-binding', namespace: 'payments' }, spec: { AzureIdentity: 'api-id', Selector: 'old-api' } });
    kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'old-api-0', namespace: 'payments', labels: { aadpodidbinding: 'old-api' } }, spec: { nodeName: kube.all('Node')[0].metadata!.name! }, status: { phase: 'Running' } });
    const plan = await inventoryStep.plan(await contextFor('inventory', kube, azure, tempDir()));
    expect(plan.blockers.map((b) => `${b.code} ${b.subject}`)).toContain('legacy-field-names azureidentitybinding payments/old-binding');
    expect(plan.notes.join('\n')).not.toMatch(/no binding matches/);
    expect(plan.notes.join('\n')).toMatch(/match only a binding with field names from before v1\.6\.0.*payments\/old-binding/);
  });
});

describe('inventory apply, re-run and rollback', () => {
  it('copies with the label, writes the file, keeps operator test cases on re-run and reports what changed', async () => {
    const dir = tempDir();
    const { kube, azure } = standardCluster();
    const ctx = await contextFor('inventory', kube, azure, dir);
    await applyPlan(inventoryStep, ctx, await inventoryStep.plan(ctx));
    const copy = kube.find('AzureIdentity', 'batch', 'shared-storage-id')!;
    expect(copy.metadata?.labels?.[COPIED_FROM_LABEL]).toBe('platform.shared-storage-id');
    expect(copy.spec).toEqual(kube.find('AzureIdentity', 'platform', 'shared-storage-id')!.spec);
    expect(kube.find('AzureIdentity', 'platform', 'shared-storage-id')).toBeDefined();
    expect(kube.find('AzureIdentityBinding', 'batch', 'shared-storage-id-binding')!.metadata?.labels?.[COPIED_FROM_LABEL]).toBe('platform.shared-storage-id-binding');
    expect(ctx.journal.getData('podIdentity')).toEqual({ nmi: { namespace: 'default', name: 'nmi', install: 'raw', version: 'v1.8.17' }, mic: { namespace: 'default', name: 'mic', replicas: 2 } });

    const written = (await loadInventory(ctx.inventoryPath))!;
    expect(written.generatedAt).toBeDefined();
    expect((await inventoryStep.check(ctx)).failures).toEqual([]);

    // Nothing changed: the re-plan has nothing to do.
    expect((await inventoryStep.plan(ctx)).actions).toEqual([]);

    // The operator edits a test case; the cluster gains a service.
    const edited = parseYaml(readFileSync(ctx.inventoryPath, 'utf8')) as InventoryDocument;
    edited.identities.find((i) => i.name === 'api-id')!.services[0].testCases = [{ kind: 'http', url: 'http://api.payments.svc/healthz', expectStatus: 200 }];
    writeFileSync(ctx.inventoryPath, toYaml(edited));
    const dep = kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'ledger', namespace: 'payments' } });
    kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ledger-x', namespace: 'payments', labels: { aadpodidbinding: 'api' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'ledger', uid: dep.metadata!.uid!, controller: true }] }, spec: { nodeName: 'aks-batch-12345678-vmss000000' }, status: { phase: 'Running' } });
    const again = await inventoryStep.plan(ctx);
    expect(again.notes.join('\n')).toMatch(/identity api-id: pools \+ batch.*services \+ payments\/ledger/);
    expect(again.actions.map((a) => a.op + ' ' + a.id)).toEqual(['~ file/inventory']);
    await applyPlan(inventoryStep, ctx, again);
    const rewritten = (await loadInventory(ctx.inventoryPath))!;
    const api = rewritten.identities.find((i) => i.name === 'api-id')!;
    expect(api.services.find((s) => s.name === 'payments/api')!.testCases).toEqual([{ kind: 'http', url: 'http://api.payments.svc/healthz', expectStatus: 200 }]);
    expect(api.services.find((s) => s.name === 'payments/ledger')!.testCases).toEqual([{ kind: 'token' }]);

    // Rollback removes only the copies, and leaves an object the operator took over.
    kube.find('AzureIdentityBinding', 'batch', 'shared-storage-id-binding')!.metadata!.labels = {};
    await rollbackStep(ctx);
    expect(kube.find('AzureIdentity', 'batch', 'shared-storage-id')).toBeUndefined();
    expect(kube.find('AzureIdentityBinding', 'batch', 'shared-storage-id-binding')).toBeDefined();
    expect(kube.find('AzureIdentity', 'platform', 'shared-storage-id')).toBeDefined();
    expect(kube.writes.filter((w) => w.verb === 'delete').map((w) => w.key)).toEqual(['AzureIdentity/batch/shared-storage-id']);
  });

  it('loadInventory names every bad field', async () => {
    const dir = tempDir();
    const path = `${dir}/bad.yaml`;
    writeFileSync(path, toYaml({ apiVersion: 'podid-migrate/v1', kind: 'Inventory', cluster: { name: 'x', kubeSystemUid: 'u' }, identities: [{ name: 'a', namespace: 'n', type: 3, services: [{ name: 's', testCases: [{ kind: 'http' }] }], extra: 1 }], pools: [] }));
    const error = (await loadInventory(path).catch((e: Error) => e)) as Error;
    expect(error.message).toContain('identities[0].type: must be one of 0, 1, 2');
    expect(error.message).toContain('identities[0].extra: unknown field');
    expect(error.message).toContain('identities[0].services[0].testCases[0]: not a valid test case');
  });
});

describe('pools a service may run on', () => {
  const node = (name: string, labels: Record<string, string>, taints: { key: string; value?: string; effect: string }[] = []): KubeObject => ({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels }, spec: { taints } });
  const pay = node('aks-pay-0', { 'kubernetes.azure.com/agentpool': 'pay', tier: 'front' });
  const gpu = node('aks-gpu-0', { 'kubernetes.azure.com/agentpool': 'gpu', 'nvidia.com/gpu': 'present' }, [{ key: 'sku', value: 'gpu', effect: 'NoSchedule' }]);
  const sys = node('aks-system-0', { 'kubernetes.azure.com/agentpool': 'system' }, [{ key: 'CriticalAddonsOnly', value: 'true', effect: 'NoSchedule' }]);
  const affinity = (...exprs: { key: string; operator: string; values?: string[] }[][]) => ({ nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: exprs.map((matchExpressions) => ({ matchExpressions })) } } });
  const pools = new Map([['pay', [pay]], ['gpu', [gpu]], ['system', [sys]], ['empty', []]]);

  it('nodeSelector, required affinity In/NotIn/Exists/DoesNotExist (terms ORed, expressions ANDed), and taints vs tolerations', () => {
    expect(nodeAdmits({ nodeSelector: { 'kubernetes.azure.com/agentpool': 'pay' } }, pay)).toBe(true);
    expect(nodeAdmits({ nodeSelector: { 'kubernetes.azure.com/agentpool': 'pay', tier: 'back' } }, pay)).toBe(false);
    expect(nodeAdmits({ affinity: affinity([{ key: 'kubernetes.azure.com/agentpool', operator: 'In', values: ['gpu', 'pay'] }]) }, pay)).toBe(true);
    expect(nodeAdmits({ affinity: affinity([{ key: 'kubernetes.azure.com/agentpool', operator: 'NotIn', values: ['pay'] }]) }, pay)).toBe(false);
    expect(nodeAdmits({ affinity: affinity([{ key: 'tier', operator: 'Exists' }, { key: 'kubernetes.azure.com/agentpool', operator: 'In', values: ['gpu'] }]) }, pay)).toBe(false);
    expect(nodeAdmits({ affinity: affinity([{ key: 'tier', operator: 'DoesNotExist' }], [{ key: 'tier', operator: 'In', values: ['front'] }]) }, pay)).toBe(true);
    // A NotIn on a label the node lacks holds; an empty term matches nothing.
    expect(nodeAdmits({ affinity: affinity([{ key: 'zone', operator: 'NotIn', values: ['1'] }]) }, pay)).toBe(true);
    expect(nodeAdmits({ affinity: affinity([]) }, pay)).toBe(false);
    // Taints: the selector alone is not enough on a tainted pool.
    expect(nodeAdmits({ nodeSelector: { 'nvidia.com/gpu': 'present' } }, gpu)).toBe(false);
    expect(nodeAdmits({ nodeSelector: { 'nvidia.com/gpu': 'present' }, tolerations: [{ key: 'sku', operator: 'Equal', value: 'gpu', effect: 'NoSchedule' }] }, gpu)).toBe(true);
    expect(nodeAdmits({ tolerations: [{ key: 'sku', operator: 'Equal', value: 'cpu' }] }, gpu)).toBe(false);
    expect(nodeAdmits({ tolerations: [{ operator: 'Exists' }] }, gpu)).toBe(true);
    expect(nodeAdmits({ tolerations: [{ key: 'CriticalAddonsOnly', operator: 'Exists' }] }, sys)).toBe(true);
  });

  it('poolsAdmitting lists every pool with a node that admits the template; an unconstrained one gets every tolerated pool', () => {
    expect(poolsAdmitting({ affinity: affinity([{ key: 'kubernetes.azure.com/agentpool', operator: 'In', values: ['pay', 'gpu', 'empty'] }]) }, pools)).toEqual(['pay']);
    expect(poolsAdmitting({}, pools)).toEqual(['pay']);
    expect(placementUnconstrained({})).toBe(true);
    expect(placementUnconstrained({ tolerations: [{ operator: 'Exists' }] })).toBe(true);
    expect(placementUnconstrained({ nodeSelector: { tier: 'front' } })).toBe(false);
    expect(poolsAdmitting({ tolerations: [{ operator: 'Exists' }] }, pools)).toEqual(['gpu', 'pay', 'system']);
  });

  it('the inventory unites where pods run with where their template may run, and covers services without pods', async () => {
    const { kube, azure } = standardCluster();
    const poolAffinity = affinity([{ key: 'kubernetes.azure.com/agentpool', operator: 'In', values: ['pay', 'batch'] }]);
    // Runs on pay today, may be rescheduled to batch: MIC only ever assigned it to pay.
    const dep = kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'exporter', namespace: 'payments' }, spec: { replicas: 1, template: { metadata: { labels: { aadpodidbinding: 'api' } }, spec: { affinity: poolAffinity } } } });
    kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'exporter-1', namespace: 'payments', labels: { aadpodidbinding: 'api' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'exporter', uid: dep.metadata!.uid!, controller: true }] }, spec: { nodeName: 'aks-pay-12345678-vmss000000', affinity: poolAffinity }, status: { phase: 'Running' } });
    // A CronJob between runs: no pod at all, still needs its identity on batch.
    kube.add({ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'nightly', namespace: 'payments', uid: 'cj-1' }, spec: { jobTemplate: { spec: { template: { metadata: { labels: { aadpodidbinding: 'api' } }, spec: { nodeSelector: { 'kubernetes.azure.com/agentpool': 'batch' } } } } } } });
    const ctx = await contextFor('inventory', kube, azure, tempDir());
    const plan = await inventoryStep.plan(ctx);
    const doc = (plan.actions.find((a) => a.id === 'file/inventory')!.details as { document: InventoryDocument }).document;
    const api = doc.identities.find((i) => i.name === 'api-id')!;
    expect(api.pools).toEqual(['batch', 'pay']);
    expect(api.services.map((s) => [s.name, s.kind, s.pools])).toEqual([
      ['payments/api', 'Deployment', ['pay']],
      ['payments/exporter', 'Deployment', ['batch', 'pay']],
      ['payments/nightly', 'CronJob', ['batch']],
    ]);
    expect(plan.notes.join('\n')).not.toMatch(/no nodeSelector/);

    // A template without any constraint: every pool it tolerates, said in a note.
    kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'anywhere', namespace: 'payments' }, spec: { replicas: 0, template: { metadata: { labels: { aadpodidbinding: 'api' } }, spec: {} } } });
    const again = await inventoryStep.plan(ctx);
    expect(again.notes.join('\n')).toContain('service payments/anywhere has no nodeSelector or required node affinity: it may run on every pool whose taints it tolerates (batch, pay)');
  });
});
