/**
 * What the simulated MIC, NMI, IMDS and the outage meter share: the narrow view of Azure they
 * need ({@link IdentityInfra}, which `ArmState` satisfies), their timings, the Pod Identity
 * CRD field readers (including the capitalised pre-1.6.0 field names) and the small
 * per-network registries through which NMI reports its state to the outage meter.
 */
import type { Clock } from '../clock.ts';
import type { PodNetwork } from '../netsim.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';

/** A user-assigned managed identity as Azure knows it. */
export interface InfraIdentity {
  /** Resource id, `/subscriptions/.../resourcegroups/.../providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`. */
  id: string;
  name: string;
  clientId: string;
  principalId: string;
  tenantId: string;
}

/** The parts of the Azure state Pod Identity touches. `ArmState` implements it. */
export interface IdentityInfra {
  readonly tenantId: string;
  /**
   * Applies a VMSS identity delta (`{}` adds, `null` removes) and returns what really changed.
   * In effect on return; throws an ARM-style error (with `status`, `code`, `message`) when refused.
   */
  patchIdentities(scaleSetName: string, delta: Record<string, {} | null>, opts: { caller: string }): { added: string[]; removed: string[] };
  /** Identities usable on one instance right now (what IMDS can hand out there). */
  identitiesOnInstance(scaleSet: string, instanceId: string): InfraIdentity[];
  /** The VM behind a node name, or undefined (not a VMSS node, or gone). */
  instanceByComputerName(computerName: string): { scaleSet: { name: string }; instance: { instanceId: string } } | undefined;
  /** The scale set's model; `userAssignedIdentities` is keyed by lower-cased resource id. */
  scaleSet(name: string): { name: string; userAssignedIdentities: Map<string, { id: string }>; systemAssigned?: { principalId: string; tenantId: string } } | undefined;
  /** An identity by resource id (case-insensitive) or name. */
  identity(idOrName: string): InfraIdentity | undefined;
}

/** Durations of the simulation, in simulated seconds (upstream defaults unless noted). */
export interface PodIdentityTiming {
  /** How long MIC takes from noticing a pod to the VMSS PATCH being done (sandbox latency profile; real: 10-60 s). */
  micAssignmentSeconds: number;
  /**
   * A sync cycle whose scale sets already carry every identity it needs: upstream `UpdateUserMSI`
   * GETs the scale set and sends no PATCH when nothing is to add or remove (`requiresUpdate`),
   * so the cycle costs that GET, not the PATCH's long-running operation.
   */
  micReadSeconds: number;
  /** MIC's periodic sync loop besides event-driven syncs (upstream `--syncRetryDuration` is 3600 s; the sandbox syncs more often so drift shows). */
  micSyncSeconds: number;
  /** MIC's reconcile of identity assignment for `Assigned` objects (upstream `--identity-assignment-reconcile-interval`, 3 min). */
  micReconcileSeconds: number;
  /** NMI start-up until the iptables chain is in place (informer cache sync + chain setup). */
  nmiStartupSeconds: number;
  /** NMI's sleep after deleting its chain on SIGTERM (upstream `handleTermination`: 10 s). */
  nmiTerminationSleepSeconds: number;
}

export const DEFAULT_TIMING: PodIdentityTiming = {
  micAssignmentSeconds: 4,
  micReadSeconds: 0.5,
  micSyncSeconds: 10,
  micReconcileSeconds: 180,
  nmiStartupSeconds: 3,
  nmiTerminationSleepSeconds: 10,
};

/** Options every Pod Identity component takes. */
export interface PodIdentityOptions {
  store: ObjectStore;
  clock: Clock;
  network: PodNetwork;
  /** Azure: `ArmState` satisfies it. */
  infra: IdentityInfra;
  timing?: Partial<PodIdentityTiming>;
}

export function timingOf(opts: Pick<PodIdentityOptions, 'timing'>): PodIdentityTiming {
  const t = { ...DEFAULT_TIMING };
  for (const [k, v] of Object.entries(opts.timing ?? {})) if (typeof v === 'number' && Number.isFinite(v) && v >= 0) (t as any)[k] = v;
  return t;
}

