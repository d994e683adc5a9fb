/**
 * The kubelet's token projection and the webhook's mutation, without a running sandbox:
 * the file holds one token until 80 % of its lifetime, then a fresh one; the token's claims;
 * the webhook's env precedence, skip list and expiration bounds.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/sandbox/clock.ts';
import { registerBuiltinTypes } from '../../../src/sandbox/kube-api/types.ts';
import { ObjectStore, type KObject } from '../../../src/sandbox/store.ts';
import { ServiceAccountIssuer } from '../../../src/sandbox/workload-identity/issuer.ts';
import { ProjectedTokenFiles } from '../../../src/sandbox/workload-identity/projected-tokens.ts';
import { WorkloadIdentityState } from '../../../src/sandbox/workload-identity/state.ts';
import { mutatePod } from '../../../src/sandbox/workload-identity/webhook.ts';
import { jwtClaims } from './helpers.ts';

const TENANT = '11111111-2222-4333-8444-555555555555';

function setup(saAnnotations: Record<string, string> = {}) {
  const clock = new ManualClock();
  const store = new ObjectStore(clock);
  registerBuiltinTypes(store);
  store.create(store.typeOrThrow('', 'namespaces'), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps' } });
  store.create(store.typeOrThrow('', 'serviceaccounts'), { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'app', namespace: 'apps', annotations: saAnnotations } });
  const state = new WorkloadIdentityState({ clock, tenantId: TENANT, clusterGuid: 'c0ffee00-0000-4000-8000-000000000000', config: { oidcIssuerEnabled: true, workloadIdentityEnabled: true, propagationSeconds: 60, enableSeconds: 1, credentialWriteSeconds: 1 } });
  state.issuerOrigin = 'https://127.0.0.1:4443';
  const issuer = new ServiceAccountIssuer({ clock, state });
  return { clock, store, state, issuer, files: new ProjectedTokenFiles({ store, clock, issuer }) };
}

function pod(extra: Partial<KObject> = {}): KObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace: 'apps', uid: 'uid-1', labels: { 'azure.workload.identity/use': 'true' }, ...(extra.metadata ?? {}) },
    spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'x' }, { name: 'skip-me', image: 'y' }], ...(extra.spec ?? {}) },
  };
}

describe('projected service account token files', () => {
  it('keeps one token until 80 % of its lifetime, then writes a fresh one with the same subject', async () => {
    const { clock, store, files } = setup({ 'azure.workload.identity/client-id': 'cid' });
    const p = pod();
    mutatePod({ store, tenantId: TENANT, authorityHost: 'https://login.microsoftonline.com/' }, p);
    const path = '/var/run/secrets/azure/tokens/azure-identity-token';
    const first = files.read(p, p.spec.containers[0], path)!;
    const c = jwtClaims(first);
    expect(c).toMatchObject({ iss: 'https://127.0.0.1:4443/' + TENANT + '/c0ffee00-0000-4000-8000-000000000000/', sub: 'system:serviceaccount:apps:app', aud: ['api://AzureADTokenExchange'] });
    expect(c.exp - c.iat).toBe(3600);
    expect(c['kubernetes.io'].pod).toEqual({ name: 'p', uid: 'uid-1' });
    await clock.advance(2879_000);
    expect(files.read(p, p.spec.containers[0], path)).toBe(first);
    await clock.advance(2_000);
    const second = files.read(p, p.spec.containers[0], path)!;
    expect(second).not.toBe(first);
    expect(jwtClaims(second).iat).toBe(c.iat + 2881);
    expect(files.read(p, p.spec.containers[0], '/var/run/secrets/azure/tokens/other')).toBeUndefined();
    expect(files.read(p, p.spec.containers[0], '/etc/passwd')).toBeUndefined();
  });
});

describe('webhook mutation', () => {
  it('keeps env the pod already sets, skips listed containers, takes the tenant annotation and refuses bad expirations', () => {
    const { store } = setup({ 'azure.workload.identity/client-id': 'cid', 'azure.workload.identity/tenant-id': 'other-tenant', 'azure.workload.identity/service-account-token-expiration': '86400' });
    const p = pod({ metadata: { name: 'p', annotations: { 'azure.workload.identity/skip-containers': 'skip-me' } } as never });
    p.spec.containers[0].env = [{ name: 'AZURE_AUTHORITY_HOST', value: 'https://login.microsoftonline.us/' }];
    mutatePod({ store, tenantId: TENANT, authorityHost: 'https://login.microsoftonline.com/' }, p);
    expect(p.spec.containers[0].env).toEqual([
      { name: 'AZURE_AUTHORITY_HOST', value: 'https://login.microsoftonline.us/' },
      { name: 'AZURE_CLIENT_ID', value: 'cid' },
      { name: 'AZURE_TENANT_ID', value: 'other-tenant' },
      { name: 'AZURE_FEDERATED_TOKEN_FILE', value: '/var/run/secrets/azure/tokens/azure-identity-token' },
    ]);
    expect(p.spec.containers[1].env).toBeUndefined();
    expect(p.spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds).toBe(86400);

    const bad = pod({ metadata: { name: 'q', annotations: { 'azure.workload.identity/service-account-token-expiration': '600' } } as never });
    expect(() => mutatePod({ store, tenantId: TENANT, authorityHost: 'x' }, bad)).toThrow('admission webhook "mutation.azure-workload-identity.io" denied the request: token expiration 600 not valid. Expected value to be between 3600 and 86400');
    const noSa = pod({ spec: { serviceAccountName: 'ghost', containers: [{ name: 'a', image: 'x' }] } });
    expect(() => mutatePod({ store, tenantId: TENANT, authorityHost: 'x' }, noSa)).toThrow('serviceaccounts "ghost" not found');
  });
});
