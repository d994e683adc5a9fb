/**
 * Benchmark: a 500-node / 10,000-pod sandbox. Prints how long the scenario takes to load and
 * reach steady state (every pod Running with its identity assigned by MIC), how long each
 * page of a paged pod list takes through the real client-node, and the process memory.
 *
 *   npm run bench -- sandbox-scale        (or: node bench/sandbox-scale.ts)
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { parseScenario } from '../src/sandbox/scenario.ts';
import { Sandbox } from '../src/sandbox/sandbox.ts';

const POOLS = 5;
const NODES_PER_POOL = 100;
const PODS = 10_000;
const DEPLOYMENTS_PER_POOL = 20;

const identities = [];
const workloads = [];
for (let p = 0; p < POOLS; p++) {
  identities.push({ name: `pool${p}-id`, resourceGroup: 'identities', namespace: `ns${p}`, selector: `sel${p}` });
  for (let d = 0; d < DEPLOYMENTS_PER_POOL; d++) {
    workloads.push({ name: `svc${d}`, namespace: `ns${p}`, pool: `pool${p}`, replicas: PODS / POOLS / DEPLOYMENTS_PER_POOL, binding: `sel${p}` });
  }
}
const scenario = parseScenario(
  stringify({
    apiVersion: 'podid-migrate.io/v1',
    kind: 'SandboxScenario',
    name: 'scale',
    // The outage meter samples every pod each simulated second: keep simulated time near real time.
    timeScale: 2,
    cluster: { name: 'scale', resourceGroup: 'scale' },
    pools: Array.from({ length: POOLS }, (_, p) => ({ name: `pool${p}`, count: NODES_PER_POOL })),
    identities,
    workloads,
  }),
  'scale benchmark',
);

const mb = (n: number) => `${Math.round(n / 1024 / 1024)} MiB`;
const t0 = performance.now();
const sb = await Sandbox.start({ scenario, churn: false });
const loaded = performance.now();
// Steady state for the API: every pod Running (MIC's 10,000 assignments are measured after).
const podType = sb.store.typeOrThrow('', 'pods');
const running = () => {
  let n = 0;
  for (const p of sb.store.scan(podType)) if (p.status?.phase === 'Running') n++;
  return n;
};
let lastReport = performance.now();
for (let n = running(); n < PODS; n = running()) {
  if (performance.now() - lastReport > 5000) {
    console.log(`  ${n} pods Running after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    lastReport = performance.now();
  }
  await new Promise((r) => setTimeout(r, 200));
}
const ready = performance.now();
// Then MIC: one AzureAssignedIdentity per pod, Assigned once its VMSS PATCH is done.
const aai = sb.store.typeOrThrow('aadpodidentity.k8s.io', 'azureassignedidentities');
const assignedCount = () => {
  let n = 0;
  for (const a of sb.store.scan(aai)) if (a.status?.status === 'Assigned') n++;
  return n;
};
while (assignedCount() < PODS && performance.now() - ready < 300_000) await new Promise((r) => setTimeout(r, 500));
const steady = performance.now();
const kc = new KubeConfig();
kc.loadFromString(sb.kubeconfigYaml());
const core = kc.makeApiClient(CoreV1Api);
const pages: number[] = [];
let cont: string | undefined;
let total = 0;
do {
  const s = performance.now();
  const res = await core.listPodForAllNamespaces({ limit: 500, _continue: cont });
  pages.push(performance.now() - s);
  total += res.items.length;
  cont = res.metadata?._continue || undefined;
} while (cont);
pages.sort((a, b) => a - b);
const pct = (q: number) => pages[Math.min(pages.length - 1, Math.floor(q * pages.length))].toFixed(1);
const mem = process.memoryUsage();
console.log(`nodes ${sb.store.count(sb.store.typeOrThrow('', 'nodes'))}, pods listed ${total} in ${pages.length} pages of 500`);
console.log(`start ${((loaded - t0) / 1000).toFixed(1)} s, all ${PODS} pods Running after ${((ready - t0) / 1000).toFixed(1)} s real, ${assignedCount()} identities Assigned by MIC after ${((steady - t0) / 1000).toFixed(1)} s`);
console.log('paged list at steady state (controllers, NMI, MIC and the outage meter still running):');
console.log(`page latency through client-node: p50 ${pct(0.5)} ms, p95 ${pct(0.95)} ms, max ${pages[pages.length - 1].toFixed(1)} ms`);
console.log(`memory: rss ${mb(mem.rss)}, heap used ${mb(mem.heapUsed)}`);

await sb.stop();
