/**
 * Construction of the Kubernetes client and its transport: kubeconfig loading (`--kubeconfig`,
 * `--context`), the client-side rate limit, classified retries with a capped `Retry-After`,
 * per-call counting, and the dry-run guard. This file and `gateway.ts` are the only ones that
 * import `@kubernetes/client-node`.
 *
 * Every request of a gateway, the SDK's own discovery lookups included, goes through one
 * `HttpLibrary` built here, so none of these policies can be skipped.
 */
import {
  KubeConfig,
  KubernetesObjectApi,
  IsomorphicFetchHttpLibrary,
  ServerConfiguration,
  createConfiguration,
  wrapHttpLibrary,
  setHeaderMiddleware,
  HttpMethod,
} from '@kubernetes/client-node';
import type { Configuration, RequestContext, ResponseContext, V1APIResource, V1APIResourceList } from '@kubernetes/client-node';
import { TokenBucket, DEFAULT_KUBE_RATE_LIMIT } from './rate-limiter.ts';
import type { RateLimit } from './rate-limiter.ts';
import { retryOptions, retryDelayMs, parseRetryAfter, waitBeforeRetry, abortReason, formatMs, classifyNetworkError } from './retry.ts';
import type { NetworkFailure } from './retry.ts';
export { classifyNetworkError };
import type { RetryOptions, CallScope, ProgressSink } from './retry.ts';
import { CallCounter } from './call-counter.ts';
import type { DryRunRecorder } from './dry-run.ts';
import { DryRunViolationError, KubeApiError } from './errors.ts';
import { AuthenticationError, EndpointUnreachableError, PermissionDeniedError, PreconditionError, TlsTrustError } from '../engine/errors.ts';

/** How to reach the cluster and how politely. */
export interface KubeClientOptions {
  /** Kubeconfig file; when absent, client-node's default loading (`$KUBECONFIG`, `~/.kube/config`, in-cluster). */
  kubeconfig?: string;
  /** Context to use instead of the kubeconfig's current context. */
  context?: string;
  /** Client-side rate limit (default 20 QPS, burst 40). */
  rateLimit?: RateLimit;
  /** Retry timing (defaults in `retry.ts`). */
  retry?: Partial<RetryOptions>;
  /** Upper bound of one HTTP exchange in ms (default 60 s); a hung connection must not stall a step. */
  requestTimeoutMs?: number;
  /** Page size for list calls (default 500, as kubectl). */
  pageSize?: number;
  /** User-Agent sent with every request. */
  userAgent?: string;
  /** Receives a line when the gateway waits noticeably (a Retry-After, a conflict backoff, a long poll), with a countdown. */
  progress?: ProgressSink;
  /**
   * Attempts of a read whose connection fails (refused, name not resolved, reset) before the
   * endpoint is reported unreachable (default 3: about 1.5 s of backoff, not minutes).
   */
  connectAttempts?: number;
}

/** What one transport (a gateway or a step-scoped view of it) needs besides the shared client. */
export interface TransportScope extends CallScope {
  counter: CallCounter;
  dryRun: DryRunRecorder;
}

/** A raw HTTP answer read fully into memory. */
export interface KubeResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
}

/** Options of {@link KubeTransport.request}. */
export interface KubeRequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  accept?: string;
  /** Statuses returned instead of thrown as {@link KubeApiError} (e.g. `[429]` for an eviction). */
  allowStatus?: number[];
}

/** A Kubernetes resource type by apiVersion and kind, e.g. `{apiVersion: 'apps/v1', kind: 'DaemonSet'}`. */
export interface ResourceRef {
  apiVersion: string;
  kind: string;
}

/**
 * The client shared by a gateway and all its scoped views: kubeconfig, rate limiter, retry
 * options and the discovery cache. Create it once per process with {@link KubeClient.load}.
 */
