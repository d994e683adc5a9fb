/**
 * Step `wi-enable` (workload identity runbook, 2): turns on the managed cluster's OIDC issuer
 * and workload identity, whichever is off, in one ARM update (a long-running operation), awaits
 * AKS's workload identity webhook, and records the issuer URL AKS publishes
 * (`oidcIssuerProfile.issuerURL`) for `wi-federate`. Nothing is planned when both are on.
 *
 * Rollback turns workload identity off only when this step turned it on; the OIDC issuer stays
 * on (AKS cannot turn it off once enabled).
 */
import { PreconditionError } from '../../engine/errors.ts';
import type { CheckResult, StepOutcome, StepPlan } from '../../engine/step.ts';
import { KINDS } from '../../kube/kinds.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import { WI_WEBHOOK_DEPLOYMENT, type AksWorkloadIdentityResult } from '../executors/aks-workload-identity.ts';
import { action, type MigrationAction } from '../executors/index.ts';
import type { Ctx, MigrationStep } from '../lib/context.ts';
import { ISSUER_URL_KEY } from '../lib/workload-identity/federation.ts';


function aksIdOf(ctx: Ctx): string {
  const aksId = ctx.options.aksId;
  if (typeof aksId !== 'string') throw new PreconditionError('the AKS resource id is not known.', 'Pass --aks-id (or set PODID_MIGRATE_AKS_ID).');
  return aksId;
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const aksId = aksIdOf(ctx);
  const c = await ctx.azure.getManagedCluster(aksId);
  const oidc = c.oidcIssuer?.enabled === true;
  const wi = c.workloadIdentityEnabled === true;
  const actions: MigrationAction[] = [];
  const notes: string[] = [];
  if (oidc && wi) notes.push(`managed cluster ${c.name}: OIDC issuer (${c.oidcIssuer?.issuerUrl ?? 'URL not shown'}) and workload identity already on`);
  else {
    const turnOn = [!oidc ? 'OIDC issuer' : '', !wi ? 'workload identity' : ''].filter(Boolean);
    actions.push(
      action({
        id: `aks/${c.name}/workload-identity`,
        kind: 'aks-workload-identity',
        op: '~',
        target: `managed cluster ${c.name}`,
        summary: `${turnOn.join(' + ')} on (one long-running update; AKS deploys its workload identity webhook)${oidc ? `; issuer ${c.oidcIssuer?.issuerUrl ?? ''}` : ''}`,
        api: 'arm',
        writes: { kube: 0, arm: 1 },
        details: { aksId, cluster: c.name, oidcIssuer: !oidc, workloadIdentity: !wi },
      }),
    );
  }
  return { stepId: 'wi-enable', actions, blockers: [], notes };
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const aksId = aksIdOf(ctx);
  // The action's result, or (nothing planned) the cluster as it is.
  const done = ctx.journal.records().filter((r) => r.status === 'done' && !r.rolledBack).at(-1)?.result as AksWorkloadIdentityResult | undefined;
  const issuerUrl = done?.issuerUrl ?? (await ctx.azure.getManagedCluster(aksId)).oidcIssuer?.issuerUrl;
  if (issuerUrl) await ctx.journal.setData(ISSUER_URL_KEY, issuerUrl);
  const dry = ctx.dryRun !== 'none';
  if (!p.actions.length) return { summary: `already on; issuer ${issuerUrl ?? '(not shown)'}` };
  return { summary: dry ? 'would turn on the OIDC issuer and workload identity' : `OIDC issuer and workload identity on; issuer ${issuerUrl ?? '(not shown)'}` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const c = await ctx.azure.getManagedCluster(aksIdOf(ctx));
  const evidence: string[] = [];
  const failures: string[] = [];
  if (c.oidcIssuer?.enabled && c.oidcIssuer.issuerUrl) evidence.push(`managed cluster ${c.name}: OIDC issuer on, ${c.oidcIssuer.issuerUrl}`);
  else failures.push(`managed cluster ${c.name}: OIDC issuer ${c.oidcIssuer?.enabled ? 'on but no issuer URL shown yet' : 'off'}`);
  if (c.workloadIdentityEnabled) evidence.push(`managed cluster ${c.name}: workload identity on`);
  else failures.push(`managed cluster ${c.name}: workload identity off`);
  const recorded = ctx.journal.getData<string>(ISSUER_URL_KEY);
  if (c.oidcIssuer?.issuerUrl && recorded !== c.oidcIssuer.issuerUrl) failures.push(`recorded issuer ${recorded ?? '(none)'} differs from the cluster's ${c.oidcIssuer.issuerUrl}; run apply --step wi-enable again`);
  const webhook = await ctx.kube.get<KubeObject & { status?: { readyReplicas?: number } }>(KINDS.Deployment, WI_WEBHOOK_DEPLOYMENT.namespace, WI_WEBHOOK_DEPLOYMENT.name);
  if ((webhook?.status?.readyReplicas ?? 0) >= 1) evidence.push(`deployment ${WI_WEBHOOK_DEPLOYMENT.namespace}/${WI_WEBHOOK_DEPLOYMENT.name}: ${webhook!.status!.readyReplicas} ready`);
  else failures.push(`deployment ${WI_WEBHOOK_DEPLOYMENT.namespace}/${WI_WEBHOOK_DEPLOYMENT.name} (the workload identity webhook) has no ready pod; labelled pods would be refused`);
  return { ok: failures.length === 0, evidence, failures };
}

/** The `wi-enable` step. */
export const wiEnableStep: MigrationStep = {
  id: 'wi-enable',
  title: 'Turn on the OIDC issuer and workload identity on the managed cluster',
  plan,
  afterActions,
  check,
};
