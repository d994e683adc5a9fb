import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import { chmodSync } from 'node:fs';
import { startScriptedArm, identityId, SUB, NODE_RG } from './scripted-arm.ts';
import type { ScriptedArm } from './scripted-arm.ts';
import { createAzureGateway, identityDelta, chunk, typeWithoutUserAssigned, actionMatches } from '../../src/azure/gateway.ts';
import type { AzureGatewayOptions } from '../../src/azure/gateway.ts';
import { resolveAzureConnection, isRetryableArmResponse, describeArmRequest } from '../../src/azure/client.ts';
import { AzureApiError } from '../../src/azure/errors.ts';
import { DeadlineExceededError } from '../../src/kube/retry.ts';
import { formatDryRunEntry } from '../../src/kube/dry-run.ts';

let arm: ScriptedArm;
beforeAll(async () => {
  arm = await startScriptedArm();
});
afterAll(async () => {
  await arm.close();
});

const KUBELET = `/subscriptions/${SUB}/resourcegroups/${NODE_RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aks-agentpool`;
const ADDON = `/subscriptions/${SUB}/resourcegroups/${NODE_RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/omsagent-aks`;

beforeEach(() => {
  arm.seen.length = 0;
  arm.faults.length = 0;
  arm.forbidden.clear();
  arm.vmss.clear();
  for (const [name, type] of [
    ['aks-system-1-vmss', 'SystemAssigned, UserAssigned'],
    ['aks-pay-2-vmss', 'UserAssigned'],
  ] as const) {
    const uai = new Map([KUBELET, ADDON].map((id) => [id.toLowerCase(), { key: id, clientId: 'c-' + id.slice(-6), principalId: 'p-' + id.slice(-6) }]));
    arm.vmss.set(name, { type, uai });
  }
});

function gateway(extra: Partial<AzureGatewayOptions> = {}) {
  return createAzureGateway({
    subscriptionId: SUB,
    connection: resolveAzureConnection(arm.env),
    pollIntervalMs: 10,
    retry: { baseDelayMs: 10, maxRetryAfterMs: 200 },
    ...extra,
  });
}

