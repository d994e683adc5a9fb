/**
 * The sandbox's Azure side: user-assigned identities, the AKS managed cluster, its node-pool
 * scale sets and their instances, with the semantics Azure Resource Manager gives them.
 *
 * Two kinds of caller change this state:
 * - the HTTPS endpoint in `server.ts` (caller `client`), through the `begin*` methods, which
 *   apply the model change at once and finish the long-running part after a simulated delay;
 * - in-process sandbox components (the simulated MIC, caller `mic`; node controllers), through
 *   {@link ArmState.patchIdentities} and the promise-returning instance operations.
 *
 * Identity changes follow real ARM (DOMAIN.md section 5): a VMSS PATCH shows the new
 * `identity` block in GET immediately, with `provisioningState: Updating`, while the identity
 * only becomes usable on the instances (what IMDS hands out) when the operation completes.
 * The `identities-changed` event is emitted at that moment.
 */
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { Metrics } from '../metrics.ts';

/** A user-assigned managed identity (`Microsoft.ManagedIdentity/userAssignedIdentities`). */
export interface UserAssignedIdentity {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  clientId: string;
  principalId: string;
  tenantId: string;
}

/** The four identity types compute accepts, spelled as ARM returns them. */
export type VmssIdentityType = 'None' | 'SystemAssigned' | 'UserAssigned' | 'SystemAssigned, UserAssigned';

/** One user-assigned identity in a scale set's model. */
export interface VmssIdentityEntry {
  id: string;
  clientId?: string;
  principalId?: string;
}

/** One VM of a uniform scale set. */
export interface ScaleSetInstance {
  instanceId: string;
  /** The node name the kubelet registers. */
  computerName: string;
  latestModelApplied: boolean;
  /** `Creating`, `Succeeded`, `Updating` (reimage or upgrade in progress), `Deleting`, `Failed`. */
  provisioningState: string;
  powerState: 'running' | 'stopped' | 'deallocated';
  /** Stable VM id (GUID), as compute reports `properties.vmId`. */
  vmId: string;
  /** Simulated epoch ms of creation. */
  timeCreated: number;
  /** The instance operation in progress, if any (a second one is refused with 409). */
  busy?: 'create' | 'reimage' | 'delete' | 'upgrade';
}

/** A node pool's virtual machine scale set. */
export interface ScaleSet {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  /** Value of the `aks-managed-poolName` tag. */
  poolName: string;
  /** `sku.capacity`: the model's instance count (instances being deleted are already excluded). */
  capacity: number;
  vmSize: string;
  identityType: VmssIdentityType;
  /**
   * Model identities, keyed by lower-cased resource id; `id` keeps the spelling first written,
   * `clientId`/`principalId` are those of the identity when it was assigned: an identity deleted
   * and re-created under the same id leaves a stale entry that GET still shows (upstream Known
   * Issues) and that IMDS cannot use, until it is removed and assigned again.
   */
  userAssignedIdentities: Map<string, VmssIdentityEntry>;
  instances: Map<string, ScaleSetInstance>;
  /** `aks-<pool>-12345678-vmss`; computer names append 6 base-36 digits of the instance id. */
  computerNamePrefix: string;
  nextInstanceId: number;
  /** Lower-cased ids of the user-assigned identities usable on the instances right now. */
  effectiveIdentities: Set<string>;
  /** The system-assigned identity, when the type includes `SystemAssigned`. */
  systemAssigned?: { principalId: string; tenantId: string };
  provisioningState: string;
  /** Incremented on every model change; served as the quoted `etag`. */
  etag: number;
  uniqueId: string;
  timeCreated: number;
  tags: Record<string, string>;
  /** Number of model updates in flight through the HTTP endpoint. */
  updatesInFlight: number;
}

/** What happened to the Azure state; emitted as `event` by {@link ArmState}. */
export type ArmStateEvent =
  | { type: 'identities-changed'; scaleSet: string; added: string[]; removed: string[]; caller: string }
  | { type: 'reimage'; scaleSet: string; instanceId: string; computerName: string; phase: 'started' | 'completed' }
  | { type: 'instance-deleted'; scaleSet: string; instanceId: string; computerName: string }
  | { type: 'instance-created'; scaleSet: string; instanceId: string; computerName: string };

/** A duration in simulated seconds: fixed, or `[min, max]` drawn from a seeded generator. */
export type LatencySpec = number | readonly [number, number];

/** How long Azure's long-running operations take, in simulated seconds. */
export interface ArmLatencyProfile {
  /** VMSS model update (identity or capacity PATCH). Default 40-60 s (DOMAIN.md section 5). */
  identityUpdateSeconds?: LatencySpec;
  /** Reimage of one batch of instances. Default 60-120 s. */
  reimageSeconds?: LatencySpec;
  /** Deletion of one batch of instances. Default 30 s. */
  deleteSeconds?: LatencySpec;
  /** Creation of a new instance on scale-out. Default 60-90 s. */
  createSeconds?: LatencySpec;
  /** `manualupgrade` of one batch of instances. Default 20-40 s. */
  upgradeSeconds?: LatencySpec;
  /** Seed of the generator used for ranges; the same seed gives the same durations. */
  seed?: number;
}

/** One entry of an ARM error's `details`. */
export interface ArmErrorDetail {
  code: string;
  message: string;
  target?: string;
}

/** An error as ARM answers it: HTTP status plus the body `{"error":{code,message,target?,details?}}`. */
export class ArmError extends Error {
  readonly status: number;
  readonly code: string;
  readonly target?: string;
  readonly details?: ArmErrorDetail[];

