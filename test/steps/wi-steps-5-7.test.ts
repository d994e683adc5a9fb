/**
 * The workload identity runbook's steps 5-7 over the fakes: `wi-workloads` (one template patch
 * per service, rolled out in order, the proxy sidecar annotation only where the inventory asks,
 * the dedicated service account; a resumed run never patches twice), `wi-test` (the exchange
 * from a probe pod of the service's account, claims checked) and `wi-remove-pod-identity`
 * (blockers first; labels, Pod Identity objects, scale set identities and, when asked, NMI/MIC
 * and the CRDs; rollback re-creates all of it).
 */
import { describe, expect, it } from 'vitest';
import { Journal } from '../../src/engine/journal.ts';
import type { InventoryDocument } from '../../src/steps/lib/inventory-model.ts';
import type { KubeObject } from '../../src/kube/gateway.ts';
import { wiWorkloadsStep } from '../../src/steps/workload-identity/05-wi-workloads.ts';
import { wiTestStep } from '../../src/steps/workload-identity/06-wi-test.ts';
import { wiRemovePodIdentityStep } from '../../src/steps/workload-identity/07-wi-remove-pod-identity.ts';
import { interpretExchange, scopeOf } from '../../src/steps/lib/workload-identity/token-probe.ts';
import type { StepId } from '../../src/engine/step.ts';
import type { Ctx } from '../../src/steps/lib/context.ts';
import { CLUSTER, FakeAzure, FakeKube, KUBELET_ID, idOf, tempDir } from './fakes.ts';
import { applyPlan, rollbackStep, verifyRollback } from './run-actions.ts';
import { join } from 'node:path';

const WI = 'azure.workload.identity/use';
const PROXY = 'azure.workload.identity/inject-proxy-sidecar';

function b64(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

interface World {
  kube: FakeKube;
  azure: FakeAzure;
  dir: string;
  inventory: InventoryDocument;
}

/** Two identities, three Deployments (one marked for the proxy sidecar), NMI, MIC, CRDs, two scale sets. */
function world(): World {
  const kube = new FakeKube();
  kube.maxPolls = 50;
  const azure = new FakeAzure();
  azure.cluster.kubeletIdentity = { resourceId: KUBELET_ID };
  const addon = idOf('omsagent-prod-weu');
  azure.addSet('pay', [KUBELET_ID, addon, idOf('api-id')]);
  azure.addSet('batch', [KUBELET_ID, idOf('worker-id')]);
  for (const crd of ['azureidentities', 'azureidentitybindings', 'azurepodidentityexceptions', 'azureassignedidentities']) {
    kube.add({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: `${crd}.aadpodidentity.k8s.io` }, spec: { group: 'aadpodidentity.k8s.io' }, status: { conditions: [{ type: 'Established', status: 'True' }] } });
  }
  kube.add({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'aad-pod-id-nmi-service-account', namespace: 'default' } });
  kube.add({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'aad-pod-id-nmi-role' } });
  kube.add({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'aad-pod-id-nmi-binding' }, roleRef: { kind: 'ClusterRole', name: 'aad-pod-id-nmi-role' }, subjects: [{ kind: 'ServiceAccount', name: 'aad-pod-id-nmi-service-account', namespace: 'default' }] });
  kube.add({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'nmi', namespace: 'default' },
    spec: { selector: { matchLabels: { component: 'nmi' } }, template: { metadata: { labels: { component: 'nmi' } }, spec: { serviceAccountName: 'aad-pod-id-nmi-service-account', containers: [{ name: 'nmi', image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17', args: ['--operation-mode=managed'] }] } } },
    status: { observedGeneration: 1, desiredNumberScheduled: 2, updatedNumberScheduled: 2, numberAvailable: 2 },
  });
  const identity = (name: string, ns: string, selector: string) => {
    kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity', metadata: { name, namespace: ns }, spec: { type: 0, resourceID: idOf(name), clientID: `client-${name}` } });
    kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: `${name}-binding`, namespace: ns }, spec: { azureIdentity: name, selector } });
  };
  identity('api-id', 'payments', 'api');
  identity('worker-id', 'batch', 'worker');
  kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzurePodIdentityException', metadata: { name: 'aks-addon-exception', namespace: 'kube-system' }, spec: { podLabels: { 'kubernetes.azure.com/managedby': 'aks' } } });
  const deploy = (ns: string, name: string, selector: string) =>
    kube.add({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: ns },
      spec: { replicas: 2, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name, aadpodidbinding: selector } }, spec: { containers: [{ name, image: 'x' }] } } },
      status: { observedGeneration: 1, replicas: 2, updatedReplicas: 2, availableReplicas: 2 },
    });
  deploy('payments', 'api', 'api');
  deploy('payments', 'ledger', 'api');
  deploy('batch', 'worker', 'worker');
  const svc = (name: string, extra: object = {}) => ({ name, kind: 'Deployment', testCases: [{ kind: 'token' as const }], ...extra });
  const inventory: InventoryDocument = {
    apiVersion: 'podid-migrate/v1',
    kind: 'Inventory',
    cluster: { name: 'prod-weu', kubeSystemUid: 'ks-uid', resourceId: CLUSTER.aksResourceId },
    identities: [
      { name: 'api-id', namespace: 'payments', type: 0, resourceId: idOf('api-id'), clientId: 'client-api-id', principalId: 'principal-api-id', services: [svc('payments/api'), svc('payments/ledger', { workloadIdentity: { proxySidecar: true } })] },
      { name: 'worker-id', namespace: 'batch', type: 0, resourceId: idOf('worker-id'), clientId: 'client-worker-id', principalId: 'principal-worker-id', services: [svc('batch/worker')] },
    ],
    pools: [
      { name: 'pay', scaleSet: azure.sets.get('aks-pay-12345678-vmss')!.id, identitiesBefore: [KUBELET_ID, addon, idOf('api-id')] },
      { name: 'batch', scaleSet: azure.sets.get('aks-batch-12345678-vmss')!.id, identitiesBefore: [KUBELET_ID, idOf('worker-id')] },
    ],
  };
  return { kube, azure, dir: tempDir(), inventory };
}