describe('AzureGateway against an HTTPS ARM endpoint with the real SDK clients', () => {
  it('trusts the sandbox CA per client and authenticates with the token file', async () => {
    // Without the CA the same endpoint is refused: the trust is the client's, not the process's.
    const { caPem: _ca, ...untrusted } = resolveAzureConnection(arm.env);
    const refused = await gateway({ connection: untrusted, retry: { maxAttempts: 1 } }).getScaleSet(NODE_RG, 'aks-system-1-vmss').catch((e) => e);
    expect(String(refused?.message ?? refused) + String(refused?.cause ?? '')).toMatch(/certificate|self.signed|unable to verify/i);
    const az = gateway();
    const s = await az.getScaleSet(NODE_RG, 'aks-system-1-vmss');
    expect(s?.identityType).toBe('SystemAssigned, UserAssigned');
    expect(Object.keys(s!.userAssignedIdentities)).toEqual([KUBELET, ADDON]);
    expect(arm.seen.every((r) => r.bearer)).toBe(true);
    expect(await az.getScaleSet(NODE_RG, 'missing-vmss')).toBeUndefined();
  });

  it('adds only the delta, keeps existing identities and the type, in PATCHes of at most 150', async () => {
    const az = gateway();
    const wanted = Array.from({ length: 320 }, (_, i) => identityId(`app-${i}`));
    wanted.push(KUBELET.toUpperCase()); // already there, other casing
    const r = await az.assignIdentities(NODE_RG, 'aks-system-1-vmss', wanted);
    expect(r.added).toHaveLength(320);
    expect(r.alreadyPresent).toEqual([KUBELET.toUpperCase()]);
    expect(r.patches).toBe(3);
    const patches = arm.seen.filter((s) => s.method === 'PATCH');
    expect(patches.map((p) => Object.keys(p.body.identity.userAssignedIdentities).length)).toEqual([150, 150, 20]);
    for (const p of patches) {
      expect(p.body.identity.type).toBe('SystemAssigned, UserAssigned');
      expect(Object.values(p.body.identity.userAssignedIdentities).every((v) => JSON.stringify(v) === '{}')).toBe(true);
      expect(Object.keys(p.body.identity.userAssignedIdentities).some((k) => k.toLowerCase() === KUBELET.toLowerCase())).toBe(false);
    }
    // Each PATCH's long-running operation was polled to completion through Azure-AsyncOperation.
    expect(arm.seen.filter((s) => s.path.includes('/locations/eastus/operations/')).length).toBeGreaterThanOrEqual(3);
    const after = await az.getScaleSet(NODE_RG, 'aks-system-1-vmss');
    expect(Object.keys(after!.userAssignedIdentities)).toHaveLength(322);
    expect(after!.userAssignedIdentities[KUBELET]).toBeDefined();
    expect(after!.userAssignedIdentities[ADDON]).toBeDefined();
    // Idempotent: a second run finds nothing to add and writes nothing.
    arm.seen.length = 0;
    const again = await az.assignIdentities(NODE_RG, 'aks-system-1-vmss', wanted);
    expect(again).toMatchObject({ added: [], patches: 0 });
    expect(arm.seen.filter((s) => s.method !== 'GET')).toHaveLength(0);
    expect(az.calls().byKey['PATCH Microsoft.Compute/virtualMachineScaleSets']).toBe(3);
  });

  it('removes only the given identities, and drops the user-assigned type when none remain', async () => {
    const az = gateway();
    await az.assignIdentities(NODE_RG, 'aks-pay-2-vmss', [identityId('a'), identityId('b')]);
    arm.seen.length = 0;
    const r = await az.unassignIdentities(NODE_RG, 'aks-pay-2-vmss', [identityId('A'), identityId('never-there')]);
    expect(r).toMatchObject({ removed: [identityId('A')], notPresent: [identityId('never-there')], identityType: 'UserAssigned', patches: 1 });
    const body = arm.seen.find((s) => s.method === 'PATCH')!.body;
    expect(body.identity.userAssignedIdentities).toEqual({ [identityId('a')]: null });
    const left = Object.keys((await az.getScaleSet(NODE_RG, 'aks-pay-2-vmss'))!.userAssignedIdentities);
    expect(left).toEqual([KUBELET, ADDON, identityId('b')]);
    const all = await az.unassignIdentities(NODE_RG, 'aks-pay-2-vmss', left);
    expect(all.identityType).toBe('None');
    expect(arm.seen.filter((s) => s.method === 'PATCH').at(-1)!.body).toEqual({ identity: { type: 'None' } });
  });

  it('retries a 429 with Retry-After: 1200 after the capped wait, and a 429 without Retry-After', async () => {
    const az = gateway();
    arm.faults.push({ method: 'GET', path: /aks-system-1-vmss$/, status: 429, headers: { 'retry-after': '1200' } });
    arm.faults.push({ method: 'GET', path: /aks-system-1-vmss$/, status: 429 });
    const t0 = Date.now();
    const s = await az.getScaleSet(NODE_RG, 'aks-system-1-vmss');
    const elapsed = Date.now() - t0;
    expect(s?.name).toBe('aks-system-1-vmss');
    expect(elapsed).toBeGreaterThanOrEqual(190); // the capped Retry-After was honoured
    expect(elapsed).toBeLessThan(3000); // and not 1200 s (the SDK's own retry is off)
    expect(arm.seen.filter((r) => r.method === 'GET')).toHaveLength(3);
    expect(az.calls().retries).toBe(2);
  });

  it('fails fast with a typed error on a non-retryable 4xx', async () => {
    const az = gateway();
    arm.faults.push({ method: 'GET', path: /aks-system-1-vmss$/, status: 400, body: { error: { code: 'InvalidParameter', message: 'bad' } } });
    const err = await az.getScaleSet(NODE_RG, 'aks-system-1-vmss').catch((e) => e);
    expect(err).toBeInstanceOf(AzureApiError);
    expect(err).toMatchObject({ status: 400, code: 'InvalidParameter', serverMessage: 'bad' });
    expect(arm.seen).toHaveLength(1);
  });

  it('surfaces LinkedAuthorizationFailed as a typed error naming the identity, and canAssign sees it first', async () => {
    const az = gateway();
    const denied = identityId('payments');
    arm.forbidden.add(denied.toLowerCase());
    expect(await az.canAssign(denied)).toMatchObject({ allowed: false });
    expect(await az.canAssign(identityId('orders'))).toMatchObject({ allowed: true });
    const err = await az.assignIdentities(NODE_RG, 'aks-pay-2-vmss', [identityId('orders'), denied]).catch((e) => e);
    expect(err).toBeInstanceOf(AzureApiError);
    expect(err.status).toBe(403);
    expect(err.code).toBe('LinkedAuthorizationFailed');
    expect(err.identityIds).toEqual([denied]);
    expect(err.message).toContain(`missing Microsoft.ManagedIdentity/userAssignedIdentities/assign/action on ${denied}`);
    expect(err.message).not.toContain(arm.token);
    expect(JSON.stringify(err)).not.toContain(arm.token);
  });

  it('gives up at once when a capped wait would pass the deadline', async () => {
    const az = gateway({ retry: { maxRetryAfterMs: 30_000 } }).scoped({ deadline: Date.now() + 300 });
    arm.faults.push({ method: 'GET', path: /aks-system-1-vmss$/, status: 429, headers: { 'retry-after': '1200' } });
    const t0 = Date.now();
    const err = await az.getScaleSet(NODE_RG, 'aks-system-1-vmss').catch((e) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect(err.message).toMatch(/next retry would wait 30 s/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('aborts in the middle of a retry wait when the signal fires', async () => {
    const ac = new AbortController();
    const az = gateway({ retry: { maxRetryAfterMs: 5_000 } }).scoped({ signal: ac.signal, deadline: Date.now() + 60_000 });
    arm.faults.push({ method: 'GET', path: /aks-system-1-vmss$/, status: 503, headers: { 'retry-after': '10' } });
    setTimeout(() => ac.abort(new Error('step deadline passed')), 150);
    const t0 = Date.now();
    await expect(az.getScaleSet(NODE_RG, 'aks-system-1-vmss')).rejects.toThrow('step deadline passed');
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(arm.seen).toHaveLength(1);
  });

  it('dry-run reads but never sends a write, and records "would PATCH <url> <body>"', async () => {
    for (const mode of ['server', 'client'] as const) {
      arm.seen.length = 0;
      const az = gateway({ dryRun: mode });
      const r = await az.assignIdentities(NODE_RG, 'aks-pay-2-vmss', [identityId('x'), KUBELET]);
      expect(r).toMatchObject({ added: [identityId('x')], alreadyPresent: [KUBELET], dryRun: true, patches: 1 });
      await az.manualUpgrade(NODE_RG, 'aks-pay-2-vmss', ['1']);
      expect(arm.seen.filter((s) => s.method !== 'GET')).toHaveLength(0);
      const lines = az.dryRunLog().map(formatDryRunEntry);
      expect(lines[0]).toBe(
        `would PATCH ${arm.url}/subscriptions/${SUB}/resourceGroups/${NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pay-2-vmss ` +
          JSON.stringify({ identity: { type: 'UserAssigned', userAssignedIdentities: { [identityId('x')]: {} } } }),
      );
      expect(lines[1]).toMatch(/^would POST .*aks-pay-2-vmss\/manualupgrade \{"instanceIds":\["1"\]\}$/);
      expect(az.calls().suppressedWrites).toBe(2);
    }
  });

  it('lists instances with latestModelApplied and runs manualupgrade as a long-running operation', async () => {
    const az = gateway();
    const inst = await az.listInstances(NODE_RG, 'aks-pay-2-vmss');
    expect(inst.map((i) => [i.instanceId, i.latestModelApplied])).toEqual([
      ['0', true],
      ['1', false],
    ]);
    await az.manualUpgrade(NODE_RG, 'aks-pay-2-vmss', inst.filter((i) => !i.latestModelApplied).map((i) => i.instanceId));
    const post = arm.seen.find((s) => s.method === 'POST');
    expect(post?.path).toMatch(/aks-pay-2-vmss\/manualupgrade$/);
    expect(post?.body).toEqual({ instanceIds: ['1'] });
    const id = await az.getIdentity(identityId('orders'));
    expect(id).toMatchObject({ name: 'orders', clientId: 'client-orders', principalId: 'principal-orders' });
  });

  it('refuses a token file readable by others and a plain-http endpoint', () => {
    chmodSync(arm.env.PODID_MIGRATE_ARM_TOKEN_FILE, 0o644);
    try {
      const conn = resolveAzureConnection(arm.env);
      return expect(conn.credential.getToken('https://management.azure.com/.default')).rejects.toThrow(/readable by group or others.*chmod 600/);
    } finally {
      chmodSync(arm.env.PODID_MIGRATE_ARM_TOKEN_FILE, 0o600);
      expect(() => resolveAzureConnection({ ...arm.env, PODID_MIGRATE_ARM_ENDPOINT: 'http://127.0.0.1:1' })).toThrow(/must be an https:\/\/ URL/);
    }
  });
});

describe('Azure gateway pure rules', () => {
  it('computes the delta case-insensitively, chunks, and picks the type', () => {
    expect(identityDelta(['/A/x', '/b'], ['/a/X', '/c', '/C', '/d'])).toEqual({ toAdd: ['/c', '/d'], present: ['/a/X'] });
    expect(chunk([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(typeWithoutUserAssigned('SystemAssigned, UserAssigned')).toBe('SystemAssigned');
    expect(typeWithoutUserAssigned('UserAssigned')).toBe('None');
  });

  it('classifies ARM answers for retry', () => {
    expect(isRetryableArmResponse(429, 'PATCH', undefined)).toBe(true);
    expect(isRetryableArmResponse(503, 'GET', undefined)).toBe(true);
    expect(isRetryableArmResponse(503, 'POST', undefined)).toBe(false);
    expect(isRetryableArmResponse(409, 'PATCH', 'AnotherOperationInProgress')).toBe(true);
    expect(isRetryableArmResponse(409, 'PUT', 'ResourceExists')).toBe(false);
    expect(isRetryableArmResponse(403, 'PATCH', 'LinkedAuthorizationFailed')).toBe(false);
    expect(describeArmRequest('POST', `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/v/manualupgrade`).resource).toBe(
      'Microsoft.Compute/virtualMachineScaleSets/manualupgrade',
    );
    expect(actionMatches('Microsoft.ManagedIdentity/*', 'microsoft.managedidentity/userAssignedIdentities/assign/action')).toBe(true);
    expect(actionMatches('Microsoft.Compute/*', 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action')).toBe(false);
  });
});
