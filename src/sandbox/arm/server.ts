/**
 * The sandbox's Azure Resource Manager endpoint: HTTPS on 127.0.0.1 over an {@link ArmState},
 * close enough to management.azure.com that the real `@azure/arm-*` clients work unchanged.
 *
 * - Bearer token required (401 `AuthenticationFailed` / `InvalidAuthenticationToken`), and an
 *   `api-version` query parameter (400 `MissingApiVersionParameter`).
 * - Paths are matched case-insensitively, as ARM does.
 * - Long-running operations as compute runs them: a VMSS PATCH answers 200 with the new model
 *   (`provisioningState: Updating`) and an `Azure-AsyncOperation` header; instance actions
 *   (`manualupgrade`, `reimage`, `delete`) answer 202 with `Location` and
 *   `Azure-AsyncOperation`. The operation URL answers 200 with
 *   `{"startTime","status","name"}` (+ `endTime`, `error`); the Location URL answers 202 while
 *   running, then 200 (or the error). This is what `@azure/core-lro` polls.
 * - Every response carries `x-ms-ratelimit-remaining-subscription-reads|writes`, and compute
 *   responses `x-ms-ratelimit-remaining-resource`, counted in simulated-time windows
 *   (informational: throttling itself comes only from fault rules).
 * - Fault rules for api `arm`: status (+ `Retry-After`), latency, `lro-fail`, `hold-response`.
 * - Every request is counted in {@link Metrics} by HTTP method and Swagger operation id.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { setTimeout as realDelay } from 'node:timers/promises';
import type { Clock } from '../clock.ts';
import type { Metrics } from '../metrics.ts';
import type { FaultInjector } from '../faults.ts';
import type { SandboxTls } from '../tls.ts';
import { ArmError, etagOf, notFound, type ArmOperation, type ArmState, type InjectedFailure, type ScaleSet, type ScaleSetInstance, type UserAssignedIdentity } from './state.ts';
import { listenOnLoopback } from '../listen.ts';

/** Options of {@link startArmServer}. */
export interface ArmServerOptions {
  state: ArmState;
  tls: SandboxTls;
  /** The only bearer token accepted. */
  token: string;
  metrics: Metrics;
  faults: FaultInjector;
  clock: Clock;
  /** 0 or absent: any free port. */
  port?: number;
  /** Items per page of list operations before a `nextLink` is given (default 100). */
  pageSize?: number;
  /** Routes other sandbox components add (workload identity); asked first, in order. */
  extensions?: ArmRouteExtension[];
}

/** A request as an {@link ArmRouteExtension} sees it (authenticated, api-version checked, faults applied). */
export interface ArmExtensionRequest {
  method: string;
  /** Path segments after `/subscriptions/<id>`, decoded, as sent. */
  segs: string[];
  /** The same, lower-cased. */
  lower: string[];
  query: URLSearchParams;
  body: unknown;
  apiVersion: string;
  /** Set by an `lro-fail` fault rule. */
  fail?: InjectedFailure;
  /** The managed cluster as GET serves it (after every extension's decoration). */
  managedClusterJson(): Record<string, any> | undefined;
  /** Records a long-running operation; returns its polling URLs under `<provider>/locations/<location>/operations`. */
  trackOperation(op: ArmOperation, provider: string, location: string): { asyncOperation: string; location: string };
}

/** What an extension answers. */
export interface ArmExtensionReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** Routes a sandbox component adds to the endpoint without growing this file. */
export interface ArmRouteExtension {
  /** Answers the request, or resolves undefined to let the built-in routes handle it. Throw an `ArmError` to refuse. */
  handle(req: ArmExtensionRequest): Promise<ArmExtensionReply | undefined>;
  /** Completes the managed cluster's JSON (properties the extension owns). */
  decorateManagedCluster?(json: Record<string, any>): void;
}

/** A running endpoint; `close` stops it and drops open (e.g. held) connections. */
export interface ArmServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 4 * 1024 * 1024;
const ASSIGN_ACTION = 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action';
/** Operation records kept for polling; the oldest finished ones are dropped past this. */
const MAX_OPERATIONS = 20_000;

interface AsyncOperation {
  name: string;
  startTime: number;
  endTime?: number;
  status: 'InProgress' | 'Succeeded' | 'Failed';
  error?: ArmError;
}

interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  method: string;
  operation: string;
  status: number;
  apiVersion: string;
  /** Set by a `hold-response` rule: answer nothing after the mutation is applied. */
  holdRule?: string;
  /** Set by an `lro-fail` rule: the long-running operation ends Failed. */
  fail?: InjectedFailure;
  body?: unknown;
}

/** Compute's per-operation-group throttling buckets (name, window in minutes, allowance). */
const COMPUTE_BUCKETS: Record<string, [string, number, number][]> = {
  get: [['GetVMScaleSet3Min', 3, 190], ['GetVMScaleSet30Min', 30, 900]],
  highCostGet: [['HighCostGet3Min', 3, 240], ['HighCostGet30Min', 30, 1200]],
  put: [['PutVMScaleSet3Min', 3, 60], ['PutVMScaleSet30Min', 30, 300]],
  action: [['VMScaleSetBatchedVMRequests5Min', 5, 3750], ['VmssQueuedVMOperations', 0, 4800]],
};

/** Remaining-request counters, reset at each simulated window boundary. */
class RateLimits {
  private readonly used = new Map<string, { window: number; n: number }>();
  private readonly clock: Clock;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  /** Counts one request against `key` and returns what is left of `limit` in the current window. */
  take(key: string, windowMinutes: number, limit: number): number {
    const window = windowMinutes > 0 ? Math.floor(this.clock.now() / (windowMinutes * 60_000)) : 0;
    const cur = this.used.get(key);
    const entry = cur && cur.window === window ? cur : { window, n: 0 };
    entry.n++;
    this.used.set(key, entry);
    return Math.max(0, limit - entry.n);
  }
}

