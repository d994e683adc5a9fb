/**
 * Small helpers the sandbox's controllers share: resource type lookup, the hashes the real
 * controllers put in names and labels, int-or-percent arithmetic, pod predicates and the
 * API server's graceful-deletion rules for pods.
 */
import { isoSeconds } from '../clock.ts';
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, OwnerReference, ResourceType } from '../store.ts';
import { StoreError } from '../store.ts';

/** Looks a type up by group and plural resource, or fails loudly: controllers cannot run without it. */
export function requireType(store: ObjectStore, group: string, resource: string): ResourceType {
  const t = store.type(group, resource);
  if (!t) throw new Error(`sandbox controllers: API type ${group ? `${resource}.${group}` : resource} is not registered`);
  return t;
}

/** `namespace/name` (or `name` for cluster-scoped objects), the key every controller queue uses. */
export function objectKey(o: { metadata: { namespace?: string; name?: string } }): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : String(o.metadata.name);
}

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

const SAFE_ALPHANUMS = 'bcdfghjklmnpqrstvwxz2456789';

/** FNV-1a, 32 bit: the hash the controllers use for `pod-template-hash` and `controller-revision-hash`. */
export function fnv32a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** `rand.SafeEncodeString(fmt.Sprint(hash))`: no vowels, so a hash never spells a word. */
export function safeEncode(n: number): string {
  const s = String(n);
  let out = '';
  for (let i = 0; i < s.length; i++) out += SAFE_ALPHANUMS[s.charCodeAt(i) % SAFE_ALPHANUMS.length];
  return out;
}

/** JSON with object keys sorted, so equal templates hash equally whatever their key order. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

/** The hash of a pod template (plus a collision count), encoded as the real controllers do. */
export function templateHash(template: unknown, collisionCount = 0): string {
  return safeEncode(fnv32a(canonicalJson(template) + (collisionCount ? `#${collisionCount}` : '')));
}

/**
 * Resolves an int-or-percent field (`maxSurge: 25%`, `maxUnavailable: 1`) against `total`,
 * rounding up or down as the caller's controller does.
 */
export function scaledValue(v: number | string | undefined, total: number, roundUp: boolean, fallback: number | string): number {
  const x = v === undefined || v === null ? fallback : v;
  if (typeof x === 'number') return x;
  const m = /^(\d+)%$/.exec(String(x));
  if (!m) {
    const n = Number(x);
    if (Number.isFinite(n)) return n;
    throw new Error(`invalid int-or-percent value ${JSON.stringify(x)}`);
  }
  const exact = (Number(m[1]) * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

export function controllerRef(o: Readonly<KObject>): OwnerReference | undefined {
  return o.metadata.ownerReferences?.find((r) => r.controller);
}

/** An owner reference that marks `owner` as the managing controller, as the workload controllers write it. */
export function ownerRefTo(owner: Readonly<KObject>): OwnerReference {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name!, uid: owner.metadata.uid!, controller: true, blockOwnerDeletion: true };
}

export function isTerminal(pod: Readonly<KObject>): boolean {
  const p = pod.status?.phase;
  return p === 'Succeeded' || p === 'Failed';
}

/** Not terminating and not finished: what the workload controllers count as a live replica. */
export function isActive(pod: Readonly<KObject>): boolean {
  return !pod.metadata.deletionTimestamp && !isTerminal(pod);
}

export function podCondition(pod: Readonly<KObject>, type: string): Record<string, any> | undefined {
  return (pod.status?.conditions as Record<string, any>[] | undefined)?.find((c) => c.type === type);
}

export function isPodReady(pod: Readonly<KObject>): boolean {
  return podCondition(pod, 'Ready')?.status === 'True';
}

/**
 * Ready for at least `minReadySeconds` (the controllers' "available"). Returns the time in
 * ms at which a ready pod becomes available when that is still in the future.
 */
export function podAvailability(pod: Readonly<KObject>, minReadySeconds: number, now: number): { available: boolean; at?: number } {
  if (!isPodReady(pod) || pod.metadata.deletionTimestamp) return { available: false };
  if (!minReadySeconds) return { available: true };
  const since = Date.parse(podCondition(pod, 'Ready')?.lastTransitionTime ?? '');
  if (!Number.isFinite(since)) return { available: true };
  const at = since + minReadySeconds * 1000;
  return at <= now ? { available: true } : { available: false, at };
}

/** The grace period the API server applies to `DELETE pod` without an explicit one. */
export function defaultPodGrace(pod: Readonly<KObject>): number {
  // An unscheduled or finished pod has no containers to stop: the API server removes it at once.
  if (!pod.spec?.nodeName || isTerminal(pod)) return 0;
  return pod.spec?.terminationGracePeriodSeconds ?? 30;
}

/** Deletes a pod the way a controller's `DELETE` does; a pod that is already gone is fine. */
export function deletePod(store: ObjectStore, podType: ResourceType, pod: Readonly<KObject>, gracePeriodSeconds?: number): void {
  try {
    store.delete(podType, pod.metadata.namespace, pod.metadata.name!, {
      gracePeriodSeconds: gracePeriodSeconds ?? defaultPodGrace(pod),
      preconditions: { uid: pod.metadata.uid },
    });
  } catch (e) {
    if (e instanceof StoreError && (e.reason === 'NotFound' || e.reason === 'Conflict')) return;
    throw e;
  }
}

/** Swallows NotFound (the object went away meanwhile), rethrows everything else. */
export function ignoreNotFound<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (e) {
    if (e instanceof StoreError && e.reason === 'NotFound') return undefined;
    throw e;
  }
}

/**
 * Sets a condition in a conditions array, keeping `lastTransitionTime` when the status did not
 * change, like every Kubernetes controller does. Returns the new array.
 */
export function setCondition(
  conditions: Record<string, any>[] | undefined,
  next: { type: string; status: string; reason?: string; message?: string },
  clock: Clock,
  opts: { probeTime?: boolean; updateTime?: boolean } = {},
): Record<string, any>[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const now = isoSeconds(clock.now());
  const prev = i >= 0 ? list[i] : undefined;
  const c: Record<string, any> = { type: next.type, status: next.status };
  if (opts.probeTime) c.lastProbeTime = prev?.status === next.status ? (prev?.lastProbeTime ?? now) : now;
  if (opts.updateTime) c.lastUpdateTime = prev && prev.status === next.status && prev.reason === next.reason && prev.message === next.message ? prev.lastUpdateTime : now;
  c.lastTransitionTime = prev && prev.status === next.status ? prev.lastTransitionTime : now;
  if (next.reason) c.reason = next.reason;
  if (next.message) c.message = next.message;
  if (i >= 0) list[i] = c;
  else list.push(c);
  return list;
}

/** Deterministic pseudo-random fraction in [0, 1) from a string, for repeatable latencies. */
export function unitHash(text: string): number {
  return fnv32a(text) / 0x100000000;
}

/**
 * Replaces the `.status` of the stored object `obj` (same uid) with `status`, unless it is
 * already equal. Reads the stored object without copying it, so a controller's status write
 * costs one copy instead of three.
 */
export function writeStatus(store: ObjectStore, t: ResourceType, obj: Readonly<KObject>, status: Record<string, any>): void {
  const cur = store.peek(t, obj.metadata.namespace, obj.metadata.name!);
  if (!cur || cur.metadata.uid !== obj.metadata.uid) return;
  if (JSON.stringify(cur.status ?? {}) === JSON.stringify(status)) return;
  ignoreNotFound(() => store.update(t, { ...(cur as KObject), metadata: { ...cur.metadata, resourceVersion: undefined }, status }, { subresource: 'status' }));
}
