/**
 * The sandbox's object store: the etcd + registry layer of the simulated API server.
 *
 * It owns every Kubernetes object, assigns uid / resourceVersion / creationTimestamp /
 * generation, enforces optimistic concurrency, finalizers and graceful deletion, and
 * publishes watch events. The HTTP layer (`kube-api/`) and the in-process controllers both
 * go through it, so a controller's write is indistinguishable from a client's.
 *
 * Objects held by the store are never mutated in place: every write stores a new object.
 * {@link ObjectStore.scan} therefore hands out the stored objects themselves (read-only, no
 * copy) for hot controller loops, while {@link ObjectStore.get} and {@link ObjectStore.list}
 * return copies that callers may change.
 */
import { randomUUID, randomInt } from 'node:crypto';
import type { Clock } from './clock.ts';
import { isoSeconds } from './clock.ts';
import {
  type FieldRequirement,
  type LabelRequirement,
  matchFields,
  fieldValue,
  matchLabels,
  parseFieldSelector,
  parseLabelSelector,
} from './selectors.ts';

/** A Kubernetes object as JSON. */
export interface KObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: any;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
  [field: string]: any;
}

/** Describes one REST resource, as discovery reports it. */
export interface ResourceType {
  group: string; // '' for the core group
  version: string;
  resource: string; // plural, lower-case
  singular: string;
  kind: string;
  listKind: string;
  namespaced: boolean;
  shortNames?: string[];
  verbs: string[];
  categories?: string[];
  /** Subresources served, e.g. `status`, `scale`, `eviction`, `log`, `proxy`. */
  subresources?: string[];
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: WatchEventType;
  object: KObject; // the stored object; treat as read-only
  resourceType: ResourceType;
  resourceVersion: number;
}

export type StoreErrorReason = 'NotFound' | 'AlreadyExists' | 'Conflict' | 'Invalid' | 'BadRequest' | 'Gone' | 'MethodNotAllowed' | 'InternalError';

const HTTP_CODE: Record<StoreErrorReason, number> = {
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  Invalid: 422,
  BadRequest: 400,
  Gone: 410,
  MethodNotAllowed: 405,
  InternalError: 500,
};

/** An error that the API server turns into a `v1.Status` with the same reason and code. */
export class StoreError extends Error {
  readonly reason: StoreErrorReason;
  readonly code: number;
  readonly details?: { name?: string; group?: string; kind?: string; causes?: { reason?: string; message: string; field?: string }[] };

  constructor(reason: StoreErrorReason, message: string, details?: StoreError['details']) {
    super(message);
    this.name = 'StoreError';
    this.reason = reason;
    this.code = HTTP_CODE[reason];
    this.details = details;
  }
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string | LabelRequirement[];
  fieldSelector?: string | FieldRequirement[];
}

export interface WriteOptions {
  /** `dryRun=All`: validate and return the result without persisting or notifying. */
  dryRun?: boolean;
}

export interface CreateOptions extends WriteOptions {
  /**
   * Called with the new object after the store assigned name, uid, creationTimestamp and
   * generation and before it is persisted (or returned for a dry run): the API layer's
   * defaulting and validation, which may need the uid. Throwing aborts the create.
   */
  prepare?: (obj: KObject) => void;
}

export interface DeleteOptions extends WriteOptions {
  /** Seconds of graceful deletion; > 0 marks the object terminating instead of removing it. */
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
  /**
   * Finalizers added in the same write that marks the object for deletion (the API server's
   * `propagationPolicy`: `foregroundDeletion` or `orphan`, carried out by the garbage collector).
   */
  addFinalizers?: string[];
}

/** `<resource>.<group>` as used in API server messages (`deployments.apps "x" not found`). */
export function qualifiedResource(t: ResourceType): string {
  return t.group ? `${t.resource}.${t.group}` : t.resource;
}

export function apiVersionOf(t: Pick<ResourceType, 'group' | 'version'>): string {
  return t.group ? `${t.group}/${t.version}` : t.version;
}