  constructor(status: number, code: string, message: string, opts: { target?: string; details?: ArmErrorDetail[] } = {}) {
    super(message);
    this.name = 'ArmError';
    this.status = status;
    this.code = code;
    this.target = opts.target;
    this.details = opts.details;
  }

  /** The response body ARM sends for this error. */
  toBody(): { error: { code: string; message: string; target?: string; details?: ArmErrorDetail[] } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.target !== undefined ? { target: this.target } : {}),
        ...(this.details ? { details: this.details } : {}),
      },
    };
  }
}

/** The managed cluster as {@link ArmState.setManagedCluster} takes it. */
export interface ManagedClusterSpec {
  resourceGroup: string;
  name: string;
  location: string;
  nodeResourceGroup: string;
  kubeletIdentity: { resourceId: string; clientId: string; objectId: string };
  agentPools: { name: string; count: number; vmSize: string; mode: 'System' | 'User'; type?: string; osType?: string }[];
  kubernetesVersion: string;
  fqdn: string;
}

/** A model change or instance operation started through the HTTP endpoint. */
export interface ArmOperation {
  /** Simulated epoch ms at which it started. */
  readonly startedAt: number;
  /** Resolves when it succeeded; rejects with an {@link ArmError} when it failed. */
  readonly done: Promise<void>;
}

/** Makes an operation end `Failed` with this error (fault rule `lro-fail`). */
export interface InjectedFailure {
  code?: string;
  message?: string;
}

/** The identity part of a VMSS PATCH body. */
export interface IdentityPatch {
  type?: string;
  userAssignedIdentities?: Record<string, unknown> | null;
}

/** Compute's limit on identities in one request (`Assign exceed limit '150' in one request`). */
export const MAX_IDENTITIES_PER_REQUEST = 150;
const MAX_CAPACITY = 1000;
const ASSIGN_ACTION = 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action';
const IDENTITY_ID_RE = /^\/subscriptions\/([^/]+)\/resourcegroups\/([^/]+)\/providers\/microsoft\.managedidentity\/userassignedidentities\/([^/]+)$/i;
const DEFAULT_LATENCY = {
  identityUpdateSeconds: [40, 60] as const,
  reimageSeconds: [60, 120] as const,
  deleteSeconds: 30,
  createSeconds: [60, 90] as const,
  upgradeSeconds: [20, 40] as const,
};
/** AKS puts an 8-digit hash of the cluster in every VMSS name; the sandbox uses a fixed one. */
export const AKS_NAME_SUFFIX = '12345678';

/** A GUID derived from a string, stable across runs. */
function guidFrom(seed: string): string {
  const h = createHash('sha1').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16], 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** mulberry32: small, fast, deterministic. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Parses an identity type as compute does: case-insensitive, the two flags in any order. */
function parseIdentityType(raw: string): { system: boolean; user: boolean } | undefined {
  const parts = raw.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean);
  if (parts.length === 1 && parts[0] === 'none') return { system: false, user: false };
  if (parts.length === 0 || parts.length > 2) return undefined;
  const flags = { system: false, user: false };
  for (const p of parts) {
    if (p === 'systemassigned' && !flags.system) flags.system = true;
    else if (p === 'userassigned' && !flags.user) flags.user = true;
    else return undefined;
  }
  return flags;
}

function typeFromFlags(system: boolean, user: boolean): VmssIdentityType {
  if (system && user) return 'SystemAssigned, UserAssigned';
  if (system) return 'SystemAssigned';
  if (user) return 'UserAssigned';
  return 'None';
}

function hasUser(t: VmssIdentityType): boolean {
  return t === 'UserAssigned' || t === 'SystemAssigned, UserAssigned';
}

/** Where a planned identity change leads; applied by {@link ArmState} only after validation. */
interface IdentityPlan {
  type: VmssIdentityType;
  map: Map<string, VmssIdentityEntry>;
  system: boolean;
  added: string[];
  removed: string[];
}

/**
 * The simulated Azure state. Construct once per sandbox; the HTTP endpoint and the in-process
 * components share it. Emits `event` with an {@link ArmStateEvent}.
 */
export class ArmState extends EventEmitter {
  readonly subscriptionId: string;
  readonly tenantId: string;
  /** Object id the sandbox reports for the external client (used in authorization errors). */
  readonly clientObjectId: string;
  /** Scenario switch: identity changes leave instances `latestModelApplied: false` until `manualupgrade` (legacy behaviour). */
  legacyInstanceModel = false;

  private readonly clock: Clock;
  private readonly metrics: Metrics;
  private readonly latency: Required<Omit<ArmLatencyProfile, 'seed'>>;
  private readonly random: () => number;
  private readonly identitiesById = new Map<string, UserAssignedIdentity>();
  private readonly denied = new Set<string>();
  private readonly sets = new Map<string, ScaleSet>();
  private readonly groups = new Map<string, string>();
  private cluster?: ManagedClusterSpec & { id: string; createdAt: number };

