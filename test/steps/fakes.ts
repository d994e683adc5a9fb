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
import type { AssignPermission, AzureGateway, FederatedCredential, FederatedCredentialSpec, ManagedClusterInfo, PutFederatedCredentialResult, ScaleSet, ScaleSetInstance, WorkloadIdentitySettingsChange } from '../../src/azure/gateway.ts';
import { Journal, type ClusterIdentity } from '../../src/engine/journal.ts';
import { runbookOf, type StepContext, type StepId } from '../../src/engine/step.ts';
import type { KubeGateway } from '../../src/kube/gateway.ts';
import { FakeKube } from './fake-kube.ts';

const { applyPatch } = fastJsonPatch;

export const SUB = '1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a6b';
export const NODE_RG = 'MC_prod_prod-weu_westeurope';
export const AKS_ID = `/subscriptions/${SUB}/resourceGroups/prod/providers/Microsoft.ContainerService/managedClusters/prod-weu`;
export const idOf = (name: string, rg = 'identities') => `/subscriptions/${SUB}/resourcegroups/${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;
export const KUBELET_ID = idOf('prod-weu-agentpool', NODE_RG);

export { FakeKube, key, matchesLabels, type KubeWrite } from './fake-kube.ts';

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
  /** Federated credentials by identity id (lower case). */
  readonly credentials = new Map<string, FederatedCredential[]>();
  /** Every managed cluster update and credential write, in order. */
  readonly wiWrites: string[] = [];
  /** Issuer URL AKS gives the cluster once its OIDC issuer is on. */
  issuerUrl = 'https://issuer.example/tenant/guid/';
  async updateWorkloadIdentitySettings(_aksId: string, change: WorkloadIdentitySettingsChange) {
    const oidc = change.oidcIssuerEnabled ?? this.cluster.oidcIssuer?.enabled ?? false;
    const wi = change.workloadIdentityEnabled ?? this.cluster.workloadIdentityEnabled ?? false;
    if (oidc === (this.cluster.oidcIssuer?.enabled ?? false) && wi === (this.cluster.workloadIdentityEnabled ?? false)) return structuredClone(this.cluster);
    if (this.cluster.oidcIssuer?.enabled && !oidc) throw new Error('The OIDC issuer cannot be disabled once it is enabled on a managed cluster.');
    this.wiWrites.push(`cluster oidc=${oidc} wi=${wi}`);
    this.cluster.oidcIssuer = { enabled: oidc, ...(oidc ? { issuerUrl: this.issuerUrl } : {}) };
    this.cluster.workloadIdentityEnabled = wi;
    return structuredClone(this.cluster);
  }
  async listFederatedCredentials(identityId: string) {
    return structuredClone(this.credentials.get(identityId.toLowerCase()) ?? []);
  }
  async getFederatedCredential(identityId: string, name: string) {
    const c = (this.credentials.get(identityId.toLowerCase()) ?? []).find((x) => x.name === name);
    return c ? structuredClone(c) : undefined;
  }
  async putFederatedCredential(identityId: string, spec: FederatedCredentialSpec): Promise<PutFederatedCredentialResult> {
    const list = this.credentials.get(identityId.toLowerCase()) ?? [];
    this.credentials.set(identityId.toLowerCase(), list);
    const same = list.find((c) => c.issuer === spec.issuer && c.subject === spec.subject && c.name !== spec.name);
    if (same) return { outcome: 'exists', credential: structuredClone(same), dryRun: false };
    const at = list.findIndex((c) => c.name === spec.name);
    if (at < 0 && list.length >= 20) throw new Error(`identity ${identityId} is at its limit of 20 federated identity credentials`);
    const credential = { id: `${identityId}/federatedIdentityCredentials/${spec.name}`, name: spec.name, issuer: spec.issuer, subject: spec.subject, audiences: [...spec.audiences] };
    this.wiWrites.push(`put ${identityId.split('/').pop()}/${spec.name}`);
    if (at >= 0) list[at] = credential;
    else list.push(credential);
    return { outcome: at >= 0 ? 'updated' : 'created', credential: structuredClone(credential), dryRun: false };
  }
  async deleteFederatedCredential(identityId: string, name: string) {
    const list = this.credentials.get(identityId.toLowerCase()) ?? [];
    const at = list.findIndex((c) => c.name === name);
    if (at < 0) return false;
    this.wiWrites.push(`delete ${identityId.split('/').pop()}/${name}`);
    list.splice(at, 1);
    return true;
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

/** A step context over the fakes and a real journal file (of the step's runbook) in `dir`. */
export async function contextFor(stepId: StepId, kube: FakeKube, azure: FakeAzure, dir: string, extra: { inventory?: unknown; options?: Record<string, unknown> } = {}): Promise<StepContext<KubeGateway, AzureGateway> & { messages: string[] }> {
  const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER, { runbook: runbookOf(stepId) });
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
  // Steps 1-4 tests assert on what a wait sees, not on how long it waits.
  kube.maxPolls = 50;
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
