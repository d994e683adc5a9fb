/**
 * The crash matrix's deterministic sample (the full matrix is `bench/crash-matrix.ts`): the
 * runbook walked step by step (`apply --to <step> --yes`, the real CLI as a child process), killed
 * with SIGKILL twice in every step, on both sides of a write:
 * - right before its first write is sent (the server holds the request unapplied and drops it);
 * - then, in the run resuming from that, right after the server applied its first write (the
 *   answer never comes): for most steps the same write sent again, now taking effect unseen.
 * After each kill the documented resume: the same command names the stale lock, `force-unlock`,
 * then the same command to the end (these run through the CLI's `main()` in this process). Every
 * step must end checked with no action left in `intent`.
 *
 * Two sandboxes share the walk, at the same time as an uninterrupted `apply --yes` on a third:
 * one kills the CLI in steps 1-4 and then runs drain, test and cleanup uninterrupted (the engine
 * in this process), the other runs steps 1-4 so and kills the CLI in drain, test and cleanup.
 * Each must end with the Pod Identity objects, MIC/NMI objects, RBAC and VMSS identities of the
 * uninterrupted run, and no reimage POST or VMSS PATCH repeated.
 */
import { describe, expect, it } from 'vitest';
import { STEP_IDS, type ManagedModeStepId as StepId } from '../../src/engine/step.ts';
import { clearStaleLock, convergenceFailures, crashAt, journalProblems, runCliInProcess, uninterruptedRun, type Baseline, type CrashSide } from './crash-matrix-harness.ts';
import { startEnv, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';

const TIME_SCALE = 100;
const SPLIT = STEP_IDS.indexOf('mic-scale') + 1;

async function onSandbox<T>(fn: (env: Env) => Promise<T>): Promise<T> {
  const env = await startEnv({ timeScale: TIME_SCALE });
  try {
    return await fn(env);
  } finally {
    await env.stop();
  }
}

/** Kills and resumes every step of `steps` as the module comment says; returns the last resume. */
async function killEveryStep(env: Env, steps: readonly StepId[]): Promise<void> {
  for (const step of steps) {
    const args = ['apply', '--to', step, '--yes'];
    for (const side of ['before', 'after'] satisfies CrashSide[]) {
      expect(await crashAt(env, 1, side, args), `${step}: no write to kill ${side}`).toBe(true);
      expect(await clearStaleLock(env, args, 'in-process'), `${step} (${side})`).toBeUndefined();
    }
    const resumed = await runCliInProcess(env, args);
    expect(resumed.code, `${step}: ${resumed.all.slice(-3000)}`).toBe(0);
    expect(journalProblems(env, STEP_IDS.slice(0, STEP_IDS.indexOf(step) + 1)), step).toEqual([]);
  }
}

/** The steps of `steps` uninterrupted, through the engine in this process. */
async function runUninterrupted(env: Env, steps: readonly StepId[]): Promise<void> {
  const r = await fullRunner(env).apply({ to: steps.at(-1)! });
  expect(r.steps.filter((s) => steps.includes(s.stepId as StepId)).map((s) => [s.stepId, s.outcome])).toEqual(steps.map((id) => [id, 'checked']));
}

async function verdict(env: Env, baseline: Promise<Baseline>): Promise<void> {
  expect(journalProblems(env)).toEqual([]);
  const { failures, duplicateWrites } = await convergenceFailures(env, await baseline, { reached: true });
  expect(failures).toEqual([]);
  expect(duplicateWrites).toBe(0);
}

describe('crash matrix sample: every step killed before and after a write', () => {
  it('each step resumes from a kill before its first write and from a kill after the resumed run\'s first write; the end state is an uninterrupted run\'s', async () => {
    const baseline = onSandbox((env) => uninterruptedRun(env));
    baseline.catch(() => undefined);
    const early = STEP_IDS.slice(0, SPLIT);
    const late = STEP_IDS.slice(SPLIT);
    await Promise.all([
      onSandbox(async (env) => {
        await killEveryStep(env, early);
        await runUninterrupted(env, late);
        await verdict(env, baseline);
      }),
      onSandbox(async (env) => {
        await runUninterrupted(env, early);
        await killEveryStep(env, late);
        await verdict(env, baseline);
      }),
    ]);
  }, 300_000);
});
