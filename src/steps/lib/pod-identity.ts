/**
 * Finding and reading the AAD Pod Identity workloads (the NMI DaemonSet and the MIC
 * Deployment) whichever way they were installed (raw manifest or Helm chart, any namespace),
 * and the argument rewrites the migration makes to them.
 *
 * The argument rules are pure functions over plain Kubernetes JSON, so each is unit-testable; the
 * waits at the end read through the gateway.
 */
import type { KubeGateway, KubeObject } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import { POLL_MS, remainingMs, sortKeys } from './util.ts';


/** How Pod Identity was installed: `kubectl apply` of the upstream manifests, or the Helm chart. */
export type InstallKind = 'raw' | 'helm';

/** A parsed `vMAJOR.MINOR.PATCH` image tag. */
export interface SemVer {
  major: number;
  minor: number;
  patch: number;
}

/** The NMI DaemonSet or the MIC Deployment as the migration needs it. */
export interface PodIdentityWorkload {
  kind: 'DaemonSet' | 'Deployment';
  namespace: string;
  name: string;
  install: InstallKind;
  /** Helm release name and namespace (from `meta.helm.sh/*` annotations), on a Helm install. */
  helmRelease?: { name: string; namespace: string };
  /** Name of the NMI / MIC container in the pod template. */
  container: string;
  /** Index of that container in `spec.template.spec.containers` (JSON patches address it by index). */
  containerIndex: number;
  image: string;
  /** `v1.8.17` style, normalised from tags like `v1.8.17` or `1.6.0`; undefined when the tag is not a version. */
  version?: string;
  args: string[];
  /** `spec.replicas` of a Deployment (default 1). */
  replicas?: number;
  /** The object as read (for pre-states and generation checks). */
  object: KubeObject;
}

/** Label MIC and NMI put nothing under; the migration marks objects it copied with it. */
export const COPIED_FROM_LABEL = 'podid-migrate.io/copied-from';

/** The first NMI release with managed mode. */
export const MIN_MANAGED_VERSION: SemVer = { major: 1, minor: 6, patch: 0 };
/** From this release NMI exits at start when given `--host-ip`. */
export const HOST_IP_REMOVED_VERSION: SemVer = { major: 1, minor: 6, patch: 2 };

/** Parses the version out of an image reference (`.../nmi:v1.8.17`, `.../nmi:1.6.0`, digests ignored). */
export function versionFromImage(image: string): string | undefined {
  const noDigest = image.split('@')[0];
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  if (colon <= slash) return undefined;
  const v = parseVersion(noDigest.slice(colon + 1));
  return v ? formatVersion(v) : undefined;
}

/** Parses `v1.8.17` / `1.6.0` (a pre-release or build suffix is ignored); undefined otherwise. */
export function parseVersion(text: string | undefined): SemVer | undefined {
  if (!text) return undefined;
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$/.exec(text.trim());
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
}

/** `v1.8.17`. */
export function formatVersion(v: SemVer): string {
  return `v${v.major}.${v.minor}.${v.patch}`;
}

/** Negative when a < b, zero when equal, positive when a > b. */
export function compareVersions(a: SemVer, b: SemVer): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/** True when `version` parses and is at least `min`. */
export function versionAtLeast(version: string | undefined, min: SemVer): boolean {
  const v = parseVersion(version);
  return v !== undefined && compareVersions(v, min) >= 0;
}

const NMI_IMAGE = /(^|\/)nmi(:|@|$)/;
const MIC_IMAGE = /(^|\/)mic(:|@|$)/;

function labelsOf(obj: KubeObject): Record<string, string> {
  return obj.metadata?.labels ?? {};
}

/** Helm install detection: the chart's labels and annotations (DOMAIN.md section 4). */
export function installKindOf(obj: KubeObject): { install: InstallKind; helmRelease?: { name: string; namespace: string } } {
  const labels = labelsOf(obj);
  const ann = obj.metadata?.annotations ?? {};
  const helm = labels['app.kubernetes.io/managed-by'] === 'Helm' || (labels['helm.sh/chart'] ?? '').startsWith('aad-pod-identity') || ann['meta.helm.sh/release-name'] !== undefined;
  if (!helm) return { install: 'raw' };
  const name = ann['meta.helm.sh/release-name'] ?? labels['app.kubernetes.io/instance'];
  const namespace = ann['meta.helm.sh/release-namespace'] ?? obj.metadata?.namespace ?? 'default';
  return { install: 'helm', helmRelease: name ? { name, namespace } : undefined };
}

