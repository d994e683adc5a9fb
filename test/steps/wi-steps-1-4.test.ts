/**
 * The workload identity runbook's steps 1-4 over the fakes: the pure planning helpers (SDK
 * minimums, service account and credential targets, the blockers), and the plans and executors
 * of wi-federate and wi-serviceaccounts (serialized per identity, no duplicate on a resume,
 * rollback deletes only what was created).
 */
import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/kube/gateway.ts';
import { keepOperatorEdits, validateInventory, type InventoryDocument, type InventoryIdentity } from '../../src/steps/lib/inventory-model.ts';
import { sdkSupportsWorkloadIdentity } from '../../src/steps/lib/workload-identity/sdk.ts';
import { accountForTemplate, federatedCredentialName, targetsOf, type CredentialTarget } from '../../src/steps/lib/workload-identity/federation.ts';
import { accountUseBlockers, credentialLimitBlockers, serviceBlockers } from '../../src/steps/workload-identity/01-wi-preflight.ts';
import { wiEnableStep } from '../../src/steps/workload-identity/02-wi-enable.ts';
import { wiFederateStep } from '../../src/steps/workload-identity/03-wi-federate.ts';
import { sharedAccountBlockers, wiServiceAccountsStep } from '../../src/steps/workload-identity/04-wi-serviceaccounts.ts';
import { AKS_ID, contextFor, FakeAzure, FakeKube, idOf, tempDir } from './fakes.ts';
import { applyPlan, rollbackStep, verifyRollback } from './run-actions.ts';
import { EXECUTORS } from '../../src/steps/executors/index.ts';
import { reconcileIntents } from '../../src/engine/actions.ts';

function identity(name: string, namespace: string, services: { name: string; kind?: string; workloadIdentity?: InventoryIdentity['services'][number]['workloadIdentity'] }[]): InventoryIdentity {
  return { name, namespace, type: 0, resourceId: idOf(name), clientId: `client-${name}`, services: services.map((s) => ({ kind: 'Deployment', ...s })) };
}

function inventory(identities: InventoryIdentity[]): InventoryDocument {
  return { apiVersion: 'podid-migrate/v1', kind: 'Inventory', cluster: { name: 'prod-weu', kubeSystemUid: 'ks-uid' }, identities, pools: [] };
}

function deployment(namespace: string, name: string, spec: { serviceAccountName?: string; hostNetwork?: boolean } = {}): KubeObject {
  return { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { namespace, name }, spec: { replicas: 1, template: { metadata: { labels: { app: name, aadpodidbinding: name } }, spec: { containers: [{ name: 'app', image: 'app:1' }], ...spec } } } };
}

const INV = inventory([
  identity('api-id', 'payments', [{ name: 'payments/api' }, { name: 'payments/ledger' }]),
  identity('reports-id', 'reporting', [{ name: 'reporting/reports' }, { name: 'reporting/nightly', kind: 'CronJob' }]),
]);

function world(): { kube: FakeKube; azure: FakeAzure } {
  const kube = new FakeKube();
  kube.add(deployment('payments', 'api'));
  kube.add(deployment('payments', 'ledger', { serviceAccountName: 'ledger-sa' }));
  kube.add(deployment('reporting', 'reports', { serviceAccountName: 'reports' }));
  kube.add({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { namespace: 'payments', name: 'ledger-sa' } });
  kube.add({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { namespace: 'reporting', name: 'reports', annotations: { team: 'reporting' } } });
  const azure = new FakeAzure();
  azure.cluster.oidcIssuer = { enabled: true, issuerUrl: azure.issuerUrl };
  azure.cluster.workloadIdentityEnabled = true;
  return { kube, azure };
}

