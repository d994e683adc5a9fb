/**
 * Step 6, `test`: runs every test case of the inventory on each pool's fresh node (recorded by
 * `drain`), in the service's namespace, as one `run-probes` action whose details are the cases
 * themselves (what the plan shows is what runs), and records the results (never a token) in the
 * journal and, with `junitPath`, as JUnit XML. Case kinds and timing: `lib/test-cases.ts`.
 *
 * `check` passes only when every recorded case passed; each failure names the service, pool,
 * node and identity. Nothing to roll back: probe pods are deleted as each case ends (and any
 * left by an interrupted run are swept at the start and in the rollback).
 */
import type { CheckResult, StepOutcome, StepPlan } from '../engine/step.ts';
import { KINDS } from '../kube/kinds.ts';
import { action } from './executors/index.ts';
import type { RunProbesResult } from './executors/run-probes.ts';
import type { Ctx, MigrationStep } from './lib/context.ts';
import { inventoryFor } from './lib/inventory-source.ts';
import { writeJunit, type TestResult } from './lib/junit.ts';
import { PROBE_LABEL } from './lib/probe.ts';
import { describeCase, expandCases } from './lib/test-cases.ts';

export type { TestResult };
export { commandEnv, describeCase, expandCases, runCase, type PlannedCase } from './lib/test-cases.ts';

const TEST_ACTION_ID = 'test-cases';

/**
 * The fresh node of each pool, as drain recorded them. While an action of drain is left in
 * `intent` by a crash (resolved when drain resumes) the record may be an earlier cycle's:
 * the plan then depends on drain (the runner shows it as such and plans it again once drain is
 * checked), never a list of blockers for pools drain is about to finish.
 */
function freshNodesOf(ctx: Ctx): Record<string, string> {
  const drain = ctx.journal.of('drain');
  const newest = new Map<string, string>();
  for (const r of drain.records()) if (!r.rolledBack) newest.set(r.actionId, r.status);
  // Only an intent: a failed record the re-planned drain did not need again stays failed once drain is checked.
  const unsettled = [...newest].filter(([, status]) => status === 'intent').map(([id]) => id);
  if (unsettled.length) throw new Error(`the drain step has unfinished actions (${unsettled.join(', ')}); its fresh nodes are known once it is checked`);
  const fresh = drain.getData<Record<string, string>>('freshNodes');
  if (!fresh || !Object.keys(fresh).length) throw new Error('no fresh nodes recorded yet: the drain step records one per pool');
  return fresh;
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = await inventoryFor(ctx);
  const fresh = freshNodesOf(ctx);
  const { cases, blockers, untested } = expandCases(inv, fresh);
  const nodes = new Set(cases.map((c) => c.node));
  const notes = [`${cases.length} test case${cases.length === 1 ? '' : 's'} on ${nodes.size} fresh node${nodes.size === 1 ? '' : 's'}`];
  if (untested.length) notes.push(`no test case for ${untested.join(', ')} (add one to the inventory's testCases)`);
  if (ctx.options.junitPath) notes.push(`JUnit report: ${String(ctx.options.junitPath)}`);
  // Which case runs on which fresh node (what a dry run of the whole runbook shows for this step).
  for (const node of [...nodes].sort()) {
    const here = cases.filter((c) => c.node === node);
    notes.push(`on ${node} (pool ${here[0].pool}): ${here.map((c) => `${c.kind}${c.name ? ` "${c.name}"` : ''} of ${c.service}`).join(', ')}`);
  }
  const podCases = cases.filter((c) => c.kind === 'token' || c.kind === 'http').length;
  const actions = cases.length
    ? [
        action({
          id: TEST_ACTION_ID,
          kind: 'run-probes',
          op: '~',
          target: `${cases.length} test cases`,
          summary: `run on fresh nodes ${[...nodes].sort().join(', ')} (${podCases} short-lived probe pod${podCases === 1 ? '' : 's'}, deleted after each case)`,
          api: 'kube',
          // Each token or HTTP case creates one probe pod and deletes it.
          writes: { kube: podCases * 2, arm: 0 },
          details: { cases },
        }),
      ]
    : [];
  return { stepId: 'test', actions, blockers, notes };
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const planned = p.actions[0];
  if (!planned) return { summary: 'no test cases in the inventory' };
  const record = ctx.journal.records().filter((r) => r.actionId === TEST_ACTION_ID && r.status === 'done').at(-1);
  const outcome = record?.result as RunProbesResult | undefined;
  const cases = (planned.details as { cases: { node: string }[] }).cases;
  if (ctx.dryRun !== 'none' || outcome?.dryRun) {
    const nodes = [...new Set(cases.map((c) => c.node))].sort();
    return { summary: `would run ${cases.length} test case${cases.length === 1 ? '' : 's'} on ${nodes.join(', ')} (dry run: no probe pod created)` };
  }
  const results = outcome?.results ?? [];
  await ctx.journal.setData('results', results);
  if (typeof ctx.options.junitPath === 'string') await writeJunit(ctx.options.junitPath, results, { timestamp: new Date().toISOString() });
  const failed = results.filter((r) => !r.ok).length;
  return { summary: `${results.length - failed}/${results.length} test cases passed on ${new Set(results.map((r) => r.node)).size} fresh nodes${failed ? `, ${failed} failed` : ''}` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const results = ctx.journal.getData<TestResult[]>('results') ?? [];
  const evidence: string[] = [];
  const failures: string[] = [];
  const inv = await inventoryFor(ctx);
  const expected = expandCases(inv, ctx.journal.of('drain').getData<Record<string, string>>('freshNodes') ?? {}).cases;
  const byId = new Map(results.map((r) => [r.id, r]));
  for (const c of expected) {
    const r = byId.get(c.id);
    if (!r) failures.push(`${describeCase(c)}: not run; run podid-migrate apply --step test`);
    else if (!r.ok) failures.push(`${describeCase(c)}: ${r.message}`);
    else evidence.push(`${r.kind} ${r.service} on ${r.pool} (${r.node}): ${r.message}`);
  }
  const leftovers = await ctx.kube.list(KINDS.Pod, { labelSelector: `${PROBE_LABEL}=true` });
  if (leftovers.length) failures.push(`probe pods left behind: ${leftovers.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).join(', ')} (podid-migrate rollback --step test removes them)`);
  return { ok: failures.length === 0, evidence, failures };
}
/** The `test` step. */
export const testStep: MigrationStep = {
  id: 'test',
  title: 'Run the test cases on the fresh nodes',
  plan,
  afterActions,
  check,
};

export default testStep;
