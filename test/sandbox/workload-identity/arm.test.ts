/**
 * Workload identity on the ARM side, through the real `@azure/arm-containerservice` and
 * `@azure/arm-msi` clients over HTTPS: enabling the OIDC issuer and workload identity as a
 * long-running managed cluster update, and federated identity credentials with Azure's rules
 * (20 per identity, issuer+subject unique, 409 on overlapping writes, 429 from fault rules).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RestError } from '@azure/core-rest-pipeline';
import { startSandbox, type SandboxHarness } from '../../helpers/sandbox.ts';
import { httpsGet, WI_SCENARIO } from './helpers.ts';

const AUD = ['api://AzureADTokenExchange'];

let h: SandboxHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function errorOf(p: Promise<unknown>): Promise<RestError> {
  try {
    await p;
  } catch (e) {
    return e as RestError;
  }
  throw new Error('expected the call to fail');
}

describe('managed cluster: OIDC issuer and workload identity', () => {
  it('enables both as a long-running update; issuerURL appears when it completes and serves discovery and JWKS', async () => {
    h = await startSandbox({ scenario: WI_SCENARIO('workloadIdentity: { enableSeconds: 60 }\n'), timeScale: 30, churn: false });
    const { aks } = h.arm;
    const before = await aks.managedClusters.get('rg', 'wi');
    expect(before.oidcIssuerProfile?.enabled).toBe(false);
    expect(before.oidcIssuerProfile?.issuerURL).toBeUndefined();
    expect(before.securityProfile?.workloadIdentity).toBeUndefined();

    // What an operator's tool does: read, set the two switches, PUT the whole cluster back.
    const poller = aks.managedClusters.createOrUpdate('rg', 'wi', { ...before, oidcIssuerProfile: { enabled: true }, securityProfile: { ...before.securityProfile, workloadIdentity: { enabled: true } } }, { updateIntervalInMs: 50 });
    await poller.submitted();
    const during = await aks.managedClusters.get('rg', 'wi');
    expect(during.provisioningState).toBe('Updating');
    expect(during.oidcIssuerProfile?.issuerURL).toBeUndefined();
    // A second update while one runs is refused, as AKS does.
    const busy = await errorOf(aks.managedClusters.updateTags('rg', 'wi', { tags: { a: 'b' } }, { updateIntervalInMs: 50 }).pollUntilDone());
    expect(busy.statusCode).toBe(409);
    expect(busy.code).toBe('OperationNotAllowed');

    const done = await poller.pollUntilDone();
    expect(done.provisioningState).toBe('Succeeded');
    expect(done.securityProfile?.workloadIdentity?.enabled).toBe(true);
    const issuer = done.oidcIssuerProfile?.issuerURL;
    expect(issuer).toMatch(new RegExp(`^https://127\\.0\\.0\\.1:\\d+/${h.sb.scenario.tenantId}/[0-9a-f-]{36}/$`));
    expect(h.sb.metrics.count({ api: 'arm', verb: 'PUT', resource: 'ManagedClusters_CreateOrUpdate' })).toBe(1);

    const discovery = JSON.parse((await httpsGet(`${issuer}.well-known/openid-configuration`, h.sb.caPem)).body) as Record<string, string>;
    expect(discovery.issuer).toBe(issuer);
    expect(discovery.jwks_uri).toBe(`${issuer}openid/v1/jwks`);
    const jwks = JSON.parse((await httpsGet(discovery.jwks_uri, h.sb.caPem)).body) as { keys: { kty: string; alg: string }[] };
    expect(jwks.keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });

    // The issuer cannot be switched off again; tags go through the PATCH long-running operation.
    const off = await errorOf(aks.managedClusters.createOrUpdate('rg', 'wi', { ...done, oidcIssuerProfile: { enabled: false } }, { updateIntervalInMs: 50 }).pollUntilDone());
    expect(off.statusCode).toBe(400);
    const tagged = await aks.managedClusters.updateTags('rg', 'wi', { tags: { team: 'payments' } }, { updateIntervalInMs: 50 }).pollUntilDone();
    expect(tagged.tags).toEqual({ team: 'payments' });
    // The add-on's webhook came with workload identity and goes when it is turned off (the issuer stays).
    expect(await h.kubectl(['get', 'deployment', '-n', 'kube-system', 'azure-wi-webhook-controller-manager', '-o', 'name'])).toContain('azure-wi-webhook-controller-manager');
    const off2 = await aks.managedClusters.createOrUpdate('rg', 'wi', { ...tagged, securityProfile: { workloadIdentity: { enabled: false } } }, { updateIntervalInMs: 50 }).pollUntilDone();
    expect(off2.securityProfile?.workloadIdentity?.enabled).toBe(false);
    expect(off2.oidcIssuerProfile?.enabled).toBe(true);
    expect(await h.kubectl(['get', 'deployment', '-n', 'kube-system', '-o', 'name'])).not.toContain('azure-wi-webhook-controller-manager');
  });

  it('refuses workload identity without the issuer; the deprecated beginCreateOrUpdate poller works too', async () => {
    h = await startSandbox({ scenario: WI_SCENARIO('workloadIdentity: { enableSeconds: 20 }\n'), timeScale: 30, churn: false });
    const mc = await h.arm.aks.managedClusters.get('rg', 'wi');
    const e = await errorOf(h.arm.aks.managedClusters.createOrUpdate('rg', 'wi', { ...mc, securityProfile: { workloadIdentity: { enabled: true } } }, { updateIntervalInMs: 50 }).pollUntilDone());
    expect(e.statusCode).toBe(400);
    expect(e.message).toMatch(/^Workload identity requires the OIDC issuer/);
    const poller = await h.arm.aks.managedClusters.beginCreateOrUpdate('rg', 'wi', { ...mc, oidcIssuerProfile: { enabled: true } }, { updateIntervalInMs: 50 });
    const enabled = await poller.pollUntilDone();
    expect(enabled.oidcIssuerProfile?.issuerURL).toMatch(/^https:\/\/127\.0\.0\.1:/);
    expect(enabled.securityProfile?.workloadIdentity).toBeUndefined();
  });
});

describe('federated identity credentials', () => {
  it('creates, reads, lists and deletes with the real client; 20 per identity; issuer+subject unique', async () => {
    h = await startSandbox({ scenario: WI_SCENARIO('workloadIdentity: { oidcIssuerEnabled: true, enabled: true, credentialWriteSeconds: 1 }\n'), timeScale: 50, churn: false });
    const { msi, aks } = h.arm;
    const issuer = (await aks.managedClusters.get('rg', 'wi')).oidcIssuerProfile!.issuerURL!;
    const created = await msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', 'apps-app', { issuer, subject: 'system:serviceaccount:apps:app', audiences: AUD });
    expect(created).toMatchObject({ name: 'apps-app', issuer, subject: 'system:serviceaccount:apps:app', audiences: AUD, type: 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials' });
    expect(created.id).toMatch(/\/userAssignedIdentities\/app-id\/federatedIdentityCredentials\/apps-app$/);
    expect((await msi.federatedIdentityCredentials.get('ids', 'app-id', 'apps-app')).subject).toBe('system:serviceaccount:apps:app');

    const dup = await errorOf(msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', 'apps-app-2', { issuer, subject: 'system:serviceaccount:apps:app', audiences: AUD }));
    expect(dup.statusCode).toBe(400);
    expect(dup.message).toMatch(/combination already exists/);
    // Re-putting the same name is an update, not a duplicate.
    await msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', 'apps-app', { issuer, subject: 'system:serviceaccount:apps:app', audiences: AUD });

    for (let i = 1; i < 20; i++) await msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', `sa-${i}`, { issuer, subject: `system:serviceaccount:apps:sa-${i}`, audiences: AUD });
    const listed: string[] = [];
    for await (const c of msi.federatedIdentityCredentials.list('ids', 'app-id')) listed.push(c.name!);
    expect(listed).toHaveLength(20);
    const over = await errorOf(msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', 'sa-21', { issuer, subject: 'system:serviceaccount:apps:sa-21', audiences: AUD }));
    expect(over.statusCode).toBe(400);
    expect(over.message).toMatch(/limit of 20/);
    // Another identity has its own 20.
    await msi.federatedIdentityCredentials.createOrUpdate('ids', 'other-id', 'sa-21', { issuer, subject: 'system:serviceaccount:apps:sa-21', audiences: AUD });

    await msi.federatedIdentityCredentials.delete('ids', 'app-id', 'sa-1');
    await msi.federatedIdentityCredentials.delete('ids', 'app-id', 'sa-1'); // absent: 204, the SDK treats it as done
    const gone = await errorOf(msi.federatedIdentityCredentials.get('ids', 'app-id', 'sa-1'));
    expect(gone.statusCode).toBe(404);
    expect(h.sb.metrics.count({ api: 'arm', resource: 'FederatedIdentityCredentials_CreateOrUpdate' })).toBeGreaterThanOrEqual(23);

    // The 2023-01-31 api-version (what the CLI and older SDKs send) reads the same credentials.
    const { ManagedServiceIdentityClient } = await import('@azure/arm-msi');
    const { armPipelineOptions, staticTokenCredential } = await import('../../helpers/arm-clients.ts');
    const old = new ManagedServiceIdentityClient(staticTokenCredential(h.sb.armToken), h.sb.scenario.subscriptionId, { ...armPipelineOptions({ endpoint: h.sb.armUrl, token: h.sb.armToken, caPem: h.sb.caPem, subscriptionId: h.sb.scenario.subscriptionId }), apiVersion: '2023-01-31', credentialScopes: ['https://management.azure.com/.default'] });
    expect((await old.federatedIdentityCredentials.get('ids', 'app-id', 'apps-app')).issuer).toBe(issuer);
  });

  it('answers 409 to a write that overlaps another write to the same identity, and 429 from a throttling rule', async () => {
    h = await startSandbox({ scenario: WI_SCENARIO('workloadIdentity: { oidcIssuerEnabled: true, enabled: true, credentialWriteSeconds: 30 }\n'), timeScale: 30, churn: false });
    const { msi } = h.arm;
    const issuer = h.sb.workloadIdentity!.state.issuerUrl!;
    const results = await Promise.allSettled([
      msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', 'one', { issuer, subject: 'system:serviceaccount:apps:one', audiences: AUD }),
      msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', 'two', { issuer, subject: 'system:serviceaccount:apps:two', audiences: AUD }),
      // Other identities are not serialized with this one.
      msi.federatedIdentityCredentials.createOrUpdate('ids', 'other-id', 'three', { issuer, subject: 'system:serviceaccount:apps:three', audiences: AUD }),
    ]);
    const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as RestError);
    expect(refused).toHaveLength(1);
    expect(refused[0].statusCode).toBe(409);
    expect(refused[0].code).toBe('ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity');
    expect(results[2].status).toBe('fulfilled');

    h.sb.faults.add({ api: 'arm', method: 'PUT', path: '/federatedIdentityCredentials/', action: { kind: 'status', status: 429, retryAfterSeconds: 1 }, times: 1 });
    // The SDK honours Retry-After and retries once; the second attempt goes through.
    const ok = await msi.federatedIdentityCredentials.createOrUpdate('ids', 'other-id', 'four', { issuer, subject: 'system:serviceaccount:apps:four', audiences: AUD });
    expect(ok.name).toBe('four');
    expect(h.sb.metrics.count({ api: 'arm', resource: 'FederatedIdentityCredentials_CreateOrUpdate', status: 429 })).toBe(1);
  });
});
