/**
 * A small AKS world for the Pod Identity tests: a manual clock, the object store with the
 * upstream CRDs installed from the shipped manifest, the real `ArmState` with two node-pool
 * scale sets, Node objects for their instances, and helpers to run MIC / NMI programs
 * directly (no kubelet) and to send requests from pods through the pod network.
 */
import { ManualClock } from '../../../src/sandbox/clock.ts';
import { Metrics } from '../../../src/sandbox/metrics.ts';
import { PodNetwork, type SimHttpResponse } from '../../../src/sandbox/netsim.ts';
import { ObjectStore, type KObject } from '../../../src/sandbox/store.ts';
import { ArmState, type UserAssignedIdentity } from '../../../src/sandbox/arm/state.ts';
import { bootstrapNamespaces, registerBuiltinTypes } from '../../../src/sandbox/kube-api/types.ts';
import { readManifest } from '../../../src/sandbox/install.ts';
import type { ContainerProcess, ContainerProgram } from '../../../src/sandbox/runtime.ts';
import type { PodIdentityOptions } from '../../../src/sandbox/podidentity/index.ts';
import { addNode } from '../../../src/sandbox/controllers/index.ts';

export { ManualClock };
export const SUB = '8c9d1b4e-3f6a-4c2d-9e1b-5a7c3d2e1f00';
export const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
export const RG = 'rg-shop';
export const NODE_RG = 'MC_rg-shop_shop-aks_westeurope';
export const APPS = 'aks-apps-12345678-vmss';
export const BATCH = 'aks-batch-12345678-vmss';
export const TOKEN_PATH = '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F';

export interface World {
  clock: ManualClock;
  store: ObjectStore;
  network: PodNetwork;
  arm: ArmState;
  metrics: Metrics;
  kubelet: UserAssignedIdentity;
  ids: Record<'orders' | 'payments' | 'catalog', UserAssignedIdentity>;
  opts: PodIdentityOptions;
  /** Node names per scale set, `aks-apps-12345678-vmss000000`, ... */
  nodes: Record<string, string[]>;
  nodeIp(node: string): string;
}

/**
 * Builds the world. `kubeletIdentity: false` leaves the node pools without the kubelet
 * identity, so a single workload identity is alone on its VMSS.
 */
