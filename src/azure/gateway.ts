/**
 * The Azure gateway: everything the runbook steps may do in Azure Resource Manager, and
 * nothing else. Steps see only the {@link AzureGateway} interface. Identity changes on a scale
 * set are computed as a case-insensitive delta against a fresh GET and sent in chunks of 150,
 * never touching identities the caller did not name (the kubelet identity, add-ons, anything
 * assigned by hand).
 *
 * Dry-run: reads always run; writes are never sent (ARM has no server-side dry-run) but
 * recorded as `would PATCH <url> <body>`.
 */
import type { VirtualMachineScaleSet, VirtualMachineScaleSetVM } from '@azure/arm-compute';
import type { FederatedIdentityCredential, Identity } from '@azure/arm-msi';
import type { ManagedCluster } from '@azure/arm-containerservice';
import { createArmClients, resolveAzureConnection, azureTiming } from './client.ts';
import type { ArmClients, AzureConnection, AzureTiming } from './client.ts';
import { AzureApiError, AzureLoginError, linkedScopesOf } from './errors.ts';
import type { CloudName } from './clouds.ts';
import { CallCounter } from '../kube/call-counter.ts';
import type { CallCounts } from '../kube/call-counter.ts';
import { DryRunRecorder } from '../kube/dry-run.ts';
import type { DryRunEntry, DryRunMode } from '../kube/dry-run.ts';
import type { RetryOptions } from '../kube/retry.ts';
import { DeadlineExceededError, classifyNetworkError } from '../kube/retry.ts';
import type { ProgressSink } from '../kube/retry.ts';
import { AuthenticationError, EndpointUnreachableError, EnvironmentError, PermissionDeniedError, PodidError, TlsTrustError } from '../engine/errors.ts';
import { DryRunViolationError } from '../kube/errors.ts';

export type { DryRunMode, DryRunEntry, CallCounts };

/** ARM accepts at most this many user-assigned identities in one VMSS PATCH. */
export const MAX_IDENTITIES_PER_PATCH = 150;

/** The action a caller needs on an identity to put it on a VMSS. */
export const ASSIGN_ACTION = 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action';

/** A VMSS as the migration needs it. */
export interface ScaleSet {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  tags: Record<string, string>;
  /** `None` when the scale set has no identity block. */
  identityType: string;
  /** User-assigned identities keyed by resource id as ARM returned it, with their client/principal ids. */
  userAssignedIdentities: Record<string, { clientId?: string; principalId?: string }>;
  capacity?: number;
  upgradePolicyMode?: string;
  provisioningState?: string;
}

/** One VMSS instance. */
export interface ScaleSetInstance {
  instanceId: string;
  name: string;
  computerName?: string;
  /** False when the instance runs an older model than the scale set (only then is `manualupgrade` needed). */
  latestModelApplied?: boolean;
  provisioningState?: string;
  /** User-assigned identity ids on this instance. */
  identityIds: string[];
}

/** A user-assigned managed identity. */
export interface ManagedIdentity {
  id: string;
  name: string;
  resourceGroup: string;
  location?: string;
  clientId?: string;
  principalId?: string;
  tenantId?: string;
}

/** What the migration reads from the AKS resource. */
export interface ManagedClusterInfo {
  id: string;
  name: string;
  location: string;
  /** `MC_<rg>_<cluster>_<region>` unless customised: where the VMSS live. */
  nodeResourceGroup: string;
  kubeletIdentity?: { resourceId?: string; clientId?: string; objectId?: string };
  agentPools: { name: string; count?: number; vmSize?: string; mode?: string; type?: string }[];
  /** `properties.oidcIssuerProfile`: whether the OIDC issuer is on, and its URL once it is (`issuerURL` on the wire). The ARM gateway always sets it; absent means off. */
  oidcIssuer?: { enabled: boolean; issuerUrl?: string };
  /** `properties.securityProfile.workloadIdentity.enabled`; absent means off. */
  workloadIdentityEnabled?: boolean;
  /** `Succeeded`, `Updating` (an operation runs: another update gets 409), `Failed`, … */
  provisioningState?: string;
}

/** The settings {@link AzureGateway.updateWorkloadIdentitySettings} changes; an omitted one stays as it is. */
export interface WorkloadIdentitySettingsChange {
  /** `properties.oidcIssuerProfile.enabled` (AKS refuses to turn it off once on). */
  oidcIssuerEnabled?: boolean;
  /** `properties.securityProfile.workloadIdentity.enabled` (needs the OIDC issuer). */
  workloadIdentityEnabled?: boolean;
}

/** The audience every workload identity federated credential carries. */
export const TOKEN_EXCHANGE_AUDIENCE = 'api://AzureADTokenExchange';

/** Entra ID's limit of federated identity credentials on one user-assigned identity. */
export const MAX_FEDERATED_CREDENTIALS_PER_IDENTITY = 20;

/** One federated identity credential of a user-assigned identity. */
export interface FederatedCredential {
  /** Its resource id. */
  id: string;
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
}

/** What {@link AzureGateway.putFederatedCredential} sends. */
export interface FederatedCredentialSpec {
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
}

