/**
 * The write contract, end to end through the CLI (`main()` in this process with the production
 * runtime, the same command lines) on the sandbox: for every step of a full migration, the
 * Kubernetes and ARM mutations the sandbox counted while `apply --step <id>` ran (its actions and
 * its check) equal the `writes` that `plan -o json` declared for that step just before. Run on
 * the default (raw manifest) scenario by `write-contract.test.ts` and on a Helm-installed one by
 * `write-contract-helm.test.ts` (two files, so that they run side by side). Batch churn is
 * off: churn pods are evicted with a drain whenever they happen to run on the node, which no plan
 * can know in advance. Refused requests (a 409 or 429 the gateways retry) are not writes. The
 * only ranges a plan declares are decided by races outside the tool: the MIC lease hand-overs
 * during assign's rollout (how many leaders MIC's own election picks among the replaced
 * replicas) and, in the drain NMI rollout, evictions of pods the scheduler moves onto a node
 * before its turn.
 */
import type { RunbookPlan } from '../../src/engine/plan.ts';
import { STEP_IDS } from '../../src/engine/step.ts';
import { runMain, startEnv, type Env } from './steps-1-4-harness.ts';

/** Successful mutating requests of external clients, by API (dry runs excluded). */
function writesSoFar(env: Env): { kube: number; arm: number } {
  const ok = (api: 'kube' | 'arm') => [200, 201, 202, 204].reduce((n, status) => n + env.sandbox.metrics.count({ api, caller: 'client', mutating: true, dryRun: false, status }), 0);
  return { kube: ok('kube'), arm: ok('arm') };
}

/** Applies every step with `apply --step <id>` after `plan -o json`, comparing what was sent with what was declared. */
export async function contract(scenarioText: string): Promise<{ mismatches: string[]; figures: string[] }> {
  const env = await startEnv({ timeScale: 100, churn: false, scenarioText });
  const mismatches: string[] = [];
  const figures: string[] = [];
  try {
    for (const id of STEP_IDS) {
      const planned = await runMain(env, ['plan', '-o', 'json']);
      if (planned.code !== 0) throw new Error(`plan before ${id} failed: ${planned.all}`);
      const step = (JSON.parse(planned.stdout) as RunbookPlan).steps.find((s) => s.stepId === id)!;
      if (step.status !== 'planned' || !step.writes) throw new Error(`step ${id} is ${step.status} before its apply: ${step.reason ?? ''}`);
      const before = writesSoFar(env);
      const applied = await runMain(env, ['apply', '--step', id, '--yes', '--test-timeout', '60s'], { timeoutMs: 180_000 });
      if (applied.code !== 0) throw new Error(`apply --step ${id} failed: ${applied.all}`);
      const after = writesSoFar(env);
      const sent = { kube: after.kube - before.kube, arm: after.arm - before.arm };
      // Exact, except where the plan names a race (MIC lease hand-overs): then within its range.
      const most = step.writesUpTo ?? step.writes;
      const declared = (least: number, upTo: number) => (least === upTo ? `${least}` : `${least}-${upTo}`);
      figures.push(`${id}: declared kube ${declared(step.writes.kube, most.kube)} arm ${declared(step.writes.arm, most.arm)}, sent kube ${sent.kube} arm ${sent.arm}`);
      const within = (n: number, least: number, upTo: number) => n >= least && n <= upTo;
      if (!within(sent.kube, step.writes.kube, most.kube) || !within(sent.arm, step.writes.arm, most.arm)) mismatches.push(figures.at(-1)!);
      if (!step.writesUpTo && (sent.kube !== step.writes.kube || sent.arm !== step.writes.arm)) mismatches.push(`${id}: not exact`);
    }
  } finally {
    await env.stop();
  }
  return { mismatches, figures };
}