/** Starts the endpoint on 127.0.0.1 and resolves once it listens. */
export async function startArmServer(opts: ArmServerOptions): Promise<ArmServer> {
  const { state, metrics, faults, clock } = opts;
  const pageSize = Math.max(1, opts.pageSize ?? 100);
  const expectedToken = Buffer.from(opts.token);
  const operations = new Map<string, AsyncOperation>();
  const limits = new RateLimits(clock);
  let baseUrl = '';

  const server: Server = createServer({ cert: opts.tls.certPem, key: opts.tls.keyPem }, (req, res) => {
    const ctx: RequestContext = {
      req,
      res,
      url: new URL(req.url ?? '/', 'https://127.0.0.1'),
      method: (req.method ?? 'GET').toUpperCase(),
      operation: 'Unknown',
      status: 0,
      apiVersion: '',
    };
    let recorded = false;
    const record = () => {
      if (recorded) return;
      recorded = true;
      metrics.record({ api: 'arm', verb: ctx.method, resource: ctx.operation, status: ctx.status || 499, caller: 'client' });
    };
    res.on('finish', record);
    res.on('close', record);
    handle(ctx).catch((e) => {
      const err = e instanceof ArmError ? e : new ArmError(500, 'InternalServerError', 'Encountered internal server error. Diagnostic information: timestamp \'' + new Date(clock.now()).toISOString() + '\'.');
      if (!(e instanceof ArmError)) process.emitWarning(`sandbox ARM endpoint: ${(e as Error)?.stack ?? e}`);
      void reply(ctx, err.status, err.toBody());
    });
  });

  // ---- request pipeline --------------------------------------------------------------------

  async function handle(ctx: RequestContext): Promise<void> {
    const segs = ctx.url.pathname.split('/').filter(Boolean).map((s) => decodeURIComponent(s));
    ctx.operation = operationIdFor(ctx.method, segs);
    authenticate(ctx.req);
    const apiVersion = ctx.url.searchParams.get('api-version');
    if (!apiVersion) throw new ArmError(400, 'MissingApiVersionParameter', 'The api-version query parameter (?api-version=) is required for all requests.');
    if (!/^\d{4}-\d{2}-\d{2}(-preview|-beta)?$/i.test(apiVersion)) {
      throw new ArmError(400, 'InvalidApiVersionParameter', `The api-version '${apiVersion}' is invalid. The supported versions are '2026-04-01,2025-04-01,2024-11-30,2024-07-01,2022-04-01'.`);
    }
    ctx.apiVersion = apiVersion;

    const rule = faults.match('arm', ctx.method, ctx.url.pathname, { mutating: ctx.method !== 'GET' && ctx.method !== 'HEAD' });
    if (rule) {
      const a = rule.action;
      if (a.kind === 'hold-request') {
        // Nothing is applied while held; a client that gave up meanwhile never had its request served.
        const clientGone = new Promise<void>((resolve) => {
          if (ctx.req.socket.destroyed) resolve();
          ctx.res.once('close', () => resolve());
        });
        if ((await faults.holdRequest(rule.id, { method: ctx.method, path: ctx.url.pathname }, clientGone)) === 'dropped' || ctx.res.destroyed) {
          ctx.status = 499;
          return;
        }
      }
      if (a.kind === 'status') return replyFault(ctx, a);
      if (a.kind === 'latency') await realDelay(a.ms);
      if (a.kind === 'lro-fail') ctx.fail = { code: a.code, message: a.message };
      if (a.kind === 'hold-response') ctx.holdRule = rule.id;
    }
    if (ctx.method === 'PATCH' || ctx.method === 'POST' || ctx.method === 'PUT') ctx.body = await readJson(ctx.req);
    await route(ctx, segs);
  }

  function authenticate(req: IncomingMessage): void {
    const header = req.headers.authorization;
    if (!header) throw authError('AuthenticationFailed', "Authentication failed. The 'Authorization' header is missing.");
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw authError('AuthenticationFailed', "Authentication failed. The 'Authorization' header is provided in an invalid format.");
    const given = Buffer.from(m[1]);
    if (given.length !== expectedToken.length || !timingSafeEqual(given, expectedToken)) {
      throw authError('InvalidAuthenticationToken', 'The access token is invalid.');
    }
  }

  async function route(ctx: RequestContext, segs: string[]): Promise<void> {
    const lower = segs.map((s) => s.toLowerCase());
    if (lower[0] !== 'subscriptions' || !segs[1]) throw noRoute(ctx, segs);
    if (segs[1].toLowerCase() !== state.subscriptionId.toLowerCase()) {
      throw new ArmError(404, 'SubscriptionNotFound', `The subscription '${segs[1]}' could not be found.`);
    }
    const rest = segs.slice(2);
    const r = lower.slice(2);

    for (const ext of opts.extensions ?? []) {
      const answer = await ext.handle({
        method: ctx.method,
        segs: rest,
        lower: r,
        query: ctx.url.searchParams,
        body: ctx.body,
        apiVersion: ctx.apiVersion,
        fail: ctx.fail,
        managedClusterJson: () => managedClusterJson() as Record<string, any> | undefined,
        trackOperation: (op, provider, location) => {
          const name = track(op);
          return { asyncOperation: operationUrl(location, name, ctx.apiVersion, false, provider), location: operationUrl(location, name, ctx.apiVersion, true, provider) };
        },
      });
      if (answer) return reply(ctx, answer.status, answer.body, answer.headers ?? {});
    }

    // Permissions of the caller at any scope: {scope}/providers/Microsoft.Authorization/permissions
    if (r.length >= 3 && r[r.length - 3] === 'providers' && r[r.length - 2] === 'microsoft.authorization' && r[r.length - 1] === 'permissions') {
      requireMethod(ctx, 'GET');
      return permissions(ctx, rest.slice(0, -3), r.slice(0, -3));
    }

    if (r[0] === 'providers') {
      if (matches(r, ['providers', 'microsoft.managedidentity', 'userassignedidentities'])) {
        requireMethod(ctx, 'GET');
        return page(ctx, state.identities().map(identityJson));
      }
      if (matches(r, ['providers', 'microsoft.compute', 'virtualmachinescalesets'])) {
        requireMethod(ctx, 'GET');
        return page(ctx, state.scaleSets().map(vmssJson), 'get');
      }
      if (matches(r, ['providers', 'microsoft.containerservice', 'managedclusters'])) {
        requireMethod(ctx, 'GET');
        const mc = managedClusterJson();
        return page(ctx, mc ? [mc] : []);
      }
      if (matches(r, ['providers', '*', 'locations', '*', 'operations', '*']) && (r[1] === 'microsoft.compute' || r[1] === 'microsoft.containerservice')) {
        requireMethod(ctx, 'GET');
        return pollOperation(ctx, rest[5]);
      }
      throw noRoute(ctx, segs);
    }

    if (r[0] !== 'resourcegroups' || !rest[1]) throw noRoute(ctx, segs);
    const rgName = state.resourceGroup(rest[1]);
    if (!rgName) throw new ArmError(404, 'ResourceGroupNotFound', `Resource group '${rest[1]}' could not be found.`);
    const rg = r.slice(2);
    const args = rest.slice(2);
    if (rg.length === 0) {
      requireMethod(ctx, 'GET');
      return reply(ctx, 200, {
        id: `/subscriptions/${state.subscriptionId}/resourceGroups/${rgName}`,
        name: rgName,
        type: 'Microsoft.Resources/resourceGroups',
        location: state.managedCluster()?.location ?? 'westeurope',
        properties: { provisioningState: 'Succeeded' },
      });
    }
    if (rg[0] !== 'providers') throw noRoute(ctx, segs);

    // Microsoft.ManagedIdentity
    if (matches(rg, ['providers', 'microsoft.managedidentity', 'userassignedidentities'])) {
      requireMethod(ctx, 'GET');
      return page(ctx, state.identities().filter((i) => i.resourceGroup.toLowerCase() === rgName.toLowerCase()).map(identityJson));
    }
    if (matches(rg, ['providers', 'microsoft.managedidentity', 'userassignedidentities', '*'])) {
      requireMethod(ctx, 'GET');
      return reply(ctx, 200, identityJson(requireIdentity(rgName, args[3])));
    }

    // Microsoft.ContainerService
    if (matches(rg, ['providers', 'microsoft.containerservice', 'managedclusters'])) {
      requireMethod(ctx, 'GET');
      const mc = state.managedCluster();
      const json = managedClusterJson();
      return page(ctx, mc && json && mc.resourceGroup.toLowerCase() === rgName.toLowerCase() ? [json] : []);
    }
    if (rg[1] === 'microsoft.containerservice' && rg[2] === 'managedclusters' && rg.length >= 4) {
      const mc = state.managedCluster();
      if (!mc || mc.resourceGroup.toLowerCase() !== rgName.toLowerCase() || mc.name.toLowerCase() !== rg[3]) {
        throw notFound('Microsoft.ContainerService/managedClusters', args[3], rgName);
      }
      requireMethod(ctx, 'GET');
      if (rg.length === 4) return reply(ctx, 200, managedClusterJson());
      if (matches(rg, ['providers', 'microsoft.containerservice', 'managedclusters', '*', 'agentpools'])) {
        return page(ctx, mc.agentPools.map((p) => agentPoolJson(p.name)!));
      }
      if (matches(rg, ['providers', 'microsoft.containerservice', 'managedclusters', '*', 'agentpools', '*'])) {
        const pool = agentPoolJson(args[5]);
        if (!pool) throw notFound('Microsoft.ContainerService/managedClusters/agentPools', `${mc.name}/${args[5]}`, rgName);
        return reply(ctx, 200, pool);
      }
      throw noRoute(ctx, segs);
    }

    // Microsoft.Compute
    if (matches(rg, ['providers', 'microsoft.compute', 'virtualmachinescalesets'])) {
      requireMethod(ctx, 'GET');
      return page(ctx, state.scaleSets().filter((s) => s.resourceGroup.toLowerCase() === rgName.toLowerCase()).map(vmssJson), 'get');
    }
    if (rg[1] === 'microsoft.compute' && rg[2] === 'virtualmachinescalesets' && rg.length >= 4) {
      const set = state.requireScaleSet(args[3], rgName);
      const sub = rg.slice(4);
      if (sub.length === 0) {
        if (ctx.method === 'GET') return reply(ctx, 200, vmssJson(set), computeHeaders(ctx, 'get'));
        if (ctx.method === 'PATCH') return updateScaleSet(ctx, set);
        throw methodNotAllowed(ctx);
      }
      if (sub.length === 1 && ['manualupgrade', 'reimage', 'delete'].includes(sub[0])) {
        requireMethod(ctx, 'POST');
        return scaleSetAction(ctx, set, sub[0]);
      }
      if (sub[0] === 'virtualmachines') {
        if (sub.length === 1) {
          requireMethod(ctx, 'GET');
          return listInstances(ctx, set);
        }
        const inst = set.instances.get(args[5]);
        if (!inst) throw notFound('Microsoft.Compute/virtualMachineScaleSets/virtualMachines', `${set.name}/${args[5]}`, rgName);
        if (sub.length === 2) {
          if (ctx.method === 'GET') return reply(ctx, 200, vmJson(set, inst, ctx.url.searchParams.get('$expand') === 'instanceView'), computeHeaders(ctx, 'highCostGet'));
          if (ctx.method === 'DELETE') {
            const forceDeletion = ctx.url.searchParams.get('forceDeletion') === 'true';
            return startLro(ctx, set, () => state.beginDeleteInstances(set.name, [inst.instanceId], { caller: 'client', resourceGroup: rgName, fail: ctx.fail, forceDeletion }));
          }
          throw methodNotAllowed(ctx);
        }
        if (sub.length === 3 && sub[2] === 'instanceview') {
          requireMethod(ctx, 'GET');
          return reply(ctx, 200, instanceViewJson(inst), computeHeaders(ctx, 'highCostGet'));
        }
        if (sub.length === 3 && sub[2] === 'reimage') {
          requireMethod(ctx, 'POST');
          return startLro(ctx, set, () => state.beginReimage(set.name, [inst.instanceId], { caller: 'client', resourceGroup: rgName, fail: ctx.fail }));
        }
      }
    }
    throw noRoute(ctx, segs);
  }

  // ---- operations --------------------------------------------------------------------------

  async function updateScaleSet(ctx: RequestContext, set: ScaleSet): Promise<void> {
    const body = (ctx.body ?? {}) as { identity?: unknown; sku?: { capacity?: unknown }; tags?: unknown };
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidContent('The request content must be a JSON object.');
    const identity = body.identity;
    if (identity !== undefined && identity !== null && (typeof identity !== 'object' || Array.isArray(identity))) {
      throw new ArmError(400, 'InvalidParameter', "The value of parameter 'identity' is invalid.", { target: 'identity' });
    }
    const capacity = body.sku?.capacity;
    if (capacity !== undefined && typeof capacity !== 'number') {
      throw new ArmError(400, 'InvalidParameter', "The value of parameter 'sku.capacity' is invalid.", { target: 'sku.capacity' });
    }
    const op = state.beginUpdate(
      set.name,
      { identity: (identity ?? undefined) as { type?: string; userAssignedIdentities?: Record<string, unknown> } | undefined, capacity: capacity as number | undefined },
      { caller: 'client', resourceGroup: set.resourceGroup, fail: ctx.fail, ifMatch: header(ctx.req, 'if-match') },
    );
    // A PATCH replaces the tags map as a whole, as ARM does.
    if (body.tags && typeof body.tags === 'object' && !Array.isArray(body.tags)) set.tags = { ...(body.tags as Record<string, string>) };
    const name = track(op);
    return reply(ctx, 200, vmssJson(set), { ...computeHeaders(ctx, 'put'), 'Azure-AsyncOperation': operationUrl(set.location, name, ctx.apiVersion, false) });
  }

  async function scaleSetAction(ctx: RequestContext, set: ScaleSet, action: string): Promise<void> {
    const body = (ctx.body ?? undefined) as { instanceIds?: string[] } | undefined;
    if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) throw invalidContent('The request content must be a JSON object.');
    const ids = body?.instanceIds;
    const common = { caller: 'client', resourceGroup: set.resourceGroup, fail: ctx.fail };
    if (action === 'manualupgrade') return startLro(ctx, set, () => state.beginUpgradeInstances(set.name, ids as string[], common));
    if (action === 'reimage') return startLro(ctx, set, () => state.beginReimage(set.name, ids, common));
    const forceDeletion = ctx.url.searchParams.get('forceDeletion') === 'true';
    return startLro(ctx, set, () => state.beginDeleteInstances(set.name, ids as string[], { ...common, forceDeletion }));
  }

  /** 202 with `Location` and `Azure-AsyncOperation`, as compute answers its POST actions. */
  async function startLro(ctx: RequestContext, set: ScaleSet, begin: () => ArmOperation): Promise<void> {
    const name = track(begin());
    return reply(ctx, 202, undefined, {
      ...computeHeaders(ctx, 'action'),
      Location: operationUrl(set.location, name, ctx.apiVersion, true),
      'Azure-AsyncOperation': operationUrl(set.location, name, ctx.apiVersion, false),
    });
  }

  /** Records an operation so the polling URLs can report it. */
  function track(op: ArmOperation): string {
    const name = randomUUID();
    const record: AsyncOperation = { name, startTime: op.startedAt, status: 'InProgress' };
    operations.set(name, record);
    op.done.then(
      () => {
        record.status = 'Succeeded';
        record.endTime = clock.now();
      },
      (e) => {
        record.status = 'Failed';
        record.endTime = clock.now();
        record.error = e instanceof ArmError ? e : new ArmError(500, 'InternalExecutionError', String((e as Error)?.message ?? e));
      },
    );
    if (operations.size > MAX_OPERATIONS) {
      for (const [k, v] of operations) {
        if (operations.size <= MAX_OPERATIONS) break;
        if (v.status !== 'InProgress') operations.delete(k);
      }
    }
    return name;
  }

  function pollOperation(ctx: RequestContext, name: string): Promise<void> {
    const op = operations.get(name);
    if (!op) throw new ArmError(404, 'ResourceNotFound', `The operation '${name}' could not be found.`);
    const headers = computeHeaders(ctx, 'get');
    if (ctx.url.searchParams.get('monitor') === 'true') {
      // Location semantics: 202 without a body while running, then the outcome.
      if (op.status === 'InProgress') return reply(ctx, 202, undefined, { ...headers, Location: new URL(ctx.url.pathname + ctx.url.search, baseUrl).href });
      if (op.status === 'Failed') return reply(ctx, op.error!.status, op.error!.toBody(), headers);
      return reply(ctx, 200, undefined, headers);
    }
    return reply(
      ctx,
      200,
      {
        startTime: computeTime(op.startTime),
        ...(op.endTime !== undefined ? { endTime: computeTime(op.endTime) } : {}),
        status: op.status,
        ...(op.error ? { error: { code: op.error.code, message: op.error.message } } : {}),
        name: op.name,
      },
      headers,
    );
  }

  function listInstances(ctx: RequestContext, set: ScaleSet): Promise<void> {
    const expand = ctx.url.searchParams.get('$expand') === 'instanceView';
    let instances = [...set.instances.values()].sort((a, b) => Number(a.instanceId) - Number(b.instanceId));
    const filter = ctx.url.searchParams.get('$filter');
    if (filter) {
      const m = /^\s*properties\/latestModelApplied\s+eq\s+(true|false)\s*$/i.exec(filter);
      if (!m) throw new ArmError(400, 'InvalidParameter', `The $filter '${filter}' is not supported. Supported: properties/latestModelApplied eq true|false.`, { target: '$filter' });
      const want = m[1].toLowerCase() === 'true';
      instances = instances.filter((i) => i.latestModelApplied === want);
    }
    return page(ctx, instances.map((i) => vmJson(set, i, expand)), 'highCostGet');
  }

  function permissions(ctx: RequestContext, scope: string[], lower: string[]): Promise<void> {
    let actions = ['*'];
    let notActions = ['Microsoft.Authorization/*/Delete', 'Microsoft.Authorization/*/Write', 'Microsoft.Authorization/elevateAccess/Action'];
    if (lower.length === 6 && lower[2] === 'providers' && lower[3] === 'microsoft.managedidentity' && lower[4] === 'userassignedidentities') {
      const rgName = state.resourceGroup(scope[1]);
      if (!rgName) throw new ArmError(404, 'ResourceGroupNotFound', `Resource group '${scope[1]}' could not be found.`);
      const identity = requireIdentity(rgName, scope[5]);
      // What the caller's roles grant on this identity: Managed Identity Operator, or read only.
      actions = state.mayAssign(identity.id)
        ? ['Microsoft.ManagedIdentity/userAssignedIdentities/read', ASSIGN_ACTION, 'Microsoft.Authorization/*/read', 'Microsoft.Resources/subscriptions/resourceGroups/read']
        : ['Microsoft.ManagedIdentity/userAssignedIdentities/read', 'Microsoft.Authorization/*/read', 'Microsoft.Resources/subscriptions/resourceGroups/read'];
      notActions = [];
    } else if (lower.length >= 2 && lower[0] === 'resourcegroups') {
      if (!state.resourceGroup(scope[1])) throw new ArmError(404, 'ResourceGroupNotFound', `Resource group '${scope[1]}' could not be found.`);
    }
    return reply(ctx, 200, { value: [{ actions, notActions, dataActions: [], notDataActions: [] }] });
  }

  // ---- paging ------------------------------------------------------------------------------

  function page(ctx: RequestContext, items: unknown[], computeBucket?: string): Promise<void> {
    const token = ctx.url.searchParams.get('$skiptoken');
    const offset = token === null ? 0 : Number.parseInt(Buffer.from(token, 'base64url').toString('utf8'), 10);
    if (!Number.isInteger(offset) || offset < 0) throw new ArmError(400, 'InvalidParameter', `The value of parameter '$skiptoken' is invalid.`, { target: '$skiptoken' });
    const slice = items.slice(offset, offset + pageSize);
    const body: { value: unknown[]; nextLink?: string } = { value: slice };
    if (offset + pageSize < items.length) {
      const next = new URL(ctx.url.pathname + ctx.url.search, baseUrl);
      next.searchParams.set('$skiptoken', Buffer.from(String(offset + pageSize)).toString('base64url'));
      body.nextLink = next.href;
    }
    return reply(ctx, 200, body, computeBucket ? computeHeaders(ctx, computeBucket) : {});
  }

  // ---- responses ---------------------------------------------------------------------------

  async function reply(ctx: RequestContext, status: number, body: unknown, headers: Record<string, string> = {}): Promise<void> {
    const { res } = ctx;
    if (res.headersSent || res.destroyed) return;
    ctx.status = status;
    if (ctx.holdRule && status < 400) {
      // The mutation is applied; the answer is swallowed until the rule is removed.
      const ruleId = ctx.holdRule;
      ctx.holdRule = undefined;
      await faults.hold(ruleId, { method: ctx.method, path: ctx.url.pathname });
      if (res.destroyed) return;
    }
    const payload = body === undefined ? '' : JSON.stringify(body);
    const write = ctx.method === 'GET' ? 'reads' : 'writes';
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(payload),
      'Cache-Control': 'no-cache',
      Pragma: 'no-cache',
      Expires: '-1',
      'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
      'x-ms-request-id': randomUUID(),
      'x-ms-correlation-request-id': header(ctx.req, 'x-ms-client-request-id') ?? randomUUID(),
      [`x-ms-ratelimit-remaining-subscription-${write}`]: String(write === 'reads' ? limits.take('sub-reads', 60, 12000) : limits.take('sub-writes', 60, 1200)),
      ...(status === 401 ? { 'WWW-Authenticate': `Bearer authorization_uri="https://login.microsoftonline.com/${state.tenantId}", error="invalid_token", error_description="The authentication failed because of missing or invalid 'Authorization' header."` } : {}),
      ...headers,
    });
    res.end(payload);
  }

  function replyFault(ctx: RequestContext, a: { status: number; retryAfterSeconds?: number; code?: string; message?: string }): Promise<void> {
    const defaults = FAULT_DEFAULTS[a.status] ?? { code: 'InternalServerError', message: 'The server encountered an internal error. Please retry the request.' };
    const headers: Record<string, string> = {};
    if (a.retryAfterSeconds !== undefined) headers['Retry-After'] = String(a.retryAfterSeconds);
    if (a.status === 429 && ctx.url.pathname.toLowerCase().includes('/microsoft.compute/')) {
      headers['x-ms-ratelimit-remaining-resource'] = 'Microsoft.Compute/HighCostGet3Min;0,Microsoft.Compute/HighCostGet30Min;0';
    }
    return reply(ctx, a.status, { error: { code: a.code ?? defaults.code, message: a.message ?? defaults.message } }, headers);
  }

  /** `x-ms-ratelimit-remaining-resource` for a compute operation group. */
  function computeHeaders(_ctx: RequestContext, bucket: string): Record<string, string> {
    const specs = COMPUTE_BUCKETS[bucket];
    if (!specs) return {};
    const parts = specs.map(([name, minutes, limit]) => `Microsoft.Compute/${name};${limits.take(`compute:${name}`, minutes, limit)}`);
    return { 'x-ms-ratelimit-remaining-resource': parts.join(',') };
  }

  function operationUrl(location: string, name: string, apiVersion: string, monitor: boolean, provider = 'Microsoft.Compute'): string {
    const u = new URL(`/subscriptions/${state.subscriptionId}/providers/${provider}/locations/${location}/operations/${name}`, baseUrl);
    u.searchParams.set('p', name.split('-')[0]);
    if (monitor) u.searchParams.set('monitor', 'true');
    u.searchParams.set('api-version', apiVersion);
    return u.href;
  }

  // ---- resource shapes ---------------------------------------------------------------------

  function requireIdentity(rgName: string, name: string): UserAssignedIdentity {
    const identity = state.identities().find((i) => i.resourceGroup.toLowerCase() === rgName.toLowerCase() && i.name.toLowerCase() === name.toLowerCase());
    if (!identity) throw notFound('Microsoft.ManagedIdentity/userAssignedIdentities', name, rgName);
    return identity;
  }

  function identityJson(i: UserAssignedIdentity): object {
    return {
      name: i.name,
      type: 'Microsoft.ManagedIdentity/userAssignedIdentities',
      id: i.id,
      location: i.location,
      tags: {},
      properties: { clientId: i.clientId, isolationScope: 'None', principalId: i.principalId, tenantId: i.tenantId },
    };
  }

  function identityBlock(set: ScaleSet, ids: Iterable<string>): object | undefined {
    if (set.identityType === 'None') return undefined;
    const uai: Record<string, { principalId: string; clientId: string }> = {};
    for (const id of ids) {
      const identity = state.identity(id);
      // The ids recorded at assignment: a re-created identity leaves them stale, as ARM shows it.
      const entry = set.userAssignedIdentities.get(id.toLowerCase());
      if (entry?.principalId && entry.clientId) uai[id] = { principalId: entry.principalId, clientId: entry.clientId };
      else if (identity) uai[id] = { principalId: identity.principalId, clientId: identity.clientId };
    }
    return {
      type: set.identityType,
      ...(set.systemAssigned ? { principalId: set.systemAssigned.principalId, tenantId: set.systemAssigned.tenantId } : {}),
      ...(set.identityType.includes('UserAssigned') ? { userAssignedIdentities: uai } : {}),
    };
  }

  function vmssJson(set: ScaleSet): object {
    const identity = identityBlock(set, [...set.userAssignedIdentities.values()].map((v) => v.id));
    return {
      name: set.name,
      id: set.id,
      type: 'Microsoft.Compute/virtualMachineScaleSets',
      location: set.location,
      tags: set.tags,
      sku: { name: set.vmSize, tier: 'Standard', capacity: set.capacity },
      ...(identity ? { identity } : {}),
      etag: etagOf(set.etag),
      properties: {
        singlePlacementGroup: false,
        orchestrationMode: 'Uniform',
        upgradePolicy: { mode: 'Manual' },
        virtualMachineProfile: {
          osProfile: {
            computerNamePrefix: set.computerNamePrefix,
            adminUsername: 'azureuser',
            linuxConfiguration: { disablePasswordAuthentication: true, provisionVMAgent: true, enableVMAgentPlatformUpdates: false },
            secrets: [],
            allowExtensionOperations: true,
            requireGuestProvisionSignal: true,
          },
          storageProfile: {
            osDisk: { osType: 'Linux', createOption: 'FromImage', caching: 'ReadOnly', managedDisk: { storageAccountType: 'Premium_LRS' }, diskSizeGB: 128 },
            imageReference: { id: `/subscriptions/109a5e88-712a-48ae-9078-9ca8b3c81345/resourceGroups/AKS-Ubuntu/providers/Microsoft.Compute/galleries/AKSUbuntu/images/2204gen2containerd/versions/202501.12.0` },
          },
          networkProfile: {
            networkInterfaceConfigurations: [
              {
                name: set.name,
                properties: {
                  primary: true,
                  enableAcceleratedNetworking: true,
                  enableIPForwarding: true,
                  ipConfigurations: [{ name: 'ipconfig1', properties: { primary: true, privateIPAddressVersion: 'IPv4', subnet: { id: `/subscriptions/${state.subscriptionId}/resourceGroups/${set.resourceGroup}/providers/Microsoft.Network/virtualNetworks/aks-vnet-${set.tags['aks-managed-resourceNameSuffix'] ?? '12345678'}/subnets/aks-subnet` } } }],
                },
              },
            ],
          },
        },
        provisioningState: set.provisioningState,
        overprovision: false,
        doNotRunExtensionsOnOverprovisionedVMs: false,
        uniqueId: set.uniqueId,
        platformFaultDomainCount: 1,
        timeCreated: new Date(set.timeCreated).toISOString(),
      },
    };
  }

  function vmJson(set: ScaleSet, inst: ScaleSetInstance, expandInstanceView: boolean): object {
    const identity = identityBlock(set, [...set.userAssignedIdentities.values()].map((v) => v.id));
    return {
      name: `${set.name}_${inst.instanceId}`,
      id: `${set.id}/virtualMachines/${inst.instanceId}`,
      type: 'Microsoft.Compute/virtualMachineScaleSets/virtualMachines',
      location: set.location,
      tags: set.tags,
      instanceId: inst.instanceId,
      sku: { name: set.vmSize, tier: 'Standard' },
      ...(identity ? { identity } : {}),
      etag: etagOf(set.etag),
      properties: {
        latestModelApplied: inst.latestModelApplied,
        modelDefinitionApplied: 'VirtualMachineScaleSet',
        vmId: inst.vmId,
        ...(expandInstanceView ? { instanceView: instanceViewJson(inst) } : {}),
        hardwareProfile: { vmSize: set.vmSize },
        storageProfile: { osDisk: { osType: 'Linux', name: `${set.name}_${inst.instanceId}_OsDisk_1_${inst.vmId.replace(/-/g, '')}`, createOption: 'FromImage', caching: 'ReadOnly', diskSizeGB: 128 } },
        osProfile: {
          computerName: inst.computerName,
          adminUsername: 'azureuser',
          linuxConfiguration: { disablePasswordAuthentication: true, provisionVMAgent: true },
          secrets: [],
          allowExtensionOperations: true,
          requireGuestProvisionSignal: true,
        },
        networkProfile: { networkInterfaces: [{ id: `${set.id}/virtualMachines/${inst.instanceId}/networkInterfaces/${set.name}` }] },
        provisioningState: inst.provisioningState,
        timeCreated: new Date(inst.timeCreated).toISOString(),
      },
    };
  }

  function instanceViewJson(inst: ScaleSetInstance): object {
    const prov = inst.provisioningState.toLowerCase();
    const power = inst.busy === 'reimage' ? 'starting' : inst.powerState;
    return {
      platformUpdateDomain: 0,
      platformFaultDomain: 0,
      computerName: inst.computerName,
      osName: 'ubuntu',
      osVersion: '22.04',
      statuses: [
        { code: `ProvisioningState/${prov}`, level: 'Info', displayStatus: prov === 'succeeded' ? 'Provisioning succeeded' : `Provisioning ${prov}`, time: new Date(clock.now()).toISOString() },
        { code: `PowerState/${power}`, level: 'Info', displayStatus: `VM ${power}` },
      ],
    };
  }

  function agentPoolProperties(p: { name: string; count: number; vmSize: string; mode: string; type?: string; osType?: string }): object {
    const mc = state.managedCluster()!;
    const set = state.scaleSets().find((s) => s.poolName === p.name);
    return {
      count: set ? set.capacity : p.count,
      vmSize: p.vmSize,
      osDiskSizeGB: 128,
      osDiskType: 'Managed',
      kubeletDiskType: 'OS',
      maxPods: 110,
      type: p.type ?? 'VirtualMachineScaleSets',
      enableAutoScaling: false,
      provisioningState: set && set.provisioningState === 'Updating' ? 'Updating' : 'Succeeded',
      powerState: { code: 'Running' },
      orchestratorVersion: mc.kubernetesVersion,
      currentOrchestratorVersion: mc.kubernetesVersion,
      mode: p.mode,
      osType: p.osType ?? 'Linux',
      osSKU: 'Ubuntu',
      nodeImageVersion: 'AKSUbuntu-2204gen2containerd-202501.12.0',
      enableFIPS: false,
    };
  }

  function agentPoolJson(name: string): object | undefined {
    const mc = state.managedCluster();
    const p = mc?.agentPools.find((x) => x.name.toLowerCase() === name.toLowerCase());
    if (!mc || !p) return undefined;
    return { id: `${mc.id}/agentPools/${p.name}`, name: p.name, type: 'Microsoft.ContainerService/managedClusters/agentPools', properties: agentPoolProperties(p) };
  }

  function managedClusterJson(): object | undefined {
    const mc = state.managedCluster();
    if (!mc) return undefined;
    const dnsPrefix = mc.fqdn.split('.')[0].replace(/-[^-]+$/, '');
    const json: Record<string, any> = {
      id: mc.id,
      location: mc.location,
      name: mc.name,
      tags: {},
      type: 'Microsoft.ContainerService/ManagedClusters',
      sku: { name: 'Base', tier: 'Free' },
      identity: { type: 'SystemAssigned', principalId: guidLike(`${mc.id}:principal`), tenantId: state.tenantId },
      properties: {
        provisioningState: 'Succeeded',
        powerState: { code: 'Running' },
        maxAgentPools: 100,
        kubernetesVersion: mc.kubernetesVersion,
        currentKubernetesVersion: mc.kubernetesVersion,
        dnsPrefix,
        fqdn: mc.fqdn,
        azurePortalFQDN: mc.fqdn.replace('.hcp.', '.portal.hcp.'),
        agentPoolProfiles: mc.agentPools.map((p) => ({ name: p.name, ...agentPoolProperties(p) })),
        servicePrincipalProfile: { clientId: 'msi' },
        nodeResourceGroup: mc.nodeResourceGroup,
        enableRBAC: true,
        networkProfile: { networkPlugin: 'kubenet', podCidr: '10.244.0.0/16', serviceCidr: '10.0.0.0/16', dnsServiceIP: '10.0.0.10', outboundType: 'loadBalancer', loadBalancerSku: 'standard' },
        identityProfile: { kubeletidentity: { resourceId: mc.kubeletIdentity.resourceId, clientId: mc.kubeletIdentity.clientId, objectId: mc.kubeletIdentity.objectId } },
      },
    };
    for (const ext of opts.extensions ?? []) ext.decorateManagedCluster?.(json);
    return json;
  }

  // ---- errors ------------------------------------------------------------------------------

  function requireMethod(ctx: RequestContext, method: string): void {
    if (ctx.method !== method) throw methodNotAllowed(ctx);
  }

  function methodNotAllowed(ctx: RequestContext): ArmError {
    return new ArmError(405, 'MethodNotAllowed', `The requested resource does not support http method '${ctx.method}'.`);
  }

  function noRoute(ctx: RequestContext, segs: string[]): ArmError {
    const i = segs.findIndex((s) => s.toLowerCase() === 'providers');
    const ns = i >= 0 ? segs[i + 1] : undefined;
    const type = i >= 0 ? segs.slice(i + 2).filter((_, k) => k % 2 === 0).join('/') : segs.join('/');
    if (ns) return new ArmError(404, 'InvalidResourceType', `The resource type '${type}' could not be found in the namespace '${ns}' for api version '${ctx.apiVersion}'.`);
    return new ArmError(404, 'NotFound', `The requested resource '${ctx.url.pathname}' was not found.`);
  }

  const port = await listenOnLoopback(server, opts.port ?? 0);
  baseUrl = `https://127.0.0.1:${port}`;
  return {
    url: baseUrl,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Held responses and keep-alive sockets would keep close() waiting forever.
        server.closeAllConnections();
      }),
  };
}

