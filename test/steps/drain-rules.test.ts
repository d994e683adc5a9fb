import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/kube/gateway.ts';
import {
  analyseNodeDrain,
  budgetStanding,
  budgetSelects,
  candidateOf,
  chooseNode,
  dispositionOf,
  drainBlockers,
  LOCAL_STORAGE_FATAL,
  podVerdict,
  scaledValue,
  UNMANAGED_FATAL,
  vmssOfNode,
} from '../../src/steps/lib/drain-rules.ts';
import { nodeObject, podObject, NODE_RG } from './steps-5-7-fakes.ts';

const rs = (name: string) => ({ kind: 'ReplicaSet', name });

function ready(pod: KubeObject, isReady = true): KubeObject {
  return { ...pod, status: { phase: 'Running', conditions: [{ type: 'Ready', status: isReady ? 'True' : 'False' }] } };
}

function withVolumes(pod: KubeObject, volumes: unknown[]): KubeObject {
  return { ...pod, spec: { ...(pod.spec as object), volumes } };
}

function pdb(ns: string, name: string, spec: Record<string, unknown>, status?: Record<string, unknown>): KubeObject {
  return { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { namespace: ns, name, generation: 1 }, spec, ...(status ? { status: { observedGeneration: 1, ...status } } : {}) };
}

/** `replicas` Ready pods of Deployment `app` in `payments`, the first `onNode` on node `n0`, the rest on `n1`. */
function app(app: string, replicas: number, onNode: number): KubeObject[] {
  return Array.from({ length: replicas }, (_, i) => ready(podObject('payments', `${app}-${i}`, i < onNode ? 'n0' : 'n1', rs(`${app}-5c6d8f9b7`), { app, aadpodidbinding: app })));
}

