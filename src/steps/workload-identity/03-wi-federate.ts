/**
 * Step `wi-federate` (workload identity runbook, 3): one federated identity credential per
 * identity and namespace/service account its services run as under workload identity: issuer
 * the cluster's OIDC issuer URL, subject `system:serviceaccount:<ns>:<sa>`, audience
 * `api://AzureADTokenExchange`, name `podid-migrate-<ns>-<sa>`. A pair an existing credential
 * already trusts (any name) is not planned again, so a resumed run never creates a duplicate.
 *
 * Entra refuses concurrent writes to one identity's credentials (409): the writes of one
 * identity run one after another (`serialKey`), different identities in parallel; 429 and that
 * 409 are retried by the Azure gateway. Rollback deletes the credentials this step created.
 */
import { PreconditionError } from '../../engine/errors.ts';
import type { CheckResult, StepOutcome, StepPlan } from '../../engine/step.ts';
import { TOKEN_EXCHANGE_AUDIENCE } from '../../azure/gateway.ts';
import { action, type MigrationAction } from '../executors/index.ts';
import type { Ctx, MigrationStep } from '../lib/context.ts';
import { inventoryFor } from '../lib/inventory-source.ts';
import { credentialSatisfies, identityLabel, ISSUER_URL_KEY, readWorkloadIdentityTargets, type CredentialTarget } from '../lib/workload-identity/federation.ts';

/** Credential writes to different identities at once. */
const PARALLEL_IDENTITIES = 4;

/** The issuer the credentials trust: the cluster's; in a dry run before `wi-enable` ran, a placeholder naming it. */
async function issuerOf(ctx: Ctx): Promise<{ url: string; known: boolean }> {
  const aksId = ctx.options.aksId;
  if (typeof aksId !== 'string') throw new PreconditionError('the AKS resource id is not known.', 'Pass --aks-id (or set PODID_MIGRATE_AKS_ID).');
  const c = await ctx.azure.getManagedCluster(aksId);
  if (c.oidcIssuer?.enabled && c.oidcIssuer.issuerUrl) return { url: c.oidcIssuer.issuerUrl, known: true };
  const recorded = ctx.journal.of('wi-enable').getData<string>(ISSUER_URL_KEY);
  if (recorded) return { url: recorded, known: true };
  if (ctx.dryRun !== 'none') return { url: `<OIDC issuer URL of ${c.name}, set by wi-enable>`, known: false };
  throw new PreconditionError(`managed cluster ${c.name} has no OIDC issuer yet, so the federated credentials cannot name it.`, 'Apply wi-enable first: podid-migrate --runbook workload-identity apply --to wi-enable');
}

/** Usable targets: user-assigned identities with a resource id (wi-preflight blocks the others). */
function usable(targets: readonly CredentialTarget[]): CredentialTarget[] {
  return targets.filter((t) => t.identity.type === 0 && t.identityId);
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = await inventoryFor(ctx);
  const issuer = await issuerOf(ctx);
  const targets = usable((await readWorkloadIdentityTargets(ctx, inv)).credentials);
  const actions: MigrationAction[] = [];
  const trusted: string[] = [];
  for (const identityId of [...new Set(targets.map((t) => t.identityId))]) {
    const existing = await ctx.azure.listFederatedCredentials(identityId);
    for (const t of targets.filter((x) => x.identityId === identityId)) {
      if (issuer.known && existing.some((c) => credentialSatisfies(c, t, issuer.url))) {
        trusted.push(`${identityLabel(t.identity)} <- ${t.namespace}/${t.serviceAccount}`);
        continue;
      }
      actions.push(
        action({
          id: `fic/${identityLabel(t.identity)}/${t.namespace}/${t.serviceAccount}`,
          kind: 'federated-credential',
          op: '+',
          target: `federated credential ${t.name} on identity ${identityLabel(t.identity)}`,
          summary: `subject ${t.subject}, audience ${TOKEN_EXCHANGE_AUDIENCE} (for ${t.services.join(', ')})`,
          api: 'arm',
          writes: { kube: 0, arm: 1 },
          parallelGroup: 'federated-credentials',
          parallelLimit: PARALLEL_IDENTITIES,
          serialKey: identityId.toLowerCase(),
          details: { identityId, identity: identityLabel(t.identity), name: t.name, issuer: issuer.url, subject: t.subject, audiences: [TOKEN_EXCHANGE_AUDIENCE], services: t.services },
        }),
      );
    }
  }
  const notes = [`issuer ${issuer.url}`];
  if (trusted.length) notes.push(`already trusted: ${trusted.join(', ')}`);
  if (actions.length) notes.push(`${actions.length} credential(s): one write at a time per identity, ${PARALLEL_IDENTITIES} identities at once`);
  return { stepId: 'wi-federate', actions, blockers: [], notes };
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const records = ctx.journal.records().filter((r) => r.status === 'done' && !r.rolledBack);
  const outcomes = records.map((r) => (r.result as { outcome?: string } | undefined)?.outcome);
  const created = outcomes.filter((o) => o === 'created' || o === 'updated').length;
  const existed = outcomes.filter((o) => o === 'exists').length;
  if (ctx.dryRun !== 'none') return { summary: `would write ${p.actions.length} federated credential(s)` };
  return { summary: `${created} federated credential(s) written${existed ? `, ${existed} already there under another name` : ''}` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const inv = await inventoryFor(ctx);
  const issuer = await issuerOf(ctx);
  const targets = usable((await readWorkloadIdentityTargets(ctx, inv)).credentials);
  const evidence: string[] = [];
  const failures: string[] = [];
  for (const identityId of [...new Set(targets.map((t) => t.identityId))]) {
    const existing = await ctx.azure.listFederatedCredentials(identityId);
    for (const t of targets.filter((x) => x.identityId === identityId)) {
      const c = existing.find((x) => credentialSatisfies(x, t, issuer.url));
      if (c) evidence.push(`identity ${identityLabel(t.identity)}: credential ${c.name} trusts ${t.subject} from ${issuer.url}`);
      else failures.push(`identity ${identityLabel(t.identity)}: no federated credential for ${t.subject} from ${issuer.url}; run apply --step wi-federate`);
    }
  }
  return { ok: failures.length === 0, evidence, failures };
}

/** The `wi-federate` step. */
export const wiFederateStep: MigrationStep = {
  id: 'wi-federate',
  title: 'Federated identity credentials: each identity trusts its services\' service accounts',
  plan,
  afterActions,
  check,
};
