/**
 * The Kubernetes gateway: everything the runbook steps may do to a cluster, and nothing
 * else. Steps see only the {@link KubeGateway} interface; the gateway was built with a
 * dry-run mode they cannot change, and its transport refuses writes the mode forbids.
 *
 * Objects are plain JSON as the API server sent them (no SDK model classes), so fields the
 * SDK does not know, and legacy capitalised keys, survive a read-modify-write.
 */
import { KubeClient } from './client.ts';
import type { KubeClientOptions, KubeTransport, ResourceRef } from './client.ts';
import { CallCounter } from './call-counter.ts';
import type { CallCounts } from './call-counter.ts';
import { DryRunRecorder } from './dry-run.ts';
import type { DryRunEntry, DryRunMode } from './dry-run.ts';
import { ConcurrentChangeError, ConflictRetriesExhaustedError, KubeApiError, WaitTimeoutError, isConflict, isNotFound } from './errors.ts';
import { applyPatchLocally } from './local-patch.ts';
import type { PatchType } from './local-patch.ts';
import { sleep, abortReason, retryDelayMs, waitBeforeRetry, formatMs, COUNTDOWN_EVERY_MS } from './retry.ts';
import { expectFields, preconditionDiff, show } from './conflict.ts';
import type { Precondition } from './conflict.ts';

export type { ResourceRef, PatchType, DryRunMode, DryRunEntry, CallCounts, Precondition };
export { expectFields } from './conflict.ts';

/** One question of {@link KubeGateway.accessReview} (`spec.resourceAttributes` of a SelfSubjectAccessReview). */
export interface AccessReviewRequest {
  verb: string;
  /** API group, `''` for the core group. */
  group: string;
  resource: string;
  subresource?: string;
  /** Absent: cluster-scoped resources, or every namespace. */
  namespace?: string;
}

/** The API server's answer to an {@link AccessReviewRequest}. */
export interface AccessReviewResult {
  allowed: boolean;
  /** The review itself was refused or not served: nothing is known. */
  unknown?: boolean;
  reason?: string;
}

/** Where SelfSubjectAccessReviews are posted. */
export const ACCESS_REVIEW_PATH = '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews';

/** A Kubernetes object as plain JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
    finalizers?: string[];
    deletionTimestamp?: string;
    creationTimestamp?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

import { KINDS } from './kinds.ts';

export { KINDS };

/** Identity of the cluster a journal belongs to. */
export interface ClusterIdentity {
  /** API server URL from the kubeconfig. */
  server: string;
  contextName: string;
  clusterName: string;
  /** UID of the `kube-system` namespace: stable for the cluster's life, differs between clusters. */
  kubeSystemUid: string;
}

/** Filters of a list call. Every list is paged (`limit` + `continue`) and returns all pages. */
export interface ListOptions {
  /** Namespace to list in; all namespaces when absent (or for cluster-scoped kinds). */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Page size (default the client's, 500). */
  pageSize?: number;
}

/** Options of a delete. */
export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
  /** Delete only if the object still has this uid / resourceVersion. */
  preconditions?: { uid?: string; resourceVersion?: string };
}

/** `deleted`: the server accepted the delete (the object may linger until finalizers clear); `not-found`: nothing to delete. */
export type DeleteResult = 'deleted' | 'not-found';

/** Outcome of one eviction request, classified as `kubectl drain` does. */
export type EvictionResult =
  | { kind: 'evicted'; dryRun?: boolean }
  /** 429 from the API server: a PodDisruptionBudget does not allow it now; retry later. */
  | { kind: 'blocked-by-pdb'; message: string; budgets: string[]; retryAfterMs?: number }
  | { kind: 'not-found' };

/** What the API server's pod proxy answered. */
export interface ProxyResponse {
  status: number;
  body: string;
}

/**
 * Options of a write ({@link KubeGateway.patch}, {@link KubeGateway.replace}). A 409 Conflict is
 * answered by reading the object again, re-checking `precondition` against it, and retrying a
 * bounded number of times with backoff; a changed or deleted object ends in
 * {@link ConcurrentChangeError} carrying the difference.
 */
export interface WriteOptions {
  /** What the write was planned on, checked against the fresh read after a conflict. */
  precondition?: Precondition;
}

