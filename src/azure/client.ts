/**
 * Construction of the Azure SDK clients: credential, endpoint, per-client CA trust, and the
 * pipeline policy that carries retries, counting and the dry-run guard. This file and
 * `gateway.ts` are the only ones that import `@azure/*`.
 *
 * Real use: `DefaultAzureCredential` against the ARM endpoint of the selected cloud (`--cloud`,
 * default the public `https://management.azure.com`), wrapped so that a missing sign-in becomes
 * one {@link AzureLoginError} saying what was tried and what to do. Sandbox: when
 * `PODID_MIGRATE_ARM_ENDPOINT` and `PODID_MIGRATE_ARM_TOKEN_FILE` are set (by
 * `source <sandbox dir>/env`), that endpoint and a static token read from the file, and the
 * CA in `PODID_MIGRATE_CA_FILE` trusted by these clients only (not process-wide).
 */
import { readFileSync, statSync } from 'node:fs';
import { ComputeManagementClient } from '@azure/arm-compute';
import { ManagedServiceIdentityClient } from '@azure/arm-msi';
import { ContainerServiceClient } from '@azure/arm-containerservice';
import { DefaultAzureCredential } from '@azure/identity';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { createPipelineRequest, createDefaultHttpClient } from '@azure/core-rest-pipeline';
import type { PipelinePolicy, PipelineRequest, PipelineResponse, HttpClient, Pipeline } from '@azure/core-rest-pipeline';
import { retryOptions, retryDelayMs, parseRetryAfter, waitBeforeRetry, abortReason, formatMs } from '../kube/retry.ts';
import type { RetryOptions, CallScope, ProgressSink } from '../kube/retry.ts';
import type { CallCounter } from '../kube/call-counter.ts';
import type { DryRunRecorder } from '../kube/dry-run.ts';
import { DryRunViolationError } from '../kube/errors.ts';
import { AZURE_CLOUDS, CLOUD_ENV, isCloudName, type CloudName } from './clouds.ts';
import { AzureConfigError, AzureLoginError } from './errors.ts';

/** Environment variables that point the tool at a sandbox's ARM endpoint. */
export const ARM_ENV = {
  endpoint: 'PODID_MIGRATE_ARM_ENDPOINT',
  tokenFile: 'PODID_MIGRATE_ARM_TOKEN_FILE',
  caFile: 'PODID_MIGRATE_CA_FILE',
} as const;

/** Where ARM is and how to authenticate. */
export interface AzureConnection {
  /** ARM base URL, `https://management.azure.com` in the public cloud. */
  endpoint: string;
  credential: TokenCredential;
  /** The resource tokens are requested for (scope `<audience>/.default`); default the public ARM. */
  audience?: string;
  /** The cloud, when not a sandbox. */
  cloud?: CloudName;
  /** PEM of an extra CA to trust, for these clients only. */
  caPem?: string;
  /** True when this is a sandbox endpoint (from the environment). */
  sandbox: boolean;
}

/**
 * Resolves the connection from the environment: the sandbox's endpoint, token file and CA when
 * `PODID_MIGRATE_ARM_ENDPOINT` is set, else `DefaultAzureCredential` against the ARM endpoint
 * and authority of `cloud` (default: `PODID_MIGRATE_CLOUD`, else `AzureCloud`).
 * @throws AzureConfigError naming the variable when the settings are incomplete or unsafe
 */
