/**
 * Probes that prove an identity really works on a node (DOMAIN.md section 8):
 *
 * - {@link checkNmiHealth}: NMI's `/healthz` through the API server's pod proxy; only the body
 *   `Active` counts (the status is 200 either way).
 * - {@link runTokenProbe}: a short-lived pod carrying the service's `aadpodidbinding` label,
 *   pinned to the node, asks IMDS for a token; the container prints only the JWT payload
 *   segment (`cut -d. -f2`), so no usable token ever reaches the container log. The claims are
 *   checked against the identity: `xms_mirid` (case-insensitive) against its resource id,
 *   `appid` against its client id and `oid` against its principal id. A token for another
 *   principal (IMDS cache after an identity was re-created) fails the check.
 * - {@link runHttpProbe}: the same kind of pod asks an in-cluster URL for an expected status.
 *
 * Retries happen inside the pod, every 5 s for the whole budget (NMI itself may take ~80 s to
 * answer for a new pod), not with an SDK's short defaults. Probe pods are labelled
 * `podid-migrate.io/probe=true` and deleted whatever happens; {@link sweepProbePods} removes
 * any left behind by an interrupted run.
 */
import { decodeJwt } from 'jose';
import { randomBytes } from 'node:crypto';
import type { KubeGateway, KubeObject } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';


/** Label every probe pod carries (value `true`), for clean-up sweeps and for operators. */
export const PROBE_LABEL = 'podid-migrate.io/probe';

/**
 * Label naming the process that created a probe pod (a random id per process). Only one
 * podid-migrate runs against a cluster at a time (the journal lock), so a probe pod of another
 * process is a leftover of a run that died (a crash between creating and deleting it).
 */
export const PROBE_RUN_LABEL = 'podid-migrate.io/probe-run';

/** This process's {@link PROBE_RUN_LABEL} value. */
export const PROBE_RUN_ID = randomBytes(4).toString('hex');

/** Image of the probe pods: has `sh`, `curl`, `cut` and `head`. */
export const PROBE_IMAGE = 'curlimages/curl:8.11.1';

/** Audience asked for when a test case names none. */
export const DEFAULT_TOKEN_RESOURCE = 'https://management.azure.com/';

/** Real seconds the probe waits between attempts inside the pod. */
export const PROBE_RETRY_SECONDS = 5;

/** Default budget of one probe: NMI may wait up to about 80 s before it answers. */
export const DEFAULT_PROBE_TIMEOUT_MS = 80_000;

/** Time allowed on top of the probe budget for the pod to be created, started and to report. */
const POD_START_SLACK_MS = 30_000;

/** The identity a token must belong to. */
export interface ExpectedIdentity {
  /** AzureIdentity name (for messages). */
  name: string;
  /** Resource id of a user-assigned identity; absent for a service principal (type 1/2), whose tokens carry no `xms_mirid`. */
  resourceId?: string;
  clientId: string;
  principalId?: string;
}