const FAULT_DEFAULTS: Record<number, { code: string; message: string }> = {
  429: { code: 'TooManyRequests', message: 'The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00. For more information, see - https://aka.ms/srpthrottlinglimits' },
  409: { code: 'Conflict', message: 'The request failed due to conflict with a concurrent request. To resolve it, wait until the concurrent request completes and retry the request.' },
  500: { code: 'InternalServerError', message: 'The server encountered an internal error. Please retry the request.' },
  502: { code: 'BadGateway', message: 'The gateway did not receive a response from the resource provider within the specified time period.' },
  503: { code: 'ServiceUnavailable', message: 'The server is currently unable to handle the request due to a temporary overloading or maintenance. Please retry the request.' },
  504: { code: 'GatewayTimeout', message: 'The gateway did not receive a response within the specified time period.' },
  403: { code: 'AuthorizationFailed', message: 'The client does not have authorization to perform this action.' },
  404: { code: 'ResourceNotFound', message: 'The resource was not found.' },
};

/** The Swagger operation id of a request, for metrics (decided before routing, so errors count too). */
export function operationIdFor(method: string, segs: string[]): string {
  const s = segs.map((x) => x.toLowerCase());
  const n = s.length;
  const at = (i: number) => s[i] ?? '';
  if (n >= 3 && s[n - 3] === 'providers' && s[n - 2] === 'microsoft.authorization' && s[n - 1] === 'permissions') {
    if (n === 5) return 'Permissions_ListForSubscription';
    if (n === 7) return 'Permissions_ListForResourceGroup';
    return 'Permissions_ListForResource';
  }
  if (at(2) === 'providers') {
    if ((at(3) === 'microsoft.compute' || at(3) === 'microsoft.containerservice') && at(4) === 'locations' && at(6) === 'operations') return 'AsyncOperation_Get';
    if (at(3) === 'microsoft.managedidentity' && n === 5) return 'UserAssignedIdentities_ListBySubscription';
    if (at(3) === 'microsoft.compute' && n === 5) return 'VirtualMachineScaleSets_ListAll';
    if (at(3) === 'microsoft.containerservice' && n === 5) return 'ManagedClusters_List';
    return 'Unknown';
  }
  if (at(2) !== 'resourcegroups') return 'Unknown';
  if (n === 4) return 'ResourceGroups_Get';
  const ns = at(5);
  const type = at(6);
  if (ns === 'microsoft.managedidentity' && type === 'userassignedidentities' && at(8) === 'federatedidentitycredentials') {
    if (n === 9) return 'FederatedIdentityCredentials_List';
    return method === 'PUT' ? 'FederatedIdentityCredentials_CreateOrUpdate' : method === 'DELETE' ? 'FederatedIdentityCredentials_Delete' : 'FederatedIdentityCredentials_Get';
  }
  if (ns === 'microsoft.managedidentity' && type === 'userassignedidentities') return n === 7 ? 'UserAssignedIdentities_ListByResourceGroup' : 'UserAssignedIdentities_Get';
  if (ns === 'microsoft.containerservice' && type === 'managedclusters') {
    if (n === 7) return 'ManagedClusters_ListByResourceGroup';
    if (n === 8) return method === 'PUT' ? 'ManagedClusters_CreateOrUpdate' : method === 'PATCH' ? 'ManagedClusters_UpdateTags' : 'ManagedClusters_Get';
    if (n === 9) return 'AgentPools_List';
    return 'AgentPools_Get';
  }
  if (ns === 'microsoft.compute' && type === 'virtualmachinescalesets') {
    if (n === 7) return 'VirtualMachineScaleSets_List';
    if (n === 8) return method === 'PATCH' ? 'VirtualMachineScaleSets_Update' : method === 'GET' ? 'VirtualMachineScaleSets_Get' : 'Unknown';
    const sub = at(8);
    if (n === 9 && sub === 'manualupgrade') return 'VirtualMachineScaleSets_UpdateInstances';
    if (n === 9 && sub === 'reimage') return 'VirtualMachineScaleSets_Reimage';
    if (n === 9 && sub === 'delete') return 'VirtualMachineScaleSets_DeleteInstances';
    if (sub === 'virtualmachines') {
      if (n === 9) return 'VirtualMachineScaleSetVMs_List';
      if (n === 10) return method === 'DELETE' ? 'VirtualMachineScaleSetVMs_Delete' : 'VirtualMachineScaleSetVMs_Get';
      if (at(10) === 'instanceview') return 'VirtualMachineScaleSetVMs_GetInstanceView';
      if (at(10) === 'reimage') return 'VirtualMachineScaleSetVMs_Reimage';
    }
  }
  return 'Unknown';
}

function matches(segs: string[], pattern: string[]): boolean {
  return segs.length === pattern.length && pattern.every((p, i) => p === '*' || p === segs[i]);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function authError(code: string, message: string): ArmError {
  return new ArmError(401, code, message);
}

function invalidContent(detail: string): ArmError {
  return new ArmError(400, 'InvalidRequestContent', `The request content was invalid and could not be deserialized: '${detail}'.`);
}

/** Compute writes times with 7 fractional digits and an explicit offset. */
function computeTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$10000+00:00');
}

function guidLike(seed: string): string {
  let h = 0x811c9dc5;
  const out: string[] = [];
  for (let round = 0; round < 4; round++) {
    for (const ch of `${round}:${seed}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    out.push(h.toString(16).padStart(8, '0'));
  }
  const hex = out.join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ArmError(413, 'RequestEntityTooLarge', `The request content size exceeds the limit of ${MAX_BODY_BYTES} bytes.`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidContent((e as Error).message);
  }
}
