import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/kube/gateway.ts';
import { analyseNmiBypass, bypassOf, bypassWarnings, findBypassPods, matchingExceptions, usesHostNetwork } from '../../src/steps/lib/nmi-bypass.ts';
import { nodeObject, podObject } from './steps-5-7-fakes.ts';

const KUBELET = '/subscriptions/s/resourceGroups/MC_rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/prod-agentpool';
const id = (name: string) => `/subscriptions/s/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;

function hostNet(pod: KubeObject): KubeObject {
  return { ...pod, spec: { ...(pod.spec as object), hostNetwork: true } };
}

function exception(ns: string, name: string, podLabels: Record<string, string>): KubeObject {
  return { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzurePodIdentityException', metadata: { namespace: ns, name }, spec: { podLabels } };
}

const rs = (n: string) => ({ kind: 'ReplicaSet', name: n });

describe('pods that bypass NMI', () => {
  it('finds hostNetwork pods and pods matched by an exception in their own namespace (value case-insensitive)', () => {
    const exc = [exception('payments', 'legacy', { app: 'Legacy-Batch' }), exception('other', 'far', { app: 'api' })];
    expect(usesHostNetwork(hostNet(podObject('kube-system', 'oms', 'n', rs('oms-1'))))).toBe(true);
    expect(matchingExceptions(podObject('payments', 'l', 'n', rs('l'), { app: 'legacy-batch' }), exc).map((e) => e.metadata!.name)).toEqual(['legacy']);
    // An exception only applies in its namespace, and its label key must match exactly.
    expect(matchingExceptions(podObject('payments', 'a', 'n', rs('a'), { app: 'api' }), exc)).toEqual([]);
    expect(matchingExceptions(podObject('payments', 'l', 'n', rs('l'), { App: 'legacy-batch' }), exc)).toEqual([]);
    expect(bypassOf(hostNet(podObject('payments', 'l', 'n', rs('l'), { app: 'legacy-batch' })), exc)).toEqual({ via: ['hostNetwork', 'exception'], exceptions: ['payments/legacy'] });
    expect(bypassOf(podObject('payments', 'api', 'n', rs('a'), { aadpodidbinding: 'api' }), exc)).toBeUndefined();
  });

  it('leaves out NMI and MIC themselves, finished and terminating pods, and places the others in their pools', () => {
    const pay0 = nodeObject('pay', 0);
    const nodeName = pay0.metadata!.name!;
    const nmi = { ...hostNet(podObject('default', 'nmi-x', nodeName, { kind: 'DaemonSet', name: 'nmi' })), spec: { nodeName, hostNetwork: true, containers: [{ name: 'nmi', image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17' }] } };
    const done = { ...hostNet(podObject('batch', 'j', nodeName, { kind: 'Job', name: 'j' })), status: { phase: 'Succeeded' } };
    const going = { ...hostNet(podObject('batch', 'k', nodeName, rs('k'))), metadata: { name: 'k', namespace: 'batch', deletionTimestamp: '2026-01-01T00:00:00Z' } };
    const agent = hostNet(podObject('payments', 'agent', nodeName, rs('agent-5c6d8f9b7'), { aadpodidbinding: 'api' }));
    const pending = hostNet(podObject('payments', 'agent2', '', rs('agent-5c6d8f9b7')));
    (pending.spec as { nodeName?: string }).nodeName = undefined;
    const found = findBypassPods([nmi, done, going, agent, pending], [pay0], []);
    expect(found).toEqual([
      { pod: 'payments/agent', node: nodeName, pool: 'pay', via: ['hostNetwork'], exceptions: [], binding: 'api' },
      { pod: 'payments/agent2', via: ['hostNetwork'], exceptions: [] },
    ]);
  });
});

describe('pools that assign raises to several identities', () => {
  const nodes = [nodeObject('pay', 0), nodeObject('system', 0), nodeObject('batch', 0)];
  const [pay, system, batch] = nodes.map((n) => n.metadata!.name!);
  const pods = [
    hostNet(podObject('payments', 'agent', pay, rs('agent-5c6d8f9b7'), { aadpodidbinding: 'api' })),
    podObject('payments', 'legacy', pay, rs('legacy-7f8d9c6b5'), { app: 'legacy' }),
    hostNet(podObject('kube-system', 'omsagent', system, { kind: 'DaemonSet', name: 'omsagent' })),
    podObject('batch', 'worker', batch, rs('worker-7f8d9c6b5'), { aadpodidbinding: 'worker' }),
  ];
  const exceptions = [exception('payments', 'legacy', { app: 'legacy' })];
  const scaleSets = [
    { pool: 'pay', vmss: 'aks-pay-12345678-vmss', identityIds: [KUBELET] },
    { pool: 'system', vmss: 'aks-system-12345678-vmss', identityIds: [KUBELET, id('omsagent-prod')] },
    { pool: 'batch', vmss: 'aks-batch-12345678-vmss', identityIds: [KUBELET] },
  ];
  const assignments = [
    { vmss: 'AKS-PAY-12345678-VMSS', identityIds: [id('api-id'), id('checkout-id')] },
    { vmss: 'aks-system-12345678-vmss', identityIds: [id('dns-id')] },
    { vmss: 'aks-batch-12345678-vmss', identityIds: [id('worker-id')] },
  ];

  it('counts identities before and after assign case-insensitively and flags the raise from one to several', () => {
    const a = analyseNmiBypass({ pods, nodes, exceptions, scaleSets: [...scaleSets, { pool: 'pay2', vmss: 'aks-pay2-vmss', identityIds: [KUBELET.toUpperCase()] }], assignments: [...assignments, { vmss: 'aks-pay2-vmss', identityIds: [KUBELET] }] });
    const byPool = Object.fromEntries(a.pools.map((p) => [p.pool, p]));
    expect(byPool.pay).toMatchObject({ identitiesBefore: 1, identitiesAfter: 3, raisedToSeveral: true, alreadySeveral: false });
    expect(byPool.pay.pods.map((p) => [p.pod, p.via])).toEqual([
      ['payments/agent', ['hostNetwork']],
      ['payments/legacy', ['exception']],
    ]);
    expect(byPool.system).toMatchObject({ identitiesBefore: 2, identitiesAfter: 3, raisedToSeveral: false, alreadySeveral: true });
    // Batch is raised too, but nothing on it bypasses NMI.
    expect(byPool.batch).toMatchObject({ raisedToSeveral: true, pods: [] });
    // Assigning an id that is already there (other casing) raises nothing.
    expect(byPool.pay2).toMatchObject({ identitiesBefore: 1, identitiesAfter: 1, raisedToSeveral: false });
  });

  it('warns per pool with pods at risk, naming them, and notes pools that already need a client id', () => {
    const w = bypassWarnings(analyseNmiBypass({ pods, nodes, exceptions, scaleSets, assignments }));
    expect(w.map((x) => [x.code, x.subject])).toEqual([
      ['nmi-bypass-several-identities', 'pool pay'],
      ['nmi-bypass-already-several', 'pool system'],
    ]);
    expect(w[0].message).toContain('from 1 user-assigned identity to 3');
    expect(w[0].message).toContain('payments/agent (hostNetwork, binding api), payments/legacy (exception)');
    expect(w[0].message).toContain('Multiple user assigned identities exist');
    expect(w[0].fix).toMatch(/client_id/);
    expect(w[1].message).toContain('kube-system/omsagent');
  });

  it('says nothing when no assignment raises a pool with bypassing pods', () => {
    expect(bypassWarnings(analyseNmiBypass({ pods, nodes, exceptions, scaleSets: scaleSets.filter((s) => s.pool !== 'system'), assignments: [] }))).toEqual([]);
  });
});
