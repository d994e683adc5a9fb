import { applyPlan, rollbackStep, verifyRollback } from './run-actions.ts';
import { describe, expect, it } from 'vitest';
import { inventoryStep } from '../../src/steps/01-inventory.ts';
import { assignStep, PROTECT_ACTION_ID } from '../../src/steps/02-assign.ts';
import { nmiManagedStep } from '../../src/steps/03-nmi-managed.ts';
import { micScaleStep } from '../../src/steps/04-mic-scale.ts';
import { loadInventory } from '../../src/steps/lib/inventory-model.ts';
import { MIC_LEADER_ANNOTATION, micLeaseLock, parseImmutableUserMsis, releaseOrphanedMicLease } from '../../src/steps/lib/pod-identity.ts';
import type { KubeObject } from '../../src/kube/gateway.ts';
import type { StepId } from '../../src/engine/step.ts';
import { nodeObject, podObject } from './steps-5-7-fakes.ts';
import { contextFor, idOf, KUBELET_ID, standardCluster, tempDir, type FakeAzure, type FakeKube } from './fakes.ts';

/** Runs the inventory step for real over the fakes and returns a context factory for later steps. */
async function afterInventory(kube: FakeKube, azure: FakeAzure, options: Record<string, unknown> = {}) {
  const dir = tempDir();
  const inv = await contextFor('inventory', kube, azure, dir);
  await applyPlan(inventoryStep, inv, await inventoryStep.plan(inv));
  const document = await loadInventory(inv.inventoryPath);
  return (step: StepId) => contextFor(step, kube, azure, dir, { inventory: document, options });
}

