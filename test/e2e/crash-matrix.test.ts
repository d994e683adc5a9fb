/**
 * The crash matrix's deterministic sample (the full matrix is `bench/crash-matrix.ts`): one
 * sandbox walks the runbook step by step (`apply --to <step> --yes`, the real CLI as a child
 * process) and kills it with SIGKILL twice in every step, on both sides of a write:
 * - right before its first write is sent (the server holds the request unapplied and drops it);
 * - then, in the run resuming from that, right after the server applied its first write (the
 *   answer never comes): for most steps the same write sent again, now taking effect unseen.
 * After each kill the documented resume: the same command names the stale lock, `force-unlock`,
 * then the same command to the end (these run through the CLI's `main()` in this process). Every
 * step must end checked with no action left in `intent`; at the end the Pod Identity objects,
 * MIC/NMI objects, RBAC and VMSS identities must equal those of an uninterrupted `apply --yes` on
 * a second sandbox (run at the same time), and no reimage POST or VMSS PATCH may be repeated.
 */
import { describe, expect, it } from 'vitest';
import { STEP_IDS } from '../../src/engine/step.ts';
import { clearStaleLock, convergenceFailures, crashAt, journalProblems, runCliInProcess, uninterruptedRun, type Baseline, type CrashSide } from './crash-matrix-harness.ts';
import { startEnv, type Env } from './steps-1-4-harness.ts';

const TIME_SCALE = 100;

async function baselineRun(): Promise<Baseline> {
  const env = await startEnv({ timeScale: TIME_SCALE });
  try {
    return await uninterruptedRun(env);
  } finally {
    await env.stop();
  }
}

describe('crash matrix sample: every step killed before and after a write', () => {
  it('each step resumes from a kill before its first write and from a kill after the resumed run\'s first write; the end state is an uninterrupted run\'s', async () => {
    // The uninterrupted run on its own sandbox, at the same time as the walk.
    const baseline = baselineRun();
    baseline.catch(() => undefined);
    let env: Env | undefined;
    try {
      env = await startEnv({ timeScale: TIME_SCALE });
      let resumed = { code: 0, all: '' };
      for (const [i, step] of STEP_IDS.entries()) {
        const args = ['apply', '--to', step, '--yes'];
        for (const side of ['before', 'after'] satisfies CrashSide[]) {
          expect(await crashAt(env, 1, side, args), `${step}: no write to kill ${side}`).toBe(true);
          expect(await clearStaleLock(env, args, 'in-process'), `${step} (${side})`).toBeUndefined();
        }
        resumed = await runCliInProcess(env, args);
        expect(resumed.code, `${step}: ${resumed.all.slice(-3000)}`).toBe(0);
        expect(journalProblems(env, STEP_IDS.slice(0, i + 1)), step).toEqual([]);
      }
      const { failures, duplicateWrites } = await convergenceFailures(env, await baseline, { reached: true, resumed });
      expect(failures).toEqual([]);
      expect(duplicateWrites).toBe(0);
    } finally {
      await env?.stop();
    }
  }, 300_000);
});
