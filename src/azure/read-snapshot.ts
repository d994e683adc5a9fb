/**
 * The Azure side of the command's read snapshot (see `src/kube/read-snapshot.ts`): in `shared`
 * mode the managed cluster, each resource group's scale set and identity lists, each scale set's
 * instances, each identity and each permission check (`Microsoft.Authorization/permissions` on
 * one identity, the scope a role assignment for `assign/action` is made at) are read once per
 * command. A permission answer is cached as it came, so an identity the caller may not assign
 * stays a blocker in every plan that asks. Writes invalidate what they may change: a VMSS PATCH
 * that scale set (its GET, its resource group's list, its instances); an instance operation
 * (reimage, delete, manual upgrade) also the managed cluster (pool counts) and, in Kubernetes,
 * the nodes and everything that follows pods.
 */
import type { AssignPermission, AssignResult, AzureGateway, CallCounts, DryRunEntry, DryRunMode, FederatedCredential, FederatedCredentialSpec, ManagedClusterInfo, ManagedIdentity, PutFederatedCredentialResult, ScaleSet, ScaleSetInstance, UnassignResult, WorkloadIdentitySettingsChange } from './gateway.ts';
import { ARM_SCALE_SETS_TAG, invalidating, kubeWriteTags, type ReadSnapshot } from '../kube/read-snapshot.ts';

const CLUSTER_TAG = 'arm:managed-cluster';
const vmssTag = (resourceGroup: string, name: string): string => `arm:vmss:${resourceGroup.toLowerCase()}/${name.toLowerCase()}`;
const vmssListTag = (resourceGroup: string): string => `arm:vmss-list:${resourceGroup.toLowerCase()}`;
const ficTag = (identityId: string): string => `arm:fic:${identityId.toLowerCase()}`;

/** Decorates an Azure gateway with the command's read snapshot; `scoped()` views share it. */
export function snapshotAzureGateway(inner: AzureGateway, snapshot: ReadSnapshot): AzureGateway {
  return new SnapshotAzureGateway(inner, snapshot);
}

class SnapshotAzureGateway implements AzureGateway {
  readonly #inner: AzureGateway;
  readonly #snapshot: ReadSnapshot;

  constructor(inner: AzureGateway, snapshot: ReadSnapshot) {
    this.#inner = inner;
    this.#snapshot = snapshot;
  }

  get dryRunMode(): DryRunMode {
    return this.#inner.dryRunMode;
  }

  get subscriptionId(): string {
    return this.#inner.subscriptionId;
  }

