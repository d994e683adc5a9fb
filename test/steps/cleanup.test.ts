import { applyPlan, rollbackStep, verifyRollback } from './run-actions.ts';
import { describe, expect, it } from 'vitest';
import { cleanupStep, stripServerFields } from '../../src/steps/07-cleanup.ts';
import { join } from 'node:path';
import { Journal } from '../../src/engine/journal.ts';
import { CLUSTER, contextFor, MiniAzure, FakeKube, recordStepData, tempDir } from './steps-5-7-fakes.ts';

const AAI_CRD = 'azureassignedidentities.aadpodidentity.k8s.io';
const INVENTORY = { apiVersion: 'podid-migrate/v1', kind: 'Inventory', cluster: { name: 'prod-weu', kubeSystemUid: 'ks-uid' }, identities: [], pools: [] };

/** A raw standard-mode install with MIC already scaled to zero. */
function cluster(micReplicas = 0): FakeKube {
  const kube = new FakeKube();
  const labels = { component: 'mic', app: 'mic' };
  kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'mic', namespace: 'default', generation: 3 }, spec: { replicas: micReplicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { serviceAccountName: 'aad-pod-id-mic-service-account', containers: [{ name: 'mic', args: ['--cloudconfig=/etc/kubernetes/azure.json'] }] } } }, status: { replicas: 0 } });
  kube.add({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'aad-pod-id-mic-service-account', namespace: 'default' } });
  kube.add({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'aad-pod-id-nmi-service-account', namespace: 'default' } });
  kube.add({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'aad-pod-id-mic-role' }, rules: [] });
  kube.add({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'aad-pod-id-mic-binding' }, roleRef: { kind: 'ClusterRole', name: 'aad-pod-id-mic-role' }, subjects: [{ kind: 'ServiceAccount', name: 'aad-pod-id-mic-service-account', namespace: 'default' }] });
  kube.add({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'aad-pod-id-nmi-role' }, rules: [] });
  kube.add({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'aad-pod-id-nmi-binding' }, roleRef: { kind: 'ClusterRole', name: 'aad-pod-id-nmi-role' }, subjects: [{ kind: 'ServiceAccount', name: 'aad-pod-id-nmi-service-account', namespace: 'default' }] });
  kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzurePodIdentityException', metadata: { name: 'mic-exception', namespace: 'default' }, spec: { podLabels: { app: 'mic', component: 'mic' } } });
  kube.add({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'aad-pod-identity-mic', namespace: 'default', annotations: { 'control-plane.alpha.kubernetes.io/leader': '{"holderIdentity":"mic-1"}' } } });
  kube.add({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'aad-pod-identity-config', namespace: 'default' }, data: { 'mic-upgrade': 'true' } });
  kube.add({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: AAI_CRD }, spec: { group: 'aadpodidentity.k8s.io' } });
  kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity', metadata: { name: 'api-id', namespace: 'payments' }, spec: { type: 0 } });
  kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: 'api-binding', namespace: 'payments' }, spec: { selector: 'api' } });
  for (const pod of ['api-1', 'api-2']) {
    kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity', metadata: { name: `${pod}-payments-api-id`, namespace: 'default', finalizers: ['azureassignedidentity.finalizers.aadpodidentity.k8s.io'], labels: { nodename: 'n1' } }, spec: { pod, podNamespace: 'payments' }, status: { status: 'Assigned' } });
  }
  return kube;
}

async function setup(kube: FakeKube, results: unknown, options: Record<string, unknown> = {}) {
  const dir = tempDir();
  await recordStepData(dir, 'mic-scale', 'mic', { namespace: 'default', name: 'mic', replicas: 2 });
  if (results !== undefined) await recordTestRun(dir, results);
  return contextFor('cleanup', kube, new MiniAzure(kube), dir, { inventory: INVENTORY, options });
}

/** What the test step records when its cases ran: the done record of its action, then the results. */
async function recordTestRun(dir: string, results: unknown, opts: { rolledBack?: boolean } = {}): Promise<void> {
  const journal = (await Journal.open(join(dir, 'journal.json'), CLUSTER)).forStep('test');
  await journal.runAction({ id: 'test-cases', kind: 'run-probes', op: '~', target: '1 test cases', summary: 'run', api: 'kube' }, undefined, async () => ({ results }));
  await journal.setData('results', results);
  if (opts.rolledBack) await journal.markRolledBack('test-cases');
}

const PASSED = [{ id: 'x', kind: 'token', service: 'payments/api', namespace: 'payments', pool: 'pay', node: 'n1', identity: 'payments/api-id', ok: true, message: 'ok', attempts: 1, durationMs: 1 }];