  constructor(opts: { subscriptionId: string; tenantId: string; clock: Clock; metrics: Metrics; latency?: ArmLatencyProfile }) {
    super();
    this.subscriptionId = opts.subscriptionId;
    this.tenantId = opts.tenantId;
    this.clock = opts.clock;
    this.metrics = opts.metrics;
    const lat = opts.latency ?? {};
    this.latency = {
      identityUpdateSeconds: lat.identityUpdateSeconds ?? DEFAULT_LATENCY.identityUpdateSeconds,
      reimageSeconds: lat.reimageSeconds ?? DEFAULT_LATENCY.reimageSeconds,
      deleteSeconds: lat.deleteSeconds ?? DEFAULT_LATENCY.deleteSeconds,
      createSeconds: lat.createSeconds ?? DEFAULT_LATENCY.createSeconds,
      upgradeSeconds: lat.upgradeSeconds ?? DEFAULT_LATENCY.upgradeSeconds,
    };
    const seed = lat.seed ?? parseInt(createHash('sha1').update(opts.subscriptionId).digest('hex').slice(0, 8), 16);
    this.random = seededRandom(seed);
    this.clientObjectId = guidFrom(`client-object:${opts.subscriptionId}`);
  }

  // ---- building the state -------------------------------------------------------------

  /** Declares a resource group (identities, the cluster and scale sets declare theirs). */
  addResourceGroup(name: string): void {
    if (!this.groups.has(name.toLowerCase())) this.groups.set(name.toLowerCase(), name);
  }

  /** The resource group's name as declared, or undefined (ARM answers `ResourceGroupNotFound`). */
  resourceGroup(name: string): string | undefined {
    return this.groups.get(name.toLowerCase());
  }

  /** Adds a user-assigned identity; its id uses lower-case `resourcegroups` as the MSI RP writes it. */
  addIdentity(i: Omit<UserAssignedIdentity, 'id' | 'tenantId'> & { id?: string }): UserAssignedIdentity {
    const id = i.id ?? `/subscriptions/${this.subscriptionId}/resourcegroups/${i.resourceGroup}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${i.name}`;
    if (this.identitiesById.has(id.toLowerCase())) throw new Error(`identity ${id} already exists`);
    const identity: UserAssignedIdentity = { id, name: i.name, resourceGroup: i.resourceGroup, location: i.location, clientId: i.clientId, principalId: i.principalId, tenantId: this.tenantId };
    this.identitiesById.set(id.toLowerCase(), identity);
    this.addResourceGroup(i.resourceGroup);
    return { ...identity };
  }

  /** Deletes an identity (scale sets keep their entries for it, as ARM does); returns it, or undefined when unknown. */
  removeIdentity(idOrName: string): UserAssignedIdentity | undefined {
    const identity = this.identity(idOrName);
    if (identity) this.identitiesById.delete(identity.id.toLowerCase());
    return identity;
  }

  /** Deny `assign/action` on this identity for external callers (`LinkedAuthorizationFailed`). */
  denyAssign(identityId: string): void {
    const identity = this.identity(identityId);
    this.denied.add((identity?.id ?? identityId).toLowerCase());
  }

  /** Whether an external caller may assign this identity (the `Permissions` API reads this). */
  mayAssign(identityId: string): boolean {
    return !this.denied.has(identityId.toLowerCase());
  }

  /** Sets the AKS managed cluster; scale sets added afterwards live in its node resource group. */
  setManagedCluster(mc: ManagedClusterSpec): void {
    const id = `/subscriptions/${this.subscriptionId}/resourcegroups/${mc.resourceGroup}/providers/Microsoft.ContainerService/managedClusters/${mc.name}`;
    this.cluster = { ...mc, agentPools: mc.agentPools.map((p) => ({ ...p })), kubeletIdentity: { ...mc.kubeletIdentity }, id, createdAt: this.clock.now() };
    this.addResourceGroup(mc.resourceGroup);
    this.addResourceGroup(mc.nodeResourceGroup);
  }

  /** The managed cluster, or undefined before {@link ArmState.setManagedCluster}. */
  managedCluster(): (ManagedClusterSpec & { id: string }) | undefined {
    return this.cluster;
  }

  /**
   * Adds a node pool's scale set with instances `0..capacity-1`, all running the latest model.
   * An empty `name` gets the AKS name `aks-<pool>-12345678-vmss`. `identities` are ids or names
   * of identities added before; they are effective at once.
   */
  addScaleSet(s: { name: string; poolName: string; capacity: number; vmSize?: string; identityType?: VmssIdentityType; identities?: string[]; resourceGroup?: string; location?: string }): ScaleSet {
    const name = s.name || `aks-${s.poolName}-${AKS_NAME_SUFFIX}-vmss`;
    if (this.sets.has(name.toLowerCase())) throw new Error(`scale set ${name} already exists`);
    const resourceGroup = s.resourceGroup ?? this.cluster?.nodeResourceGroup;
    const location = s.location ?? this.cluster?.location;
    if (!resourceGroup || !location) throw new Error(`scale set ${name}: call setManagedCluster first or pass resourceGroup and location`);
    this.addResourceGroup(resourceGroup);
    const map = new Map<string, VmssIdentityEntry>();
    for (const ref of s.identities ?? []) {
      const identity = this.identity(ref);
      if (!identity) throw new Error(`scale set ${name}: unknown identity ${ref}`);
      map.set(identity.id.toLowerCase(), { id: identity.id, clientId: identity.clientId, principalId: identity.principalId });
    }
    const identityType = s.identityType ?? (map.size ? 'UserAssigned' : 'None');
    if (map.size && !hasUser(identityType)) throw new Error(`scale set ${name}: identities given but type is ${identityType}`);
    const id = `/subscriptions/${this.subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachineScaleSets/${name}`;
    const set: ScaleSet = {
      id,
      name,
      resourceGroup,
      location,
      poolName: s.poolName,
      capacity: 0,
      vmSize: s.vmSize ?? 'Standard_D4s_v5',
      identityType,
      userAssignedIdentities: map,
      instances: new Map(),
      computerNamePrefix: name,
      nextInstanceId: 0,
      effectiveIdentities: new Set(map.keys()),
      systemAssigned: identityType.startsWith('SystemAssigned') ? { principalId: guidFrom(`system:${id}`), tenantId: this.tenantId } : undefined,
      provisioningState: 'Succeeded',
      etag: 1,
      uniqueId: guidFrom(`vmss:${id}`),
      timeCreated: this.clock.now(),
      tags: {
        'aks-managed-poolName': s.poolName,
        'aks-managed-orchestrator': `Kubernetes:${this.cluster?.kubernetesVersion ?? '1.32.0'}`,
        'aks-managed-resourceNameSuffix': AKS_NAME_SUFFIX,
        'aks-managed-createOperationID': guidFrom(`create:${id}`),
      },
      updatesInFlight: 0,
    };
    for (let i = 0; i < s.capacity; i++) this.newInstance(set, 'Succeeded');
    set.capacity = s.capacity;
    this.sets.set(name.toLowerCase(), set);
    return set;
  }