/** A step context over the fakes and the workload identity runbook's journal in the world's directory. */
async function ctxOf(w: World, step: StepId, options: Record<string, unknown> = {}): Promise<Ctx> {
  const journal = await Journal.open(join(w.dir, 'journal.json'), CLUSTER, { runbook: 'workload-identity' });
  return {
    kube: w.kube,
    azure: w.azure,
    journal: journal.forStep(step),
    inventory: w.inventory,
    inventoryPath: join(w.dir, 'inventory.yaml'),
    options: { aksId: CLUSTER.aksResourceId, ...options },
    dryRun: 'none',
    signal: new AbortController().signal,
    deadline: Date.now() + 30_000,
    progress: () => {},
    log: { info: () => {}, warn: () => {}, debug: () => {} },
  };
}

/** What `wi-serviceaccounts` records: api and ledger got dedicated accounts, worker keeps its own. */
async function recordServiceAccounts(w: World): Promise<void> {
  const ctx = await ctxOf(w, 'wi-serviceaccounts');
  await ctx.journal.setData('serviceAccounts', {
    'payments/api': { namespace: 'payments', name: 'api', created: true },
    'payments/ledger': { namespace: 'payments', name: 'ledger', created: true },
    'batch/worker': { namespace: 'batch', name: 'default' },
  });
}

/** The exchange answered by the fake token endpoint: the identity the probe's service account is federated with. */
function tokenEndpoint(w: World, override: Record<string, string> = {}): void {
  const bySa: Record<string, string> = { 'payments/api': 'api-id', 'payments/ledger': 'api-id', 'batch/default': 'worker-id' };
  w.kube.curl = (pod) => {
    const sa = `${pod.metadata?.namespace}/${(pod.spec as { serviceAccountName?: string }).serviceAccountName ?? 'default'}`;
    if (pod.metadata?.labels?.[WI] !== 'true') return { status: 400, body: '{"error":"invalid_request","error_description":"AADSTS7000218: no assertion"}' };
    const id = override[sa] ?? bySa[sa];
    if (!id) return { status: 400, body: '{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found"}' };
    return { status: 200, body: JSON.stringify({ token_type: 'Bearer', access_token: `eyJhbGciOiJSUzI1NiJ9.${b64({ oid: `principal-${id}`, appid: `client-${id}`, xms_mirid: idOf(id) })}.c2ln` }) };
  };
}