describe('cleanup', () => {
  it('strips server-set fields and keeps the status only of aadpodidentity objects', () => {
    const d = stripServerFields({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'mic', uid: 'u', resourceVersion: '9', creationTimestamp: 't', generation: 3, managedFields: [], labels: { a: 'b' } }, spec: { replicas: 0 }, status: { replicas: 0 } });
    expect(d).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'mic', labels: { a: 'b' } }, spec: { replicas: 0 } });
    const a = stripServerFields({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity', metadata: { name: 'x', uid: 'u', finalizers: ['f'], deletionTimestamp: 't' }, status: { status: 'Assigned' } });
    expect(a).toEqual({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity', metadata: { name: 'x', finalizers: ['f'] }, status: { status: 'Assigned' } });
  });

  it('needs test results to plan, and blocks on failed tests or a running MIC', async () => {
    await expect(cleanupStep.plan(await setup(cluster(), undefined))).rejects.toThrow(/test step must pass before cleanup/);
    // Results of a cycle since rolled back say nothing about the cluster now: cleanup depends on the test step again.
    const dir = tempDir();
    await recordTestRun(dir, PASSED, { rolledBack: true });
    await expect(cleanupStep.plan(await contextFor('cleanup', cluster(2), new MiniAzure(cluster(2)), dir, { inventory: INVENTORY }))).rejects.toThrow(/test step must pass before cleanup/);
    const failed = [{ ...PASSED[0], ok: false, message: 'no token' }];
    const plan = await cleanupStep.plan(await setup(cluster(2), failed));
    expect(plan.blockers.map((b) => b.code)).toEqual(['tests-not-passed', 'mic-running']);
    expect(plan.blockers[0].message).toContain('token payments/api in pool pay (identity payments/api-id)');
  });

  it('deletes MIC objects and AzureAssignedIdentities (finalizers first) with full copies, never identities or bindings; rollback re-creates them', async () => {
    const kube = cluster();
    const ctx = await setup(kube, PASSED);
    const plan = await cleanupStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    expect(plan.actions.map((a) => `${a.op} ${a.target}`)).toEqual([
      '- deploy default/mic',
      '- azurepodidentityexception default/mic-exception',
      '- clusterrolebinding aad-pod-id-mic-binding',
      '- clusterrole aad-pod-id-mic-role',
      '- sa default/aad-pod-id-mic-service-account',
      '- endpoints default/aad-pod-identity-mic',
      '- configmap default/aad-pod-identity-config',
      '- 2 azureassignedidentities',
    ]);
    expect(plan.notes.join('\n')).toContain(`the ${AAI_CRD} CRD is kept`);
    const out = await applyPlan(cleanupStep, ctx, plan);
    expect(out.summary).toBe('deleted 7 MIC objects and 2 AzureAssignedIdentities; copies in the journal');
    const patchIdx = kube.writeLines().findIndex((w) => w.startsWith('patch AzureAssignedIdentity default/api-1-payments-api-id {"metadata":{"finalizers":null}}'));
    const delIdx = kube.writeLines().indexOf('delete AzureAssignedIdentity default/api-1-payments-api-id');
    expect(patchIdx).toBeGreaterThanOrEqual(0);
    expect(patchIdx).toBeLessThan(delIdx);
    expect(kube.all('AzureAssignedIdentity')).toEqual([]);
    expect(kube.all('AzureIdentity')).toHaveLength(1);
    expect(kube.all('AzureIdentityBinding')).toHaveLength(1);
    expect(kube.find('ClusterRoleBinding', undefined, 'aad-pod-id-nmi-binding')).toBeDefined();
    expect(kube.find('CustomResourceDefinition', undefined, AAI_CRD)).toBeDefined();
    const saved = ctx.journal.firstPreState<{ object: { spec: unknown } }>('delete/deployment/default/mic');
    expect(saved?.object.spec).toMatchObject({ replicas: 0, template: { spec: { serviceAccountName: 'aad-pod-id-mic-service-account' } } });

    const rb = await rollbackStep(ctx);
    // One line per undone action, newest first: the AzureAssignedIdentities, then each of the 7 MIC objects.
    expect(rb.summary.split('; ')[0]).toBe('re-created 2 AzureAssignedIdentity objects from the journal');
    expect(rb.summary.split('; ').slice(1).filter((l) => l.endsWith('re-created from the journal'))).toHaveLength(7);
    const mic = kube.find('Deployment', 'default', 'mic')!;
    expect(mic.metadata?.uid).not.toBe('uid-1');
    expect(mic.status).toBeUndefined();
    expect(kube.find('AzureAssignedIdentity', 'default', 'api-2-payments-api-id')?.status).toEqual({ status: 'Assigned' });
    expect((await verifyRollback(ctx)).failures).toEqual([]);
  });

  it('deletes the CRD only when asked', async () => {
    const kube = cluster();
    const ctx = await setup(kube, PASSED, { deleteCrd: true });
    const plan = await cleanupStep.plan(ctx);
    expect(plan.actions.at(-1)?.target).toBe(`crd ${AAI_CRD}`);
  });
});
