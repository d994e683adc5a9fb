/**
 * The Microsoft Entra token endpoint, for the client-assertion exchange workload identity
 * does: `POST /<tenant>/oauth2/v2.0/token` with form fields `grant_type=client_credentials`,
 * `client_id`, `scope` (`<resource>/.default`),
 * `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and
 * `client_assertion=<service account token>`.
 *
 * The assertion is validated as Entra does: signature against the issuer's JWKS (the issuer
 * must serve its discovery document, i.e. the cluster's OIDC issuer must be enabled), time
 * window, then a federated identity credential of the identity whose client id is given must
 * match its issuer, subject and audience, and have propagated. Errors are Entra's: HTTP 400/401
 * with `error`, `error_description` (`AADSTS<code>: ...` plus trace and correlation ids and a
 * timestamp), `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
 *
 * Requests are counted in the sandbox metrics as api `entra` (resource `token`,
 * `openid-configuration`, `instance-discovery`; caller `pod` or `client`), and `entra` fault
 * rules apply (`status` with an Entra-style body and optional `Retry-After`; `latency`).
 *
 * A successful exchange returns `{"token_type":"Bearer","expires_in",...,"access_token"}`, the
 * access token signed by the sandbox IMDS signer with the identity's `oid`, `appid`, `tid`,
 * `xms_mirid` and the scope's resource as `aud`.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { ArmState, UserAssignedIdentity } from '../arm/state.ts';
import type { TokenIssuer } from '../podidentity/common.ts';
import type { SimHttpResponse } from '../netsim.ts';
import type { FaultInjector } from '../faults.ts';
import type { Metrics } from '../metrics.ts';
import type { ServiceAccountIssuer, VerifiedToken } from './issuer.ts';
import type { WorkloadIdentityState } from './state.ts';

export const JWT_BEARER_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Lifetime of exchanged managed identity tokens (24 h, as for IMDS). */
const ACCESS_TOKEN_LIFETIME_SECONDS = 86_399;

/** The outcome of an exchange, decided without issuing anything. */
export type ExchangeDecision =
  | { ok: true; identity: UserAssignedIdentity }
  | { ok: false; status: number; error: string; code: number; message: string; cause: ExchangeFailureCause };

/** Short names of why an exchange fails, used by the outage meter (`wi-<cause>`). */
export type ExchangeFailureCause =
  | 'unknown-tenant'
  | 'unknown-client-id'
  | 'issuer-unreachable'
  | 'bad-assertion'
  | 'assertion-expired'
  | 'no-federated-credential'
  | 'credential-propagating';

export interface EntraOptions {
  clock: Clock;
  arm: ArmState;
  state: WorkloadIdentityState;
  issuer: ServiceAccountIssuer;
  /** The access token signer (the sandbox IMDS one); looked up per request. */
  accessTokens: () => TokenIssuer | undefined;
  /** Counts requests as api `entra`. */
  metrics?: Metrics;
  /** Fault rules for api `entra` (status with Retry-After, latency). */
  faults?: FaultInjector;
}

function fail(status: number, error: string, code: number, message: string, cause: ExchangeFailureCause): ExchangeDecision {
  return { ok: false, status, error, code, message, cause };
}

/**
 * Decides an exchange for a client id and an already signature-checked assertion. Pure: reads
 * the ARM and workload identity state only.
 */
