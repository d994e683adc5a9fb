/**
 * The workload identity runbook's first four steps against the sandbox (default scenario,
 * real gateways over HTTPS): apply wi-preflight .. wi-serviceaccounts with checks, then
 * `rollback --all` puts the cluster, the managed cluster's settings and every identity's
 * federated credentials back as they were (the OIDC issuer excepted: AKS cannot turn it off).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { Runner } from '../../src/engine/runner.ts';
import { Journal } from '../../src/engine/journal.ts';
import type { AzureGateway } from '../../src/azure/gateway.ts';
import type { KubeGateway, KubeObject } from '../../src/kube/gateway.ts';
import { KINDS } from '../../src/kube/kinds.ts';
import { EXECUTORS, WORKLOAD_IDENTITY_STEPS } from '../../src/steps/registry.ts';
import type { InventoryDocument } from '../../src/steps/lib/inventory-model.ts';
import { runCli, startEnv, type Env } from './steps-1-4-harness.ts';

let env: Env;
let journalPath: string;

function wiRunner(): Runner<KubeGateway, AzureGateway> {
  return new Runner<KubeGateway, AzureGateway>({
    runbook: 'workload-identity',
    steps: WORKLOAD_IDENTITY_STEPS.slice(0, 4),
    executors: EXECUTORS,
    kube: env.kube,
    azure: env.azure,
    cluster: env.cluster,
    journalPath,
    inventoryPath: env.inventoryPath,
    options: { aksId: env.sandbox.aksResourceId },
    stepTimeoutMs: 90_000,
  });
}

/** Service accounts (name -> annotations and labels) of the namespaces the scenario runs services in. */
async function accounts(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const ns of ['payments', 'batch', 'reporting', 'platform']) {
    for (const sa of await env.kube.list(KINDS.ServiceAccount, { namespace: ns })) out[`${ns}/${sa.metadata!.name}`] = { annotations: sa.metadata?.annotations ?? {}, labels: sa.metadata?.labels ?? {} };
  }
  return out;
}

/** Every identity's federated credentials, by identity name. */
async function credentials(): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  const inv = parseYaml(readFileSync(env.inventoryPath, 'utf8')) as InventoryDocument;
  for (const i of inv.identities) if (i.resourceId) out[i.name] = (await env.azure.listFederatedCredentials(i.resourceId)).map((c) => `${c.name} ${c.subject}`).sort();
  return out;
}

beforeAll(async () => {
  env = await startEnv({ timeScale: 100 });
  journalPath = join(env.dir, 'journal.workload-identity.json');
}, 90_000);

afterAll(async () => {
  await env?.stop();
});

