/**
 * One read snapshot per command: the steps' plans (and the checks after an apply) share what was
 * read from the cluster and from Azure instead of each listing everything again.
 *
 * {@link ReadSnapshot} is the cache both gateway decorators share: {@link snapshotKubeGateway}
 * here and `snapshotAzureGateway` in `src/azure/read-snapshot.ts`, so a write through either
 * invalidates what it may have changed in both (a reimage replaces Kubernetes nodes and pods).
 *
 * Reads are served from the snapshot only inside {@link ReadSnapshot.run} with mode `shared`
 * (the runner does that for `plan` and `check`); everywhere else, inside `waitFor` probes
 * included, they go to the server, and a live read drops what the snapshot holds of that kind
 * (whoever reads live expects it to change: an apply acting on it, a wait for a rollout), so a
 * check re-reads it even when this command wrote nothing, e.g. a resumed apply that only waits
 * for the rollout an earlier run started. Every write, in any mode, drops what it may have changed:
 * its own kind and the kinds controllers derive from it ({@link kindsChangedBy}), before it is
 * sent and again once it returned. Entries also expire after `maxAgeMs`, which bounds how old a
 * shared read can be when something other than this tool changes the cluster.
 *
 * SDK-free: it decorates the gateway interfaces only.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { AccessReviewRequest, AccessReviewResult, ReplaceOptions, WriteOptions, CallCounts, ClusterIdentity, DeleteOptions, DeleteResult, DryRunEntry, DryRunMode, EvictionResult, KubeGateway, KubeObject, ListOptions, PatchType, ProxyResponse, ResourceRef, WaitOptions, WaitProbe } from './gateway.ts';
import { KubeApiError } from './errors.ts';
import { parseFieldSelector, parseLabelSelector } from './selectors.ts';

/** `shared`: reads come from the snapshot (filled on first use); `live`: every read goes to the server. */
export type ReadMode = 'shared' | 'live';

/** Options of {@link ReadSnapshot}. */
export interface ReadSnapshotOptions {
  /** Entries older than this are read again (default 60 s). */
  maxAgeMs?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

/** What the snapshot did, for reports and tests. */
export interface ReadSnapshotStats {
  /** Reads answered from the snapshot. */
  hits: number;
  /** Reads that filled the snapshot (one request or one paged list each). */
  fills: number;
  /** Entries dropped because a write may have changed them. */
  invalidated: number;
}

interface Entry {
  at: number;
  tags: readonly string[];
  value: Promise<unknown>;
}

/** Cache tags: what an entry depends on. A write invalidates every entry carrying one of its tags. */
export const kubeKindTag = (kind: string): string => `kube:${kind}`;
/** Tag of every `raw` read (any Kubernetes write may change what a raw path shows). */
export /** Access reviews: invalidated only by writes of RBAC objects (see kubeWriteTags). */
const KUBE_ACCESS_TAG = 'kube:access';
const KUBE_RAW_TAG = 'kube:raw';

/**
 * The cache shared by the decorated gateways of one command. Holds promises, so concurrent
 * callers of the same read share one request; a failed read is not kept.
 */
export class ReadSnapshot {
  readonly #mode = new AsyncLocalStorage<ReadMode>();
  readonly #entries = new Map<string, Entry>();
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  readonly #stats: ReadSnapshotStats = { hits: 0, fills: 0, invalidated: 0 };

  constructor(options: ReadSnapshotOptions = {}) {
    this.#maxAgeMs = options.maxAgeMs ?? 60_000;
    this.#now = options.now ?? Date.now;
  }

  /** Runs `fn` with reads in `mode` (async calls made from it inherit the mode). */
  run<T>(mode: ReadMode, fn: () => Promise<T>): Promise<T> {
    return this.#mode.run(mode, fn);
  }

  /**
   * Runs one step call with the read mode its phase gets: `plan` and `check` share the snapshot
   * (plans read the same state; a check re-reads only what the apply's writes dropped), `apply`
   * and `rollback` read live (they act on what they read).
   */
  during<T>(phase: string, fn: () => Promise<T>): Promise<T> {
    return this.run(phase === 'plan' || phase === 'check' ? 'shared' : 'live', fn);
  }

  /** The mode of the calling async context; `live` outside any {@link run}. */
  get mode(): ReadMode {
    return this.#mode.getStore() ?? 'live';
  }