export function decideExchange(opts: Pick<EntraOptions, 'arm' | 'state' | 'clock'>, tenant: string, clientId: string, claims: VerifiedToken): ExchangeDecision {
  const { arm, state, clock } = opts;
  if (tenant.toLowerCase() !== arm.tenantId.toLowerCase()) {
    return fail(400, 'invalid_request', 90002, `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`, 'unknown-tenant');
  }
  const identity = arm.identities().find((i) => i.clientId.toLowerCase() === clientId.toLowerCase());
  if (!identity) {
    return fail(400, 'unauthorized_client', 700016, `Application with identifier '${clientId}' was not found in the directory '${arm.tenantId}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`, 'unknown-client-id');
  }
  const now = Math.floor(clock.now() / 1000);
  if (!(claims.exp > now) || claims.nbf - 300 > now) {
    return fail(400, 'invalid_client', 700024, `Client assertion is not within its valid time range. Current time: ${iso(now)}, assertion valid from ${iso(claims.nbf)}, expiry time of assertion ${iso(claims.exp)}. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .`, 'assertion-expired');
  }
  const match = state.matchingCredential(identity.id, claims);
  const noMatch = `No matching federated identity record found for presented assertion. Assertion Issuer: '${claims.iss}'. Assertion Subject: '${claims.sub}'. Assertion Audience: '${claims.aud.join(',')}'. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation`;
  if (!match) return fail(400, 'invalid_request', 70021, noMatch, 'no-federated-credential');
  // A fresh credential is not yet known to the token service: the same answer as no credential.
  if (!match.propagated) return fail(400, 'invalid_request', 70021, noMatch, 'credential-propagating');
  return { ok: true, identity };
}

