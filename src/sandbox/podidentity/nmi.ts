/**
 * NMI (Node Managed Identity) as a container program: one per node, hostNetwork.
 *
 * Faithful to upstream v1.6-v1.8 (cmd/nmi/main.go, pkg/nmi/server/server.go,
 * pkg/nmi/standard.go, pkg/nmi/managed.go, pkg/probes/probes.go):
 * - flags parsed like pflag; `--host-ip` is gone from NMI >= v1.6.2 and `--operation-mode`
 *   does not exist before v1.6.0, so either makes pflag exit 2 with `unknown flag`;
 * - managed mode without `--forceNamespaced` (or env `FORCENAMESPACED=true`) is fatal;
 * - `/healthz` on the probe port always answers 200, body `Active` once the iptables chain
 *   is installed, `Not Active` before;
 * - standard mode waits for the pod's AzureAssignedIdentity (16 x 5 s for `Created`, then 4
 *   more for `Assigned`), managed mode reads bindings and identities in the pod's namespace;
 * - on SIGTERM it deletes the chain at once, sleeps 10 s and exits 0: during that gap the
 *   node's pods reach IMDS directly.
 */
import type { ContainerContext, ContainerProcess, ContainerProgram } from '../runtime.ts';
import type { SimHttpRequest, SimHttpResponse } from '../netsim.ts';
import type { KObject } from '../store.ts';
import {
  ExitLatch,
  atLeast,
  flagBool,
  identityClientId,
  identityType,
  imageVersion,
  klogLine,
  nmiRegistry,
  parseFlags,
  podsByIp,
  redactClientId,
  timingOf,
  tokenIssuer,
  type NmiNodeState,
  type PodIdentityOptions,
} from './common.ts';
import { headerValue, imdsDirect } from './imds.ts';
import {
  assignedIdentitiesByState,
  isExceptedPod,
  isMicPod,
  managedModeIdentities,
  pickManaged,
  pickStandard,
  standardAttempt,
} from './matching.ts';

const BOOLEAN_FLAGS = new Set([
  'debug',
  'version',
  'forceNamespaced',
  'enableProfile',
  'enableScaleFeatures',
  'block-instance-metadata',
  'metadata-header-required',
  'set-retry-after-header',
  'enable-conntrack-deletion',
  'allow-network-plugin-kubenet',
  'logtostderr',
  'alsologtostderr',
]);