  async getManagedCluster(aksId: string): Promise<ManagedClusterInfo> {
    return structuredClone(await this.#snapshot.read(`arm:cluster:${aksId.toLowerCase()}`, [CLUSTER_TAG], () => this.#inner.getManagedCluster(aksId)));
  }

  async listScaleSets(resourceGroup: string): Promise<ScaleSet[]> {
    return structuredClone(await this.#snapshot.read(listKey(resourceGroup), [ARM_SCALE_SETS_TAG, vmssListTag(resourceGroup)], () => this.#inner.listScaleSets(resourceGroup)));
  }

  async getScaleSet(resourceGroup: string, name: string): Promise<ScaleSet | undefined> {
    const listed = this.#snapshot.peek<ScaleSet[]>(listKey(resourceGroup));
    if (listed) {
      const found = (await listed).find((s) => s.name.toLowerCase() === name.toLowerCase());
      return found ? structuredClone(found) : undefined;
    }
    const set = await this.#snapshot.read(`arm:vmss:${resourceGroup.toLowerCase()}/${name.toLowerCase()}`, [ARM_SCALE_SETS_TAG, vmssTag(resourceGroup, name)], () => this.#inner.getScaleSet(resourceGroup, name));
    return set === undefined ? undefined : structuredClone(set);
  }

  assignIdentities(resourceGroup: string, vmss: string, identityIds: string[]): Promise<AssignResult> {
    return invalidating(this.#snapshot, this.#identityWriteTags(resourceGroup, vmss), () => this.#inner.assignIdentities(resourceGroup, vmss, identityIds));
  }

  unassignIdentities(resourceGroup: string, vmss: string, identityIds: string[]): Promise<UnassignResult> {
    return invalidating(this.#snapshot, this.#identityWriteTags(resourceGroup, vmss), () => this.#inner.unassignIdentities(resourceGroup, vmss, identityIds));
  }

  async listInstances(resourceGroup: string, vmss: string): Promise<ScaleSetInstance[]> {
    return structuredClone(await this.#snapshot.read(`arm:instances:${resourceGroup.toLowerCase()}/${vmss.toLowerCase()}`, [ARM_SCALE_SETS_TAG, vmssTag(resourceGroup, vmss)], () => this.#inner.listInstances(resourceGroup, vmss)));
  }

  manualUpgrade(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void> {
    return invalidating(this.#snapshot, this.#instanceWriteTags(resourceGroup, vmss), () => this.#inner.manualUpgrade(resourceGroup, vmss, instanceIds));
  }

  reimageInstances(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void> {
    return invalidating(this.#snapshot, this.#instanceWriteTags(resourceGroup, vmss), () => this.#inner.reimageInstances(resourceGroup, vmss, instanceIds));
  }

  deleteInstances(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void> {
    return invalidating(this.#snapshot, this.#instanceWriteTags(resourceGroup, vmss), () => this.#inner.deleteInstances(resourceGroup, vmss, instanceIds));
  }

  async getIdentity(identityId: string): Promise<ManagedIdentity | undefined> {
    const identity = await this.#snapshot.read(`arm:identity:${identityId.toLowerCase()}`, ['arm:identities'], () => this.#inner.getIdentity(identityId));
    return identity === undefined ? undefined : structuredClone(identity);
  }

  async listIdentities(resourceGroup: string): Promise<ManagedIdentity[]> {
    return structuredClone(await this.#snapshot.read(`arm:identity-list:${resourceGroup.toLowerCase()}`, ['arm:identities'], () => this.#inner.listIdentities(resourceGroup)));
  }

  async canAssign(identityId: string): Promise<AssignPermission> {
    // One permission read per identity scope and command: this tool never changes role assignments.
    const answer = await this.#snapshot.read(`arm:permissions:${identityId.toLowerCase()}`, [`arm:permissions:${identityId.toLowerCase()}`], () => this.#inner.canAssign(identityId));
    return { ...answer, identityId };
  }

  updateWorkloadIdentitySettings(aksId: string, change: WorkloadIdentitySettingsChange): Promise<ManagedClusterInfo> {
    // Turning workload identity on or off deploys or removes AKS's webhook in kube-system: the pods and Deployments change too.
    const tags = (): string[] | '*' => {
      if (this.#inner.dryRunMode !== 'none') return [];
      const kube = kubeWriteTags('Deployment');
      return kube === '*' ? '*' : [CLUSTER_TAG, ...kube];
    };
    return invalidating(this.#snapshot, tags(), () => this.#inner.updateWorkloadIdentitySettings(aksId, change));
  }

  async listFederatedCredentials(identityId: string): Promise<FederatedCredential[]> {
    return structuredClone(await this.#snapshot.read(`arm:fic-list:${identityId.toLowerCase()}`, [ficTag(identityId)], () => this.#inner.listFederatedCredentials(identityId)));
  }

  async getFederatedCredential(identityId: string, name: string): Promise<FederatedCredential | undefined> {
    const c = await this.#snapshot.read(`arm:fic:${identityId.toLowerCase()}/${name}`, [ficTag(identityId)], () => this.#inner.getFederatedCredential(identityId, name));
    return c === undefined ? undefined : structuredClone(c);
  }

  putFederatedCredential(identityId: string, spec: FederatedCredentialSpec): Promise<PutFederatedCredentialResult> {
    return invalidating(this.#snapshot, this.#inner.dryRunMode === 'none' ? [ficTag(identityId)] : [], () => this.#inner.putFederatedCredential(identityId, spec));
  }

  deleteFederatedCredential(identityId: string, name: string): Promise<boolean> {
    return invalidating(this.#snapshot, this.#inner.dryRunMode === 'none' ? [ficTag(identityId)] : [], () => this.#inner.deleteFederatedCredential(identityId, name));
  }

  scoped(scope: { signal?: AbortSignal; deadline?: number }): AzureGateway {
    return new SnapshotAzureGateway(this.#inner.scoped(scope), this.#snapshot);
  }

  calls(): CallCounts {
    return this.#inner.calls();
  }

  dryRunLog(): DryRunEntry[] {
    return this.#inner.dryRunLog();
  }

  /** ARM has no server-side dry run: in either dry-run mode nothing is sent, so nothing changes. */
  #identityWriteTags(resourceGroup: string, vmss: string): string[] {
    return this.#inner.dryRunMode === 'none' ? [vmssTag(resourceGroup, vmss), vmssListTag(resourceGroup)] : [];
  }

  #instanceWriteTags(resourceGroup: string, vmss: string): string[] | '*' {
    if (this.#inner.dryRunMode !== 'none') return [];
    const kube = kubeWriteTags('Node');
    if (kube === '*') return '*';
    return [vmssTag(resourceGroup, vmss), vmssListTag(resourceGroup), CLUSTER_TAG, ...kube];
  }
}

function listKey(resourceGroup: string): string {
  return `arm:vmss-list:${resourceGroup.toLowerCase()}`;
}
