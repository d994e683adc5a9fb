/**
 * Paged pod listing at scale: loads 10,000 pods on 500 nodes into the sandbox store, then
 * pages through them with the real `@kubernetes/client-node`
 * `CoreV1Api.listPodForAllNamespaces({limit: 500, _continue})` over HTTPS, several rounds,
 * and prints milliseconds per page (p50 / p95 / max) and the process's memory.
 *
 *   node bench/kube-api-paging.ts [pods=10000] [nodes=500] [rounds=5]
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ManualClock } from '../src/sandbox/clock.ts';
import { FaultInjector } from '../src/sandbox/faults.ts';
import { Metrics } from '../src/sandbox/metrics.ts';
import { PodNetwork } from '../src/sandbox/netsim.ts';
import { PodLogs } from '../src/sandbox/pod-logs.ts';
import { ObjectStore } from '../src/sandbox/store.ts';
import { generateSandboxTls } from '../src/sandbox/tls.ts';
import { bootstrapNamespaces, registerBuiltinTypes } from '../src/sandbox/kube-api/types.ts';
import { startKubeApiServer } from '../src/sandbox/kube-api/server.ts';

const POD_COUNT = Number(process.argv[2] ?? 10_000);
const NODE_COUNT = Number(process.argv[3] ?? 500);
const ROUNDS = Number(process.argv[4] ?? 5);
const NAMESPACES = ['default', 'kube-system', 'team-a', 'team-b', 'batch'];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;

const clock = new ManualClock();
const store = new ObjectStore(clock);
registerBuiltinTypes(store);
bootstrapNamespaces(store, NAMESPACES);
const podType = store.typeOrThrow('', 'pods');
const nodeType = store.typeOrThrow('', 'nodes');

const loadStart = performance.now();
for (let n = 0; n < NODE_COUNT; n++) {
  const name = `aks-pool${n % 5}-12345678-vmss${n.toString(36).padStart(6, '0')}`;
  store.create(nodeType, {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.azure.com/agentpool': `pool${n % 5}`, 'kubernetes.io/hostname': name } },
    spec: { providerID: `azure:///subscriptions/s/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool${n % 5}-12345678-vmss/virtualMachines/${n}` },
    status: { conditions: [{ type: 'Ready', status: 'True' }], addresses: [{ type: 'InternalIP', address: `10.240.${n >> 8}.${n & 255}` }] },
  });
}
for (let i = 0; i < POD_COUNT; i++) {
  const n = i % NODE_COUNT;
  const ns = NAMESPACES[i % NAMESPACES.length];
  store.create(podType, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `svc-${i % 12}-${i.toString(36).padStart(5, '0')}`, namespace: ns, labels: { app: `svc-${i % 12}`, aadpodidbinding: `svc-${i % 12}` } },
    spec: {
      nodeName: `aks-pool${n % 5}-12345678-vmss${n.toString(36).padStart(6, '0')}`,
      containers: [{ name: 'app', image: 'example/app:1.0', env: [{ name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } }] }],
      terminationGracePeriodSeconds: 30,
    },
    status: { phase: 'Running', podIP: `10.244.${i >> 8}.${i & 255}`, conditions: [{ type: 'Ready', status: 'True' }] },
  });
}
const loadMs = performance.now() - loadStart;

const tls = await generateSandboxTls();
const token = 'bench-token';
const server = await startKubeApiServer({ store, tls, token, metrics: new Metrics(), faults: new FaultInjector(), network: new PodNetwork(), logs: new PodLogs(), clock, port: 0 });
const kc = new KubeConfig();
kc.loadFromOptions({
  clusters: [{ name: 'sandbox', server: server.url, caData: Buffer.from(tls.caPem).toString('base64') }],
  users: [{ name: 'bench', token }],
  contexts: [{ name: 'sandbox', cluster: 'sandbox', user: 'bench' }],
  currentContext: 'sandbox',
});
const core = kc.makeApiClient(CoreV1Api);

const pageMs: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  let cont: string | undefined;
  let seen = 0;
  do {
    const t0 = performance.now();
    const page = await core.listPodForAllNamespaces({ limit: 500, _continue: cont });
    const dt = performance.now() - t0;
    // The first round warms up the JIT and the TLS session; only later rounds are reported.
    if (round > 0) pageMs.push(dt);
    seen += page.items.length;
    cont = page.metadata?._continue;
  } while (cont);
  if (seen !== POD_COUNT) throw new Error(`round ${round}: paged ${seen} pods, expected ${POD_COUNT}`);
}
await server.close();

pageMs.sort((a, b) => a - b);
const mem = process.memoryUsage();
console.log(`store: ${POD_COUNT} pods on ${NODE_COUNT} nodes loaded in ${loadMs.toFixed(0)} ms`);
console.log(`pages of 500 via CoreV1Api.listPodForAllNamespaces: ${pageMs.length} measured over ${ROUNDS - 1} rounds`);
console.log(`ms per page: p50 ${percentile(pageMs, 50).toFixed(1)}  p95 ${percentile(pageMs, 95).toFixed(1)}  max ${pageMs[pageMs.length - 1].toFixed(1)}`);
console.log(`memory: rss ${mb(mem.rss)}  heapUsed ${mb(mem.heapUsed)}`);