const TEXT = { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' };
const JSON_UTF8 = { 'content-type': 'application/json; charset=utf-8' };

/** Go's `http.Error`: the message plus a newline, as text/plain. */
function httpError(status: number, message: string, extra: Record<string, string> = {}): SimHttpResponse {
  return { status, headers: { ...TEXT, ...extra }, body: message + '\n' };
}

/** NMI's configuration after flag parsing. */
export interface NmiConfig {
  node: string;
  mode: string;
  namespaced: boolean;
  metadataHeaderRequired: boolean;
  scaleFeatures: boolean;
  blockInstanceMetadata: boolean;
  setRetryAfterHeader: boolean;
  micNamespace: string;
  probePort: number;
  retryAttemptsForCreated: number;
  retryAttemptsForAssigned: number;
  retryIntervalSeconds: number;
}

/** Parses NMI's argv and env like cmd/nmi/main.go; returns the pflag error text for an unknown flag. */
export function parseNmiArgs(argv: string[], env: Record<string, string>, image: string): { config: NmiConfig } | { unknownFlag: string } {
  const version = imageVersion(image);
  const { flags, order } = parseFlags(argv, BOOLEAN_FLAGS);
  for (const name of order) {
    // Removed in v1.6.2 when NMI started listening on localhost (Azure/aad-pod-identity#659).
    if (name === 'host-ip' && atLeast(version, [1, 6, 2])) return { unknownFlag: name };
    if (name === 'operation-mode' && !atLeast(version, [1, 6, 0])) return { unknownFlag: name };
  }
  const int = (name: string, dflt: number) => {
    const v = Number(flags.get(name));
    return flags.has(name) && Number.isFinite(v) ? v : dflt;
  };
  return {
    config: {
      node: flags.get('node') ?? '',
      mode: (flags.get('operation-mode') ?? 'standard').toLowerCase(),
      namespaced: flagBool(flags.get('forceNamespaced'), false) || env.FORCENAMESPACED === 'true',
      metadataHeaderRequired: flagBool(flags.get('metadata-header-required'), false),
      scaleFeatures: flagBool(flags.get('enableScaleFeatures'), false),
      blockInstanceMetadata: flagBool(flags.get('block-instance-metadata'), false),
      setRetryAfterHeader: flagBool(flags.get('set-retry-after-header'), false),
      micNamespace: flags.get('MICNamespace') ?? 'default',
      probePort: int('http-probe-port', 8080),
      retryAttemptsForCreated: int('retry-attempts-for-created', 16),
      retryAttemptsForAssigned: int('retry-attempts-for-assigned', 4),
      retryIntervalSeconds: int('find-identity-retry-interval', 5),
    },
  };
}

/** An error NMI turns into an HTTP answer. */
class NmiHttpError extends Error {
  readonly response: SimHttpResponse;
  constructor(response: SimHttpResponse) {
    super(response.body.trim());
    this.response = response;
  }
}

/** The NMI container program. Register it for images `.../aad-pod-identity/nmi:<tag>`. */
export function nmiProgram(opts: PodIdentityOptions): ContainerProgram {
  return (ctx) => runNmi(opts, ctx);
}

function runNmi(opts: PodIdentityOptions, ctx: ContainerContext): ContainerProcess {
  const { store, network } = opts;
  const timing = timingOf(opts);
  const clock = ctx.clock;
  const image = String(ctx.container.image ?? '');
  const version = imageVersion(image);
  const latch = new ExitLatch();
  const log = (sev: 'I' | 'W' | 'E' | 'F', src: string, msg: string) => ctx.log(klogLine(clock, sev, src, msg));
  // Aborts sleeps and in-flight requests when the process ends.
  const life = new AbortController();
  const registry = nmiRegistry(network);
  const cleanups: (() => void)[] = [];
  let listening = false;
  let initialized = false;
  let sigtermHandled = false;

  const exit = (code: number) => {
    if (latch.done) return;
    for (const c of cleanups.splice(0).reverse()) c();
    life.abort(new Error('Recv failure: Connection reset by peer'));
    latch.exit(code);
  };
  ctx.signal.addEventListener('abort', () => exit(137), { once: true });

  const argv = ctx.argv.length && !ctx.argv[0].startsWith('-') ? ctx.argv.slice(1) : ctx.argv;
  const parsed = parseNmiArgs(argv, ctx.env, image);
  if ('unknownFlag' in parsed) {
    // pflag.CommandLine is ExitOnError: message, usage, exit status 2.
    ctx.log(`unknown flag: --${parsed.unknownFlag}`);
    ctx.log('Usage of /bin/nmi:');
    exit(2);
    return { exited: latch.exited, isReady: () => false, terminate() {} };
  }
  const cfg = parsed.config;
  const node = cfg.node || ctx.nodeName;
  const vText = `v${version.join('.')}`;

  const fatal = (src: string, msg: string) => {
    log('F', src, msg);
    // klog.Fatalf exits with status 255.
    exit(255);
  };

  const state: NmiNodeState = {
    mode: cfg.mode === 'managed' ? 'managed' : 'standard',
    namespaced: cfg.namespaced,
    metadataHeaderRequired: cfg.metadataHeaderRequired,
    micNamespace: cfg.micNamespace,
    scaleFeatures: cfg.scaleFeatures,
    chainActive: false,
    terminating: false,
  };

  const handler = (req: SimHttpRequest) => serve(req);

  async function start(): Promise<void> {
    log('I', 'main.go:61', `Starting nmi process. Version: ${vText}. Build date: 2023-09-28-18:39.`);
    if (cfg.scaleFeatures) log('I', 'main.go:79', 'Features for scale clusters enabled');
    // Informer caches sync before anything else happens.
    await clock.sleep((timing.nmiStartupSeconds * 1000) / 2, life.signal);
    log('I', 'main.go:88', `Running NMI in namespaced mode: ${cfg.namespaced}`);
    log('I', 'nmi.go:53', `initializing in ${cfg.mode} mode`);
    if (cfg.mode !== 'standard' && cfg.mode !== 'managed') return fatal('main.go:111', `failed to initialize token client, err: operation mode ${cfg.mode} not supported`);
    if (cfg.mode === 'managed' && !cfg.namespaced) return fatal('main.go:111', 'failed to initialize token client, err: managed mode not intialized in force namespaced mode');
    if (network.isListening(ctx.nodeIp, cfg.probePort)) {
      return fatal('probes.go:45', `listen tcp :${cfg.probePort}: bind: address already in use`);
    }
    // pkg/probes: always 200; the body tells whether the iptables rules are in place.
    cleanups.push(network.listen(ctx.nodeIp, cfg.probePort, (req) => probe(req)));
    listening = true;
    log('I', 'probes.go:41', `initialized health probe on port ${cfg.probePort}`);
    log('I', 'probes.go:44', 'started health probe');
    registry.set(node, state);
    cleanups.push(() => {
      if (registry.get(node) === state) registry.delete(node);
    });
    log('I', 'server.go:98', 'listening on 127.0.0.1:2579');
    await clock.sleep((timing.nmiStartupSeconds * 1000) / 2, life.signal);
    network.setInterceptor(node, handler);
    cleanups.push(() => network.setInterceptor(node, undefined));
    state.chainActive = true;
    initialized = true;
    sigtermHandled = true;
  }

  function probe(req: SimHttpRequest): SimHttpResponse {
    if (req.url.pathname !== '/healthz') return httpError(404, '404 page not found');
    // Upstream never clears `Initialized`, so a terminating NMI still reads Active.
    return { status: 200, headers: TEXT, body: initialized ? 'Active' : 'Not Active' };
  }

  async function serve(req: SimHttpRequest): Promise<SimHttpResponse> {
    if (life.signal.aborted) throw life.signal.reason;
    const path = req.url.pathname;
    try {
      if (/^\/metadata\/identity\/oauth2\/token/i.test(path)) return await msiHandler(req);
      if (path.startsWith('/host/token')) return hostHandler(req);
      if (cfg.blockInstanceMetadata && /^\/metadata\/instance/i.test(path)) return httpError(403, 'Request blocked by AAD Pod Identity NMI');
      return await defaultPathHandler(req);
    } catch (e) {
      if (e instanceof NmiHttpError) return e.response;
      if (life.signal.aborted) throw life.signal.reason;
      throw e;
    }
  }

  function metadataCheck(req: SimHttpRequest): void {
    if (cfg.metadataHeaderRequired && headerValue(req.headers, 'metadata') !== 'true') {
      log('E', 'server.go:354', `metadata header is not specified, req.method=${req.method} reg.path=${req.url.pathname} req.remote=${req.source.ip}`);
      throw new NmiHttpError({ status: 400, headers: JSON_UTF8, body: JSON.stringify({ error: 'invalid_request', error_description: 'Required metadata header not specified' }) + '\n' });
    }
  }

  function hostHandler(req: SimHttpRequest): SimHttpResponse {
    if (!headerValue(req.headers, 'podns') || !headerValue(req.headers, 'podname')) return httpError(400, "missing 'podname' and 'podns' from request header");
    // Only processes on the host itself (127.0.0.1) may use /host/token; pods never are.
    return httpError(500, 'request remote address is not from a host');
  }

  async function imds(req: SimHttpRequest, query: URLSearchParams): Promise<SimHttpResponse> {
    const direct = imdsDirect(network);
    if (!direct) throw new NmiHttpError(httpError(500, `Get "http://169.254.169.254/metadata/identity/oauth2/token": dial tcp 169.254.169.254:80: connect: connection refused`));
    const url = new URL(`http://169.254.169.254/metadata/identity/oauth2/token?${query.toString()}`);
    return direct({ method: 'GET', url, headers: { Metadata: 'true' }, source: { ip: ctx.nodeIp, nodeName: node }, signal: life.signal });
  }

  async function defaultPathHandler(req: SimHttpRequest): Promise<SimHttpResponse> {
    metadataCheck(req);
    const direct = imdsDirect(network);
    if (!direct) return httpError(500, `dial tcp 169.254.169.254:80: connect: connection refused`);
    const res = await direct({ ...req, source: { ip: ctx.nodeIp, nodeName: node }, signal: life.signal });
    return { status: res.status, headers: res.headers, body: res.body };
  }

  function findPod(ip: string): Readonly<KObject> {
    const pods = podsByIp(store, ctx.nodeName, ip);
    if (pods.length === 0) throw new NmiHttpError(httpError(500, 'getting pods failed after 3 attempts, error: pod list empty'));
    if (pods.length > 1) throw new NmiHttpError(httpError(500, `match failed, ip:${ip} matching pods:[${pods.map((p) => `${p.metadata.namespace}/${p.metadata.name}`).join(' ')}]`));
    return pods[0];
  }

  async function msiHandler(req: SimHttpRequest): Promise<SimHttpResponse> {
    metadataCheck(req);
    const q = req.url.searchParams;
    const clientId = q.get('client_id') ?? '';
    const resourceId = q.get('msi_res_id') ?? '';
    const resource = q.get('resource') ?? '';
    if (!req.source.ip) return httpError(500, 'request remote address is empty');
    if (!resource) return httpError(400, 'parameter resource cannot be empty');
    const pod = findPod(req.source.ip);
    const podns = pod.metadata.namespace!;
    const podname = pod.metadata.name!;

    if (isExceptedPod(store, pod) || isMicPod(pod, cfg.micNamespace)) {
      log('I', 'server.go:293', `exception pod ${podns}/${podname} token handling`);
      const fwd = new URLSearchParams({ resource, 'api-version': '2018-02-01' });
      if (clientId) fwd.set('client_id', clientId);
      const res = await imds(req, fwd);
      if (res.status !== 200) return httpError(403, `failed to get service principal token, error: ${adalError(res, fwd)}`);
      return msiResponse(JSON.parse(res.body));
    }

    let identity: Readonly<KObject>;
    try {
      identity = cfg.mode === 'managed' ? managedGetIdentity(pod, clientId, resourceId) : await standardGetIdentity(pod, clientId, resourceId, req.signal);
    } catch (e) {
      if (!(e instanceof IdentityLookupError)) throw e;
      log('E', 'server.go:304', `failed to get matching identities for pod: ${podns}/${podname}, error: ${e.message}`);
      if (cfg.setRetryAfterHeader) return httpError(503, e.message, { 'retry-after': '20' });
      return httpError(404, e.message);
    }
    return getToken(req, identity, clientId, resource, `${podns}/${podname}`);
  }

  function managedGetIdentity(pod: Readonly<KObject>, clientId: string, resourceId: string): Readonly<KObject> {
    const ids = managedModeIdentities(store, pod);
    const picked = pickManaged(ids, pod.metadata.namespace!, clientId, resourceId);
    if (!picked) throw new IdentityLookupError(`no azure identity found for request clientID ${redactClientId(clientId)}`);
    log('I', 'managed.go:56', `No clientID or resourceID in request. ${pod.metadata.namespace}/${pod.metadata.name} has been matched with azure identity ${picked.metadata.namespace}/${picked.metadata.name}`);
    return picked;
  }

  async function standardGetIdentity(pod: Readonly<KObject>, clientId: string, resourceId: string, reqSignal: AbortSignal | undefined): Promise<Readonly<KObject>> {
    const podRef = { namespace: pod.metadata.namespace!, name: pod.metadata.name! };
    const signal = reqSignal ? AbortSignal.any([reqSignal, life.signal]) : life.signal;
    const total = cfg.retryAttemptsForCreated + cfg.retryAttemptsForAssigned;
    let ids: Readonly<KObject>[] | undefined;
    let lastError = '';
    for (let attempt = 0; attempt < total; ) {
      const r = standardAttempt(assignedIdentitiesByState(store, node, podRef, cfg.scaleFeatures), clientId, resourceId);
      if (r.kind === 'found') {
        ids = r.ids;
        break;
      }
      if (r.kind === 'none' && attempt >= cfg.retryAttemptsForCreated) {
        throw new IdentityLookupError(
          `getting assigned identities for pod ${podRef.namespace}/${podRef.name} in CREATED state failed after ${cfg.retryAttemptsForCreated} attempts, retry duration [${cfg.retryIntervalSeconds}]s, error: <nil>. Check MIC pod logs for identity assignment errors`,
        );
      }
      attempt++;
      await clock.sleep(cfg.retryIntervalSeconds * 1000, signal);
      lastError = `getting assigned identities for pod ${podRef.namespace}/${podRef.name} in ASSIGNED state failed after ${total} attempts, retry duration [${cfg.retryIntervalSeconds}]s, error: <nil>. Check MIC pod logs for identity assignment errors`;
    }
    if (!ids) throw new IdentityLookupError(lastError);
    const picked = pickStandard(ids, podRef.namespace, cfg.namespaced, clientId, resourceId);
    if (picked === 'panic') {
      // Upstream indexes an empty slice here; its recover handler answers 500.
      log('E', 'server.go:193', `panic processing request: runtime error: index out of range [0] with length 0`);
      throw new NmiHttpError(httpError(500, 'runtime error: index out of range [0] with length 0'));
    }
    if (!picked) throw new IdentityLookupError(`no azure identity found for request clientID ${redactClientId(clientId)}`);
    return picked;
  }

  async function getToken(req: SimHttpRequest, identity: Readonly<KObject>, rqClientId: string, resource: string, who: string): Promise<SimHttpResponse> {
    const type = identityType(identity);
    const clientId = identityClientId(identity);
    if (type === 0) {
      if (rqClientId && rqClientId.toLowerCase() !== clientId.toLowerCase()) log('W', 'standard.go:177', `clientid mismatch, requested:${rqClientId} available:${clientId}`);
      log('I', 'standard.go:179', `matched identityType:0 clientid:${redactClientId(clientId)} resource:${resource}`);
      const q = new URLSearchParams({ 'api-version': '2018-02-01', client_id: clientId, resource });
      const res = await imds(req, q);
      if (res.status !== 200) {
        const msg = adalError(res, q);
        log('E', 'server.go:313', `failed to get service principal token for pod: ${who}, error: ${msg}`);
        return httpError(403, msg);
      }
      return msiResponse(JSON.parse(res.body));
    }
    if (type === 1 || type === 2) {
      // Service principals get their token from Entra ID, not IMDS; the sandbox's issuer stands in for it.
      const issuer = tokenIssuer(network);
      if (!issuer) return httpError(403, `adal: Failed to execute the refresh request. Error = 'dial tcp: lookup login.microsoftonline.com: no such host'`);
      const t = await issuer.issue({ audience: resource, clientId, principalId: clientId });
      const now = Math.floor(clock.now() / 1000);
      return msiResponse({ access_token: t.token, expires_in: String(t.exp - now), expires_on: String(t.exp), not_before: String(t.iat), resource, token_type: 'Bearer' });
    }
    return httpError(403, `unsupported identity type ${type}`);
  }

  void start().catch((e) => {
    if (!latch.done && !life.signal.aborted) fatal('main.go:130', String((e as Error)?.message ?? e));
  });

  return {
    exited: latch.exited,
    isReady: () => listening && !latch.done,
    terminate() {
      if (latch.done) return;
      if (!sigtermHandled) {
        // Before the iptables goroutine installs its handler, Go's default SIGTERM action kills the process.
        exit(143);
        return;
      }
      if (state.terminating) return;
      state.terminating = true;
      log('I', 'server.go:531', 'received SIGTERM, shutting down');
      // handleTermination: delete the chain first, then wait for the pod to be deleted.
      network.setInterceptor(node, undefined);
      state.chainActive = false;
      log('I', 'server.go:541', 'handled termination, awaiting pod deletion');
      clock.sleep(timing.nmiTerminationSleepSeconds * 1000, life.signal).then(
        () => {
          log('I', 'server.go:544', 'exiting with 0');
          exit(0);
        },
        () => {},
      );
    },
  };
}

class IdentityLookupError extends Error {}

/** NMI's token answer: adal's Token re-marshalled (`msiResponse`), every number a string. */
function msiResponse(t: Record<string, unknown>): SimHttpResponse {
  const body = {
    access_token: String(t.access_token ?? ''),
    refresh_token: String(t.refresh_token ?? ''),
    expires_in: String(t.expires_in ?? ''),
    expires_on: String(t.expires_on ?? ''),
    not_before: String(t.not_before ?? ''),
    resource: String(t.resource ?? ''),
    token_type: String(t.token_type ?? ''),
  };
  const text = JSON.stringify(body);
  return { status: 200, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }, body: text };
}

/** How adal reports an IMDS refusal, which NMI passes on to the pod. */
function adalError(res: SimHttpResponse, q: URLSearchParams): string {
  return `adal: Refresh request failed. Status Code = '${res.status}'. Response body: ${res.body} Endpoint http://169.254.169.254/metadata/identity/oauth2/token?${q.toString()}`;
}

/** Whether an image is NMI's. */
export function isNmiImage(image: string): boolean {
  return /\/aad-pod-identity\/nmi:/.test(image);
}

