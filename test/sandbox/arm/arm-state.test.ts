import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/sandbox/clock.ts';
import { ArmError, type ArmStateEvent } from '../../../src/sandbox/arm/state.ts';
import { buildState, NODE_RG, RG, SUB } from './harness.ts';

function world(latency = { identityUpdateSeconds: 50, reimageSeconds: 90, deleteSeconds: 30, createSeconds: 70, upgradeSeconds: 30 }) {
  const clock = new ManualClock();
  const built = buildState({ clock, latency });
  const events: ArmStateEvent[] = [];
  built.state.on('event', (e: ArmStateEvent) => events.push(e));
  return { clock, events, ...built };
}

function thrown(fn: () => unknown): ArmError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ArmError);
    return e as ArmError;
  }
  throw new Error('expected an ArmError');
}

describe('ArmState building', () => {
  it('names scale sets and instances as AKS does, computer names in base 36', () => {
    const { state } = buildState({ clock: new ManualClock(), pools: [{ name: 'system', count: 11 }] });
    const set = state.scaleSet('aks-system-12345678-vmss')!;
    expect(set.id).toBe(`/subscriptions/${SUB}/resourceGroups/${NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/aks-system-12345678-vmss`);
    expect(set.instances.get('0')!.computerName).toBe('aks-system-12345678-vmss000000');
    expect(set.instances.get('10')!.computerName).toBe('aks-system-12345678-vmss00000a');
    expect(state.instanceByComputerName('AKS-SYSTEM-12345678-VMSS00000A')?.instance.instanceId).toBe('10');
    expect(state.instanceByComputerName('aks-system-12345678-vmss0000zz')).toBeUndefined();
    expect(set.tags['aks-managed-poolName']).toBe('system');
  });

  it('gives identities the MSI id spelling and finds them by id in any case or by name', () => {
    const { state, ids } = buildState({ clock: new ManualClock() });
    expect(ids.orders.id).toBe(`/subscriptions/${SUB}/resourcegroups/${RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-orders`);
    expect(state.identity(ids.orders.id.toUpperCase())?.name).toBe('id-orders');
    expect(state.identity('id-orders')?.id).toBe(ids.orders.id);
  });
});

