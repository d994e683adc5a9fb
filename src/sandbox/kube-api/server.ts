/**
 * The sandbox's Kubernetes API server: HTTPS on 127.0.0.1 over the shared
 * {@link ObjectStore}, faithful enough for `@kubernetes/client-node` and stock `kubectl`.
 *
 * It authenticates a single bearer token, serves discovery, the REST verbs with selectors,
 * paging and watch, the three patch formats, `dryRun=All`, the `status` / `scale` /
 * `eviction` / `log` / `proxy` subresources and server-side printing (Tables for
 * `kubectl get`). Every request is counted in {@link Metrics}, and {@link FaultInjector}
 * rules for api `kube` act on it. The server holds no state of its own besides open watches:
 * the store is the cluster.
 *
 * It does not create the system namespaces (see `bootstrapNamespaces` in `types.ts`) and
 * runs no controllers: a Deployment created here gets no pods unless the sandbox's
 * controllers run against the same store.
 */
import * as https from 'node:https';
import type * as http from 'node:http';
import type { Socket } from 'node:net';
import type { Clock } from '../clock.ts';
import type { FaultInjector } from '../faults.ts';
import { isMutating, type Metrics } from '../metrics.ts';
import type { PodNetwork } from '../netsim.ts';
import type { PodLogs } from '../pod-logs.ts';
import type { KObject, ObjectStore, ResourceType, WatchEvent } from '../store.ts';
import { StoreError } from '../store.ts';
import type { SandboxTls } from '../tls.ts';
import { matchFields, matchLabels } from '../selectors.ts';
import { apiGroup, apiGroupList, apiResourceList, apiVersions, openApiV2Document, openApiV3Document, openApiV3Index, SERVER_VERSION } from './discovery.ts';
import {
  createObject,
  decodeBody,
  deleteCollection,
  deleteObject,
  handleScale,
  isCustomType,
  type HandlerResult,
  listBody,
  listPage,
  parseSelectors,
  patchObject,
  type RequestInput,
  updateObject,
} from './handlers.ts';
import { evictPod, podLog, proxyRequest } from './pod-subresources.ts';
import { metricsResource, resolveResourcePath, type ResourceRoute } from './routes.ts';
import { ApiError, badRequest, failureStatus, methodNotAllowed, notFoundPath, toStatus } from './status.ts';
import { type IncludeObject, toTable } from './table.ts';
import { listenOnLoopback } from '../listen.ts';
import { isoSeconds } from '../clock.ts';
import { PROTOBUF_MEDIA_TYPE } from './protobuf.ts';
import { checkEscalation, forbiddenMessage, forbiddenPathMessage, RbacAuthorizer, type ResourceAttributes, type TokenUser, type UserInfo } from './rbac.ts';
import { answerReview, isReviewType } from './reviews.ts';
import { ClientTime } from './client-time.ts';
import { fromEventsV1, isEventsV1, toEventsV1 } from './events-v1.ts';

/** The administrator's identity (what AKS's admin credentials authenticate as). */
export const ADMIN_USER: UserInfo = { username: 'masterclient', groups: ['system:masters', 'system:authenticated'] };

/** The verb RBAC checks for a request (proxy and log are checked as the HTTP verb they use). */
function authorizationVerb(method: string, route: ResourceRoute, query: URLSearchParams): string {
  const named = route.name !== undefined;
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (!route.subresource && (query.get('watch') === 'true' || query.get('watch') === '1')) return 'watch';
      return named ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return named ? 'delete' : 'deletecollection';
    default:
      return method.toLowerCase();
  }
}

export interface KubeApiServerOptions {
  store: ObjectStore;
  tls: SandboxTls;
  /** Bearer token of the administrator (a member of `system:masters`, allowed everything). */
  token: string;
  /** Further users, each with a bearer token; RBAC decides what they may do. */
  users?: readonly TokenUser[];
  metrics: Metrics;
  faults: FaultInjector;
  network: PodNetwork;
  logs: PodLogs;
  clock: Clock;
  /** Handles `/_sandbox/...` requests (already authenticated); return false to answer 404. */
  control?: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean | Promise<boolean>;
  /** 0 (default) picks a free port. */
  port?: number;
  /**
   * Subresources served by other sandbox components, keyed `<resource>[.<group>]/<sub>`
   * (e.g. `serviceaccounts/token`); the type must list the subresource.
   */
  subresources?: Record<string, (method: string, route: ResourceRoute, input: RequestInput) => HandlerResult>;
}

