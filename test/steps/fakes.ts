/**
 * In-memory implementations of our own gateway interfaces (not of any SDK) for step unit tests,
 * plus a builder for a small standard-mode cluster and a step context over a real journal.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { identityDelta } from '../../src/azure/gateway.ts';
import type { AssignPermission, AzureGateway, ManagedClusterInfo, ScaleSet, ScaleSetInstance } from '../../src/azure/gateway.ts';
import { Journal, type ClusterIdentity } from '../../src/engine/journal.ts';
import type { StepContext, StepId } from '../../src/engine/step.ts';
import type { KubeGateway, KubeObject, ListOptions, ResourceRef, WaitOptions, WaitProbe } from '../../src/kube/gateway.ts';
import type { AccessReviewRequest, AccessReviewResult } from '../../src/kube/gateway.ts';

const { applyPatch } = fastJsonPatch;

export const SUB = '1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a6b';
export const NODE_RG = 'MC_prod_prod-weu_westeurope';
export const AKS_ID = `/subscriptions/${SUB}/resourceGroups/prod/providers/Microsoft.ContainerService/managedClusters/prod-weu`;
export const idOf = (name: string, rg = 'identities') => `/subscriptions/${SUB}/resourcegroups/${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;
export const KUBELET_ID = idOf('prod-weu-agentpool', NODE_RG);

/** One write the fake Kubernetes API accepted. */
export interface KubeWrite {
  verb: 'create' | 'patch' | 'delete' | 'scale';
  kind: string;
  key: string;
  body?: unknown;
}

/** Store key of a fake object (shared with the steps 5-7 fakes). */
export function key(kind: string, ns: string | undefined, name: string | undefined): string {
  return `${kind}/${ns ?? ''}/${name ?? ''}`;
}

/** Equality/existence label selector matching, all the fakes need. */
export function matchesLabels(obj: KubeObject, selector: string | undefined): boolean {
  if (!selector) return true;
  const labels = obj.metadata?.labels ?? {};
  return selector.split(',').every((term) => {
    const [k, v] = term.split('=');
    return v === undefined ? k in labels : labels[k] === v;
  });
}

export class FakeKube implements KubeGateway {
  readonly dryRunMode = 'none' as const;
  readonly objects = new Map<string, KubeObject>();
  readonly writes: KubeWrite[] = [];
  readonly reads: string[] = [];
  /** `/healthz` bodies by `ns/pod:port`; default `Active`. */
  readonly health = new Map<string, string>();
  private nextUid = 1;