describe('SDK minimums', () => {
  it('accepts the minimum and later, refuses earlier and pre-releases of the minimum', () => {
    expect(sdkSupportsWorkloadIdentity('dotnet', '1.9.0')).toBe(true);
    expect(sdkSupportsWorkloadIdentity('java', '1.10.2')).toBe(true);
    expect(sdkSupportsWorkloadIdentity('java', '1.8.9')).toBe(false);
    expect(sdkSupportsWorkloadIdentity('go', 'v1.3.0')).toBe(true);
    expect(sdkSupportsWorkloadIdentity('go', 'v1.2')).toBe(false);
    expect(sdkSupportsWorkloadIdentity('node', '3.2.0-beta.1')).toBe(false);
    expect(sdkSupportsWorkloadIdentity('node', '4.0.0')).toBe(true);
    expect(sdkSupportsWorkloadIdentity('python', '1.12.99')).toBe(false);
    expect(sdkSupportsWorkloadIdentity('python', '1.13.0')).toBe(true);
    expect(sdkSupportsWorkloadIdentity('python', 'latest')).toBe(false);
  });
});

describe('inventory fields', () => {
  it('validates services[].workloadIdentity and keeps it when the inventory is written again', () => {
    const marked = inventory([identity('api-id', 'payments', [{ name: 'payments/api', workloadIdentity: { sdk: { language: 'java', version: '1.8.2' }, proxySidecar: true } }])]);
    expect(validateInventory(marked)).toEqual([]);
    const bad = structuredClone(marked);
    (bad.identities[0].services[0].workloadIdentity as Record<string, unknown>).sdk = { language: 'cobol', version: 'one' };
    expect(validateInventory(bad).join('\n')).toMatch(/identities\[0\]\.services\[0\]\.workloadIdentity\.sdk\.(language|version)/);
    const fresh = inventory([identity('api-id', 'payments', [{ name: 'payments/api' }, { name: 'payments/new' }])]);
    const kept = keepOperatorEdits(marked, fresh);
    expect(kept.identities[0].services.map((x) => x.workloadIdentity)).toEqual([{ sdk: { language: 'java', version: '1.8.2' }, proxySidecar: true }, undefined]);
  });
});

describe('targets', () => {
  it('gives a workload on default its own account, keeps named ones, gives kinds without a template their own, one credential per identity and account', () => {
    const live = new Map<string, KubeObject | undefined>([
      ['payments/api', deployment('payments', 'api')],
      ['payments/ledger', deployment('payments', 'ledger', { serviceAccountName: 'ledger-sa' })],
      ['reporting/reports', deployment('reporting', 'reports', { serviceAccountName: 'reports' })],
    ]);
    const t = targetsOf(INV, live);
    expect(t.services.map((s) => [s.service.service, s.serviceAccount, s.dedicated])).toEqual([
      ['payments/api', 'api', true],
      ['payments/ledger', 'ledger-sa', false],
      ['reporting/nightly', 'nightly', true],
      ['reporting/reports', 'reports', false],
    ]);
    expect(t.skipped).toEqual([]);
    expect(t.credentials.map((c) => [c.identity.name, c.subject, c.name])).toEqual([
      ['api-id', 'system:serviceaccount:payments:api', 'podid-migrate-payments-api'],
      ['api-id', 'system:serviceaccount:payments:ledger-sa', 'podid-migrate-payments-ledger-sa'],
      ['reports-id', 'system:serviceaccount:reporting:nightly', 'podid-migrate-reporting-nightly'],
      ['reports-id', 'system:serviceaccount:reporting:reports', 'podid-migrate-reporting-reports'],
    ]);
    // A workload that is gone is not moved.
    expect(targetsOf(INV, new Map()).skipped.map((s) => s.service.service)).toEqual(['payments/api', 'payments/ledger', 'reporting/reports']);
    expect(accountForTemplate('default', 'web')).toEqual({ serviceAccount: 'web', dedicated: true });
  });

  it('names credentials within 120 characters, distinct for distinct pairs', () => {
    const long = 'n'.repeat(70);
    const a = federatedCredentialName(long, 'x'.repeat(60));
    const b = federatedCredentialName(long, `${'x'.repeat(59)}y`);
    expect(a.length).toBeLessThanOrEqual(120);
    expect(a).not.toBe(b);
    expect(federatedCredentialName('ns', 'sa.with.dots')).toBe('podid-migrate-ns-sa-with-dots');
  });

  it('blocks one account used by services of two identities', () => {
    const inv = inventory([identity('a-id', 'apps', [{ name: 'apps/a' }]), identity('b-id', 'apps', [{ name: 'apps/b' }])]);
    const live = new Map([
      ['apps/a', deployment('apps', 'a', { serviceAccountName: 'shared' })],
      ['apps/b', deployment('apps', 'b', { serviceAccountName: 'shared' })],
    ]);
    const blockers = sharedAccountBlockers(targetsOf(inv, live).accounts);
    expect(blockers).toHaveLength(1);
    expect(blockers[0]).toMatchObject({ code: 'wi-service-account-shared', subject: 'serviceaccount apps/shared' });
    expect(blockers[0].message).toContain('apps/a (identity apps/a-id), apps/b (identity apps/b-id)');
  });
});