describe('patchIdentities (in-process MIC)', () => {
  it('adds while keeping the kubelet identity, compares ids case-insensitively, removes with null', () => {
    const { state, kubelet, ids, events, metrics } = world();
    const set = 'aks-apps-12345678-vmss';
    expect(state.patchIdentities(set, { [ids.orders.id]: {} }, { caller: 'mic' })).toEqual({ added: [ids.orders.id], removed: [] });
    // The same id in another case is already there: nothing added, first spelling kept.
    expect(state.patchIdentities(set, { [ids.orders.id.toUpperCase()]: {} }, { caller: 'mic' })).toEqual({ added: [], removed: [] });
    const s = state.scaleSet(set)!;
    expect([...s.userAssignedIdentities.values()].map((v) => v.id)).toEqual([kubelet.id, ids.orders.id]);
    expect(state.identitiesOnInstance(set, '1').map((i) => i.name)).toEqual(['shop-aks-agentpool', 'id-orders']);
    expect(events).toEqual([{ type: 'identities-changed', scaleSet: set, added: [ids.orders.id], removed: [], caller: 'mic' }]);

    expect(state.patchIdentities(set, { [ids.orders.id.toLowerCase()]: null }, { caller: 'mic' })).toEqual({ added: [], removed: [ids.orders.id] });
    expect(state.identitiesOnInstance(set, '1').map((i) => i.name)).toEqual(['shop-aks-agentpool']);
    expect(s.identityType).toBe('UserAssigned');
    expect(metrics.count({ api: 'arm', caller: 'mic', verb: 'PATCH', resource: 'VirtualMachineScaleSets_Update' })).toBe(3);
    expect(metrics.snapshot().mutations.arm).toBe(0);
  });

  it('drops to None when the last user-assigned identity goes, and keeps SystemAssigned when present', () => {
    const { state, kubelet, ids } = world();
    const set = state.scaleSet('aks-system-12345678-vmss')!;
    state.patchIdentities(set.name, { [kubelet.id]: null }, { caller: 'mic' });
    expect(set.identityType).toBe('None');
    expect(set.userAssignedIdentities.size).toBe(0);

    state.patchIdentities(set.name, { [ids.orders.id]: {} }, { caller: 'mic', identityType: 'SystemAssigned, UserAssigned' });
    expect(set.identityType).toBe('SystemAssigned, UserAssigned');
    expect(set.systemAssigned?.principalId).toMatch(/^[0-9a-f-]{36}$/);
    state.patchIdentities(set.name, { [ids.orders.id]: null }, { caller: 'mic' });
    expect(set.identityType).toBe('SystemAssigned');
    expect(set.systemAssigned).toBeDefined();
  });

  it('refuses more than 150 entries in one request, as compute does', () => {
    const { state } = world();
    const many: Record<string, {}> = {};
    for (let i = 0; i < 151; i++) {
      const id = state.addIdentity({ name: `bulk-${i}`, resourceGroup: RG, location: 'westeurope', clientId: `c-${i}`, principalId: `p-${i}` }).id;
      many[id] = {};
    }
    const err = thrown(() => state.patchIdentities('aks-apps-12345678-vmss', many, { caller: 'mic' }));
    expect(err.status).toBe(400);
    expect(err.code).toBe('FailedIdentityOperation');
    expect(err.message).toContain("User Assigned Identities Number '151' Assign exceed limit '150' in one request.");
    expect(state.scaleSet('aks-apps-12345678-vmss')!.userAssignedIdentities.size).toBe(1);
    delete many[Object.keys(many)[0]];
    expect(state.patchIdentities('aks-apps-12345678-vmss', many, { caller: 'mic' }).added).toHaveLength(150);
  });

  it('answers unknown, malformed and duplicated ids as ARM does, changing nothing', () => {
    const { state, ids } = world();
    const set = 'aks-apps-12345678-vmss';
    const missing = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-gone`;
    const unknown = thrown(() => state.patchIdentities(set, { [ids.orders.id]: {}, [missing]: {} }, { caller: 'mic' }));
    expect([unknown.status, unknown.code]).toEqual([400, 'FailedIdentityOperation']);
    expect(unknown.message).toContain("Microsoft.ManagedIdentity/userAssignedIdentities/id-gone' under resource group 'rg-shop' was not found");
    const malformed = thrown(() => state.patchIdentities(set, { 'id-orders': {} }, { caller: 'mic' }));
    expect([malformed.status, malformed.code]).toEqual([400, 'LinkedInvalidPropertyId']);
    const dup = thrown(() => state.patchIdentities(set, { [ids.orders.id]: {}, [ids.orders.id.toUpperCase()]: {} }, { caller: 'mic' }));
    expect([dup.status, dup.code]).toEqual([400, 'InvalidParameter']);
    const notFound = thrown(() => state.patchIdentities('aks-nope-vmss', { [ids.orders.id]: {} }, { caller: 'mic' }));
    expect([notFound.status, notFound.code]).toEqual([404, 'ResourceNotFound']);
    expect(state.scaleSet(set)!.userAssignedIdentities.size).toBe(1);
  });

  it('denies assign/action on a denied identity to external callers only', () => {
    const { state, ids } = world();
    const err = thrown(() => state.beginUpdate('aks-apps-12345678-vmss', { identity: { type: 'UserAssigned', userAssignedIdentities: { [ids.secret.id]: {}, [ids.orders.id]: {} } } }, { caller: 'client' }));
    expect([err.status, err.code]).toEqual([403, 'LinkedAuthorizationFailed']);
    expect(err.message).toContain(`has permission to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' on scope '${state.scaleSet('aks-apps-12345678-vmss')!.id}'`);
    expect(err.message).toContain(`'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '${ids.secret.id}'`);
    expect(err.message).not.toContain(ids.orders.id);
    expect(state.mayAssign(ids.secret.id.toUpperCase())).toBe(false);
    expect(state.patchIdentities('aks-apps-12345678-vmss', { [ids.secret.id]: {} }, { caller: 'mic' }).added).toEqual([ids.secret.id]);
  });

  it('with legacyInstanceModel, identity changes leave instances behind until manualupgrade', async () => {
    const { state, ids, clock } = world();
    state.legacyInstanceModel = true;
    const set = state.scaleSet('aks-apps-12345678-vmss')!;
    state.patchIdentities(set.name, { [ids.orders.id]: {} }, { caller: 'mic' });
    expect([...set.instances.values()].map((i) => i.latestModelApplied)).toEqual([false, false, false]);
    const upgraded = state.upgradeInstances(set.name, ['0', '2']);
    expect(set.instances.get('0')!.provisioningState).toBe('Updating');
    await clock.advance(29_000);
    expect(set.instances.get('0')!.latestModelApplied).toBe(false);
    await clock.advance(1_000);
    await upgraded;
    expect([...set.instances.values()].map((i) => i.latestModelApplied)).toEqual([true, false, true]);
  });
});

