/**
 * The crash matrix's deterministic sample (the full matrix is `bench/crash-matrix.ts`): the
 * real CLI killed with SIGKILL at the first write of every step, on both sides of the write
 * (right after the server applied it; right before it is sent), each resumed with
 * `force-unlock` and the same `apply --to <step> --yes`. Two sandboxes walk the runbook step
 * by step with opposite sides; each must end with every step checked, no action left in
 * `intent`, the same Pod Identity objects, MIC/NMI objects, RBAC and VMSS identities as an
 * uninterrupted `apply --yes` on a third sandbox, and no reimage POST or VMSS PATCH repeated.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { STEP_IDS } from '../../src/engine/step.ts';
import { convergenceFailures, crashAndResumeAt, journalProblems, uninterruptedRun, type Baseline, type CrashOutcome, type CrashSide } from './crash-matrix-harness.ts';
import { startEnv, type Env } from './steps-1-4-harness.ts';

const TIME_SCALE = 35;

describe('crash matrix sample: the first write of every step, both sides', () => {
  let baseline: Baseline;
  beforeAll(async () => {
    const env = await startEnv({ timeScale: TIME_SCALE });
    try {
      baseline = await uninterruptedRun(env);
    } finally {
      await env.stop();
    }
  }, 300_000);

  const walk = (first: CrashSide) => async () => {
    let env: Env | undefined;
    try {
      env = await startEnv({ timeScale: TIME_SCALE });
      let last: CrashOutcome | undefined;
      for (const [i, step] of STEP_IDS.entries()) {
        const side: CrashSide = i % 2 === 0 ? first : first === 'after' ? 'before' : 'after';
        last = await crashAndResumeAt(env, 1, side, ['apply', '--to', step, '--yes']);
        expect(last.reached, `${step}: its first write was never sent`).toBe(true);
        expect(last.resumed?.code, `${step} (${side}): ${last.resumed?.all.slice(-3000)}`).toBe(0);
        expect(journalProblems(env, STEP_IDS.slice(0, i + 1)), `${step} (${side})`).toEqual([]);
      }
      const { failures, duplicateWrites } = await convergenceFailures(env, baseline, last!);
      expect(failures).toEqual([]);
      expect(duplicateWrites).toBe(0);
    } finally {
      await env?.stop();
    }
  };

  it('crash after the write in inventory, nmi-managed, drain, cleanup; before it in assign, mic-scale, test', walk('after'), 600_000);
  it('crash before the write in inventory, nmi-managed, drain, cleanup; after it in assign, mic-scale, test', walk('before'), 600_000);

});