  add(obj: KubeObject): KubeObject {
    const o = structuredClone(obj);
    o.metadata ??= {};
    o.metadata.uid ??= `uid-${this.nextUid++}`;
    o.metadata.generation ??= 1;
    this.objects.set(key(o.kind!, o.metadata.namespace, o.metadata.name), o);
    return o;
  }
  find(kind: string, ns: string | undefined, name: string): KubeObject | undefined {
    return this.objects.get(key(kind, ns, name));
  }
  async clusterIdentity() {
    return { server: 'https://fake:443', contextName: 'fake', clusterName: 'prod-weu', kubeSystemUid: 'ks-uid' };
  }
  async list<T extends KubeObject = KubeObject>(ref: ResourceRef, opts: ListOptions = {}): Promise<T[]> {
    this.reads.push(`list ${ref.kind}`);
    return [...this.objects.values()]
      .filter((o) => o.kind === ref.kind && (!opts.namespace || o.metadata?.namespace === opts.namespace) && matchesLabels(o, opts.labelSelector))
      .filter((o) => !opts.fieldSelector || opts.fieldSelector === `spec.nodeName=${(o.spec as { nodeName?: string })?.nodeName}`)
      .map((o) => structuredClone(o) as T);
  }
  async get<T extends KubeObject = KubeObject>(ref: ResourceRef, ns: string | undefined, name: string): Promise<T | undefined> {
    this.reads.push(`get ${ref.kind}`);
    const o = this.find(ref.kind, ns, name);
    return o ? (structuredClone(o) as T) : undefined;
  }
  async create<T extends KubeObject>(obj: T): Promise<T> {
    if (this.find(obj.kind!, obj.metadata?.namespace, obj.metadata?.name ?? '')) throw Object.assign(new Error('AlreadyExists'), { status: 409 });
    this.writes.push({ verb: 'create', kind: obj.kind!, key: key(obj.kind!, obj.metadata?.namespace, obj.metadata?.name), body: obj });
    return this.add(obj) as T;
  }
  async replace<T extends KubeObject>(): Promise<T> {
    throw new Error('replace is not used by these steps');
  }
  async patch<T extends KubeObject = KubeObject>(ref: ResourceRef, ns: string | undefined, name: string, patch: unknown, type: 'strategic' | 'merge' | 'json'): Promise<T> {
    if (type !== 'json') throw new Error(`the fake only applies JSON patches, got ${type}`);
    const o = this.find(ref.kind, ns, name);
    if (!o) throw Object.assign(new Error('NotFound'), { status: 404 });
    const next = applyPatch(structuredClone(o), patch as Operation[], true, false).newDocument;
    if (JSON.stringify(next.spec) !== JSON.stringify(o.spec)) next.metadata!.generation = (o.metadata?.generation ?? 1) + 1;
    // The fake controllers roll out at once: the new generation is observed and every replica updated.
    if (next.status && (ref.kind === 'Deployment' || ref.kind === 'DaemonSet')) (next.status as { observedGeneration?: number }).observedGeneration = next.metadata!.generation;
    this.objects.set(key(ref.kind, ns, name), next);
    this.writes.push({ verb: 'patch', kind: ref.kind, key: key(ref.kind, ns, name), body: patch });
    return structuredClone(next) as T;
  }
  async delete(ref: ResourceRef, ns: string | undefined, name: string): Promise<'deleted' | 'not-found'> {
    const k = key(ref.kind, ns, name);
    if (!this.objects.delete(k)) return 'not-found';
    this.writes.push({ verb: 'delete', kind: ref.kind, key: k });
    return 'deleted';
  }
  async scale(ns: string, name: string, replicas: number) {
    const o = this.find('Deployment', ns, name)!;
    const previousReplicas = (o.spec as { replicas?: number }).replicas ?? 1;
    (o.spec as { replicas?: number }).replicas = replicas;
    this.writes.push({ verb: 'scale', kind: 'Deployment', key: key('Deployment', ns, name), body: replicas });
    // The fake controller acts at once: pods follow the replica count.
    for (const [k, p] of this.objects) if (p.kind === 'Pod' && p.metadata?.namespace === ns && p.metadata?.labels?.app === name && replicas === 0) this.objects.delete(k);
    if (replicas > 0) for (let i = 0; i < replicas; i++) this.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `${name}-${i}`, namespace: ns, labels: { app: name } }, status: { phase: 'Running' } });
    return { previousReplicas, replicas };
  }
  async evict(): Promise<never> {
    throw new Error('evict is not used by these steps');
  }
  async podLog(): Promise<string> {
    return '';
  }
  async proxyGet(ns: string, pod: string, port: number) {
    return { status: 200, body: this.health.get(`${ns}/${pod}:${port}`) ?? 'Active' };
  }
  async raw<T>(): Promise<T> {
    throw new Error('raw is not used by these steps');
  }
  /** Access reviews answered `allowed` unless listed in `deniedAccess` as `verb group/resource namespace`. */
  readonly deniedAccess = new Set<string>();
  async accessReview(r: AccessReviewRequest): Promise<AccessReviewResult> {
    const resource = r.subresource ? `${r.resource}/${r.subresource}` : r.resource;
    return { allowed: !this.deniedAccess.has(`${r.verb} ${r.group}/${resource} ${r.namespace ?? ''}`.trim()) };
  }
  async waitFor<T>(probe: WaitProbe<T>, opts: WaitOptions): Promise<T> {
    for (let i = 0; i < 50; i++) {
      const v = await probe(() => {});
      if (v) return v;
      await new Promise((r) => setTimeout(r, 1));
    }
    throw new Error(`timed out waiting for ${opts.describe}`);
  }
  scoped(): KubeGateway {
    return this;
  }
  calls() {
    return { total: this.reads.length + this.writes.length, byKey: {}, retries: 0, suppressedWrites: 0 };
  }
  dryRunLog() {
    return [];
  }
}

/** One PATCH the fake ARM accepted. */
export interface ArmPatch {
  vmss: string;
  add: string[];
  remove: string[];
}

export class FakeAzure implements AzureGateway {
  readonly dryRunMode = 'none' as const;
  readonly subscriptionId = SUB;
  readonly sets = new Map<string, ScaleSet>();
  readonly instances = new Map<string, ScaleSetInstance[]>();
  readonly patches: ArmPatch[] = [];
  readonly upgrades: { vmss: string; instanceIds: string[] }[] = [];
  readonly denied = new Set<string>();
  cluster: ManagedClusterInfo = { id: AKS_ID, name: 'prod-weu', location: 'westeurope', nodeResourceGroup: NODE_RG, agentPools: [] };