export function resolveAzureConnection(env: NodeJS.ProcessEnv = process.env, cloud?: CloudName): AzureConnection {
  const cloudName = cloud ?? env[CLOUD_ENV] ?? 'AzureCloud';
  if (!isCloudName(cloudName)) {
    throw new AzureConfigError(`${CLOUD_ENV}="${cloudName}" is not an Azure cloud.`, `Use one of: ${Object.keys(AZURE_CLOUDS).join(', ')}.`);
  }
  const c = AZURE_CLOUDS[cloudName];
  const endpoint = env[ARM_ENV.endpoint];
  if (!endpoint) {
    return {
      endpoint: c.armEndpoint,
      audience: c.audience,
      cloud: cloudName,
      credential: new SignInExplainingCredential(new DefaultAzureCredential({ authorityHost: c.authorityHost }), cloudName),
      sandbox: false,
    };
  }
  const sandboxHint = 'Run `source <sandbox dir>/env` again (podid-migrate sandbox up prints it), or unset PODID_MIGRATE_ARM_ENDPOINT to use Azure.';
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new AzureConfigError(`${ARM_ENV.endpoint}=${endpoint} is not a URL.`, sandboxHint);
  }
  // The SDK refuses to send a bearer token over plain http, and so do we.
  if (url.protocol !== 'https:') throw new AzureConfigError(`${ARM_ENV.endpoint} must be an https:// URL, got ${url.protocol}`, sandboxHint);
  const tokenFile = env[ARM_ENV.tokenFile];
  if (!tokenFile) throw new AzureConfigError(`${ARM_ENV.endpoint} is set but ${ARM_ENV.tokenFile} is not.`, sandboxHint);
  const caFile = env[ARM_ENV.caFile];
  let caPem: string | undefined;
  try {
    caPem = caFile ? readFileSync(caFile, 'utf8') : undefined;
  } catch (e) {
    throw new AzureConfigError(`${ARM_ENV.caFile}=${caFile} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`, sandboxHint);
  }
  return { endpoint: url.origin, audience: AZURE_CLOUDS.AzureCloud.audience, credential: new FileTokenCredential(tokenFile), caPem, sandbox: true };
}

/** What `DefaultAzureCredential` tries, in its order: how its errors name it, and how an operator knows it. */
const DEFAULT_CREDENTIAL_SOURCES: readonly (readonly [RegExp, string])[] = [
  [/EnvironmentCredential/, 'environment variables (AZURE_TENANT_ID, AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH)'],
  [/WorkloadIdentityCredential/, 'workload identity (AZURE_FEDERATED_TOKEN_FILE)'],
  [/ManagedIdentityCredential/, 'a managed identity of this machine'],
  [/Visual Studio Code/i, 'Visual Studio Code'],
  [/Azure CLI|AzureCliCredential/, 'the Azure CLI (az login)'],
  [/PowerShell/, 'Azure PowerShell (Connect-AzAccount)'],
  [/Azure Developer CLI|AzureDeveloperCliCredential/, 'the Azure Developer CLI (azd auth login)'],
];

/** The credential sources an `AggregateAuthenticationError` (or a single failure) names, in order. */
function triedSources(error: unknown): string[] {
  const errors = (error as { errors?: unknown[] })?.errors ?? [error];
  const text = errors.map((e) => `${(e as Error)?.name} ${(e as Error)?.message ?? String(e)}`).join('\n');
  const named = DEFAULT_CREDENTIAL_SOURCES.filter(([pattern]) => pattern.test(text)).map(([, label]) => label);
  return named.length > 0 ? named : DEFAULT_CREDENTIAL_SOURCES.map(([, label]) => label);
}

/**
 * Wraps a credential so that a failed sign-in is one {@link AzureLoginError}: what was tried
 * and what to do (`az login`, the `DefaultAzureCredential` variables, `--subscription`). The
 * original errors (which may name tenants and paths) are kept as `cause`, not printed.
 */
export class SignInExplainingCredential implements TokenCredential {
  readonly inner: TokenCredential;
  readonly cloud: CloudName;
  constructor(inner: TokenCredential, cloud: CloudName) {
    this.inner = inner;
    this.cloud = cloud;
  }

  async getToken(scopes: string | string[], options?: Parameters<TokenCredential['getToken']>[1]): Promise<AccessToken | null> {
    try {
      const token = await this.inner.getToken(scopes, options);
      if (!token) throw new Error('the credential returned no token');
      return token;
    } catch (e) {
      if ((e as Error)?.name === 'AbortError') throw e;
      throw signInError(e, this.cloud);
    }
  }
}