function keyOf(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

const GENERATE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** The 5-character random suffix the API server appends to `generateName`. */
export function randomSuffix(n = 5): string {
  let s = '';
  for (let i = 0; i < n; i++) s += GENERATE_ALPHABET[randomInt(GENERATE_ALPHABET.length)];
  return s;
}

const NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

type Listener = (ev: WatchEvent) => void;

interface Bucket {
  type: ResourceType;
  objects: Map<string, KObject>;
  /** Keys in scan order; rebuilt lazily after a key is added or removed (not on updates). */
  sorted?: string[];
  /** Equality indexes built on first use: label key (or `field:<path>`) -> value -> object keys. */
  indexes: Map<string, Map<string, Set<string>>>;
}

function indexValue(o: KObject, index: string): string | undefined {
  if (index.startsWith('field:')) {
    const v = fieldValue(o, index.slice(6));
    return v;
  }
  return o.metadata.labels?.[index];
}

export class ObjectStore {
  private rv = 1000;
  private readonly buckets = new Map<string, Bucket>(); // key: group/resource
  private readonly byKind = new Map<string, ResourceType>(); // key: apiVersion|kind
  private readonly listeners = new Set<Listener>();
  private readonly history: WatchEvent[] = [];
  private readonly historyLimit: number;
  private readonly clock: Clock;

  /** Mutating admission plugins (see {@link ObjectStore.addAdmission}). */
  private readonly admissions: ((t: ResourceType, obj: KObject) => void)[] = [];

  /**
   * Adds a mutating admission plugin: called on every create (API server and in-process
   * controllers alike, as the real API server calls webhooks for both), after the name and uid
   * are set and before defaulting and validation. Throwing refuses the create. Returns a remover.
   */
  addAdmission(admit: (t: ResourceType, obj: KObject) => void): () => void {
    this.admissions.push(admit);
    return () => {
      const i = this.admissions.indexOf(admit);
      if (i >= 0) this.admissions.splice(i, 1);
    };
  }

  constructor(clock: Clock, opts: { historyLimit?: number } = {}) {
    this.clock = clock;
    this.historyLimit = opts.historyLimit ?? 20_000;
  }

  // ---- types ---------------------------------------------------------------------------

  registerType(t: ResourceType): void {
    const k = `${t.group}/${t.resource}`;
    if (!this.buckets.has(k)) this.buckets.set(k, { type: t, objects: new Map(), indexes: new Map() });
    else this.buckets.get(k)!.type = t;
    this.byKind.set(`${apiVersionOf(t)}|${t.kind}`, t);
  }

  unregisterType(group: string, resource: string): void {
    const b = this.buckets.get(`${group}/${resource}`);
    if (!b) return;
    for (const obj of [...b.objects.values()]) this.removeNow(b, obj);
    this.buckets.delete(`${group}/${resource}`);
    this.byKind.delete(`${apiVersionOf(b.type)}|${b.type.kind}`);
  }

  types(): ResourceType[] {
    return [...this.buckets.values()].map((b) => b.type);
  }

  /** Finds a type by group and plural resource (version is informational in the sandbox). */
  type(group: string, resource: string): ResourceType | undefined {
    return this.buckets.get(`${group}/${resource}`)?.type;
  }

  typeOrThrow(group: string, resource: string): ResourceType {
    const t = this.type(group, resource);
    if (!t) throw new StoreError('NotFound', `the server could not find the requested resource (${group ? `${resource}.${group}` : resource})`);
    return t;
  }

  typeForKind(apiVersion: string, kind: string): ResourceType | undefined {
    return this.byKind.get(`${apiVersion}|${kind}`);
  }

  // ---- reads ---------------------------------------------------------------------------

  /** A copy of the object, or undefined. */
  get(t: ResourceType, namespace: string | undefined, name: string): KObject | undefined {
    const o = this.bucket(t).objects.get(keyOf(t.namespaced ? namespace : undefined, name));
    return o ? structuredClone(o) : undefined;
  }

  getOrThrow(t: ResourceType, namespace: string | undefined, name: string): KObject {
    const o = this.get(t, namespace, name);
    if (!o) throw this.notFound(t, name);
    return o;
  }

  /** The stored object itself (read-only), or undefined. */
  peek(t: ResourceType, namespace: string | undefined, name: string): Readonly<KObject> | undefined {
    return this.bucket(t).objects.get(keyOf(t.namespaced ? namespace : undefined, name));
  }

  /**
   * Iterates matching stored objects without copying them, in key order (namespace/name).
   * Callers must not mutate what they receive.
   */
  *scan(t: ResourceType, opts: ListOptions = {}): Generator<Readonly<KObject>> {
    const labels = typeof opts.labelSelector === 'string' ? parseLabelSelector(opts.labelSelector) : (opts.labelSelector ?? []);
    const fields = typeof opts.fieldSelector === 'string' ? parseFieldSelector(opts.fieldSelector) : (opts.fieldSelector ?? []);
    const b = this.bucket(t);
    // Equality requirements are answered from an index, so "pods on node X" or "objects
    // labelled nodename=X" cost what they return, not the size of the bucket.
    let keys: string[] | undefined;
    const consider = (index: string, value: string) => {
      const set = this.index(b, index).get(value);
      if (!keys || (set?.size ?? 0) < keys.length) keys = set ? [...set] : [];
    };
    if (t.namespaced && opts.namespace) consider('field:metadata.namespace', opts.namespace);
    for (const r of labels) if (r.op === 'eq') consider(r.key, r.value);
    for (const r of fields) if (r.op === 'eq' && r.value !== '') consider(`field:${r.path}`, r.value);
    if (keys) keys.sort();
    else keys = b.sorted ??= [...b.objects.keys()].sort();
    for (const k of keys) {
      const o = b.objects.get(k);
      if (!o) continue;
      if (t.namespaced && opts.namespace && o.metadata.namespace !== opts.namespace) continue;
      if (labels.length && !matchLabels(labels, o.metadata.labels)) continue;
      if (fields.length && !matchFields(fields, o)) continue;
      yield o;
    }
  }

  /** The equality index `index` of a bucket, built on first use and kept up to date by writes. */
  private index(b: Bucket, index: string): Map<string, Set<string>> {
    let idx = b.indexes.get(index);
    if (!idx) {
      idx = new Map();
      for (const [k, o] of b.objects) {
        const v = indexValue(o, index);
        if (v === undefined) continue;
        let set = idx.get(v);
        if (!set) idx.set(v, (set = new Set()));
        set.add(k);
      }
      b.indexes.set(index, idx);
    }
    return idx;
  }

  /** Stores `obj` under `key`, keeping the sort cache and indexes right. */
  private put(b: Bucket, key: string, obj: KObject): void {
    const old = b.objects.get(key);
    if (!old) b.sorted = undefined;
    b.objects.set(key, obj);
    for (const [index, idx] of b.indexes) {
      const before = old ? indexValue(old, index) : undefined;
      const after = indexValue(obj, index);
      if (before === after) continue;
      if (before !== undefined) idx.get(before)?.delete(key);
      if (after !== undefined) {
        let set = idx.get(after);
        if (!set) idx.set(after, (set = new Set()));
        set.add(key);
      }
    }
  }

  private drop(b: Bucket, key: string): void {
    const old = b.objects.get(key);
    if (!old) return;
    b.objects.delete(key);
    b.sorted = undefined;
    for (const [index, idx] of b.indexes) {
      const v = indexValue(old, index);
      if (v !== undefined) idx.get(v)?.delete(key);
    }
  }

  /** Copies of every matching object plus the store's current resourceVersion. */
  list(t: ResourceType, opts: ListOptions = {}): { items: KObject[]; resourceVersion: string } {
    const items: KObject[] = [];
    for (const o of this.scan(t, opts)) items.push(structuredClone(o));
    return { items, resourceVersion: String(this.rv) };
  }

  count(t: ResourceType): number {
    return this.bucket(t).objects.size;
  }

  currentResourceVersion(): number {
    return this.rv;
  }

  // ---- writes --------------------------------------------------------------------------

  create(t: ResourceType, input: KObject, opts: CreateOptions = {}): KObject {
    const obj = structuredClone(input);
    obj.apiVersion = apiVersionOf(t);
    obj.kind = t.kind;
    obj.metadata = obj.metadata ?? {};
    const md = obj.metadata;
    if (!md.name && md.generateName) md.name = md.generateName + randomSuffix();
    if (!md.name) throw this.invalid(t, '', [{ field: 'metadata.name', message: 'Required value: name or generateName is required' }]);
    if (t.namespaced) {
      md.namespace = md.namespace || 'default';
      const nsType = this.type('', 'namespaces');
      if (nsType && t.resource !== 'namespaces' && !this.peek(nsType, undefined, md.namespace)) {
        throw new StoreError('NotFound', `namespaces "${md.namespace}" not found`, { name: md.namespace, kind: 'namespaces' });
      }
    } else delete md.namespace;
    if (!NAME_RE.test(md.name) && !(t.resource === 'nodes' || t.group !== '')) {
      throw this.invalid(t, md.name, [{ field: 'metadata.name', message: `Invalid value: "${md.name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'` }]);
    }
    const b = this.bucket(t);
    const key = keyOf(md.namespace, md.name);
    if (b.objects.has(key)) {
      throw new StoreError('AlreadyExists', `${qualifiedResource(t)} "${md.name}" already exists`, { name: md.name, group: t.group, kind: t.resource });
    }
    md.uid = randomUUID();
    md.creationTimestamp = isoSeconds(this.clock.now());
    md.generation = 1;
    delete md.deletionTimestamp;
    delete md.deletionGracePeriodSeconds;
    for (const admit of this.admissions) admit(t, obj);
    opts.prepare?.(obj);
    if (opts.dryRun) {
      md.resourceVersion = undefined;
      delete md.resourceVersion;
      return obj;
    }
    md.resourceVersion = String(++this.rv);
    this.put(b, key, obj);
    this.emit('ADDED', t, obj);
    if (t.group === 'apiextensions.k8s.io' && t.resource === 'customresourcedefinitions') this.syncCrd(obj, true);
    return structuredClone(obj);
  }

  /**
   * Replaces an object. A stale `metadata.resourceVersion` fails with 409 Conflict; an empty
   * one means "unconditional". With `subresource: 'status'` only `.status` is taken from the
   * input; otherwise `.status` is kept from the stored object unless the type has no status
   * subresource.
   */
  update(t: ResourceType, input: KObject, opts: WriteOptions & { subresource?: 'status' } = {}): KObject {
    const name = input.metadata?.name;
    if (!name) throw this.invalid(t, '', [{ field: 'metadata.name', message: 'Required value' }]);
    const b = this.bucket(t);
    const ns = t.namespaced ? input.metadata.namespace || 'default' : undefined;
    const key = keyOf(ns, name);
    const cur = b.objects.get(key);
    if (!cur) throw this.notFound(t, name);
    const wantRv = input.metadata.resourceVersion;
    if (wantRv && wantRv !== cur.metadata.resourceVersion) throw this.conflict(t, name);
    if (input.metadata.uid && input.metadata.uid !== cur.metadata.uid) {
      throw this.conflict(t, name, `Precondition failed: UID in precondition: ${input.metadata.uid}, UID in object meta: ${cur.metadata.uid}`);
    }
    let next: KObject;
    if (opts.subresource === 'status') {
      next = { ...structuredClone(cur), status: structuredClone(input.status) };
    } else {
      next = structuredClone(input);
      next.apiVersion = apiVersionOf(t);
      next.kind = t.kind;
      const hasStatusSub = t.subresources?.includes('status');
      if (hasStatusSub && cur.status !== undefined) next.status = structuredClone(cur.status);
      // Server-owned metadata cannot be changed by a client.
      next.metadata.uid = cur.metadata.uid;
      next.metadata.creationTimestamp = cur.metadata.creationTimestamp;
      next.metadata.namespace = cur.metadata.namespace;
      if (cur.metadata.deletionTimestamp) {
        next.metadata.deletionTimestamp = cur.metadata.deletionTimestamp;
        next.metadata.deletionGracePeriodSeconds = cur.metadata.deletionGracePeriodSeconds;
      } else {
        delete next.metadata.deletionTimestamp;
        delete next.metadata.deletionGracePeriodSeconds;
      }
      next.metadata.generation = cur.metadata.generation ?? 1;
      if (specChanged(cur, next)) next.metadata.generation = (cur.metadata.generation ?? 1) + 1;
    }
    if (!next.metadata.finalizers || next.metadata.finalizers.length === 0) delete next.metadata.finalizers;
    if (opts.dryRun) {
      next.metadata.resourceVersion = cur.metadata.resourceVersion;
      return next;
    }
    // A terminating object whose last finalizer was just removed goes away now.
    if (next.metadata.deletionTimestamp && !next.metadata.finalizers?.length && !isGraceful(next)) {
      this.removeNow(b, next);
      return structuredClone(next);
    }
    if (JSON.stringify(cur) === JSON.stringify({ ...next, metadata: { ...next.metadata, resourceVersion: cur.metadata.resourceVersion } })) {
      // A no-op write does not bump resourceVersion or notify watchers, like the real server.
      return structuredClone(cur);
    }
    next.metadata.resourceVersion = String(++this.rv);
    this.put(b, key, next);
    this.emit('MODIFIED', t, next);
    return structuredClone(next);
  }

  /**
   * Reads the current object, applies `mutate` to a copy, and writes it back; retries on
   * conflicts with concurrent writers. Returns undefined when the object does not exist.
   */
  mutate(t: ResourceType, namespace: string | undefined, name: string, mutate: (o: KObject) => void | false, opts: WriteOptions & { subresource?: 'status' } = {}): KObject | undefined {
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = this.get(t, namespace, name);
      if (!cur) return undefined;
      if (mutate(cur) === false) return cur;
      try {
        return this.update(t, cur, opts);
      } catch (e) {
        if (e instanceof StoreError && e.reason === 'Conflict') continue;
        throw e;
      }
    }
    throw this.conflict(t, name);
  }

  /**
   * Deletes an object. Objects with finalizers, or deleted with a grace period, are marked
   * with `deletionTimestamp` and stay until their finalizers are cleared (and, for graceful
   * deletion, until {@link ObjectStore.finalizeGraceful} removes them). Returns the object
   * as it stands after the call.
   */
  delete(t: ResourceType, namespace: string | undefined, name: string, opts: DeleteOptions = {}): { object: KObject; removed: boolean } {
    const b = this.bucket(t);
    const key = keyOf(t.namespaced ? namespace || 'default' : undefined, name);
    const cur = b.objects.get(key);
    if (!cur) throw this.notFound(t, name);
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== cur.metadata.uid) {
      throw this.conflict(t, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${cur.metadata.uid}`);
    }
    if (pre?.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion) {
      throw this.conflict(t, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${cur.metadata.resourceVersion}`);
    }
    const grace = opts.gracePeriodSeconds ?? 0;
    const extraFinalizers = (opts.addFinalizers ?? []).filter((f) => !(cur.metadata.finalizers ?? []).includes(f));
    const hasFinalizers = (cur.metadata.finalizers?.length ?? 0) > 0 || extraFinalizers.length > 0;
    if (!hasFinalizers && grace <= 0) {
      if (!opts.dryRun) this.removeNow(b, cur);
      return { object: structuredClone(cur), removed: true };
    }
    const next = structuredClone(cur);
    if (extraFinalizers.length) next.metadata.finalizers = [...(next.metadata.finalizers ?? []), ...extraFinalizers];
    if (!next.metadata.deletionTimestamp) {
      next.metadata.deletionTimestamp = isoSeconds(this.clock.now() + grace * 1000);
      next.metadata.deletionGracePeriodSeconds = grace;
    } else if (grace < (next.metadata.deletionGracePeriodSeconds ?? 0)) {
      // A shorter grace period on a second delete shortens the wait, as with --grace-period=0.
      next.metadata.deletionGracePeriodSeconds = grace;
    }
    if (opts.dryRun) return { object: next, removed: false };
    next.metadata.resourceVersion = String(++this.rv);
    this.put(b, key, next);
    this.emit('MODIFIED', t, next);
    return { object: structuredClone(next), removed: false };
  }

  /**
   * Completes a graceful deletion (what the kubelet does once a pod's containers stopped):
   * removes the object unless finalizers still hold it.
   */
  finalizeGraceful(t: ResourceType, namespace: string | undefined, name: string): boolean {
    const b = this.bucket(t);
    const key = keyOf(t.namespaced ? namespace : undefined, name);
    const cur = b.objects.get(key);
    if (!cur || !cur.metadata.deletionTimestamp) return false;
    if (cur.metadata.finalizers?.length) {
      const next = structuredClone(cur);
      next.metadata.deletionGracePeriodSeconds = 0;
      next.metadata.resourceVersion = String(++this.rv);
      this.put(b, key, next);
      this.emit('MODIFIED', t, next);
      return false;
    }
    this.removeNow(b, cur);
    return true;
  }

  // ---- watch ---------------------------------------------------------------------------

  /** Subscribes to every change in the store. Returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Events after `resourceVersion` still in the history window, oldest first; throws
   * 410 Gone when the window no longer reaches back that far.
   */
  eventsSince(resourceVersion: number): WatchEvent[] {
    if (resourceVersion >= this.rv) return [];
    const first = this.history[0];
    if (!first || first.resourceVersion > resourceVersion + 1) {
      if (this.history.length >= this.historyLimit || (first && first.resourceVersion > resourceVersion + 1)) {
        throw new StoreError('Gone', `too old resource version: ${resourceVersion} (${first?.resourceVersion ?? this.rv})`);
      }
    }
    return this.history.filter((e) => e.resourceVersion > resourceVersion);
  }

  // ---- internals -----------------------------------------------------------------------

  private bucket(t: ResourceType): Bucket {
    const b = this.buckets.get(`${t.group}/${t.resource}`);
    if (!b) throw new StoreError('NotFound', `the server could not find the requested resource (${qualifiedResource(t)})`);
    return b;
  }

  private removeNow(b: Bucket, obj: KObject): void {
    const key = keyOf(obj.metadata.namespace, obj.metadata.name!);
    if (!b.objects.has(key)) return;
    this.drop(b, key);
    const gone = structuredClone(obj);
    gone.metadata.resourceVersion = String(++this.rv);
    this.emit('DELETED', b.type, gone);
    if (b.type.group === 'apiextensions.k8s.io' && b.type.resource === 'customresourcedefinitions') this.syncCrd(obj, false);
    if (b.type.group === '' && b.type.resource === 'namespaces') this.purgeNamespace(obj.metadata.name!);
  }

  private purgeNamespace(ns: string): void {
    for (const b of this.buckets.values()) {
      if (!b.type.namespaced) continue;
      for (const o of [...b.objects.values()]) if (o.metadata.namespace === ns) this.removeNow(b, o);
    }
  }

  private emit(type: WatchEventType, t: ResourceType, object: KObject): void {
    const ev: WatchEvent = { type, object, resourceType: t, resourceVersion: Number(object.metadata.resourceVersion) };
    this.history.push(ev);
    // Trim in batches: dropping one element off the front of a 20,000-entry array on every
    // write made each write O(history).
    if (this.history.length > this.historyLimit * 1.1) this.history.splice(0, this.history.length - this.historyLimit);
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch {
        // A misbehaving listener must not break the write that triggered it.
      }
    }
  }

  /** Registers (or removes) the REST type that a CustomResourceDefinition declares. */
  private syncCrd(crd: KObject, present: boolean): void {
    const spec = crd.spec ?? {};
    const names = spec.names ?? {};
    if (!present) {
      this.unregisterType(spec.group, names.plural);
      return;
    }
    const served = (spec.versions ?? []).filter((v: any) => v.served !== false);
    const storage = served.find((v: any) => v.storage) ?? served[0];
    if (!storage) return;
    const subs: string[] = [];
    if (storage.subresources?.status) subs.push('status');
    if (storage.subresources?.scale) subs.push('scale');
    this.registerType({
      group: spec.group,
      version: storage.name,
      resource: names.plural,
      singular: names.singular ?? names.kind?.toLowerCase(),
      kind: names.kind,
      listKind: names.listKind ?? `${names.kind}List`,
      namespaced: spec.scope !== 'Cluster',
      shortNames: names.shortNames,
      categories: names.categories,
      verbs: ['delete', 'deletecollection', 'get', 'list', 'patch', 'create', 'update', 'watch'],
      subresources: subs,
    });
  }

  private notFound(t: ResourceType, name: string): StoreError {
    return new StoreError('NotFound', `${qualifiedResource(t)} "${name}" not found`, { name, group: t.group, kind: t.resource });
  }

  private conflict(t: ResourceType, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again'): StoreError {
    return new StoreError('Conflict', `Operation cannot be fulfilled on ${qualifiedResource(t)} "${name}": ${why}`, { name, group: t.group, kind: t.resource });
  }

  /** A 422 Invalid error in the API server's wording: `Kind "name" is invalid: field: message`. */
  invalid(t: ResourceType, name: string, causes: { field: string; message: string }[]): StoreError {
    const text = causes.map((c) => `${c.field}: ${c.message}`).join(', ');
    return new StoreError('Invalid', `${t.kind} "${name}" is invalid: ${text}`, {
      name,
      group: t.group,
      kind: t.kind,
      causes: causes.map((c) => ({ reason: 'FieldValueInvalid', message: c.message, field: c.field })),
    });
  }
}

function isGraceful(o: KObject): boolean {
  return (o.metadata.deletionGracePeriodSeconds ?? 0) > 0;
}

function specChanged(a: KObject, b: KObject): boolean {
  const strip = (o: KObject) => {
    const { metadata: _m, status: _s, ...rest } = o;
    return JSON.stringify(rest);
  };
  return strip(a) !== strip(b);
}
