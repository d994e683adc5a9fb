/**
 * Step `wi-test` (workload identity runbook, 6): every token test case of the inventory, now
 * through workload identity. Per case one probe pod in the service's namespace, running as the
 * service's service account and labelled `azure.workload.identity/use: "true"`, exchanges its
 * projected service account token at the Entra token endpoint (what `WorkloadIdentityCredential`
 * does); the token's `xms_mirid`, `appid` and `oid` must be the service's identity. One
 * `run-wi-probes` action whose details are the cases (what the plan shows is what runs); the
 * results (never a token) go to the journal.
 *
 * `nmi-health`, `http` and `command` cases prove pod identity and the service itself; they stay
 * with the managed-mode `test` step and are listed in the plan's notes. `check` passes only when
 * every case passed. Nothing to roll back: probe pods are deleted as each case ends.
 */
import type { Blocker, CheckResult, StepOutcome, StepPlan } from '../../engine/step.ts';
import { KINDS } from '../../kube/kinds.ts';
import { action } from '../executors/index.ts';
import type { PlannedWiCase, RunWiProbesResult, WiTestResult } from '../executors/run-wi-probes.ts';
import type { Ctx, MigrationStep } from '../lib/context.ts';
import { inventoryFor } from '../lib/inventory-source.ts';
import type { InventoryDocument } from '../lib/inventory-model.ts';
import { PROBE_LABEL } from '../lib/probe.ts';
import { patchableKind, refOfKind, serviceAccountFor, servicesOf } from '../lib/workload-identity/workloads.ts';

export type { WiTestResult };

const ACTION_ID = 'wi-token-cases';

/** The token cases to run, and what cannot run (blockers) or is not run here (notes). */
export async function expandWiCases(ctx: Ctx, inv: InventoryDocument): Promise<{ cases: PlannedWiCase[]; blockers: Blocker[]; notes: string[] }> {
  const cases: PlannedWiCase[] = [];
  const blockers: Blocker[] = [];
  const elsewhere: string[] = [];
  const untested: string[] = [];
  for (const s of servicesOf(inv)) {
    const testCases = s.inventory.testCases ?? [];
    const tokens = testCases.map((tc, i) => ({ tc, i })).filter((x) => x.tc.kind === 'token');
    for (const { tc } of testCases.map((tc, i) => ({ tc, i })).filter((x) => x.tc.kind !== 'token')) elsewhere.push(`${tc.kind} of ${s.service}`);
    if (!tokens.length) {
      untested.push(s.service);
      continue;
    }
    const id = s.identity;
    if (!id.clientId || (id.type === 0 && !id.resourceId)) {
      blockers.push({
        code: 'identity-unresolved',
        subject: `identity ${id.namespace}/${id.name}`,
        message: `the workload identity token test of ${s.service} needs the identity's client id${id.type === 0 ? ' and resource id' : ''}, which the inventory does not have.`,
        fix: 'Re-run the managed-mode inventory step (podid-migrate apply --step inventory) so it reads the identity from Azure.',
      });
      continue;
    }
    const live = patchableKind(s.kind) ? await ctx.kube.get(refOfKind(s.kind), s.namespace, s.name) : undefined;
    const serviceAccount = serviceAccountFor(ctx, s, live);
    for (const { tc, i } of tokens) {
      if (tc.kind !== 'token') continue;
      cases.push({
        id: `${s.service}/${i + 1}-token`,
        ...(tc.name ? { name: tc.name } : {}),
        service: s.service,
        namespace: s.namespace,
        serviceAccount,
        identity: { ref: `${id.namespace}/${id.name}`, name: id.name, ...(id.type === 0 ? { resourceId: id.resourceId } : {}), clientId: id.clientId, ...(id.principalId ? { principalId: id.principalId } : {}) },
        ...(tc.resource ? { resource: tc.resource } : {}),
        ...(tc.timeoutSeconds ? { timeoutSeconds: tc.timeoutSeconds } : {}),
      });
    }
  }
  const notes: string[] = [];
  if (untested.length) notes.push(`no token test case for ${untested.join(', ')} (add one to the inventory's testCases)`);
  if (elsewhere.length) notes.push(`not run here (they prove pod identity or the service, in the managed-mode test step): ${elsewhere.join(', ')}`);
  return { cases, blockers, notes };
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = await inventoryFor(ctx);
  const { cases, blockers, notes } = await expandWiCases(ctx, inv);
  const accounts = new Set(cases.map((c) => `${c.namespace}/${c.serviceAccount}`));
  notes.unshift(`${cases.length} workload identity token case${cases.length === 1 ? '' : 's'} as ${accounts.size} service account${accounts.size === 1 ? '' : 's'}`);
  const actions = cases.length
    ? [
        action({
          id: ACTION_ID,
          kind: 'run-wi-probes',
          op: '~',
          target: `${cases.length} token cases`,
          summary: `client-assertion exchange from a probe pod per case, as the service's service account (${cases.length} short-lived pod${cases.length === 1 ? '' : 's'}, deleted after each case)`,
          api: 'kube',
          // Each case creates one probe pod and deletes it.
          writes: { kube: cases.length * 2, arm: 0 },
          details: { cases },
        }),
      ]
    : [];
  return { stepId: 'wi-test', actions, blockers, notes };
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const planned = p.actions[0];
  if (!planned) return { summary: 'no token test case in the inventory' };
  const record = ctx.journal.records().filter((r) => r.actionId === ACTION_ID && r.status === 'done').at(-1);
  const outcome = record?.result as RunWiProbesResult | undefined;
  const n = (planned.details as { cases: unknown[] }).cases.length;
  if (ctx.dryRun !== 'none' || outcome?.dryRun) return { summary: `would run ${n} workload identity token case${n === 1 ? '' : 's'} (dry run: no probe pod created)` };
  const results = outcome?.results ?? [];
  await ctx.journal.setData('results', results);
  const failed = results.filter((r) => !r.ok).length;
  return { summary: `${results.length - failed}/${results.length} workload identity token cases passed${failed ? `, ${failed} failed` : ''}` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const results = ctx.journal.getData<WiTestResult[]>('results') ?? [];
  const evidence: string[] = [];
  const failures: string[] = [];
  const { cases } = await expandWiCases(ctx, await inventoryFor(ctx));
  const byId = new Map(results.map((r) => [r.id, r]));
  for (const c of cases) {
    const r = byId.get(c.id);
    if (!r) failures.push(`token case of ${c.service} (identity ${c.identity.ref}): not run; run apply --step wi-test`);
    else if (!r.ok) failures.push(`token case of ${c.service} as ${c.namespace}/${c.serviceAccount} (identity ${c.identity.ref}): ${r.message}`);
    else evidence.push(`${c.service}: ${r.message}`);
  }
  const leftovers = await ctx.kube.list(KINDS.Pod, { labelSelector: `${PROBE_LABEL}=true` });
  if (leftovers.length) failures.push(`probe pods left behind: ${leftovers.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).join(', ')} (rollback --step wi-test removes them)`);
  return { ok: failures.length === 0, evidence, failures };
}

/** The `wi-test` step. */
export const wiTestStep: MigrationStep = {
  id: 'wi-test',
  title: 'Prove every service gets its identity\'s token through workload identity',
  plan,
  afterActions,
  check,
};

export default wiTestStep;
