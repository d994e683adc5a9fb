/**
 * Step `wi-serviceaccounts` (workload identity runbook, 4): every service account a service
 * runs as under workload identity carries `azure.workload.identity/client-id` (the service's
 * identity) and `azure.workload.identity/tenant-id` (the identity's tenant), which the webhook
 * turns into `AZURE_CLIENT_ID` / `AZURE_TENANT_ID`. A workload whose template runs as `default`
 * gets a service account of its own, named after it and labelled as created by this tool
 * (annotating `default` would hand the identity to every other pod of the namespace); rollback
 * deletes it. `wi-workloads` switches the template to it in the same rollout that turns on
 * workload identity.
 *
 * One service account cannot carry two client ids: services of different identities on one
 * account are a blocker. What each service runs as is recorded (`serviceAccounts`) for the
 * later steps.
 */
import type { Blocker, CheckResult, StepOutcome, StepPlan } from '../../engine/step.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import { action, type MigrationAction } from '../executors/index.ts';
import type { Ctx, MigrationStep } from '../lib/context.ts';
import { inventoryFor } from '../lib/inventory-source.ts';
import { annotationsFor, identityLabel, readWorkloadIdentityTargets, WI_ACCOUNT_OWNER_LABEL, WI_CLIENT_ID_ANNOTATION, type AccountTarget, type WorkloadIdentityTargets } from '../lib/workload-identity/federation.ts';
import type { ServiceAccountRecord } from '../lib/workload-identity/workloads.ts';

/** The value of {@link WI_ACCOUNT_OWNER_LABEL} on the service accounts this step creates. */
export const ACCOUNT_OWNER_VALUE = 'wi-serviceaccounts';

/** Journal data key read by `wi-workloads` (`steps.wi-serviceaccounts.data.serviceAccounts`). */
const RECORD_KEY = 'serviceAccounts';

/** What one account should carry, or why it cannot. */
interface AccountWant {
  account: AccountTarget;
  annotations: Record<string, string>;
  live?: KubeObject;
}

function accountLabel(a: { namespace: string; name: string }): string {
  return `serviceaccount ${a.namespace}/${a.name}`;
}

function ours(sa: KubeObject | undefined): boolean {
  return sa?.metadata?.labels?.[WI_ACCOUNT_OWNER_LABEL] === ACCOUNT_OWNER_VALUE;
}

/** Pure: one account used by services of different identities cannot be annotated for both. */
export function sharedAccountBlockers(accounts: readonly AccountTarget[]): Blocker[] {
  return accounts
    .filter((a) => a.identities.length > 1)
    .map((a) => ({
      code: 'wi-service-account-shared',
      subject: accountLabel(a),
      message: `${a.services.map((t) => `${t.service.service} (identity ${identityLabel(t.service.identity)})`).join(', ')} run as ${a.namespace}/${a.name}, which can carry only one ${WI_CLIENT_ID_ANNOTATION}.`,
      fix: `Give each of these workloads its own service account (spec.template.spec.serviceAccountName), then plan again.`,
    }));
}

async function wants(ctx: Ctx, targets: WorkloadIdentityTargets): Promise<{ wants: AccountWant[]; blockers: Blocker[] }> {
  const blockers = sharedAccountBlockers(targets.accounts);
  const out: AccountWant[] = [];
  for (const account of targets.accounts) {
    if (account.identities.length !== 1) continue;
    const identity = account.identities[0];
    // wi-preflight blocks identities that are not user-assigned or have no resource id.
    if (identity.type !== 0 || !identity.resourceId) continue;
    const arm = await ctx.azure.getIdentity(identity.resourceId);
    const annotations = annotationsFor(identity, arm);
    if (!annotations[WI_CLIENT_ID_ANNOTATION]) {
      blockers.push({
        code: 'wi-client-id-unknown',
        subject: accountLabel(account),
        message: `the client id of identity ${identityLabel(identity)} is not in the inventory and ARM does not show it.`,
        fix: `Set spec.clientID on azureidentity ${identityLabel(identity)} and write the inventory again, then plan again.`,
      });
      continue;
    }
    const live = await ctx.kube.get(KINDS.ServiceAccount, account.namespace, account.name);
    if (!live && !account.dedicated) {
      blockers.push({
        code: 'wi-service-account-missing',
        subject: accountLabel(account),
        message: `${account.services.map((t) => t.service.service).join(', ')} name service account ${account.namespace}/${account.name}, which does not exist.`,
        fix: `Create it (kubectl create serviceaccount -n ${account.namespace} ${account.name}) or fix the workload's serviceAccountName, then plan again.`,
      });
      continue;
    }
    out.push({ account, annotations, ...(live ? { live } : {}) });
  }
  return { wants: out, blockers };
}