describe('preflight rules', () => {
  const target = (i: number): CredentialTarget => ({ identity: INV.identities[0], identityId: idOf('api-id'), namespace: 'payments', serviceAccount: `sa-${i}`, subject: `system:serviceaccount:payments:sa-${i}`, name: `n-${i}`, services: [] });

  it('blocks an identity whose credentials would pass 20, not counting pairs already trusted', () => {
    const key = idOf('api-id').toLowerCase();
    expect(credentialLimitBlockers([target(1)], new Map([[key, { count: 19, satisfied: new Set<string>() }]])).blockers).toEqual([]);
    const over = credentialLimitBlockers([target(1), target(2)], new Map([[key, { count: 19, satisfied: new Set<string>() }]]));
    expect(over.blockers.map((b) => [b.code, b.subject])).toEqual([['wi-federated-credential-limit', 'identity payments/api-id']]);
    expect(over.blockers[0].message).toContain('has 19 federated identity credential(s) and the migration needs 2 more (payments/sa-1, payments/sa-2): 21');
    expect(credentialLimitBlockers([target(1)], new Map([[key, { count: 20, satisfied: new Set([target(1).subject]) }]])).blockers).toEqual([]);
  });

  it('blocks a service account that workloads outside the inventory run as too', () => {
    const inv = inventory([identity('a-id', 'apps', [{ name: 'apps/a' }, { name: 'apps/b' }])]);
    const a = deployment('apps', 'a', { serviceAccountName: 'shared' });
    const b = deployment('apps', 'b');
    const live = new Map([['apps/a', a], ['apps/b', b]]);
    const stranger = deployment('apps', 'stranger', { serviceAccountName: 'shared' });
    const elsewhere = deployment('other', 'x', { serviceAccountName: 'shared' });
    const blockers = accountUseBlockers(targetsOf(inv, live), [a, b, stranger, elsewhere, deployment('apps', 'c')]);
    expect(blockers.map((x) => [x.code, x.subject])).toEqual([['wi-service-account-used-elsewhere', 'serviceaccount apps/shared']]);
    expect(blockers[0].message).toContain('deployment apps/stranger also runs as apps/shared');
    expect(accountUseBlockers(targetsOf(inv, live), [a, b])).toEqual([]);
  });

  it('blocks hostNetwork workloads and SDKs below the minimum unless marked for the proxy sidecar', () => {
    const inv = inventory([
      identity('a-id', 'apps', [
        { name: 'apps/old', workloadIdentity: { sdk: { language: 'dotnet', version: '1.8.0' } } },
        { name: 'apps/old-sidecar', workloadIdentity: { sdk: { language: 'dotnet', version: '1.8.0' }, proxySidecar: true } },
        { name: 'apps/new', workloadIdentity: { sdk: { language: 'dotnet', version: '1.9.0' } } },
        { name: 'apps/host' },
      ]),
    ]);
    const live = new Map(['old', 'old-sidecar', 'new', 'host'].map((n) => [`apps/${n}`, deployment('apps', n, n === 'host' ? { hostNetwork: true } : {})] as const));
    const r = serviceBlockers(targetsOf(inv, live));
    expect(r.blockers.map((b) => [b.code, b.subject])).toEqual([
      ['wi-host-network', 'deployment apps/host'],
      ['wi-sdk-too-old', 'service apps/old'],
    ]);
    expect(r.notes[0]).toContain('no SDK version in the inventory for 1 service(s) (apps/host)');
  });
});