/** The token endpoint: answers one HTTP request to the authority host. */
export function entraTokenEndpoint(opts: EntraOptions): (method: string, url: URL, body: string, caller?: string) => Promise<SimHttpResponse> {
  const { clock, issuer, state } = opts;

  /** Applies `entra` fault rules (status, latency), then serves; counts every request. */
  return async (method, url, body, caller = 'client') => {
    const resource = /\/oauth2\/v2\.0\/token\/?$/i.test(url.pathname) ? 'token' : /openid-configuration\/?$/i.test(url.pathname) ? 'openid-configuration' : /discovery\/instance/i.test(url.pathname) ? 'instance-discovery' : 'other';
    let res: SimHttpResponse;
    const rule = opts.faults?.match('entra', method, url.pathname);
    if (rule && rule.action.kind === 'status') {
      const a = rule.action;
      const code = a.status === 429 ? 90055 : a.status >= 500 ? 90033 : 90014;
      const text = a.message ?? (a.status === 429 ? 'There are too many incoming requests. Please try again later.' : a.status >= 500 ? 'A transient error has occurred. Please try again.' : 'The request was refused.');
      res = errorReply(a.status, a.code ?? (a.status >= 429 ? 'temporarily_unavailable' : 'invalid_request'), code, text);
      if (a.retryAfterSeconds !== undefined) res.headers = { ...res.headers, 'retry-after': String(a.retryAfterSeconds) };
    } else {
      const a = rule?.action;
      if (a?.kind === 'latency') await new Promise((r) => setTimeout(r, a.ms));
      res = await handle(method, url, body);
    }
    opts.metrics?.record({ api: 'entra', verb: method, resource, status: res.status, caller });
    return res;
  };

  function errorReply(status: number, error: string, code: number, message: string): SimHttpResponse {
    const ts = new Date(clock.now()).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
    const trace = randomUUID();
    const correlation = randomUUID();
    return {
      status,
      headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store, no-cache', 'x-ms-request-id': trace },
      body: JSON.stringify({
        error,
        error_description: `AADSTS${code}: ${message}\r\nTrace ID: ${trace}\r\nCorrelation ID: ${correlation}\r\nTimestamp: ${ts}`,
        error_codes: [code],
        timestamp: ts,
        trace_id: trace,
        correlation_id: correlation,
        error_uri: `https://login.microsoftonline.com/error?code=${code}`,
      }),
    };
  }

  function json(body: unknown): SimHttpResponse {
    return { status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, body: JSON.stringify(body) };
  }

  /** The tenant's OpenID configuration, which MSAL reads to find the token endpoint. */
  function openIdConfiguration(base: string, tenant: string): SimHttpResponse {
    const known = tenant.toLowerCase() === opts.arm.tenantId.toLowerCase() || ['common', 'organizations'].includes(tenant.toLowerCase());
    if (!known) return errorReply(400, 'invalid_tenant', 90002, `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`);
    const tid = tenant.toLowerCase() === opts.arm.tenantId.toLowerCase() ? opts.arm.tenantId : '{tenantid}';
    return json({
      token_endpoint: `${base}${tenant}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      jwks_uri: `${base}${tenant}/discovery/v2.0/keys`,
      response_modes_supported: ['query', 'fragment', 'form_post'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      issuer: `${base}${tid}/v2.0`,
      request_uri_parameter_supported: false,
      authorization_endpoint: `${base}${tenant}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${base}${tenant}/oauth2/v2.0/devicecode`,
      end_session_endpoint: `${base}${tenant}/oauth2/v2.0/logout`,
      tenant_region_scope: 'EU',
      cloud_instance_name: 'microsoftonline.com',
    });
  }

  async function handle(method: string, url: URL, body: string): Promise<SimHttpResponse> {
    const pathname = url.pathname;
    const base = `${url.origin}/`;
    const oidc = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration\/?$/i.exec(pathname);
    if (oidc && method === 'GET') return openIdConfiguration(base, decodeURIComponent(oidc[1]));
    if (/^\/common\/discovery\/instance\/?$/i.test(pathname) && method === 'GET') {
      const host = url.host;
      return json({ tenant_discovery_endpoint: `${base}{tenant}/v2.0/.well-known/openid-configuration`, 'api-version': '1.1', metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }] });
    }
    const m = /^\/([^/]+)\/oauth2\/v2\.0\/token\/?$/i.exec(pathname);
    if (!m) return { status: 404, headers: { 'content-type': 'text/html' }, body: '<html><body>404 Not Found</body></html>' };
    if (method !== 'POST') return errorReply(400, 'invalid_request', 900561, 'The endpoint only accepts POST requests. Received a GET request.');
    const tenant = decodeURIComponent(m[1]);
    const form = new URLSearchParams(body);
    for (const field of ['grant_type', 'client_id', 'scope']) {
      if (!form.get(field)) return errorReply(400, 'invalid_request', 900144, `The request body must contain the following parameter: '${field}'.`);
    }
    if (form.get('grant_type') !== 'client_credentials') return errorReply(400, 'unsupported_grant_type', 70003, `The app requested an unsupported grant type '${form.get('grant_type')}'.`);
    const scope = form.get('scope')!;
    if (!/\/\.default$/.test(scope) || scope.trim().includes(' ')) {
      return errorReply(400, 'invalid_scope', 1002012, `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`);
    }
    const assertion = form.get('client_assertion');
    if (!assertion) return errorReply(401, 'invalid_client', 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
    if (form.get('client_assertion_type') !== JWT_BEARER_ASSERTION_TYPE) {
      return errorReply(400, 'invalid_request', 50027, `Invalid client_assertion_type '${form.get('client_assertion_type') ?? ''}': expected '${JWT_BEARER_ASSERTION_TYPE}'.`);
    }
    const v = issuer.verify(assertion.trim());
    if (!v.ok) {
      if (v.why === 'malformed') return errorReply(400, 'invalid_request', 50027, 'JWT token is invalid or malformed.');
      return errorReply(401, 'invalid_client', 700027, 'Client assertion failed signature validation.');
    }
    // Entra fetches the issuer's discovery document and JWKS before trusting the key.
    if (!state.issuerUrl || v.claims.iss !== state.issuerUrl) {
      return errorReply(400, 'invalid_request', 50166, `Request to External OIDC endpoint failed. The issuer '${v.claims.iss}' does not serve an OpenID configuration document.`);
    }
    const d = decideExchange(opts, tenant, form.get('client_id')!, v.claims);
    if (!d.ok) return errorReply(d.status, d.error, d.code, d.message);
    const signer = opts.accessTokens();
    if (!signer) return errorReply(503, 'temporarily_unavailable', 50196, 'The server is temporarily unavailable.');
    const resource = scope.replace(/\/\.default$/, '');
    const t = await signer.issue({ audience: resource, clientId: d.identity.clientId, principalId: d.identity.principalId, resourceId: d.identity.id });
    const expiresIn = Math.min(ACCESS_TOKEN_LIFETIME_SECONDS, t.exp - Math.floor(clock.now() / 1000));
    return {
      status: 200,
      headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store, no-cache' },
      body: JSON.stringify({ token_type: 'Bearer', expires_in: expiresIn, ext_expires_in: expiresIn, access_token: t.token }),
    };
  }
}

function iso(seconds: number): string {
  return Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z') : 'unknown';
}