export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly server: string;
  readonly contextName: string;
  readonly clusterName: string;
  readonly limiter: TokenBucket;
  readonly retry: RetryOptions;
  readonly requestTimeoutMs: number;
  readonly pageSize: number;
  readonly userAgent: string;
  readonly progress: ProgressSink | undefined;
  readonly connectAttempts: number;
  /** Discovery documents by apiVersion, shared by every transport so each is fetched once. */
  readonly discoveryCache: Record<string, V1APIResourceList> = {};
  /** Discovery reads in flight by apiVersion, so concurrent first uses of a group share one GET. */
  readonly discoveryInFlight = new Map<string, Promise<unknown>>();

  private constructor(kc: KubeConfig, opts: KubeClientOptions) {
    this.kubeConfig = kc;
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error(`kubeconfig context ${kc.getCurrentContext() || '(none)'} names no cluster; fix the kubeconfig or pass --context`);
    this.server = cluster.server;
    this.clusterName = cluster.name;
    this.contextName = kc.getCurrentContext();
    this.limiter = new TokenBucket(opts.rateLimit ?? DEFAULT_KUBE_RATE_LIMIT);
    this.retry = retryOptions(opts.retry);
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 60_000;
    this.pageSize = opts.pageSize ?? 500;
    this.userAgent = opts.userAgent ?? 'podid-migrate';
    this.progress = opts.progress;
    this.connectAttempts = Math.max(1, opts.connectAttempts ?? 3);
  }

  /** `user` of the current context, for messages. */
  get userName(): string {
    return this.kubeConfig.getCurrentUser()?.name ?? '(none)';
  }

  /**
   * Loads the kubeconfig and selects the context. Throws a message naming the file and the
   * available contexts when `context` does not exist.
   */
  static load(opts: KubeClientOptions = {}): KubeClient {
    const kc = new KubeConfig();
    const source = opts.kubeconfig ? `--kubeconfig ${opts.kubeconfig}` : process.env.KUBECONFIG ? `KUBECONFIG=${process.env.KUBECONFIG}` : '~/.kube/config';
    try {
      if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
      else kc.loadFromDefault();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === 'ENOENT' ? 'the file does not exist' : err.code === 'EACCES' ? 'the file is not readable' : `it is not a valid kubeconfig (${err.message.split('\n')[0].trim()})`;
      throw new PreconditionError(`cannot load the kubeconfig (${source}): ${why}.`, 'Point --kubeconfig or KUBECONFIG at the cluster\'s kubeconfig (az aks get-credentials writes one), or `source .sandbox/env` for the sandbox.');
    }
    if (!kc.getCurrentCluster()) {
      throw new PreconditionError(`the kubeconfig (${source}) has no current context with a cluster.`, 'Choose one with --context <name> (kubectl config get-contexts lists them).');
    }
    if (opts.context) {
      if (!kc.getContextObject(opts.context)) {
        const known = kc.getContexts().map((c) => c.name).join(', ') || 'none';
        throw new PreconditionError(`--context ${opts.context} is not in the kubeconfig (${source}; contexts: ${known}).`, 'Pass one of those contexts (kubectl config get-contexts lists them).');
      }
      kc.setCurrentContext(opts.context);
    }
    return new KubeClient(kc, opts);
  }

  /** A transport bound to one scope (signal, deadline, counter, dry-run recorder). Cheap. */
  transport(scope: TransportScope): KubeTransport {
    return new KubeTransport(this, scope);
  }
}

/**
 * Subclass of client-node's generic object API that exposes its path building (with the shared
 * discovery cache) and leaves (de)serialisation to the gateway: objects stay plain JSON, so
 * fields unknown to the SDK's models and legacy capitalised keys survive a read-modify-write.
 */
class PathApi extends KubernetesObjectApi {
  private readonly discover: (path: string) => Promise<V1APIResourceList>;
  readonly #inFlight: Map<string, Promise<unknown>>;
  constructor(config: Configuration, cache: Record<string, V1APIResourceList>, inFlight: Map<string, Promise<unknown>>, discover: (path: string) => Promise<V1APIResourceList>) {
    super(config);
    this.apiVersionResourceCache = cache;
    this.#inFlight = inFlight;
    this.discover = discover;
  }