describe('wi-enable', () => {
  it('turns on what is off in one update, records the issuer, and rollback turns off only workload identity', async () => {
    const kube = new FakeKube();
    kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { namespace: 'kube-system', name: 'azure-wi-webhook-controller-manager' }, spec: { replicas: 2 }, status: { readyReplicas: 2 } } as KubeObject);
    const azure = new FakeAzure();
    const ctx = await contextFor('wi-enable', kube, azure, tempDir());
    const plan = await wiEnableStep.plan(ctx);
    expect(plan.actions.map((a) => [a.kind, a.details])).toEqual([['aks-workload-identity', { aksId: AKS_ID, cluster: 'prod-weu', oidcIssuer: true, workloadIdentity: true }]]);
    await applyPlan(wiEnableStep, ctx, plan);
    expect(azure.wiWrites).toEqual(['cluster oidc=true wi=true']);
    expect(ctx.journal.getData('issuerUrl')).toBe(azure.issuerUrl);
    expect((await wiEnableStep.check(ctx)).failures).toEqual([]);
    expect((await wiEnableStep.plan(ctx)).actions).toEqual([]);

    const undone = await rollbackStep(ctx);
    expect(undone.summary).toContain('workload identity turned off, OIDC issuer stays on (AKS cannot turn it off once enabled');
    expect(azure.wiWrites).toEqual(['cluster oidc=true wi=true', 'cluster oidc=true wi=false']);
    expect((await verifyRollback(ctx)).failures).toEqual([]);
  });

  it('with the issuer already on, turns on only workload identity and rollback says nothing about the issuer', async () => {
    const kube = new FakeKube();
    kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { namespace: 'kube-system', name: 'azure-wi-webhook-controller-manager' }, status: { readyReplicas: 1 } } as KubeObject);
    const azure = new FakeAzure();
    azure.cluster.oidcIssuer = { enabled: true, issuerUrl: azure.issuerUrl };
    const ctx = await contextFor('wi-enable', kube, azure, tempDir());
    const plan = await wiEnableStep.plan(ctx);
    expect(plan.actions[0].details).toMatchObject({ oidcIssuer: false, workloadIdentity: true });
    await applyPlan(wiEnableStep, ctx, plan);
    const undone = await rollbackStep(ctx);
    expect(undone.summary).toBe('managed cluster prod-weu: workload identity turned off');
    expect(azure.wiWrites).toEqual(['cluster oidc=true wi=true', 'cluster oidc=true wi=false']);
  });
});

describe('wi-federate', () => {
  it('plans one credential per identity and account, serialized per identity, and skips what an existing credential already trusts', async () => {
    const { kube, azure } = world();
    // reports-id already trusts reporting/reports under another name.
    await azure.putFederatedCredential(idOf('reports-id'), { name: 'by-hand', issuer: azure.issuerUrl, subject: 'system:serviceaccount:reporting:reports', audiences: ['api://AzureADTokenExchange'] });
    azure.wiWrites.length = 0;
    const ctx = await contextFor('wi-federate', kube, azure, tempDir(), { inventory: INV });
    const plan = await wiFederateStep.plan(ctx);
    expect(plan.actions.map((a) => [a.id, a.parallelGroup, a.serialKey])).toEqual([
      ['fic/payments/api-id/payments/api', 'federated-credentials', idOf('api-id').toLowerCase()],
      ['fic/payments/api-id/payments/ledger-sa', 'federated-credentials', idOf('api-id').toLowerCase()],
      ['fic/reporting/reports-id/reporting/nightly', 'federated-credentials', idOf('reports-id').toLowerCase()],
    ]);
    expect(plan.notes.join('\n')).toContain('already trusted: reporting/reports-id <- reporting/reports');
    await applyPlan(wiFederateStep, ctx, plan);
    // One chain per identity: api-id's two writes in plan order, reports-id's beside them.
    expect(azure.wiWrites.filter((w) => w.includes('api-id/'))).toEqual(['put api-id/podid-migrate-payments-api', 'put api-id/podid-migrate-payments-ledger-sa']);
    expect(azure.wiWrites.filter((w) => w.includes('reports-id/'))).toEqual(['put reports-id/podid-migrate-reporting-nightly']);
    expect((await wiFederateStep.check(ctx)).failures).toEqual([]);
    expect((await wiFederateStep.plan(ctx)).actions).toEqual([]);

    await rollbackStep(ctx);
    expect((await verifyRollback(ctx)).failures).toEqual([]);
    expect((await azure.listFederatedCredentials(idOf('api-id'))).map((c) => c.name)).toEqual([]);
    // The credential made by hand stays.
    expect((await azure.listFederatedCredentials(idOf('reports-id'))).map((c) => c.name)).toEqual(['by-hand']);
  });

  it('a resume after a crash between the write and its done record finds the credential and writes nothing again', async () => {
    const { kube, azure } = world();
    const ctx = await contextFor('wi-federate', kube, azure, tempDir(), { inventory: INV });
    const plan = await wiFederateStep.plan(ctx);
    const first = plan.actions[0];
    // The process dies after ARM took the PUT: only the intent is journaled.
    await ctx.journal
      .runAction(first, { existing: null }, async () => {
        await EXECUTORS['federated-credential'].do(ctx, { action: first, firstPreState: { existing: null }, history: [] });
        throw new Error('killed');
      })
      .catch(() => undefined);
    const writes = azure.wiWrites.length;
    const lines = await reconcileIntents(ctx, EXECUTORS);
    expect(lines).toEqual([`${first.target}: the write had taken effect; recorded done`]);
    const again = await wiFederateStep.plan(ctx);
    expect(again.actions.map((a) => a.id)).toEqual(plan.actions.slice(1).map((a) => a.id));
    expect(azure.wiWrites.length).toBe(writes);
  });
});