/** A running server. `close` ends open watches and stops listening. */
export interface KubeApiServer {
  /** `https://127.0.0.1:<port>` */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** What one request turned into, for metrics and faults. */
interface Classified {
  verb: string;
  resource: string;
  route?: ResourceRoute;
}

class Exchange {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly opts: KubeApiServerOptions;
  readonly time: ClientTime;
  verb = 'get';
  resource = '';
  dryRun = false;
  private recorded = false;

  constructor(req: http.IncomingMessage, res: http.ServerResponse, opts: KubeApiServerOptions, time: ClientTime) {
    this.req = req;
    this.res = res;
    this.opts = opts;
    this.time = time;
  }

  record(status: number): void {
    if (this.recorded) return;
    this.recorded = true;
    this.opts.metrics.record({ api: 'kube', verb: this.verb, resource: this.resource, status, dryRun: this.dryRun || undefined, caller: 'client' });
  }

  send(status: number, body: string, headers: Record<string, string>): void {
    this.record(status);
    if (this.res.destroyed || this.res.headersSent) return;
    this.res.writeHead(status, { 'Cache-Control': 'no-cache, private', ...headers, 'Content-Length': String(Buffer.byteLength(body)) });
    this.res.end(body);
  }

  /** Sends JSON; timestamps are mapped to client time unless `converted` says they already are. */
  json(status: number, body: unknown, headers: Record<string, string> = {}, converted = false): void {
    this.send(status, converted ? JSON.stringify(body) : this.time.stringify(body), { 'Content-Type': 'application/json', ...headers });
  }