export function buildWorld(o: { kubeletIdentity?: boolean; namespaces?: string[]; realNodes?: boolean } = {}): World {
  const clock = new ManualClock();
  const store = new ObjectStore(clock);
  registerBuiltinTypes(store);
  bootstrapNamespaces(store, ['default', 'kube-system', 'kube-public', 'kube-node-lease', ...(o.namespaces ?? ['shop', 'pay'])]);
  const crdType = store.typeOrThrow('apiextensions.k8s.io', 'customresourcedefinitions');
  for (const crd of readManifest('standard-v1.8.17.yaml').filter((x) => x.kind === 'CustomResourceDefinition')) store.create(crdType, crd);
  const network = new PodNetwork();
  const metrics = new Metrics();
  const arm = new ArmState({ subscriptionId: SUB, tenantId: TENANT, clock, metrics, latency: { identityUpdateSeconds: 1 } });
  const kubelet = arm.addIdentity({ name: 'shop-aks-agentpool', resourceGroup: NODE_RG, location: 'westeurope', clientId: '11111111-0000-4000-8000-000000000001', principalId: '11111111-0000-4000-8000-000000000002' });
  const ids = {} as World['ids'];
  for (const [i, name] of (['orders', 'payments', 'catalog'] as const).entries()) {
    ids[name] = arm.addIdentity({ name: `id-${name}`, resourceGroup: RG, location: 'westeurope', clientId: `22222222-0000-4000-8000-00000000000${i}`, principalId: `33333333-0000-4000-8000-00000000000${i}` });
  }
  arm.setManagedCluster({
    resourceGroup: RG,
    name: 'shop-aks',
    location: 'westeurope',
    nodeResourceGroup: NODE_RG,
    kubeletIdentity: { resourceId: kubelet.id, clientId: kubelet.clientId, objectId: kubelet.principalId },
    agentPools: [
      { name: 'apps', count: 2, vmSize: 'Standard_D4s_v5', mode: 'System' },
      { name: 'batch', count: 1, vmSize: 'Standard_D4s_v5', mode: 'User' },
    ],
    kubernetesVersion: '1.32.4',
    fqdn: 'shop-aks-dns-1a2b3c4d.hcp.westeurope.azmk8s.io',
  });
  const withKubelet = o.kubeletIdentity !== false;
  arm.addScaleSet({ name: '', poolName: 'apps', capacity: 2, identities: withKubelet ? [kubelet.id] : [] });
  arm.addScaleSet({ name: '', poolName: 'batch', capacity: 1, identities: withKubelet ? [kubelet.id] : [] });
  const nodeType = store.typeOrThrow('', 'nodes');
  const nodes: Record<string, string[]> = {};
  const ips = new Map<string, string>();
  let idx = 0;
  for (const set of arm.scaleSets()) {
    nodes[set.name] = [];
    for (const inst of set.instances.values()) {
      const ip = `10.224.0.${4 + idx++}`;
      ips.set(inst.computerName, ip);
      nodes[set.name].push(inst.computerName);
      const providerID = `azure:///subscriptions/${SUB}/resourceGroups/${NODE_RG.toLowerCase()}/providers/Microsoft.Compute/virtualMachineScaleSets/${set.name}/virtualMachines/${inst.instanceId}`;
      if (o.realNodes) {
        addNode(store, { name: inst.computerName, pool: set.poolName, providerID, ip });
        continue;
      }
      store.create(nodeType, {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: inst.computerName, labels: { 'kubernetes.azure.com/agentpool': set.poolName, 'kubernetes.io/hostname': inst.computerName } },
        spec: { providerID },
        status: { addresses: [{ type: 'InternalIP', address: ip }], conditions: [{ type: 'Ready', status: 'True' }] },
      });
    }
  }
  const opts: PodIdentityOptions = { store, clock, network, infra: arm, timing: { micAssignmentSeconds: 4, nmiStartupSeconds: 2, micSyncSeconds: 10 } };
  return { clock, store, network, arm, metrics, kubelet, ids, opts, nodes, nodeIp: (n) => ips.get(n)! };
}

let podIpSeq = 10;

/** Creates a Running pod on a node with a fresh pod IP. */
export function addPod(w: World, p: { namespace: string; name: string; node: string; labels?: Record<string, string>; ownerRs?: string }): KObject {
  const t = w.store.typeOrThrow('', 'pods');
  const now = new Date(w.clock.now()).toISOString().replace(/\.\d+Z$/, 'Z');
  return w.store.create(t, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: p.name,
      namespace: p.namespace,
      labels: p.labels ?? {},
      ownerReferences: p.ownerRs ? [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: p.ownerRs, uid: 'rs-uid', controller: true }] : undefined,
    },
    spec: { nodeName: p.node, containers: [{ name: 'app', image: 'contoso.azurecr.io/app:1' }] },
    status: { phase: 'Running', podIP: `10.244.${Math.floor(podIpSeq / 250)}.${(podIpSeq++ % 250) + 1}`, hostIP: w.nodeIp(p.node), startTime: now },
  });
}

export function deletePod(w: World, namespace: string, name: string): void {
  w.store.delete(w.store.typeOrThrow('', 'pods'), namespace, name);
}

