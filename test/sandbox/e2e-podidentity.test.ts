/**
 * Pod Identity behaviours the migration's safety depends on, end to end over HTTPS:
 * MIC's garbage collection (and what `--immutable-user-msis` changes), the NMI restart gap,
 * and the outage that the upstream documented cutover causes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSandbox, until, type SandboxHarness } from '../helpers/sandbox.ts';

const SMALL = (extra = '') => `
apiVersion: podid-migrate.io/v1
kind: SandboxScenario
name: gc
cluster: { name: gc, resourceGroup: rg }
pools: [{ name: system, count: 2 }, { name: apps, count: 2 }]
identities:
  - { name: app-id, resourceGroup: ids, namespace: apps, selector: app }
  - { name: other-id, resourceGroup: ids, namespace: apps, selector: other }
workloads:
  - { name: app, namespace: apps, pool: apps, replicas: 2, binding: app }
  - { name: other, namespace: apps, pool: apps, replicas: 1, binding: other }
${extra}`;

async function identitiesOn(h: SandboxHarness, pool: string): Promise<string[]> {
  for await (const s of h.arm.compute.virtualMachineScaleSets.list(h.sb.scenario.cluster.nodeResourceGroup)) {
    if (s.tags?.['aks-managed-poolName'] === pool) return Object.keys(s.identity?.userAssignedIdentities ?? {}).map((k) => k.split('/').pop()!.toLowerCase()).sort();
  }
  throw new Error(`no scale set for pool ${pool}`);
}

let h: SandboxHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('MIC garbage collection', () => {
  it('removes an identity from the scale set when its last pod goes, even one an operator assigned by hand', async () => {
    h = await startSandbox({ scenario: SMALL(), timeScale: 30 });
    expect(await identitiesOn(h, 'apps')).toEqual(['app-id', 'gc-agentpool', 'other-id']);
    // The operator's hand assignment (what a careless migration does) changes nothing for MIC.
    await h.kubectl(['scale', '-n', 'apps', 'deployment/other', '--replicas=0']);
    await until('MIC to un-assign other-id', async () => !(await identitiesOn(h!, 'apps')).includes('other-id'));
    expect(await identitiesOn(h, 'apps')).toEqual(['app-id', 'gc-agentpool']);
    expect(h.sb.metrics.count({ api: 'arm', caller: 'mic', verb: 'PATCH' })).toBeGreaterThanOrEqual(2);
  });

  it('keeps identities listed in --immutable-user-msis', async () => {
    const scenario = SMALL();
    const probe = await startSandbox({ scenario, timeScale: 30 });
    const otherClient = probe.sb.scenario.identities.find((i) => i.name === 'other-id')!.clientId;
    await probe.close();
    h = await startSandbox({ scenario: scenario + `podIdentity: { immutableUserMsis: [${otherClient}] }\n`, timeScale: 30 });
    await h.kubectl(['scale', '-n', 'apps', 'deployment/other', '--replicas=0']);
    await until('the AzureAssignedIdentity of the last other pod to go', async () => {
      const out = await h!.kubectl(['get', 'azureassignedidentities', '-A', '-o', 'name']);
      return !out.includes('other-id');
    });
    // MIC's GC ran (the object is gone) yet the identity stays on the scale set.
    await h.sb.clock.sleep(20_000);
    expect(await identitiesOn(h, 'apps')).toEqual(['app-id', 'gc-agentpool', 'other-id']);
  });

  it('does nothing when scaled to zero: identities and AzureAssignedIdentities stay', async () => {
    h = await startSandbox({ scenario: SMALL(), timeScale: 30 });
    await h.kubectl(['scale', '-n', 'default', 'deployment/mic', '--replicas=0']);
    await until('no MIC pod', async () => (await h!.core.listNamespacedPod({ namespace: 'default', labelSelector: 'component=mic' })).items.length === 0);
    await h.kubectl(['scale', '-n', 'apps', 'deployment/other', '--replicas=0']);
    await h.sb.clock.sleep(30_000);
    expect(await identitiesOn(h, 'apps')).toEqual(['app-id', 'gc-agentpool', 'other-id']);
    const aai = await h.kubectl(['get', 'azureassignedidentities', '-A', '-o', 'name']);
    expect(aai.split('\n').filter((l) => l.includes('other-id'))).toHaveLength(1);
  });
});

describe('NMI restart gap', () => {
  it('lets pods reach IMDS directly while NMI restarts, and the meter names it', async () => {
    h = await startSandbox({ scenario: SMALL(), timeScale: 20, churn: false });
    const node = (await h.core.listNode({ labelSelector: 'kubernetes.azure.com/agentpool=apps' })).items[0].metadata!.name!;
    const nmi = (await h.core.listNamespacedPod({ namespace: 'default', labelSelector: 'component=nmi', fieldSelector: `spec.nodeName=${node}` })).items[0];
    h.sb.meter.reset();
    await h.core.deleteNamespacedPod({ name: nmi.metadata!.name!, namespace: 'default' });
    await until('a new NMI pod Active on the node', async () => {
      const pods = (await h!.core.listNamespacedPod({ namespace: 'default', labelSelector: 'component=nmi', fieldSelector: `spec.nodeName=${node}` })).items;
      const fresh = pods.find((p) => p.metadata!.uid !== nmi.metadata!.uid && p.status?.phase === 'Running');
      if (!fresh) return false;
      const body = await h!.core.connectGetNamespacedPodProxyWithPath({ name: `${fresh.metadata!.name}:8085`, namespace: 'default', path: 'healthz' });
      return String(body) === 'Active';
    });
    await h.sb.clock.sleep(2_000);
    const report = h.sb.meter.report();
    const windows = report.windows.filter((w) => w.node === node);
    expect(windows.length).toBeGreaterThan(0);
    // Two user-assigned identities (the pool's plus the kubelet's): IMDS refuses unnamed requests.
    expect(windows.every((w) => w.cause.startsWith('nmi-restart: IMDS answered 400'))).toBe(true);
    // The gap is NMI's 10 s termination sleep plus start-up, not more.
    for (const w of windows) expect(w.seconds).toBeLessThanOrEqual(10 + h.sb.scenario.latency.nmiStartupSeconds + 3);
    expect(report.windows.filter((w) => w.node !== node)).toEqual([]);
  });
});

describe('the documented cutover (upstream standard_to_managed_mode.md)', () => {
  it('causes an outage the meter explains', async () => {
    h = await startSandbox({ timeScale: 20 });
    h.sb.meter.reset();
    // 1. identities are on the scale sets already (MIC put them there). 2. delete MIC and NMI.
    await h.kubectl(['delete', 'deployment', 'mic', '-n', 'default']);
    await h.kubectl(['delete', 'daemonset', 'nmi', '-n', 'default']);
    // 3. delete the AzureAssignedIdentity CRD (its objects keep finalizers; the docs say to clear them).
    await h.kubectl(['delete', 'crd', 'azureassignedidentities.aadpodidentity.k8s.io', '--wait=false']);
    await until('NMI pods gone', async () => (await h!.core.listNamespacedPod({ namespace: 'default', labelSelector: 'component=nmi' })).items.length === 0);
    await h.sb.clock.sleep(5_000);
    // 4. install managed mode from the upstream manifest, as the docs say.
    const file = join(h.files.dir, 'managed.yaml');
    writeFileSync(file, readFileSync(new URL('../../src/sandbox/manifests/managed-v1.8.17.yaml', import.meta.url)));
    await h.kubectl(['apply', '-f', file]);
    await until('managed NMI running on every node', async () => {
      const ds = await h!.apps.readNamespacedDaemonSet({ name: 'nmi', namespace: 'kube-system' });
      return ds.status?.numberReady === 13;
    });
    await h.sb.clock.sleep(5_000);
    const report = h.sb.meter.report();
    const causes = Object.keys(report.byCause);
    // Between the NMI delete and the new install nothing intercepts IMDS: several identities -> 400.
    // (The meter calls it a restart while the node's NMI was seen within the last restart window.)
    expect(causes.some((c) => /^(no-nmi|nmi-restart): IMDS answered 400/.test(c)), JSON.stringify(report.byCause)).toBe(true);
    // Afterwards, pods whose binding lives in another namespace are refused in managed mode.
    expect(causes).toContain('no-binding-in-namespace (managed mode)');
    expect(report.pods.some((p) => p.pod.startsWith('batch/archiver-') && p.longestFailureSeconds >= 5)).toBe(true);
    expect(report.failingPodSeconds).toBeGreaterThan(100);
  });
});