  // ---- reads ---------------------------------------------------------------------------

  scaleSet(name: string): ScaleSet | undefined {
    return this.sets.get(name.toLowerCase());
  }

  scaleSets(): ScaleSet[] {
    return [...this.sets.values()];
  }

  /** Looks an identity up by resource id (case-insensitive) or, failing that, by name. */
  identity(idOrName: string): UserAssignedIdentity | undefined {
    const byId = this.identitiesById.get(idOrName.toLowerCase());
    if (byId) return byId;
    for (const i of this.identitiesById.values()) if (i.name === idOrName) return i;
    return undefined;
  }

  identities(): UserAssignedIdentity[] {
    return [...this.identitiesById.values()];
  }

  /** Identities effective on one instance (what IMDS can hand out there). Empty for an unknown or deleting instance. */
  identitiesOnInstance(scaleSet: string, instanceId: string): UserAssignedIdentity[] {
    const set = this.scaleSet(scaleSet);
    const inst = set?.instances.get(instanceId);
    if (!set || !inst || inst.provisioningState === 'Deleting' || inst.provisioningState === 'Creating') return [];
    const out: UserAssignedIdentity[] = [];
    for (const key of set.effectiveIdentities) {
      const identity = this.identitiesById.get(key);
      const entry = set.userAssignedIdentities.get(key);
      // A stale entry (the identity was re-created since it was assigned) gives no token.
      if (identity && !(entry?.principalId && entry.principalId !== identity.principalId)) out.push(identity);
    }
    return out;
  }

  instanceByComputerName(computerName: string): { scaleSet: ScaleSet; instance: ScaleSetInstance } | undefined {
    const lower = computerName.toLowerCase();
    for (const set of this.sets.values()) {
      if (!lower.startsWith(set.computerNamePrefix.toLowerCase())) continue;
      for (const instance of set.instances.values()) if (instance.computerName.toLowerCase() === lower) return { scaleSet: set, instance };
    }
    return undefined;
  }

  /** The scale set or ARM's 404 for it. */
  requireScaleSet(name: string, resourceGroup?: string): ScaleSet {
    const set = this.scaleSet(name);
    if (!set || (resourceGroup !== undefined && set.resourceGroup.toLowerCase() !== resourceGroup.toLowerCase())) {
      throw notFound('Microsoft.Compute/virtualMachineScaleSets', name, resourceGroup ?? set?.resourceGroup ?? '');
    }
    return set;
  }

  // ---- identity changes ----------------------------------------------------------------

  /**
   * The merge semantics of PATCH `identity.userAssignedIdentities`: `{}` adds, `null` removes;
   * ids compared case-insensitively; more than 150 entries is refused; an id the caller may
   * not assign gives `LinkedAuthorizationFailed`; an unknown identity fails as ARM does.
   * Used by the sandbox's in-process MIC (caller `mic`): the change is in effect on return,
   * because MIC models its own assignment latency. Recorded in the metrics as
   * `PATCH VirtualMachineScaleSets_Update` by `caller`. Throws {@link ArmError}.
   */
  patchIdentities(scaleSetName: string, delta: Record<string, {} | null>, opts: { caller: string; identityType?: string }): { added: string[]; removed: string[] } {
    const record = (status: number) => this.metrics.record({ api: 'arm', verb: 'PATCH', resource: 'VirtualMachineScaleSets_Update', status, caller: opts.caller });
    try {
      const set = this.requireScaleSet(scaleSetName);
      const plan = this.planIdentityChange(set, { type: opts.identityType, userAssignedIdentities: delta }, opts.caller);
      this.applyModel(set, plan);
      this.applyEffective(set, plan.added, plan.removed, opts.caller);
      record(200);
      return { added: plan.added, removed: plan.removed };
    } catch (e) {
      record(e instanceof ArmError ? e.status : 500);
      throw e;
    }
  }

