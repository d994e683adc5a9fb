import { applyPlan, rollbackStep, verifyRollback } from './run-actions.ts';
import { Journal } from '../../src/engine/journal.ts';
import { describe, expect, it } from 'vitest';
import { StepFailedError } from '../../src/engine/errors.ts';
import { chooseNode, dispositionOf, drainStep, vmssOfNode, type NodeCandidate } from '../../src/steps/05-drain.ts';
import { contextFor, MiniAzure, FakeKube, nodeObject, podObject, recordStepData, tempDir, SUB, NODE_RG } from './steps-5-7-fakes.ts';

const cand = (name: string, servicePods: number, stablePods = servicePods, extra: Partial<NodeCandidate> = {}): NodeCandidate => ({ name, ready: true, cordoned: false, servicePods, stablePods, ...extra });

describe('drain: node choice', () => {
  it('picks the node with the fewest service pods, then fewest pods, then by name', () => {
    expect(chooseNode('pay', [cand('c', 1, 5), cand('a', 2, 2), cand('b', 1, 3)]).node?.name).toBe('b');
    expect(chooseNode('pay', [cand('b', 0, 1), cand('a', 0, 1)]).node?.name).toBe('a');
  });
  it('never drains the only Ready node of a pool, and skips cordoned and NotReady nodes', () => {
    expect(chooseNode('reports', [cand('a', 0)]).problem).toMatch(/1 Ready node; draining it would leave its pods nowhere to run/);
    expect(chooseNode('reports', [cand('a', 0), cand('b', 0, 0, { ready: false })]).problem).toMatch(/1 Ready node/);
    expect(chooseNode('pay', [cand('a', 0, 0, { cordoned: true }), cand('b', 3)]).node?.name).toBe('b');
    expect(chooseNode('pay', [cand('a', 0, 0, { cordoned: true }), cand('b', 3, 3, { cordoned: true })]).problem).toMatch(/every Ready node of pool pay is cordoned/);
  });
  it("classifies pods as kubectl drain does", () => {
    expect(dispositionOf(podObject('kube-system', 'nmi-x', 'n', { kind: 'DaemonSet', name: 'nmi' }))).toBe('daemonset');
    expect(dispositionOf({ ...podObject('kube-system', 'etcd', 'n', undefined), metadata: { name: 'etcd', annotations: { 'kubernetes.io/config.mirror': 'abc' } } })).toBe('mirror');
    expect(dispositionOf(podObject('default', 'bare', 'n', undefined))).toBe('unreplicated');
    expect(dispositionOf(podObject('default', 'api-1', 'n', { kind: 'ReplicaSet', name: 'api-5c6d' }))).toBe('evict');
  });
  it('reads the scale set instance from the providerID', () => {
    expect(vmssOfNode(nodeObject('pay', 3))).toEqual({ resourceGroup: NODE_RG.toLowerCase(), name: 'aks-pay-12345678-vmss', instanceId: '3' });
    expect(vmssOfNode({ spec: { providerID: 'kind://docker/kind/kind-worker' } })).toBeUndefined();
  });
});

