/**
 * The Azure side of the drain, test and cleanup unit tests (a scale set whose reimage makes the
 * node NotReady and then Ready with a new boot id) and their cluster builders; the Kubernetes
 * side is the one {@link FakeKube} of every step unit test.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import type { AzureGateway, ScaleSetInstance } from '../../src/azure/gateway.ts';
import { Journal, type ClusterIdentity } from '../../src/engine/journal.ts';
import type { StepContext, StepId } from '../../src/engine/step.ts';
import type { EvictionResult, KubeGateway, KubeObject, ListOptions, ResourceRef, WaitOptions, WaitProbe } from '../../src/kube/gateway.ts';
import { WaitTimeoutError } from '../../src/kube/errors.ts';
import { FakeKube } from './fake-kube.ts';

export { FakeKube };

const run = promisify(execFile);

export const SUB = '1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a6b';
export const NODE_RG = 'MC_prod_prod-weu_westeurope';
export const CLUSTER: ClusterIdentity = {
  name: 'prod-weu',
  apiServer: 'https://fake:443',
  kubeSystemUid: 'ks-uid',
  subscriptionId: SUB,
  aksResourceId: `/subscriptions/${SUB}/resourceGroups/prod/providers/Microsoft.ContainerService/managedClusters/prod-weu`,
};
export const idOf = (name: string) => `/subscriptions/${SUB}/resourcegroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;

/** Fake Azure gateway: instances of scale sets; reimage and delete drive the fake nodes. */
export class MiniAzure implements AzureGateway {
  readonly dryRunMode = 'none' as const;
  readonly subscriptionId = SUB;
  readonly calls_: string[] = [];
  /** Milliseconds a reimage keeps the node NotReady. */
  reimageMs = 20;
  /** When set, a deleted instance is followed by a new node in the pool (the cluster autoscaler). */
  autoscale = false;
  private nextInstance = 100;
  private readonly kube: FakeKube;
  constructor(kube: FakeKube) {
    this.kube = kube;
  }

  async getManagedCluster(): Promise<never> {
    throw new Error('not used');
  }
  async listScaleSets() {
    return [];
  }
  async getScaleSet() {
    return undefined;
  }
  async assignIdentities(): Promise<never> {
    throw new Error('not used');
  }
  async unassignIdentities(): Promise<never> {
    throw new Error('not used');
  }
  async listInstances(_rg: string, vmss: string): Promise<ScaleSetInstance[]> {
    return this.kube
      .all('Node')
      .map((n) => /virtualMachineScaleSets\/([^/]+)\/virtualMachines\/(\d+)$/.exec(String((n.spec as { providerID?: string }).providerID)))
      .filter((m): m is RegExpExecArray => Boolean(m) && m![1] === vmss)
      .map((m) => ({ instanceId: m[2], name: `${vmss}_${m[2]}`, provisioningState: 'Succeeded', identityIds: [] }));
  }
  async manualUpgrade(): Promise<void> {}
  async reimageInstances(_rg: string, vmss: string, ids: string[]): Promise<void> {
    this.calls_.push(`reimage ${vmss} ${ids.join(',')}`);
    for (const id of ids) {
      const node = this.nodeOf(vmss, id)!;
      this.kube.events.push(`reimage ${node.metadata!.name}`);
      setReady(node, false);
      for (const p of this.kube.all('Pod').filter((p) => (p.spec as { nodeName?: string }).nodeName === node.metadata!.name)) {
        const ds = p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet');
        if (!ds) this.kube.remove('Pod', p.metadata!.namespace, p.metadata!.name);
      }
      setTimeout(() => {
        setReady(node, true);
        (node.status as { nodeInfo: { bootID: string } }).nodeInfo.bootID = `boot-${Math.random().toString(36).slice(2)}`;
      }, this.reimageMs);
    }
  }
  async deleteInstances(_rg: string, vmss: string, ids: string[]): Promise<void> {
    this.calls_.push(`delete ${vmss} ${ids.join(',')}`);
    for (const id of ids) {
      const node = this.nodeOf(vmss, id)!;
      const pool = node.metadata!.labels!['kubernetes.azure.com/agentpool'];
      for (const p of this.kube.all('Pod').filter((p) => (p.spec as { nodeName?: string }).nodeName === node.metadata!.name)) this.kube.remove('Pod', p.metadata!.namespace, p.metadata!.name);
      this.kube.remove('Node', undefined, node.metadata!.name);
      if (this.autoscale) {
        setTimeout(() => {
          // The new node registers and the NMI DaemonSet puts a pod on it.
          const added = this.kube.add(nodeObject(pool, this.nextInstance++)).metadata!.name!;
          this.kube.add(podObject('default', `nmi-${added.slice(-4)}`, added, { kind: 'DaemonSet', name: 'nmi' }));
        }, this.reimageMs);
      }
    }
  }
  async updateWorkloadIdentitySettings(): Promise<never> {
    throw new Error('not used');
  }
  async listFederatedCredentials() {
    return [];
  }
  async getFederatedCredential() {
    return undefined;
  }
  async putFederatedCredential(): Promise<never> {
    throw new Error('not used');
  }
  async deleteFederatedCredential(): Promise<never> {
    throw new Error('not used');
  }
  async getIdentity() {
    return undefined;
  }
  async listIdentities() {
    return [];
  }
  async canAssign(identityId: string) {
    return { identityId, allowed: true, reason: 'fake' };
  }
  scoped(): AzureGateway {
    return this;
  }
  calls() {
    return { total: this.calls_.length } as never;
  }
  dryRunLog() {
    return [];
  }
  private nodeOf(vmss: string, id: string): KubeObject | undefined {
    return this.kube.all('Node').find((n) => String((n.spec as { providerID?: string }).providerID).endsWith(`/virtualMachineScaleSets/${vmss}/virtualMachines/${id}`));
  }
}

