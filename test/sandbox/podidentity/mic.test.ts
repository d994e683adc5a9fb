/**
 * MIC driven directly as a container program against the real ArmState: leader election,
 * assignment (one PATCH per VMSS), garbage collection with and without
 * `--immutable-user-msis`, scale-down, restart clean-up, legacy field rewrite, reconcile.
 */
import { describe, expect, it } from 'vitest';
import { LEADER_ANNOTATION, micProgram, type LeaderElectionRecord } from '../../../src/sandbox/podidentity/index.ts';
import { APPS, BATCH, addBinding, addPod, advanceUntil, buildWorld, deletePod, get, startMic, type World } from './harness.ts';

const AAI = ['aadpodidentity.k8s.io', 'azureassignedidentities'] as const;

function aais(w: World) {
  return w.store.list(w.store.typeOrThrow(...AAI)).items;
}

function onVmss(w: World, set: string): string[] {
  return [...w.arm.scaleSet(set)!.userAssignedIdentities.values()].map((v) => v.id.split('/').pop()!).sort();
}

function micPatches(w: World): number {
  return w.metrics.count({ api: 'arm', caller: 'mic', resource: 'VirtualMachineScaleSets_Update' });
}

async function healthBody(w: World, mic: { podIp: string }): Promise<string> {
  const r = await get(w, `http://${mic.podIp}:8080/healthz`, { ip: '10.0.0.1', nodeName: '' }, {});
  return r.error ?? r.body;
}

function leaderRecord(w: World): LeaderElectionRecord {
  const ep = w.store.get(w.store.typeOrThrow('', 'endpoints'), 'default', 'aad-pod-identity-mic')!;
  return JSON.parse(ep.metadata.annotations![LEADER_ANNOTATION]);
}

/** Two services on apps (orders x2 on different nodes, payments x1) and one on batch. */
function workloads(w: World) {
  addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
  addBinding(w, { namespace: 'pay', identity: w.ids.payments, name: 'payments', selector: 'payments' });
  const [a0, a1] = w.nodes[APPS];
  addPod(w, { namespace: 'shop', name: 'orders-a', node: a0, labels: { aadpodidbinding: 'orders' } });
  addPod(w, { namespace: 'shop', name: 'orders-b', node: a1, labels: { aadpodidbinding: 'orders' } });
  addPod(w, { namespace: 'pay', name: 'payments-a', node: a0, labels: { aadpodidbinding: 'payments' } });
  addPod(w, { namespace: 'shop', name: 'orders-batch', node: w.nodes[BATCH][0], labels: { aadpodidbinding: 'orders' } });
  addPod(w, { namespace: 'shop', name: 'unlabelled', node: a0 });
}

async function allAssigned(w: World, n: number): Promise<void> {
  await advanceUntil(w.clock, () => aais(w).filter((a) => a.status?.status === 'Assigned').length === n, 30_000, 500);
}