describe('drain rules: the filter chain', () => {
  it('skips DaemonSet and mirror pods with kubectl\'s reasons', () => {
    expect(podVerdict(podObject('kube-system', 'nmi-x', 'n', { kind: 'DaemonSet', name: 'nmi' }))).toMatchObject({ pod: 'kube-system/nmi-x', action: 'skip', rule: 'daemonset', reason: 'ignoring DaemonSet-managed Pods' });
    const mirror = { ...podObject('kube-system', 'etcd-n', 'n', undefined), metadata: { name: 'etcd-n', namespace: 'kube-system', annotations: { 'kubernetes.io/config.mirror': 'abc' } } };
    expect(podVerdict(mirror)).toMatchObject({ action: 'skip', rule: 'mirror' });
    // A mirror pod has no controller, but it is skipped, never refused as unreplicated.
    expect(podVerdict(mirror, { force: false }).action).toBe('skip');
  });

  it('refuses emptyDir pods without --delete-emptydir-data and evicts them with it', () => {
    const p = withVolumes(podObject('batch', 'cache-0', 'n', rs('cache-7f8d9c6b5')), [{ name: 'scratch', emptyDir: {} }]);
    expect(podVerdict(p)).toMatchObject({ action: 'block', rule: 'local-storage', flag: '--delete-emptydir-data', reason: LOCAL_STORAGE_FATAL });
    expect(podVerdict(p, { deleteEmptyDirData: true })).toMatchObject({ action: 'evict', rule: 'local-storage', flag: '--delete-emptydir-data', reason: 'deleting Pods with local storage' });
    // A configMap or PVC volume is not local storage.
    expect(podVerdict(withVolumes(podObject('batch', 'c', 'n', rs('c-7f8d9c6b5')), [{ name: 'cfg', configMap: { name: 'x' } }])).action).toBe('evict');
  });

  it('refuses pods without a controller without --drain-force and evicts them with it', () => {
    const bare = podObject('default', 'debug', 'n', undefined);
    expect(podVerdict(bare)).toMatchObject({ action: 'block', rule: 'unreplicated', flag: '--drain-force', reason: UNMANAGED_FATAL });
    expect(podVerdict(bare, { force: true })).toMatchObject({ action: 'evict', rule: 'unreplicated', flag: '--drain-force' });
  });

  it('names both flags for a bare pod with an emptyDir, the first in kubectl\'s order', () => {
    const p = withVolumes(podObject('default', 'scratchpad', 'n', undefined), [{ name: 's', emptyDir: { medium: 'Memory' } }]);
    const v = podVerdict(p);
    expect(v).toMatchObject({ action: 'block', flag: '--delete-emptydir-data', flags: ['--delete-emptydir-data', '--drain-force'] });
    expect(v.reason).toContain(LOCAL_STORAGE_FATAL);
    expect(v.reason).toContain(UNMANAGED_FATAL);
    expect(podVerdict(p, { force: true })).toMatchObject({ action: 'block', flag: '--delete-emptydir-data' });
    expect(podVerdict(p, { force: true, deleteEmptyDirData: true }).action).toBe('evict');
  });

  it('waits for terminating pods and deletes finished ones, whatever their volumes or owners', () => {
    const going = { ...podObject('default', 'bare', 'n', undefined), metadata: { name: 'bare', namespace: 'default', deletionTimestamp: '2026-01-01T00:00:00Z' } };
    expect(podVerdict(going)).toMatchObject({ action: 'wait', rule: 'terminating' });
    const done = { ...withVolumes(podObject('batch', 'job-1', 'n', undefined), [{ name: 's', emptyDir: {} }]), status: { phase: 'Succeeded' } };
    expect(podVerdict(done)).toMatchObject({ action: 'delete', rule: 'finished' });
    const failedDs = { ...podObject('kube-system', 'nmi-old', 'n', { kind: 'DaemonSet', name: 'nmi' }), status: { phase: 'Failed' } };
    expect(podVerdict(failedDs).action).toBe('delete');
  });

  it('treats a pod of a DaemonSet that no longer exists as orphaned (deleted only with --drain-force)', () => {
    const p = podObject('default', 'nmi-z', 'n', { kind: 'DaemonSet', name: 'nmi' });
    const existing = new Set(['kube-system/nmi']);
    expect(podVerdict(p, { existingDaemonSets: existing })).toMatchObject({ action: 'block', rule: 'daemonset-orphaned', flag: '--drain-force' });
    expect(podVerdict(p, { existingDaemonSets: existing, force: true })).toMatchObject({ action: 'evict', rule: 'daemonset-orphaned' });
    expect(podVerdict(p, { existingDaemonSets: new Set(['default/nmi']) }).action).toBe('skip');
  });

  it('keeps the coarse disposition of the drain step', () => {
    expect(dispositionOf(podObject('kube-system', 'nmi-x', 'n', { kind: 'DaemonSet', name: 'nmi' }))).toBe('daemonset');
    expect(dispositionOf(podObject('default', 'bare', 'n', undefined))).toBe('unreplicated');
    expect(dispositionOf(podObject('default', 'api-1', 'n', rs('api-5c6d')))).toBe('evict');
    expect(vmssOfNode(nodeObject('pay', 3))).toEqual({ resourceGroup: NODE_RG.toLowerCase(), name: 'aks-pay-12345678-vmss', instanceId: '3' });
  });
});

