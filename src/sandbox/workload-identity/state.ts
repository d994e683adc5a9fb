/**
 * The Azure side of Microsoft Entra Workload ID in the sandbox: the managed cluster's OIDC
 * issuer and workload identity switches, and the federated identity credentials of each
 * user-assigned identity (`Microsoft.ManagedIdentity/userAssignedIdentities/<id>/
 * federatedIdentityCredentials/<name>`), with the rules the MSI resource provider applies:
 *
 * - at most {@link MAX_FEDERATED_CREDENTIALS} (20) credentials per identity;
 * - `issuer` + `subject` unique per identity (400 otherwise);
 * - writes to one identity must not overlap in time (409
 *   `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`);
 * - a new or changed credential is honoured by the token endpoint only after
 *   `propagationSeconds` of simulated time (`AADSTS70021` until then).
 *
 * The HTTPS routes over this state are in `../arm/workload-identity-routes.ts`; the token
 * endpoint reads it through {@link WorkloadIdentityState.matchingCredential}.
 */
import { EventEmitter } from 'node:events';
import type { Clock } from '../clock.ts';
import { ArmError } from '../arm/state.ts';

/** The MSI resource provider's limit of federated credentials on one identity. */
export const MAX_FEDERATED_CREDENTIALS = 20;
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_-]{2,119}$/;

/** One federated identity credential. */
export interface FederatedCredential {
  /** ARM id (`.../userAssignedIdentities/<identity>/federatedIdentityCredentials/<name>`). */
  id: string;
  name: string;
  /** Lower-cased resource id of the identity it belongs to. */
  identityKey: string;
  issuer: string;
  subject: string;
  audiences: string[];
  /** Simulated epoch ms of the last create or update (propagation counts from here). */
  writtenAt: number;
}

/** What the sandbox scenario and the control API may set. */
export interface WorkloadIdentityConfig {
  oidcIssuerEnabled: boolean;
  workloadIdentityEnabled: boolean;
  /** Simulated seconds before a written credential is honoured by the token endpoint. */
  propagationSeconds: number;
  /** Simulated seconds of the managed cluster update that enables the issuer / workload identity. */
  enableSeconds: number;
  /** Simulated seconds one credential write keeps its identity busy (overlapping writes get 409). */
  credentialWriteSeconds: number;
}

/** What `sandbox status` and `GET /_sandbox/workload-identity` show. */
export interface WorkloadIdentitySnapshot {
  oidcIssuerEnabled: boolean;
  workloadIdentityEnabled: boolean;
  issuerUrl: string | null;
  propagationSeconds: number;
  federatedCredentials: { id: string; issuer: string; subject: string; audiences: string[]; writtenAt: string }[];
}

/** Events: `credentials-changed` ({identityKey}), `cluster-changed`. */
export class WorkloadIdentityState extends EventEmitter {
  readonly config: WorkloadIdentityConfig;
  /** Base of the issuer URL (`https://127.0.0.1:<port>`), set once the issuer endpoint listens. */
  issuerOrigin = '';
  /** Path part of the issuer, `/<tenant>/<guid>/`, fixed per cluster as AKS does. */
  readonly issuerPath: string;
  private readonly clock: Clock;
  private readonly credentials = new Map<string, Map<string, FederatedCredential>>();
  /** Identities with a credential write in flight. */
  private readonly writing = new Set<string>();
  private oidc: boolean;
  private wi: boolean;
  /** The managed cluster update in flight, if any (a second one is refused with 409). */
  clusterUpdate?: { startedAt: number; done: Promise<void> };

  constructor(opts: { clock: Clock; tenantId: string; clusterGuid: string; config: WorkloadIdentityConfig }) {
    super();
    this.clock = opts.clock;
    this.config = { ...opts.config };
    this.issuerPath = `/${opts.tenantId}/${opts.clusterGuid}/`;
    this.oidc = opts.config.oidcIssuerEnabled;
    this.wi = opts.config.workloadIdentityEnabled;
  }

  get oidcIssuerEnabled(): boolean {
    return this.oidc;
  }

  get workloadIdentityEnabled(): boolean {
    return this.wi;
  }

  /** `oidcIssuerProfile.issuerUrl` (with the trailing slash AKS writes), or undefined while disabled. */
  get issuerUrl(): string | undefined {
    return this.oidc && this.issuerOrigin ? `${this.issuerOrigin}${this.issuerPath}` : undefined;
  }

  /** The issuer URL the cluster will have once enabled (what pre-seeded credentials use). */
  get futureIssuerUrl(): string {
    return `${this.issuerOrigin}${this.issuerPath}`;
  }

  /** Applies a finished managed cluster update. */
  setClusterFlags(flags: { oidcIssuerEnabled?: boolean; workloadIdentityEnabled?: boolean }): void {
    if (flags.oidcIssuerEnabled !== undefined) this.oidc = flags.oidcIssuerEnabled;
    if (flags.workloadIdentityEnabled !== undefined) this.wi = flags.workloadIdentityEnabled;
    this.emit('cluster-changed');
  }

  // ---- federated identity credentials ------------------------------------------------------

  list(identityId: string): FederatedCredential[] {
    return [...(this.credentials.get(identityId.toLowerCase())?.values() ?? [])].sort((a, b) => a.name.localeCompare(b.name)).map((c) => ({ ...c, audiences: [...c.audiences] }));
  }

  get(identityId: string, name: string): FederatedCredential | undefined {
    const c = this.credentials.get(identityId.toLowerCase())?.get(name.toLowerCase());
    return c ? { ...c, audiences: [...c.audiences] } : undefined;
  }

