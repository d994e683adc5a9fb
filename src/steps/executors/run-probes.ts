/**
 * `run-probes`: runs the planned test cases exactly as planned (`details.cases`), at most four at
 * once, each a short-lived probe pod on its fresh node (token and HTTP cases: one create and one
 * delete each) or a local command. A failing case is a result, not an error; the step's check
 * fails on it. Probe pods left by an interrupted run are swept first. In a dry run nothing runs:
 * the result lists what would. Undo removes leftover probe pods (the cases change nothing else).
 */
import type { Executor } from '../lib/context.ts';
import type { TestResult } from '../lib/junit.ts';
import { describeCase, runCase, type PlannedCase } from '../lib/test-cases.ts';
import { PARALLEL_PROBE_CASES, probeCasesChangeNothing, runProbeCases } from './probe-cases.ts';

/** Test cases run at once (each is one short-lived pod on a node). */
export const PARALLEL_CASES = PARALLEL_PROBE_CASES;

/** Details of a `run-probes` action. */
export interface RunProbesDetails {
  cases: PlannedCase[];
}

/** Result: every case's outcome (never a token), or in a dry run the cases that would run. */
export interface RunProbesResult {
  passed: number;
  failed: number;
  results: TestResult[];
  dryRun?: boolean;
}

export const runProbes: Executor<RunProbesDetails, { cases: number }, RunProbesResult> = {
  kind: 'run-probes',
  async capture(_ctx, { details: d }) {
    return { cases: d.cases.length };
  },
  async do(ctx, { action: { details: d } }) {
    if (ctx.dryRun !== 'none') return { passed: 0, failed: 0, results: [], dryRun: true };
    const results = await runProbeCases(ctx, d.cases, (c) => runCase(ctx, c), (done, r, c) => {
      ctx.progress(`${done}/${d.cases.length} test cases (${r.ok ? 'passed' : 'FAILED'}: ${c.kind} ${c.service} on ${c.pool})`);
      if (!r.ok) ctx.log.warn(`test case failed: ${describeCase(c)}: ${r.message}`);
    });
    return { passed: results.filter((r) => r.ok).length, failed: results.filter((r) => !r.ok).length, results };
  },
  ...probeCasesChangeNothing,
};
