/**
 * Azure's instance metadata service (IMDS) token endpoint, per VM.
 *
 * `GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=<aud>`
 * with header `Metadata: true` answers for the VM the caller runs on. Without a
 * `client_id` / `object_id` / `mi_res_id` (`msi_res_id`) it can only pick an identity when
 * the VM has exactly one: a system-assigned one, or a single user-assigned one. With several
 * user-assigned identities it refuses with 400 and asks the caller to name one. This is the
 * behaviour pods fall back to whenever NMI's iptables chain is missing on their node.
 *
 * Tokens are real JWTs (RS256, key generated at start) carrying the claims a managed-identity
 * token carries: `aud`, `iss`, `iat`, `nbf`, `exp`, `oid`, `appid`, `tid`, `sub`, `xms_mirid`.
 */
import { generateKeyPairSync, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import type { PodNetwork, SimHandler, SimHttpRequest, SimHttpResponse } from '../netsim.ts';
import type { Clock } from '../clock.ts';
import { setTokenIssuer, type IdentityInfra, type InfraIdentity, type PodIdentityOptions, type TokenIssuer } from './common.ts';

/** Token lifetime IMDS reports for managed identities (about 24 h). */
const TOKEN_LIFETIME_SECONDS = 86_399;
const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };

/** What the IMDS of one VM would hand out for a request, decided without issuing anything. */
export type ImdsDecision =
  | { ok: true; identity: { clientId: string; principalId: string; resourceId?: string; tenantId: string; systemAssigned?: boolean } }
  | { ok: false; status: number; error: string; description: string };

/** The identity selectors of a token request, as IMDS reads them. */
export interface ImdsSelector {
  clientId?: string;
  objectId?: string;
  resourceId?: string;
}

/** The identity-selecting query parameters of a token request URL. */
export function selectorFromQuery(q: URLSearchParams): ImdsSelector {
  return {
    clientId: q.get('client_id') || undefined,
    objectId: q.get('object_id') || undefined,
    resourceId: q.get('mi_res_id') || q.get('msi_res_id') || undefined,
  };
}

/**
 * Which identity the VM behind `nodeName` would issue a token for, or IMDS's refusal.
 * Pure: reads the Azure state only.
 */
export function decideImdsIdentity(infra: IdentityInfra, nodeName: string, sel: ImdsSelector): ImdsDecision {
  const vm = infra.instanceByComputerName(nodeName);
  const identities: InfraIdentity[] = vm ? infra.identitiesOnInstance(vm.scaleSet.name, vm.instance.instanceId) : [];
  const system = vm ? infra.scaleSet(vm.scaleSet.name)?.systemAssigned : undefined;
  const named = sel.clientId !== undefined || sel.objectId !== undefined || sel.resourceId !== undefined;
  if (named) {
    const found = identities.find(
      (i) =>
        (sel.clientId !== undefined && i.clientId.toLowerCase() === sel.clientId.toLowerCase()) ||
        (sel.objectId !== undefined && i.principalId.toLowerCase() === sel.objectId.toLowerCase()) ||
        (sel.resourceId !== undefined && i.id.toLowerCase() === sel.resourceId.toLowerCase()),
    );
    if (!found) return { ok: false, status: 400, error: 'invalid_request', description: 'Identity not found' };
    return { ok: true, identity: { clientId: found.clientId, principalId: found.principalId, resourceId: found.id, tenantId: found.tenantId } };
  }
  // Without a selector IMDS prefers the system-assigned identity, then a lone user-assigned one.
  if (system) return { ok: true, identity: { clientId: system.principalId, principalId: system.principalId, tenantId: system.tenantId, systemAssigned: true } };
  if (identities.length === 1) {
    const i = identities[0];
    return { ok: true, identity: { clientId: i.clientId, principalId: i.principalId, resourceId: i.id, tenantId: i.tenantId } };
  }
  if (identities.length === 0) return { ok: false, status: 400, error: 'invalid_request', description: 'Identity not found' };
  return {
    ok: false,
    status: 400,
    error: 'invalid_request',
    description: 'Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request',
  };
}