/** The {@link AzureLoginError} for a failed `DefaultAzureCredential` sign-in. */
export function signInError(error: unknown, cloud: CloudName): AzureLoginError {
  const name = (error as Error)?.name ?? '';
  const unavailable = name === 'CredentialUnavailableError' || name === 'AggregateAuthenticationError';
  const tried = triedSources(error);
  const c = AZURE_CLOUDS[cloud];
  const message = unavailable
    ? `not signed in to Azure (${cloud}): no credential was available. Tried, in order: ${tried.join('; ')}.`
    : `Azure sign-in failed (${cloud}, ${c.authorityHost}): ${firstLine(error)}`;
  const hint = [
    `Sign in with the Azure CLI: az login${cloud === 'AzureCloud' ? '' : `   (after: az cloud set --name ${cloud})`}`,
    'Or, for a service principal or CI, set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH),',
    '  or AZURE_FEDERATED_TOKEN_FILE for workload identity (the variables DefaultAzureCredential reads).',
    'Then choose the subscription: --subscription <id> (default: the one in --aks-id); az account show --query id -o tsv prints yours.',
    cloud === 'AzureCloud' ? 'For a sovereign cloud pass --cloud AzureUSGovernment or --cloud AzureChinaCloud (or set PODID_MIGRATE_CLOUD).' : `Cloud ${cloud}: ARM ${c.armEndpoint}, sign-in ${c.authorityHost}.`,
  ].join('\n');
  return new AzureLoginError(message, hint, undefined, { cause: error });
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  // The SDK's messages may end with a troubleshooting URL and several paragraphs: keep the gist.
  return text.split('\n').map((l) => l.trim()).find(Boolean)?.slice(0, 300) ?? 'no details';
}

/**
 * A `TokenCredential` that reads a bearer token from a file (mode 0600) on every request, so a
 * rotated token is picked up. Refuses a file readable by group or others.
 */
export class FileTokenCredential implements TokenCredential {
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }

  async getToken(): Promise<AccessToken> {
    const st = statSync(this.path);
    if ((st.mode & 0o077) !== 0) {
      throw new Error(`token file ${this.path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${this.path}`);
    }
    const token = readFileSync(this.path, 'utf8').trim();
    if (!token) throw new Error(`token file ${this.path} is empty`);
    return { token, expiresOnTimestamp: Date.now() + 30 * 60_000 };
  }
}

/** Timing of the Azure gateway's calls. */
export interface AzureTiming {
  retry: RetryOptions;
  /** Receives long-wait lines (capped Retry-After) with a countdown. */
  progress?: ProgressSink;
  /** Poll interval of long-running operations (default 2 s; a sandbox at a high time scale wants less). */
  pollIntervalMs: number;
  /**
   * Cap on the poll interval a long-running operation's `Retry-After` may ask for (default
   * 30 s): the SDK's poller otherwise waits as long as the server says.
   */
  maxPollIntervalMs: number;
}

/** Fills the defaults of {@link AzureTiming}. */
export function azureTiming(partial: { retry?: Partial<RetryOptions>; pollIntervalMs?: number; maxPollIntervalMs?: number; progress?: ProgressSink } = {}): AzureTiming {
  return { retry: retryOptions(partial.retry), pollIntervalMs: partial.pollIntervalMs ?? 2000, maxPollIntervalMs: partial.maxPollIntervalMs ?? 30_000, progress: partial.progress };
}

/** What one scope of the gateway hands to its clients' pipelines. */
export interface ArmScope extends CallScope {
  counter: CallCounter;
  dryRun: DryRunRecorder;
  timing: AzureTiming;
}

/** The three SDK clients of one scope plus raw access through the same pipeline. */
export interface ArmClients {
  compute: ComputeManagementClient;
  msi: ManagedServiceIdentityClient;
  containerService: ContainerServiceClient;
  /** Sends a raw request through the compute client's pipeline (auth, TLS, retries, counting). */
  sendRaw(method: 'GET', pathAndQuery: string): Promise<PipelineResponse>;
  endpoint: string;
}

/** Builds the SDK clients for one scope. Cheap enough to do per step call. */
export function createArmClients(conn: AzureConnection, subscriptionId: string, scope: ArmScope): ArmClients {
  const common = {
    endpoint: conn.endpoint,
    // Our policy owns retries: the SDK's own would wait any Retry-After uncapped, and not
    // retry a 429 that has none.
    retryOptions: { maxRetries: 0 },
    tlsOptions: conn.caPem ? { ca: conn.caPem } : undefined,
    userAgentOptions: { userAgentPrefix: 'podid-migrate' },
    // Tokens are for the cloud's ARM audience (a sandbox uses the public one, whatever host it listens on).
    credentials: { scopes: [`${conn.audience ?? AZURE_CLOUDS.AzureCloud.audience}/.default`] },
    credentialScopes: [`${conn.audience ?? AZURE_CLOUDS.AzureCloud.audience}/.default`],
  };
  const compute = new ComputeManagementClient(conn.credential, subscriptionId, common);
  const msi = new ManagedServiceIdentityClient(conn.credential, subscriptionId, { ...common, $host: conn.endpoint });
  const containerService = new ContainerServiceClient(conn.credential, subscriptionId, common);
  for (const p of [compute.pipeline, msi.pipeline, containerService.pipeline] as Pipeline[]) p.addPolicy(gatewayPolicy(scope));
  const httpClient = defaultHttpClient();
  return {
    compute,
    msi,
    containerService,
    endpoint: conn.endpoint,
    async sendRaw(method, pathAndQuery) {
      const request = createPipelineRequest({ url: `${conn.endpoint}${pathAndQuery}`, method, abortSignal: scope.signal });
      return compute.pipeline.sendRequest(httpClient, request);
    },
  };
}