/** Result of {@link AzureGateway.putFederatedCredential}. */
export interface PutFederatedCredentialResult {
  /**
   * `created` / `updated`: ARM took the PUT (`updated` when a credential of that name was
   * there). `exists`: ARM refused it because another credential of the identity already has
   * this issuer and subject ("combination already exists"); `credential` is that one.
   */
  outcome: 'created' | 'updated' | 'exists';
  credential: FederatedCredential;
  /** True when nothing was sent (dry run). */
  dryRun: boolean;
}

/** Result of {@link AzureGateway.assignIdentities}. */
export interface AssignResult {
  /** Ids this call added (as given by the caller), in request order. */
  added: string[];
  /** Ids the caller asked for that were already there (as the caller gave them). */
  alreadyPresent: string[];
  /** `identity.type` sent (or kept). */
  identityType: string;
  /** PATCH requests made (or, in dry-run, recorded). */
  patches: number;
  dryRun: boolean;
}

/** Result of {@link AzureGateway.unassignIdentities}. */
export interface UnassignResult {
  removed: string[];
  notPresent: string[];
  /** `identity.type` after the change. */
  identityType: string;
  patches: number;
  dryRun: boolean;
}

/** Whether the caller may assign an identity (`.../assign/action`), from `Microsoft.Authorization/permissions`. */
export interface AssignPermission {
  identityId: string;
  /** `unknown` when the permissions could not be read (the PATCH will tell). */
  allowed: boolean | 'unknown';
  reason: string;
}