  /**
   * Starts a VMSS model update as the HTTP endpoint receives it (identity and/or
   * `sku.capacity`). Validates everything first (throws {@link ArmError} with nothing
   * changed), applies the model at once (`provisioningState: Updating`), and completes after
   * the simulated duration: identities become effective, new instances finish creating.
   * With `fail`, the operation ends `Failed` and the identity delta is undone.
   */
  beginUpdate(scaleSetName: string, patch: { identity?: IdentityPatch; capacity?: number }, opts: { caller: string; resourceGroup?: string; fail?: InjectedFailure; ifMatch?: string }): ArmOperation {
    const set = this.requireScaleSet(scaleSetName, opts.resourceGroup);
    if (opts.ifMatch !== undefined && opts.ifMatch !== '*' && opts.ifMatch !== etagOf(set.etag)) {
      throw new ArmError(412, 'PreconditionFailed', `The condition specified using HTTP conditional header(s) is not met.`);
    }
    const plan = patch.identity ? this.planIdentityChange(set, patch.identity, opts.caller) : undefined;
    if (patch.capacity !== undefined && (!Number.isInteger(patch.capacity) || patch.capacity < 0 || patch.capacity > MAX_CAPACITY)) {
      throw new ArmError(400, 'InvalidParameter', `The value ${patch.capacity} of parameter 'sku.capacity' is out of range. The value must be between 0 and ${MAX_CAPACITY}, inclusive.`, { target: 'sku.capacity' });
    }
    if (set.updatesInFlight > 0) throw concurrentConflict();
    if (patch.capacity !== undefined) this.checkInstancesIdle(set, this.scaleInVictims(set, patch.capacity));

    const startedAt = this.clock.now();
    const before = { type: set.identityType, map: new Map(set.userAssignedIdentities), system: set.systemAssigned };
    if (plan) this.applyModel(set, plan);
    set.provisioningState = 'Updating';
    set.etag++;
    set.updatesInFlight++;
    const parts: Promise<void>[] = [];
    if (patch.capacity !== undefined && !opts.fail) parts.push(this.changeCapacity(set, patch.capacity));
    const done = (async () => {
      try {
        await Promise.all([this.clock.sleep(this.duration(this.latency.identityUpdateSeconds)), ...parts]);
      } finally {
        set.updatesInFlight--;
      }
      if (opts.fail) {
        if (plan) this.revertModel(set, plan, before);
        set.provisioningState = 'Failed';
        set.etag++;
        throw injectedError(opts.fail);
      }
      if (plan) {
        // Only what still stands in the model takes effect: a concurrent in-process change wins.
        const added = plan.added.filter((id) => set.userAssignedIdentities.has(id.toLowerCase()));
        const removed = plan.removed.filter((id) => !set.userAssignedIdentities.has(id.toLowerCase()));
        this.applyEffective(set, added, removed, opts.caller);
      }
      if (set.updatesInFlight === 0) set.provisioningState = 'Succeeded';
    })();
    done.catch(() => {});
    return { startedAt, done };
  }

  /** Validates an identity change and works out the resulting model, without changing anything. */
  private planIdentityChange(set: ScaleSet, patch: IdentityPatch, caller: string): IdentityPlan {
    const entries = Object.entries(patch.userAssignedIdentities ?? {});
    const adds: string[] = [];
    const nulls: string[] = [];
    for (const [key, value] of entries) {
      if (value === null) nulls.push(key);
      else if (typeof value === 'object' && !Array.isArray(value)) adds.push(key);
      else throw new ArmError(400, 'InvalidParameter', `The value of parameter 'identity.userAssignedIdentities' for '${key}' is invalid.`, { target: 'identity.userAssignedIdentities' });
    }
    for (const key of entries.map(([k]) => k)) {
      if (!IDENTITY_ID_RE.test(key)) {
        throw new ArmError(400, 'LinkedInvalidPropertyId', `Property id '${key}' at path 'identity.userAssignedIdentities' is invalid. Expect fully qualified resource Id that start with '/subscriptions/{subscriptionId}' or '/providers/{resourceProviderNamespace}/'.`);
      }
    }
    // ARM checks linked authorization before the request reaches compute.
    if (caller === 'client') {
      const denied = adds.filter((id) => this.denied.has(id.toLowerCase()));
      if (denied.length) {
        throw new ArmError(
          403,
          'LinkedAuthorizationFailed',
          `The client '${this.clientObjectId}' with object id '${this.clientObjectId}' has permission to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' on scope '${set.id}'; however, it does not have permission to perform action(s) '${ASSIGN_ACTION}' on the linked scope(s) '${denied.join(',')}' (respectively) or the linked scope(s) are invalid.`,
        );
      }
    }
    const seen = new Set<string>();
    for (const key of entries.map(([k]) => k)) {
      if (seen.has(key.toLowerCase())) {
        throw new ArmError(400, 'InvalidParameter', `ResourceIdentity identityId '${key}' cannot be duplicated in the provided identityIds list.`, { target: 'resourceIdentity.identityIds' });
      }
      seen.add(key.toLowerCase());
    }
    if (entries.length > MAX_IDENTITIES_PER_REQUEST) {
      throw identityOperationError(set, 'BadRequest', 'BadRequest', `User Assigned Identities Number '${entries.length}' Assign exceed limit '${MAX_IDENTITIES_PER_REQUEST}' in one request.`);
    }
    for (const key of adds) {
      if (!this.identitiesById.has(key.toLowerCase())) {
        const m = IDENTITY_ID_RE.exec(key)!;
        throw identityOperationError(set, 'NotFound', 'ResourceNotFound', `The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/${m[3]}' under resource group '${m[2]}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`);
      }
    }

    let flags: { system: boolean; user: boolean };
    if (patch.type !== undefined && patch.type !== null) {
      const parsed = typeof patch.type === 'string' ? parseIdentityType(patch.type) : undefined;
      if (!parsed) {
        throw new ArmError(400, 'InvalidParameter', `The value '${String(patch.type)}' of parameter 'identity.type' is not valid. Allowed values are 'None', 'SystemAssigned', 'UserAssigned', 'SystemAssigned, UserAssigned'.`, { target: 'identity.type' });
      }
      flags = parsed;
    } else {
      // Without a type compute keeps the current one, and a map of additions implies UserAssigned.
      flags = { system: !!set.systemAssigned, user: hasUser(set.identityType) || adds.length > 0 };
    }
    if (!flags.user && adds.length) {
      throw new ArmError(400, 'InvalidParameter', `The identity type '${typeFromFlags(flags.system, false)}' cannot be combined with user assigned identities.`, { target: 'identity.userAssignedIdentities' });
    }
    const map = new Map<string, VmssIdentityEntry>();
    const added: string[] = [];
    const removed: string[] = [];
    if (flags.user) {
      for (const [k, v] of set.userAssignedIdentities) map.set(k, v);
      for (const key of nulls) {
        const existing = map.get(key.toLowerCase());
        if (existing) {
          map.delete(key.toLowerCase());
          removed.push(existing.id);
        }
      }
      for (const key of adds) {
        if (!map.has(key.toLowerCase())) {
          const identity = this.identitiesById.get(key.toLowerCase());
          map.set(key.toLowerCase(), { id: key, clientId: identity?.clientId, principalId: identity?.principalId });
          added.push(key);
        }
      }
    } else {
      for (const v of set.userAssignedIdentities.values()) removed.push(v.id);
    }
    // With no user-assigned identity left the type drops the UserAssigned flag.
    const user = flags.user && map.size > 0;
    return { type: typeFromFlags(flags.system, user), map, system: flags.system, added, removed };
  }