function setReady(node: KubeObject, ready: boolean): void {
  const st = node.status as { conditions: { type: string; status: string }[] };
  st.conditions = [{ type: 'Ready', status: ready ? 'True' : 'False' }];
}

/** A Ready node of a pool, backed by a VMSS instance. */
export function nodeObject(pool: string, instance: number): KubeObject {
  const vmss = `aks-${pool}-12345678-vmss`;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: `${vmss}${instance.toString(36).padStart(6, '0')}`, labels: { 'kubernetes.azure.com/agentpool': pool, agentpool: pool } },
    spec: { providerID: `azure:///subscriptions/${SUB}/resourceGroups/${NODE_RG.toLowerCase()}/providers/Microsoft.Compute/virtualMachineScaleSets/${vmss}/virtualMachines/${instance}` },
    status: { conditions: [{ type: 'Ready', status: 'True' }], nodeInfo: { bootID: `boot-${pool}-${instance}` } },
  };
}

/** A pod on a node; `owner` decides what kubectl drain does with it. */
export function podObject(ns: string, name: string, node: string, owner: { kind: string; name: string } | undefined, labels: Record<string, string> = {}, grace = 30): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels, ...(owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: owner.kind, name: owner.name, uid: `owner-${owner.name}`, controller: true }] } : {}) },
    spec: { nodeName: node, terminationGracePeriodSeconds: grace },
    status: { phase: 'Running' },
  };
}

/** A temp directory for journal, inventory and report files. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'podid-steps57-'));
}

/** A step context over the fakes and a real journal file in `dir`. */
export async function contextFor(
  stepId: StepId,
  kube: KubeGateway,
  azure: AzureGateway,
  dir: string,
  extra: { inventory?: unknown; options?: Record<string, unknown>; deadlineMs?: number; signal?: AbortSignal } = {},
): Promise<StepContext<KubeGateway, AzureGateway> & { messages: string[]; journalPath: string }> {
  const journalPath = join(dir, 'journal.json');
  const journal = await Journal.open(journalPath, CLUSTER);
  const messages: string[] = [];
  return {
    kube,
    azure,
    journal: journal.forStep(stepId),
    inventory: extra.inventory,
    inventoryPath: join(dir, 'inventory.yaml'),
    options: { ...extra.options },
    dryRun: 'none',
    signal: extra.signal ?? new AbortController().signal,
    deadline: Date.now() + (extra.deadlineMs ?? 20_000),
    progress: (m) => messages.push(m),
    log: { info: (m) => messages.push(m), warn: (m) => messages.push(m), debug: (m) => messages.push(m) },
    messages,
    journalPath,
  };
}

/** Writes data another step recorded (e.g. `inventory`'s `podIdentity`) into the journal file. */
export async function recordStepData(dir: string, stepId: StepId, key: string, value: unknown): Promise<void> {
  const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
  await journal.forStep(stepId).setData(key, value);
}