  addSet(pool: string, identities: string[]): ScaleSet {
    const name = `aks-${pool}-12345678-vmss`;
    const set: ScaleSet = {
      id: `/subscriptions/${SUB}/resourceGroups/${NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/${name}`,
      name,
      resourceGroup: NODE_RG,
      location: 'westeurope',
      tags: { 'aks-managed-poolName': pool },
      identityType: 'UserAssigned',
      userAssignedIdentities: Object.fromEntries(identities.map((id) => [id, { clientId: `client-of-${id.split('/').pop()}`, principalId: `principal-of-${id.split('/').pop()}` }])),
    };
    this.sets.set(name, set);
    this.cluster.agentPools.push({ name: pool, type: 'VirtualMachineScaleSets' });
    this.instances.set(name, [{ instanceId: '0', name: `${name}_0`, latestModelApplied: true, identityIds: identities }]);
    return set;
  }
  async getManagedCluster() {
    return structuredClone(this.cluster);
  }
  async listScaleSets() {
    return [...this.sets.values()].map((s) => structuredClone(s));
  }
  async getScaleSet(_rg: string, name: string) {
    const s = this.sets.get(name);
    return s ? structuredClone(s) : undefined;
  }
  async assignIdentities(rg: string, vmss: string, ids: string[]) {
    const set = this.sets.get(vmss)!;
    const { toAdd, present } = identityDelta(Object.keys(set.userAssignedIdentities), ids);
    for (const id of toAdd) {
      if (this.denied.has(id.toLowerCase())) throw Object.assign(new Error(`LinkedAuthorizationFailed on ${id}`), { code: 'LinkedAuthorizationFailed' });
    }
    if (toAdd.length) {
      this.patches.push({ vmss, add: toAdd, remove: [] });
      for (const id of toAdd) set.userAssignedIdentities[id] = { clientId: `client-of-${id.split('/').pop()}` };
    }
    return { added: toAdd, alreadyPresent: present, identityType: set.identityType, patches: toAdd.length ? 1 : 0, dryRun: false };
  }
  async unassignIdentities(rg: string, vmss: string, ids: string[]) {
    const set = this.sets.get(vmss)!;
    const byLower = new Map(Object.keys(set.userAssignedIdentities).map((k) => [k.toLowerCase(), k]));
    const removed = ids.filter((id) => byLower.has(id.toLowerCase()));
    for (const id of removed) delete set.userAssignedIdentities[byLower.get(id.toLowerCase())!];
    if (removed.length) this.patches.push({ vmss, add: [], remove: removed });
    return { removed, notPresent: ids.filter((id) => !byLower.has(id.toLowerCase())), identityType: set.identityType, patches: removed.length ? 1 : 0, dryRun: false };
  }
  async listInstances(_rg: string, vmss: string) {
    return structuredClone(this.instances.get(vmss) ?? []);
  }
  async manualUpgrade(_rg: string, vmss: string, instanceIds: string[]) {
    this.upgrades.push({ vmss, instanceIds });
    for (const i of this.instances.get(vmss) ?? []) if (instanceIds.includes(i.instanceId)) i.latestModelApplied = true;
  }
  async reimageInstances(): Promise<void> {
    throw new Error('not used');
  }
  async deleteInstances(): Promise<void> {
    throw new Error('not used');
  }
  async getIdentity() {
    return undefined;
  }
  async listIdentities() {
    return [];
  }
  async canAssign(identityId: string): Promise<AssignPermission> {
    const denied = this.denied.has(identityId.toLowerCase());
    return { identityId, allowed: !denied, reason: denied ? 'no role assignment grants assign/action' : 'granted' };
  }
  scoped(): AzureGateway {
    return this;
  }
  calls() {
    return { total: 0, byKey: {}, retries: 0, suppressedWrites: 0 };
  }
  dryRunLog() {
    return [];
  }
}

export const CLUSTER: ClusterIdentity = { name: 'prod-weu', apiServer: 'https://fake:443', kubeSystemUid: 'ks-uid', subscriptionId: SUB, aksResourceId: AKS_ID };

/** A fresh directory for journal and inventory files. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'podid-steps-'));
}

/** A step context over the fakes and a real journal file in `dir`. */
export async function contextFor(stepId: StepId, kube: FakeKube, azure: FakeAzure, dir: string, extra: { inventory?: unknown; options?: Record<string, unknown> } = {}): Promise<StepContext<KubeGateway, AzureGateway> & { messages: string[] }> {
  const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
  const messages: string[] = [];
  return {
    kube,
    azure,
    journal: journal.forStep(stepId),
    inventory: extra.inventory,
    inventoryPath: join(dir, 'inventory.yaml'),
    options: { aksId: AKS_ID, ...extra.options },
    dryRun: 'none',
    signal: new AbortController().signal,
    deadline: Date.now() + 30_000,
    progress: (m) => messages.push(m),
    log: { info: (m) => messages.push(m), warn: (m) => messages.push(m), debug: () => {} },
    messages,
  };
}

