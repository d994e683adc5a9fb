/**
 * The Azure gateway's workload identity methods against the sandbox's ARM endpoint over HTTPS
 * (the real `@azure/arm-containerservice` and `@azure/arm-msi` clients underneath): the managed
 * cluster update as a long-running operation, federated credentials with Entra's rules (409 on
 * concurrent writes to one identity and 429 retried, "already exists" as an outcome), and the
 * dry run, which sends no write.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAzureGateway, resolveAzureConnection } from '../../src/azure/index.ts';
import type { AzureGateway } from '../../src/azure/gateway.ts';
import { startSandbox, type SandboxHarness } from '../helpers/sandbox.ts';
import { WI_SCENARIO } from '../sandbox/workload-identity/helpers.ts';

let h: SandboxHarness;
const AUD = ['api://AzureADTokenExchange'];

function gateway(dryRun: 'none' | 'client' = 'none'): AzureGateway {
  const env = { PODID_MIGRATE_ARM_ENDPOINT: h.sb.armUrl, PODID_MIGRATE_ARM_TOKEN_FILE: h.files.armTokenFile, PODID_MIGRATE_CA_FILE: h.files.caFile };
  return createAzureGateway({ subscriptionId: h.sb.scenario.subscriptionId, connection: resolveAzureConnection(env), dryRun, pollIntervalMs: 50, retry: { baseDelayMs: 50, maxRetryAfterMs: 500 } });
}

const identityId = (name: string) => `/subscriptions/${h.sb.scenario.subscriptionId}/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;

beforeAll(async () => {
  h = await startSandbox({ scenario: WI_SCENARIO('workloadIdentity: { enableSeconds: 20, credentialWriteSeconds: 10 }\n'), timeScale: 40, churn: false });
}, 90_000);

afterAll(async () => {
  await h?.close();
});

describe('AzureGateway: workload identity', () => {
  it('turns the OIDC issuer and workload identity on as one long-running update and reads the issuer URL; a dry run sends nothing', async () => {
    const before = await gateway().getManagedCluster(h.sb.aksResourceId);
    expect(before.oidcIssuer).toEqual({ enabled: false });
    expect(before.workloadIdentityEnabled).toBe(false);

    const dry = gateway('client');
    const planned = await dry.updateWorkloadIdentitySettings(h.sb.aksResourceId, { oidcIssuerEnabled: true, workloadIdentityEnabled: true });
    expect(planned).toMatchObject({ oidcIssuer: { enabled: true }, workloadIdentityEnabled: true });
    expect(dry.dryRunLog().map((e) => [e.method, e.description])).toEqual([['PUT', 'update managed cluster wi: oidcIssuerProfile.enabled=true, securityProfile.workloadIdentity.enabled=true']]);
    expect((await gateway().getManagedCluster(h.sb.aksResourceId)).oidcIssuer?.enabled).toBe(false);

    const after = await gateway().updateWorkloadIdentitySettings(h.sb.aksResourceId, { oidcIssuerEnabled: true, workloadIdentityEnabled: true });
    expect(after.oidcIssuer).toEqual({ enabled: true, issuerUrl: h.sb.workloadIdentity!.state.issuerUrl });
    expect(after.workloadIdentityEnabled).toBe(true);
    expect(after.provisioningState).toBe('Succeeded');
    // Already so: nothing is sent.
    const puts = h.sb.metrics.count({ api: 'arm', verb: 'PUT' });
    await gateway().updateWorkloadIdentitySettings(h.sb.aksResourceId, { oidcIssuerEnabled: true });
    expect(h.sb.metrics.count({ api: 'arm', verb: 'PUT' })).toBe(puts);
  }, 60_000);

  it('writes credentials to one identity concurrently without failing (409 retried), and a duplicate issuer/subject is "exists"', async () => {
    const az = gateway();
    const issuer = (await az.getManagedCluster(h.sb.aksResourceId)).oidcIssuer!.issuerUrl!;
    const id = identityId('app-id');
    // Two writes to app-id at once: Entra answers the second with 409 until the first is done.
    const [a, b] = await Promise.all([
      az.putFederatedCredential(id, { name: 'one', issuer, subject: 'system:serviceaccount:apps:one', audiences: AUD }),
      az.putFederatedCredential(id, { name: 'two', issuer, subject: 'system:serviceaccount:apps:two', audiences: AUD }),
    ]);
    expect([a.outcome, b.outcome]).toEqual(['created', 'created']);
    expect(az.calls().retries).toBeGreaterThan(0);
    const again = await az.putFederatedCredential(id, { name: 'one', issuer, subject: 'system:serviceaccount:apps:one', audiences: AUD });
    expect(again.outcome).toBe('updated');
    const dup = await az.putFederatedCredential(id, { name: 'three', issuer, subject: 'system:serviceaccount:apps:one', audiences: AUD });
    expect(dup).toMatchObject({ outcome: 'exists', credential: { name: 'one' } });
    expect((await az.listFederatedCredentials(id)).map((c) => c.name).sort()).toEqual(['one', 'two']);
    expect(await az.deleteFederatedCredential(id, 'two')).toBe(true);
    expect(await az.deleteFederatedCredential(id, 'two')).toBe(false);
    expect(await az.getFederatedCredential(id, 'two')).toBeUndefined();
  }, 90_000);

  it('honours 429 with Retry-After on credential writes', async () => {
    const az = gateway();
    const issuer = (await az.getManagedCluster(h.sb.aksResourceId)).oidcIssuer!.issuerUrl!;
    const rule = h.sb.faults.add({ api: 'arm', method: 'PUT', path: '/federatedIdentityCredentials/', times: 2, action: { kind: 'status', status: 429, retryAfterSeconds: 1 } });
    const r = await az.putFederatedCredential(identityId('other-id'), { name: 'throttled', issuer, subject: 'system:serviceaccount:apps:throttled', audiences: AUD });
    expect(r.outcome).toBe('created');
    expect(h.sb.faults.list().find((x) => x.id === rule)!.fired).toBe(2);
  }, 60_000);
});