describe('wi-serviceaccounts', () => {
  it('creates an own account for a workload on default, annotates named ones, records them, and rollback undoes only that', async () => {
    const { kube, azure } = world();
    const ctx = await contextFor('wi-serviceaccounts', kube, azure, tempDir(), { inventory: INV });
    const plan = await wiServiceAccountsStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    expect(plan.actions.map((a) => [a.kind, a.target])).toEqual([
      ['create-object', 'serviceaccount payments/api'],
      ['annotate-object', 'serviceaccount payments/ledger-sa'],
      ['create-object', 'serviceaccount reporting/nightly'],
      ['annotate-object', 'serviceaccount reporting/reports'],
    ]);
    expect(plan.actions[2].summary).toContain('reporting/nightly (CronJob: point the system that creates its pods at this account)');
    await applyPlan(wiServiceAccountsStep, ctx, plan);
    const api = kube.find('ServiceAccount', 'payments', 'api')!;
    expect(api.metadata?.annotations).toEqual({ 'azure.workload.identity/client-id': 'client-api-id' });
    expect(api.metadata?.labels).toEqual({ 'podid-migrate.io/created-by': 'wi-serviceaccounts' });
    expect(kube.find('ServiceAccount', 'reporting', 'reports')!.metadata?.annotations).toEqual({ team: 'reporting', 'azure.workload.identity/client-id': 'client-reports-id' });
    expect(ctx.journal.getData('serviceAccounts')).toEqual({
      'payments/api': { namespace: 'payments', name: 'api', created: true },
      'payments/ledger': { namespace: 'payments', name: 'ledger-sa', created: false },
      'reporting/nightly': { namespace: 'reporting', name: 'nightly', created: true },
      'reporting/reports': { namespace: 'reporting', name: 'reports', created: false },
    });
    expect((await wiServiceAccountsStep.check(ctx)).failures).toEqual([]);

    // The operator re-points one annotation meanwhile: rollback leaves that one.
    kube.find('ServiceAccount', 'payments', 'ledger-sa')!.metadata!.annotations!['azure.workload.identity/client-id'] = 'someone-else';
    await rollbackStep(ctx);
    expect(kube.find('ServiceAccount', 'payments', 'api')).toBeUndefined();
    expect(kube.find('ServiceAccount', 'reporting', 'nightly')).toBeUndefined();
    expect(kube.find('ServiceAccount', 'reporting', 'reports')!.metadata?.annotations).toEqual({ team: 'reporting' });
    expect(kube.find('ServiceAccount', 'payments', 'ledger-sa')!.metadata?.annotations).toEqual({ 'azure.workload.identity/client-id': 'someone-else' });
    expect((await verifyRollback(ctx)).failures).toEqual([]);
  });
});