export const GROUP = 'aadpodidentity.k8s.io';
/** The pod label MIC and NMI match against `AzureIdentityBinding.spec.selector`. */
export const BINDING_LABEL = 'aadpodidbinding';
export const ASSIGNED_FINALIZER = 'azureassignedidentity.finalizers.aadpodidentity.k8s.io';
/** Annotation that makes a single AzureIdentity namespaced (upstream `aadpodidentity.k8s.io/Behavior: namespaced`). */
export const BEHAVIOR_ANNOTATION = 'aadpodidentity.k8s.io/Behavior';

/** Store types of the Pod Identity CRDs; undefined while the CRD is not installed. */
export function crdType(store: ObjectStore, resource: 'azureidentities' | 'azureidentitybindings' | 'azureassignedidentities' | 'azurepodidentityexceptions'): ResourceType | undefined {
  return store.type(GROUP, resource);
}

export function coreType(store: ObjectStore, resource: string): ResourceType | undefined {
  return store.type('', resource);
}

/** `spec.clientID`, also under its pre-1.6.0 spelling `ClientID`. */
export function identityClientId(identity: Readonly<KObject> | undefined): string {
  const s = identity?.spec ?? {};
  return String(s.clientID ?? s.ClientID ?? '');
}

/** `spec.resourceID`, also under its pre-1.6.0 spelling `ResourceID`. */
export function identityResourceId(identity: Readonly<KObject> | undefined): string {
  const s = identity?.spec ?? {};
  return String(s.resourceID ?? s.ResourceID ?? '');
}

/** `spec.type` as a number: 0 user-assigned MSI, 1 service principal, 2 SP with certificate. */
export function identityType(identity: Readonly<KObject> | undefined): number {
  return Number(identity?.spec?.type ?? 0);
}

/** `spec.azureIdentity`, also under `AzureIdentity`. */
export function bindingIdentityName(binding: Readonly<KObject>): string {
  const s = binding.spec ?? {};
  return String(s.azureIdentity ?? s.AzureIdentity ?? '');
}

/** `spec.selector`, also under `Selector`. */
export function bindingSelector(binding: Readonly<KObject>): string {
  const s = binding.spec ?? {};
  return String(s.selector ?? s.Selector ?? '');
}

/** Upstream `IsNamespacedIdentity`: the identity carries `aadpodidentity.k8s.io/Behavior: namespaced`. */
export function isNamespacedIdentity(identity: Readonly<KObject>): boolean {
  return identity.metadata.annotations?.[BEHAVIOR_ANNOTATION] === 'namespaced';
}

/** Upstream `utils.RedactClientID`: keeps the first and last four characters. */
export function redactClientId(clientId: string): string {
  const m = /^(\S{4})[\s\S]*(\S{4})$/.exec(clientId);
  return m ? `${m[1]}##### REDACTED #####${m[2]}` : clientId;
}

/** The VMSS a node belongs to, from `spec.providerID` (as upstream `isVMSS` reads it), else from Azure. */
export function scaleSetOfNode(store: ObjectStore, infra: IdentityInfra, nodeName: string): string | undefined {
  const nodes = coreType(store, 'nodes');
  const node = nodes ? store.peek(nodes, undefined, nodeName) : undefined;
  const m = /\/virtualMachineScaleSets\/([^/]+)\/virtualMachines\//i.exec(String(node?.spec?.providerID ?? ''));
  if (m) return m[1];
  return infra.instanceByComputerName(nodeName)?.scaleSet.name;
}

/** Parses `v1.6.2` / `1.6.2` out of an image reference's tag; unknown tags count as the newest release. */
export function imageVersion(image: string): [number, number, number] {
  const tag = image.includes(':') ? image.slice(image.lastIndexOf(':') + 1) : '';
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(tag);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [99, 0, 0];
}

/** Whether version `v` is at least `[major, minor, patch]`. */
export function atLeast(v: [number, number, number], min: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i] > min[i];
  return true;
}