  private applyModel(set: ScaleSet, plan: IdentityPlan): void {
    set.identityType = plan.type;
    set.userAssignedIdentities = plan.map;
    if (plan.system && !set.systemAssigned) set.systemAssigned = { principalId: guidFrom(`system:${set.id}:${set.etag}`), tenantId: this.tenantId };
    if (!plan.system) set.systemAssigned = undefined;
    set.etag++;
    if (this.legacyInstanceModel && (plan.added.length || plan.removed.length)) {
      for (const inst of set.instances.values()) inst.latestModelApplied = false;
    }
  }

  /** Undoes a failed update's identity delta, leaving later changes by others alone. */
  private revertModel(set: ScaleSet, plan: IdentityPlan, before: { type: VmssIdentityType; map: Map<string, VmssIdentityEntry>; system?: { principalId: string; tenantId: string } }): void {
    for (const id of plan.added) set.userAssignedIdentities.delete(id.toLowerCase());
    for (const id of plan.removed) {
      const original = before.map.get(id.toLowerCase());
      if (original) set.userAssignedIdentities.set(id.toLowerCase(), original);
    }
    if (set.identityType === plan.type) set.identityType = before.type;
    if (hasUser(set.identityType) && set.userAssignedIdentities.size === 0) set.identityType = set.systemAssigned ? 'SystemAssigned' : 'None';
    if (!hasUser(set.identityType) && set.userAssignedIdentities.size > 0) set.identityType = before.system ? 'SystemAssigned, UserAssigned' : 'UserAssigned';
    set.systemAssigned = before.system;
  }

  private applyEffective(set: ScaleSet, added: string[], removed: string[], caller: string): void {
    const reallyAdded = added.filter((id) => !set.effectiveIdentities.has(id.toLowerCase()));
    const reallyRemoved = removed.filter((id) => set.effectiveIdentities.has(id.toLowerCase()));
    for (const id of reallyAdded) set.effectiveIdentities.add(id.toLowerCase());
    for (const id of reallyRemoved) set.effectiveIdentities.delete(id.toLowerCase());
    if (reallyAdded.length || reallyRemoved.length) {
      this.emitEvent({ type: 'identities-changed', scaleSet: set.name, added: reallyAdded, removed: reallyRemoved, caller });
    }
  }

  // ---- instance operations -------------------------------------------------------------

