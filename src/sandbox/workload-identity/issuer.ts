/**
 * The cluster's service account token issuer and its OIDC discovery documents.
 *
 * The API server signs every service account token (projected volumes, TokenRequest) with
 * one RSA key (RS256). With the OIDC issuer off, `iss` is the API server's default
 * (`https://kubernetes.default.svc.cluster.local`); once AKS enabled it, `iss` is the
 * issuer URL and the discovery document and JWKS are served at
 * `<issuer>.well-known/openid-configuration` and `<issuer>openid/v1/jwks`, which is where
 * Entra fetches the keys to validate an assertion. Claims follow Kubernetes: `aud`, `exp`,
 * `iat`, `nbf`, `iss`, `sub` = `system:serviceaccount:<ns>:<sa>`, and the `kubernetes.io`
 * claim naming the namespace, service account and (for pod-bound tokens) the pod.
 */
import { createPublicKey, generateKeyPairSync, createHash, sign, verify, type KeyObject } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { SimHttpResponse } from '../netsim.ts';
import { DEFAULT_SERVICE_ACCOUNT_ISSUER, serviceAccountSubject } from './constants.ts';
import type { WorkloadIdentityState } from './state.ts';

/** What a service account token is issued for. */
export interface ServiceAccountTokenRequest {
  namespace: string;
  serviceAccount: string;
  serviceAccountUid?: string;
  audiences: string[];
  expirationSeconds: number;
  /** Set for tokens bound to a pod (projected volumes). */
  pod?: { name: string; uid: string };
  node?: { name: string; uid?: string };
}

/** The decoded, signature-checked claims of a service account token. */
export interface VerifiedToken {
  iss: string;
  sub: string;
  aud: string[];
  exp: number;
  nbf: number;
  iat: number;
}

/** Why {@link ServiceAccountIssuer.verify} refused a token. */
export type VerifyFailure = 'malformed' | 'unknown-key' | 'bad-signature';

export class ServiceAccountIssuer {
  private readonly key: KeyObject;
  /** `kid`: the SHA-256 of the public key's DER, base64url, as the API server derives it. */
  readonly kid: string;
  private readonly clock: Clock;
  private readonly state: WorkloadIdentityState;

  constructor(opts: { clock: Clock; state: WorkloadIdentityState; key?: KeyObject }) {
    this.clock = opts.clock;
    this.state = opts.state;
    this.key = opts.key ?? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const der = createPublicKey(this.key).export({ format: 'der', type: 'spki' });
    this.kid = createHash('sha256').update(der).digest('base64url');
  }

  /** The `iss` the API server writes right now. */
  currentIssuer(): string {
    return this.state.issuerUrl ?? DEFAULT_SERVICE_ACCOUNT_ISSUER;
  }

  /** Signs a token (synchronously, so a file read in a container sees it at once). */
  issue(req: ServiceAccountTokenRequest): { token: string; expiresAt: number } {
    const iat = Math.floor(this.clock.now() / 1000);
    const exp = iat + req.expirationSeconds;
    const k8s: Record<string, unknown> = {
      namespace: req.namespace,
      serviceaccount: { name: req.serviceAccount, uid: req.serviceAccountUid ?? '' },
    };
    if (req.pod) k8s.pod = { name: req.pod.name, uid: req.pod.uid };
    if (req.node) k8s.node = { name: req.node.name, uid: req.node.uid ?? '' };
    const claims = {
      aud: req.audiences,
      exp,
      iat,
      iss: this.currentIssuer(),
      'kubernetes.io': k8s,
      nbf: iat,
      sub: serviceAccountSubject(req.namespace, req.serviceAccount),
    };
    const header = { alg: 'RS256', kid: this.kid };
    const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
    const signature = sign('RSA-SHA256', Buffer.from(input), this.key).toString('base64url');
    return { token: `${input}.${signature}`, expiresAt: exp * 1000 };
  }

  /** Checks the signature against this issuer's key and returns the claims (no time or audience check). */
  verify(token: string): { ok: true; claims: VerifiedToken } | { ok: false; why: VerifyFailure } {
    const parts = token.split('.');
    if (parts.length !== 3) return { ok: false, why: 'malformed' };
    let header: any;
    let payload: any;
    try {
      header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
      payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    } catch {
      return { ok: false, why: 'malformed' };
    }
    if (header?.alg !== 'RS256' || typeof payload !== 'object' || payload === null) return { ok: false, why: 'malformed' };
    if (header.kid !== this.kid) return { ok: false, why: 'unknown-key' };
    const good = verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), createPublicKey(this.key), Buffer.from(parts[2], 'base64url'));
    if (!good) return { ok: false, why: 'bad-signature' };
    const aud = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud.map(String) : [];
    return { ok: true, claims: { iss: String(payload.iss ?? ''), sub: String(payload.sub ?? ''), aud, exp: Number(payload.exp), nbf: Number(payload.nbf ?? payload.iat), iat: Number(payload.iat) } };
  }

  /** The JWKS the issuer publishes. */
  jwks(): { keys: Record<string, string>[] } {
    const { n, e } = createPublicKey(this.key).export({ format: 'jwk' });
    return { keys: [{ use: 'sig', kty: 'RSA', kid: this.kid, alg: 'RS256', n: String(n), e: String(e) }] };
  }

  /** The discovery document AKS serves for the issuer. */
  discovery(issuerUrl: string): object {
    return {
      issuer: issuerUrl,
      jwks_uri: `${issuerUrl}openid/v1/jwks`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
    };
  }

  /**
   * Answers a request to the issuer's host: the discovery document and JWKS under the
   * issuer path while the issuer is enabled; 404 otherwise (the URL does not exist yet).
   */
  serve(method: string, pathname: string): SimHttpResponse {
    const url = this.state.issuerUrl;
    const base = this.state.issuerPath;
    const json = (status: number, body: unknown): SimHttpResponse => ({ status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (method !== 'GET' && method !== 'HEAD') return { status: 405, headers: { 'content-type': 'text/plain' }, body: 'Method Not Allowed\n' };
    if (url && pathname === `${base}.well-known/openid-configuration`) return json(200, this.discovery(url));
    if (url && pathname === `${base}openid/v1/jwks`) return json(200, this.jwks());
    return { status: 404, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0" encoding="utf-8"?><Error><Code>ResourceNotFound</Code><Message>The specified resource does not exist.</Message></Error>' };
  }
}

function b64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
