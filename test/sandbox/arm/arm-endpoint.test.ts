/**
 * The ARM endpoint driven by the real Azure SDK clients over HTTPS on 127.0.0.1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'node:https';
import type { RestError } from '@azure/core-rest-pipeline';
import { ManualClock, NODE_RG, RG, SUB, advanceUntil, startHarness, waitFor } from './harness.ts';

type Harness = Awaited<ReturnType<typeof startHarness>>;
const open: Harness[] = [];
async function harness(opts: Parameters<typeof startHarness>[0] = {}): Promise<Harness> {
  const h = await startHarness(opts);
  open.push(h);
  return h;
}
afterEach(async () => {
  while (open.length) await open.pop()!.close();
});

const APPS = 'aks-apps-12345678-vmss';
const FAST = { updateIntervalInMs: 5 };

/** A raw HTTPS GET trusting the sandbox CA, for what no SDK call exposes. */
function rawGet(h: Harness, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(`${h.server.url}${path}`, { ca: h.tls.caPem, headers }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function restError(p: Promise<unknown>): Promise<RestError & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as RestError & { code?: string };
  }
  throw new Error('expected the call to fail');
}

describe('authentication, api-version and headers', () => {
  it('answers 401 AuthenticationFailed without a token and InvalidAuthenticationToken with a wrong one', async () => {
    const h = await harness();
    const path = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version=2024-11-30`;
    const none = await rawGet(h, path);
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('AuthenticationFailed');
    expect(none.headers['www-authenticate']).toMatch(/^Bearer authorization_uri=/);
    const wrong = await rawGet(h, path, { Authorization: 'Bearer not-the-token' });
    expect([wrong.status, wrong.body.error.code]).toEqual([401, 'InvalidAuthenticationToken']);
    expect(h.metrics.count({ api: 'arm', resource: 'UserAssignedIdentities_ListByResourceGroup', status: 401 })).toBe(2);
  });

  it('requires api-version and sends ARM and compute rate-limit headers', async () => {
    const h = await harness();
    const auth = { Authorization: `Bearer ${h.token}` };
    const missing = await rawGet(h, `/subscriptions/${SUB}/resourceGroups/${NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/${APPS}`, auth);
    expect(missing.status).toBe(400);
    expect(missing.body).toEqual({ error: { code: 'MissingApiVersionParameter', message: 'The api-version query parameter (?api-version=) is required for all requests.' } });
    const first = await rawGet(h, `/subscriptions/${SUB}/resourceGroups/${NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/${APPS}?api-version=2025-04-01`, auth);
    const second = await rawGet(h, `/subscriptions/${SUB}/resourceGroups/${NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/${APPS}?api-version=2025-04-01`, auth);
    expect(first.status).toBe(200);
    expect(Number(second.headers['x-ms-ratelimit-remaining-subscription-reads'])).toBe(Number(first.headers['x-ms-ratelimit-remaining-subscription-reads']) - 1);
    expect(second.headers['x-ms-ratelimit-remaining-resource']).toMatch(/^Microsoft\.Compute\/GetVMScaleSet3Min;\d+,Microsoft\.Compute\/GetVMScaleSet30Min;\d+$/);
    // Paths are case-insensitive, as in ARM.
    const lower = await rawGet(h, `/subscriptions/${SUB}/resourcegroups/${NODE_RG.toLowerCase()}/providers/microsoft.compute/virtualmachinescalesets/${APPS.toUpperCase()}?api-version=2025-04-01`, auth);
    expect(lower.body.name).toBe(APPS);
  });

  it('serves the caller permissions on an identity, without assign/action when denied', async () => {
    const h = await harness();
    const auth = { Authorization: `Bearer ${h.token}` };
    const allowed = await rawGet(h, `${h.ids.orders.id}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01`, auth);
    expect(allowed.status).toBe(200);
    expect(allowed.body.value[0].actions).toContain('Microsoft.ManagedIdentity/userAssignedIdentities/assign/action');
    expect(Object.keys(allowed.body.value[0]).sort()).toEqual(['actions', 'dataActions', 'notActions', 'notDataActions']);
    const denied = await rawGet(h, `${h.ids.secret.id}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01`, auth);
    expect(denied.body.value[0].actions).not.toContain('Microsoft.ManagedIdentity/userAssignedIdentities/assign/action');
    expect(h.metrics.count({ resource: 'Permissions_ListForResource', status: 200 })).toBe(2);
  });
});

describe('reads through the SDKs', () => {
  it('gets and lists identities (ManagedServiceIdentityClient)', async () => {
    const h = await harness();
    const got = await h.msi.userAssignedIdentities.get(RG, 'id-orders');
    expect(got).toMatchObject({ id: h.ids.orders.id, name: 'id-orders', type: 'Microsoft.ManagedIdentity/userAssignedIdentities', clientId: h.ids.orders.clientId, principalId: h.ids.orders.principalId, tenantId: h.ids.orders.tenantId });
    const names: string[] = [];
    for await (const i of h.msi.userAssignedIdentities.listByResourceGroup(RG)) names.push(i.name!);
    expect(names).toEqual(['id-orders', 'id-payments', 'id-catalog', 'id-secret']);
    const bySub: string[] = [];
    for await (const i of h.msi.userAssignedIdentities.listBySubscription()) bySub.push(i.name!);
    expect(bySub).toHaveLength(5);
    const missing = await restError(h.msi.userAssignedIdentities.get(RG, 'id-nope'));
    expect([missing.statusCode, missing.code]).toEqual([404, 'ResourceNotFound']);
    const noGroup = await restError(h.msi.userAssignedIdentities.get('rg-nope', 'id-orders'));
    expect([noGroup.statusCode, noGroup.code]).toEqual([404, 'ResourceGroupNotFound']);
    expect(h.metrics.count({ api: 'arm', caller: 'client', verb: 'GET', resource: 'UserAssignedIdentities_Get' })).toBe(3);
  });

  it('gets the managed cluster with node resource group, pools and kubelet identity (ContainerServiceClient)', async () => {
    const h = await harness();
    const mc = await h.aks.managedClusters.get(RG, 'shop-aks');
    expect(mc.nodeResourceGroup).toBe(NODE_RG);
    expect(mc.identityProfile?.kubeletidentity).toEqual({ resourceId: h.kubelet.id, clientId: h.kubelet.clientId, objectId: h.kubelet.principalId });
    expect(mc.agentPoolProfiles?.map((p) => [p.name, p.count, p.mode, p.type, p.osType])).toEqual([
      ['system', 2, 'System', 'VirtualMachineScaleSets', 'Linux'],
      ['apps', 3, 'User', 'VirtualMachineScaleSets', 'Linux'],
    ]);
    expect(mc.kubernetesVersion).toBe('1.32.4');
    expect(mc.provisioningState).toBe('Succeeded');
    const pools: string[] = [];
    for await (const p of h.aks.agentPools.list(RG, 'shop-aks')) pools.push(p.name!);
    expect(pools).toEqual(['system', 'apps']);
    expect(h.metrics.count({ resource: 'ManagedClusters_Get', status: 200 })).toBe(1);
  });

  it('pages scale sets and instances with nextLink', async () => {
    const pools = ['p1', 'p2', 'p3', 'p4', 'p5'].map((name) => ({ name, count: 3 }));
    const h = await harness({ pageSize: 2, pools });
    const names: string[] = [];
    for await (const s of h.compute.virtualMachineScaleSets.list(NODE_RG)) names.push(s.name!);
    expect(names).toEqual(pools.map((p) => `aks-${p.name}-12345678-vmss`));
    expect(h.metrics.count({ resource: 'VirtualMachineScaleSets_List', status: 200 })).toBe(3);
    const vms = [];
    for await (const vm of h.compute.virtualMachineScaleSetVMs.list(NODE_RG, 'aks-p2-12345678-vmss')) vms.push(vm);
    expect(vms.map((v) => [v.instanceId, v.osProfile?.computerName, v.latestModelApplied, v.provisioningState])).toEqual([
      ['0', 'aks-p2-12345678-vmss000000', true, 'Succeeded'],
      ['1', 'aks-p2-12345678-vmss000001', true, 'Succeeded'],
      ['2', 'aks-p2-12345678-vmss000002', true, 'Succeeded'],
    ]);
    expect(vms[0].identity?.userAssignedIdentities?.[h.kubelet.id]).toEqual({ clientId: h.kubelet.clientId, principalId: h.kubelet.principalId });
    expect(h.metrics.count({ resource: 'VirtualMachineScaleSetVMs_List', status: 200 })).toBe(2);
  });
});

describe('VMSS identity updates through the SDK poller', () => {
  it('merges additions, keeping the kubelet identity, case-insensitively', async () => {
    const h = await harness();
    const before = await h.compute.virtualMachineScaleSets.get(NODE_RG, APPS);
    expect(before.identity?.type).toBe('UserAssigned');
    const updated = await h.compute.virtualMachineScaleSets.beginUpdateAndWait(
      NODE_RG,
      APPS,
      { identity: { type: before.identity!.type, userAssignedIdentities: { [h.ids.orders.id]: {}, [h.ids.payments.id]: {}, [h.kubelet.id.toUpperCase()]: {} } } },
      FAST,
    );
    expect(updated.provisioningState).toBe('Succeeded');
    expect(Object.keys(updated.identity!.userAssignedIdentities!)).toEqual([h.kubelet.id, h.ids.orders.id, h.ids.payments.id]);
    expect(updated.identity!.userAssignedIdentities![h.ids.orders.id]).toEqual({ clientId: h.ids.orders.clientId, principalId: h.ids.orders.principalId });
    expect(h.state.identitiesOnInstance(APPS, '2').map((i) => i.name)).toEqual(['shop-aks-agentpool', 'id-orders', 'id-payments']);
    expect(h.events).toEqual([{ type: 'identities-changed', scaleSet: APPS, added: [h.ids.orders.id, h.ids.payments.id], removed: [], caller: 'client' }]);
    expect(h.metrics.count({ api: 'arm', verb: 'PATCH', resource: 'VirtualMachineScaleSets_Update', status: 200, caller: 'client' })).toBe(1);
    expect(h.metrics.count({ resource: 'AsyncOperation_Get', status: 200 })).toBeGreaterThanOrEqual(1);
    expect(h.metrics.snapshot().mutations.arm).toBe(1);
    // Instances mirror the scale set's identities; no manualupgrade is needed.
    const vm = await h.compute.virtualMachineScaleSetVMs.get(NODE_RG, APPS, '0');
    expect(Object.keys(vm.identity!.userAssignedIdentities!)).toHaveLength(3);
    expect(vm.latestModelApplied).toBe(true);
  });

  it('removes with null and moves the type to None, or keeps SystemAssigned', async () => {
    const h = await harness();
    const removed = await h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'UserAssigned', userAssignedIdentities: { [h.kubelet.id]: null as never } } }, FAST);
    expect(removed.identity).toBeUndefined();
    expect(h.state.scaleSet(APPS)!.identityType).toBe('None');
    const both = await h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [h.ids.orders.id]: {} } } }, FAST);
    expect(both.identity?.type).toBe('SystemAssigned, UserAssigned');
    expect(both.identity?.principalId).toMatch(/^[0-9a-f-]{36}$/);
    // Adding with the type kept leaves the system-assigned identity alone.
    const more = await h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [h.ids.catalog.id]: {} } } }, FAST);
    expect(more.identity?.type).toBe('SystemAssigned, UserAssigned');
    expect(Object.keys(more.identity!.userAssignedIdentities!)).toEqual([h.ids.orders.id, h.ids.catalog.id]);
    const last = await h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'SystemAssigned, UserAssigned', userAssignedIdentities: { [h.ids.orders.id]: null as never, [h.ids.catalog.id]: null as never } } }, FAST);
    expect(last.identity?.type).toBe('SystemAssigned');
    expect(last.identity?.userAssignedIdentities).toBeUndefined();
  });

  it('shows the update in flight (Updating, not yet effective) until the operation completes', async () => {
    const clock = new ManualClock();
    const h = await harness({ clock, latency: { identityUpdateSeconds: 45 } });
    const poller = h.compute.virtualMachineScaleSets.update(NODE_RG, APPS, { identity: { type: 'UserAssigned', userAssignedIdentities: { [h.ids.orders.id]: {} } } }, FAST);
    let result: Awaited<typeof poller> | undefined;
    const settled = poller.then((r) => (result = r));
    await waitFor(() => h.metrics.count({ resource: 'VirtualMachineScaleSets_Update' }) === 1, 'the PATCH to arrive');
    await waitFor(() => h.metrics.count({ resource: 'AsyncOperation_Get' }) >= 2, 'the poller to poll');
    const during = await h.compute.virtualMachineScaleSets.get(NODE_RG, APPS);
    expect(during.provisioningState).toBe('Updating');
    expect(Object.keys(during.identity!.userAssignedIdentities!)).toContain(h.ids.orders.id);
    expect(h.state.identitiesOnInstance(APPS, '0').map((i) => i.name)).toEqual(['shop-aks-agentpool']);
    // A second model update while the first runs is refused, as compute refuses concurrent requests.
    const conflict = await restError(h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'UserAssigned', userAssignedIdentities: { [h.ids.catalog.id]: {} } } }, FAST));
    expect([conflict.statusCode, conflict.code]).toEqual([409, 'Conflict']);
    await advanceUntil(clock, () => result !== undefined, 'the poller to finish');
    await settled;
    expect(result!.provisioningState).toBe('Succeeded');
    expect(h.state.identitiesOnInstance(APPS, '0').map((i) => i.name)).toEqual(['shop-aks-agentpool', 'id-orders']);
  });

  it('fails the whole request with 400 above 150 identities and 403 LinkedAuthorizationFailed for a denied one', async () => {
    const h = await harness();
    const many: Record<string, {}> = {};
    for (let i = 0; i < 151; i++) many[h.state.addIdentity({ name: `bulk-${i}`, resourceGroup: RG, location: 'westeurope', clientId: `c${i}`, principalId: `p${i}` }).id] = {};
    const tooMany = await restError(h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'UserAssigned', userAssignedIdentities: many } }, FAST));
    expect([tooMany.statusCode, tooMany.code]).toEqual([400, 'FailedIdentityOperation']);
    expect(tooMany.message).toContain("Assign exceed limit '150' in one request");
    const denied = await restError(h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'UserAssigned', userAssignedIdentities: { [h.ids.secret.id]: {} } } }, FAST));
    expect([denied.statusCode, denied.code]).toEqual([403, 'LinkedAuthorizationFailed']);
    expect(denied.message).toContain(h.ids.secret.id);
    expect(h.state.scaleSet(APPS)!.userAssignedIdentities.size).toBe(1);
    expect(h.metrics.snapshot().mutations.arm).toBe(0);
  });
});

describe('faults', () => {
  it('retries a 429 with Retry-After through the SDK, and surfaces one without it', async () => {
    const h = await harness();
    h.faults.add({ api: 'arm', method: 'GET', path: `/virtualMachineScaleSets/${APPS}$`, times: 1, action: { kind: 'status', status: 429, retryAfterSeconds: 1 } });
    const started = Date.now();
    const got = await h.compute.virtualMachineScaleSets.get(NODE_RG, APPS);
    expect(got.name).toBe(APPS);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(h.metrics.count({ resource: 'VirtualMachineScaleSets_Get', status: 429 })).toBe(1);
    expect(h.metrics.count({ resource: 'VirtualMachineScaleSets_Get', status: 200 })).toBe(1);

    h.faults.add({ api: 'arm', method: 'GET', path: `/virtualMachineScaleSets/${APPS}$`, times: 1, action: { kind: 'status', status: 429 } });
    const throttled = await restError(h.compute.virtualMachineScaleSets.get(NODE_RG, APPS));
    expect([throttled.statusCode, throttled.code]).toEqual([429, 'TooManyRequests']);
  });

  it('ends an operation Failed on lro-fail, which the SDK reports as a failed long-running operation', async () => {
    const h = await harness();
    h.faults.add({ api: 'arm', method: 'PATCH', times: 1, action: { kind: 'lro-fail', code: 'InternalExecutionError', message: 'An internal execution error occurred. Please retry later.' } });
    const err = await restError(h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'UserAssigned', userAssignedIdentities: { [h.ids.orders.id]: {} } } }, FAST));
    expect(err.message).toBe('The long-running operation has failed. InternalExecutionError. An internal execution error occurred. Please retry later.');
    expect(h.state.scaleSet(APPS)!.userAssignedIdentities.has(h.ids.orders.id.toLowerCase())).toBe(false);
    expect(h.events).toEqual([]);

    h.faults.add({ api: 'arm', method: 'POST', path: '/reimage$', times: 1, action: { kind: 'lro-fail', code: 'VMAgentStatusCommunicationError' } });
    const reimage = await restError(h.compute.virtualMachineScaleSets.beginReimageAndWait(NODE_RG, APPS, { vmScaleSetReimageInput: { instanceIds: ['0'] }, ...FAST }));
    expect(reimage.message).toMatch(/^The long-running operation has failed\. VMAgentStatusCommunicationError\./);
    expect(h.events).toEqual([]);
  });

  it('applies the write but holds the answer on hold-response', async () => {
    const h = await harness();
    const ruleId = h.faults.add({ api: 'arm', method: 'PATCH', times: 1, action: { kind: 'hold-response' } });
    const held = new Promise<{ ruleId: string; method: string }>((resolve) => h.faults.once('held', resolve));
    const abort = new AbortController();
    const call = h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'UserAssigned', userAssignedIdentities: { [h.ids.orders.id]: {} } } }, { ...FAST, abortSignal: abort.signal });
    const outcome = call.then(() => 'answered', () => 'aborted');
    expect(await held).toMatchObject({ ruleId, method: 'PATCH' });
    expect(h.state.scaleSet(APPS)!.userAssignedIdentities.has(h.ids.orders.id.toLowerCase())).toBe(true);
    abort.abort();
    expect(await outcome).toBe('aborted');
    h.faults.remove(ruleId);
    await waitFor(() => h.state.scaleSet(APPS)!.provisioningState === 'Succeeded', 'the applied update to complete');
    expect(h.state.identitiesOnInstance(APPS, '0').map((i) => i.name)).toEqual(['shop-aks-agentpool', 'id-orders']);
  });
});

describe('instance operations', () => {
  it('reimages and deletes instances through the pollers, emitting lifecycle events', async () => {
    const h = await harness();
    await h.compute.virtualMachineScaleSets.beginReimageAndWait(NODE_RG, APPS, { vmScaleSetReimageInput: { instanceIds: ['1'] }, ...FAST });
    expect(h.events.map((e) => e.type === 'reimage' && `${e.instanceId}:${e.phase}`)).toEqual(['1:started', '1:completed']);
    expect(h.metrics.count({ verb: 'POST', resource: 'VirtualMachineScaleSets_Reimage', status: 202 })).toBe(1);

    await h.compute.virtualMachineScaleSets.beginDeleteInstancesAndWait(NODE_RG, APPS, { instanceIds: ['0'] }, { forceDeletion: true, ...FAST });
    expect(h.events.at(-1)).toEqual({ type: 'instance-deleted', scaleSet: APPS, instanceId: '0', computerName: 'aks-apps-12345678-vmss000000' });
    const after = await h.compute.virtualMachineScaleSets.get(NODE_RG, APPS);
    expect(after.sku?.capacity).toBe(2);
    const mc = await h.aks.managedClusters.get(RG, 'shop-aks');
    expect(mc.agentPoolProfiles?.find((p) => p.name === 'apps')?.count).toBe(2);
    // The Location URL was used for the final GET of each POST.
    expect(h.metrics.count({ resource: 'AsyncOperation_Get', status: 200 })).toBeGreaterThanOrEqual(4);

    const gone = await restError(h.compute.virtualMachineScaleSets.beginReimageAndWait(NODE_RG, APPS, { vmScaleSetReimageInput: { instanceIds: ['0'] }, ...FAST }));
    expect([gone.statusCode, gone.code]).toEqual([400, 'InvalidParameter']);
  });

  it('scales through sku.capacity and reports new instances once created', async () => {
    const h = await harness();
    const res = await h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { sku: { capacity: 4 } }, FAST);
    expect(res.sku?.capacity).toBe(4);
    expect(h.events).toEqual([{ type: 'instance-created', scaleSet: APPS, instanceId: '3', computerName: 'aks-apps-12345678-vmss000003' }]);
  });

  it('applies the latest model with manualupgrade when legacyInstanceModel leaves instances behind', async () => {
    const h = await harness();
    h.state.legacyInstanceModel = true;
    await h.compute.virtualMachineScaleSets.beginUpdateAndWait(NODE_RG, APPS, { identity: { type: 'UserAssigned', userAssignedIdentities: { [h.ids.orders.id]: {} } } }, FAST);
    const stale: string[] = [];
    for await (const vm of h.compute.virtualMachineScaleSetVMs.list(NODE_RG, APPS, { filter: 'properties/latestModelApplied eq false' })) stale.push(vm.instanceId!);
    expect(stale).toEqual(['0', '1', '2']);
    await h.compute.virtualMachineScaleSets.beginUpdateInstancesAndWait(NODE_RG, APPS, { instanceIds: ['0', '1'] }, FAST);
    const flags: [string, boolean][] = [];
    for await (const vm of h.compute.virtualMachineScaleSetVMs.list(NODE_RG, APPS)) flags.push([vm.instanceId!, vm.latestModelApplied!]);
    expect(flags).toEqual([['0', true], ['1', true], ['2', false]]);
    expect(h.metrics.count({ verb: 'POST', resource: 'VirtualMachineScaleSets_UpdateInstances', status: 202 })).toBe(1);
  });
});