/** Resource ids the way tokens spell them in `xms_mirid`: lower-case `resourcegroups`, the rest as written. */
export function tokenResourceId(id: string): string {
  return id.replace(/\/resourceGroups\//i, '/resourcegroups/');
}

function errorResponse(status: number, error: string, description: string): SimHttpResponse {
  return { status, headers: JSON_HEADERS, body: JSON.stringify({ error, error_description: description }) };
}

/** Signs managed-identity style access tokens with one RSA key. */
class JwtIssuer implements TokenIssuer {
  private readonly key: KeyObject;
  private readonly clock: Clock;
  private readonly tenantId: string;
  private readonly kid: string;

  constructor(key: KeyObject, clock: Clock, tenantId: string, kid: string) {
    this.key = key;
    this.clock = clock;
    this.tenantId = tenantId;
    this.kid = kid;
  }

  async issue(c: { audience: string; clientId: string; principalId: string; resourceId?: string; tenantId?: string }): Promise<{ token: string; iat: number; exp: number }> {
    const tid = c.tenantId ?? this.tenantId;
    const iat = Math.floor(this.clock.now() / 1000);
    // Entra backdates nbf/iat by five minutes to absorb clock skew.
    const nbf = iat - 300;
    const exp = iat + TOKEN_LIFETIME_SECONDS;
    const claims: Record<string, unknown> = {
      aud: c.audience,
      iss: `https://sts.windows.net/${tid}/`,
      iat: nbf,
      nbf,
      exp,
      aio: randomBytes(24).toString('base64url'),
      appid: c.clientId,
      appidacr: '2',
      idp: `https://sts.windows.net/${tid}/`,
      oid: c.principalId,
      rh: `0.${randomBytes(30).toString('base64url')}.`,
      sub: c.principalId,
      tid,
      uti: randomBytes(16).toString('base64url'),
      ver: '1.0',
    };
    if (c.resourceId) claims.xms_mirid = tokenResourceId(c.resourceId);
    const token = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: this.kid, x5t: this.kid }).sign(this.key);
    return { token, iat: nbf, exp };
  }
}

/** What {@link startImds} returns. */
export interface ImdsHandle {
  stop(): void;
  /** Public half of the signing key (RS256), to verify tokens in tests. */
  publicJwk: JsonWebKey;
}

const directImds = new WeakMap<PodNetwork, SimHandler>();

/**
 * IMDS as reached from the host network (NMI is hostNetwork, and its own requests are not
 * redirected by the chain it installs). Undefined before {@link startImds}.
 */
export function imdsDirect(network: PodNetwork): SimHandler | undefined {
  return directImds.get(network);
}

/**
 * Serves IMDS for every VM through `network.setImds`. The signing key is generated at start
 * unless given. Called once per sandbox; `stop()` makes IMDS unreachable again.
 */
export function startImds(opts: PodIdentityOptions & { signingKey?: KeyObject }): ImdsHandle {
  const { infra, clock, network } = opts;
  const key = opts.signingKey ?? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const { kty, n, e } = key.export({ format: 'jwk' });
  const publicJwk: JsonWebKey = { kty, n, e };
  const kid = randomBytes(20).toString('base64url').slice(0, 27);
  const issuer = new JwtIssuer(key, clock, infra.tenantId, kid);
  let stopped = false;

  const handler: SimHandler = async (req: SimHttpRequest) => {
    if (stopped) throw new Error('IMDS stopped');
    return answer(req);
  };

  async function answer(req: SimHttpRequest): Promise<SimHttpResponse> {
    const path = req.url.pathname;
    // The "/metadata" part is case-insensitive in IMDS (upstream NMI routes it the same way).
    if (!/^\/metadata\//i.test(path)) return { status: 404, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: '404 page not found\n' };
    if (headerValue(req.headers, 'metadata')?.toLowerCase() !== 'true') return errorResponse(400, 'invalid_request', 'Required metadata header not specified');
    if (!/^\/metadata\/identity\/oauth2\/token\/?$/i.test(path)) {
      return { status: 404, headers: JSON_HEADERS, body: JSON.stringify({ error: 'Not found' }) };
    }
    if (req.method !== 'GET' && req.method !== 'POST') return errorResponse(405, 'invalid_request', 'Method not allowed');
    const q = req.url.searchParams;
    if (!q.get('api-version')) return errorResponse(400, 'invalid_request', "Required query variable 'api-version' is missing");
    const resource = q.get('resource');
    if (!resource) return errorResponse(400, 'invalid_request', "Required query variable 'resource' is missing");
    const decision = decideImdsIdentity(infra, req.source.nodeName, selectorFromQuery(q));
    if (!decision.ok) return errorResponse(decision.status, decision.error, decision.description);
    const id = decision.identity;
    const t = await issuer.issue({ audience: resource, clientId: id.clientId, principalId: id.principalId, resourceId: id.resourceId });
    const expiresIn = t.exp - Math.floor(clock.now() / 1000);
    const body = {
      access_token: t.token,
      client_id: id.clientId,
      expires_in: String(expiresIn),
      expires_on: String(t.exp),
      ext_expires_in: String(expiresIn),
      not_before: String(t.iat),
      resource,
      token_type: 'Bearer',
    };
    return { status: 200, headers: JSON_HEADERS, body: JSON.stringify(body) };
  }

  network.setImds(handler);
  directImds.set(network, handler);
  setTokenIssuer(network, issuer);
  return {
    publicJwk,
    stop() {
      stopped = true;
      if (directImds.get(network) === handler) directImds.delete(network);
      setTokenIssuer(network, undefined);
    },
  };
}

/** A header value by case-insensitive name. */
export function headerValue(headers: Record<string, string>, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === lower) return v;
  return undefined;
}