  stats(): ReadSnapshotStats {
    return { ...this.#stats };
  }

  /** The cached value of `key` if present and fresh, without loading it. Only in `shared` mode. */
  peek<T>(key: string): Promise<T> | undefined {
    if (this.mode !== 'shared') return undefined;
    const entry = this.#fresh(key);
    if (!entry) return undefined;
    this.#stats.hits++;
    return entry.value as Promise<T>;
  }

  /**
   * `load()`'s result for `key`: from the snapshot in `shared` mode (loading it once), straight
   * from `load` in `live` mode. The value is shared between callers: never mutate it.
   */
  read<T>(key: string, tags: readonly string[], load: () => Promise<T>): Promise<T> {
    if (this.mode !== 'shared') {
      // A live read means the caller expects this to change (an apply acting on it, a wait): what
      // the snapshot holds of it may be stale now, so the next shared read (the check) reads again.
      this.invalidate(tags);
      return load();
    }
    const cached = this.#fresh(key);
    if (cached) {
      this.#stats.hits++;
      return cached.value as Promise<T>;
    }
    this.#stats.fills++;
    const value = load();
    const entry: Entry = { at: this.#now(), tags, value };
    this.#entries.set(key, entry);
    value.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    });
    return value;
  }

  /** Drops every entry that carries one of `tags`. */
  invalidate(tags: Iterable<string>): void {
    const drop = new Set(tags);
    for (const [key, entry] of this.#entries) {
      if (entry.tags.some((t) => drop.has(t))) {
        this.#entries.delete(key);
        this.#stats.invalidated++;
      }
    }
  }

  /** Drops everything. */
  clear(): void {
    this.#stats.invalidated += this.#entries.size;
    this.#entries.clear();
  }

  /** Keys currently held (tests, debugging). */
  keys(): string[] {
    return [...this.#entries.keys()].sort();
  }

  #fresh(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (this.#now() - entry.at > this.#maxAgeMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }
}

/** Kinds whose objects change, directly or through controllers, when a pod changes. */
const POD_DERIVED = ['Pod', 'Endpoints', 'EndpointSlice', 'PodDisruptionBudget', 'AzureAssignedIdentity', 'ReplicaSet', 'Deployment', 'DaemonSet', 'StatefulSet', 'Job'];

/**
 * What a Kubernetes write to `kind` may change: the kind itself and what controllers derive
 * from it (a Deployment's ReplicaSets and pods, MIC's AzureAssignedIdentities for bindings,
 * the owners' status for a pod). `*` means everything (namespaces, CRDs).
 */
export function kindsChangedBy(kind: string): string[] | '*' {
  switch (kind) {
    case 'Namespace':
    case 'CustomResourceDefinition':
      return '*';
    case 'Pod':
    case 'Eviction':
      return POD_DERIVED;
    case 'Node':
      return ['Node', ...POD_DERIVED];
    case 'ReplicaSet':
    case 'DaemonSet':
    case 'StatefulSet':
    case 'Job':
      return [kind, 'ControllerRevision', ...POD_DERIVED];
    case 'Deployment':
      // MIC's leader election lives in an Endpoints object (in POD_DERIVED) or a Lease.
      return ['Deployment', 'Lease', ...POD_DERIVED];
    case 'CronJob':
      return ['CronJob', ...POD_DERIVED];
    case 'AzureIdentity':
    case 'AzureIdentityBinding':
      return [kind, 'AzureAssignedIdentity'];
    default:
      return [kind];
  }
}

/**
 * Tags a Kubernetes write to `kind` invalidates. Pod and node changes also reach Azure: with MIC
 * running, a pod scheduled with a binding gets its identity added to the scale set.
 */
export function kubeWriteTags(kind: string): string[] | '*' {
  const kinds = kindsChangedBy(kind);
  if (kinds === '*') return '*';
  const tags = [...kinds.map(kubeKindTag), KUBE_RAW_TAG];
  if (kinds.includes('AzureAssignedIdentity')) tags.push(ARM_SCALE_SETS_TAG);
  if (/^(Cluster)?Role(Binding)?$/.test(kind)) tags.push(KUBE_ACCESS_TAG);
  return tags;
}

/** Tag of every ARM scale set, scale set list and instance list entry. */
export const ARM_SCALE_SETS_TAG = 'arm:scale-sets';

/** Runs a write with invalidation before it is sent (a read racing it must not be kept) and after it returned or failed (it may have landed). */
export async function invalidating<T>(snapshot: ReadSnapshot, tags: string[] | '*', write: () => Promise<T>): Promise<T> {
  const drop = () => (tags === '*' ? snapshot.clear() : snapshot.invalidate(tags));
  drop();
  try {
    return await write();
  } finally {
    drop();
  }
}

/**
 * Decorates a Kubernetes gateway with the snapshot: in `shared` mode each kind is listed once
 * (all namespaces, every page) and filtered lists, and gets of objects of a listed kind, are
 * answered from that list; other gets and `raw` reads are kept per object / path. Callers
 * always receive copies. Writes invalidate ({@link kubeWriteTags}); logs, proxy GETs and
 * `waitFor` probes always go to the server. `scoped()` views share the snapshot.
 */
export function snapshotKubeGateway(inner: KubeGateway, snapshot: ReadSnapshot): KubeGateway {
  return new SnapshotKubeGateway(inner, snapshot);
}

class SnapshotKubeGateway implements KubeGateway {
  readonly #inner: KubeGateway;
  readonly #snapshot: ReadSnapshot;