function template(w: World, ns: string, name: string): { labels: Record<string, string>; annotations?: Record<string, string>; sa?: string } {
  const t = (w.kube.find('Deployment', ns, name)!.spec as any).template;
  return { labels: t.metadata.labels, annotations: t.metadata.annotations, sa: t.spec.serviceAccountName };
}

function dump(kube: FakeKube): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of kube.objects.values()) {
    if (o.kind === 'Pod') continue;
    const c = structuredClone(o) as KubeObject;
    for (const k of ['uid', 'resourceVersion', 'generation', 'creationTimestamp']) delete (c.metadata as Record<string, unknown>)[k];
    delete c.status;
    out[`${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`] = c;
  }
  return out;
}

let w: World;

describe('wi-workloads', () => {
  it('patches each service once, in order: the label, the sidecar annotation only where marked, the dedicated service account', async () => {
    w = world();
    await recordServiceAccounts(w);
    tokenEndpoint(w);
    const ctx = await ctxOf(w, 'wi-workloads');
    const plan = await wiWorkloadsStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    // Each service account's exchange is proven before the first rollout onto it; no parallel group: one at a time.
    expect(plan.actions.map((a) => [a.id, a.parallelGroup, a.writes.kube])).toEqual([
      ['gate/batch/default', undefined, 2],
      ['template/deployment/batch/worker/workload-identity', undefined, 1],
      ['gate/payments/api', undefined, 2],
      ['template/deployment/payments/api/workload-identity', undefined, 1],
      ['gate/payments/ledger', undefined, 2],
      ['template/deployment/payments/ledger/workload-identity', undefined, 1],
    ]);
    await applyPlan(wiWorkloadsStep, ctx, plan);
    expect(w.kube.writes).toHaveLength(9);
    expect(w.kube.writeLines().filter((l) => l.startsWith('patch'))).toEqual([
      `patch Deployment batch/worker {"spec":{"template":{"metadata":{"labels":{"${WI}":"true"}}}}}`,
      `patch Deployment payments/api {"spec":{"template":{"metadata":{"labels":{"${WI}":"true"}},"spec":{"serviceAccountName":"api"}}}}`,
      `patch Deployment payments/ledger {"spec":{"template":{"metadata":{"labels":{"${WI}":"true"},"annotations":{"${PROXY}":"true"}},"spec":{"serviceAccountName":"ledger"}}}}`,
    ]);
    // Both paths during the transition: the binding label stays.
    expect(template(w, 'payments', 'ledger')).toEqual({ labels: { app: 'ledger', aadpodidbinding: 'api', [WI]: 'true' }, annotations: { [PROXY]: 'true' }, sa: 'ledger' });
    expect(template(w, 'payments', 'api').annotations).toBeUndefined();
    expect((await wiWorkloadsStep.check(ctx)).ok).toBe(true);
    // Planned again: nothing left to do.
    expect((await wiWorkloadsStep.plan(ctx)).actions).toEqual([]);

    await rollbackStep(ctx);
    expect(template(w, 'payments', 'ledger')).toEqual({ labels: { app: 'ledger', aadpodidbinding: 'api' }, annotations: {}, sa: undefined });
    expect(template(w, 'batch', 'worker').labels).toEqual({ app: 'worker', aadpodidbinding: 'worker' });
    expect((await verifyRollback(ctx)).ok).toBe(true);
  });

  it('a run killed right after a patch resumes without patching (or rolling out) that service again', async () => {
    w = world();
    await recordServiceAccounts(w);
    tokenEndpoint(w);
    const ctx = await ctxOf(w, 'wi-workloads');
    const plan = await wiWorkloadsStep.plan(ctx);
    const first = plan.actions.find((a) => a.kind === 'patch-pod-template')!;
    const { patchPodTemplate } = await import('../../src/steps/executors/patch-pod-template.ts');
    // The write reached the API server, the process died before its done record.
    await ctx.journal
      .runAction(first, await patchPodTemplate.capture(ctx, first as never), async () => {
        await w.kube.patch({ apiVersion: 'apps/v1', kind: 'Deployment' }, 'batch', 'worker', { spec: { template: { metadata: { labels: { [WI]: 'true' } } } } }, 'merge');
        throw new Error('killed');
      })
      .catch(() => undefined);
    const again = await ctxOf(w, 'wi-workloads');
    await applyPlan(wiWorkloadsStep, again);
    expect(w.kube.writeLines().filter((l) => l.includes('batch/worker'))).toHaveLength(1);
    // The resumed run: no gate and no patch for batch/worker again; the two others gated and patched.
    expect(w.kube.writeLines().filter((l) => l.startsWith('patch'))).toHaveLength(3);
    expect(w.kube.writes.filter((x) => x.verb === 'create').map((x) => (x.body as KubeObject).metadata?.namespace)).toEqual(['payments', 'payments']);
    const records = (await Journal.read(join(w.dir, 'journal.json')))!.steps['wi-workloads']!.actions;
    expect(records.filter((r) => r.actionId === first.id).map((r) => r.status)).toEqual(['done']);
  });
});