describe('MIC leader election', () => {
  it('elects one of two replicas through the Endpoints lock; the other answers Not Active until the lease expires', async () => {
    const w = buildWorld();
    const a = startMic(w, micProgram(w.opts), { name: 'mic-6c8f-aaaaa' });
    const b = startMic(w, micProgram(w.opts), { name: 'mic-6c8f-bbbbb' });
    await w.clock.advance(3000);
    expect(await healthBody(w, a)).toBe('Active');
    expect(await healthBody(w, b)).toBe('Not Active');
    const rec = leaderRecord(w);
    expect(rec).toMatchObject({ holderIdentity: 'mic-6c8f-aaaaa', leaseDurationSeconds: 15, leaderTransitions: 0 });
    expect(rec.acquireTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    await w.clock.advance(30_000);
    expect(await healthBody(w, b)).toBe('Not Active');
    expect(Date.parse(leaderRecord(w).renewTime)).toBeGreaterThan(Date.parse(rec.renewTime));

    a.proc.terminate();
    expect(await a.proc.exited).toBe(143);
    // No release on termination: b waits for the lease to expire (15 s from its last observation).
    await w.clock.advance(10_000);
    expect(await healthBody(w, b)).toBe('Not Active');
    await advanceUntil(w.clock, () => leaderRecord(w).holderIdentity === 'mic-6c8f-bbbbb', 15_000, 500);
    expect(leaderRecord(w).leaderTransitions).toBe(1);
    await w.clock.advance(2000);
    expect(await healthBody(w, b)).toBe('Active');
  });

  it('a leader that cannot renew for the renew deadline exits 1', async () => {
    const w = buildWorld();
    const a = startMic(w, micProgram(w.opts), { name: 'mic-6c8f-aaaaa' });
    await w.clock.advance(2000);
    const t = w.store.typeOrThrow('', 'endpoints');
    const ep = w.store.get(t, 'default', 'aad-pod-identity-mic')!;
    // Another holder takes the lock (e.g. a split brain); renewals now fail.
    ep.metadata.annotations![LEADER_ANNOTATION] = JSON.stringify({ ...leaderRecord(w), holderIdentity: 'someone-else' });
    w.store.update(t, ep);
    await advanceUntil(w.clock, () => a.code() !== undefined, 20_000, 500);
    expect(a.code()).toBe(1);
    expect(a.logs.some((l) => l.endsWith('Lost leader lease'))).toBe(true);
  });
});

describe('MIC assignment', () => {
  it('creates AzureAssignedIdentities with finalizer and label, PATCHes each VMSS once with the delta, then marks them Assigned', async () => {
    const w = buildWorld();
    workloads(w);
    startMic(w, micProgram(w.opts));
    await w.clock.advance(2500);
    const created = aais(w);
    expect(created.map((a) => `${a.metadata.namespace}/${a.metadata.name}`).sort()).toEqual([
      'default/orders-a-shop-orders',
      'default/orders-b-shop-orders',
      'default/orders-batch-shop-orders',
      'default/payments-a-pay-payments',
    ]);
    expect(created.every((a) => a.status.status === 'Created')).toBe(true);
    expect(micPatches(w)).toBe(0);
    await allAssigned(w, 4);
    const a = aais(w).find((x) => x.metadata.name === 'orders-a-shop-orders')!;
    expect(a.metadata.finalizers).toEqual(['azureassignedidentity.finalizers.aadpodidentity.k8s.io']);
    expect(a.metadata.labels).toEqual({ nodename: w.nodes[APPS][0] });
    expect(a.spec).toMatchObject({ pod: 'orders-a', podNamespace: 'shop', nodename: w.nodes[APPS][0] });
    expect(a.spec.azureIdentityRef).toMatchObject({ kind: 'AzureIdentity', metadata: { name: 'orders', namespace: 'shop' }, spec: { clientID: w.ids.orders.clientId } });
    expect(a.spec.azureBindingRef).toMatchObject({ kind: 'AzureIdentityBinding', spec: { selector: 'orders' } });
    expect(micPatches(w)).toBe(2);
    expect(onVmss(w, APPS)).toEqual(['id-orders', 'id-payments', 'shop-aks-agentpool']);
    expect(onVmss(w, BATCH)).toEqual(['id-orders', 'shop-aks-agentpool']);
    // Steady state: further cycles change nothing.
    await w.clock.advance(60_000);
    expect(micPatches(w)).toBe(2);
  });

  it('a pod whose identity its scale set already carries is assigned after the scale set GET: no PATCH, no long-running operation', async () => {
    const w = buildWorld();
    workloads(w);
    startMic(w, micProgram(w.opts));
    await allAssigned(w, 4);
    const patches = micPatches(w);
    // A third orders pod on apps, whose VMSS carries id-orders already (the churn case).
    addPod(w, { namespace: 'shop', name: 'orders-c', node: w.nodes[APPS][0], labels: { aadpodidbinding: 'orders' } });
    const waited = await advanceUntil(w.clock, () => aais(w).find((a) => a.metadata.name === 'orders-c-shop-orders')?.status?.status === 'Assigned', 30_000, 100);
    // Upstream UpdateUserMSI sends no PATCH when nothing is to add (requiresUpdate); the cycle costs the GET.
    expect(micPatches(w)).toBe(patches);
    expect(waited).toBeLessThan(w.opts.timing!.micAssignmentSeconds! * 1000);
  });

  it('namespaced identities get their AzureAssignedIdentity in their own namespace; mismatched namespaces are ignored', async () => {
    const w = buildWorld();
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    const it = w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureidentities');
    w.store.mutate(it, 'shop', 'orders', (o) => void (o.metadata.annotations = { 'aadpodidentity.k8s.io/Behavior': 'namespaced' }));
    addPod(w, { namespace: 'shop', name: 'orders-a', node: w.nodes[APPS][0], labels: { aadpodidbinding: 'orders' } });
    addPod(w, { namespace: 'pay', name: 'intruder', node: w.nodes[APPS][0], labels: { aadpodidbinding: 'orders' } });
    startMic(w, micProgram(w.opts));
    await allAssigned(w, 1);
    expect(aais(w).map((a) => `${a.metadata.namespace}/${a.metadata.name}`)).toEqual(['shop/orders-a-shop-orders']);
  });
});

describe('MIC garbage collection', () => {
  async function assignedWorld(micArgs: string[] = []) {
    const w = buildWorld();
    workloads(w);
    // An identity assigned by hand that no AzureAssignedIdentity references.
    w.arm.patchIdentities(APPS, { [w.ids.catalog.id]: {} }, { caller: 'client' });
    const mic = startMic(w, micProgram(w.opts), { args: micArgs });
    await allAssigned(w, 4);
    return { w, mic };
  }

  it('keeps an identity while another pod on the VMSS uses it, removes it with the last one, never touches untracked ones', async () => {
    const { w } = await assignedWorld();
    deletePod(w, 'shop', 'orders-a');
    await advanceUntil(w.clock, () => !aais(w).some((a) => a.metadata.name === 'orders-a-shop-orders'), 20_000, 500);
    expect(onVmss(w, APPS)).toContain('id-orders');
    const before = micPatches(w);
    expect(before).toBe(2);

    deletePod(w, 'shop', 'orders-b');
    await advanceUntil(w.clock, () => !aais(w).some((a) => a.metadata.name === 'orders-b-shop-orders'), 20_000, 500);
    expect(onVmss(w, APPS)).toEqual(['id-catalog', 'id-payments', 'shop-aks-agentpool']);
    expect(micPatches(w)).toBe(before + 1);
    // The batch VMSS still runs an orders pod: untouched.
    expect(onVmss(w, BATCH)).toEqual(['id-orders', 'shop-aks-agentpool']);
  });

  it('removes an identity an operator also assigned by hand once MIC tracked it (the trap)', async () => {
    const { w } = await assignedWorld();
    // The operator "protects" payments by assigning it by hand: a no-op, it is already there.
    w.arm.patchIdentities(APPS, { [w.ids.payments.id]: {} }, { caller: 'client' });
    deletePod(w, 'pay', 'payments-a');
    await advanceUntil(w.clock, () => !onVmss(w, APPS).includes('id-payments'), 20_000, 500);
    expect(aais(w).some((a) => a.spec.podNamespace === 'pay')).toBe(false);
  });

  it('with --immutable-user-msis the identity stays on the VMSS while the object is deleted', async () => {
    const { w } = await assignedWorld([`--immutable-user-msis=${w0Ids().orders},${w0Ids().payments}`]);
    deletePod(w, 'shop', 'orders-a');
    deletePod(w, 'shop', 'orders-b');
    deletePod(w, 'pay', 'payments-a');
    await advanceUntil(w.clock, () => aais(w).length === 1, 20_000, 500);
    expect(onVmss(w, APPS)).toEqual(['id-catalog', 'id-orders', 'id-payments', 'shop-aks-agentpool']);
    expect(micPatches(w)).toBe(2);
  });

  it('does nothing once scaled down; a restarted MIC cleans up what disappeared meanwhile', async () => {
    const { w, mic } = await assignedWorld();
    mic.proc.terminate();
    deletePod(w, 'pay', 'payments-a');
    const t = w.store.typeOrThrow(...AAI);
    // Deleting the object by hand hangs on the finalizer while no MIC runs.
    w.store.delete(t, 'default', 'orders-batch-shop-orders');
    deletePod(w, 'shop', 'orders-batch');
    await w.clock.advance(120_000);
    expect(aais(w).find((a) => a.metadata.name === 'orders-batch-shop-orders')?.metadata.deletionTimestamp).toBeTruthy();
    expect(aais(w).some((a) => a.metadata.name === 'payments-a-pay-payments')).toBe(true);
    expect(onVmss(w, APPS)).toContain('id-payments');
    expect(micPatches(w)).toBe(2);

    startMic(w, micProgram(w.opts), { name: 'mic-6c8f-zzzzz' });
    // The new replica waits out the old leader's lease first.
    await advanceUntil(w.clock, () => aais(w).length === 2, 40_000, 500);
    expect(onVmss(w, APPS)).toEqual(['id-catalog', 'id-orders', 'shop-aks-agentpool']);
    expect(onVmss(w, BATCH)).toEqual(['shop-aks-agentpool']);
  });

  it('re-adds identities of Assigned objects that went missing from the VMSS within the 3-minute reconcile', async () => {
    const { w } = await assignedWorld();
    w.arm.patchIdentities(BATCH, { [w.ids.orders.id]: null }, { caller: 'client' });
    await w.clock.advance(100_000);
    expect(onVmss(w, BATCH)).toEqual(['shop-aks-agentpool']);
    await advanceUntil(w.clock, () => onVmss(w, BATCH).includes('id-orders'), 100_000, 1000);
  });
});

describe('MIC legacy field names', () => {
  it('rewrites ClientID/ResourceID/AzureIdentity/Selector once and records it in the ConfigMap', async () => {
    const w = buildWorld();
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders', legacy: true });
    addPod(w, { namespace: 'shop', name: 'orders-a', node: w.nodes[APPS][0], labels: { aadpodidbinding: 'orders' } });
    startMic(w, micProgram(w.opts));
    await allAssigned(w, 1);
    const id = w.store.get(w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureidentities'), 'shop', 'orders')!;
    const b = w.store.get(w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureidentitybindings'), 'shop', 'orders-binding')!;
    expect(id.spec).toEqual({ type: 0, resourceID: w.ids.orders.id, clientID: w.ids.orders.clientId });
    expect(b.spec).toEqual({ azureIdentity: 'orders', selector: 'orders' });
    const cm = w.store.get(w.store.typeOrThrow('', 'configmaps'), 'default', 'aad-pod-identity-config')!;
    expect(cm.data).toEqual({ 'type-upgrade-status': 'v1.8.17' });
  });
});

/** Client ids are fixed by the harness; read them without building a world. */
function w0Ids() {
  return { orders: '22222222-0000-4000-8000-000000000000', payments: '22222222-0000-4000-8000-000000000001' };
}