  /**
   * Discovery through the gateway's own request path, so its failures are classified like any
   * other (client-node's version rewrites the message of whatever error it meets). Parallel
   * first uses of one group share one GET.
   */
  protected override async resource(apiVersion: string, kind: string): Promise<V1APIResource | undefined> {
    const cached = this.apiVersionResourceCache[apiVersion]?.resources.find((r) => r.kind === kind);
    if (cached) return cached;
    let pending = this.#inFlight.get(apiVersion) as Promise<V1APIResourceList> | undefined;
    if (!pending) {
      pending = this.discover(this.apiVersionPath(apiVersion)).finally(() => this.#inFlight.delete(apiVersion));
      this.#inFlight.set(apiVersion, pending);
    }
    const list = await pending;
    this.apiVersionResourceCache[apiVersion] = list;
    return list.resources.find((r) => r.kind === kind);
  }

  /** Path of the collection (`name` absent) or the object. */
  async pathFor(ref: ResourceRef, namespace: string | undefined, name: string | undefined): Promise<string> {
    // Parallel lists of one group share one discovery read (see resource). A failure is left to
    // specUriPath below, which reads again and reports it.
    if (!this.apiVersionResourceCache[ref.apiVersion]) await this.resource(ref.apiVersion, ref.kind).catch(() => undefined);
    const spec = { apiVersion: ref.apiVersion, kind: ref.kind, metadata: { namespace, name } };
    return this.specUriPath(spec, name === undefined ? 'list' : 'read');
  }

  /** Whether the kind is namespaced, from discovery. */
  async isNamespaced(ref: ResourceRef): Promise<boolean> {
    const r = await this.resource(ref.apiVersion, ref.kind);
    if (!r) throw new Error(`the API server does not serve ${ref.kind} in ${ref.apiVersion}`);
    return r.namespaced;
  }
}

/** Transport of one scope: every request is rate-limited, counted, retried as classified, and dry-run checked. */
export class KubeTransport {
  readonly client: KubeClient;
  readonly scope: TransportScope;
  readonly configuration: Configuration;
  private readonly paths: PathApi;

  constructor(client: KubeClient, scope: TransportScope) {
    this.client = client;
    this.scope = scope;
    const inner = new IsomorphicFetchHttpLibrary();
    const httpApi = wrapHttpLibrary({ send: (req) => this.send(inner, req) });
    this.configuration = createConfiguration({
      baseServer: new ServerConfiguration<Record<string, string>>(client.server, {}),
      authMethods: { default: client.kubeConfig },
      httpApi,
      middleware: [setHeaderMiddleware('User-Agent', client.userAgent)],
    });
    this.paths = new PathApi(this.configuration, client.discoveryCache, client.discoveryInFlight, async (path) => JSON.parse((await this.request('GET', path)).text) as V1APIResourceList);
  }

  pathFor(ref: ResourceRef, namespace: string | undefined, name?: string): Promise<string> {
    return this.paths.pathFor(ref, namespace, name);
  }

  isNamespaced(ref: ResourceRef): Promise<boolean> {
    return this.paths.isNamespaced(ref);
  }

  /**
   * Sends one request through client-node's configuration (auth, TLS from the kubeconfig) and
   * this transport's policies. Non-2xx answers become {@link KubeApiError} unless listed in
   * `allowStatus`.
   */
  async request(method: string, path: string, opts: KubeRequestOptions = {}): Promise<KubeResponse> {
    const ctx = this.configuration.baseServer.makeRequestContext(path, method.toUpperCase() as HttpMethod);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) ctx.setQueryParam(k, String(v));
    ctx.setHeaderParam('Accept', opts.accept ?? 'application/json, */*;q=0.8');
    if (opts.body !== undefined) {
      ctx.setHeaderParam('Content-Type', opts.contentType ?? 'application/json');
      ctx.setBody(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    }
    for (const m of this.configuration.middleware) await m.pre(ctx).toPromise();
    try {
      await this.configuration.authMethods.default?.applySecurityAuthentication(ctx);
    } catch (e) {
      // An exec plugin (kubelogin, az) or an auth provider could not produce a credential.
      throw new AuthenticationError(
        'kubernetes',
        `cannot get credentials for kubeconfig context "${this.client.contextName}" (user "${this.client.userName}"): ${firstLine((e as Error)?.message ?? String(e))}`,
        credentialHint(this.client),
        { cause: e },
      );
    }
    const resp = await this.configuration.httpApi.send(ctx).toPromise();
    const text = await resp.body.text();
    const out: KubeResponse = { status: resp.httpStatusCode, headers: resp.headers, text };
    if ((out.status < 200 || out.status >= 300) && !opts.allowStatus?.includes(out.status)) {
      const error = toKubeApiError(out, method.toUpperCase(), path);
      throw classifyAccessFailure(error, this.client, method.toUpperCase(), path) ?? error;
    }
    return out;
  }