let sharedHttpClient: HttpClient | undefined;
function defaultHttpClient(): HttpClient {
  return (sharedHttpClient ??= createDefaultHttpClient());
}

/** Attempts of a read whose connection fails before ARM is reported unreachable. */
const CONNECT_ATTEMPTS = 3;

// A 409 that says "another write runs": the same write succeeds once it is done. Among them Entra's
// answer to two writes to one identity's federated credentials at once.
const CONFLICT_CODES_RETRIED = new Set(['anotheroperationinprogress', 'operationpreempted', 'conflict', 'retryableerror', 'concurrentrequestsnotallowed', 'concurrentfederatedidentitycredentialswritesforsinglemanagedidentity']);

/**
 * Which ARM answers are retried: 429 always (with or without `Retry-After`); 5xx except on
 * POST actions (a repeated reimage would reimage twice); 409 only for conflict-type codes
 * (another operation in progress, a concurrent write to one identity's federated credentials),
 * not for a real conflict such as an existing resource.
 */
export function isRetryableArmResponse(status: number, method: string, code: string | undefined): boolean {
  if (status === 429) return true;
  if (status >= 500 && status !== 501 && status !== 505) return method !== 'POST';
  if (status === 409) return code !== undefined && CONFLICT_CODES_RETRIED.has(code.toLowerCase());
  return false;
}

/** The ARM error code in a response body, if any. */
export function armErrorCode(bodyText: string | undefined): string | undefined {
  if (!bodyText) return undefined;
  try {
    const b = JSON.parse(bodyText) as { error?: { code?: string }; code?: string };
    return b.error?.code ?? b.code;
  } catch {
    return undefined;
  }
}

/**
 * `PATCH Microsoft.Compute/virtualMachineScaleSets`, `POST .../virtualMachineScaleSets/manualupgrade`,
 * `GET Microsoft.Compute/locations/operations`: operation names for counting, from the URL.
 */
export function describeArmRequest(method: string, path: string): { verb: string; resource: string } {
  const segs = path.split('/').filter(Boolean);
  const p = segs.findIndex((s) => s.toLowerCase() === 'providers');
  let last = -1;
  for (let i = 0; i < segs.length; i++) if (segs[i].toLowerCase() === 'providers') last = i;
  if (p < 0 || last + 1 >= segs.length) {
    const rg = segs.findIndex((s) => s.toLowerCase() === 'resourcegroups');
    return { verb: method, resource: rg >= 0 ? 'resourceGroups' : segs.slice(0, 1).join('/') || '/' };
  }
  // The last provider segment names the type chain: ns/type/name/type/name/.../[action].
  const ns = segs[last + 1];
  const rest = segs.slice(last + 2);
  const types: string[] = [];
  for (let i = 0; i < rest.length; i += 2) types.push(rest[i]);
  // An action (POST .../{name}/manualupgrade) sits at an odd position.
  return { verb: method, resource: [ns, ...types].join('/') };
}

/**
 * The pipeline policy of one scope: dry-run guard, counting, classified retries with capped
 * waits bounded by the deadline, and capping of a long-running operation's `Retry-After`
 * (the SDK's poller would otherwise sleep as long as the server says).
 */