/** Options of {@link KubeGateway.replace}. */
export interface ReplaceOptions<T extends KubeObject> extends WriteOptions {
  /**
   * Builds the object to send from the fresh read after a conflict (re-applying the change to
   * it). Without it, a conflicting replace is retried only when a `precondition` says the
   * object is still as planned, sending `obj` with the fresh `resourceVersion`.
   */
  rebase?: (current: T) => T;
}

/** Options of {@link KubeGateway.waitFor}. */
export interface WaitOptions {
  /** What is awaited, for the timeout message, e.g. `daemonset default/nmi rollout`. */
  describe: string;
  timeoutMs: number;
  /** Poll interval (default 1 s). */
  intervalMs?: number;
  /** Aborts the wait (in addition to the gateway's own scope signal). */
  signal?: AbortSignal;
}

/** A probe of {@link KubeGateway.waitFor}: returns the awaited value, or a falsy value to poll again. `note` records the state seen, for the timeout message. */
export type WaitProbe<T> = (note: (state: string) => void) => Promise<T | undefined | null | false>;

/** Everything the runbook steps may do to a cluster. Already dry-run aware. */
export interface KubeGateway {
  /** The dry-run mode this gateway was built with (steps skip waits on effects that a dry run does not cause). */
  readonly dryRunMode: DryRunMode;
  /** API server, context, cluster name and the `kube-system` namespace UID. */
  clusterIdentity(): Promise<ClusterIdentity>;
  /** All objects of a kind (every page). Items carry `apiVersion` and `kind`. */
  list<T extends KubeObject = KubeObject>(ref: ResourceRef, opts?: ListOptions): Promise<T[]>;
  /** One object, or `undefined` when it does not exist. */
  get<T extends KubeObject = KubeObject>(ref: ResourceRef, namespace: string | undefined, name: string): Promise<T | undefined>;
  /** Creates `obj` (its apiVersion/kind/metadata say where). Returns what the server stored (or, in client dry-run, `obj`). */
  create<T extends KubeObject>(obj: T): Promise<T>;
  /**
   * Replaces `obj` (PUT). A 409 Conflict (stale `metadata.resourceVersion`) is retried after a
   * fresh read only as {@link ReplaceOptions} allow; otherwise {@link ConcurrentChangeError}.
   */
  replace<T extends KubeObject>(obj: T, opts?: ReplaceOptions<T>): Promise<T>;
  /**
   * Patches one object; `strategic` merges containers by name, `merge` is RFC 7386, `json` is
   * RFC 6902. A 409 Conflict is retried (bounded, with backoff) after a fresh read that
   * `opts.precondition` must accept; {@link ConcurrentChangeError} when the object changed.
   */
  patch<T extends KubeObject = KubeObject>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown, type: PatchType, opts?: WriteOptions): Promise<T>;
  /** Deletes one object. NotFound counts as success (`not-found`). */
  delete(ref: ResourceRef, namespace: string | undefined, name: string, opts?: DeleteOptions): Promise<DeleteResult>;
  /**
   * Sets a Deployment's (or StatefulSet's / ReplicaSet's) replicas through the `scale`
   * subresource. A 409 Conflict is retried like {@link KubeGateway.patch}, after a fresh read of
   * the workload that `opts.precondition` must accept.
   */
  scale(namespace: string, name: string, replicas: number, ref?: ResourceRef, opts?: WriteOptions): Promise<{ previousReplicas: number; replicas: number }>;
  /** Evicts one pod through the Eviction API (policy/v1). Never retries a PDB refusal itself. */
  evict(namespace: string, pod: string, opts?: { gracePeriodSeconds?: number }): Promise<EvictionResult>;
  /** A container's log (text). */
  podLog(namespace: string, pod: string, container?: string, opts?: { tailLines?: number }): Promise<string>;
  /** `GET` through the API server's pod proxy: `/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/<path>`. Any status is returned, not thrown. */
  proxyGet(namespace: string, pod: string, port: number, path: string): Promise<ProxyResponse>;
  /**
   * Asks the API server whether the current user may do one thing (a SelfSubjectAccessReview,
   * as `kubectl auth can-i` sends). Persists nothing, so it is sent in every dry-run mode.
   * `unknown` when the server would not answer the question (403/404 on the review itself).
   */
  accessReview(request: AccessReviewRequest): Promise<AccessReviewResult>;
  /** A JSON read of any API path, exactly as served (for legacy capitalised fields). */
  raw<T = unknown>(path: string, query?: Record<string, string | number | boolean | undefined>): Promise<T>;
  /** Polls `probe` until it returns a value, the timeout passes (WaitTimeoutError naming `describe`), or the signal aborts. */
  waitFor<T>(probe: WaitProbe<T>, opts: WaitOptions): Promise<T>;
  /** A view sharing client, rate limit, counters and dry-run log, bound to a step call's signal and deadline, with its own call counts. */
  scoped(scope: { signal?: AbortSignal; deadline?: number }): KubeGateway;
  /** Calls made through this gateway (or this scoped view) so far. */
  calls(): CallCounts;
  /** Writes kept from persisting by dry-run, oldest first (shared by all views). */
  dryRunLog(): DryRunEntry[];
}

