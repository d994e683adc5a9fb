/**
 * The outage meter's verdict for pods on the workload identity path (see
 * {@link onWorkloadIdentityPath}): a token request "would succeed" iff the exchange the
 * pod's SDK (or its proxy sidecar) would do right now succeeds. Evaluated from state alone:
 * the pod's injected env, the token the kubelet wrote into its projected file, the issuer,
 * and the identity's federated credentials. Causes (the `byCause` keys):
 *
 * - `wi-webhook-not-applied`: labelled, but created while the webhook was not installed (no
 *   `AZURE_FEDERATED_TOKEN_FILE`); the pod needs a restart;
 * - `wi-missing-client-id`: no `AZURE_CLIENT_ID` (the service account had no
 *   `azure.workload.identity/client-id` annotation when the pod was created);
 * - `wi-oidc-issuer-disabled` / `wi-issuer-mismatch`: the token's `iss` is not the served issuer;
 * - `wi-proxy-not-ready`: the pod's IMDS redirect points at a proxy that does not listen;
 * - `wi-no-federated-credential`, `wi-credential-propagating`, `wi-unknown-client-id`,
 *   `wi-wrong-tenant`, `wi-token-expired`, `wi-bad-assertion`: what Entra would answer.
 */
import type { PodNetwork } from '../netsim.ts';
import type { KObject } from '../store.ts';
import type { Clock } from '../clock.ts';
import type { ArmState } from '../arm/state.ts';
import { ENV_CLIENT_ID, ENV_TENANT_ID, ENV_TOKEN_FILE, PROXY_CONTAINER, USE_LABEL } from './constants.ts';
import { decideExchange } from './entra.ts';
import type { ServiceAccountIssuer } from './issuer.ts';
import type { ProjectedTokenFiles } from './projected-tokens.ts';
import type { WorkloadIdentityState } from './state.ts';

/** The verdict shape the outage meter takes. */
export type WorkloadIdentityVerdict = { ok: true } | { ok: false; cause: string };

export interface WorkloadIdentityMeterOptions {
  clock: Clock;
  arm: ArmState;
  state: WorkloadIdentityState;
  issuer: ServiceAccountIssuer;
  files: ProjectedTokenFiles;
  network: PodNetwork;
}

/**
 * Whether the meter judges this pod by the workload identity path: labelled, and either its
 * requests go through the proxy sidecar, or its SDK would pick the workload identity
 * credential (`AZURE_FEDERATED_TOKEN_FILE` and `AZURE_CLIENT_ID` set, as
 * `DefaultAzureCredential` requires), or it has no Pod Identity binding to fall back on.
 * A labelled pod that still carries `aadpodidbinding` but lacks that env gets its token from
 * IMDS through NMI, so the Pod Identity verdict applies to it.
 */
export function onWorkloadIdentityPath(pod: Readonly<KObject>): boolean {
  if (pod.metadata.labels?.[USE_LABEL] !== 'true') return false;
  const containers = (pod.spec?.containers as any[] | undefined) ?? [];
  if (containers.some((c) => c.name === PROXY_CONTAINER)) return true;
  if (containers.some((c) => c.name !== PROXY_CONTAINER && envOf(c).has(ENV_TOKEN_FILE) && envOf(c).has(ENV_CLIENT_ID))) return true;
  return !pod.metadata.labels?.aadpodidbinding;
}

function envOf(container: Readonly<Record<string, any>>): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of (container.env as any[] | undefined) ?? []) if (typeof e?.value === 'string') out.set(e.name, e.value);
  return out;
}

/** Would a token request from this pod succeed right now? Side-effect free for the Azure state. */
export function evaluateWorkloadIdentityPod(opts: WorkloadIdentityMeterOptions, pod: Readonly<KObject>): WorkloadIdentityVerdict {
  const containers = ((pod.spec?.containers as any[] | undefined) ?? []).filter((c) => c.name !== PROXY_CONTAINER);
  const app = containers.find((c) => envOf(c).has(ENV_TOKEN_FILE));
  if (!app) return { ok: false, cause: 'wi-webhook-not-applied' };
  const env = envOf(app);
  const clientId = env.get(ENV_CLIENT_ID);
  if (!clientId) return { ok: false, cause: 'wi-missing-client-id' };
  const podIp = String(pod.status?.podIP ?? '');
  const redirect = podIp ? opts.network.podImdsRedirect(podIp) : undefined;
  if (redirect !== undefined && !opts.network.isListening(podIp, redirect)) return { ok: false, cause: 'wi-proxy-not-ready' };
  const token = opts.files.read(pod, app, env.get(ENV_TOKEN_FILE)!);
  if (!token) return { ok: false, cause: 'wi-token-file-missing' };
  const v = opts.issuer.verify(token);
  if (!v.ok) return { ok: false, cause: 'wi-bad-assertion' };
  if (!opts.state.issuerUrl) return { ok: false, cause: 'wi-oidc-issuer-disabled' };
  if (v.claims.iss !== opts.state.issuerUrl) return { ok: false, cause: 'wi-issuer-mismatch' };
  const d = decideExchange(opts, env.get(ENV_TENANT_ID) ?? '', clientId, v.claims);
  if (d.ok) return { ok: true };
  const names: Record<string, string> = {
    'unknown-tenant': 'wi-wrong-tenant',
    'unknown-client-id': 'wi-unknown-client-id',
    'assertion-expired': 'wi-token-expired',
    'no-federated-credential': 'wi-no-federated-credential',
    'credential-propagating': 'wi-credential-propagating',
  };
  return { ok: false, cause: names[d.cause] ?? `wi-${d.cause}` };
}