  constructor(inner: KubeGateway, snapshot: ReadSnapshot) {
    this.#inner = inner;
    this.#snapshot = snapshot;
  }

  get dryRunMode(): DryRunMode {
    return this.#inner.dryRunMode;
  }

  /** Writes that dry-run keeps from persisting change nothing to invalidate. */
  #writeTags(kind: string): string[] | '*' {
    return this.#inner.dryRunMode === 'none' ? kubeWriteTags(kind) : [];
  }

  async clusterIdentity(): Promise<ClusterIdentity> {
    const id = await this.#snapshot.read('kube:cluster-identity', [kubeKindTag('Namespace')], () => this.#inner.clusterIdentity());
    return { ...id };
  }

  async list<T extends KubeObject = KubeObject>(ref: ResourceRef, opts: ListOptions = {}): Promise<T[]> {
    if (this.#snapshot.mode !== 'shared') {
      this.#snapshot.invalidate([kubeKindTag(ref.kind)]);
      return this.#inner.list<T>(ref, opts);
    }
    const labels = parseLabelSelector(opts.labelSelector);
    const fields = parseFieldSelector(opts.fieldSelector);
    const tags = [kubeKindTag(ref.kind)];
    const exact = () => this.#snapshot.read(`kube:list:${refKey(ref)}:${JSON.stringify([opts.namespace, opts.labelSelector, opts.fieldSelector])}`, tags, () => this.#inner.list<T>(ref, opts));
    if (!labels || !fields) return copies(await exact());
    let kept: CompactList;
    // The caller whose read fills the snapshot gets the objects the server sent (no copy: nobody
    // else holds them); later callers parse the kept text. So a fill costs the compressed text on
    // top of what an unshared list costs, not a second set of objects.
    let fresh: T[] | undefined;
    try {
      kept = await this.#snapshot.read(`kube:list:${refKey(ref)}`, tags, async () => {
        const items = await this.#inner.list<T>(ref, { pageSize: opts.pageSize });
        const list = compact(items);
        fresh = items;
        return list;
      });
    } catch (e) {
      // Listing the kind across namespaces is refused (RBAC) where the narrower query may not be.
      if (e instanceof KubeApiError && e.status === 403 && (opts.namespace || opts.labelSelector || opts.fieldSelector)) return copies(await exact());
      throw e;
    }
    const read = fresh ? (i: number) => fresh![i] : reader<T>(kept);
    const out: T[] = [];
    for (let i = 0; i < kept.index.length; i++) {
      const o = kept.index[i];
      if (opts.namespace && o.namespace !== undefined && o.namespace !== opts.namespace) continue;
      if (!labels(o.labelsOnly)) continue;
      const obj = read(i);
      if (fields(obj)) out.push(obj);
    }
    return out;
  }

  async get<T extends KubeObject = KubeObject>(ref: ResourceRef, namespace: string | undefined, name: string): Promise<T | undefined> {
    if (this.#snapshot.mode !== 'shared') {
      this.#snapshot.invalidate([kubeKindTag(ref.kind)]);
      return this.#inner.get<T>(ref, namespace, name);
    }
    const listed = this.#snapshot.peek<CompactList>(`kube:list:${refKey(ref)}`);
    if (listed) {
      const kept = await listed;
      const i = kept.index.findIndex((o) => o.name === name && (namespace === undefined || o.namespace === undefined || o.namespace === namespace));
      return i < 0 ? undefined : reader<T>(kept)(i);
    }
    const obj = await this.#snapshot.read(`kube:get:${refKey(ref)}:${namespace ?? ''}/${name}`, [kubeKindTag(ref.kind)], () => this.#inner.get<T>(ref, namespace, name));
    return obj === undefined ? undefined : structuredClone(obj);
  }

  create<T extends KubeObject>(obj: T): Promise<T> {
    return invalidating(this.#snapshot, this.#writeTags(obj.kind ?? ''), () => this.#inner.create(obj));
  }

  // Every write passes its options (conflict preconditions, delete preconditions) through untouched.
  replace<T extends KubeObject>(obj: T, opts?: ReplaceOptions<T>): Promise<T> {
    return invalidating(this.#snapshot, this.#writeTags(obj.kind ?? ''), () => this.#inner.replace(obj, opts));
  }

  patch<T extends KubeObject = KubeObject>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown, type: PatchType, opts?: WriteOptions): Promise<T> {
    return invalidating(this.#snapshot, this.#writeTags(ref.kind), () => this.#inner.patch<T>(ref, namespace, name, patch, type, opts));
  }

  delete(ref: ResourceRef, namespace: string | undefined, name: string, opts?: DeleteOptions): Promise<DeleteResult> {
    return invalidating(this.#snapshot, this.#writeTags(ref.kind), () => this.#inner.delete(ref, namespace, name, opts));
  }

  scale(namespace: string, name: string, replicas: number, ref?: ResourceRef, opts?: WriteOptions): Promise<{ previousReplicas: number; replicas: number }> {
    return invalidating(this.#snapshot, this.#writeTags(ref?.kind ?? 'Deployment'), () => this.#inner.scale(namespace, name, replicas, ref, opts));
  }

  evict(namespace: string, pod: string, opts?: { gracePeriodSeconds?: number }): Promise<EvictionResult> {
    return invalidating(this.#snapshot, this.#writeTags('Eviction'), () => this.#inner.evict(namespace, pod, opts));
  }

  async accessReview(request: AccessReviewRequest): Promise<AccessReviewResult> {
    // A question about the caller's own permissions: answered once per command, and no write.
    const answer = await this.#snapshot.read(`kube:access-review:${JSON.stringify(request)}`, [KUBE_ACCESS_TAG], () => this.#inner.accessReview(request));
    return { ...answer };
  }

  podLog(namespace: string, pod: string, container?: string, opts?: { tailLines?: number }): Promise<string> {
    return this.#inner.podLog(namespace, pod, container, opts);
  }

  proxyGet(namespace: string, pod: string, port: number, path: string): Promise<ProxyResponse> {
    return this.#inner.proxyGet(namespace, pod, port, path);
  }

  async raw<T = unknown>(path: string, query?: Record<string, string | number | boolean | undefined>): Promise<T> {
    const value = await this.#snapshot.read(`kube:raw:${path}?${JSON.stringify(query ?? {})}`, [KUBE_RAW_TAG], () => this.#inner.raw<T>(path, query));
    return structuredClone(value);
  }

  waitFor<T>(probe: WaitProbe<T>, opts: WaitOptions): Promise<T> {
    // A wait watches the cluster change: every read in it is live.
    return this.#inner.waitFor((note) => this.#snapshot.run('live', () => probe(note)), opts);
  }

  scoped(scope: { signal?: AbortSignal; deadline?: number }): KubeGateway {
    return new SnapshotKubeGateway(this.#inner.scoped(scope), this.#snapshot);
  }

  calls(): CallCounts {
    return this.#inner.calls();
  }

  dryRunLog(): DryRunEntry[] {
    return this.#inner.dryRunLog();
  }
}

/** Objects per compressed chunk of a kept list (a page's worth). */
const CHUNK = 500;

/**
 * A listed kind as the snapshot keeps it: per object the keys a list is filtered by, and the
 * objects' JSON in deflated chunks of {@link CHUNK} (similar objects compress about tenfold, so a
 * 10,000-pod list costs a few MiB instead of its 20 MiB of text or its object graph). Every read
 * parses its own objects: callers never share one.
 */
interface CompactList {
  index: { namespace?: string; name?: string; labelsOnly: KubeObject }[];
  chunks: Buffer[];
}

function compact(items: readonly KubeObject[]): CompactList {
  const index: CompactList['index'] = new Array(items.length);
  const chunks: Buffer[] = [];
  for (let start = 0; start < items.length; start += CHUNK) {
    const part = items.slice(start, start + CHUNK);
    for (let j = 0; j < part.length; j++) {
      const o = part[j];
      index[start + j] = { namespace: o.metadata?.namespace, name: o.metadata?.name, labelsOnly: { metadata: { labels: { ...(o.metadata?.labels ?? {}) } } } };
    }
    chunks.push(deflateRawSync(JSON.stringify(part), { level: 1 }));
  }
  return { index, chunks };
}

/**
 * Object `i` of a kept list, as a fresh parse. Only the chunk being read is held (lists are read
 * in order), so a filtered list does not keep the objects it skipped.
 */
function reader<T>(kept: CompactList): (i: number) => T {
  let current = -1;
  let objs: T[] = [];
  return (i) => {
    const c = Math.floor(i / CHUNK);
    if (c !== current) {
      objs = JSON.parse(inflateRawSync(kept.chunks[c]).toString('utf8')) as T[];
      current = c;
    }
    return objs[i % CHUNK];
  };
}

function refKey(ref: ResourceRef): string {
  return `${ref.apiVersion}/${ref.kind}`;
}

function copies<T>(items: T[]): T[] {
  return items.map((o) => structuredClone(o));
}