interface Container {
  name: string;
  image?: string;
  args?: string[];
  [key: string]: unknown;
}

function containersOf(obj: KubeObject): Container[] {
  const spec = obj.spec as { template?: { spec?: { containers?: Container[] } } } | undefined;
  return spec?.template?.spec?.containers ?? [];
}

function componentOf(obj: KubeObject): string | undefined {
  const labels = labelsOf(obj);
  return labels['app.kubernetes.io/component'] ?? labels.component;
}

function toWorkload(obj: KubeObject, kind: 'DaemonSet' | 'Deployment', imageRe: RegExp, component: string): PodIdentityWorkload | undefined {
  const containers = containersOf(obj);
  let index = containers.findIndex((c) => imageRe.test((c.image ?? '').split('@')[0].replace(/:[^/]*$/, '')) && /aad-pod-identity/.test(c.image ?? ''));
  // A mirrored image may drop the `aad-pod-identity` path: accept the component label plus a container of that name.
  if (index < 0 && componentOf(obj) === component) index = containers.findIndex((c) => c.name === component || imageRe.test(c.image ?? ''));
  if (index < 0) return undefined;
  const c = containers[index];
  const image = c.image ?? '';
  const spec = obj.spec as { replicas?: number } | undefined;
  return {
    kind,
    namespace: obj.metadata?.namespace ?? 'default',
    name: obj.metadata?.name ?? '',
    ...installKindOf(obj),
    container: c.name,
    containerIndex: index,
    image,
    version: versionFromImage(image),
    args: [...(c.args ?? [])],
    replicas: kind === 'Deployment' ? (spec?.replicas ?? 1) : undefined,
    object: obj,
  };
}

/** Every DaemonSet that runs an AAD Pod Identity NMI container (normally exactly one), sorted by namespace/name. */
export function findNmiDaemonSets(daemonSets: readonly KubeObject[]): PodIdentityWorkload[] {
  return sortByKey(daemonSets.map((d) => toWorkload(d, 'DaemonSet', NMI_IMAGE, 'nmi')).filter((w): w is PodIdentityWorkload => w !== undefined));
}

/** Every Deployment that runs an AAD Pod Identity MIC container (normally exactly one), sorted by namespace/name. */
export function findMicDeployments(deployments: readonly KubeObject[]): PodIdentityWorkload[] {
  return sortByKey(deployments.map((d) => toWorkload(d, 'Deployment', MIC_IMAGE, 'mic')).filter((w): w is PodIdentityWorkload => w !== undefined));
}