  /** Every credential of every identity (for the meter and snapshots). */
  all(): FederatedCredential[] {
    return [...this.credentials.values()].flatMap((m) => [...m.values()]);
  }

  /**
   * Starts a write to one identity's credentials; throws the RP's 409 when another write to
   * the same identity is still running. `end()` must be called when the write answers.
   */
  beginWrite(identityId: string): () => void {
    const key = identityId.toLowerCase();
    if (this.writing.has(key)) {
      throw new ArmError(
        409,
        'ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity',
        `Too many Federated Identity Credentials are written concurrently for the managed identity '${key}'. Concurrent Federated Identity Credentials writes under the same managed identity are not supported.`,
      );
    }
    this.writing.add(key);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.writing.delete(key);
    };
  }

  /**
   * Creates or replaces a credential after the RP's validation. Returns whether it was created
   * (201) rather than updated (200).
   */
  upsert(identityId: string, name: string, props: { issuer?: unknown; subject?: unknown; audiences?: unknown }): { created: boolean; credential: FederatedCredential } {
    if (!NAME_RE.test(name)) {
      throw new ArmError(400, 'BadRequest', `The federated identity credential name '${name}' is invalid. It must be 3-120 characters, start with a letter or number, and contain only letters, numbers, hyphens and underscores.`);
    }
    const issuer = props.issuer;
    const subject = props.subject;
    const audiences = props.audiences;
    if (typeof issuer !== 'string' || !issuer) throw new ArmError(400, 'BadRequest', "The 'issuer' property of the federated identity credential is required.", { target: 'properties.issuer' });
    if (!/^https:\/\//i.test(issuer)) throw new ArmError(400, 'BadRequest', `The issuer '${issuer}' is invalid. The issuer must be a valid URL using the https scheme.`, { target: 'properties.issuer' });
    if (typeof subject !== 'string' || !subject) throw new ArmError(400, 'BadRequest', "The 'subject' property of the federated identity credential is required.", { target: 'properties.subject' });
    if (!Array.isArray(audiences) || audiences.length !== 1 || typeof audiences[0] !== 'string' || !audiences[0]) {
      throw new ArmError(400, 'BadRequest', "The 'audiences' property of the federated identity credential must contain exactly one audience.", { target: 'properties.audiences' });
    }
    const key = identityId.toLowerCase();
    let bucket = this.credentials.get(key);
    if (!bucket) this.credentials.set(key, (bucket = new Map()));
    const existing = bucket.get(name.toLowerCase());
    for (const c of bucket.values()) {
      if (c !== existing && c.issuer === issuer && c.subject === subject) {
        throw new ArmError(400, 'BadRequest', `A federated identity credential with the issuer '${issuer}' and subject '${subject}' combination already exists for the managed identity (credential '${c.name}'). The issuer and subject combination must be unique.`);
      }
    }
    if (!existing && bucket.size >= MAX_FEDERATED_CREDENTIALS) {
      throw new ArmError(400, 'BadRequest', `Too many federated identity credentials on the managed identity: the limit of ${MAX_FEDERATED_CREDENTIALS} federated identity credentials per managed identity is reached.`);
    }
    const credential: FederatedCredential = {
      id: `${identityId}/federatedIdentityCredentials/${existing?.name ?? name}`,
      name: existing?.name ?? name,
      identityKey: key,
      issuer,
      subject,
      audiences: [audiences[0] as string],
      writtenAt: this.clock.now(),
    };
    bucket.set(name.toLowerCase(), credential);
    this.emit('credentials-changed', { identityKey: key });
    return { created: !existing, credential: { ...credential, audiences: [...credential.audiences] } };
  }

  /** Marks every credential as written long ago (credentials that exist when the sandbox starts). */
  backdateAll(): void {
    const past = this.clock.now() - this.config.propagationSeconds * 1000 - 1000;
    for (const bucket of this.credentials.values()) for (const c of bucket.values()) c.writtenAt = Math.min(c.writtenAt, past);
  }

  /** Removes a credential; false when there was none. */
  remove(identityId: string, name: string): boolean {
    const key = identityId.toLowerCase();
    const removed = this.credentials.get(key)?.delete(name.toLowerCase()) ?? false;
    if (removed) this.emit('credentials-changed', { identityKey: key });
    return removed;
  }

  /**
   * The credential of `identityId` that federates this token, if any, and whether it has
   * propagated yet. Issuer and subject match exactly (case-sensitive, as Entra matches them);
   * the audience must be one of the token's.
   */
  matchingCredential(identityId: string, token: { iss: string; sub: string; aud: string[] }): { credential: FederatedCredential; propagated: boolean } | undefined {
    const bucket = this.credentials.get(identityId.toLowerCase());
    if (!bucket) return undefined;
    for (const c of bucket.values()) {
      if (c.issuer === token.iss && c.subject === token.sub && c.audiences.some((a) => token.aud.includes(a))) {
        return { credential: { ...c }, propagated: this.clock.now() - c.writtenAt >= this.config.propagationSeconds * 1000 };
      }
    }
    return undefined;
  }

  snapshot(): WorkloadIdentitySnapshot {
    return {
      oidcIssuerEnabled: this.oidc,
      workloadIdentityEnabled: this.wi,
      issuerUrl: this.issuerUrl ?? null,
      propagationSeconds: this.config.propagationSeconds,
      federatedCredentials: this.all().map((c) => ({ id: c.id, issuer: c.issuer, subject: c.subject, audiences: c.audiences, writtenAt: new Date(c.writtenAt).toISOString() })),
    };
  }
}
