/**
 * What the two test-case executors (`run-probes`, `run-wi-probes`) share: probe pods left by an
 * interrupted run are swept first, the cases run at most {@link PARALLEL_PROBE_CASES} at once
 * with a progress line each, and since the cases change nothing, an interrupted run simply runs
 * them again and undo only removes leftover probe pods.
 */
import pLimit from 'p-limit';
import { KINDS } from '../../kube/kinds.ts';
import type { CheckResult } from '../../engine/step.ts';
import type { Ctx } from '../lib/context.ts';
import { PROBE_LABEL, sweepProbePods } from '../lib/probe.ts';

/** Cases run at once (each is one short-lived pod). */
export const PARALLEL_PROBE_CASES = 4;

/**
 * Sweeps leftover probe pods, then runs every case through `runOne`, at most
 * {@link PARALLEL_PROBE_CASES} at once; `report` is told of each finished case (with the count so far).
 */
export async function runProbeCases<C, R extends { ok: boolean }>(
  ctx: Ctx,
  cases: readonly C[],
  runOne: (c: C) => Promise<R>,
  report: (done: number, result: R, c: C) => void,
): Promise<R[]> {
  const swept = await sweepProbePods(ctx.kube);
  if (swept) ctx.log.info(`removed ${swept} probe pod(s) left by an earlier run`);
  const limit = pLimit(PARALLEL_PROBE_CASES);
  let done = 0;
  return Promise.all(
    cases.map((c) =>
      limit(async () => {
        const r = await runOne(c);
        done++;
        report(done, r, c);
        return r;
      }),
    ),
  );
}

/** `reconcile`, `undo` and `verifyUndo` of an executor whose cases change nothing but leave probe pods while they run. */
export const probeCasesChangeNothing = {
  async reconcile(): Promise<{ applied: false; reason: string }> {
    // The cases change nothing: an interrupted run is simply run again.
    return { applied: false, reason: 'test cases are run again' };
  },
  async undo(ctx: Ctx): Promise<string> {
    const swept = await sweepProbePods(ctx.kube);
    return `nothing to undo (test cases change nothing)${swept ? `; removed ${swept} leftover probe pod(s)` : ''}`;
  },
  async verifyUndo(ctx: Ctx): Promise<CheckResult> {
    const left = await ctx.kube.list(KINDS.Pod, { labelSelector: `${PROBE_LABEL}=true` });
    return left.length ? { ok: false, evidence: [], failures: [`probe pods left behind: ${left.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).join(', ')}`] } : { ok: true, evidence: ['no probe pod left'], failures: [] };
  },
};