/** Everything the runbook steps may do in Azure. Already dry-run aware. */
export interface AzureGateway {
  readonly dryRunMode: DryRunMode;
  readonly subscriptionId: string;
  /** Reads an AKS cluster by resource id. */
  getManagedCluster(aksId: string): Promise<ManagedClusterInfo>;
  listScaleSets(resourceGroup: string): Promise<ScaleSet[]>;
  /** One scale set, or `undefined` when it does not exist. */
  getScaleSet(resourceGroup: string, name: string): Promise<ScaleSet | undefined>;
  /** Adds identities (delta only, case-insensitive, chunks of 150), keeping every identity already there and the system-assigned one. */
  assignIdentities(resourceGroup: string, vmss: string, identityIds: string[]): Promise<AssignResult>;
  /** Removes only the given identities (`null` per id); the type becomes `None`/`SystemAssigned` when none remain. */
  unassignIdentities(resourceGroup: string, vmss: string, identityIds: string[]): Promise<UnassignResult>;
  listInstances(resourceGroup: string, vmss: string): Promise<ScaleSetInstance[]>;
  /** `manualupgrade` of the given instances (only when they report `latestModelApplied: false`; batch small). */
  manualUpgrade(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void>;
  reimageInstances(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void>;
  deleteInstances(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void>;
  /** One identity by resource id, or `undefined` when it does not exist. */
  getIdentity(identityId: string): Promise<ManagedIdentity | undefined>;
  listIdentities(resourceGroup: string): Promise<ManagedIdentity[]>;
  /** Whether the caller holds `userAssignedIdentities/assign/action` on the identity. */
  canAssign(identityId: string): Promise<AssignPermission>;
  /**
   * Turns the managed cluster's OIDC issuer and/or workload identity on or off: GET, change
   * only the given settings, PUT the cluster back (`managedClusters.createOrUpdate`), and await
   * the long-running update. A change already in effect sends nothing. Returns the cluster as
   * read after the update (with `oidcIssuer.issuerUrl`). Dry run: records the PUT and returns the
   * cluster as it would be (no issuer URL when the issuer is not on yet).
   */
  updateWorkloadIdentitySettings(aksId: string, change: WorkloadIdentitySettingsChange): Promise<ManagedClusterInfo>;
  /** The federated identity credentials of a user-assigned identity (by its resource id); empty when there is none. */
  listFederatedCredentials(identityId: string): Promise<FederatedCredential[]>;
  /** One federated credential by name, or `undefined` when it does not exist. */
  getFederatedCredential(identityId: string, name: string): Promise<FederatedCredential | undefined>;
  /**
   * Creates or updates a federated credential (PUT by name). 429, 5xx and the 409 Entra gives a
   * write to an identity while another write to it runs are retried by the gateway; a 400
   * "combination already exists" (another credential of the identity has this issuer and
   * subject) is not an error: the existing credential is returned with outcome `exists`.
   */
  putFederatedCredential(identityId: string, spec: FederatedCredentialSpec): Promise<PutFederatedCredentialResult>;
  /** Deletes a federated credential; false when it was not there. */
  deleteFederatedCredential(identityId: string, name: string): Promise<boolean>;
  /** A view bound to a step call's signal and deadline, sharing the dry-run log, with its own call counts. */
  scoped(scope: { signal?: AbortSignal; deadline?: number }): AzureGateway;
  calls(): CallCounts;
  dryRunLog(): DryRunEntry[];
}

/** Options of {@link createAzureGateway}. */
export interface AzureGatewayOptions {
  subscriptionId: string;
  dryRun?: DryRunMode;
  /** Connection; resolved from the environment (sandbox or DefaultAzureCredential) when absent. */
  connection?: AzureConnection;
  /** Cloud for a connection resolved from the environment (default `PODID_MIGRATE_CLOUD`, else `AzureCloud`). */
  cloud?: CloudName;
  /** The environment a connection is resolved from when `connection` is absent (default `process.env`). */
  env?: Record<string, string | undefined>;
  retry?: Partial<RetryOptions>;
  /** Poll interval of long-running operations in ms (default 2000). */
  pollIntervalMs?: number;
  /** Cap on a poll interval asked for by `Retry-After` (default 30 s). */
  maxPollIntervalMs?: number;
  signal?: AbortSignal;
  deadline?: number;
  /** Receives a line when the gateway waits noticeably (a capped Retry-After), with a countdown. */
  progress?: ProgressSink;
}

/** Builds the Azure gateway. */
export function createAzureGateway(opts: AzureGatewayOptions): AzureGateway {
  if (!/^[0-9a-f-]{36}$/i.test(opts.subscriptionId)) throw new Error(`subscription id ${opts.subscriptionId} is not a GUID; pass --subscription`);
  const conn = opts.connection ?? resolveAzureConnection(opts.env ?? process.env, opts.cloud);
  const timing = azureTiming({ retry: opts.retry, pollIntervalMs: opts.pollIntervalMs, maxPollIntervalMs: opts.maxPollIntervalMs, progress: opts.progress });
  return new ArmGateway(conn, opts.subscriptionId, timing, new DryRunRecorder(opts.dryRun ?? 'none'), new CallCounter(), { signal: opts.signal, deadline: opts.deadline });
}

/** Parsed ARM resource id. */
export interface ParsedResourceId {
  subscriptionId: string;
  resourceGroup: string;
  provider: string;
  type: string;
  name: string;
}

/** Splits `/subscriptions/<s>/resourceGroups/<rg>/providers/<ns>/<type>/<name>`; throws naming the id when it is not one. */
export function parseResourceId(id: string): ParsedResourceId {
  const m = /^\/subscriptions\/([^/]+)\/resourcegroups\/([^/]+)\/providers\/([^/]+)\/([^/]+)\/([^/]+)$/i.exec(id.trim());
  if (!m) throw new Error(`${id} is not an ARM resource id of the form /subscriptions/<sub>/resourceGroups/<rg>/providers/<namespace>/<type>/<name>`);
  return { subscriptionId: m[1], resourceGroup: m[2], provider: m[3], type: m[4], name: m[5] };
}

/** Splits `items` into chunks of at most `size`. */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * The case-insensitive delta between the ids a scale set has and the ids wanted:
 * `toAdd` keeps the caller's spelling and order (duplicates dropped), `present` lists the
 * wanted ids already there.
 */
export function identityDelta(existing: Iterable<string>, wanted: readonly string[]): { toAdd: string[]; present: string[] } {
  const have = new Set([...existing].map((id) => id.toLowerCase()));
  const seen = new Set<string>();
  const toAdd: string[] = [];
  const present: string[] = [];
  for (const id of wanted) {
    const k = id.toLowerCase();
    if (seen.has(k)) continue;
    seen.add(k);
    (have.has(k) ? present : toAdd).push(id);
  }
  return { toAdd, present };
}

/** `identity.type` to send when adding user-assigned identities, keeping a system-assigned one. */
export function typeWithUserAssigned(current: string | undefined): string {
  return hasSystemAssigned(current) ? 'SystemAssigned, UserAssigned' : 'UserAssigned';
}

/** `identity.type` once no user-assigned identity remains. */
export function typeWithoutUserAssigned(current: string | undefined): string {
  return hasSystemAssigned(current) ? 'SystemAssigned' : 'None';
}

function hasSystemAssigned(type: string | undefined): boolean {
  return (type ?? '').toLowerCase().split(',').map((s) => s.trim()).includes('systemassigned');
}

class ArmGateway implements AzureGateway {
  readonly #conn: AzureConnection;
  readonly #timing: AzureTiming;
  readonly #dryRun: DryRunRecorder;
  readonly #counter: CallCounter;
  readonly #signal: AbortSignal | undefined;
  readonly #deadline: number | undefined;
  readonly #clients = new Map<string, ArmClients>();
  readonly subscriptionId: string;

  constructor(conn: AzureConnection, subscriptionId: string, timing: AzureTiming, dryRun: DryRunRecorder, counter: CallCounter, scope: { signal?: AbortSignal; deadline?: number }) {
    this.#conn = conn;
    this.subscriptionId = subscriptionId;
    this.#timing = timing;
    this.#dryRun = dryRun;
    this.#counter = counter;
    this.#signal = scope.signal;
    this.#deadline = scope.deadline;
  }

  get dryRunMode(): DryRunMode {
    return this.#dryRun.mode;
  }

  scoped(scope: { signal?: AbortSignal; deadline?: number }): AzureGateway {
    return new ArmGateway(this.#conn, this.subscriptionId, this.#timing, this.#dryRun, new CallCounter(this.#counter), scope);
  }

  calls(): CallCounts {
    return this.#counter.snapshot();
  }

  dryRunLog(): DryRunEntry[] {
    return this.#dryRun.log();
  }

  /** SDK clients for a subscription (identities may live in another one than the cluster). */
  #for(subscriptionId = this.subscriptionId): ArmClients {
    const key = subscriptionId.toLowerCase();
    let c = this.#clients.get(key);
    if (!c) {
      c = createArmClients(this.#conn, subscriptionId, {
        counter: this.#counter,
        dryRun: this.#dryRun,
        timing: this.#timing,
        signal: this.#signal,
        deadline: this.#deadline,
        progress: this.#timing.progress,
      });
      this.#clients.set(key, c);
    }
    return c;
  }

  /** Runs an SDK call; failures become {@link AzureApiError} or, for the environment's, typed errors naming the endpoint. */
  async #call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw toAzureError(e, operation, this.#conn.endpoint);
    }
  }