describe('drain rules: PodDisruptionBudgets', () => {
  it('scales int-or-percent values rounding up, as the disruption controller does', () => {
    expect(scaledValue(2, 10)).toBe(2);
    expect(scaledValue('50%', 3)).toBe(2);
    expect(scaledValue('100%', 3)).toBe(3);
    expect(scaledValue('1%', 3)).toBe(1);
    expect(() => scaledValue('half', 3)).toThrow(/int-or-percent/);
  });

  it('matches selectors with labels and expressions; a missing selector selects nothing', () => {
    const pod = podObject('payments', 'api-0', 'n0', rs('api-5c6d8f9b7'), { app: 'api', tier: 'web' });
    expect(budgetSelects(pdb('payments', 'a', { selector: { matchLabels: { app: 'api' } } }), pod)).toBe(true);
    expect(budgetSelects(pdb('other', 'a', { selector: { matchLabels: { app: 'api' } } }), pod)).toBe(false);
    expect(budgetSelects(pdb('payments', 'a', { selector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }] } }), pod)).toBe(true);
    expect(budgetSelects(pdb('payments', 'a', { selector: { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['web'] }] } }), pod)).toBe(false);
    expect(budgetSelects(pdb('payments', 'a', { selector: { matchExpressions: [{ key: 'canary', operator: 'DoesNotExist' }] } }), pod)).toBe(true);
    expect(budgetSelects(pdb('payments', 'a', { selector: {} }), pod)).toBe(true);
    expect(budgetSelects(pdb('payments', 'a', {}), pod)).toBe(false);
  });

  it.each([
    ['minAvailable equal to the replicas', { minAvailable: 3 }, 'never'],
    ['maxUnavailable: 0', { maxUnavailable: 0 }, 'never'],
    ['maxUnavailable: 0%', { maxUnavailable: '0%' }, 'never'],
    ['minAvailable: 100%', { minAvailable: '100%' }, 'never'],
    ['minAvailable: 90% of 3 rounds up to 3', { minAvailable: '90%' }, 'never'],
    ['minAvailable: 2 of 3', { minAvailable: 2 }, 'allows'],
    ['maxUnavailable: 34% of 3 rounds up to 2', { maxUnavailable: '34%' }, 'allows'],
    ['minAvailable: 66% of 3 rounds up to 2', { minAvailable: '66%' }, 'allows'],
  ])('%s: %s', (_what, spec, state) => {
    const pods = app('api', 3, 1);
    expect(budgetStanding(pdb('payments', 'api', { selector: { matchLabels: { app: 'api' } }, ...spec }), pods).state).toBe(state);
  });

  it('tells a budget exhausted for now (a pod is starting) from one that never allows an eviction', () => {
    const pods = app('api', 3, 1);
    pods[2] = ready(pods[2], false);
    const b = pdb('payments', 'api', { selector: { matchLabels: { app: 'api' } }, minAvailable: 2 });
    expect(budgetStanding(b, pods)).toMatchObject({ state: 'exhausted', currentHealthy: 2, desiredHealthy: 2, disruptionsAllowed: 0, expectedPods: 3 });
    // The controller's status (it counts replicas, and leaves out pods evicted a moment ago) wins when current.
    const fromStatus = pdb('payments', 'api', { selector: { matchLabels: { app: 'api' } }, maxUnavailable: 1 }, { expectedPods: 4, currentHealthy: 3 });
    expect(budgetStanding(fromStatus, app('api', 3, 1))).toMatchObject({ expectedPods: 4, desiredHealthy: 3, currentHealthy: 3, state: 'exhausted' });
  });

  it('blocks a node drain on a structural budget, naming the budget and its pods on the node, with fixes', () => {
    const pods = [...app('api', 2, 2), ...app('checkout', 2, 1), ready(podObject('kube-system', 'nmi-0', 'n0', { kind: 'DaemonSet', name: 'nmi' }))];
    const pdbs = [pdb('payments', 'api', { selector: { matchLabels: { app: 'api' } }, minAvailable: 2 }), pdb('payments', 'checkout', { selector: { matchLabels: { app: 'checkout' } }, maxUnavailable: 1 })];
    const a = analyseNodeDrain({ node: 'n0', pool: 'pay', pods, pdbs });
    expect(a.verdicts.map((v) => [v.pod, v.action, v.rule])).toEqual([
      ['kube-system/nmi-0', 'skip', 'daemonset'],
      ['payments/api-0', 'block', 'pdb-never-allows'],
      ['payments/api-1', 'block', 'pdb-never-allows'],
      ['payments/checkout-0', 'evict', 'controlled'],
    ]);
    expect(a.evict).toEqual(['payments/checkout-0']);
    const blockers = drainBlockers(a);
    expect(blockers).toHaveLength(1);
    expect(blockers[0]).toMatchObject({ code: 'pdb-blocks-drain', subject: 'PodDisruptionBudget payments/api' });
    expect(blockers[0].message).toContain('payments/api-0, payments/api-1');
    expect(blockers[0].message).toContain('minAvailable: 2');
    expect(blockers[0].fix).toContain('kubectl scale -n payments deployment/api --replicas=3');
    expect(blockers[0].fix).toContain(`kubectl patch pdb -n payments api --type merge -p '{"spec":{"minAvailable":1}}'`);
    expect(blockers[0].fix).toContain('skip the drain of pool pay');
  });

  it('does not offer scaling for maxUnavailable: 0 (it grows with the replicas)', () => {
    const a = analyseNodeDrain({ node: 'n0', pods: app('api', 3, 1), pdbs: [pdb('payments', 'api', { selector: { matchLabels: { app: 'api' } }, maxUnavailable: 0 })] });
    const [b] = drainBlockers(a);
    expect(b.fix).not.toContain('kubectl scale');
    expect(b.fix).toContain('"maxUnavailable":1');
  });

  it('waits on an exhausted budget instead of blocking, and blocks a pod selected by two budgets', () => {
    const pods = app('api', 3, 1);
    pods[2] = ready(pods[2], false);
    const one = analyseNodeDrain({ node: 'n0', pods, pdbs: [pdb('payments', 'api', { selector: { matchLabels: { app: 'api' } }, minAvailable: 2 })] });
    expect(one.verdicts[0]).toMatchObject({ action: 'wait', rule: 'pdb-exhausted', budgets: ['payments/api'] });
    expect(one.blockers).toEqual([]);
    expect(one.wait).toEqual(['payments/api-0']);
    const two = analyseNodeDrain({
      node: 'n0',
      pods: app('api', 3, 1),
      pdbs: [pdb('payments', 'a', { selector: { matchLabels: { app: 'api' } }, minAvailable: 1 }), pdb('payments', 'b', { selector: {}, maxUnavailable: 1 })],
    });
    expect(two.verdicts[0]).toMatchObject({ action: 'block', rule: 'pdb-multiple', budgets: ['payments/a', 'payments/b'] });
    expect(two.verdicts[0].reason).toMatch(/more than one PodDisruptionBudget/);
  });

  it('groups flag blockers per flag, naming every pod', () => {
    const pods = [
      podObject('default', 'bare', 'n0', undefined),
      withVolumes(podObject('batch', 'cache', 'n0', rs('cache-7f8d9c6b5')), [{ name: 's', emptyDir: {} }]),
      withVolumes(podObject('default', 'both', 'n0', undefined), [{ name: 's', emptyDir: {} }]),
    ];
    const bs = drainBlockers(analyseNodeDrain({ node: 'n0', pool: 'batch', pods, pdbs: [] }));
    expect(bs.map((b) => b.code)).toEqual(['drain-local-storage', 'drain-unreplicated']);
    expect(bs[0].message).toContain('batch/cache, default/both');
    expect(bs[0].fix).toContain('--delete-emptydir-data');
    expect(bs[1].message).toContain('default/bare, default/both');
    expect(bs[1].fix).toContain('--drain-force');
    expect(drainBlockers(analyseNodeDrain({ node: 'n0', pods, pdbs: [], options: { force: true, deleteEmptyDirData: true } }))).toEqual([]);
  });
});