/** NMI's state on one node, as the outage meter reads it without sending a request. */
export interface NmiNodeState {
  mode: 'standard' | 'managed';
  namespaced: boolean;
  metadataHeaderRequired: boolean;
  /** Upstream `--MICNamespace`: pods of ReplicaSets named `mic*` there bypass matching. */
  micNamespace: string;
  /** `--enableScaleFeatures`: NMI only sees AzureAssignedIdentities labelled with its node. */
  scaleFeatures: boolean;
  /** The iptables chain is installed (health body `Active`). */
  chainActive: boolean;
  /** SIGTERM received: the chain is gone and NMI sleeps before exiting. */
  terminating: boolean;
}

const nmiRegistries = new WeakMap<PodNetwork, Map<string, NmiNodeState>>();

/** Per-node NMI state, shared between the NMI programs and the outage meter of one sandbox network. */
export function nmiRegistry(network: PodNetwork): Map<string, NmiNodeState> {
  let r = nmiRegistries.get(network);
  if (!r) nmiRegistries.set(network, (r = new Map()));
  return r;
}

/** Something that mints access tokens; IMDS registers it so NMI can answer service-principal identities. */
export interface TokenIssuer {
  issue(claims: { audience: string; clientId: string; principalId: string; resourceId?: string }): Promise<{ token: string; iat: number; exp: number }>;
}

const issuers = new WeakMap<PodNetwork, TokenIssuer>();

export function setTokenIssuer(network: PodNetwork, issuer: TokenIssuer | undefined): void {
  if (issuer) issuers.set(network, issuer);
  else issuers.delete(network);
}

export function tokenIssuer(network: PodNetwork): TokenIssuer | undefined {
  return issuers.get(network);
}

/** Simple flag parser in the pflag / Go `flag` style: `--a=b`, `--a b`, `-a=b`, bare booleans. */
export function parseFlags(argv: string[], booleans: ReadonlySet<string>): { flags: Map<string, string>; order: string[]; positional: string[] } {
  const flags = new Map<string, string>();
  const order: string[] = [];
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-') || a === '-' || a === '--') {
      positional.push(a);
      continue;
    }
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    let value: string;
    if (eq >= 0) value = body.slice(eq + 1);
    else if (booleans.has(name)) value = 'true';
    else if (i + 1 < argv.length) value = argv[++i];
    else value = '';
    flags.set(name, value);
    order.push(name);
  }
  return { flags, order, positional };
}

/** Go's `strconv.ParseBool` as flag values use it. */
export function flagBool(v: string | undefined, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  return ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v);
}

/** Go duration strings (`15s`, `3m`, `1h30m`, `500ms`) to ms; plain numbers are seconds. */
export function parseGoDuration(v: string | undefined, dfltMs: number): number {
  if (!v) return dfltMs;
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let seen = '';
  for (let m = re.exec(v); m; m = re.exec(v)) {
    seen += m[0];
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  return seen === v ? total : dfltMs;
}

/** Pods with this IP on this node that hold it right now (not finished). */
export function podsByIp(store: ObjectStore, nodeName: string, ip: string): Readonly<KObject>[] {
  const pods = coreType(store, 'pods');
  if (!pods) return [];
  const out: Readonly<KObject>[] = [];
  for (const p of store.scan(pods, { fieldSelector: `spec.nodeName=${nodeName}` })) {
    if (p.status?.podIP !== ip) continue;
    if (p.spec?.hostNetwork) continue;
    if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
    out.push(p);
  }
  return out;
}

/** A log line in klog's header format (`I1123 10:00:00.000000       1 file.go:42] msg`), as both components write them. */
export function klogLine(clock: Clock, severity: 'I' | 'W' | 'E' | 'F', source: string, msg: string): string {
  const d = new Date(clock.now());
  const p2 = (n: number) => String(n).padStart(2, '0');
  const micros = String(d.getUTCMilliseconds() * 1000).padStart(6, '0');
  return `${severity}${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())} ${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}.${micros}       1 ${source}] ${msg}`;
}

/** A process exit code and the promise the kubelet awaits, settled once. */
export class ExitLatch {
  readonly exited: Promise<number>;
  private resolveFn!: (code: number) => void;
  private code: number | undefined;

  constructor() {
    this.exited = new Promise<number>((r) => (this.resolveFn = r));
  }

  get done(): boolean {
    return this.code !== undefined;
  }

  exit(code: number): void {
    if (this.code !== undefined) return;
    this.code = code;
    this.resolveFn(code);
  }
}