/** Pool `pay`: three nodes; node 0 runs 2 api pods, node 1 one api pod + a job pod, node 2 three pods. Each node runs NMI. */
function payCluster(): { kube: FakeKube; azure: MiniAzure; nodes: string[] } {
  const kube = new FakeKube();
  const azure = new MiniAzure(kube);
  const nodes = [0, 1, 2].map((i) => kube.add(nodeObject('pay', i)).metadata!.name!);
  for (const n of nodes) kube.add(podObject('default', `nmi-${n.slice(-1)}`, n, { kind: 'DaemonSet', name: 'nmi' }, { 'app.kubernetes.io/component': 'nmi' }));
  const rs = { kind: 'ReplicaSet', name: 'api-5c6d8f9b7' };
  kube.add(podObject('payments', 'api-a', nodes[0], rs, { aadpodidbinding: 'api', app: 'api' }));
  kube.add(podObject('payments', 'api-b', nodes[0], rs, { aadpodidbinding: 'api', app: 'api' }));
  kube.add(podObject('payments', 'api-c', nodes[1], rs, { aadpodidbinding: 'api', app: 'api' }));
  kube.add(podObject('batch', 'job-1', nodes[1], { kind: 'Job', name: 'job' }, { aadpodidbinding: 'worker' }));
  kube.add(podObject('payments', 'ck-a', nodes[2], { kind: 'ReplicaSet', name: 'checkout-7f8d9c6b5' }, { aadpodidbinding: 'checkout' }));
  kube.add(podObject('payments', 'ck-b', nodes[2], { kind: 'ReplicaSet', name: 'checkout-7f8d9c6b5' }, { aadpodidbinding: 'checkout' }));
  kube.add(podObject('payments', 'ck-c', nodes[2], { kind: 'ReplicaSet', name: 'checkout-7f8d9c6b5' }, { aadpodidbinding: 'checkout' }));
  kube.add({ apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'api-5c6d8f9b7', namespace: 'payments', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'api', uid: 'd1', controller: true }] } });
  kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'api', namespace: 'payments' }, spec: { replicas: 3 }, status: { availableReplicas: 3 } });
  kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'checkout', namespace: 'payments' }, spec: { replicas: 3 }, status: { availableReplicas: 3 } });
  // The ReplicaSet controller: an evicted pod comes back on a schedulable node.
  let n = 0;
  kube.onPodGone = (pod) => {
    const owner = pod.metadata?.ownerReferences?.[0];
    if (owner?.kind !== 'ReplicaSet') return;
    const target = kube.all('Node').find((x) => !(x.spec as { unschedulable?: boolean }).unschedulable && x.metadata!.name !== (pod.spec as { nodeName: string }).nodeName);
    if (target) kube.add(podObject(pod.metadata!.namespace!, `${pod.metadata!.name}-r${n++}`, target.metadata!.name!, { kind: owner.kind, name: owner.name }, pod.metadata!.labels));
  };
  return { kube, azure, nodes };
}

function inventory(pools: string[]) {
  return {
    apiVersion: 'podid-migrate/v1',
    kind: 'Inventory',
    cluster: { name: 'prod-weu', kubeSystemUid: 'ks-uid' },
    identities: [],
    pools: pools.map((p) => ({ name: p, scaleSet: `/subscriptions/${SUB}/resourceGroups/${NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/aks-${p}-12345678-vmss` })),
  };
}

async function setup(kube: FakeKube, azure: MiniAzure, options: Record<string, unknown> = {}, pools = ['pay']) {
  const dir = tempDir();
  await recordStepData(dir, 'inventory', 'podIdentity', { nmi: { namespace: 'default', name: 'nmi', install: 'raw', version: 'v1.8.17' }, mic: { namespace: 'default', name: 'mic', replicas: 2 } });
  const ctx = await contextFor('drain', kube, azure, dir, { inventory: inventory(pools), options });
  return { dir, ctx };
}

