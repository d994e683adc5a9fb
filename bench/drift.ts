/**
 * Benchmark: `drift` on a 500-node / 10,000-pod sandbox (5 pools of 100 nodes, 100 Deployments
 * with `aadpodidbinding`, NMI on every node), through the real client-node and Azure SDK
 * gateways over HTTPS. Prints the Kubernetes and ARM calls the drift read makes (per kind, and
 * ARM reads per scale set) and its time, side by side with the inventory step's discovery of the
 * same cluster (the read the migration itself starts with), then the same figures after an AKS
 * upgrade dropped a pool's identities (the check still costs the same).
 *
 *   node bench/drift.ts
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createAzureGateway, resolveAzureConnection } from '../src/azure/index.ts';
import { analyseDrift } from '../src/drift/analyse.ts';
import { readDriftState } from '../src/drift/read.ts';
import { Runner } from '../src/engine/runner.ts';
import { createKubeGateway } from '../src/kube/index.ts';
import { parseScenario } from '../src/sandbox/scenario.ts';
import { Sandbox } from '../src/sandbox/sandbox.ts';
import { loadInventory } from '../src/steps/lib/inventory-model.ts';
import { EXECUTORS, STEPS } from '../src/steps/registry.ts';
import type { ExecutorRegistry } from '../src/engine/step.ts';
import type { KubeGateway } from '../src/kube/gateway.ts';
import type { AzureGateway } from '../src/azure/gateway.ts';

const POOLS = 5;
const NODES_PER_POOL = 100;
const PODS = 10_000;
const DEPLOYMENTS_PER_POOL = 20;

const identities = [];
const workloads = [];
for (let p = 0; p < POOLS; p++) {
  identities.push({ name: `pool${p}-id`, resourceGroup: 'identities', namespace: `ns${p}`, selector: `sel${p}` });
  for (let d = 0; d < DEPLOYMENTS_PER_POOL; d++) workloads.push({ name: `svc${d}`, namespace: `ns${p}`, pool: `pool${p}`, replicas: PODS / POOLS / DEPLOYMENTS_PER_POOL, binding: `sel${p}` });
}
const scenario = parseScenario(
  stringify({
    apiVersion: 'podid-migrate.io/v1',
    kind: 'SandboxScenario',
    name: 'drift-scale',
    timeScale: 2,
    cluster: { name: 'scale', resourceGroup: 'scale' },
    // After the cutover: no MIC, so no AzureAssignedIdentity (as `cleanup` leaves it).
    podIdentity: { micReplicas: 0 },
    pools: Array.from({ length: POOLS }, (_, p) => ({ name: `pool${p}`, count: NODES_PER_POOL })),
    identities,
    workloads,
  }),
  'drift benchmark',
);

const t0 = performance.now();
const sb = await Sandbox.start({ scenario, churn: false });
const podType = sb.store.typeOrThrow('', 'pods');
const running = () => {
  let n = 0;
  for (const p of sb.store.scan(podType)) if (p.status?.phase === 'Running') n++;
  return n;
};
while (running() < PODS) await new Promise((r) => setTimeout(r, 200));
console.log(`sandbox: ${sb.store.count(sb.store.typeOrThrow('', 'nodes'))} nodes, ${running()} pods Running after ${((performance.now() - t0) / 1000).toFixed(0)} s`);

const dir = mkdtempSync(join(tmpdir(), 'podid-bench-drift-'));
const files = sb.writeClientFiles(dir);
const kube = createKubeGateway({ kubeconfig: files.kubeconfig, rateLimit: { qps: 200, burst: 400 } });
const azure = createAzureGateway({ subscriptionId: scenario.subscriptionId, connection: resolveAzureConnection({ PODID_MIGRATE_ARM_ENDPOINT: sb.armUrl, PODID_MIGRATE_ARM_TOKEN_FILE: files.armTokenFile, PODID_MIGRATE_CA_FILE: files.caFile }), pollIntervalMs: 100 });
const info = await kube.clusterInfo();
const inventoryPath = join(dir, 'inventory.yaml');
const cluster = { name: scenario.cluster.name, apiServer: info.apiServer, kubeSystemUid: info.kubeSystemUid, subscriptionId: scenario.subscriptionId, aksResourceId: sb.aksResourceId };

// The inventory step: what the migration reads first (its plan and its check each read the cluster).
const s0 = performance.now();
const kubeBefore = kube.calls().total;
await new Runner({ steps: STEPS.slice(0, 1), executors: EXECUTORS as ExecutorRegistry<KubeGateway, AzureGateway>, kube, azure, cluster, journalPath: join(dir, 'journal.json'), inventoryPath, options: { aksId: sb.aksResourceId }, stepTimeoutMs: 600_000 }).apply({ step: 'inventory' });
const inventoryMs = performance.now() - s0;
const inventoryKube = kube.calls().total - kubeBefore;
const inventory = (await loadInventory(inventoryPath))!;
// The VMSS as managed mode needs them (what `assign` would have done).
for (const i of inventory.identities) for (const p of i.pools ?? []) await azure.assignIdentities(scenario.cluster.nodeResourceGroup, `aks-${p}-12345678-vmss`, [i.resourceId!]);

async function measure(label: string): Promise<void> {
  const k = kube.scoped({});
  const a = azure.scoped({});
  const reqBefore = sb.metrics.count({ api: 'kube' });
  const start = performance.now();
  const live = await readDriftState(k, a, { aksId: sb.aksResourceId, inventory });
  const analysis = analyseDrift(inventory, live, { inventoryPath });
  const ms = performance.now() - start;
  const kc = k.calls();
  const ac = a.calls();
  const lists = Object.entries(kc.byKey).filter(([key]) => key.startsWith('list') || key.startsWith('GET')).length;
  console.log(`${label}:`);
  console.log(`  drift: ${ms.toFixed(0)} ms; Kubernetes ${kc.total} requests (${lists} kinds listed, pages of 500; ${sb.metrics.count({ api: 'kube' }) - reqBefore} seen by the API server), ARM ${ac.total} requests for ${live.scaleSets.length} scale sets (${(ac.total / live.scaleSets.length).toFixed(2)} per scale set)`);
  console.log(`  kube by call: ${Object.entries(kc.byKey).map(([key, n]) => `${key} ${n}`).join(', ')}`);
  console.log(`  arm by call: ${Object.entries(ac.byKey).map(([key, n]) => `${key} ${n}`).join(', ')}`);
  console.log(`  findings: ${analysis.findings.filter((f) => f.severity === 'drift').map((f) => `${f.code} ${f.subject}`).join('; ') || 'none'}`);
  console.log(`  side by side: inventory step ${inventoryMs.toFixed(0)} ms / ${inventoryKube} Kubernetes requests; drift/inventory time ratio ${(ms / inventoryMs).toFixed(2)}`);
}

await measure('after the cutover (NMI still standard in this scenario)');
// What an upgrade with a rewritten identity list leaves (the node-by-node reimage is left out: 100 nodes take long).
sb.arm.patchIdentities('aks-pool3-12345678-vmss', { [inventory.identities.find((i) => i.name === 'pool3-id')!.resourceId!]: null }, { caller: 'aks' });
await measure('after an AKS upgrade rewrote pool3\'s scale set identities');
await kube.close();
await sb.stop();