  private async send(inner: IsomorphicFetchHttpLibrary, req: RequestContext): Promise<ResponseContext> {
    const method = req.getHttpMethod().toString().toUpperCase();
    const url = new URL(req.getUrl());
    // An access review is a question, not a write: the server persists nothing, so every
    // dry-run mode sends it as it is.
    const write = method !== 'GET' && method !== 'HEAD' && url.pathname !== '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews';
    if (write) {
      // The gateway already records writes in client mode; this is the backstop that makes
      // dry-run impossible to bypass from anything that holds this transport.
      if (this.scope.dryRun.suppressKubeWrites) throw new DryRunViolationError('kube', method, url.pathname);
      if (this.scope.dryRun.kubeServerDryRun && url.searchParams.get('dryRun') !== 'All') req.setQueryParam('dryRun', 'All');
    }
    const { verb, resource } = describeKubeRequest(method, url.pathname, url.searchParams);
    const opts = this.client.retry;
    for (let attempt = 1; ; attempt++) {
      const signal = this.scope.signal;
      if (signal?.aborted) throw abortReason(signal);
      await this.client.limiter.acquire(signal);
      this.scope.counter.count(verb, resource, attempt > 1);
      const timeout = AbortSignal.timeout(this.client.requestTimeoutMs);
      req.setSignal(signal ? AbortSignal.any([signal, timeout]) : timeout);
      let resp: ResponseContext;
      try {
        resp = await inner.send(req).toPromise();
      } catch (e) {
        if (signal?.aborted) throw abortReason(signal);
        const failure = classifyNetworkError(e, timeout.aborted, this.client.requestTimeoutMs);
        const request = `${verb} ${resource} (${method} ${url.pathname})`;
        if (failure.kind === 'tls') throw tlsError(this.client, request, failure, e);
        // A write that may have reached the server is never repeated blindly: the caller re-reads.
        // A connection that fails again and again means the server is not there: say so within
        // seconds instead of backing off for minutes. One request timeout is already long.
        if (write || failure.kind === 'timeout' || attempt >= Math.min(opts.maxAttempts, this.client.connectAttempts)) {
          throw unreachableError(this.client, request, failure, attempt, write, e);
        }
        await waitBeforeRetry(`${verb} ${resource}`, retryDelayMs(attempt, { ...opts, maxDelayMs: Math.min(opts.maxDelayMs, 2000) }), this.scope, failure.text);
        continue;
      }
      if (attempt < opts.maxAttempts && isRetryableKubeStatus(resp.httpStatusCode, method, url.pathname)) {
        const header = resp.headers['retry-after'];
        const retryAfter = parseRetryAfter(header);
        // Drain the body so the connection can be reused.
        await resp.body.text().catch(() => '');
        const wait = retryDelayMs(attempt, opts, retryAfter);
        const why = retryAfter !== undefined ? `the server asked for Retry-After ${header}${retryAfter > wait ? `, capped at ${formatMs(wait)}` : ''}` : `backoff, attempt ${attempt + 1} of ${opts.maxAttempts}`;
        await waitBeforeRetry(`${verb} ${resource}`, wait, this.scope, `HTTP ${resp.httpStatusCode}`, why);
        continue;
      }
      return resp;
    }
  }
}

/**
 * Which Kubernetes answers are retried: 429 (API priority and fairness) except on an
 * eviction, where 429 means a PodDisruptionBudget said no and the drain step decides; 5xx
 * only for reads, since a write may have been applied before the error.
 */
export function isRetryableKubeStatus(status: number, method: string, path: string): boolean {
  if (status === 429) return !path.endsWith('/eviction');
  // A pod proxy's 5xx is the pod's own answer (or it is not ready): the caller decides.
  if (status === 500 || status === 502 || status === 503 || status === 504) return (method === 'GET' || method === 'HEAD') && !/\/proxy(\/|$)/.test(path);
  return false;
}

/**
 * Verb and resource of a request in the API server's own terms (`list pods`,
 * `patch daemonsets.apps`, `create pods/eviction`, `get pods/proxy`), for counting.
 */
export function describeKubeRequest(method: string, path: string, query?: URLSearchParams): { verb: string; resource: string } {
  const parts = path.split('/').filter(Boolean);
  let group = '';
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 2) rest = parts.slice(2);
  else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1];
    rest = parts.slice(3);
  } else return { verb: 'get', resource: 'discovery' };
  if (rest.length === 0) return { verb: 'get', resource: 'discovery' };
  if (rest[0] === 'namespaces' && rest.length >= 3) rest = rest.slice(2);
  const [plural, name, sub] = rest;
  const resource = `${plural}${group ? '.' + group : ''}${sub ? '/' + sub : ''}`;
  let verb: string;
  switch (method) {
    case 'GET':
      verb = name === undefined ? (query?.get('watch') === 'true' || query?.get('watch') === '1' ? 'watch' : 'list') : 'get';
      break;
    case 'POST': verb = 'create'; break;
    case 'PUT': verb = 'update'; break;
    case 'PATCH': verb = 'patch'; break;
    case 'DELETE': verb = name === undefined ? 'deletecollection' : 'delete'; break;
    default: verb = method.toLowerCase();
  }
  return { verb, resource };
}