describe('wi-workloads gate', () => {
  it('stops before the first rollout onto a service account whose exchange Entra still refuses', async () => {
    w = world();
    await recordServiceAccounts(w);
    tokenEndpoint(w);
    const answer = w.kube.curl;
    // The credential of payments/api has not propagated yet.
    w.kube.curl = (pod, url) => ((pod.spec as { serviceAccountName?: string }).serviceAccountName === 'api' ? { status: 400, body: '{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found"}' } : answer(pod, url));
    const ctx = await ctxOf(w, 'wi-workloads');
    await expect(applyPlan(wiWorkloadsStep, ctx)).rejects.toThrow(/workload identity does not answer for payments\/api yet, so nothing was rolled out onto it/);
    expect(template(w, 'batch', 'worker').labels[WI]).toBe('true');
    expect(template(w, 'payments', 'api').labels[WI]).toBeUndefined();
  });
});

describe('wi-test', () => {
  it('runs one probe pod per token case as the service account, with the workload identity label, and checks the claims', async () => {
    w = world();
    await recordServiceAccounts(w);
    tokenEndpoint(w);
    const ctx = await ctxOf(w, 'wi-test');
    const plan = await wiTestStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    expect(plan.actions).toHaveLength(1);
    expect(plan.actions[0].writes).toEqual({ kube: 6, arm: 0 });
    const outcome = await applyPlan(wiTestStep, ctx, plan);
    expect(outcome.summary).toBe('3/3 workload identity token cases passed');
    const probes = w.kube.writes.filter((x) => x.verb === 'create').map((x) => x.body as KubeObject);
    expect(probes.map((p) => [p.metadata?.namespace, (p.spec as any).serviceAccountName, p.metadata?.labels?.[WI], p.metadata?.labels?.aadpodidbinding])).toEqual(
      expect.arrayContaining([
        ['payments', 'api', 'true', undefined],
        ['payments', 'ledger', 'true', undefined],
        ['batch', 'default', 'true', undefined],
      ]),
    );
    const check = await wiTestStep.check(ctx);
    expect(check).toMatchObject({ ok: true });
    expect(check.evidence.join('\n')).toContain('workload identity token for payments/api-id as serviceaccount payments/api: xms_mirid, appid, oid match');
    expect(JSON.stringify(ctx.journal.getData('results'))).not.toMatch(/eyJ/);
  });

  it('a token of another identity fails the case, naming the claim', async () => {
    w = world();
    await recordServiceAccounts(w);
    tokenEndpoint(w, { 'payments/ledger': 'worker-id' });
    const ctx = await ctxOf(w, 'wi-test');
    expect((await applyPlan(wiTestStep, ctx)).summary).toBe('2/3 workload identity token cases passed, 1 failed');
    const check = await wiTestStep.check(ctx);
    expect(check.ok).toBe(false);
    expect(check.failures.join('\n')).toContain('payments/ledger as payments/ledger (identity payments/api-id): workload identity token for serviceaccount payments/ledger is not for identity payments/api-id: xms_mirid is');
  });

  it('reads an AADSTS70021 answer as a missing or propagating credential', () => {
    const r = interpretExchange({ pod: 'p', log: 'probe-status 400 attempt 1 AADSTS70021\nprobe-status 400 attempt 2 AADSTS70021\n', phase: 'Failed', exitCode: 1, timedOut: false, durationMs: 10 }, { name: 'x', clientId: 'c' }, 'serviceaccount a/b');
    expect(r.ok).toBe(false);
    expect(r.message).toBe('no workload identity token for x as serviceaccount a/b: HTTP 400 after 2 attempts: AADSTS70021 (no federated credential matches the service account, or it has not propagated yet)');
    expect(scopeOf('https://management.azure.com/')).toBe('https://management.azure.com/.default');
  });
});