/** Options of {@link createKubeGateway}. */
export interface KubeGatewayOptions extends KubeClientOptions {
  dryRun?: DryRunMode;
  signal?: AbortSignal;
  deadline?: number;
}

/** How long before a step's deadline a {@link KubeGateway.waitFor} gives up, so its own error names what was not ready. */
const DEADLINE_RESERVE_MS = 1500;

/** Attempts of a write that meets 409 Conflict, the first one included. */
export const MAX_CONFLICT_ATTEMPTS = 5;

/** Builds the gateway from a kubeconfig (path or default loading) and context. */
export function createKubeGateway(opts: KubeGatewayOptions = {}): KubeGateway {
  const client = KubeClient.load(opts);
  return new ApiKubeGateway(client, new DryRunRecorder(opts.dryRun ?? 'none'), new CallCounter(), { signal: opts.signal, deadline: opts.deadline });
}

const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  strategic: 'application/strategic-merge-patch+json',
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
};

class ApiKubeGateway implements KubeGateway {
  // ES private fields: not reachable from a step even through a cast, so the dry-run
  // recorder and the raw transport cannot be swapped or used directly.
  readonly #client: KubeClient;
  readonly #dryRun: DryRunRecorder;
  readonly #counter: CallCounter;
  readonly #transport: KubeTransport;
  readonly #signal: AbortSignal | undefined;
  readonly #deadline: number | undefined;

  constructor(client: KubeClient, dryRun: DryRunRecorder, counter: CallCounter, scope: { signal?: AbortSignal; deadline?: number }) {
    this.#client = client;
    this.#dryRun = dryRun;
    this.#counter = counter;
    this.#signal = scope.signal;
    this.#deadline = scope.deadline;
    this.#transport = client.transport({ counter, dryRun, signal: scope.signal, deadline: scope.deadline, progress: client.progress });
  }

  get dryRunMode(): DryRunMode {
    return this.#dryRun.mode;
  }

  scoped(scope: { signal?: AbortSignal; deadline?: number }): KubeGateway {
    return new ApiKubeGateway(this.#client, this.#dryRun, new CallCounter(this.#counter), scope);
  }

  calls(): CallCounts {
    return this.#counter.snapshot();
  }

  dryRunLog(): DryRunEntry[] {
    return this.#dryRun.log();
  }

  async clusterIdentity(): Promise<ClusterIdentity> {
    const ns = await this.get(KINDS.Namespace, undefined, 'kube-system');
    const uid = ns?.metadata?.uid;
    if (!uid) throw new Error(`the cluster at ${this.#client.server} has no kube-system namespace with a uid; is this a Kubernetes API server?`);
    return { server: this.#client.server, contextName: this.#client.contextName, clusterName: this.#client.clusterName, kubeSystemUid: uid };
  }

  async list<T extends KubeObject = KubeObject>(ref: ResourceRef, opts: ListOptions = {}): Promise<T[]> {
    const path = await this.#transport.pathFor(ref, opts.namespace);
    const limit = opts.pageSize ?? this.#client.pageSize;
    // A continue token can expire (410) on a long list; start over like kubectl, a bounded number of times.
    for (let restart = 0; ; restart++) {
      const items: T[] = [];
      let cont: string | undefined;
      try {
        do {
          const resp = await this.#transport.request('GET', path, {
            query: { limit, continue: cont, labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector },
          });
          const page = JSON.parse(resp.text) as { items?: T[]; metadata?: { continue?: string } };
          for (const item of page.items ?? []) items.push({ apiVersion: ref.apiVersion, kind: ref.kind, ...item });
          cont = page.metadata?.continue || undefined;
        } while (cont);
        return items;
      } catch (e) {
        if (e instanceof KubeApiError && e.status === 410 && cont && restart < 2) continue;
        throw e;
      }
    }
  }

