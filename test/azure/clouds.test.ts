/**
 * `--cloud`: each cloud's ARM endpoint, sign-in authority and token audience, and that the
 * audience is what the real ARM clients ask the credential for (against the sandbox's ARM over
 * HTTPS). A credential that cannot sign in becomes one AzureLoginError, never retried.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { resolveAzureConnection, SignInExplainingCredential, signInError } from '../../src/azure/client.ts';
import { AZURE_CLOUDS, CLOUD_NAMES } from '../../src/azure/clouds.ts';
import { AzureLoginError } from '../../src/azure/errors.ts';
import { createAzureGateway } from '../../src/azure/gateway.ts';
import { startSandbox, type SandboxHarness } from '../helpers/sandbox.ts';

let h: SandboxHarness;
beforeAll(async () => {
  h = await startSandbox({ churn: false });
}, 90_000);
afterAll(async () => h?.close());

/** Hands out the sandbox's token and records the scopes it was asked for. */
function recordingCredential(token: () => string): TokenCredential & { scopes: string[]; calls: number } {
  const c = {
    scopes: [] as string[],
    calls: 0,
    async getToken(scopes: string | string[]): Promise<AccessToken> {
      c.calls += 1;
      c.scopes.push(...(Array.isArray(scopes) ? scopes : [scopes]));
      return { token: token(), expiresOnTimestamp: Date.now() + 600_000 };
    },
  };
  return c;
}

describe('clouds', () => {
  it('each cloud resolves to its own ARM endpoint and audience; PODID_MIGRATE_CLOUD selects one; an unknown one names the variable', () => {
    expect(CLOUD_NAMES).toEqual(['AzureCloud', 'AzureUSGovernment', 'AzureChinaCloud']);
    const pub = resolveAzureConnection({});
    expect(pub).toMatchObject({ endpoint: 'https://management.azure.com', audience: 'https://management.azure.com', cloud: 'AzureCloud', sandbox: false });
    const gov = resolveAzureConnection({}, 'AzureUSGovernment');
    expect(gov).toMatchObject({ endpoint: 'https://management.usgovcloudapi.net', audience: 'https://management.usgovcloudapi.net', cloud: 'AzureUSGovernment' });
    expect(gov.credential).toBeInstanceOf(SignInExplainingCredential);
    expect(resolveAzureConnection({ PODID_MIGRATE_CLOUD: 'AzureChinaCloud' })).toMatchObject({ endpoint: 'https://management.chinacloudapi.cn', cloud: 'AzureChinaCloud' });
    expect(AZURE_CLOUDS.AzureChinaCloud.authorityHost).toBe('https://login.chinacloudapi.cn');
    expect(AZURE_CLOUDS.AzureUSGovernment.authorityHost).toBe('https://login.microsoftonline.us');
    expect(() => resolveAzureConnection({ PODID_MIGRATE_CLOUD: 'AzureGermanCloud' })).toThrow(/PODID_MIGRATE_CLOUD="AzureGermanCloud" is not an Azure cloud/);
  });

  it("the ARM clients request tokens for the cloud's audience", async () => {
    const credential = recordingCredential(() => h.sb.armToken);
    const azure = createAzureGateway({
      subscriptionId: h.sb.scenario.subscriptionId,
      connection: { endpoint: h.sb.armUrl, credential, audience: AZURE_CLOUDS.AzureUSGovernment.audience, caPem: h.sb.caPem, sandbox: true },
    });
    const cluster = await azure.getManagedCluster(h.sb.aksResourceId);
    expect(cluster.name).toBe(h.sb.scenario.cluster.name);
    expect(new Set(credential.scopes)).toEqual(new Set(['https://management.usgovcloudapi.net/.default']));
  });

  it('a credential that cannot sign in fails the call once with AzureLoginError (no retries, no raw SDK error)', async () => {
    let calls = 0;
    const unavailable: TokenCredential = {
      async getToken() {
        calls += 1;
        const e = new Error('ChainedTokenCredential authentication failed.\nCredentialUnavailableError: EnvironmentCredential is unavailable.\nCredentialUnavailableError: Azure CLI could not be found.');
        e.name = 'AggregateAuthenticationError';
        throw e;
      },
    };
    const azure = createAzureGateway({
      subscriptionId: h.sb.scenario.subscriptionId,
      connection: { endpoint: h.sb.armUrl, credential: new SignInExplainingCredential(unavailable, 'AzureCloud'), caPem: h.sb.caPem, sandbox: false },
    });
    const error = await azure.getManagedCluster(h.sb.aksResourceId).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AzureLoginError);
    expect((error as AzureLoginError).message).toBe(
      'not signed in to Azure (AzureCloud): no credential was available. Tried, in order: environment variables (AZURE_TENANT_ID, AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH); the Azure CLI (az login).',
    );
    expect(calls).toBe(1);
  });

  it('a sign-in that was tried and refused says so, with the authority of the cloud', () => {
    const refused = Object.assign(new Error('AADSTS7000215: Invalid client secret provided.\nTrace ID: 123'), { name: 'AuthenticationError' });
    const e = signInError(refused, 'AzureChinaCloud');
    expect(e.message).toBe('Azure sign-in failed (AzureChinaCloud, https://login.chinacloudapi.cn): AADSTS7000215: Invalid client secret provided.');
    expect(e.hint).toContain('az cloud set --name AzureChinaCloud');
    expect(e.hint).toContain('--subscription');
  });
});
