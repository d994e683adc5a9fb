/**
 * The workload identity token probe: a short-lived pod in the service's namespace, running as
 * the service's service account and labelled `azure.workload.identity/use: "true"`, so the
 * webhook injects `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_AUTHORITY_HOST` and the projected
 * token file exactly as it does for the service's own pods. The pod then does what an SDK's
 * `WorkloadIdentityCredential` does: a client-credentials request to
 * `${AZURE_AUTHORITY_HOST}${AZURE_TENANT_ID}/oauth2/v2.0/token` with the projected service
 * account token as `client_assertion`. The response goes to a file; on 200 only the payload
 * segment (`cut -d. -f2`) is printed, never a usable token; otherwise the AADSTS code. The
 * claims must be the service's identity (`xms_mirid`, `appid`, `oid`).
 *
 * Retries happen inside the pod every 5 s for the whole budget: right after a federated
 * credential is written, Entra answers `AADSTS70021` until it has propagated.
 */
import type { KubeGateway } from '../../../kube/gateway.ts';
import {
  DEFAULT_PROBE_TIMEOUT_MS,
  DEFAULT_TOKEN_RESOURCE,
  PROBE_RETRY_SECONDS,
  decodeJwtPayload,
  describeLast,
  parseStatusLines,
  pickClaims,
  runProbePod,
  verifyClaims,
  type ExpectedIdentity,
  type ProbePodRun,
  type ProbeResult,
} from '../probe.ts';

/** The pod label the workload identity webhook acts on. */
export const WI_USE_LABEL = 'azure.workload.identity/use';

/** Options of {@link runWorkloadIdentityTokenProbe}. */
export interface WiTokenProbeOptions {
  namespace: string;
  serviceAccountName: string;
  identity: ExpectedIdentity;
  /** Audience, default `https://management.azure.com/` (asked for as `<resource>/.default`). */
  resource?: string;
  /** Budget for retries inside the pod (default 80 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  image?: string;
}

/** The scope a client-credentials request asks for: the resource without its trailing slash, then `/.default`. */
export function scopeOf(resource: string): string {
  return `${resource.replace(/\/+$/, '')}/.default`;
}

/**
 * The probe's shell script: the client-assertion exchange, retried every 5 s. Variables are the
 * webhook's env; the assertion is read from the projected token file at each attempt (the
 * kubelet rotates it).
 */
export function exchangeScript(scope: string, attempts: number): string {
  if (!/^[A-Za-z0-9:/._~%+-]+$/.test(scope)) throw new Error(`probe scope ${JSON.stringify(scope)} contains characters that cannot be passed to the probe pod safely`);
  return [
    `for i in ${Array.from({ length: attempts }, (_, i) => i + 1).join(' ')}; do`,
    `  curl -s -m 30 -o /tmp/token-response -w '%{http_code}' -X POST -d grant_type=client_credentials -d "client_id=$AZURE_CLIENT_ID" --data-urlencode 'scope=${scope}' -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer -d "client_assertion=$(cat "$AZURE_FEDERATED_TOKEN_FILE")" "\${AZURE_AUTHORITY_HOST}\${AZURE_TENANT_ID}/oauth2/v2.0/token" > /tmp/token-status`,
    `  code=$(cat /tmp/token-status)`,
    `  if [ "$code" = "200" ]; then echo "probe-status 200 attempt $i"; printf 'probe-claims '; cut -d. -f2 /tmp/token-response; exit 0; fi`,
    `  echo "probe-status $code attempt $i $(cut -d'"' -f8 /tmp/token-response | cut -d: -f1)"`,
    `  sleep ${PROBE_RETRY_SECONDS}`,
    `done`,
    `exit 1`,
  ].join('\n');
}

/** Turns the probe pod's log into a verdict (exported for unit tests). */
export function interpretExchange(run: Pick<ProbePodRun, 'pod' | 'log' | 'phase' | 'exitCode' | 'timedOut' | 'durationMs'>, identity: ExpectedIdentity, where: string): ProbeResult {
  const statuses = parseStatusLines(run.log);
  const last = statuses.at(-1);
  const base = { pod: run.pod, node: '', attempts: statuses.length, status: last?.status, durationMs: run.durationMs };
  const claimsLine = run.log.split('\n').find((l) => l.startsWith('probe-claims '));
  if (!last || last.status !== 200 || claimsLine === undefined) {
    const hint = last?.detail === 'AADSTS70021' ? ' (no federated credential matches the service account, or it has not propagated yet)' : '';
    return { ...base, ok: false, mismatches: [], message: `no workload identity token for ${identity.name} as ${where}: ${describeLast(run, last)}${hint}` };
  }
  const payload = decodeJwtPayload(claimsLine.slice('probe-claims '.length));
  if (!payload) return { ...base, ok: false, mismatches: [], message: `the token endpoint answered 200 for ${where} but the response held no readable token` };
  const claims = pickClaims(payload);
  const mismatches = verifyClaims(claims, identity);
  if (mismatches.length) return { ...base, ok: false, claims, mismatches, message: `workload identity token for ${where} is not for identity ${identity.name}: ${mismatches.join('; ')}` };
  const matched = [identity.resourceId ? 'xms_mirid' : '', 'appid', identity.principalId ? 'oid' : ''].filter(Boolean).join(', ');
  return { ...base, ok: true, claims, mismatches, message: `workload identity token for ${identity.name} as ${where}: ${matched} match (attempt ${last.attempt})` };
}

/**
 * Runs the exchange from a probe pod of the service's service account and checks the claims.
 * Resolves for a failed probe (rejects only on API errors or an abort); the pod is always deleted.
 */
export async function runWorkloadIdentityTokenProbe(kube: KubeGateway, opts: WiTokenProbeOptions): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const attempts = Math.max(1, Math.ceil(timeoutMs / 1000 / PROBE_RETRY_SECONDS));
  const run = await runProbePod(kube, {
    namespace: opts.namespace,
    serviceAccountName: opts.serviceAccountName,
    labels: { [WI_USE_LABEL]: 'true' },
    script: exchangeScript(scopeOf(opts.resource ?? DEFAULT_TOKEN_RESOURCE), attempts),
    timeoutMs,
    signal: opts.signal,
    image: opts.image,
    prefix: 'podid-probe-wi',
  });
  return interpretExchange(run, opts.identity, `serviceaccount ${opts.namespace}/${opts.serviceAccountName}`);
}