describe('timed operations', () => {
  it('makes a PATCH visible at once but effective only when the operation completes', async () => {
    const { state, ids, clock, events } = world();
    const set = state.scaleSet('aks-apps-12345678-vmss')!;
    const op = state.beginUpdate(set.name, { identity: { type: 'UserAssigned', userAssignedIdentities: { [ids.orders.id]: {} } } }, { caller: 'client' });
    expect(set.provisioningState).toBe('Updating');
    expect(set.userAssignedIdentities.has(ids.orders.id.toLowerCase())).toBe(true);
    expect(state.identitiesOnInstance(set.name, '0').map((i) => i.name)).toEqual(['shop-aks-agentpool']);
    expect(() => state.beginUpdate(set.name, { identity: { userAssignedIdentities: { [ids.catalog.id]: {} } } }, { caller: 'client' })).toThrow(/conflict with a concurrent request/);
    await clock.advance(49_000);
    expect(events).toEqual([]);
    await clock.advance(1_000);
    await op.done;
    expect(set.provisioningState).toBe('Succeeded');
    expect(state.identitiesOnInstance(set.name, '0').map((i) => i.name)).toEqual(['shop-aks-agentpool', 'id-orders']);
    expect(events).toEqual([{ type: 'identities-changed', scaleSet: set.name, added: [ids.orders.id], removed: [], caller: 'client' }]);
  });

  it('undoes the identity delta of a failed operation', async () => {
    const { state, ids, clock, kubelet } = world();
    const set = state.scaleSet('aks-apps-12345678-vmss')!;
    const op = state.beginUpdate(set.name, { identity: { type: 'UserAssigned', userAssignedIdentities: { [ids.orders.id]: {}, [kubelet.id]: null } } }, { caller: 'client', fail: { code: 'InternalExecutionError', message: 'boom' } });
    const outcome = op.done.then(() => 'ok', (e: ArmError) => `${e.code}: ${e.message}`);
    await clock.advance(50_000);
    expect(await outcome).toBe('InternalExecutionError: boom');
    expect([...set.userAssignedIdentities.values()].map((v) => v.id)).toEqual([kubelet.id]);
    expect(set.identityType).toBe('UserAssigned');
    expect(set.provisioningState).toBe('Failed');
    expect(state.identitiesOnInstance(set.name, '0').map((i) => i.name)).toEqual(['shop-aks-agentpool']);
  });

  it('reimages with started/completed events in simulated time', async () => {
    const { state, clock, events } = world();
    const done = state.reimageInstances('aks-apps-12345678-vmss', ['1']);
    expect(events).toEqual([{ type: 'reimage', scaleSet: 'aks-apps-12345678-vmss', instanceId: '1', computerName: 'aks-apps-12345678-vmss000001', phase: 'started' }]);
    const inst = state.scaleSet('aks-apps-12345678-vmss')!.instances.get('1')!;
    expect([inst.provisioningState, inst.powerState]).toEqual(['Updating', 'stopped']);
    await expect(state.reimageInstances('aks-apps-12345678-vmss', ['1'])).rejects.toMatchObject({ status: 409, code: 'Conflict' });
    await clock.advance(90_000);
    await done;
    expect(events[1]).toEqual({ type: 'reimage', scaleSet: 'aks-apps-12345678-vmss', instanceId: '1', computerName: 'aks-apps-12345678-vmss000001', phase: 'completed' });
    expect([inst.provisioningState, inst.powerState]).toEqual(['Succeeded', 'running']);
  });

  it('deletes instances (capacity shrinks at once) and scales out and in', async () => {
    const { state, clock, events } = world();
    const set = state.scaleSet('aks-apps-12345678-vmss')!;
    const del = state.deleteInstances(set.name, ['0']);
    expect(set.capacity).toBe(2);
    expect(set.instances.get('0')!.provisioningState).toBe('Deleting');
    expect(state.identitiesOnInstance(set.name, '0')).toEqual([]);
    await clock.advance(30_000);
    await del;
    expect(set.instances.has('0')).toBe(false);
    expect(events).toContainEqual({ type: 'instance-deleted', scaleSet: set.name, instanceId: '0', computerName: 'aks-apps-12345678-vmss000000' });
    await expect(state.deleteInstances(set.name, ['0'])).rejects.toMatchObject({ status: 400, code: 'InvalidParameter' });

    const up = state.setCapacity(set.name, 4);
    expect([...set.instances.keys()]).toEqual(['1', '2', '3', '4']);
    expect(set.instances.get('4')!.provisioningState).toBe('Creating');
    await clock.advance(70_000);
    await up;
    expect(events.filter((e) => e.type === 'instance-created').map((e) => (e as { computerName: string }).computerName)).toEqual(['aks-apps-12345678-vmss000003', 'aks-apps-12345678-vmss000004']);

    const down = state.setCapacity(set.name, 2);
    await clock.advance(50_000);
    await down;
    expect([...set.instances.keys()]).toEqual(['1', '2']);
    expect(set.capacity).toBe(2);
  });

  it('draws range latencies from the seed, identically for the same seed', () => {
    const a = buildState({ clock: new ManualClock(), latency: { seed: 7 } }).state;
    const b = buildState({ clock: new ManualClock(), latency: { seed: 7 } }).state;
    const da = [0, 1, 2, 3].map(() => a.duration([40, 60]));
    expect(da).toEqual([0, 1, 2, 3].map(() => b.duration([40, 60])));
    for (const d of da) expect(d >= 40_000 && d <= 60_000).toBe(true);
    expect(new Set(da).size).toBeGreaterThan(1);
  });

  it('snapshots to plain JSON', () => {
    const { state } = world();
    const snap = JSON.parse(JSON.stringify(state.snapshot()));
    expect(snap.scaleSets.map((s: { name: string }) => s.name)).toEqual(['aks-system-12345678-vmss', 'aks-apps-12345678-vmss']);
    expect(snap.identities.find((i: { name: string }) => i.name === 'id-secret').assignDenied).toBe(true);
  });
});