/** Options of {@link runTokenProbe}. */
export interface TokenProbeOptions {
  namespace: string;
  nodeName: string;
  /** Value of the `aadpodidbinding` label (the binding's selector). */
  selector: string;
  identity: ExpectedIdentity;
  /** Audience, default {@link DEFAULT_TOKEN_RESOURCE}. */
  resource?: string;
  /** Budget for retries inside the pod (default 80 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  image?: string;
}

/** The non-secret claims of a token that the check reads. Never the token itself. */
export interface TokenClaims {
  xms_mirid?: string;
  appid?: string;
  oid?: string;
  tid?: string;
  aud?: string;
  exp?: number;
}

/** Outcome of one probe pod. Contains no token, only claims and messages. */
export interface ProbeResult {
  ok: boolean;
  /** Probe pod name (already deleted when this is returned). */
  pod: string;
  node: string;
  /** Attempts the pod made (0 when it never ran). */
  attempts: number;
  /** Last HTTP status the pod saw (IMDS/NMI or the tested URL). */
  status?: number;
  /** Claims of the token received (token probes only). */
  claims?: TokenClaims;
  /** One line: what was proven, or what went wrong and why. */
  message: string;
  /** Each claim that did not match (token probes). */
  mismatches: string[];
  durationMs: number;
}

/** Options of {@link runHttpProbe}. */
export interface HttpProbeOptions {
  namespace: string;
  nodeName: string;
  url: string;
  /** Expected HTTP status (default 200). */
  expectStatus?: number;
  /** Extra labels, e.g. the service's `aadpodidbinding`. */
  labels?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
  image?: string;
}

/**
 * Reads an NMI pod's `/healthz` through the API server's pod proxy. `active` only when the
 * status is 200 and the body reads `Active` (`Not Active` means IMDS calls are not intercepted).
 */
export async function checkNmiHealth(kube: KubeGateway, nmiPod: { namespace: string; name: string } | KubeObject): Promise<{ active: boolean; body: string }> {
  const namespace = 'metadata' in nmiPod && nmiPod.metadata ? nmiPod.metadata.namespace! : (nmiPod as { namespace: string }).namespace;
  const name = 'metadata' in nmiPod && nmiPod.metadata ? nmiPod.metadata.name! : (nmiPod as { name: string }).name;
  const resp = await kube.proxyGet(namespace, name, 8085, '/healthz');
  const body = resp.body.trim();
  return { active: resp.status === 200 && body === 'Active', body: resp.status === 200 ? body : `HTTP ${resp.status} ${body.slice(0, 200)}` };
}

/** The NMI DaemonSet's pod on a node, or undefined (one list call by `spec.nodeName`). */
export async function findNmiPod(kube: KubeGateway, nmi: { namespace: string; name: string }, nodeName: string): Promise<KubeObject | undefined> {
  const pods = await kube.list(KINDS.Pod, { namespace: nmi.namespace, fieldSelector: `spec.nodeName=${nodeName}` });
  return pods.find((p) => !p.metadata?.deletionTimestamp && p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet' && o.name === nmi.name));
}

/**
 * Runs a token round trip on one node and checks the claims. Resolves (never rejects for a
 * failed probe; only for API errors or an abort); the probe pod is deleted in every case.
 */
export async function runTokenProbe(kube: KubeGateway, opts: TokenProbeOptions): Promise<ProbeResult> {
  const resource = opts.resource ?? DEFAULT_TOKEN_RESOURCE;
  assertShellSafe('resource', resource);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const url = `http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(resource)}`;
  const script = tokenScript(url, attemptsFor(timeoutMs));
  const run = await runProbePod(kube, {
    namespace: opts.namespace,
    nodeName: opts.nodeName,
    labels: { aadpodidbinding: opts.selector },
    script,
    timeoutMs,
    signal: opts.signal,
    image: opts.image,
    prefix: 'podid-probe-token',
  });
  return interpretTokenRun(run, opts.identity, opts.nodeName);
}

/** Runs an HTTP check from a pod on the node: the URL must answer `expectStatus` (default 200). */
export async function runHttpProbe(kube: KubeGateway, opts: HttpProbeOptions): Promise<ProbeResult> {
  assertShellSafe('url', opts.url);
  const expect = opts.expectStatus ?? 200;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const run = await runProbePod(kube, {
    namespace: opts.namespace,
    nodeName: opts.nodeName,
    labels: opts.labels ?? {},
    script: httpScript(opts.url, expect, attemptsFor(timeoutMs)),
    timeoutMs,
    signal: opts.signal,
    image: opts.image,
    prefix: 'podid-probe-http',
  });
  const statuses = parseStatusLines(run.log);
  const last = statuses.at(-1);
  const base = { pod: run.pod, node: opts.nodeName, attempts: statuses.length, status: last?.status, mismatches: [], durationMs: run.durationMs };
  if (last && last.status === expect) return { ...base, ok: true, message: `${opts.url} answered ${expect} (attempt ${statuses.length})` };
  return { ...base, ok: false, message: `${opts.url} did not answer ${expect}: ${describeLast(run, last)}` };
}

/** Deletes every probe pod (label {@link PROBE_LABEL}=true) in the cluster; returns how many. */
export async function sweepProbePods(kube: KubeGateway): Promise<number> {
  const pods = await kube.list(KINDS.Pod, { labelSelector: `${PROBE_LABEL}=true` });
  let n = 0;
  for (const p of pods) {
    if ((await kube.delete(KINDS.Pod, p.metadata!.namespace, p.metadata!.name!, { gracePeriodSeconds: 0 })) === 'deleted') n++;
  }
  return n;
}

// ---- claims --------------------------------------------------------------------------------

/**
 * Decodes a JWT payload. Accepts the payload segment alone (what the probe pod prints) or a
 * whole compact token; returns undefined when it is not base64url JSON.
 */
export function decodeJwtPayload(tokenOrPayload: string): Record<string, unknown> | undefined {
  const trimmed = tokenOrPayload.trim();
  const parts = trimmed.split('.');
  // The probe prints the claims segment only (never a signed token): decode it as the payload
  // of a compact JWT with empty header and signature; jose reads neither of those.
  const compact = parts.length === 3 ? trimmed : parts.length === 1 ? `.${trimmed}.` : undefined;
  if (!compact) return undefined;
  try {
    return decodeJwt(compact) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The claims the check uses, picked out of a decoded payload (nothing else is kept). */
export function pickClaims(payload: Record<string, unknown>): TokenClaims {
  const str = (k: string) => (typeof payload[k] === 'string' ? (payload[k] as string) : undefined);
  return { xms_mirid: str('xms_mirid'), appid: str('appid'), oid: str('oid'), tid: str('tid'), aud: str('aud'), exp: typeof payload.exp === 'number' ? payload.exp : undefined };
}

/**
 * Compares claims with the expected identity; returns one line per mismatch (empty: the token
 * belongs to the identity). `xms_mirid` is compared case-insensitively (ARM lower-cases
 * `resourcegroups`); `oid` only when the principal id is known.
 */
export function verifyClaims(claims: TokenClaims, identity: ExpectedIdentity): string[] {
  const out: string[] = [];
  if (identity.resourceId) {
    if (!claims.xms_mirid) out.push(`the token has no xms_mirid claim (expected ${identity.resourceId})`);
    else if (claims.xms_mirid.toLowerCase() !== identity.resourceId.toLowerCase()) out.push(`xms_mirid is ${claims.xms_mirid}, expected ${identity.resourceId}`);
  }
  if (!claims.appid) out.push(`the token has no appid claim (expected client id ${identity.clientId})`);
  else if (claims.appid.toLowerCase() !== identity.clientId.toLowerCase()) out.push(`appid is ${claims.appid}, expected client id ${identity.clientId}`);
  if (identity.principalId) {
    if (!claims.oid) out.push(`the token has no oid claim (expected principal id ${identity.principalId})`);
    else if (claims.oid.toLowerCase() !== identity.principalId.toLowerCase()) {
      out.push(`oid is ${claims.oid}, expected principal id ${identity.principalId} (IMDS may be serving a cached token of a deleted and re-created identity)`);
    }
  }
  return out;
}

/** Replaces anything shaped like a JWT (or a long base64url run after `eyJ`) with a marker. */
export function scrubTokens(text: string): string {
  return text.replace(/eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}/g, '<redacted token>');
}

// ---- probe pods ----------------------------------------------------------------------------

/** What one probe pod did (exported for the workload identity probe, which runs its own script). */
export interface ProbePodRun {
  pod: string;
  /** Container log, scrubbed of anything token-like except the payload line the caller parses. */
  log: string;
  phase: string;
  exitCode?: number;
  timedOut: boolean;
  durationMs: number;
}

/** A probe pod to run: its script, where, with which labels (and service account). */
export interface ProbePodSpec {
  namespace: string;
  /** Pinned to this node; absent: the scheduler places it (workload identity does not depend on the node). */
  nodeName?: string;
  /** The pod's service account (absent: `default`). */
  serviceAccountName?: string;
  /** Pod annotations (e.g. the workload identity proxy sidecar). */
  annotations?: Record<string, string>;
  labels: Record<string, string>;
  script: string;
  timeoutMs: number;
  signal?: AbortSignal;
  image?: string;
  prefix: string;
}

/** Builds the pod object of a probe (exported for tests and for operators reading the code). */
export function probePodManifest(spec: Omit<ProbePodSpec, 'timeoutMs' | 'signal'> & { name: string }): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: spec.name,
      namespace: spec.namespace,
      labels: { ...spec.labels, [PROBE_LABEL]: 'true', [PROBE_RUN_LABEL]: PROBE_RUN_ID, 'app.kubernetes.io/managed-by': 'podid-migrate' },
      ...(spec.annotations ? { annotations: { ...spec.annotations } } : {}),
    },
    spec: {
      ...(spec.nodeName ? { nodeName: spec.nodeName } : {}),
      ...(spec.serviceAccountName ? { serviceAccountName: spec.serviceAccountName } : {}),
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 0,
      // Pinned by nodeName, so the scheduler is bypassed; tolerate taints the pool may carry.
      tolerations: [{ operator: 'Exists' }],
      containers: [
        {
          name: 'probe',
          image: spec.image ?? PROBE_IMAGE,
          command: ['sh', '-c', spec.script],
          resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '100m', memory: '64Mi' } },
        },
      ],
    },
  };
}