describe('drain: plan', () => {
  it('plans a drain and a reimage per pool on the node with the fewest service pods; Job pods do not count', async () => {
    const { kube, azure, nodes } = payCluster();
    const { ctx } = await setup(kube, azure);
    const plan = await drainStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    expect(plan.actions.map((a) => [a.id, a.target, a.api])).toEqual([
      ['pool/pay/drain', `node ${nodes[1]}`, 'kube'],
      ['pool/pay/replace', 'vmss aks-pay-12345678-vmss instance 1', 'arm'],
    ]);
    expect(plan.actions[0].summary).toBe('cordon, evict 1 pod (+1 job pod now); pool pay');
    expect(plan.actions[0].writes).toEqual({ kube: 2, arm: 0 });
    // Read-only: nothing was written.
    expect(kube.writes).toEqual([]);
  });

  it('reports every blocker at once: a single-node pool, and a pod without a controller unless forced', async () => {
    const { kube, azure, nodes } = payCluster();
    kube.add(nodeObject('reports', 0));
    // On every node of the pool, so no choice of node avoids it.
    for (const [i, n] of nodes.entries()) kube.add(podObject('payments', i === 1 ? 'debug-shell' : `debug-shell-${i}`, n, undefined));
    const { ctx } = await setup(kube, azure, {}, ['pay', 'reports']);
    const plan = await drainStep.plan(ctx);
    expect(plan.blockers.map((b) => [b.code, b.subject])).toEqual([
      ['drain-unreplicated', `node ${nodes[1]} (pool pay)`],
      ['pool-cannot-drain', 'pool reports'],
    ]);
    expect(plan.blockers[0].fix).toContain('--drain-force');
    expect(plan.blockers[0].message).toContain('payments/debug-shell');
    const forced = await drainStep.plan({ ...ctx, options: { drainForce: true } });
    expect(forced.blockers.map((b) => b.code)).toEqual(['pool-cannot-drain']);
  });

  it('names a budget that can never allow the eviction as a blocker, and plans no drain for that pool', async () => {
    const { kube, azure } = payCluster();
    const { ctx } = await setup(kube, azure);
    const plan = await drainStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    kube.add({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'api-pdb', namespace: 'payments' }, spec: { maxUnavailable: 0, selector: { matchLabels: { app: 'api' } } } });
    const blocked = await drainStep.plan(ctx);
    expect(blocked.blockers.map((b) => [b.code, b.subject])).toEqual([['pdb-blocks-drain', 'PodDisruptionBudget payments/api-pdb']]);
    expect(blocked.blockers[0].message).toMatch(/allows no disruption/);
    expect(blocked.actions.filter((a) => a.kind === 'drain-node')).toEqual([]);
  });
});