describe('wi-remove-pod-identity', () => {
  async function migrated(): Promise<void> {
    w = world();
    await recordServiceAccounts(w);
    tokenEndpoint(w);
    await applyPlan(wiWorkloadsStep, await ctxOf(w, 'wi-workloads'));
    await applyPlan(wiTestStep, await ctxOf(w, 'wi-test'));
    w.kube.writes.length = 0;
  }

  it('is refused before anything is written while the tests have not passed or a pod depends on pod identity alone', async () => {
    w = world();
    const ctx = await ctxOf(w, 'wi-remove-pod-identity');
    // A bare Job's pod from another system, still on the binding only.
    w.kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nightly-7k2p9-x1', namespace: 'batch', labels: { aadpodidbinding: 'worker' }, ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: 'nightly-7k2p9', uid: 'j', controller: true }] }, status: { phase: 'Running' } });
    const plan = await wiRemovePodIdentityStep.plan(ctx);
    // Pods no step will move are a blocker at once, before wi-test has run.
    expect(plan.blockers.map((b) => `${b.code} ${b.subject}`)).toEqual(['pods-on-pod-identity job batch/nightly', 'wi-tests-not-passed step wi-test']);
    w.kube.remove('Pod', 'batch', 'nightly-7k2p9-x1');
    // Otherwise, before wi-test has run the step depends on it (the runner shows it so): no blocker list.
    await expect(wiRemovePodIdentityStep.plan(ctx)).rejects.toThrow(/no workload identity token case has run in this cycle yet/);
    // wi-test ran and passed, but a template lost its label since: a blocker.
    await recordServiceAccounts(w);
    tokenEndpoint(w);
    await applyPlan(wiWorkloadsStep, await ctxOf(w, 'wi-workloads'));
    await applyPlan(wiTestStep, await ctxOf(w, 'wi-test'));
    await w.kube.patch({ apiVersion: 'apps/v1', kind: 'Deployment' }, 'payments', 'api', { spec: { template: { metadata: { labels: { [WI]: null } } } } }, 'merge');
    expect((await wiRemovePodIdentityStep.plan(await ctxOf(w, 'wi-remove-pod-identity'))).blockers.map((b) => `${b.code} ${b.subject}`)).toEqual(['not-on-workload-identity deployment payments/api']);
    expect(w.kube.writes.filter((x) => x.verb === 'delete' && x.kind !== 'Pod')).toEqual([]);
  });

  it('in a dry run counts what wi-workloads and wi-test would have done as done', async () => {
    w = world();
    // What a dry run of the earlier steps records in memory: their actions done, nothing changed.
    const workloads = { ...(await ctxOf(w, 'wi-workloads')), dryRun: 'client' as const };
    const plan = await wiWorkloadsStep.plan(workloads);
    for (const a of plan.actions) await workloads.journal.runAction(a, undefined, async () => ({ dryRun: true }));
    const test = await ctxOf(w, 'wi-test');
    await test.journal.runAction({ id: 'wi-token-cases', kind: 'run-wi-probes', op: '~', target: 't', summary: '', api: 'kube' }, undefined, async () => ({ dryRun: true }));
    const dry = { ...(await ctxOf(w, 'wi-remove-pod-identity')), dryRun: 'client' as const };
    const p = await wiRemovePodIdentityStep.plan(dry);
    expect(p.blockers).toEqual([]);
    expect(p.notes).toContain('dry run: wi-test would run its cases first; this step is refused unless every one passes');
    expect(p.actions.filter((a) => a.kind === 'patch-pod-template')).toHaveLength(3);
    // Not in a dry run: the same journal proves nothing, the templates lack the label.
    expect(template(w, 'payments', 'api').labels[WI]).toBeUndefined();
  });

  it('removes labels, Pod Identity objects and only the Pod Identity identities of the scale sets; rollback restores all of it', async () => {
    await migrated();
    const before = dump(w.kube);
    const vmssBefore = [...w.azure.sets.values()].map((s) => [s.name, Object.keys(s.userAssignedIdentities).sort()]);
    const ctx = await ctxOf(w, 'wi-remove-pod-identity');
    const plan = await wiRemovePodIdentityStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    expect(plan.actions.map((a) => a.id)).toEqual([
      'template/deployment/batch/worker/remove-binding-label',
      'template/deployment/payments/api/remove-binding-label',
      'template/deployment/payments/ledger/remove-binding-label',
      'delete/azureidentitybindings',
      'delete/azureidentities',
      'vmss/aks-batch-12345678-vmss/remove-identities',
      'vmss/aks-pay-12345678-vmss/remove-identities',
    ]);
    await applyPlan(wiRemovePodIdentityStep, ctx, plan);
    expect(template(w, 'payments', 'api').labels).toEqual({ app: 'api', [WI]: 'true' });
    expect(w.kube.all('AzureIdentity')).toEqual([]);
    expect(w.kube.all('AzureIdentityBinding')).toEqual([]);
    // Kept: NMI and the CRDs (no --uninstall-pod-identity), the kubelet and add-on identities.
    expect(w.kube.find('DaemonSet', 'default', 'nmi')).toBeDefined();
    expect(Object.keys(w.azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities).sort()).toEqual([idOf('omsagent-prod-weu'), KUBELET_ID].sort());
    expect(Object.keys(w.azure.sets.get('aks-batch-12345678-vmss')!.userAssignedIdentities)).toEqual([KUBELET_ID]);
    const writes = plan.actions.reduce((n, a) => n + a.writes.kube, 0);
    expect(w.kube.writes).toHaveLength(writes);
    expect(w.azure.patches.filter((p) => p.remove.length)).toHaveLength(2);

    await rollbackStep(ctx);
    expect((await verifyRollback(ctx)).ok).toBe(true);
    expect(dump(w.kube)).toEqual(before);
    expect([...w.azure.sets.values()].map((s) => [s.name, Object.keys(s.userAssignedIdentities).sort()])).toEqual(vmssBefore);
  });

  it('with uninstallPodIdentity also removes exceptions, NMI, its RBAC and the CRDs, and puts them back on rollback', async () => {
    await migrated();
    const before = dump(w.kube);
    const ctx = await ctxOf(w, 'wi-remove-pod-identity', { uninstallPodIdentity: true });
    const plan = await wiRemovePodIdentityStep.plan(ctx);
    expect(plan.actions.map((a) => a.id).slice(3)).toEqual([
      'delete/azureidentitybindings',
      'delete/azureidentities',
      'delete/azurepodidentityexceptions',
      'delete/daemonset/default/nmi',
      'delete/clusterrolebinding/aad-pod-id-nmi-binding',
      'delete/clusterrole/aad-pod-id-nmi-role',
      'delete/serviceaccount/default/aad-pod-id-nmi-service-account',
      'delete/customresourcedefinition/azureassignedidentities.aadpodidentity.k8s.io',
      'delete/customresourcedefinition/azureidentities.aadpodidentity.k8s.io',
      'delete/customresourcedefinition/azureidentitybindings.aadpodidentity.k8s.io',
      'delete/customresourcedefinition/azurepodidentityexceptions.aadpodidentity.k8s.io',
      'vmss/aks-batch-12345678-vmss/remove-identities',
      'vmss/aks-pay-12345678-vmss/remove-identities',
    ]);
    await applyPlan(wiRemovePodIdentityStep, ctx, plan);
    const check = await wiRemovePodIdentityStep.check(ctx);
    expect(check.failures).toEqual([]);
    expect(check.evidence).toContain('NMI, MIC and the Pod Identity CRDs are gone');
    expect([...w.kube.objects.values()].filter((o) => o.apiVersion?.startsWith('aadpodidentity') || o.kind === 'CustomResourceDefinition')).toEqual([]);

    await rollbackStep(ctx);
    expect((await verifyRollback(ctx)).ok).toBe(true);
    expect(dump(w.kube)).toEqual(before);
  });
});