  #opts(): { abortSignal?: AbortSignal } {
    return this.#signal ? { abortSignal: this.#signal } : {};
  }

  #lroOpts(): { abortSignal?: AbortSignal; updateIntervalInMs: number } {
    return { ...this.#opts(), updateIntervalInMs: this.#timing.pollIntervalMs };
  }

  async getManagedCluster(aksId: string): Promise<ManagedClusterInfo> {
    const id = parseResourceId(aksId);
    const mc = await this.#call(`GET managed cluster ${id.name}`, () => this.#for(id.subscriptionId).containerService.managedClusters.get(id.resourceGroup, id.name, this.#opts()));
    return toClusterInfo(mc, id);
  }

  async listScaleSets(resourceGroup: string): Promise<ScaleSet[]> {
    return this.#call(`list vmss in ${resourceGroup}`, async () => {
      const out: ScaleSet[] = [];
      for await (const v of this.#for().compute.virtualMachineScaleSets.list(resourceGroup, this.#opts())) out.push(toScaleSet(v, resourceGroup));
      return out;
    });
  }

  async getScaleSet(resourceGroup: string, name: string): Promise<ScaleSet | undefined> {
    try {
      const v = await this.#call(`GET vmss ${name}`, () => this.#for().compute.virtualMachineScaleSets.get(resourceGroup, name, this.#opts()));
      return toScaleSet(v, resourceGroup);
    } catch (e) {
      if (e instanceof AzureApiError && e.status === 404) return undefined;
      throw e;
    }
  }

  async assignIdentities(resourceGroup: string, vmss: string, identityIds: string[]): Promise<AssignResult> {
    const current = await this.#mustGetScaleSet(resourceGroup, vmss);
    const { toAdd, present } = identityDelta(Object.keys(current.userAssignedIdentities), identityIds);
    const identityType = toAdd.length ? typeWithUserAssigned(current.identityType) : current.identityType;
    const dryRun = this.#dryRun.suppressArmWrites;
    let patches = 0;
    for (const part of chunk(toAdd, MAX_IDENTITIES_PER_PATCH)) {
      const body = { identity: { type: identityType, userAssignedIdentities: Object.fromEntries(part.map((id) => [id, {}])) } };
      await this.#patchScaleSet(resourceGroup, vmss, body, `add ${part.length} identit${part.length === 1 ? 'y' : 'ies'} to vmss ${vmss}`, part);
      patches++;
    }
    return { added: toAdd, alreadyPresent: present, identityType, patches, dryRun };
  }

  async unassignIdentities(resourceGroup: string, vmss: string, identityIds: string[]): Promise<UnassignResult> {
    const current = await this.#mustGetScaleSet(resourceGroup, vmss);
    const byLower = new Map(Object.keys(current.userAssignedIdentities).map((k) => [k.toLowerCase(), k]));
    const wanted = [...new Map(identityIds.map((id) => [id.toLowerCase(), id])).values()];
    const removed = wanted.filter((id) => byLower.has(id.toLowerCase()));
    const notPresent = wanted.filter((id) => !byLower.has(id.toLowerCase()));
    const dryRun = this.#dryRun.suppressArmWrites;
    if (removed.length === 0) return { removed, notPresent, identityType: current.identityType, patches: 0, dryRun };
    const remaining = byLower.size - removed.length;
    let patches = 0;
    if (remaining === 0) {
      // ARM refuses a UserAssigned type with an empty map: drop the user-assigned part instead.
      const identityType = typeWithoutUserAssigned(current.identityType);
      await this.#patchScaleSet(resourceGroup, vmss, { identity: { type: identityType } }, `remove all ${removed.length} user-assigned identities from vmss ${vmss}`, removed);
      return { removed, notPresent, identityType, patches: 1, dryRun };
    }
    const identityType = current.identityType;
    // Nulls use the spelling ARM returned, so the server's own key matches exactly.
    for (const part of chunk(removed, MAX_IDENTITIES_PER_PATCH)) {
      const body = { identity: { type: identityType, userAssignedIdentities: Object.fromEntries(part.map((id) => [byLower.get(id.toLowerCase())!, null])) } };
      await this.#patchScaleSet(resourceGroup, vmss, body, `remove ${part.length} identit${part.length === 1 ? 'y' : 'ies'} from vmss ${vmss}`, part);
      patches++;
    }
    return { removed, notPresent, identityType, patches, dryRun };
  }

  async listInstances(resourceGroup: string, vmss: string): Promise<ScaleSetInstance[]> {
    return this.#call(`list instances of vmss ${vmss}`, async () => {
      const out: ScaleSetInstance[] = [];
      for await (const vm of this.#for().compute.virtualMachineScaleSetVMs.list(resourceGroup, vmss, this.#opts())) out.push(toInstance(vm));
      return out;
    });
  }

  async manualUpgrade(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void> {
    await this.#instanceAction('manualupgrade', resourceGroup, vmss, instanceIds, (c) =>
      c.compute.virtualMachineScaleSets.updateInstances(resourceGroup, vmss, { instanceIds }, this.#lroOpts()),
    );
  }

  async reimageInstances(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void> {
    await this.#instanceAction('reimage', resourceGroup, vmss, instanceIds, (c) =>
      c.compute.virtualMachineScaleSets.reimage(resourceGroup, vmss, { ...this.#lroOpts(), vmScaleSetReimageInput: { instanceIds } }),
    );
  }

  async deleteInstances(resourceGroup: string, vmss: string, instanceIds: string[]): Promise<void> {
    await this.#instanceAction('delete', resourceGroup, vmss, instanceIds, (c) =>
      c.compute.virtualMachineScaleSets.deleteInstances(resourceGroup, vmss, { instanceIds }, this.#lroOpts()),
    );
  }

  async getIdentity(identityId: string): Promise<ManagedIdentity | undefined> {
    const id = parseResourceId(identityId);
    try {
      const i = await this.#call(`GET identity ${id.name}`, () => this.#for(id.subscriptionId).msi.userAssignedIdentities.get(id.resourceGroup, id.name, this.#opts()));
      return toIdentity(i, id.resourceGroup);
    } catch (e) {
      if (e instanceof AzureApiError && e.status === 404) return undefined;
      throw e;
    }
  }

  async listIdentities(resourceGroup: string): Promise<ManagedIdentity[]> {
    return this.#call(`list identities in ${resourceGroup}`, async () => {
      const out: ManagedIdentity[] = [];
      for await (const i of this.#for().msi.userAssignedIdentities.listByResourceGroup(resourceGroup, this.#opts())) out.push(toIdentity(i, resourceGroup));
      return out;
    });
  }

  async canAssign(identityId: string): Promise<AssignPermission> {
    const id = parseResourceId(identityId);
    const path = `${identityId}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01`;
    const resp = await this.#call(`GET permissions on identity ${id.name}`, () => this.#for(id.subscriptionId).sendRaw('GET', path));
    if (resp.status === 404) return { identityId, allowed: false, reason: `identity ${identityId} does not exist` };
    if (resp.status === 403 || resp.status === 401) return { identityId, allowed: 'unknown', reason: `cannot read permissions (HTTP ${resp.status}); the VMSS PATCH will tell` };
    if (resp.status >= 400) throw restErrorFrom(resp.status, resp.bodyAsText ?? '', `GET permissions on identity ${id.name}`);
    const body = JSON.parse(resp.bodyAsText ?? '{}') as { value?: { actions?: string[]; notActions?: string[] }[] };
    const grants = body.value ?? [];
    const allowed = grants.some((g) => (g.actions ?? []).some((a) => actionMatches(a, ASSIGN_ACTION)) && !(g.notActions ?? []).some((a) => actionMatches(a, ASSIGN_ACTION)));
    return {
      identityId,
      allowed,
      reason: allowed ? `${ASSIGN_ACTION} granted` : `no role assignment grants ${ASSIGN_ACTION} on ${identityId}; assign "Managed Identity Operator" on it`,
    };
  }

  async updateWorkloadIdentitySettings(aksId: string, change: WorkloadIdentitySettingsChange): Promise<ManagedClusterInfo> {
    const id = parseResourceId(aksId);
    const client = () => this.#for(id.subscriptionId).containerService.managedClusters;
    const current = await this.#call(`GET managed cluster ${id.name}`, () => client().get(id.resourceGroup, id.name, this.#opts()));
    const info = toClusterInfo(current, id);
    const oidcNow = info.oidcIssuer?.enabled ?? false;
    const wiNow = info.workloadIdentityEnabled ?? false;
    const oidc = change.oidcIssuerEnabled ?? oidcNow;
    const wi = change.workloadIdentityEnabled ?? wiNow;
    if (oidc === oidcNow && wi === wiNow) return info;
    const wanted = {
      ...current,
      oidcIssuerProfile: { ...current.oidcIssuerProfile, enabled: oidc },
      // AKS only shows (and needs) the workload identity block once it was set.
      securityProfile: { ...current.securityProfile, ...(change.workloadIdentityEnabled !== undefined || current.securityProfile?.workloadIdentity ? { workloadIdentity: { enabled: wi } } : {}) },
    };
    const what = [change.oidcIssuerEnabled !== undefined ? `oidcIssuerProfile.enabled=${oidc}` : '', change.workloadIdentityEnabled !== undefined ? `securityProfile.workloadIdentity.enabled=${wi}` : ''].filter(Boolean).join(', ');
    const url = `${this.#conn.endpoint}${aksId}`;
    if (this.#recordIfDryRun('PUT', url, { properties: { oidcIssuerProfile: { enabled: oidc }, securityProfile: { workloadIdentity: { enabled: wi } } } }, `update managed cluster ${id.name}: ${what}`)) {
      return { ...info, oidcIssuer: { ...info.oidcIssuer, enabled: oidc }, workloadIdentityEnabled: wi };
    }
    await this.#call(`PUT managed cluster ${id.name} (${what})`, () => client().createOrUpdate(id.resourceGroup, id.name, wanted, this.#lroOpts()).pollUntilDone(this.#opts()));
    // The issuer URL is read after the operation: the PUT's own answer comes before AKS set it.
    const after = await this.#call(`GET managed cluster ${id.name}`, () => client().get(id.resourceGroup, id.name, this.#opts()));
    return toClusterInfo(after, id);
  }

  async listFederatedCredentials(identityId: string): Promise<FederatedCredential[]> {
    const id = parseResourceId(identityId);
    return this.#call(`list federated credentials of identity ${id.name}`, async () => {
      const out: FederatedCredential[] = [];
      for await (const c of this.#for(id.subscriptionId).msi.federatedIdentityCredentials.list(id.resourceGroup, id.name, this.#opts())) out.push(toFederatedCredential(c));
      return out;
    });
  }

  async getFederatedCredential(identityId: string, name: string): Promise<FederatedCredential | undefined> {
    const id = parseResourceId(identityId);
    try {
      const c = await this.#call(`GET federated credential ${id.name}/${name}`, () => this.#for(id.subscriptionId).msi.federatedIdentityCredentials.get(id.resourceGroup, id.name, name, this.#opts()));
      return toFederatedCredential(c);
    } catch (e) {
      if (e instanceof AzureApiError && e.status === 404) return undefined;
      throw e;
    }
  }

  async putFederatedCredential(identityId: string, spec: FederatedCredentialSpec): Promise<PutFederatedCredentialResult> {
    const id = parseResourceId(identityId);
    const body = { issuer: spec.issuer, subject: spec.subject, audiences: [...spec.audiences] };
    const url = `${this.#conn.endpoint}${identityId}/federatedIdentityCredentials/${spec.name}`;
    const planned: FederatedCredential = { id: `${identityId}/federatedIdentityCredentials/${spec.name}`, name: spec.name, ...body };
    if (this.#recordIfDryRun('PUT', url, { properties: body }, `federated credential ${spec.name} on identity ${id.name}: ${spec.subject}`)) {
      return { outcome: 'created', credential: planned, dryRun: true };
    }
    const before = await this.getFederatedCredential(identityId, spec.name);
    try {
      const c = await this.#call(`PUT federated credential ${id.name}/${spec.name}`, () => this.#for(id.subscriptionId).msi.federatedIdentityCredentials.createOrUpdate(id.resourceGroup, id.name, spec.name, body, this.#opts()));
      return { outcome: before ? 'updated' : 'created', credential: toFederatedCredential(c), dryRun: false };
    } catch (e) {
      if (!(e instanceof AzureApiError) || e.status !== 400 || !/already exists/i.test(e.serverMessage)) throw e;
      // Another credential (any name) holds this issuer and subject: that is the wanted state.
      const existing = (await this.listFederatedCredentials(identityId)).find((c) => sameIssuer(c.issuer, spec.issuer) && c.subject === spec.subject);
      if (!existing) throw e;
      return { outcome: 'exists', credential: existing, dryRun: false };
    }
  }

  async deleteFederatedCredential(identityId: string, name: string): Promise<boolean> {
    const id = parseResourceId(identityId);
    const url = `${this.#conn.endpoint}${identityId}/federatedIdentityCredentials/${name}`;
    const before = await this.getFederatedCredential(identityId, name);
    if (!before) return false;
    if (this.#recordIfDryRun('DELETE', url, undefined, `delete federated credential ${name} of identity ${id.name}`)) return true;
    await this.#call(`DELETE federated credential ${id.name}/${name}`, () => this.#for(id.subscriptionId).msi.federatedIdentityCredentials.delete(id.resourceGroup, id.name, name, this.#opts()));
    return true;
  }

  async #mustGetScaleSet(resourceGroup: string, vmss: string): Promise<ScaleSet> {
    const s = await this.getScaleSet(resourceGroup, vmss);
    if (!s) throw new AzureApiError({ status: 404, code: 'ResourceNotFound', message: `virtual machine scale set ${vmss} not found in resource group ${resourceGroup}`, operation: `GET vmss ${vmss}` });
    return s;
  }

  async #patchScaleSet(resourceGroup: string, vmss: string, body: { identity: { type: string; userAssignedIdentities?: Record<string, {} | null> } }, description: string, ids: string[]): Promise<void> {
    const operation = `PATCH vmss ${vmss}`;
    if (this.#recordIfDryRun('PATCH', this.#vmssUrl(resourceGroup, vmss), body, description)) return;
    try {
      const poller = this.#for().compute.virtualMachineScaleSets.update(resourceGroup, vmss, body as never, this.#lroOpts());
      await poller.pollUntilDone(this.#opts());
    } catch (e) {
      const err = toAzureError(e, operation, this.#conn.endpoint);
      if (err instanceof AzureApiError && err.code === 'LinkedAuthorizationFailed' && err.identityIds.length === 0) {
        throw new AzureApiError({ status: err.status, code: err.code, message: err.serverMessage, operation, identityIds: ids });
      }
      throw err;
    }
  }

  async #instanceAction(action: 'manualupgrade' | 'reimage' | 'delete', resourceGroup: string, vmss: string, instanceIds: string[], start: (c: ArmClients) => { pollUntilDone(o?: { abortSignal?: AbortSignal }): Promise<unknown> }): Promise<void> {
    if (instanceIds.length === 0) return;
    const operation = `POST vmss ${vmss}/${action} (instances ${instanceIds.join(', ')})`;
    if (this.#recordIfDryRun('POST', `${this.#vmssUrl(resourceGroup, vmss)}/${action}`, { instanceIds }, `${action} instances ${instanceIds.join(', ')} of vmss ${vmss}`)) return;
    await this.#call(operation, () => start(this.#for()).pollUntilDone(this.#opts()));
  }

  #vmssUrl(resourceGroup: string, vmss: string): string {
    return `${this.#conn.endpoint}/subscriptions/${this.subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachineScaleSets/${vmss}`;
  }

  #recordIfDryRun(method: string, url: string, body: unknown, description: string): boolean {
    if (!this.#dryRun.suppressArmWrites) return false;
    this.#dryRun.record({ api: 'arm', method, url, body, sentAsServerDryRun: false, description });
    this.#counter.countSuppressed();
    return true;
  }
}

/**
 * Converts an SDK error (RestError, LRO failure) to {@link AzureApiError}; passes through
 * aborts, deadline and dry-run errors. Only status, code and message are kept: a RestError
 * also carries the request, and with it headers this tool never repeats.
 */
export function toAzureError(e: unknown, operation: string, endpoint = 'https://management.azure.com'): Error {
  if (e instanceof AzureApiError || e instanceof DeadlineExceededError || e instanceof DryRunViolationError || e instanceof EnvironmentError || e instanceof AzureLoginError) return e;
  // Credential errors (no `az login`, a bad token file) are already typed where they are made.
  if (e instanceof PodidError) return e;
  const err = e as { name?: string; statusCode?: number; code?: string; message?: string; details?: { error?: { code?: string; message?: string } } };
  if (err?.name === 'AbortError' || err?.name === 'TimeoutError') return e as Error;
  const message = err?.message ?? String(e);
  const lro = /^The long-running operation has failed(?:\. ([^.]+)\. ([\s\S]*))?$/.exec(message);
  if (lro) {
    const code = lro[1] ?? 'OperationFailed';
    const msg = lro[2] ?? 'the operation ended Failed';
    return new AzureApiError({ status: 200, code, message: msg, operation, identityIds: code === 'LinkedAuthorizationFailed' ? linkedScopesOf(msg) : [], retryable: false, operationFailed: true });
  }
  if (typeof err?.statusCode === 'number' || err?.name === 'RestError') {
    if (err.statusCode === undefined) {
      // No HTTP answer: the request never got through (the pipeline names the system error in `code`).
      const failure = classifyNetworkError(e, false, 0);
      if (failure.kind !== 'other' || /^E[A-Z]+$/.test(err.code ?? '')) return armEnvironmentError(failure, operation, endpoint, e);
    }
    const code = err.details?.error?.code ?? (typeof err.code === 'string' && !/^[A-Z_]+$/.test(err.code) ? err.code : undefined) ?? err.code ?? 'Unknown';
    const msg = err.details?.error?.message ?? message;
    const api = new AzureApiError({ status: err.statusCode ?? 0, code, message: msg, operation, identityIds: code === 'LinkedAuthorizationFailed' ? linkedScopesOf(msg) : [] });
    return classifyArmAccess(api, endpoint) ?? api;
  }
  return e instanceof Error ? e : new Error(message);
}

function armEnvironmentError(failure: ReturnType<typeof classifyNetworkError>, operation: string, endpoint: string, cause: unknown): EnvironmentError {
  if (failure.kind === 'tls') {
    return new TlsTrustError(
      'azure',
      `the certificate of Azure Resource Manager at ${endpoint} is not trusted (${failure.code}): ${operation}: ${failure.text}.`,
      'A proxy that inspects TLS needs its CA in NODE_EXTRA_CA_CERTS; for the sandbox, `source .sandbox/env` (it sets PODID_MIGRATE_CA_FILE). Then run the same command again.',
      { cause },
    );
  }
  const what = failure.kind === 'refused' ? 'refuses connections' : failure.kind === 'dns' ? 'has a host name that does not resolve' : failure.kind === 'timeout' ? 'did not answer in time' : 'is not reachable';
  return new EndpointUnreachableError(
    'azure',
    endpoint,
    `Azure Resource Manager at ${endpoint} ${what}: ${operation}: ${failure.text}.`,
    'Check this machine reaches it (proxy: HTTPS_PROXY; firewall), or for the sandbox that it runs (`podid-migrate sandbox status`, then `source .sandbox/env`). Then run the same command again.',
    { cause },
  );
}

/**
 * 401 and 403 from ARM as typed environment errors. `LinkedAuthorizationFailed` (a missing
 * `assign/action` on an identity) stays an {@link AzureApiError}: the assign step names the
 * identities and the role to grant.
 */
export function classifyArmAccess(error: AzureApiError, endpoint: string): EnvironmentError | undefined {
  if (error.status === 401) {
    return new AuthenticationError(
      'azure',
      `Azure Resource Manager at ${endpoint} refused the credential (401 ${error.code}: ${error.serverMessage}): ${error.operation}.`,
      'The token is missing, invalid or expired: run `az login` (and `az account set --subscription <id>`), or for the sandbox `source .sandbox/env`. Then run the same command again.',
      { cause: error },
    );
  }
  if (error.status !== 403 || error.code === 'LinkedAuthorizationFailed') return undefined;
  const action = /perform action '([^']+)'/i.exec(error.serverMessage)?.[1];
  const scope = /over scope '([^']+)'/i.exec(error.serverMessage)?.[1];
  const refused = action ?? error.operation;
  return new PermissionDeniedError(
    'azure',
    refused,
    `Azure refused ${error.operation} (403 ${error.code}): ${error.serverMessage}`,
    [
      `The signed-in identity lacks ${action ? `\`${action}\`` : 'a permission'}${scope ? ` on ${scope}` : ''}.`,
      `Check with \`az role assignment list --assignee <your id> --all -o table\`; the migration needs Contributor on the node resource group's scale sets and Managed Identity Operator on the pod identities. Then run the same command again.`,
    ].join('\n'),
    { cause: error },
  );
}