/**
 * Deletes the probe pods a run that died left behind (created by another process, see
 * {@link PROBE_RUN_LABEL}): left alone, such a pod without a controller would stop `drain` on
 * its node. Returns how many.
 */
export async function sweepLeftoverProbePods(kube: KubeGateway): Promise<number> {
  const pods = await kube.list(KINDS.Pod, { labelSelector: `${PROBE_LABEL}=true,${PROBE_RUN_LABEL}!=${PROBE_RUN_ID}` });
  let n = 0;
  for (const p of pods) {
    if (p.metadata?.labels?.[PROBE_RUN_LABEL] === PROBE_RUN_ID) continue;
    if ((await kube.delete(KINDS.Pod, p.metadata!.namespace, p.metadata!.name!, { gracePeriodSeconds: 0 })) === 'deleted') n++;
  }
  return n;
}

/** Creates a probe pod, awaits its end, reads its log and deletes it (in every case). */
export async function runProbePod(kube: KubeGateway, spec: ProbePodSpec): Promise<ProbePodRun> {
  const started = Date.now();
  const name = `${spec.prefix}-${randomBytes(4).toString('hex')}`;
  const manifest = probePodManifest({ ...spec, name });
  await sweepLeftoverProbePods(kube);
  await kube.create(manifest);
  try {
    let lastPhase = 'Pending';
    let exitCode: number | undefined;
    let timedOut = false;
    try {
      const final = await kube.waitFor(
        async (note) => {
          // A list of the probe pods, not a GET: the migration's Kubernetes reads stay list calls (a figure its tests assert).
          const pod = (await kube.list(KINDS.Pod, { namespace: spec.namespace, labelSelector: `${PROBE_LABEL}=true` })).find((p) => p.metadata?.name === name);
          if (!pod) throw new Error(`probe pod ${spec.namespace}/${name} disappeared before it finished`);
          const status = (pod.status ?? {}) as { phase?: string; containerStatuses?: { state?: { terminated?: { exitCode?: number } } }[] };
          lastPhase = status.phase ?? 'Pending';
          note(`pod ${lastPhase}`);
          if (lastPhase === 'Succeeded' || lastPhase === 'Failed') return { phase: lastPhase, exitCode: status.containerStatuses?.[0]?.state?.terminated?.exitCode };
          return undefined;
        },
        { describe: `probe pod ${spec.namespace}/${name}${spec.nodeName ? ` on node ${spec.nodeName}` : ''}`, timeoutMs: spec.timeoutMs + POD_START_SLACK_MS, intervalMs: 300, signal: spec.signal },
      );
      lastPhase = final.phase;
      exitCode = final.exitCode;
    } catch (e) {
      if ((e as Error).name !== 'WaitTimeoutError') throw e;
      timedOut = true;
    }
    let log = '';
    try {
      log = await kube.podLog(spec.namespace, name, 'probe');
    } catch {
      // A pod that never started has no log; the phase says why.
    }
    return { pod: name, log, phase: lastPhase, exitCode, timedOut, durationMs: Date.now() - started };
  } finally {
    // Never leave a probe behind, even on abort: an unbound view still reaches the API server.
    await kube
      .scoped({ deadline: Date.now() + 15_000 })
      .delete(KINDS.Pod, spec.namespace, name, { gracePeriodSeconds: 0 })
      .catch(() => undefined);
  }
}