/** Builds a typed error from a non-2xx answer, reading the `v1.Status` when there is one. */
export function toKubeApiError(resp: KubeResponse, method: string, path: string): KubeApiError {
  let reason: string | undefined;
  let message = resp.text.slice(0, 500) || `HTTP ${resp.status}`;
  let details: unknown;
  try {
    const body = JSON.parse(resp.text) as { kind?: string; reason?: string; message?: string; details?: unknown };
    if (body && body.kind === 'Status') {
      reason = body.reason || undefined;
      message = body.message ?? message;
      details = body.details;
    }
  } catch {
    // Not JSON (a proxy or a load balancer answered): keep the text.
  }
  return new KubeApiError({ status: resp.status, reason, message, details, method, path });
}

function contextLine(client: KubeClient): string {
  return `the API server ${client.server} of kubeconfig context "${client.contextName}"`;
}

function unreachableError(client: KubeClient, request: string, failure: NetworkFailure, attempts: number, write: boolean, cause: unknown): EndpointUnreachableError {
  const what =
    failure.kind === 'refused' ? 'refuses connections'
    : failure.kind === 'dns' ? 'has a host name that does not resolve'
    : failure.kind === 'timeout' ? 'did not answer in time'
    : failure.kind === 'unreachable' ? 'is not reachable from this network'
    : 'dropped the connection';
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  const applied = write && failure.kind !== 'refused' && failure.kind !== 'dns' ? ' The write may or may not have been applied; the next run reads the object again before writing.' : '';
  return new EndpointUnreachableError(
    'kubernetes',
    client.server,
    `${contextLine(client)} ${what}${tries}: ${request}: ${failure.text}.${applied}`,
    [
      `Check that --context/--kubeconfig select the right cluster (now: context "${client.contextName}", server ${client.server}; \`kubectl config get-contexts\`),`,
      'that the cluster is running (`az aks show -g <group> -n <name> --query powerState`), and that this machine reaches it (VPN, private cluster DNS, firewall).',
      'For the sandbox: `podid-migrate sandbox status`, then `source .sandbox/env`. Then run the same command again.',
    ].join('\n'),
    { cause },
  );
}

