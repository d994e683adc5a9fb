/**
 * Steps 5-7 when things go wrong, on the sandbox with the real gateways (nothing mocked), and
 * through the real CLI (`main()` with the production runtime factory, as `source <dir>/env`
 * would configure it):
 * - a PodDisruptionBudget that never allows an eviction is a blocker `apply` finds before
 *   `drain` writes anything, naming the budget; once it is relaxed, `apply` resumes from `drain`
 *   (a budget exhausted only for now is retried up to `--drain-timeout`: test/steps/drain.test.ts);
 * - an identity removed from one scale set fails `test` naming service, pool and identity, and
 *   `cleanup` refuses to run;
 * - with `--verbose`, no token appears in the journal, the JUnit report, or anything printed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockersFoundError, PreconditionError, StepFailedError } from '../../src/engine/errors.ts';
import { Journal, actionLogPathFor } from '../../src/engine/journal.ts';
import { runMain, startEnv, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';

const PDB = { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget' };
const NODE = { apiVersion: 'v1', kind: 'Node' };
/** Any compact JWT, or a JWT payload/header segment on its own (base64url JSON starts with eyJ). */
const TOKENISH = /eyJ[A-Za-z0-9_-]{10,}/;

/** The CLI in this process (`main()` with the production runtime, the env of `source <dir>/env`). */
async function cli(env: Env, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runMain(env, args);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

describe('steps 5-7 failure paths on the sandbox', () => {
  let env: Env;

  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    const first = await fullRunner(env).apply({ to: 'mic-scale' });
    expect(first.next).toBe('drain');
  }, 120_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('a PDB that never allows an eviction is a blocker found before drain writes anything, naming the budget; apply resumes from drain once it is relaxed', async () => {
    for (const binding of ['worker', 'shared-storage']) {
      await env.kube.create({ ...PDB, metadata: { name: `never-evict-${binding}`, namespace: 'batch' }, spec: { minAvailable: 1000, selector: { matchLabels: { aadpodidbinding: binding } } } });
    }
    env.sandbox.metrics.reset();
    const error = await fullRunner(env, { drainTimeoutMs: 4000 }).apply({ to: 'drain' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BlockersFoundError);
    const blockers = (error as BlockersFoundError).blockers;
    expect(blockers.every((b) => b.stepId === 'drain' && b.code === 'pdb-blocks-drain')).toBe(true);
    expect(blockers.map((b) => b.subject)).toContain('PodDisruptionBudget batch/never-evict-worker');
    expect(blockers[0].message).toMatch(/allows no disruption even with all \d+ pods? healthy/);
    expect(blockers[0].fix).toMatch(/scale|relax|skip/i);
    // Nothing written: no cordon, no eviction, no reimage.
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', mutating: true, dryRun: false })).toBe(0);
    expect(env.sandbox.metrics.count({ api: 'arm', caller: 'client', mutating: true })).toBe(0);
    const journal = (await Journal.read(env.journalPath))!;
    expect(journal.steps.drain.state).toBe('pending');
    for (const n of await env.kube.list(NODE)) expect((n.spec as { unschedulable?: boolean }).unschedulable).toBeFalsy();

    for (const binding of ['worker', 'shared-storage']) await env.kube.delete(PDB, 'batch', `never-evict-${binding}`);
    const resumed = await fullRunner(env).apply({ to: 'drain' });
    expect(resumed.steps.map((s) => [s.stepId, s.outcome])).toEqual([
      ['inventory', 'skipped'],
      ['assign', 'skipped'],
      ['nmi-managed', 'skipped'],
      ['mic-scale', 'skipped'],
      ['drain', 'checked'],
    ]);
  }, 180_000);

  it('an identity removed from one scale set fails test naming service, pool and identity; cleanup refuses; no token anywhere with --verbose', async () => {
    const reports = env.sandbox.arm.scaleSets().find((s) => s.poolName === 'reports')!;
    const reportsId = env.sandbox.arm.identity('reports-id')!.id;
    env.sandbox.arm.patchIdentities(reports.name, { [reportsId]: null }, { caller: 'operator' });

    const junit = join(env.dir, 'junit.xml');
    const run = await cli(env, ['apply', '--yes', '--step', 'test', '--junit', junit, '--verbose']);
    expect(run.code).toBe(3);
    expect(run.err).toMatch(/Error: step "test" was applied but its check failed:/);
    expect(run.err).toMatch(/token of service reporting\/reports in pool reports \(node aks-reports-\S+\), identity reporting\/reports-id: no token for identity reporting\/reports-id/);
    const journal = (await Journal.read(env.journalPath))!;
    expect(journal.steps.test.state).toBe('failed');

    const refused = await fullRunner(env).apply({ step: 'cleanup' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PreconditionError);
    expect((refused as Error).message).toBe('step "cleanup" cannot start: the earlier step "test" is failed, not checked.');
    const viaCli = await cli(env, ['apply', '--yes', '--step', 'cleanup', '--verbose']);
    expect(viaCli.code).toBe(1);
    expect(await env.kube.get({ apiVersion: 'apps/v1', kind: 'Deployment' }, 'default', 'mic')).toBeDefined();
    const plan = await fullRunner(env).plan();
    const cleanupPlan = plan.steps.find((s) => s.stepId === 'cleanup')!;
    expect(cleanupPlan.plan?.blockers.map((b) => b.code)).toEqual(['tests-not-passed']);

    const status = await cli(env, ['status', '-o', 'json', '--verbose']);
    const history = await cli(env, ['history', '--verbose']);
    const texts = {
      journal: readFileSync(env.journalPath, 'utf8'),
      journalActionLog: existsSync(actionLogPathFor(env.journalPath)) ? readFileSync(actionLogPathFor(env.journalPath), 'utf8') : '',
      junit: readFileSync(junit, 'utf8'),
      applyOutput: run.out + run.err,
      cleanupOutput: viaCli.out + viaCli.err,
      status: status.out + status.err,
      history: history.out + history.err,
    };
    for (const [what, text] of Object.entries(texts)) expect(text, what).not.toMatch(TOKENISH);
    // The report is there and names the failure; passing token cases prove tokens were handled.
    expect(texts.junit).toMatch(/<failure message="no token for identity reporting\/reports-id/);
    expect(texts.junit).toMatch(/token for batch\/worker-id on node aks-batch-\S+: xms_mirid, appid, oid match/);

    // Put the identity back: the test step passes on a re-run and cleanup may go.
    env.sandbox.arm.patchIdentities(reports.name, { [reportsId]: {} }, { caller: 'operator' });
    const again = await fullRunner(env).apply({ step: 'test' });
    expect(again.steps[0].outcome).toBe('checked');
  }, 180_000);
});