  async get<T extends KubeObject = KubeObject>(ref: ResourceRef, namespace: string | undefined, name: string): Promise<T | undefined> {
    const path = await this.#transport.pathFor(ref, namespace, name);
    try {
      const resp = await this.#transport.request('GET', path);
      return JSON.parse(resp.text) as T;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async create<T extends KubeObject>(obj: T): Promise<T> {
    const ref = refOf(obj);
    const path = await this.#transport.pathFor(ref, obj.metadata?.namespace);
    if (this.#suppress('POST', path, obj, `create ${describe(obj)}`)) return structuredClone(obj);
    const resp = await this.#transport.request('POST', path, { body: obj });
    this.#recordServerDryRun('POST', path, obj, `create ${describe(obj)}`);
    return JSON.parse(resp.text) as T;
  }

  async replace<T extends KubeObject>(obj: T, opts: ReplaceOptions<T> = {}): Promise<T> {
    const ref = refOf(obj);
    const name = obj.metadata?.name;
    if (!name) throw new Error(`replace ${ref.kind}: metadata.name is required`);
    const namespace = obj.metadata?.namespace;
    const path = await this.#transport.pathFor(ref, namespace, name);
    if (this.#suppress('PUT', path, obj, `replace ${describe(obj)}`)) return structuredClone(obj);
    let body = obj;
    return this.#retryConflicts(ref, namespace, name, opts.precondition, async () => {
      const resp = await this.#transport.request('PUT', path, { body });
      this.#recordServerDryRun('PUT', path, body, `replace ${describe(body)}`);
      return JSON.parse(resp.text) as T;
    }, (current, target) => {
      if (opts.rebase) body = opts.rebase(current as T);
      else if (opts.precondition) body = { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } };
      else throw new ConcurrentChangeError(target, [`/metadata/resourceVersion: planned ${show(body.metadata?.resourceVersion)}, now ${show(current.metadata?.resourceVersion)} (the object was written since it was read)`]);
    });
  }

  /**
   * Sends a write; on 409 Conflict waits (backoff, honouring signal and deadline), reads the
   * object again, throws {@link ConcurrentChangeError} when it is gone or the precondition
   * fails, lets `prepare` adjust the next request to the fresh object, and tries again, at most
   * {@link MAX_CONFLICT_ATTEMPTS} times.
   */
  async #retryConflicts<T>(
    ref: ResourceRef,
    namespace: string | undefined,
    name: string,
    precondition: Precondition | undefined,
    send: () => Promise<T>,
    prepare: (current: KubeObject, target: string) => void,
  ): Promise<T> {
    const target = `${ref.kind.toLowerCase()} ${namespace ? namespace + '/' : ''}${name}`;
    const timing = { ...this.#client.retry, baseDelayMs: Math.min(this.#client.retry.baseDelayMs, 200), maxDelayMs: Math.min(this.#client.retry.maxDelayMs, 3000) };
    for (let attempt = 1; ; attempt++) {
      try {
        return await send();
      } catch (e) {
        // AlreadyExists is a 409 too, but not one a fresh read resolves.
        if (!isConflict(e) || (e as KubeApiError).reason === 'AlreadyExists') throw e;
        if (attempt >= MAX_CONFLICT_ATTEMPTS) throw new ConflictRetriesExhaustedError(target, attempt);
        const wait = retryDelayMs(attempt, timing);
        this.#client.progress?.(`${target}: 409 Conflict, reading it again in ${formatMs(wait)} (attempt ${attempt + 1} of ${MAX_CONFLICT_ATTEMPTS})`);
        await waitBeforeRetry(`write ${target}`, wait, { signal: this.#signal, deadline: this.#deadline }, '409 Conflict');
      }
      const current = await this.get(ref, namespace, name);
      if (!current) throw new ConcurrentChangeError(target, ['the object was deleted']);
      const diff = precondition ? preconditionDiff(precondition, current as Record<string, unknown>) : [];
      if (diff.length > 0) throw new ConcurrentChangeError(target, diff);
      prepare(current, target);
    }
  }

  async patch<T extends KubeObject = KubeObject>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown, type: PatchType, opts: WriteOptions = {}): Promise<T> {
    const path = await this.#transport.pathFor(ref, namespace, name);
    const what = `${type} patch ${ref.kind} ${namespace ? namespace + '/' : ''}${name}`;
    if (this.#dryRun.suppressKubeWrites) {
      // Reads always run: answer with what the server would have produced from the live object.
      const current = await this.get<T>(ref, namespace, name);
      if (!current) throw new KubeApiError({ status: 404, reason: 'NotFound', message: `${ref.kind.toLowerCase()}s "${name}" not found`, method: 'PATCH', path });
      this.#suppress('PATCH', path, patch, what);
      return applyPatchLocally(current, patch, type);
    }
    let body = patch;
    return this.#retryConflicts(ref, namespace, name, opts.precondition, async () => {
      const resp = await this.#transport.request('PATCH', path, { body, contentType: PATCH_CONTENT_TYPES[type] }).catch(async (e: unknown) => {
        throw (await this.#failedTests(e, ref, namespace, name, body, type)) ?? e;
      });
      this.#recordServerDryRun('PATCH', path, body, what);
      return JSON.parse(resp.text) as T;
    }, (current, target) => {
      // A merge patch pinned to a resourceVersion carries its own precondition: re-pin it only
      // when the caller's precondition vouched for the fresh object.
      const pinned = type !== 'json' ? (body as { metadata?: { resourceVersion?: string } } | null)?.metadata?.resourceVersion : undefined;
      if (pinned === undefined) return;
      if (!opts.precondition) throw new ConcurrentChangeError(target, [`/metadata/resourceVersion: planned ${show(pinned)}, now ${show(current.metadata?.resourceVersion)} (the object was written since it was read)`]);
      const b = body as { metadata: Record<string, unknown> };
      body = { ...b, metadata: { ...b.metadata, resourceVersion: current.metadata?.resourceVersion } };
    });
  }

  /**
   * A JSON patch's `test` operations are the preconditions it was planned on. When the server
   * refuses the patch (422), reads the object again and, if a tested value changed, returns the
   * {@link ConcurrentChangeError} with the difference (the 422 alone does not say which).
   */
  async #failedTests(e: unknown, ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown, type: PatchType): Promise<ConcurrentChangeError | undefined> {
    if (type !== 'json' || !(e instanceof KubeApiError) || e.status !== 422 || !Array.isArray(patch)) return undefined;
    const tests = (patch as { op?: string; path?: string; value?: unknown }[]).filter((op) => op?.op === 'test' && typeof op.path === 'string');
    if (tests.length === 0) return undefined;
    const target = `${ref.kind.toLowerCase()} ${namespace ? namespace + '/' : ''}${name}`;
    const current = await this.get(ref, namespace, name);
    if (!current) return new ConcurrentChangeError(target, ['the object was deleted'], undefined, 422);
    const diff = preconditionDiff(expectFields(Object.fromEntries(tests.map((t) => [t.path!, t.value]))), current as Record<string, unknown>);
    return diff.length ? new ConcurrentChangeError(target, diff, undefined, 422) : undefined;
  }

  async delete(ref: ResourceRef, namespace: string | undefined, name: string, opts: DeleteOptions = {}): Promise<DeleteResult> {
    const path = await this.#transport.pathFor(ref, namespace, name);
    const body = {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      gracePeriodSeconds: opts.gracePeriodSeconds,
      propagationPolicy: opts.propagationPolicy,
      preconditions: opts.preconditions,
    };
    const what = `delete ${ref.kind} ${namespace ? namespace + '/' : ''}${name}`;
    if (this.#dryRun.suppressKubeWrites) {
      const exists = (await this.get(ref, namespace, name)) !== undefined;
      if (!exists) return 'not-found';
      this.#suppress('DELETE', path, body, what);
      return 'deleted';
    }
    const resp = await this.#transport.request('DELETE', path, { body, allowStatus: [404] });
    if (resp.status === 404) return 'not-found';
    this.#recordServerDryRun('DELETE', path, body, what);
    return 'deleted';
  }

  async scale(namespace: string, name: string, replicas: number, ref: ResourceRef = KINDS.Deployment, opts: WriteOptions = {}): Promise<{ previousReplicas: number; replicas: number }> {
    if (!Number.isInteger(replicas) || replicas < 0) throw new Error(`scale ${ref.kind} ${namespace}/${name}: replicas must be a non-negative integer, got ${replicas}`);
    const path = `${await this.#transport.pathFor(ref, namespace, name)}/scale`;
    const current = JSON.parse((await this.#transport.request('GET', path)).text) as { spec?: { replicas?: number } };
    const previousReplicas = current.spec?.replicas ?? 0;
    const body = { spec: { replicas } };
    const what = `scale ${ref.kind} ${namespace}/${name} from ${previousReplicas} to ${replicas}`;
    if (this.#suppress('PATCH', path, body, what)) return { previousReplicas, replicas };
    const resp = await this.#retryConflicts(ref, namespace, name, opts.precondition, () => this.#transport.request('PATCH', path, { body, contentType: PATCH_CONTENT_TYPES.merge }), () => {});
    this.#recordServerDryRun('PATCH', path, body, what);
    const after = JSON.parse(resp.text) as { spec?: { replicas?: number } };
    return { previousReplicas, replicas: after.spec?.replicas ?? replicas };
  }

  async evict(namespace: string, pod: string, opts: { gracePeriodSeconds?: number } = {}): Promise<EvictionResult> {
    const path = `${await this.#transport.pathFor(KINDS.Pod, namespace, pod)}/eviction`;
    const deleteOptions: Record<string, unknown> = {};
    if (opts.gracePeriodSeconds !== undefined) deleteOptions.gracePeriodSeconds = opts.gracePeriodSeconds;
    if (this.#dryRun.kubeServerDryRun) deleteOptions.dryRun = ['All'];
    const body = { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: pod, namespace }, deleteOptions };
    const what = `evict pod ${namespace}/${pod}`;
    if (this.#dryRun.suppressKubeWrites) {
      if ((await this.get(KINDS.Pod, namespace, pod)) === undefined) return { kind: 'not-found' };
      this.#suppress('POST', path, body, what);
      return { kind: 'evicted', dryRun: true };
    }
    const resp = await this.#transport.request('POST', path, { body, allowStatus: [404, 429] });
    if (resp.status === 404) return { kind: 'not-found' };
    if (resp.status === 429) return classifyEvictionRefusal(resp.text, resp.headers['retry-after']);
    this.#recordServerDryRun('POST', path, body, what);
    return this.#dryRun.kubeServerDryRun ? { kind: 'evicted', dryRun: true } : { kind: 'evicted' };
  }

  async podLog(namespace: string, pod: string, container?: string, opts: { tailLines?: number } = {}): Promise<string> {
    const path = `${await this.#transport.pathFor(KINDS.Pod, namespace, pod)}/log`;
    const resp = await this.#transport.request('GET', path, { query: { container, tailLines: opts.tailLines }, accept: 'text/plain, */*' });
    return resp.text;
  }

  async proxyGet(namespace: string, pod: string, port: number, path: string): Promise<ProxyResponse> {
    const base = await this.#transport.pathFor(KINDS.Pod, namespace, pod);
    const tail = path.startsWith('/') ? path : `/${path}`;
    const resp = await this.#transport.request('GET', `${base}:${port}/proxy${tail}`, { accept: '*/*', allowStatus: ALL_STATUSES });
    return { status: resp.status, body: resp.text };
  }

  async accessReview(request: AccessReviewRequest): Promise<AccessReviewResult> {
    const resourceAttributes: Record<string, string> = { verb: request.verb, group: request.group, resource: request.resource };
    if (request.subresource) resourceAttributes.subresource = request.subresource;
    if (request.namespace) resourceAttributes.namespace = request.namespace;
    const body = { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes } };
    const resp = await this.#transport.request('POST', ACCESS_REVIEW_PATH, { body, allowStatus: [403, 404] });
    if (resp.status === 403 || resp.status === 404) return { allowed: false, unknown: true, reason: `the API server did not answer the access review (HTTP ${resp.status})` };
    const answer = JSON.parse(resp.text) as { status?: { allowed?: boolean; reason?: string } };
    return { allowed: answer.status?.allowed === true, ...(answer.status?.reason ? { reason: answer.status.reason } : {}) };
  }

  async raw<T = unknown>(path: string, query?: Record<string, string | number | boolean | undefined>): Promise<T> {
    const resp = await this.#transport.request('GET', path, { query });
    return JSON.parse(resp.text) as T;
  }

  async waitFor<T>(probe: WaitProbe<T>, opts: WaitOptions): Promise<T> {
    const started = Date.now();
    const interval = opts.intervalMs ?? 1000;
    let timeoutMs = opts.timeoutMs;
    // Bounded by the step's deadline, the wait gives up a moment before it, so its own error
    // (what was awaited, the state last seen) reaches the operator rather than a bare "deadline exceeded".
    if (this.#deadline !== undefined) {
      const left = this.#deadline - started;
      timeoutMs = Math.min(timeoutMs, left > 2 * DEADLINE_RESERVE_MS ? left - DEADLINE_RESERVE_MS : left);
    }
    const signals = [opts.signal, this.#signal].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    let lastState: string | undefined;
    const note = (s: string): void => {
      lastState = s;
    };
    // A long wait says what it waits for and how long it may still take, every 10 s.
    let announceAt = started + COUNTDOWN_EVERY_MS;
    for (;;) {
      if (signal?.aborted) throw abortReason(signal);
      try {
        const value = await probe(note);
        if (value !== undefined && value !== null && value !== false) return value;
      } catch (e) {
        // A transient API failure is one more reason to poll again, not to give up.
        if (!(e instanceof KubeApiError && e.retryable)) throw e;
        lastState = `API error: ${e.message}`;
      }
      const remaining = started + timeoutMs - Date.now();
      if (remaining <= 0) throw new WaitTimeoutError(opts.describe, Date.now() - started, lastState);
      if (this.#client.progress && Date.now() >= announceAt) {
        announceAt = Date.now() + COUNTDOWN_EVERY_MS;
        this.#client.progress(`${opts.describe}${lastState ? ` (now: ${lastState})` : ''}; ${formatMs(remaining)} left`);
      }
      await sleep(Math.min(interval, remaining), signal);
    }
  }

  /** In client dry-run: records the write and returns true (the caller must not send it). */
  #suppress(method: string, path: string, body: unknown, description: string): boolean {
    if (!this.#dryRun.suppressKubeWrites) return false;
    this.#dryRun.record({ api: 'kube', method, url: path, body, sentAsServerDryRun: false, description });
    this.#counter.countSuppressed();
    return true;
  }

  #recordServerDryRun(method: string, path: string, body: unknown, description: string): void {
    if (this.#dryRun.kubeServerDryRun) this.#dryRun.record({ api: 'kube', method, url: `${path}?dryRun=All`, body, sentAsServerDryRun: true, description });
  }
}

const ALL_STATUSES = Array.from({ length: 500 }, (_, i) => i + 100);

function refOf(obj: KubeObject): ResourceRef {
  if (!obj.apiVersion || !obj.kind) throw new Error(`object ${obj.metadata?.name ?? '(unnamed)'} needs apiVersion and kind`);
  return { apiVersion: obj.apiVersion, kind: obj.kind };
}

function describe(obj: KubeObject): string {
  const ns = obj.metadata?.namespace;
  return `${obj.kind} ${ns ? ns + '/' : ''}${obj.metadata?.name ?? '(generated name)'}`;
}

/**
 * Reads the 429 an eviction gets when a PodDisruptionBudget forbids it. The API server says
 * `Cannot evict pod as it would violate the pod's disruption budget.` and names each budget
 * in `details.causes` (reason `DisruptionBudget`).
 */
export function classifyEvictionRefusal(text: string, retryAfter?: string): EvictionResult {
  let message = 'Cannot evict pod as it would violate the pod\'s disruption budget.';
  const budgets: string[] = [];
  try {
    const status = JSON.parse(text) as { message?: string; details?: { causes?: { reason?: string; message?: string }[] } };
    if (status.message) message = status.message;
    for (const c of status.details?.causes ?? []) {
      if (c.reason === 'DisruptionBudget' && c.message) budgets.push(c.message);
    }
  } catch {
    // keep the generic message
  }
  const full = budgets.length ? `${message} ${budgets.join('; ')}` : message;
  const secs = retryAfter !== undefined ? Number(retryAfter) : NaN;
  return { kind: 'blocked-by-pdb', message: full, budgets, retryAfterMs: Number.isFinite(secs) ? secs * 1000 : undefined };
}