describe('drain rules: node choice', () => {
  it('counts pods as the drain step does and prefers a node without blocked pods', () => {
    const n0 = { ...nodeObject('pay', 0), metadata: { ...nodeObject('pay', 0).metadata, name: 'n0' } };
    const n1 = { ...nodeObject('pay', 1), metadata: { ...nodeObject('pay', 1).metadata, name: 'n1' } };
    const on0 = [podObject('payments', 'api-0', 'n0', rs('api-5c6d8f9b7'), { aadpodidbinding: 'api' }), podObject('default', 'bare', 'n0', undefined)];
    const on1 = [...[1, 2, 3].map((i) => podObject('payments', `api-${i}`, 'n1', rs('api-5c6d8f9b7'), { aadpodidbinding: 'api' })), podObject('kube-system', 'nmi', 'n1', { kind: 'DaemonSet', name: 'nmi' })];
    const c0 = candidateOf(n0, on0);
    expect(c0).toMatchObject({ name: 'n0', ready: true, cordoned: false, servicePods: 1, stablePods: 2, blockedPods: 1 });
    expect(chooseNode('pay', [c0, candidateOf(n1, on1)]).node?.name).toBe('n1');
    expect(chooseNode('pay', [candidateOf(n0, on0, { force: true }), candidateOf(n1, on1)]).node?.name).toBe('n0');
    expect(chooseNode('pay', [c0]).problem).toMatch(/1 Ready node/);
  });
});