  /** Reimages instances; resolves when every one is running again. Emits `reimage` started/completed. */
  reimageInstances(scaleSet: string, instanceIds: string[]): Promise<void> {
    try {
      return this.beginReimage(scaleSet, instanceIds, { caller: 'sandbox' }).done;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Deletes instances (capacity shrinks with them); resolves when they are gone. Emits `instance-deleted`. */
  deleteInstances(scaleSet: string, instanceIds: string[]): Promise<void> {
    try {
      return this.beginDeleteInstances(scaleSet, instanceIds, { caller: 'sandbox' }).done;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Scales to `capacity` (new instances, or the highest instance ids removed); resolves when done. */
  async setCapacity(scaleSet: string, capacity: number): Promise<void> {
    await this.beginUpdate(scaleSet, { capacity }, { caller: 'sandbox' }).done;
  }

  /** Applies the latest model to instances (`manualupgrade`); resolves when done. */
  upgradeInstances(scaleSet: string, instanceIds: string[]): Promise<void> {
    try {
      return this.beginUpgradeInstances(scaleSet, instanceIds, { caller: 'sandbox' }).done;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `POST .../reimage`: validates (throws {@link ArmError}), then runs in simulated time. No ids: every instance. */
  beginReimage(scaleSetName: string, instanceIds: string[] | undefined, opts: { caller: string; resourceGroup?: string; fail?: InjectedFailure }): ArmOperation {
    const set = this.requireScaleSet(scaleSetName, opts.resourceGroup);
    const targets = this.resolveInstances(set, instanceIds, false);
    this.checkInstancesIdle(set, targets);
    return this.runInstanceOperation(set, targets, 'reimage', this.latency.reimageSeconds, opts.fail, {
      start: (inst) => {
        inst.provisioningState = 'Updating';
        inst.powerState = 'stopped';
        this.emitEvent({ type: 'reimage', scaleSet: set.name, instanceId: inst.instanceId, computerName: inst.computerName, phase: 'started' });
      },
      finish: (inst) => {
        inst.provisioningState = 'Succeeded';
        inst.powerState = 'running';
        this.emitEvent({ type: 'reimage', scaleSet: set.name, instanceId: inst.instanceId, computerName: inst.computerName, phase: 'completed' });
      },
    });
  }

  /** `POST .../delete`: validates (throws {@link ArmError}), shrinks the capacity at once, removes the instances when done. */
  beginDeleteInstances(scaleSetName: string, instanceIds: string[], opts: { caller: string; resourceGroup?: string; fail?: InjectedFailure; forceDeletion?: boolean }): ArmOperation {
    const set = this.requireScaleSet(scaleSetName, opts.resourceGroup);
    const targets = this.resolveInstances(set, instanceIds, true);
    this.checkInstancesIdle(set, targets);
    // Forced deletion skips the graceful shutdown: a third of the usual time.
    const latency = opts.forceDeletion ? scaleLatency(this.latency.deleteSeconds, 1 / 3) : this.latency.deleteSeconds;
    return this.runInstanceOperation(set, targets, 'delete', latency, opts.fail, {
      start: (inst) => {
        inst.provisioningState = 'Deleting';
        set.capacity--;
        set.etag++;
      },
      finish: (inst) => this.removeInstance(set, inst),
      undo: (inst) => {
        inst.provisioningState = 'Succeeded';
        set.capacity++;
        set.etag++;
      },
    });
  }

  /** `POST .../manualupgrade`: brings instances to the latest model (`latestModelApplied: true`). */
  beginUpgradeInstances(scaleSetName: string, instanceIds: string[], opts: { caller: string; resourceGroup?: string; fail?: InjectedFailure }): ArmOperation {
    const set = this.requireScaleSet(scaleSetName, opts.resourceGroup);
    const targets = this.resolveInstances(set, instanceIds, true);
    this.checkInstancesIdle(set, targets);
    return this.runInstanceOperation(set, targets, 'upgrade', this.latency.upgradeSeconds, opts.fail, {
      start: (inst) => {
        inst.provisioningState = 'Updating';
      },
      finish: (inst) => {
        inst.provisioningState = 'Succeeded';
        inst.latestModelApplied = true;
      },
      undo: (inst) => {
        inst.provisioningState = 'Failed';
      },
    });
  }

  private runInstanceOperation(
    set: ScaleSet,
    targets: ScaleSetInstance[],
    kind: 'reimage' | 'delete' | 'upgrade',
    latency: LatencySpec,
    fail: InjectedFailure | undefined,
    steps: { start: (i: ScaleSetInstance) => void; finish: (i: ScaleSetInstance) => void; undo?: (i: ScaleSetInstance) => void },
  ): ArmOperation {
    const startedAt = this.clock.now();
    const ms = this.duration(latency);
    // An operation that will fail leaves the instances as they were (reimage never starts).
    const touched = fail && kind === 'reimage' ? [] : targets;
    for (const inst of targets) inst.busy = kind;
    for (const inst of touched) steps.start(inst);
    const done = (async () => {
      try {
        await this.clock.sleep(ms);
      } finally {
        for (const inst of targets) inst.busy = undefined;
      }
      if (fail) {
        for (const inst of touched) steps.undo?.(inst);
        throw injectedError(fail);
      }
      for (const inst of targets) steps.finish(inst);
    })();
    done.catch(() => {});
    return { startedAt, done };
  }

  /** Instance ids as compute resolves them: `*` or absent (when allowed) means all. */
  private resolveInstances(set: ScaleSet, instanceIds: string[] | undefined, required: boolean): ScaleSetInstance[] {
    if (instanceIds === undefined || instanceIds === null) {
      if (required) throw new ArmError(400, 'InvalidParameter', `Required parameter 'instanceIds' is missing (null).`, { target: 'instanceIds' });
      return [...set.instances.values()];
    }
    if (!Array.isArray(instanceIds)) throw new ArmError(400, 'InvalidParameter', `The value of parameter 'instanceIds' is invalid.`, { target: 'instanceIds' });
    if (instanceIds.includes('*')) return [...set.instances.values()];
    const out: ScaleSetInstance[] = [];
    for (const raw of instanceIds) {
      const inst = set.instances.get(String(raw));
      if (!inst || inst.provisioningState === 'Deleting') {
        throw new ArmError(400, 'InvalidParameter', `The provided instanceId ${raw} is not an active Virtual Machine Scale Set VM instanceId.`, { target: 'instanceIds' });
      }
      if (!out.includes(inst)) out.push(inst);
    }
    return out;
  }

  private checkInstancesIdle(set: ScaleSet, targets: ScaleSetInstance[]): void {
    const busy = targets.find((i) => i.busy);
    if (busy) throw concurrentConflict();
  }

  /** Scale-in removes the highest instance ids first (compute's default policy in a single zone). */
  private scaleInVictims(set: ScaleSet, capacity: number): ScaleSetInstance[] {
    const live = [...set.instances.values()].filter((i) => i.provisioningState !== 'Deleting').sort((a, b) => Number(b.instanceId) - Number(a.instanceId));
    return live.slice(0, Math.max(0, live.length - capacity));
  }

  private changeCapacity(set: ScaleSet, capacity: number): Promise<void> {
    const jobs: Promise<void>[] = [];
    const victims = this.scaleInVictims(set, capacity);
    if (victims.length) {
      for (const v of victims) {
        v.busy = 'delete';
        v.provisioningState = 'Deleting';
      }
      jobs.push(
        this.clock.sleep(this.duration(this.latency.deleteSeconds)).then(() => {
          for (const v of victims) this.removeInstance(set, v);
        }),
      );
    }
    const live = [...set.instances.values()].filter((i) => i.provisioningState !== 'Deleting').length;
    for (let n = live; n < capacity; n++) {
      const inst = this.newInstance(set, 'Creating');
      inst.busy = 'create';
      jobs.push(
        this.clock.sleep(this.duration(this.latency.createSeconds)).then(() => {
          inst.busy = undefined;
          if (!set.instances.has(inst.instanceId)) return;
          inst.provisioningState = 'Succeeded';
          inst.powerState = 'running';
          this.emitEvent({ type: 'instance-created', scaleSet: set.name, instanceId: inst.instanceId, computerName: inst.computerName });
        }),
      );
    }
    set.capacity = capacity;
    return Promise.all(jobs).then(() => undefined);
  }

  private newInstance(set: ScaleSet, provisioningState: 'Creating' | 'Succeeded'): ScaleSetInstance {
    const n = set.nextInstanceId++;
    const instanceId = String(n);
    const inst: ScaleSetInstance = {
      instanceId,
      computerName: set.computerNamePrefix + n.toString(36).padStart(6, '0'),
      latestModelApplied: true,
      provisioningState,
      powerState: provisioningState === 'Creating' ? 'stopped' : 'running',
      vmId: guidFrom(`vm:${set.id}:${instanceId}`),
      timeCreated: this.clock.now(),
    };
    set.instances.set(instanceId, inst);
    return inst;
  }

  private removeInstance(set: ScaleSet, inst: ScaleSetInstance): void {
    if (!set.instances.delete(inst.instanceId)) return;
    this.emitEvent({ type: 'instance-deleted', scaleSet: set.name, instanceId: inst.instanceId, computerName: inst.computerName });
  }

  // ---- helpers ---------------------------------------------------------------------------

  /** A duration in simulated ms for a latency spec; ranges draw from the seeded generator. */
  duration(spec: LatencySpec): number {
    if (typeof spec === 'number') return Math.max(0, spec * 1000);
    const [min, max] = spec;
    return Math.max(0, Math.round((min + (max - min) * this.random()) * 1000));
  }

  private emitEvent(e: ArmStateEvent): void {
    this.emit('event', e);
  }

  /** JSON-able dump of the whole state, for tests and `sandbox status`. */
  snapshot(): object {
    return {
      subscriptionId: this.subscriptionId,
      tenantId: this.tenantId,
      legacyInstanceModel: this.legacyInstanceModel,
      resourceGroups: [...this.groups.values()],
      managedCluster: this.cluster ? { ...this.cluster, createdAt: undefined } : undefined,
      identities: this.identities().map((i) => ({ ...i, assignDenied: this.denied.has(i.id.toLowerCase()) })),
      scaleSets: this.scaleSets().map((s) => ({
        id: s.id,
        name: s.name,
        resourceGroup: s.resourceGroup,
        poolName: s.poolName,
        capacity: s.capacity,
        vmSize: s.vmSize,
        identityType: s.identityType,
        userAssignedIdentities: [...s.userAssignedIdentities.values()].map((v) => v.id),
        effectiveIdentities: [...s.effectiveIdentities].map((k) => this.identitiesById.get(k)?.id ?? k),
        provisioningState: s.provisioningState,
        instances: [...s.instances.values()].map((i) => ({
          instanceId: i.instanceId,
          computerName: i.computerName,
          latestModelApplied: i.latestModelApplied,
          provisioningState: i.provisioningState,
          powerState: i.powerState,
          ...(i.busy ? { busy: i.busy } : {}),
        })),
      })),
    };
  }
}

/** The quoted etag compute serves for a model version. */
export function etagOf(version: number): string {
  return `"${version}"`;
}

function scaleLatency(spec: LatencySpec, factor: number): LatencySpec {
  return typeof spec === 'number' ? spec * factor : [spec[0] * factor, spec[1] * factor];
}

/** ARM's 404 for a missing resource (`ResourceNotFound`). */
export function notFound(type: string, name: string, resourceGroup: string): ArmError {
  return new ArmError(404, 'ResourceNotFound', `The Resource '${type}/${name}' under resource group '${resourceGroup}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`);
}

function concurrentConflict(): ArmError {
  return new ArmError(409, 'Conflict', 'The request failed due to conflict with a concurrent request. To resolve it, wait until the concurrent request completes and retry the request.');
}

/** Compute wraps the identity RP's refusal in `FailedIdentityOperation`, quoting the inner response. */
function identityOperationError(set: ScaleSet, innerStatus: string, innerCode: string, innerMessage: string): ArmError {
  const inner = JSON.stringify({ error: { code: innerCode, message: innerMessage } });
  return new ArmError(400, 'FailedIdentityOperation', `Identity operation for resource '${set.id}' failed with error 'Failed to perform resource identity operation. Status: '${innerStatus}'. Response: '${inner}'.'.`);
}

function injectedError(fail: InjectedFailure): ArmError {
  return new ArmError(500, fail.code ?? 'InternalExecutionError', fail.message ?? 'An internal execution error occurred. Please retry later.');
}
