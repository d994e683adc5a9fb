/**
 * `federated-credential`: creates one federated identity credential on a user-assigned identity
 * (issuer = the cluster's OIDC issuer, subject = a service account, audience
 * `api://AzureADTokenExchange`), under a deterministic name. "Combination already exists" (a
 * credential of another name with this issuer and subject) counts as done and is never removed
 * by undo. Reconcile reads the credential first, so a run resumed after a crash never creates a
 * second one. Undo deletes what this action created (or restores a same-named credential it
 * replaced), only while it is still as this action left it.
 */
import { sameIssuer, type FederatedCredential } from '../../azure/gateway.ts';
import type { Executor } from '../lib/context.ts';

/** Details of a `federated-credential` action. */
export interface FederatedCredentialDetails {
  identityId: string;
  /** `<ns>/<name>` of the AzureIdentity, for messages. */
  identity: string;
  name: string;
  issuer: string;
  subject: string;
  audiences: string[];
  /** `<ns>/<name>` of the services whose pods it lets in. */
  services: string[];
}

/** Pre-state: the credential of that name before the first attempt (null: none). */
export interface FederatedCredentialPreState {
  existing: FederatedCredential | null;
}

/** Result: how ARM took it and which credential now does the job. */
export interface FederatedCredentialResult {
  outcome: 'created' | 'updated' | 'exists';
  /** The credential that holds this issuer and subject (another name when `exists`). */
  name: string;
}

function label(d: FederatedCredentialDetails, name = d.name): string {
  return `federated credential ${name} on identity ${d.identity}`;
}

function matches(c: FederatedCredential | undefined, d: FederatedCredentialDetails): boolean {
  return Boolean(c && c.subject === d.subject && sameIssuer(c.issuer, d.issuer));
}

export const federatedCredential: Executor<FederatedCredentialDetails, FederatedCredentialPreState, FederatedCredentialResult> = {
  kind: 'federated-credential',
  async capture(ctx, { details: d }) {
    return { existing: (await ctx.azure.getFederatedCredential(d.identityId, d.name)) ?? null };
  },
  async do(ctx, { action: { details: d } }) {
    ctx.progress(`writing ${label(d)} (${d.subject})`);
    const r = await ctx.azure.putFederatedCredential(d.identityId, { name: d.name, issuer: d.issuer, subject: d.subject, audiences: d.audiences });
    if (r.outcome === 'exists') ctx.log.info(`${label(d)}: identity already trusts ${d.subject} through credential ${r.credential.name}; nothing created`);
    return { outcome: r.outcome, name: r.credential.name };
  },
  async reconcile(ctx, { action: { details: d }, firstPreState: pre }) {
    const own = await ctx.azure.getFederatedCredential(d.identityId, d.name);
    if (matches(own, d)) return { applied: true, result: { outcome: pre?.existing ? 'updated' : 'created', name: d.name } };
    const other = (await ctx.azure.listFederatedCredentials(d.identityId)).find((c) => matches(c, d));
    if (other) return { applied: true, result: { outcome: 'exists', name: other.name } };
    return { applied: false, reason: `${label(d)} does not exist with subject ${d.subject}` };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre, result }) {
    if (result?.outcome === 'exists') return `${label(d, result.name)}: not created by this tool, kept`;
    const live = await ctx.azure.getFederatedCredential(d.identityId, d.name);
    if (!live) return `${label(d)}: not there, nothing to remove`;
    // Only what this action wrote is undone; a credential someone changed since is theirs.
    if (!matches(live, d)) {
      ctx.log.warn(`${label(d)} was changed since it was written (subject ${live.subject}); left in place`);
      return `${label(d)}: left in place (changed since)`;
    }
    if (pre?.existing) {
      ctx.progress(`restoring ${label(d)}`);
      await ctx.azure.putFederatedCredential(d.identityId, { name: d.name, issuer: pre.existing.issuer, subject: pre.existing.subject, audiences: pre.existing.audiences });
      return `${label(d)}: restored to subject ${pre.existing.subject}`;
    }
    ctx.progress(`deleting ${label(d)}`);
    await ctx.azure.deleteFederatedCredential(d.identityId, d.name);
    return `${label(d)} deleted`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre, result }) {
    if (result?.outcome === 'exists') return { ok: true, evidence: [`${label(d, result.name)}: kept (not ours)`], failures: [] };
    const live = await ctx.azure.getFederatedCredential(d.identityId, d.name);
    if (pre?.existing) {
      const back = live && live.subject === pre.existing.subject && sameIssuer(live.issuer, pre.existing.issuer);
      return back ? { ok: true, evidence: [`${label(d)}: back to subject ${pre.existing.subject}`], failures: [] } : { ok: false, evidence: [], failures: [`${label(d)}: not back to subject ${pre.existing.subject}`] };
    }
    if (matches(live, d)) return { ok: false, evidence: [], failures: [`${label(d)} still exists (subject ${d.subject})`] };
    return { ok: true, evidence: [`${label(d)} is gone`], failures: [] };
  },
};