// --- A small standard-mode cluster --------------------------------------------------------------

const NMI_ARGS = ['--node=$(NODE_NAME)', '--http-probe-port=8085', '--enableScaleFeatures=true', '--metadata-header-required=true'];

export interface ClusterOptions {
  nmiImage?: string;
  nmiArgs?: string[];
  helm?: boolean;
  micArgs?: string[];
}

/**
 * Pools `pay` and `batch`; identities `api-id` (payments) and `shared-storage-id` (platform,
 * used by batch/archiver too, so a copy is needed); NMI and MIC in `default`.
 */
export function standardCluster(opts: ClusterOptions = {}): { kube: FakeKube; azure: FakeAzure } {
  const kube = new FakeKube();
  const azure = new FakeAzure();
  const helmLabels: Record<string, string> = opts.helm ? { 'app.kubernetes.io/managed-by': 'Helm', 'helm.sh/chart': 'aad-pod-identity-4.1.18', 'app.kubernetes.io/component': 'nmi' } : { component: 'nmi' };
  kube.add({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-system' } });
  const nmiName = opts.helm ? 'aad-pod-identity-nmi' : 'nmi';
  kube.add({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: nmiName, namespace: 'default', labels: helmLabels, ...(opts.helm ? { annotations: { 'meta.helm.sh/release-name': 'pi', 'meta.helm.sh/release-namespace': 'default' } } : {}) },
    spec: {
      selector: { matchLabels: { component: 'nmi' } },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } },
      template: { spec: { containers: [{ name: 'nmi', image: opts.nmiImage ?? 'mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17', args: opts.nmiArgs ?? NMI_ARGS }] } },
    },
    status: { observedGeneration: 1, desiredNumberScheduled: 2, updatedNumberScheduled: 2, numberAvailable: 2 },
  });
  kube.add({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'mic', namespace: 'default', labels: { component: 'mic' } },
    spec: { replicas: 2, selector: { matchLabels: { app: 'mic' } }, template: { spec: { containers: [{ name: 'mic', image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/mic:v1.8.17', args: opts.micArgs ?? ['--cloudconfig=/etc/kubernetes/azure.json', '--logtostderr'] }] } } },
    status: { observedGeneration: 1, replicas: 2, updatedReplicas: 2, availableReplicas: 2 },
  });
  for (const i of [0, 1]) kube.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `mic-${i}`, namespace: 'default', labels: { app: 'mic' } }, status: { phase: 'Running' } });

  for (const pool of ['pay', 'batch']) {
    const set = azure.addSet(pool, [KUBELET_ID]);
    kube.add({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: `aks-${pool}-12345678-vmss000000`, labels: { 'kubernetes.azure.com/agentpool': pool } },
      spec: { providerID: `azure://${set.id.replace(NODE_RG, NODE_RG.toLowerCase())}/virtualMachines/0` },
      status: { conditions: [{ type: 'Ready', status: 'True' }] },
    });
  }
  const identity = (name: string, ns: string) =>
    kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity', metadata: { name, namespace: ns }, spec: { type: 0, resourceID: idOf(name), clientID: `client-${name}` } });
  const binding = (name: string, ns: string, identityName: string, selector: string) =>
    kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name, namespace: ns }, spec: { azureIdentity: identityName, selector } });
  identity('api-id', 'payments');
  binding('api-id-binding', 'payments', 'api-id', 'api');
  identity('shared-storage-id', 'platform');
  binding('shared-storage-id-binding', 'platform', 'shared-storage-id', 'shared-storage');

  const workload = (ns: string, name: string, pool: string, selector: string, replicas: number) => {
    // Pinned to its pool as real workloads are: the inventory plans identities for every pool a template may run on.
    const placement = { nodeSelector: { 'kubernetes.azure.com/agentpool': pool } };
    const dep = kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: ns }, spec: { replicas, template: { metadata: { labels: { aadpodidbinding: selector } }, spec: placement } } });
    const rs = kube.add({ apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: `${name}-7d9f`, namespace: ns, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name, uid: dep.metadata!.uid!, controller: true }] } });
    for (let i = 0; i < replicas; i++) {
      kube.add({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `${name}-7d9f-${i}`, namespace: ns, labels: { aadpodidbinding: selector }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata!.name!, uid: rs.metadata!.uid!, controller: true }] },
        spec: { nodeName: `aks-${pool}-12345678-vmss000000`, ...placement },
        status: { phase: 'Running' },
      });
    }
  };
  workload('payments', 'api', 'pay', 'api', 2);
  workload('batch', 'archiver', 'batch', 'shared-storage', 1);
  workload('platform', 'backup', 'pay', 'shared-storage', 1);
  return { kube, azure };
}