function restErrorFrom(status: number, bodyText: string, operation: string): AzureApiError {
  let code = 'Unknown';
  let message = bodyText.slice(0, 500);
  try {
    const b = JSON.parse(bodyText) as { error?: { code?: string; message?: string } };
    code = b.error?.code ?? code;
    message = b.error?.message ?? message;
  } catch {
    // keep the text
  }
  return new AzureApiError({ status, code, message, operation });
}

/** Azure RBAC action match: `*` is a wildcard, comparison is case-insensitive. */
export function actionMatches(pattern: string, action: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 'i');
  return re.test(action);
}

function toScaleSet(v: VirtualMachineScaleSet, resourceGroup: string): ScaleSet {
  const uai: ScaleSet['userAssignedIdentities'] = {};
  for (const [k, val] of Object.entries(v.identity?.userAssignedIdentities ?? {})) uai[k] = { clientId: val?.clientId, principalId: val?.principalId };
  const rg = v.id ? (parseResourceIdSafe(v.id)?.resourceGroup ?? resourceGroup) : resourceGroup;
  return {
    id: v.id ?? '',
    name: v.name ?? '',
    resourceGroup: rg,
    location: v.location,
    tags: { ...(v.tags ?? {}) },
    identityType: v.identity?.type ?? 'None',
    userAssignedIdentities: uai,
    capacity: v.sku?.capacity,
    upgradePolicyMode: v.upgradePolicy?.mode,
    provisioningState: v.provisioningState,
  };
}