function micArgs(kube: FakeKube): string[] {
  return (kube.find('Deployment', 'default', 'mic')!.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args;
}

describe('assign', () => {
  it('protects every user-assigned identity first, then adds only the missing ids, one PATCH per scale set', async () => {
    const { kube, azure } = standardCluster({ micArgs: ['--logtostderr', '--immutable-user-msis=hand-picked'] });
    // api-id already on pay (MIC put it there); an add-on identity too.
    azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities[idOf('api-id').toUpperCase()] = { clientId: 'x' };
    azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities[idOf('omsagent')] = { clientId: 'y' };
    const ctxFor = await afterInventory(kube, azure);
    const ctx = await ctxFor('assign');
    const plan = await assignStep.plan(ctx);
    expect(plan.actions.map((a) => `${a.op} ${a.target}  ${a.summary}`)).toEqual([
      '~ deployment default/mic  --immutable-user-msis: + api-id, + shared-storage-id (keeps 1 existing)',
      '~ vmss aks-batch-12345678-vmss  identities: + shared-storage-id (keeps 1 existing)',
      '~ vmss aks-pay-12345678-vmss  identities: + shared-storage-id (keeps 3 existing)',
    ]);
    expect(plan.actions.filter((a) => a.api === 'arm').reduce((n, a) => n + a.writes.arm, 0)).toBe(2);

    await applyPlan(assignStep, ctx, plan);
    expect(parseImmutableUserMsis(micArgs(kube))).toEqual(['hand-picked', 'client-api-id', 'client-shared-storage-id']);
    expect(azure.patches).toEqual([
      { vmss: 'aks-batch-12345678-vmss', add: [idOf('shared-storage-id')], remove: [] },
      { vmss: 'aks-pay-12345678-vmss', add: [idOf('shared-storage-id')], remove: [] },
    ]);
    expect(azure.upgrades).toEqual([]);
    expect((await assignStep.check(ctx)).failures).toEqual([]);
    // Idempotent: nothing left to do.
    expect((await assignStep.plan(await ctxFor('assign'))).actions).toEqual([]);

    // Rollback removes only what this step added and restores MIC's args exactly.
    const rb = await ctxFor('assign');
    await rollbackStep(rb);
    expect(micArgs(kube)).toEqual(['--logtostderr', '--immutable-user-msis=hand-picked']);
    const pay = Object.keys(azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities).sort();
    expect(pay).toEqual([KUBELET_ID, idOf('api-id').toUpperCase(), idOf('omsagent')].sort());
    expect(Object.keys(azure.sets.get('aks-batch-12345678-vmss')!.userAssignedIdentities)).toEqual([KUBELET_ID]);
    expect((await verifyRollback(rb)).failures).toEqual([]);
  });

  it('after a crash between the PATCH and its done record, re-planning adds nothing twice and rollback still removes the added id', async () => {
    const { kube, azure } = standardCluster();
    const ctxFor = await afterInventory(kube, azure);
    const ctx = await ctxFor('assign');
    const plan = await assignStep.plan(ctx);
    // The ARM call succeeds but the process dies before the done record: simulated by a throw after the write.
    const original = azure.assignIdentities.bind(azure);
    azure.assignIdentities = async (...args) => {
      await original(...args);
      throw new Error('killed after the write');
    };
    await expect(applyPlan(assignStep, ctx, plan)).rejects.toThrow(/killed/);
    azure.assignIdentities = original;
    const patchesBefore = azure.patches.length;
    const resumed = await assignStep.plan(await ctxFor('assign'));
    expect(resumed.actions.filter((a) => a.id.startsWith('vmss/'))).toEqual([]);
    await applyPlan(assignStep, await ctxFor('assign'), resumed);
    expect(azure.patches.length).toBe(patchesBefore);
    await rollbackStep(await ctxFor('assign'));
    for (const set of azure.sets.values()) expect(Object.keys(set.userAssignedIdentities)).toEqual([KUBELET_ID]);
  });

  it('skips the protect action only under the test switch, and upgrades stale instances in small batches only with --upgrade-instances, as its own action', async () => {
    const { kube, azure } = standardCluster();
    const ctxFor = await afterInventory(kube, azure, { skipProtect: true, upgradeInstances: true });
    const instances = Array.from({ length: 12 }, (_, i) => ({ instanceId: String(i), name: `i${i}`, latestModelApplied: i % 2 === 0 ? false : true, identityIds: [] }));
    azure.instances.set('aks-batch-12345678-vmss', instances);
    const ctx = await ctxFor('assign');
    const plan = await assignStep.plan(ctx);
    expect(plan.actions.some((a) => a.id === PROTECT_ACTION_ID)).toBe(false);
    expect(plan.notes.join()).toMatch(/protect skipped/);
    // Each scale set's upgrade is its own action, after every identity PATCH.
    expect(plan.actions.map((a) => a.kind)).toEqual(['vmss-add-identities', 'vmss-add-identities', 'vmss-upgrade-instances', 'vmss-upgrade-instances']);
    await applyPlan(assignStep, ctx, plan);
    // 12 instances: batches of ceil(12 * 20%) = 3, only the 6 that report latestModelApplied=false.
    expect(azure.upgrades).toEqual([
      { vmss: 'aks-batch-12345678-vmss', instanceIds: ['0', '2', '4'] },
      { vmss: 'aks-batch-12345678-vmss', instanceIds: ['6', '8', '10'] },
    ]);
    expect(parseImmutableUserMsis(micArgs(kube))).toEqual([]);
  });
});

describe('nmi-managed', () => {
  it('patches args and strategy in place and rollback restores the container exactly', async () => {
    const { kube, azure } = standardCluster({ helm: true, nmiArgs: ['--node=$(NODE_NAME)', '--http-probe-port=8085', '--operation-mode=standard', '--kubelet-config=/etc/default/kubelet'] });
    const ds = kube.find('DaemonSet', 'default', 'aad-pod-identity-nmi')!;
    (ds.spec as { updateStrategy: unknown }).updateStrategy = { type: 'OnDelete' };
    const original = structuredClone(ds.spec);
    const ctxFor = await afterInventory(kube, azure);
    const ctx = await ctxFor('nmi-managed');
    // The in-place rollout (the drain rollout is covered end to end: steps-1-4-crash-nmi-mic, -rollback-nmi-managed).
    ctx.options.nmiRollout = 'in-place';
    const plan = await nmiManagedStep.plan(ctx);
    expect(plan.actions.map((a) => `${a.op} ${a.target}  ${a.summary}`)).toEqual([
      '~ daemonset default/aad-pod-identity-nmi  args: - --operation-mode=standard, + --operation-mode=managed, + --forceNamespaced; updateStrategy: RollingUpdate maxUnavailable 1 (NMI v1.8.17, one node at a time)',
    ]);
    expect(plan.notes.join('\n')).toContain('helm upgrade pi aad-pod-identity/aad-pod-identity -n default --reuse-values --set operationMode=managed');
    kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nmi-a', namespace: 'default', labels: { component: 'nmi' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'aad-pod-identity-nmi', uid: 'u', controller: true }] }, spec: { nodeName: 'aks-pay-12345678-vmss000000' } });
    await applyPlan(nmiManagedStep, ctx, plan);
    const after = kube.find('DaemonSet', 'default', 'aad-pod-identity-nmi')!.spec as { updateStrategy: unknown; template: { spec: { containers: { args: string[]; image: string }[] } } };
    expect(after.template.spec.containers[0].args).toEqual(['--node=$(NODE_NAME)', '--http-probe-port=8085', '--operation-mode=managed', '--forceNamespaced', '--kubelet-config=/etc/default/kubelet']);
    expect(after.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
    expect((await nmiManagedStep.plan(await ctxFor('nmi-managed'))).actions).toEqual([]);

    await rollbackStep(await ctxFor('nmi-managed'));
    expect(kube.find('DaemonSet', 'default', 'aad-pod-identity-nmi')!.spec).toEqual(original);
  });

  it('plans the drain rollout: OnDelete with the template, one restart per node in waves of one node per pool, the strategy put back; a bare pod blocks with its flag', async () => {
    const { kube, azure } = standardCluster();
    const nodes = [nodeObject('pay', 0), nodeObject('pay', 1), nodeObject('batch', 0)].map((n) => kube.add(n).metadata!.name!);
    const dsArgs = (kube.find('DaemonSet', 'default', 'nmi')!.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args;
    for (const n of nodes) {
      kube.add({ ...podObject('default', `nmi-${n}`, n, { kind: 'DaemonSet', name: 'nmi' }, { component: 'nmi' }), spec: { nodeName: n, containers: [{ name: 'nmi', args: dsArgs }] } });
      kube.add(podObject('payments', `api-${n}`, n, { kind: 'ReplicaSet', name: 'api-5c6d8f9b7' }, { aadpodidbinding: 'api' }));
    }
    const ctxFor = await afterInventory(kube, azure);
    const plan = await nmiManagedStep.plan(await ctxFor('nmi-managed'));
    expect(plan.blockers).toEqual([]);
    expect(plan.actions.map((a) => [a.id, a.kind, a.parallelGroup ?? '-', a.parallelLimit ?? '-'])).toEqual([
      ['nmi/on-delete', 'patch-container', '-', '-'],
      [`nmi/node/${nodes[2]}`, 'nmi-node-rollout', 'nmi-wave-0', 2],
      [`nmi/node/${nodes[0]}`, 'nmi-node-rollout', 'nmi-wave-0', 2],
      ['nmi/cordon-old-nmi', 'cordon-nodes', '-', '-'],
      [`nmi/node/${nodes[1]}`, 'nmi-node-rollout', '-', '-'],
      ['nmi/restore-update-strategy', 'patch-container', '-', '-'],
    ]);
    expect((plan.actions[0].details as { updateStrategy: unknown }).updateStrategy).toEqual({ type: 'OnDelete' });
    expect((plan.actions.at(-1)!.details as { undoneWith?: string }).undoneWith).toBe('nmi/on-delete');
    // The first wave: cordon, an eviction per pod (the scenario's archiver and our api pod), the
    // NMI pod delete, the uncordon; up to the other wave's pods more, should they land here first.
    expect(plan.actions[1].writes).toEqual({ kube: 5, arm: 0 });
    expect(plan.actions[1].writesUpTo!.kube).toBeGreaterThan(5);
    // Then every node still on the old NMI is cordoned (one write each), so pods evicted from it
    // start only on the nodes already switched; its own action does not cordon it again.
    expect(plan.actions[3].details).toEqual({ nodes: [nodes[1]], reason: 'still on the old NMI' });
    expect(plan.actions[3].writes).toEqual({ kube: 1, arm: 0 });
    // Its api pod's eviction, the NMI pod delete, the uncordon.
    expect(plan.actions[4].writes).toEqual({ kube: 3, arm: 0 });
    expect(plan.actions[4].details).toMatchObject({ cordonedWith: 'nmi/cordon-old-nmi', laterInPool: [] });
    expect(plan.notes.join('\n')).toMatch(/NMI rollout drain .* evicts \d+ pods \(\d+ with a pod identity\) from 3 nodes, so no service pod is on a node while its NMI restarts/);

    kube.add(podObject('payments', 'debug-shell', nodes[1], undefined));
    const blocked = await nmiManagedStep.plan(await ctxFor('nmi-managed'));
    expect(blocked.blockers.map((b) => [b.code, b.subject])).toEqual([['drain-unreplicated', `node ${nodes[1]} (pool pay)`]]);
    expect(blocked.blockers[0].message).toContain('payments/debug-shell');
    expect(blocked.blockers[0].fix).toMatch(/--drain-force[\s\S]*--nmi-rollout in-place/);
  });

  it('waits for Active bodies, not status codes: a Not Active NMI fails the rollout wait', async () => {
    const { kube, azure } = standardCluster();
    const ctxFor = await afterInventory(kube, azure);
    kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nmi-a', namespace: 'default', labels: { component: 'nmi' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'nmi', uid: 'u', controller: true }] } });
    kube.health.set('default/nmi-a:8085', 'Not Active');
    const ctx = await ctxFor('nmi-managed');
    await expect(applyPlan(nmiManagedStep, ctx, await nmiManagedStep.plan(ctx))).rejects.toThrow(/every NMI pod of default\/nmi reporting Active/);
  });
});

describe('mic-scale', () => {
  it('records the count, scales to zero, waits for no pod, and rollback brings a leader back', async () => {
    const { kube, azure } = standardCluster();
    const ctxFor = await afterInventory(kube, azure);
    const ctx = await ctxFor('mic-scale');
    const plan = await micScaleStep.plan(ctx);
    expect(plan.actions.map((a) => `${a.op} ${a.target}  ${a.summary}`)).toEqual(['~ deployment default/mic  replicas: 2 -> 0 (count recorded for rollback)']);
    await applyPlan(micScaleStep, ctx, plan);
    expect(ctx.journal.getData('mic')).toEqual({ namespace: 'default', name: 'mic', replicas: 2 });
    expect(await kube.list({ apiVersion: 'v1', kind: 'Pod' }, { namespace: 'default', labelSelector: 'app=mic' })).toEqual([]);
    expect((await micScaleStep.check(ctx)).ok).toBe(true);
    // A resumed plan at zero keeps the recorded count and does nothing.
    const again = await ctxFor('mic-scale');
    expect((await micScaleStep.plan(again)).actions).toEqual([]);
    expect(again.journal.getData('mic')).toEqual({ namespace: 'default', name: 'mic', replicas: 2 });

    kube.health.set('default/mic-0:8080', 'Not Active');
    const rb = await ctxFor('mic-scale');
    const out = await rollbackStep(rb);
    expect(out.summary).toBe('MIC back at 2 replicas; leader default/mic-1 reports Active');
    expect((kube.find('Deployment', 'default', 'mic')!.spec as { replicas: number }).replicas).toBe(2);
    expect((await verifyRollback(rb)).failures).toEqual([]);
  });
});

describe('MIC lease hand-over', () => {
  const lease = (holder: string) => JSON.stringify({ holderIdentity: holder, leaseDurationSeconds: 15, acquireTime: '2026-01-01T00:00:00Z', renewTime: '2026-01-01T00:00:10Z', leaderTransitions: 3 });
  const withLease = (holder: string) => {
    const { kube } = standardCluster();
    kube.add({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'aad-pod-identity-mic', namespace: 'default', annotations: { [MIC_LEADER_ANNOTATION]: lease(holder) } } });
    return kube;
  };
  const mic = { args: ['--logtostderr'], container: 'mic' };
  const pod = (name: string, extra: Record<string, unknown> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', ...extra }, status: { phase: 'Running', containerStatuses: [{ name: 'mic', state: { running: {} } }] } });
  const record = (kube: FakeKube) => JSON.parse(kube.find('Endpoints', 'default', 'aad-pod-identity-mic')!.metadata!.annotations![MIC_LEADER_ANNOTATION]);

  it('releases the lease of a leader whose pod is gone, as client-go does on a clean exit, guarded by a test of the record', async () => {
    const kube = withLease('mic-old-1');
    expect(await releaseOrphanedMicLease(kube, mic, [pod('mic-new-1')])).toBe('mic-old-1');
    expect(record(kube)).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1, leaderTransitions: 3 });
    const patch = kube.writes.find((w) => w.kind === 'Endpoints')!.body as { op: string; value: string }[];
    expect(patch[0]).toEqual({ op: 'test', path: '/metadata/annotations/control-plane.alpha.kubernetes.io~1leader', value: lease('mic-old-1') });
    // Released already: nothing more to do.
    expect(await releaseOrphanedMicLease(kube, mic, [pod('mic-new-1')])).toBeUndefined();
  });

  it('never releases a live leader, even one being deleted while its container still runs; a dead one being deleted is released', async () => {
    const kube = withLease('mic-old-1');
    expect(await releaseOrphanedMicLease(kube, mic, [pod('mic-old-1')])).toBeUndefined();
    expect(await releaseOrphanedMicLease(kube, mic, [pod('mic-old-1', { deletionTimestamp: '2026-01-01T00:00:11Z' })])).toBeUndefined();
    expect(kube.writes.filter((w) => w.kind === 'Endpoints')).toEqual([]);
    const dead = { ...pod('mic-old-1', { deletionTimestamp: '2026-01-01T00:00:11Z' }), status: { phase: 'Running', containerStatuses: [{ name: 'mic', state: { terminated: { exitCode: 2 } } }] } };
    expect(await releaseOrphanedMicLease(kube, mic, [dead])).toBe('mic-old-1');
  });

  it('leaves a record that changed under it alone (the test op fails with 422) and reads the lock from --leader-election-* flags', async () => {
    const kube = withLease('mic-old-1');
    const racing = Object.assign(Object.create(kube) as FakeKube, {
      patch: async () => {
        throw Object.assign(new Error('the test operation failed'), { status: 422 });
      },
    });
    expect(await releaseOrphanedMicLease(racing, mic, [])).toBeUndefined();
    expect(micLeaseLock(['--leader-election-namespace=kube-system', '--leader-election-name', 'mic-lock'])).toEqual({ namespace: 'kube-system', name: 'mic-lock' });
    // No lock where the flags say: nothing to release.
    expect(await releaseOrphanedMicLease(kube, { ...mic, args: ['--leader-election-namespace=kube-system'] }, [])).toBeUndefined();
  });
});