function sortByKey(ws: PodIdentityWorkload[]): PodIdentityWorkload[] {
  return ws.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

/** Reads a workload again from a freshly fetched object (same container name). */
export function refreshWorkload(prev: PodIdentityWorkload, obj: KubeObject): PodIdentityWorkload {
  const re = prev.kind === 'DaemonSet' ? NMI_IMAGE : MIC_IMAGE;
  const again = toWorkload(obj, prev.kind, re, prev.kind === 'DaemonSet' ? 'nmi' : 'mic');
  if (!again) throw new Error(`${prev.kind.toLowerCase()} ${prev.namespace}/${prev.name} no longer runs an AAD Pod Identity ${prev.container} container`);
  return again;
}

/** A Go-style flag in an args list: `--name=value`, `-name=value`, or a bare `--name` (value in the next arg unless boolean). */
interface FlagHit {
  index: number;
  /** Value after `=`, or undefined for a bare flag. */
  value?: string;
}

function findFlag(args: readonly string[], name: string): FlagHit | undefined {
  const re = new RegExp(`^--?${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(=(.*))?$`);
  for (const [index, a] of args.entries()) {
    const m = re.exec(a);
    if (m) return { index, value: m[1] !== undefined ? m[2] : undefined };
  }
  return undefined;
}

/** The value of a flag (`--name=value` or `--name value`), undefined when absent or bare at the end. */
export function flagValue(args: readonly string[], name: string): string | undefined {
  const hit = findFlag(args, name);
  if (!hit) return undefined;
  return hit.value ?? args[hit.index + 1];
}

/** The client ids listed in MIC's `--immutable-user-msis` (comma-separated), in order. */
export function parseImmutableUserMsis(args: readonly string[]): string[] {
  const hit = findFlag(args, 'immutable-user-msis');
  if (!hit) return [];
  const value = hit.value ?? args[hit.index + 1] ?? '';
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

/**
 * MIC args with `clientIds` added to `--immutable-user-msis`: ids already there keep their
 * place (compared case-insensitively), new ones are appended, every other arg is untouched.
 * The flag is rewritten in place, or appended when absent.
 */
export function withImmutableUserMsis(args: readonly string[], clientIds: readonly string[]): string[] {
  const current = parseImmutableUserMsis(args);
  const seen = new Set(current.map((c) => c.toLowerCase()));
  const merged = [...current];
  for (const id of clientIds) {
    if (!seen.has(id.toLowerCase())) {
      seen.add(id.toLowerCase());
      merged.push(id);
    }
  }
  const out = [...args];
  const flag = `--immutable-user-msis=${merged.join(',')}`;
  const hit = findFlag(args, 'immutable-user-msis');
  if (!hit) out.push(flag);
  else if (hit.value !== undefined) out[hit.index] = flag;
  else out.splice(hit.index, 2, flag);
  return out;
}

/**
 * NMI args for managed mode, keeping everything else in place (DOMAIN.md section 2):
 * - `--operation-mode=managed`: an existing `--operation-mode=...` (Helm) is replaced where it
 *   is; otherwise inserted right after `--node=...`, as the upstream managed manifest has it;
 * - `--forceNamespaced` right after it, unless already present (a `=false` value is replaced);
 * - `--host-ip` dropped when the NMI version is v1.6.2 or newer (NMI exits on it), kept before.
 * @throws when the version is not known, since the `--host-ip` rule depends on it.
 */
export function managedNmiArgs(args: readonly string[], version: string | undefined): string[] {
  const v = parseVersion(version);
  if (!v) throw new Error(`cannot tell the NMI version from ${JSON.stringify(version)}; the --host-ip rule depends on it`);
  let out = [...args];
  if (compareVersions(v, HOST_IP_REMOVED_VERSION) >= 0) {
    const hit = findFlag(out, 'host-ip');
    if (hit) out.splice(hit.index, hit.value === undefined ? 2 : 1);
  }
  let modeAt: number;
  const mode = findFlag(out, 'operation-mode');
  if (mode) {
    out.splice(mode.index, mode.value === undefined ? 2 : 1, '--operation-mode=managed');
    modeAt = mode.index;
  } else {
    const node = findFlag(out, 'node');
    modeAt = node ? node.index + (node.value === undefined ? 2 : 1) : out.length;
    out.splice(modeAt, 0, '--operation-mode=managed');
  }
  const force = findFlag(out, 'forceNamespaced');
  if (!force) out.splice(modeAt + 1, 0, '--forceNamespaced');
  else if (force.value !== undefined && force.value.toLowerCase() !== 'true') out[force.index] = '--forceNamespaced';
  out = out.filter((a) => a !== undefined);
  return out;
}

/** True when NMI args already say managed mode with `--forceNamespaced`. */
export function nmiArgsAreManaged(args: readonly string[]): boolean {
  const mode = findFlag(args, 'operation-mode');
  const force = findFlag(args, 'forceNamespaced');
  return mode?.value === 'managed' && force !== undefined && (force.value === undefined || force.value.toLowerCase() === 'true');
}

/** The `helm upgrade` values that keep an in-place managed-mode patch (and keep MIC gone). */
export function helmManagedValues(release: { name: string; namespace: string } | undefined): string {
  const rel = release?.name ?? '<release>';
  const ns = release?.namespace ?? '<namespace>';
  return `helm upgrade ${rel} aad-pod-identity/aad-pod-identity -n ${ns} --reuse-values --set operationMode=managed`;
}

// ---------------------------------------------------------------------------------------------
// Waits and health reads shared by the steps. Each polls through `kube.waitFor` at a short real
// interval, bounded by the step's deadline and signal (the gateway is already scoped to them).

export { POLL_MS, remainingMs };

/** Label selector (`k=v,k2=v2`) of a workload's pods, from `spec.selector.matchLabels`. */
export function podSelectorOf(obj: KubeObject): string {
  const sel = (obj.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector?.matchLabels ?? {};
  const parts = Object.entries(sel).map(([k, v]) => `${k}=${v}`);
  if (!parts.length) throw new Error(`${obj.kind} ${obj.metadata?.namespace}/${obj.metadata?.name} has no spec.selector.matchLabels`);
  return parts.sort().join(',');
}

/** Why a DaemonSet rollout is not complete yet, or undefined when it is (controller saw the generation, every pod updated and available). */
export function daemonSetRolloutGap(ds: KubeObject): string | undefined {
  const st = (ds.status ?? {}) as { observedGeneration?: number; desiredNumberScheduled?: number; updatedNumberScheduled?: number; numberAvailable?: number; numberUnavailable?: number };
  const gen = ds.metadata?.generation ?? 0;
  if ((st.observedGeneration ?? 0) < gen) return `observedGeneration ${st.observedGeneration ?? 0} < generation ${gen}`;
  const want = st.desiredNumberScheduled ?? 0;
  if ((st.updatedNumberScheduled ?? 0) !== want) return `${st.updatedNumberScheduled ?? 0}/${want} pods updated`;
  if ((st.numberAvailable ?? 0) !== want) return `${st.numberAvailable ?? 0}/${want} pods available`;
  return undefined;
}

/** Why a Deployment rollout is not complete yet, or undefined when it is. */
export function deploymentRolloutGap(d: KubeObject): string | undefined {
  const st = (d.status ?? {}) as { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number; replicas?: number };
  const want = (d.spec as { replicas?: number } | undefined)?.replicas ?? 1;
  const gen = d.metadata?.generation ?? 0;
  if ((st.observedGeneration ?? 0) < gen) return `observedGeneration ${st.observedGeneration ?? 0} < generation ${gen}`;
  if ((st.updatedReplicas ?? 0) < want) return `${st.updatedReplicas ?? 0}/${want} replicas updated`;
  if ((st.availableReplicas ?? 0) < want) return `${st.availableReplicas ?? 0}/${want} replicas available`;
  // Old replicas still terminating would still act (MIC would still garbage-collect with old args).
  if ((st.replicas ?? 0) > want) return `${st.replicas} replicas exist, ${want} wanted (old ones still terminating)`;
  return undefined;
}


/** Waits until the DaemonSet's rollout is complete; returns the final object. */
export async function waitForDaemonSetRollout(kube: KubeGateway, namespace: string, name: string, deadline: number, signal?: AbortSignal): Promise<KubeObject> {
  return kube.waitFor(
    async (note) => {
      const ds = await kube.get(KINDS.DaemonSet, namespace, name);
      if (!ds) throw new Error(`daemonset ${namespace}/${name} disappeared during its rollout`);
      const gap = daemonSetRolloutGap(ds);
      if (gap) note(gap);
      return gap ? undefined : ds;
    },
    { describe: `daemonset ${namespace}/${name} rollout`, timeoutMs: remainingMs(deadline), intervalMs: POLL_MS, signal },
  );
}

/** Waits until the Deployment's rollout is complete; returns the final object. */
export async function waitForDeploymentRollout(kube: KubeGateway, namespace: string, name: string, deadline: number, signal?: AbortSignal): Promise<KubeObject> {
  return kube.waitFor(
    async (note) => {
      const d = await kube.get(KINDS.Deployment, namespace, name);
      if (!d) throw new Error(`deployment ${namespace}/${name} disappeared during its rollout`);
      const gap = deploymentRolloutGap(d);
      if (gap) note(gap);
      return gap ? undefined : d;
    },
    { describe: `deployment ${namespace}/${name} rollout`, timeoutMs: remainingMs(deadline), intervalMs: POLL_MS, signal },
  );
}

/** The `/healthz` answer of each pod, read through the API server's pod proxy (a 200 says nothing; the body does). */
export async function healthBodies(kube: KubeGateway, pods: readonly KubeObject[], port: number): Promise<{ pod: string; node?: string; status: number; body: string }[]> {
  const out: { pod: string; node?: string; status: number; body: string }[] = [];
  for (const p of pods) {
    const ns = p.metadata?.namespace ?? 'default';
    const name = p.metadata?.name ?? '';
    const r = await kube.proxyGet(ns, name, port, '/healthz');
    out.push({ pod: `${ns}/${name}`, node: (p.spec as { nodeName?: string } | undefined)?.nodeName, status: r.status, body: r.body.trim() });
  }
  return out;
}

/** A component's health port: `--http-probe-port`, else the upstream default 8080 (MIC; NMI's manifests set 8085). */
export function probePortOf(args: readonly string[]): number {
  return Number(flagValue(args, 'http-probe-port')) || 8080;
}

/** Annotation of client-go's Endpoints resource lock, holding the leader election record (JSON). */
export const MIC_LEADER_ANNOTATION = 'control-plane.alpha.kubernetes.io/leader';

/** MIC's leader-election lock: `--leader-election-namespace` / `--leader-election-name`, upstream defaults `default` / `aad-pod-identity-mic`. */
export function micLeaseLock(args: readonly string[]): { namespace: string; name: string } {
  return { namespace: flagValue(args, 'leader-election-namespace') || 'default', name: flagValue(args, 'leader-election-name') || 'aad-pod-identity-mic' };
}

function containerRunning(pod: KubeObject, container: string): boolean {
  const statuses = ((pod.status ?? {}) as { containerStatuses?: { name: string; state?: { running?: unknown } }[] }).containerStatuses ?? [];
  return statuses.some((c) => c.name === container && c.state?.running !== undefined);
}

/**
 * Hands MIC's leader lease over when the pod holding it no longer runs. MIC installs no SIGTERM
 * handler, so a replaced leader dies holding the lease, and client-go's candidates wait out the
 * full lease (15 s) before taking it: meanwhile no MIC assigns identities, and every pod started
 * in that gap waits for its token. This writes what client-go's `ReleaseOnCancel` writes on a
 * clean exit (empty holder, 1 s lease), so the next candidate takes over at its next retry.
 *
 * Safe against races: the patch tests the exact record it read, so a lease renewed or taken
 * meanwhile is left alone (the patch fails and nothing changes). A holder whose pod still exists
 * with its MIC container running is never released. Returns the released holder, if any.
 */
export async function releaseOrphanedMicLease(kube: KubeGateway, mic: { args: readonly string[]; container: string }, pods: readonly KubeObject[]): Promise<string | undefined> {
  if (kube.dryRunMode !== 'none') return undefined;
  const lock = micLeaseLock(mic.args);
  const ep = await kube.get(KINDS.Endpoints, lock.namespace, lock.name);
  const raw = ep?.metadata?.annotations?.[MIC_LEADER_ANNOTATION];
  if (!raw) return undefined;
  let record: { holderIdentity?: string; leaderTransitions?: number };
  try {
    record = JSON.parse(raw) as typeof record;
  } catch {
    return undefined;
  }
  const holder = record.holderIdentity;
  if (!holder) return undefined;
  const pod = pods.find((p) => p.metadata?.name === holder);
  // A pod that exists and is not terminating may still renew; a terminating one still counts while its container runs.
  if (pod && (!pod.metadata?.deletionTimestamp || containerRunning(pod, mic.container))) return undefined;
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const released = JSON.stringify({ holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaderTransitions: record.leaderTransitions ?? 0 });
  const path = `/metadata/annotations/${MIC_LEADER_ANNOTATION.replace(/~/g, '~0').replace(/\//g, '~1')}`;
  try {
    await kube.patch(KINDS.Endpoints, lock.namespace, lock.name, [{ op: 'test', path, value: raw }, { op: 'replace', path, value: released }], 'json');
    return holder;
  } catch (e) {
    // The record changed under us (renewed or taken over): exactly the case to leave alone.
    const status = (e as { status?: number; statusCode?: number }).status ?? (e as { statusCode?: number }).statusCode;
    if (status === 400 || status === 404 || status === 409 || status === 422) return undefined;
    throw e;
  }
}

/** Running, non-terminating MIC pods of the Deployment and, for the lease, every pod it has. */
async function micPodsOf(kube: KubeGateway, dep: KubeObject): Promise<KubeObject[]> {
  return kube.list(KINDS.Pod, { namespace: dep.metadata?.namespace, labelSelector: podSelectorOf(dep) });
}

/**
 * Waits until MIC's rollout is complete and, when it has replicas, one of its pods leads and
 * answers `Active` on `/healthz`; meanwhile hands over the lease of a leader the rollout replaced
 * (see {@link releaseOrphanedMicLease}). Polls at `intervalMs` (default 100 ms: the hand-over is
 * only as quick as the poll). Returns the leader pod's name (undefined at 0 replicas) and the
 * holders released.
 */
export async function waitForMicLeader(
  kube: KubeGateway,
  mic: { namespace: string; name: string; container: string },
  deadline: number,
  signal?: AbortSignal,
  intervalMs = 100,
): Promise<{ leader?: string; released: string[] }> {
  const released: string[] = [];
  return kube.waitFor(
    async (note) => {
      const dep = await kube.get(KINDS.Deployment, mic.namespace, mic.name);
      if (!dep) throw new Error(`deployment ${mic.namespace}/${mic.name} disappeared during its rollout`);
      const workload = findMicDeployments([dep])[0];
      const args = workload?.args ?? [];
      const container = workload?.container ?? mic.container;
      const pods = await micPodsOf(kube, dep);
      const gone = await releaseOrphanedMicLease(kube, { args, container }, pods);
      if (gone) released.push(gone);
      const gap = deploymentRolloutGap(dep);
      if (gap) {
        note(gap);
        return undefined;
      }
      if (((dep.spec as { replicas?: number } | undefined)?.replicas ?? 1) === 0) return { released };
      const running = pods.filter((p) => !p.metadata?.deletionTimestamp && (p.status as { phase?: string } | undefined)?.phase === 'Running');
      const bodies = await healthBodies(kube, running, probePortOf(args));
      const leader = bodies.find((b) => b.status === 200 && b.body === 'Active');
      note(bodies.map((b) => `${b.pod}: ${b.body || b.status}`).join('; ') || 'no running MIC pods');
      return leader ? { leader: leader.pod, released } : undefined;
    },
    { describe: `deployment ${mic.namespace}/${mic.name} rolled out with a MIC leader reporting Active`, timeoutMs: remainingMs(deadline), intervalMs, signal },
  );
}

// ---------------------------------------------------------------------------------------------
// NMI pods and their health.

/** NMI's health port: `--http-probe-port`, else NMI's default 8080. */
export function nmiProbePort(args: readonly string[]): number {
  for (const [i, a] of args.entries()) {
    const m = /^--?http-probe-port(?:=(.*))?$/.exec(a);
    if (m) return Number(m[1] ?? args[i + 1]) || 8080;
  }
  return 8080;
}

/** Running NMI pods of the DaemonSet (one list call). */
export async function nmiPods(kube: KubeGateway, ds: KubeObject): Promise<KubeObject[]> {
  const pods = await kube.list(KINDS.Pod, { namespace: ds.metadata?.namespace, labelSelector: podSelectorOf(ds) });
  return pods.filter((p) => !p.metadata?.deletionTimestamp && p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet' && o.name === ds.metadata?.name));
}

/** Waits until every NMI pod of the DaemonSet answers `Active` on `/healthz`; returns the bodies seen. */
export async function waitForNmiPodsActive(kube: KubeGateway, ds: KubeObject, port: number, deadline: number, signal?: AbortSignal): Promise<{ pod: string; node?: string; body: string }[]> {
  return kube.waitFor(
    async (note) => {
      const pods = await nmiPods(kube, ds);
      const bodies = await healthBodies(kube, pods, port);
      const bad = bodies.filter((b) => b.status !== 200 || b.body !== 'Active');
      note(bad.length ? `${bad.length}/${bodies.length} NMI pods not Active (${bad.slice(0, 3).map((b) => `${b.pod}: ${b.body || b.status}`).join('; ')})` : 'no NMI pods');
      return bodies.length > 0 && bad.length === 0 ? bodies : undefined;
    },
    { describe: `every NMI pod of ${ds.metadata?.namespace}/${ds.metadata?.name} reporting Active`, timeoutMs: Math.min(remainingMs(deadline), 120_000), intervalMs: POLL_MS, signal },
  );
}

/** Fields the API server fills in when a container or update strategy is written without them. */
const API_DEFAULTS: Record<string, unknown> = {
  terminationMessagePath: '/dev/termination-log',
  terminationMessagePolicy: 'File',
  imagePullPolicy: 'IfNotPresent',
  rollingUpdate: { maxUnavailable: 1, maxSurge: 0 },
};

/**
 * `now` without the API server's defaults that `original` did not spell out, so an original
 * stored before defaulting compares equal to the same spec written back through the API.
 */
export function withoutAddedDefaults(now: unknown, original: unknown): unknown {
  if (!now || typeof now !== 'object' || !original || typeof original !== 'object') return now;
  const out = { ...(now as Record<string, unknown>) };
  for (const [k, v] of Object.entries(API_DEFAULTS)) {
    if (!(k in (original as object)) && JSON.stringify(sortKeys(out[k])) === JSON.stringify(sortKeys(v))) delete out[k];
  }
  return out;
}