/** AzureIdentity + AzureIdentityBinding (selector = `sel`). */
export function addBinding(w: World, p: { namespace: string; identity: UserAssignedIdentity; name: string; selector: string; type?: number; legacy?: boolean }): void {
  const it = w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureidentities');
  const bt = w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureidentitybindings');
  const spec = p.legacy ? { type: p.type ?? 0, ResourceID: p.identity.id, ClientID: p.identity.clientId } : { type: p.type ?? 0, resourceID: p.identity.id, clientID: p.identity.clientId };
  w.store.create(it, { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity', metadata: { name: p.name, namespace: p.namespace }, spec });
  const bspec = p.legacy ? { AzureIdentity: p.name, Selector: p.selector } : { azureIdentity: p.name, selector: p.selector };
  w.store.create(bt, { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: `${p.name}-binding`, namespace: p.namespace }, spec: bspec });
}

export interface Running {
  proc: ContainerProcess;
  logs: string[];
  kill: AbortController;
  code(): number | undefined;
}

/** Runs a container program the way the kubelet would, with a hand-built context. */
export function runProgram(w: World, program: ContainerProgram, c: { pod: KObject; image: string; args: string[]; env?: Record<string, string>; nodeName: string; podIp: string }): Running {
  const logs: string[] = [];
  const kill = new AbortController();
  const proc = program({
    pod: c.pod,
    container: { name: c.pod.metadata.name, image: c.image, args: c.args },
    nodeName: c.nodeName,
    nodeIp: w.nodeIp(c.nodeName),
    podIp: c.podIp,
    env: c.env ?? {},
    argv: c.args,
    clock: w.clock,
    network: w.network,
    log: (l) => logs.push(l),
    signal: kill.signal,
  });
  let code: number | undefined;
  void proc.exited.then((n) => (code = n));
  return { proc, logs, kill, code: () => code };
}

/** Starts an NMI on a node (hostNetwork: its pod IP is the node IP). */
export function startNmi(w: World, program: ContainerProgram, node: string, o: { version?: string; args?: string[]; env?: Record<string, string> } = {}): Running {
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: `nmi-${node.slice(-6)}`, namespace: 'default' }, spec: { nodeName: node, hostNetwork: true } } as KObject;
  const args = o.args ?? ['--node=' + node, '--http-probe-port=8085', '--enableScaleFeatures=true', '--metadata-header-required=true'];
  return runProgram(w, program, { pod, image: `mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:${o.version ?? 'v1.8.17'}`, args, env: o.env, nodeName: node, podIp: w.nodeIp(node) });
}

let micSeq = 0;

/** Starts one MIC replica (pod IP of its own) on a node. */
export function startMic(w: World, program: ContainerProgram, o: { args?: string[]; node?: string; name?: string } = {}): Running & { name: string; podIp: string } {
  const seq = micSeq++;
  const name = o.name ?? `mic-6c8f7d9b5-r${seq}`;
  const node = o.node ?? w.nodes[APPS][0];
  const podIp = `10.244.9.${10 + seq}`;
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: node } } as KObject;
  const r = runProgram(w, program, { pod, image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/mic:v1.8.17', args: ['--cloudconfig=/etc/kubernetes/azure.json', '--logtostderr', ...(o.args ?? [])], env: { MIC_POD_NAMESPACE: 'default' }, nodeName: node, podIp });
  return { ...r, name, podIp };
}

/** A GET from a pod (or any source) through the pod network; connection errors come back as `error`. */
export async function get(w: World, url: string, from: { ip: string; nodeName: string }, headers: Record<string, string> = { Metadata: 'true' }): Promise<SimHttpResponse & { error?: string }> {
  try {
    return await w.network.request({ method: 'GET', url: new URL(url), headers, source: from });
  } catch (e) {
    return { status: 0, body: '', error: (e as Error).message };
  }
}

/** Sends a token request from a pod and returns the pending promise (NMI may hold it). */
export function tokenRequest(w: World, pod: KObject, query = ''): Promise<SimHttpResponse & { error?: string }> {
  return get(w, `http://169.254.169.254${TOKEN_PATH}${query}`, { ip: pod.status.podIP, nodeName: pod.spec.nodeName });
}

/** Advances simulated time in steps until `cond` holds, or fails after `maxMs` of simulated time. */
export async function advanceUntil(clock: ManualClock, cond: () => boolean, maxMs: number, stepMs = 250): Promise<number> {
  const start = clock.now();
  while (!cond()) {
    if (clock.now() - start >= maxMs) throw new Error(`condition not met within ${maxMs} simulated ms`);
    await clock.advance(stepMs);
    // Token signing runs on libuv's thread pool in real time, not on the simulated clock:
    // give it a real moment so a loaded machine cannot make the wait run out.
    await new Promise((r) => setTimeout(r, 5));
  }
  return clock.now() - start;
}

/** Tracks a promise's settlement so tests can assert it is still pending. */
export function track<T>(p: Promise<T>): { settled(): boolean; value(): T | undefined } {
  let done = false;
  let v: T | undefined;
  void p.then((x) => {
    done = true;
    v = x;
  });
  return { settled: () => done, value: () => v };
}
