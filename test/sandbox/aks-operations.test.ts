/**
 * The sandbox's AKS operations, driven through the real CLI (`sandbox aks …`, which calls the
 * control API) and checked through the real clients over HTTPS: the ARM SDK sees the scale sets
 * and identities, stock kubectl sees the nodes and the Pod Identity workloads.
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/sandbox/scenario.ts';
import { startSandbox, until, type SandboxHarness } from '../helpers/sandbox.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'podid-migrate');

const SCENARIO = `
apiVersion: podid-migrate.io/v1
kind: SandboxScenario
name: aks-ops
timeScale: 40
cluster: { name: ops, resourceGroup: ops-rg }
podIdentity: { micReplicas: 1 }
pools:
  - { name: system, mode: System, count: 1, preassigned: [omsagent-ops] }
  - { name: work, count: 2 }
identities:
  - { name: app-id, resourceGroup: ids, namespace: apps, selector: app }
  - { name: other-id, resourceGroup: ids, namespace: apps, selector: other }
workloads:
  - { name: app, namespace: apps, pool: work, replicas: 1, binding: app }
  - { name: other, namespace: apps, pool: work, replicas: 1, binding: other }
`;

async function sandboxAks(h: SandboxHarness, args: string[]): Promise<{ code: number; out: unknown; all: string }> {
  const r = await execa(process.execPath, [BIN, 'sandbox', 'aks', ...args, '--dir', h.files.dir, '-o', 'json'], { reject: false, all: true, timeout: 90_000 });
  let out: unknown;
  try {
    out = JSON.parse(String(r.stdout));
  } catch {
    out = undefined;
  }
  return { code: r.exitCode ?? -1, out, all: String(r.all) };
}

async function vmssIdentities(h: SandboxHarness, name: string): Promise<Record<string, { clientId?: string; principalId?: string }>> {
  const rg = h.sb.scenario.cluster.nodeResourceGroup;
  const vmss = await h.arm.compute.virtualMachineScaleSets.get(rg, name);
  const out: Record<string, { clientId?: string; principalId?: string }> = {};
  for (const [id, v] of Object.entries(vmss.identity?.userAssignedIdentities ?? {})) out[id.split('/').pop()!] = { clientId: v.clientId, principalId: v.principalId };
  return out;
}

describe('sandbox AKS operations through `sandbox aks` and the control API', () => {
  let h: SandboxHarness;
  beforeAll(async () => {
    h = await startSandbox({ scenario: parseScenario(SCENARIO, 'aks-ops'), churn: false, timeScale: 40 });
  }, 90_000);
  afterAll(async () => {
    await h?.close();
  });

  it('add-pool: a new VMSS with only the kubelet identity, Ready nodes with the labels and taints, an NMI pod on each', async () => {
    const r = await sandboxAks(h, ['add-pool', 'gpu', '--count', '2', '--labels', 'workload=ml', '--node-taints', 'sku=gpu:NoSchedule']);
    expect(r.code, r.all).toBe(0);
    expect(Object.keys(await vmssIdentities(h, 'aks-gpu-12345678-vmss'))).toEqual(['ops-agentpool']);
    const pools = (await h.arm.aks.managedClusters.get('ops-rg', 'ops')).agentPoolProfiles?.map((p) => p.name);
    expect(pools).toContain('gpu');
    const nodes = JSON.parse(await h.kubectl(['get', 'nodes', '-l', 'kubernetes.azure.com/agentpool=gpu', '-o', 'json'])) as { items: { metadata: { labels: Record<string, string> }; spec: { taints?: { key: string }[] } }[] };
    expect(nodes.items).toHaveLength(2);
    for (const n of nodes.items) {
      expect(n.metadata.labels.workload).toBe('ml');
      expect(n.spec.taints?.map((t) => t.key)).toContain('sku');
    }
    // NMI tolerates every taint upstream; its DaemonSet covers the new nodes.
    await until('NMI on the new nodes', async () => {
      const pods = JSON.parse(await h.kubectl(['get', 'pods', '-A', '-l', 'component=nmi', '-o', 'json'])) as { items: { spec: { nodeName?: string }; status: { phase?: string } }[] };
      return pods.items.filter((p) => p.spec.nodeName?.startsWith('aks-gpu-') && p.status.phase === 'Running').length === 2;
    });
    const again = await sandboxAks(h, ['add-pool', 'gpu']);
    expect(again.code).toBe(1);
    expect(again.all).toContain('pool "gpu" already exists');
  }, 60_000);

  it('upgrade-pool --rewrite-identities: pod identities dropped from the VMSS, kubelet kept, every node reimaged and Ready', async () => {
    await until('MIC assigned both identities to the work pool', async () => Object.keys(await vmssIdentities(h, 'aks-work-12345678-vmss')).length === 3);
    // Managed-mode rehearsal: MIC must not re-add what the upgrade drops.
    await h.kubectl(['scale', 'deployment', 'mic', '--replicas=0']);
    const r = await sandboxAks(h, ['upgrade-pool', 'work', '--rewrite-identities']);
    expect(r.code, r.all).toBe(0);
    const result = (r.out as { result: { nodes: string[]; identitiesRemoved: string[] } }).result;
    expect(result.nodes).toHaveLength(2);
    expect(result.identitiesRemoved.map((i) => i.split('/').pop()).sort()).toEqual(['app-id', 'other-id']);
    expect(Object.keys(await vmssIdentities(h, 'aks-work-12345678-vmss'))).toEqual(['ops-agentpool']);
    const nodes = JSON.parse(await h.kubectl(['get', 'nodes', '-l', 'kubernetes.azure.com/agentpool=work', '-o', 'json'])) as { items: { status: { conditions: { type: string; status: string }[] } }[] };
    for (const n of nodes.items) expect(n.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
  }, 90_000);

  it('scale-pool: new instances register as nodes', async () => {
    const r = await sandboxAks(h, ['scale-pool', 'gpu', '--count', '3']);
    expect(r.code, r.all).toBe(0);
    await until('3 gpu nodes', async () => JSON.parse(await h.kubectl(['get', 'nodes', '-l', 'kubernetes.azure.com/agentpool=gpu', '-o', 'json'])).items.length === 3);
  }, 60_000);

  it('recreate-identity: same resource id, new client and principal ids in ARM; the VMSS keeps the stale ids and IMDS refuses them', async () => {
    // Put app-id on the gpu pool first, as an operator would.
    const rg = h.sb.scenario.cluster.nodeResourceGroup;
    const id = h.sb.arm.identity('app-id')!;
    await h.arm.compute.virtualMachineScaleSets.beginUpdateAndWait(rg, 'aks-gpu-12345678-vmss', { identity: { type: 'UserAssigned', userAssignedIdentities: { [id.id]: {} } } });
    const before = (await vmssIdentities(h, 'aks-gpu-12345678-vmss'))['app-id'];
    expect(before.clientId).toBe(id.clientId);
    const r = await sandboxAks(h, ['recreate-identity', 'app-id']);
    expect(r.code, r.all).toBe(0);
    const fresh = await h.arm.msi.userAssignedIdentities.get('ids', 'app-id');
    expect(fresh.id?.toLowerCase()).toBe(id.id.toLowerCase());
    expect(fresh.clientId).not.toBe(id.clientId);
    expect(fresh.principalId).not.toBe(id.principalId);
    // The scale set still shows the ids of the identity it was given (upstream Known Issues).
    expect((await vmssIdentities(h, 'aks-gpu-12345678-vmss'))['app-id']).toEqual(before);
    const set = h.sb.arm.scaleSet('aks-gpu-12345678-vmss')!;
    const inst = [...set.instances.values()][0];
    expect(h.sb.arm.identitiesOnInstance(set.name, inst.instanceId).map((i) => i.name)).toEqual(['ops-agentpool']);
    // Removing and assigning it again refreshes the entry.
    await h.arm.compute.virtualMachineScaleSets.beginUpdateAndWait(rg, set.name, { identity: { type: 'UserAssigned', userAssignedIdentities: { [id.id]: null as unknown as object } } });
    await h.arm.compute.virtualMachineScaleSets.beginUpdateAndWait(rg, set.name, { identity: { type: 'UserAssigned', userAssignedIdentities: { [id.id]: {} } } });
    expect((await vmssIdentities(h, set.name))['app-id'].clientId).toBe(fresh.clientId);
    const bad = await sandboxAks(h, ['recreate-identity', 'nope-id']);
    expect(bad.code).toBe(1);
    expect(bad.all).toContain('no user-assigned identity "nope-id"');
  }, 60_000);

  it('reinstall-standard: NMI gets the standard-mode spec back, MIC comes back with its replicas; --no-mic leaves MIC alone', async () => {
    await h.kubectl(['patch', 'daemonset', 'nmi', '--type', 'json', '-p', JSON.stringify([{ op: 'add', path: '/spec/template/spec/containers/0/args/-', value: '--operation-mode=managed' }])]);
    await h.kubectl(['delete', 'deployment', 'mic']);
    const nmiOnly = await sandboxAks(h, ['reinstall-standard', '--no-mic']);
    expect(nmiOnly.code, nmiOnly.all).toBe(0);
    const args = () => h.kubectl(['get', 'daemonset', 'nmi', '-o', 'jsonpath={.spec.template.spec.containers[0].args}']);
    expect(await args()).not.toContain('managed');
    await expect(h.kubectl(['get', 'deployment', 'mic'])).rejects.toThrow(/NotFound|not found/);
    const both = await sandboxAks(h, ['reinstall-standard']);
    expect(both.code, both.all).toBe(0);
    expect((both.out as { result: { created: string[] } }).result.created).toContain('deployment default/mic');
    expect(await h.kubectl(['get', 'deployment', 'mic', '-o', 'jsonpath={.spec.replicas}'])).toBe('1');
  }, 60_000);

  it('a scenario runs its aksOperations in simulated time', async () => {
    const s = parseScenario(`${SCENARIO}\naksOperations:\n  - { afterSeconds: 1, op: add-pool, name: late, count: 1 }\n`, 'scheduled');
    expect(s.aksOperations).toEqual([{ afterSeconds: 1, op: 'add-pool', name: 'late', count: 1 }]);
    expect(() => parseScenario(`${SCENARIO}\naksOperations:\n  - { afterSeconds: 1, op: explode }\n`, 'bad')).toThrow(/aksOperations\[0\]\.op/);
    const other = await startSandbox({ scenario: s, churn: false, timeScale: 40 });
    try {
      await until('pool late', () => other.sb.arm.scaleSet('aks-late-12345678-vmss') !== undefined);
    } finally {
      await other.close();
    }
  }, 90_000);
});