function toInstance(vm: VirtualMachineScaleSetVM): ScaleSetInstance {
  return {
    instanceId: vm.instanceId ?? '',
    name: vm.name ?? '',
    computerName: vm.osProfile?.computerName,
    latestModelApplied: vm.latestModelApplied,
    provisioningState: vm.provisioningState,
    identityIds: Object.keys(vm.identity?.userAssignedIdentities ?? {}),
  };
}

function toIdentity(i: Identity, resourceGroup: string): ManagedIdentity {
  return { id: i.id ?? '', name: i.name ?? '', resourceGroup, location: i.location, clientId: i.clientId, principalId: i.principalId, tenantId: i.tenantId };
}

function toFederatedCredential(c: FederatedIdentityCredential): FederatedCredential {
  return { id: c.id ?? '', name: c.name ?? '', issuer: c.issuer ?? '', subject: c.subject ?? '', audiences: [...(c.audiences ?? [])] };
}

/** Issuer URLs compare without a trailing slash and case-insensitively in the host (Entra's own matching is exact: this only finds the credential ARM said exists). */
export function sameIssuer(a: string, b: string): boolean {
  const norm = (u: string) => u.replace(/\/+$/, '').toLowerCase();
  return norm(a) === norm(b);
}

function toClusterInfo(mc: ManagedCluster, id: ParsedResourceId): ManagedClusterInfo {
  const kubelet = mc.identityProfile?.['kubeletidentity'];
  return {
    oidcIssuer: { enabled: mc.oidcIssuerProfile?.enabled === true, ...(mc.oidcIssuerProfile?.issuerURL ? { issuerUrl: mc.oidcIssuerProfile.issuerURL } : {}) },
    workloadIdentityEnabled: mc.securityProfile?.workloadIdentity?.enabled === true,
    ...(mc.provisioningState ? { provisioningState: mc.provisioningState } : {}),
    id: mc.id ?? '',
    name: mc.name ?? id.name,
    location: mc.location,
    nodeResourceGroup: mc.nodeResourceGroup ?? '',
    kubeletIdentity: kubelet ? { resourceId: kubelet.resourceId, clientId: kubelet.clientId, objectId: kubelet.objectId } : undefined,
    agentPools: (mc.agentPoolProfiles ?? []).map((p) => ({ name: p.name, count: p.count, vmSize: p.vmSize, mode: p.mode, type: p.type })),
  };
}

function parseResourceIdSafe(id: string): ParsedResourceId | undefined {
  try {
    return parseResourceId(id);
  } catch {
    return undefined;
  }
}