describe('workload identity runbook, steps 1-4', () => {
  it('applies wi-preflight .. wi-serviceaccounts with their checks, then rollback --all restores the start', async () => {
    const before = await accounts();
    const cluster0 = await env.azure.getManagedCluster(env.sandbox.aksResourceId);
    expect(cluster0.oidcIssuer?.enabled).toBe(false);
    expect(existsSync(env.inventoryPath)).toBe(false);

    // A dry run of the whole runbook through the CLI: every step planned and sent as a dry run, nothing written.
    const dry = await runCli(env, ['--runbook', 'workload-identity', 'apply', '--dry-run=client', '--to', 'wi-serviceaccounts']);
    expect(dry.code, dry.all).toBe(0);
    expect(dry.stdout).toMatch(/Dry run \(client\): nothing was changed/);
    expect(dry.stdout).toContain('PUT');
    expect(dry.stdout).toContain('<OIDC issuer URL of prod-weu, set by wi-enable>');
    expect(existsSync(env.inventoryPath)).toBe(false);
    expect((await env.azure.getManagedCluster(env.sandbox.aksResourceId)).oidcIssuer?.enabled).toBe(false);
    expect(await accounts()).toEqual(before);

    // plan: wi-preflight writes the inventory, wi-enable turns both on, wi-federate needs the issuer.
    const plan = await wiRunner().plan();
    expect(plan.runbook).toBe('workload-identity');
    expect(plan.totals.blockers).toBe(0);
    expect(plan.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['wi-preflight', 'planned'],
      ['wi-enable', 'tentative'],
      ['wi-federate', 'unavailable'],
      ['wi-serviceaccounts', 'tentative'],
    ]);
    expect(existsSync(env.inventoryPath)).toBe(false);

    const result = await wiRunner().apply();
    expect(result.steps.map((s) => [s.stepId, s.outcome])).toEqual([
      ['wi-preflight', 'checked'],
      ['wi-enable', 'checked'],
      ['wi-federate', 'checked'],
      ['wi-serviceaccounts', 'checked'],
    ]);
    const doc = (await Journal.read(journalPath))!;
    expect(doc.runbook).toBe('workload-identity');
    expect(Object.keys(doc.steps)).toEqual(['wi-preflight', 'wi-enable', 'wi-federate', 'wi-serviceaccounts', 'wi-workloads', 'wi-test', 'wi-remove-pod-identity']);

    const cluster1 = await env.azure.getManagedCluster(env.sandbox.aksResourceId);
    expect(cluster1.oidcIssuer).toMatchObject({ enabled: true, issuerUrl: expect.stringMatching(/^https:\/\//) });
    expect(cluster1.workloadIdentityEnabled).toBe(true);
    expect(doc.steps['wi-enable'].data.issuerUrl).toBe(cluster1.oidcIssuer!.issuerUrl);

    // api and ledger (api-id) ran as default: each got its own account, annotated with api-id's client id.
    const inv = parseYaml(readFileSync(env.inventoryPath, 'utf8')) as InventoryDocument;
    const apiId = inv.identities.find((i) => i.name === 'api-id')!;
    const sa = await env.kube.get<KubeObject>(KINDS.ServiceAccount, 'payments', 'api');
    expect(sa?.metadata?.annotations?.['azure.workload.identity/client-id']).toBe(apiId.clientId);
    expect(sa?.metadata?.annotations?.['azure.workload.identity/tenant-id']).toBe(env.sandbox.scenario.tenantId);
    expect(sa?.metadata?.labels?.['podid-migrate.io/created-by']).toBe('wi-serviceaccounts');
    expect(doc.steps['wi-serviceaccounts'].data.serviceAccounts).toMatchObject({ 'payments/api': { namespace: 'payments', name: 'api', created: true } });

    // One credential per (identity, namespace/service account): api-id trusts payments/api and payments/ledger.
    const fics = await credentials();
    expect(fics['api-id']).toEqual(['podid-migrate-payments-api system:serviceaccount:payments:api', 'podid-migrate-payments-ledger system:serviceaccount:payments:ledger']);
    expect(fics['shared-storage-id']).toEqual(['podid-migrate-batch-archiver system:serviceaccount:batch:archiver', 'podid-migrate-platform-backup system:serviceaccount:platform:backup']);
    const issuer = cluster1.oidcIssuer!.issuerUrl!;
    for (const c of await env.azure.listFederatedCredentials(apiId.resourceId!)) expect(c).toMatchObject({ issuer, audiences: ['api://AzureADTokenExchange'] });

    // A second apply plans nothing: everything is in effect.
    const again = await wiRunner().plan();
    expect(again.steps.every((s) => s.status === 'done')).toBe(true);

    const rolled = await wiRunner().rollback({ all: true });
    expect(rolled.steps.map((s) => [s.stepId, s.outcome])).toEqual([
      ['wi-serviceaccounts', 'rolled-back'],
      ['wi-federate', 'rolled-back'],
      ['wi-enable', 'rolled-back'],
      ['wi-preflight', 'rolled-back'],
    ]);
    expect(await accounts()).toEqual(before);
    expect(Object.values(await credentials()).flat()).toEqual([]);
    const cluster2 = await env.azure.getManagedCluster(env.sandbox.aksResourceId);
    expect(cluster2.workloadIdentityEnabled).toBe(false);
    // AKS cannot turn the issuer off once on: it stays, trusted by no credential.
    expect(cluster2.oidcIssuer?.enabled).toBe(true);
  }, 240_000);
});