describe('drain: apply, check, rollback', () => {
  it('retries a PDB refusal, waits for each pod to be gone, reimages, uncordons and records the fresh node', async () => {
    const { kube, azure, nodes } = payCluster();
    let refusals = 2;
    kube.evictionPolicy = (pod) => (pod.metadata?.name === 'api-c' && refusals-- > 0 ? { budget: 'api-pdb', healthy: 2, needed: 2 } : 'allow');
    const { ctx } = await setup(kube, azure, { evictionRetryMs: 20 });
    const plan = await drainStep.plan(ctx);
    const out = await applyPlan(drainStep, ctx, plan);
    expect(out.summary).toContain(`fresh nodes pay: ${nodes[1]}`);
    // Two refusals, then the eviction; every pod was gone before the reimage began.
    expect(kube.evictCalls).toBe(2 + 1 + 1);
    const reimageAt = kube.events.indexOf(`reimage ${nodes[1]}`);
    expect(kube.events.indexOf('gone payments/api-c')).toBeLessThan(reimageAt);
    expect(kube.events.indexOf('gone batch/job-1')).toBeLessThan(reimageAt);
    expect(kube.find('Pod', 'default', 'nmi-1')).toBeDefined();
    expect(azure.calls_).toEqual(['reimage aks-pay-12345678-vmss 1']);
    const node = kube.find('Node', undefined, nodes[1])!;
    expect((node.spec as { unschedulable?: boolean }).unschedulable).toBeUndefined();
    expect((node.status as { nodeInfo: { bootID: string } }).nodeInfo.bootID).not.toBe('boot-pay-1');
    expect(ctx.journal.getData('freshNodes')).toEqual({ pay: nodes[1] });
    const check = await drainStep.check(ctx);
    expect(check.failures).toEqual([]);
    expect(check.evidence.join('\n')).toMatch(/node .* Ready, schedulable, NMI nmi-1 Active/);
    // Re-planning after success plans nothing for the pool.
    expect((await drainStep.plan(ctx)).actions).toEqual([]);
  });

  it('resumed after a crash that followed the reimage, never reimages again while the node reboots', async () => {
    const { kube, azure, nodes } = payCluster();
    azure.reimageMs = 400;
    const { ctx } = await setup(kube, azure, { evictionRetryMs: 20 });
    const plan = await drainStep.plan(ctx);
    // The first run sends the reimage, then dies before recording it (the intent stays).
    const reimage = azure.reimageInstances.bind(azure);
    azure.reimageInstances = async (...args) => {
      await reimage(...args);
      throw new Error('killed after the reimage was sent');
    };
    await expect(applyPlan(drainStep, ctx, plan)).rejects.toThrow(/killed after the reimage was sent/);
    azure.reimageInstances = reimage;
    // The node is rebooting (NotReady, old boot id) and the instance no longer reports Updating:
    // read in the wrong order, that looked like a reimage never sent.
    expect((kube.find('Node', undefined, nodes[1])!.status as { conditions: { status: string }[] }).conditions[0].status).toBe('False');
    // As the runner does: the open action is resolved (the reimage was sent) before the step is re-planned.
    const out = await applyPlan(drainStep, ctx);
    expect(out.summary).toContain(`fresh nodes pay: ${nodes[1]}`);
    expect(azure.calls_).toEqual(['reimage aks-pay-12345678-vmss 1']);
  });

  it('fails after the drain timeout with a message naming the budget; rollback uncordons the node', async () => {
    const { kube, azure, nodes } = payCluster();
    kube.evictionPolicy = (pod) => (pod.metadata?.name === 'api-c' ? { budget: 'api-pdb', healthy: 2, needed: 2 } : 'allow');
    const { ctx, dir } = await setup(kube, azure, { evictionRetryMs: 20, drainTimeoutMs: 150 });
    const plan = await drainStep.plan(ctx);
    const error = await applyPlan(drainStep, ctx, plan).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StepFailedError);
    const e = error as StepFailedError;
    expect(e.message).toContain('pod payments/api-c cannot be evicted');
    expect(e.message).toContain('PodDisruptionBudget payments/api-pdb: The disruption budget api-pdb needs 2 healthy pods and has 2 currently; eviction retried for 0.1 s');
    expect(e.hint).toContain(`The node ${nodes[1]} (pool pay) is still cordoned`);
    expect(e.hint).toContain('podid-migrate rollback --step drain');
    expect(e.hint).toContain('--drain-timeout 15m');
    expect((kube.find('Node', undefined, nodes[1])!.spec as { unschedulable?: boolean }).unschedulable).toBe(true);
    expect(azure.calls_).toEqual([]);
    const journal = (await Journal.read(`${dir}/journal.json`))!;
    expect(journal.steps.drain.actions.at(-1)).toMatchObject({ actionId: 'pool/pay/drain', status: 'failed' });

    const rb = await rollbackStep(ctx);
    expect(rb.summary).toBe(`uncordoned ${nodes[1]}`);
    expect((kube.find('Node', undefined, nodes[1])!.spec as { unschedulable?: boolean }).unschedulable).toBeUndefined();
    expect((await verifyRollback(ctx)).failures).toEqual([]);
  });

  it('strategy none uncordons the same node; strategy delete waits for the autoscaler to add a node', async () => {
    const a = payCluster();
    const one = await setup(a.kube, a.azure, { drainStrategy: 'none' });
    const p1 = await drainStep.plan(one.ctx);
    expect(p1.actions[1]).toMatchObject({ id: 'pool/pay/replace', api: 'kube', summary: 'uncordon (same node, not replaced)' });
    await applyPlan(drainStep, one.ctx, p1);
    expect(a.azure.calls_).toEqual([]);
    expect(one.ctx.journal.getData('freshNodes')).toEqual({ pay: a.nodes[1] });

    const b = payCluster();
    b.azure.autoscale = true;
    const two = await setup(b.kube, b.azure, { drainStrategy: 'delete' });
    const p2 = await drainStep.plan(two.ctx);
    expect(p2.notes.join('\n')).toContain('restored by the cluster autoscaler');
    const out = await applyPlan(drainStep, two.ctx, p2);
    expect(b.azure.calls_).toEqual(['delete aks-pay-12345678-vmss 1']);
    const fresh = (two.ctx.journal.getData('freshNodes') as Record<string, string>).pay;
    expect(fresh).toBe('aks-pay-12345678-vmss00002s');
    expect(out.summary).toContain(fresh);
    const rb = await rollbackStep(two.ctx);
    expect(rb.summary).toContain('stays deleted (a reimage or delete cannot be undone');
  });
});