/** TLS alerts a server sends when it refuses the client certificate (expired, revoked, another cluster's CA). */
const CLIENT_CERT_REJECTED = /ALERT_(BAD_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|CERTIFICATE_UNKNOWN|UNKNOWN_CA|CERTIFICATE_REQUIRED|ACCESS_DENIED)/;

/**
 * A TLS failure as what it is: the server's certificate not trusted here ({@link TlsTrustError}),
 * or the server refusing this context's client certificate ({@link AuthenticationError}).
 */
export function tlsError(client: KubeClient, request: string, failure: NetworkFailure, cause: unknown): TlsTrustError | AuthenticationError {
  if (failure.code && CLIENT_CERT_REJECTED.test(failure.code)) {
    return new AuthenticationError(
      'kubernetes',
      `${contextLine(client)} refused the client certificate of user "${client.userName}" (${failure.code}: expired, revoked or issued for another cluster): ${request}.`,
      credentialHint(client),
      { cause },
    );
  }
  return new TlsTrustError(
    'kubernetes',
    `the certificate of ${contextLine(client)} is not trusted (${failure.code}): ${request}: ${failure.text}.`,
    [
      `The kubeconfig's certificate-authority-data for cluster "${client.clusterName}" does not match the server (or the server name is not in its certificate).`,
      'Fetch the kubeconfig again (`az aks get-credentials -g <group> -n <name> --overwrite-existing`); for the sandbox, `source .sandbox/env` to use its kubeconfig and CA.',
      'Do not turn off verification: the tool sends a bearer token to this server.',
    ].join('\n'),
    { cause },
  );
}

function credentialHint(client: KubeClient): string {
  return [
    `Get fresh credentials for context "${client.contextName}": \`az aks get-credentials -g <group> -n <name> --overwrite-existing\``,
    '(with Azure AD: then `kubelogin convert-kubeconfig -l azurecli` after `az login`); for the sandbox, `source .sandbox/env`. Then run the same command again.',
  ].join('\n');
}

/**
 * 401 and 403 from the API server as the environment problems they are: the credential of the
 * context was refused, or it lacks a permission (named from the request and the `v1.Status`).
 */
export function classifyAccessFailure(error: KubeApiError, client: KubeClient, method: string, path: string): AuthenticationError | PermissionDeniedError | undefined {
  if (error.status === 401) {
    return new AuthenticationError(
      'kubernetes',
      `${contextLine(client)} refused the credentials of user "${client.userName}" (401 Unauthorized: missing, invalid or expired): ${method} ${path}.`,
      credentialHint(client),
      { cause: error },
    );
  }
  if (error.status !== 403) return undefined;
  const { verb, resource } = describeKubeRequest(method, path);
  const ns = /\/namespaces\/([^/]+)\//.exec(path)?.[1];
  const refused = `${verb} ${resource}${ns ? ` in namespace ${ns}` : ''}`;
  const scope = ns ? `-n ${ns}` : resource === 'namespaces' || resource === 'nodes' || resource.startsWith('clusterrole') || resource.startsWith('customresourcedefinitions') ? '' : '--all-namespaces';
  return new PermissionDeniedError(
    'kubernetes',
    refused,
    `kubeconfig context "${client.contextName}" (user "${client.userName}") may not ${refused}: ${error.serverMessage}`,
    [
      `Check with \`kubectl auth can-i ${verb} ${resource}${scope ? ' ' + scope : ''}\`. The migration reads and changes Pod Identity, its DaemonSet/Deployment, RBAC, nodes and pods cluster-wide:`,
      'use a context bound to cluster-admin (on AKS with Azure RBAC: "Azure Kubernetes Service RBAC Cluster Admin"), or ask the cluster admin to grant it. Then run the same command again.',
    ].join('\n'),
    { cause: error },
  );
}

function firstLine(s: string): string {
  return s.split('\n')[0].trim();
}