function missingAnnotations(live: KubeObject, annotations: Record<string, string>): string[] {
  const now = live.metadata?.annotations ?? {};
  return Object.entries(annotations)
    .filter(([k, v]) => now[k] !== v)
    .map(([k]) => k);
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = await inventoryFor(ctx);
  const targets = await readWorkloadIdentityTargets(ctx, inv);
  const { wants: list, blockers } = await wants(ctx, targets);
  const actions: MigrationAction[] = [];
  const already: string[] = [];
  for (const w of list) {
    const a = w.account;
    const describe = Object.entries(w.annotations).map(([k, v]) => `${k}=${v}`).join(', ');
    if (!w.live) {
      actions.push(
        action({
          id: `serviceaccount/${a.namespace}/${a.name}/create`,
          kind: 'create-object',
          op: '+',
          target: accountLabel(a),
          summary: `own account for ${a.services.map((t) => `${t.service.service}${t.live ? ' (its template runs as default)' : ` (${t.service.kind}: point the system that creates its pods at this account)`}`).join(', ')}: ${describe}`,
          api: 'kube',
          writes: { kube: 1, arm: 0 },
          details: {
            object: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: a.name, namespace: a.namespace, labels: { [WI_ACCOUNT_OWNER_LABEL]: ACCOUNT_OWNER_VALUE }, annotations: w.annotations } },
            ownerLabel: { key: WI_ACCOUNT_OWNER_LABEL, value: ACCOUNT_OWNER_VALUE },
          },
        }),
      );
      continue;
    }
    const missing = missingAnnotations(w.live, w.annotations);
    if (!missing.length) {
      already.push(`${a.namespace}/${a.name}`);
      continue;
    }
    actions.push(
      action({
        id: `serviceaccount/${a.namespace}/${a.name}/annotate`,
        kind: 'annotate-object',
        op: '~',
        target: accountLabel(a),
        summary: `annotations ${describe} (for ${a.services.map((t) => t.service.service).join(', ')})`,
        api: 'kube',
        writes: { kube: 1, arm: 0 },
        details: { ref: KINDS.ServiceAccount, namespace: a.namespace, name: a.name, annotations: w.annotations },
      }),
    );
  }
  const notes: string[] = [];
  if (already.length) notes.push(`already annotated: ${already.join(', ')}`);
  return { stepId: 'wi-serviceaccounts', actions, blockers, notes };
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const inv = await inventoryFor(ctx);
  const targets = await readWorkloadIdentityTargets(ctx, inv);
  const created = new Set(p.actions.filter((a) => a.kind === 'create-object').map((a) => a.target));
  const record: ServiceAccountRecord = {};
  for (const t of targets.services) {
    const label = accountLabel({ namespace: t.service.namespace, name: t.serviceAccount });
    const live = created.has(label) ? undefined : await ctx.kube.get(KINDS.ServiceAccount, t.service.namespace, t.serviceAccount);
    record[t.service.service] = { namespace: t.service.namespace, name: t.serviceAccount, created: created.has(label) || ours(live) };
  }
  await ctx.journal.setData(RECORD_KEY, record);
  const n = p.actions.filter((a) => a.kind === 'create-object').length;
  const m = p.actions.length - n;
  const would = ctx.dryRun !== 'none' ? 'would be ' : '';
  return { summary: `${n} service account(s) ${would}created, ${m} ${would}annotated` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const inv = await inventoryFor(ctx);
  const targets = await readWorkloadIdentityTargets(ctx, inv);
  const { wants: list, blockers } = await wants(ctx, targets);
  const evidence: string[] = [];
  const failures = blockers.map((b) => `${b.subject}: ${b.message}`);
  for (const w of list) {
    const label = accountLabel(w.account);
    if (!w.live) {
      failures.push(`${label} does not exist; run apply --step wi-serviceaccounts`);
      continue;
    }
    const missing = missingAnnotations(w.live, w.annotations);
    if (missing.length) failures.push(`${label} lacks ${missing.join(', ')}; run apply --step wi-serviceaccounts`);
    else evidence.push(`${label}: ${Object.entries(w.annotations).map(([k, v]) => `${k}=${v}`).join(', ')}${ours(w.live) ? ' (created by this tool)' : ''}`);
  }
  const recorded = ctx.journal.getData<ServiceAccountRecord>(RECORD_KEY);
  if (!recorded) failures.push('the service accounts of the services are not recorded; run apply --step wi-serviceaccounts');
  return { ok: failures.length === 0, evidence, failures };
}

/** The `wi-serviceaccounts` step. */
export const wiServiceAccountsStep: MigrationStep = {
  id: 'wi-serviceaccounts',
  title: 'Service accounts: client id and tenant annotations, an own account for workloads on default',
  plan,
  afterActions,
  check,
};