export function gatewayPolicy(scope: ArmScope): PipelinePolicy {
  return {
    name: 'podidMigrateGatewayPolicy',
    async sendRequest(request: PipelineRequest, next): Promise<PipelineResponse> {
      const method = request.method.toUpperCase();
      const url = new URL(request.url);
      const write = method !== 'GET' && method !== 'HEAD';
      if (write && scope.dryRun.suppressArmWrites) throw new DryRunViolationError('arm', method, url.pathname);
      const { verb, resource } = describeArmRequest(method, url.pathname);
      const opts = scope.timing.retry;
      for (let attempt = 1; ; attempt++) {
        if (scope.signal?.aborted) throw abortReason(scope.signal);
        scope.counter.count(verb, resource, attempt > 1);
        let resp: PipelineResponse;
        try {
          resp = await next(request);
        } catch (e) {
          if (scope.signal?.aborted) throw abortReason(scope.signal);
          // A client whose deserialization runs inside this policy (@azure/arm-msi) turns an
          // error status into a thrown RestError carrying the response: classify it like one.
          const answered = (e as { statusCode?: number; response?: PipelineResponse }).response;
          if (typeof (e as { statusCode?: number }).statusCode === 'number' && answered) {
            const code = armErrorCode(answered.bodyAsText ?? undefined) ?? ((e as { code?: string }).code || undefined);
            if (attempt < opts.maxAttempts && isRetryableArmResponse(answered.status, method, code)) {
              const retryAfter = retryAfterOf(answered);
              const wait = retryDelayMs(attempt, opts, retryAfter);
              const why = retryAfter !== undefined ? `ARM asked for Retry-After ${formatMs(retryAfter)}${retryAfter > wait ? `, capped at ${formatMs(wait)}` : ''}` : `backoff, attempt ${attempt + 1} of ${opts.maxAttempts}`;
              await waitBeforeRetry(`${verb} ${resource}`, wait, scope, `HTTP ${answered.status}${code ? ' ' + code : ''}`, why);
              continue;
            }
            throw e;
          }
          // Not signed in: asking again cannot help, and the operator should hear it at once.
          if (e instanceof AzureLoginError) throw e;
          const failure = (e as Error)?.message ?? String(e);
          // A write that may have reached ARM is not repeated on a network error: the caller re-reads.
          // Connection failures are retried briefly only: an endpoint that is not there is reported in seconds.
          if (write || attempt >= Math.min(opts.maxAttempts, CONNECT_ATTEMPTS) || (e as { name?: string })?.name === 'AbortError') throw e;
          await waitBeforeRetry(`${verb} ${resource}`, retryDelayMs(attempt, { ...opts, maxDelayMs: Math.min(opts.maxDelayMs, 2000) }), scope, failure);
          continue;
        }
        const code = resp.status >= 400 ? armErrorCode(resp.bodyAsText ?? undefined) : undefined;
        if (attempt < opts.maxAttempts && isRetryableArmResponse(resp.status, method, code)) {
          const retryAfter = retryAfterOf(resp);
          const wait = retryDelayMs(attempt, opts, retryAfter);
          const why = retryAfter !== undefined ? `ARM asked for Retry-After ${formatMs(retryAfter)}${retryAfter > wait ? `, capped at ${formatMs(wait)}` : ''}` : `backoff, attempt ${attempt + 1} of ${opts.maxAttempts}`;
          await waitBeforeRetry(`${verb} ${resource}`, wait, scope, `HTTP ${resp.status}${code ? ' ' + code : ''}`, why);
          continue;
        }
        if (resp.status < 300) capPollRetryAfter(resp, scope.timing.maxPollIntervalMs, scope.progress, `${verb} ${resource}`);
        return resp;
      }
    },
  };
}

function retryAfterOf(resp: PipelineResponse): number | undefined {
  const ms = resp.headers.get('retry-after-ms') ?? resp.headers.get('x-ms-retry-after-ms');
  if (ms && /^\d+$/.test(ms)) return Number(ms);
  return parseRetryAfter(resp.headers.get('retry-after'));
}

function capPollRetryAfter(resp: PipelineResponse, maxMs: number, progress: ((line: string) => void) | undefined, what: string): void {
  const wanted = retryAfterOf(resp);
  if (wanted === undefined || wanted <= maxMs) return;
  // The poller sleeps silently: say that the operation is still running and when it is polled next.
  progress?.(`${what}: the operation is still running; ARM asked to poll again in ${formatMs(wanted)}, polling in ${formatMs(maxMs)} instead`);
  resp.headers.set('retry-after', String(Math.max(1, Math.floor(maxMs / 1000))));
  resp.headers.delete('retry-after-ms');
  resp.headers.delete('x-ms-retry-after-ms');
}