function attemptsFor(timeoutMs: number): number {
  return Math.max(1, Math.ceil(timeoutMs / 1000 / PROBE_RETRY_SECONDS));
}

/** Single-quoted shell words must not contain a quote; URLs and audiences never need one. */
function assertShellSafe(what: string, value: string): void {
  if (!/^[A-Za-z0-9:/?&=._~%+,@#-]+$/.test(value)) throw new Error(`probe ${what} ${JSON.stringify(value)} contains characters that cannot be passed to the probe pod safely`);
}

function sequence(n: number): string {
  return Array.from({ length: n }, (_, i) => String(i + 1)).join(' ');
}

/**
 * The token probe's shell script. The response goes to a file, never to stdout; on 200 only
 * the payload segment (`cut -d. -f2`) is printed, which cannot be used as a token.
 */
export function tokenScript(url: string, attempts: number): string {
  return [
    `for i in ${sequence(attempts)}; do`,
    `  curl -s -m 30 -o /tmp/imds-response -w '%{http_code}' -H 'Metadata: true' '${url}' > /tmp/imds-status`,
    `  code=$(cat /tmp/imds-status)`,
    `  if [ "$code" = "200" ]; then echo "probe-status 200 attempt $i"; printf 'probe-claims '; cut -d. -f2 /tmp/imds-response; exit 0; fi`,
    `  echo "probe-status $code attempt $i $(head -c 300 /tmp/imds-response)"`,
    `  sleep ${PROBE_RETRY_SECONDS}`,
    `done`,
    `exit 1`,
  ].join('\n');
}

/** The HTTP probe's shell script: retries until the URL answers the expected status. */
export function httpScript(url: string, expect: number, attempts: number): string {
  return [
    `for i in ${sequence(attempts)}; do`,
    `  curl -s -m 10 -o /dev/null -w '%{http_code}' '${url}' > /tmp/http-status`,
    `  code=$(cat /tmp/http-status)`,
    `  echo "probe-status $code attempt $i"`,
    `  if [ "$code" = "${expect}" ]; then exit 0; fi`,
    `  sleep ${PROBE_RETRY_SECONDS}`,
    `done`,
    `exit 1`,
  ].join('\n');
}

interface StatusLine {
  status: number;
  attempt: number;
  detail: string;
}

/** `probe-status <code> attempt <n> <detail>` lines of a probe log (curl prints 000 when it got no answer). */
export function parseStatusLines(log: string): StatusLine[] {
  const out: StatusLine[] = [];
  for (const line of log.split('\n')) {
    const m = /^probe-status (\d{3}) attempt (\d+)\s?(.*)$/.exec(line);
    if (m) out.push({ status: Number(m[1]), attempt: Number(m[2]), detail: scrubTokens(m[3]).trim() });
  }
  return out;
}

/** The last attempt of a probe log, or why there was none, in one line. */
export function describeLast(run: ProbePodRun, last: StatusLine | undefined): string {
  if (!last) {
    if (run.timedOut) return `the probe pod ${run.pod} did not finish in time (phase ${run.phase})`;
    const tail = scrubTokens(run.log).trim().split('\n').slice(-2).join(' | ');
    return `the probe pod ${run.pod} ended ${run.phase}${run.exitCode !== undefined ? ` (exit ${run.exitCode})` : ''} without a result${tail ? `: ${tail.slice(0, 300)}` : ''}`;
  }
  const what = last.status === 0 ? 'no answer (connection failed or timed out)' : `HTTP ${last.status}`;
  return `${what} after ${last.attempt} attempt${last.attempt === 1 ? '' : 's'}${last.detail ? `: ${last.detail.slice(0, 300)}` : ''}${run.timedOut ? ' (probe pod timed out)' : ''}`;
}

/** Turns a token probe pod's log into a verdict. Exported for unit tests. */
export function interpretTokenRun(run: Pick<ProbePodRun, 'pod' | 'log' | 'phase' | 'exitCode' | 'timedOut' | 'durationMs'>, identity: ExpectedIdentity, node: string): ProbeResult {
  const statuses = parseStatusLines(run.log);
  const last = statuses.at(-1);
  const base = { pod: run.pod, node, attempts: statuses.length, status: last?.status, durationMs: run.durationMs };
  const claimsLine = run.log.split('\n').find((l) => l.startsWith('probe-claims '));
  if (!last || last.status !== 200 || claimsLine === undefined) {
    return { ...base, ok: false, mismatches: [], message: `no token for identity ${identity.name} on node ${node}: ${describeLast(run, last)}` };
  }
  const payload = decodeJwtPayload(claimsLine.slice('probe-claims '.length));
  if (!payload) return { ...base, ok: false, mismatches: [], message: `IMDS answered 200 on node ${node} but the response held no readable token` };
  const claims = pickClaims(payload);
  const mismatches = verifyClaims(claims, identity);
  if (mismatches.length) {
    return { ...base, ok: false, claims, mismatches, message: `token on node ${node} is not for identity ${identity.name}: ${mismatches.join('; ')}` };
  }
  return { ...base, ok: true, claims, mismatches, message: `token for ${identity.name} on node ${node}: ${[identity.resourceId ? 'xms_mirid' : '', 'appid', identity.principalId ? 'oid' : ''].filter(Boolean).join(', ')} match (attempt ${last.attempt})` };
}