  error(e: unknown): void {
    const { status, retryAfterSeconds } = toStatus(e);
    const headers: Record<string, string> = {};
    if (retryAfterSeconds) headers['Retry-After'] = String(retryAfterSeconds);
    this.json(status.code, status, headers);
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** True when the Accept header asks for a meta.k8s.io Table (server-side printing). */
function wantsTable(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(',').some((part) => /(^|;)\s*as=Table\b/.test(part) && /g=meta\.k8s\.io/.test(part));
}

function includeObjectOf(query: URLSearchParams): IncludeObject {
  const v = query.get('includeObject');
  return v === 'None' || v === 'Object' ? v : 'Metadata';
}

function classify(method: string, route: ResourceRoute, query: URLSearchParams): Classified {
  const resource = metricsResource(route);
  const sub = route.subresource;
  if (sub === 'proxy') return { verb: 'proxy', resource, route };
  if (sub === 'log') return { verb: 'log', resource, route };
  const named = route.name !== undefined;
  const watch = query.get('watch') === 'true' || query.get('watch') === '1';
  switch (method) {
    case 'GET':
      if (watch) return { verb: 'watch', resource, route };
      return { verb: named ? 'get' : 'list', resource, route };
    case 'POST':
      return { verb: 'create', resource, route };
    case 'PUT':
      return { verb: 'update', resource, route };
    case 'PATCH':
      return { verb: 'patch', resource, route };
    case 'DELETE':
      return { verb: named ? 'delete' : 'deletecollection', resource, route };
    default:
      return { verb: method.toLowerCase(), resource, route };
  }
}

function parseDryRun(query: URLSearchParams): boolean {
  const values = query.getAll('dryRun');
  for (const v of values) if (v !== 'All') throw badRequest(`Invalid dryRun value: "${v}": supported values: "All"`);
  return values.length > 0;
}

/** Starts the API server. Resolves once it listens. */
export async function startKubeApiServer(opts: KubeApiServerOptions): Promise<KubeApiServer> {
  const sockets = new Set<Socket>();
  const watches = new Set<() => void>();
  const rbac = new RbacAuthorizer(opts.store);
  const clientTime = new ClientTime(opts.clock);
  const tokens = new Map<string, UserInfo>([[opts.token, ADMIN_USER]]);
  for (const u of opts.users ?? []) tokens.set(u.token, { username: u.username, uid: u.uid, groups: [...new Set([...u.groups, 'system:authenticated'])] });
  const authenticate = (header: string | undefined): UserInfo | undefined => {
    const m = /^Bearer (.+)$/.exec(header ?? '');
    return m ? tokens.get(m[1]) : undefined;
  };
  let serverAddress = '127.0.0.1:0';

  const server = https.createServer({ cert: opts.tls.certPem, key: opts.tls.keyPem }, (req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent && !res.destroyed) {
        const s = toStatus(e).status;
        res.writeHead(s.code, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(s));
      }
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const ex = new Exchange(req, res, opts, clientTime);
    const body = await readBody(req);
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const path = url.pathname;
    const method = (req.method ?? 'GET').toUpperCase();
    ex.resource = path;

    if (path === '/healthz' || path === '/livez' || path === '/readyz') {
      ex.send(200, 'ok', { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      return;
    }
    let user = authenticate(req.headers.authorization);
    if (!user) {
      ex.json(401, failureStatus(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    // Impersonation (`kubectl --as/--as-group`): allowed by the `impersonate` verb on users / groups.
    const asUser = req.headers['impersonate-user'];
    if (typeof asUser === 'string' && asUser) {
      const rawGroups = req.headers['impersonate-group'];
      const asGroups = (Array.isArray(rawGroups) ? rawGroups : rawGroups ? String(rawGroups).split(',') : []).map((g) => g.trim()).filter(Boolean);
      const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(asUser);
      const checks = [sa ? { resource: 'serviceaccounts', namespace: sa[1], name: sa[2] } : { resource: 'users', name: asUser }, ...asGroups.map((g) => ({ resource: 'groups', name: g }))];
      for (const c of checks) {
        const attrs: ResourceAttributes = { verb: 'impersonate', group: '', resource: c.resource, namespace: (c as { namespace?: string }).namespace, name: c.name };
        if (!rbac.authorize(user, attrs).allowed) {
          ex.json(403, failureStatus(403, 'Forbidden', forbiddenMessage(user, attrs), { name: c.name, kind: c.resource }));
          return;
        }
      }
      const groups = [...asGroups, ...(sa ? ['system:serviceaccounts', `system:serviceaccounts:${sa[1]}`] : []), 'system:authenticated'];
      user = { username: asUser, groups: [...new Set(groups)] };
    }
    if (path.startsWith('/_sandbox/')) {
      if (!user.groups.includes('system:masters')) {
        ex.json(403, failureStatus(403, 'Forbidden', forbiddenPathMessage(user, { verb: method.toLowerCase(), path }), {}));
        return;
      }
      // Control requests are the sandbox's own API: not counted, never faulted.
      const handled = opts.control ? await opts.control(req, res, body) : false;
      if (!handled && !res.headersSent) {
        const s = notFoundPath();
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(failureStatus(404, s.reason, s.message, s.details)));
      }
      return;
    }

    let classified: Classified | undefined;
    try {
      classified = classifyPath(method, path, url.searchParams);
      if (classified) {
        ex.verb = classified.verb;
        ex.resource = classified.resource;
      }
      ex.dryRun = parseDryRun(url.searchParams);
      if (classified?.route) {
        const r = classified.route;
        const attrs: ResourceAttributes = { verb: authorizationVerb(method, r, url.searchParams), group: r.type.group, resource: r.type.resource, subresource: r.subresource, namespace: r.namespace, name: r.name };
        if (!rbac.authorize(user, attrs).allowed) {
          ex.json(403, failureStatus(403, 'Forbidden', forbiddenMessage(user, attrs), { name: r.name, group: r.type.group, kind: r.type.resource }));
          return;
        }
      } else if (!classified) {
        const attrs = { verb: method === 'GET' || method === 'HEAD' ? 'get' : method.toLowerCase(), path };
        if (!rbac.authorizeNonResource(user, attrs).allowed) {
          ex.json(403, failureStatus(403, 'Forbidden', forbiddenPathMessage(user, attrs), {}));
          return;
        }
      }
    } catch (e) {
      if (classified) {
        ex.verb = classified.verb;
        ex.resource = classified.resource;
      }
      ex.error(e);
      return;
    }

    const mutating = Boolean(classified) && !ex.dryRun && isMutating({ verb: classified!.verb, resource: classified!.resource });
    const rule = opts.faults.match('kube', method, path, { mutating });
    if (rule?.action.kind === 'hold-request') {
      // Nothing is applied while held; a client that gave up meanwhile never had its request served.
      const clientGone = new Promise<void>((resolve) => {
        if (req.socket.destroyed) resolve();
        res.once('close', () => resolve());
      });
      if ((await opts.faults.holdRequest(rule.id, { method, path }, clientGone)) === 'dropped' || res.destroyed) {
        ex.record(499);
        return;
      }
    }
    if (rule?.action.kind === 'status') {
      const a = rule.action;
      const headers: Record<string, string> = {};
      if (a.retryAfterSeconds !== undefined) headers['Retry-After'] = String(a.retryAfterSeconds);
      const reason = a.code ?? reasonForCode(a.status);
      const details = a.retryAfterSeconds !== undefined ? { retryAfterSeconds: a.retryAfterSeconds } : undefined;
      ex.json(a.status, failureStatus(a.status, reason, a.message ?? defaultMessage(a.status), details), headers);
      return;
    }
    if (rule?.action.kind === 'latency') await new Promise<void>((r) => setTimeout(r, (rule.action as { ms: number }).ms));

    const hold = rule?.action.kind === 'hold-response' ? rule : undefined;
    // With a hold-response rule the work is done (a mutation is applied) but the answer waits
    // for the rule's removal; a client that gave up meanwhile gets nothing.
    const respond = async (status: number, fn: () => void) => {
      if (hold) {
        await opts.faults.hold(hold.id, { method, path });
        if (res.destroyed || req.socket.destroyed) {
          ex.record(status);
          return;
        }
      }
      fn();
    };

    try {
      if (!classified) {
        const doc = nonResource(path, req.headers.accept);
        await respond(200, () => ex.json(200, doc));
        return;
      }
      const route = classified.route!;
      const manager = url.searchParams.get('fieldManager') || String(req.headers['user-agent'] ?? 'unknown').split('/')[0] || 'unknown';
      const admit = (t: ResourceType, obj: KObject) => {
        if (t.group === 'rbac.authorization.k8s.io') checkEscalation(rbac, user, t.resource, obj, opts.store);
      };
      const input: RequestInput = { query: url.searchParams, body, contentType: String(req.headers['content-type'] ?? 'application/json'), dryRun: ex.dryRun, clientTime, manager, time: isoSeconds(opts.clock.now()), admit };
      if (classified.verb === 'watch') {
        serveWatch(ex, route, url.searchParams, wantsTable(req.headers.accept));
        return;
      }
      if (classified.verb === 'proxy') {
        const out = await proxyRequest(opts.store, opts.network, route, method, url.searchParams, input, flatHeaders(req));
        await respond(out.status, () => ex.send(out.status, out.body, { 'Content-Type': out.headers['content-type'] ?? out.headers['Content-Type'] ?? 'text/plain; charset=utf-8' }));
        return;
      }
      if (classified.verb === 'log') {
        if (method !== 'GET') throw methodNotAllowed();
        const out = podLog(opts.store, opts.logs, route, url.searchParams);
        if (url.searchParams.get('follow') === 'true' || url.searchParams.get('follow') === '1') {
          followLog(ex, route, out.container, out.text);
          return;
        }
        await respond(out.status, () => ex.send(out.status, out.text, { 'Content-Type': 'text/plain' }));
        return;
      }
      if (route.subresource === 'exec' || route.subresource === 'attach' || route.subresource === 'portforward') {
        // Pods here are simulated: there is no container process to stream from.
        const what = route.subresource === 'portforward' ? 'port-forward to' : route.subresource === 'attach' ? 'attach to' : 'exec into';
        throw new ApiError(400, 'BadRequest', `the podid-migrate sandbox does not run containers, so it cannot ${what} pod ${route.namespace}/${route.name}; its pods are simulated (kubectl logs, describe and the pods/proxy subresource work)`);
      }
      checkMediaType(method, route, input.contentType);
      if (isReviewType(route)) {
        if (method !== 'POST' || route.name !== undefined) throw methodNotAllowed();
        const answer = answerReview(route, input, user, rbac);
        await respond(answer.status, () => ex.json(answer.status, answer.body));
        return;
      }
      const result = execute(method, classified.verb, route, input, req.headers.accept, url.searchParams);
      await respond(result.status, () => ex.json(result.status, result.body, {}, result.converted));
    } catch (e) {
      // A failed request applied nothing, so there is nothing to hold back.
      ex.error(e);
    }
  }

  function classifyPath(method: string, path: string, query: URLSearchParams): Classified | undefined {
    const segs = path.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
    const trailing = path.endsWith('/');
    if (segs[0] === 'api' && segs.length >= 3) {
      if (segs[1] !== 'v1') throw notFoundPath();
      return classify(method, resolveResourcePath(opts.store, '', 'v1', segs.slice(2), trailing), query);
    }
    if (segs[0] === 'apis' && segs.length >= 4) {
      return classify(method, resolveResourcePath(opts.store, segs[1], segs[2], segs.slice(3), trailing), query);
    }
    if (method !== 'GET') throw segs[0] === 'api' || segs[0] === 'apis' ? methodNotAllowed() : notFoundPath();
    return undefined;
  }

  function nonResource(path: string, accept: string | undefined): unknown {
    const segs = path.split('/').filter((s) => s !== '');
    if (path === '/version' || path === '/version/') return SERVER_VERSION;
    if (path === '/api' || path === '/api/') return apiVersions(serverAddress);
    if (path === '/apis' || path === '/apis/') return apiGroupList(opts.store);
    if (segs[0] === 'api' && segs.length === 2) {
      const doc = apiResourceList(opts.store, '', segs[1]);
      if (doc) return doc;
    }
    if (segs[0] === 'apis' && segs.length === 2) {
      const doc = apiGroup(opts.store, segs[1]);
      if (doc) return doc;
    }
    if (segs[0] === 'apis' && segs.length === 3) {
      const doc = apiResourceList(opts.store, segs[1], segs[2]);
      if (doc) return doc;
    }
    if (path === '/openapi/v2' || path === '/openapi/v2/') {
      // Served as JSON only; a client that accepts nothing but the protobuf encoding is told so.
      if (accept && !/application\/json|\*\/\*/.test(accept)) throw new ApiError(406, 'NotAcceptable', `only the following media types are accepted: application/json`);
      return openApiV2Document(opts.store);
    }
    if (path === '/openapi/v3' || path === '/openapi/v3/') return openApiV3Index(opts.store);
    if (segs[0] === 'openapi' && segs[1] === 'v3') {
      const gv = segs.slice(2);
      const doc = gv[0] === 'api' && gv.length === 2 ? openApiV3Document(opts.store, '', gv[1]) : gv[0] === 'apis' && gv.length === 3 ? openApiV3Document(opts.store, gv[1], gv[2]) : undefined;
      if (doc) return doc;
    }
    throw notFoundPath();
  }

  function checkMediaType(method: string, route: ResourceRoute, contentType: string): void {
    if (method !== 'POST' && method !== 'PUT') return;
    // A subresource served by another component decodes its own bodies (TokenRequest comes as protobuf from kubectl).
    if (route.subresource && opts.subresources?.[metricsResource(route)]) return;
    const ct = contentType.split(';')[0].trim().toLowerCase();
    if (ct === '' || ct === 'application/json' || ct === 'application/yaml' || ct === '*/*') return;
    // Built-in kinds also accept protobuf; custom resources only JSON and YAML, as upstream.
    const custom = isCustomType(opts.store, route.type);
    if (ct === PROTOBUF_MEDIA_TYPE && !custom) return;
    const accepted = custom ? 'application/json, application/yaml' : `application/json, application/yaml, ${PROTOBUF_MEDIA_TYPE}`;
    throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${accepted}`);
  }

  function execute(method: string, verb: string, route: ResourceRoute, input: RequestInput, accept: string | undefined, query: URLSearchParams): HandlerResult {
    const { store, clock } = opts;
    if (isEventsV1(route.type)) return executeEventsV1(verb, route, accept, query, input);
    const t = route.type;
    const sub = route.subresource;
    if (!t.verbs.includes(verb) && !sub) throw methodNotAllowed();
    const extra = sub ? opts.subresources?.[metricsResource(route)] : undefined;
    if (extra) return extra(method, route, input);
    if (sub === 'scale') return handleScale(store, route, method, input);
    if (sub === 'eviction') {
      if (method !== 'POST') throw methodNotAllowed();
      return evictPod(store, clock, route, input);
    }
    if (sub === 'finalize') {
      if (method !== 'PUT') throw methodNotAllowed();
      return updateObject(store, { ...route, subresource: undefined }, input);
    }
    switch (verb) {
      case 'get': {
        const obj = store.getOrThrow(t, route.namespace, route.name!);
        if (wantsTable(accept)) return { status: 200, converted: true, body: toTable(t, [clientTime.copyOut(obj)], { now: clientTime.now(), includeObject: includeObjectOf(query) }) };
        return { status: 200, body: obj };
      }
      case 'list': {
        if (sub) throw methodNotAllowed();
        const page = listPage(store, route, query);
        if (wantsTable(accept)) {
          return { status: 200, converted: true, body: toTable(t, clientTime.copyOut(page.items), { now: clientTime.now(), includeObject: includeObjectOf(query), resourceVersion: page.resourceVersion, continue: page.continue, remainingItemCount: page.remainingItemCount }) };
        }
        return { status: 200, body: listBody(t, page) };
      }
      case 'create':
        if (sub) throw methodNotAllowed();
        return createObject(store, route, input);
      case 'update':
        return updateObject(store, route, input);
      case 'patch':
        return patchObject(store, route, input);
      case 'delete':
        if (sub) throw methodNotAllowed();
        return deleteObject(store, route, input);
      case 'deletecollection':
        return deleteCollection(store, route, input);
      default:
        throw methodNotAllowed();
    }
  }

  /**
   * `logs -f`: the log so far, then each new line as the simulated container writes it, until
   * the pod is gone or has finished, or the client hangs up.
   */
  function followLog(ex: Exchange, route: ResourceRoute, container: string, initial: string): void {
    const res = ex.res;
    ex.record(200);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    if (initial) res.write(initial);
    else res.flushHeaders();
    const ns = route.namespace!;
    const name = route.name!;
    const offLogs = opts.logs.subscribe((n, p, c, line) => {
      if (n === ns && p === name && c === container && !res.destroyed) res.write(line + '\n');
    });
    const offStore = opts.store.subscribe((ev) => {
      if (!sameType(ev.resourceType, route.type) || ev.object.metadata.namespace !== ns || ev.object.metadata.name !== name) return;
      const phase = ev.object.status?.phase;
      if (ev.type === 'DELETED' || phase === 'Succeeded' || phase === 'Failed') stop();
    });
    const stop = () => {
      offLogs();
      offStore();
      watches.delete(stop);
      if (!res.writableEnded) res.end();
    };
    watches.add(stop);
    ex.req.on('close', stop);
    res.on('close', stop);
  }

  /** events.k8s.io/v1 reads: the core Events, converted. */
  function executeEventsV1(verb: string, route: ResourceRoute, accept: string | undefined, query: URLSearchParams, input: RequestInput): HandlerResult {
    const core = { ...route, type: opts.store.typeOrThrow('', 'events') };
    if (verb === 'get') {
      const obj = toEventsV1(opts.store.getOrThrow(core.type, route.namespace, route.name!));
      if (wantsTable(accept)) return { status: 200, converted: true, body: toTable(route.type, [clientTime.copyOut(obj)], { now: clientTime.now(), includeObject: includeObjectOf(query) }) };
      return { status: 200, body: obj };
    }
    if (verb === 'create') {
      // client-go's events.k8s.io recorder: stored as the core Event, answered in its own schema.
      const body = decodeBody(input);
      if (body?.kind && body.kind !== 'Event') throw badRequest(`${body.kind} in version "v1" cannot be handled as a Event: the kind in the data does not match the expected kind`);
      const created = createObject(opts.store, core, { ...input, body: Buffer.from(JSON.stringify(fromEventsV1(body ?? {}))), contentType: 'application/json', clientTime: undefined });
      return { status: 201, body: toEventsV1(created.body as KObject) };
    }
    if (verb !== 'list') throw methodNotAllowed();
    const page = listPage(opts.store, core, query);
    const items = page.items.map(toEventsV1);
    if (wantsTable(accept)) return { status: 200, converted: true, body: toTable(route.type, clientTime.copyOut(items), { now: clientTime.now(), includeObject: includeObjectOf(query), resourceVersion: page.resourceVersion, continue: page.continue }) };
    return { status: 200, body: listBody(route.type, { ...page, items }) };
  }

  /** A chunked stream of `{"type":..., "object":...}` lines, as the real watch answers. */
  function serveWatch(ex: Exchange, requested: ResourceRoute, query: URLSearchParams, table: boolean): void {
    const { store } = opts;
    // events.k8s.io/v1 watches the core Events and converts each one.
    const eventsV1 = isEventsV1(requested.type);
    const route = eventsV1 ? { ...requested, type: store.typeOrThrow('', 'events') } : requested;
    const convert = (o: unknown) => (eventsV1 ? toEventsV1(o as KObject) : o);
    const t = route.type;
    const { labels, fields } = parseSelectors(t, query);
    const rvParam = query.get('resourceVersion');
    if (rvParam && rvParam !== '0' && !/^\d+$/.test(rvParam)) throw badRequest(`invalid resource version: ${rvParam}`);
    const filtered = labels.length > 0 || fields.length > 0;
    const matches = (o: Readonly<KObject>) =>
      (!route.namespace || o.metadata.namespace === route.namespace) &&
      (route.name === undefined || o.metadata.name === route.name) && (!labels.length || matchLabels(labels, o.metadata.labels)) && (!fields.length || matchFields(fields, o));
    const keyOf = (o: Readonly<KObject>) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    // With selectors, an object that stops matching is reported as DELETED (and ADDED when it
    // starts matching), as the real watch cache does.
    const inView = new Set<string>();
    const res = ex.res;
    ex.record(200);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const write = (type: string, raw: unknown) => {
      if (res.destroyed) return;
      const object = type === 'ERROR' ? raw : convert(raw);
      const line = table && type !== 'ERROR' ? JSON.stringify({ type, object: toTable(requested.type, [clientTime.copyOut(object as KObject)], { now: clientTime.now(), includeObject: includeObjectOf(query) }) }) : clientTime.stringify({ type, object });
      res.write(line + '\n');
    };
    const deliver = (ev: Pick<WatchEvent, 'type' | 'object'>) => {
      const key = keyOf(ev.object);
      const now = ev.type !== 'DELETED' && matches(ev.object);
      const before = inView.has(key);
      if (!filtered) {
        if (!matches(ev.object)) return;
        write(ev.type, ev.object);
        return;
      }
      if (ev.type === 'DELETED') {
        if (before || matches(ev.object)) write('DELETED', ev.object);
        inView.delete(key);
      } else if (now && before) write('MODIFIED', ev.object);
      else if (now && !before) {
        write('ADDED', ev.object);
        inView.add(key);
      } else if (!now && before) {
        write('DELETED', ev.object);
        inView.delete(key);
      }
    };
    let last: number;
    if (!rvParam || rvParam === '0') {
      for (const o of store.scan(t, { namespace: route.namespace, labelSelector: labels, fieldSelector: fields })) if (matches(o)) deliver({ type: 'ADDED', object: o as KObject });
      last = store.currentResourceVersion();
    } else {
      let events: WatchEvent[];
      try {
        events = store.eventsSince(Number(rvParam));
      } catch (e) {
        if (e instanceof StoreError && e.reason === 'Gone') {
          write('ERROR', failureStatus(410, 'Expired', e.message));
          res.end();
          return;
        }
        throw e;
      }
      if (filtered) for (const o of store.scan(t, { namespace: route.namespace, labelSelector: labels, fieldSelector: fields })) inView.add(keyOf(o));
      for (const ev of events) if (sameType(ev.resourceType, t)) deliver(ev);
      last = store.currentResourceVersion();
    }
    const unsubscribe = store.subscribe((ev) => {
      if (ev.resourceVersion <= last || !sameType(ev.resourceType, t)) return;
      deliver(ev);
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = () => {
      unsubscribe();
      clearTimeout(timer);
      watches.delete(stop);
      if (!res.writableEnded) res.end();
    };
    watches.add(stop);
    const timeout = Number(query.get('timeoutSeconds') ?? 0);
    // Seconds as the client counts them: the timestamps it sees are on its own clock too.
    if (timeout > 0) {
      timer = setTimeout(stop, timeout * 1000);
      timer.unref();
    }
    ex.req.on('close', stop);
    res.on('close', stop);
  }

  const port = await listenOnLoopback(server, opts.port ?? 0);
  serverAddress = `127.0.0.1:${port}`;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    close: async () => {
      rbac.close();
      for (const stop of [...watches]) stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

function sameType(a: ResourceType, b: ResourceType): boolean {
  return a.group === b.group && a.resource === b.resource;
}

function flatHeaders(req: http.IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Gone',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

function reasonForCode(code: number): string | undefined {
  return REASONS[code];
}

function defaultMessage(code: number): string {
  if (code === 429) return 'the server has received too many requests and has asked us to try again later';
  if (code === 503) return 'the server is currently unable to handle the request';
  if (code === 500) return 'an error on the server ("") has prevented the request from succeeding';
  if (code === 504) return 'the server was unable to return a response in the time allotted, but may still be processing the request';
  return `the server answered ${code}`;
}
