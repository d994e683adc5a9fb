/**
 * Crash matrix: every crash point of a full migration of the default scenario converges.
 *
 * One uninterrupted `podid-migrate apply --yes` (the real CLI, a child process, against a fresh
 * sandbox) counts its mutating requests (the sandbox's metrics) and dumps the result. Then, for
 * each write N of that run and each side of it (right after the server applied it, with the
 * sandbox's `hold-response` fault; right before it is sent, with `hold-request`), a fresh
 * sandbox, `apply --yes` as a child process killed with SIGKILL at that point, then the
 * documented resume: the same command (which names the stale lock), `force-unlock`, `apply --yes`
 * (these three run in the worker's own process through the CLI's `main()`, nothing kills them).
 * The verdict: exit 0, every step checked, no action left in `intent`, the same Pod Identity
 * objects, MIC/NMI objects, RBAC and VMSS identities as the uninterrupted run (uid,
 * resourceVersion, timestamps and generated pod names ignored), and no reimage POST or VMSS
 * PATCH beyond the uninterrupted run's.
 *
 *   node bench/crash-matrix.ts [--jobs J] [--from N] [--to N] [--stride K] [--writes N,N,...] [--side after|before|both]
 *                              [--attempts A] [--time-scale S] [--minutes M]
 *
 * `--stride K` runs every Kth write and the first write of every step; `--writes 4,99,206` runs
 * only the writes named (a report's unreached or failed points, say); `--minutes M` (or Ctrl-C)
 * stops handing out points and reports the ones run.
 * `--jobs J` (default 3) runs J crash points at once, each in its own worker process with its
 * own sandbox. The number of points is whatever the uninterrupted run of this build sends, so
 * the matrix follows changes of the runbook by itself. Prints one line per crash point (with its
 * time), then `crash points: N, converged: N, duplicate writes: 0` and the time per point.
 * Writes whose count depends on timing (eviction retries while a PDB holds, pods the scheduler
 * moves onto a node before its NMI restart, MIC lease hand-overs) can make a late N unreached in
 * a given run: such a point is tried again on a fresh sandbox, up to `--attempts A` times in all
 * (default 3); one still not reached is listed and not counted. A write the server refused (an
 * eviction a PDB answers 429) applied nothing, so `hold-response` never fires on it and its
 * `after` side is never reached: a crash there is the `before` side of the next write.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { convergenceFailures, crashAndResumeAt, stepOfWrite, uninterruptedRun, type Baseline, type CrashSide } from '../test/e2e/crash-matrix-harness.ts';
import { STEP_IDS } from '../src/engine/step.ts';
import { startEnv } from '../test/e2e/steps-1-4-harness.ts';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const timeScale = Number(flag('time-scale') ?? 100);

/** One crash point's verdict, as a worker reports it. */
interface PointResult {
  write: number;
  side: CrashSide;
  reached: boolean;
  failures: string[];
  duplicateWrites: number;
  seconds: number;
}

type ToWorker = { kind: 'point'; write: number; side: CrashSide } | { kind: 'exit' };
type FromWorker = { kind: 'ready' } | { kind: 'result'; result: PointResult };

/** A crash point that takes longer (a resume waiting forever) fails instead of stalling the matrix. */
const POINT_TIMEOUT_MS = 600_000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms)));
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

/** One crash point on a fresh sandbox, to its verdict; harness errors are failures of the point. */
async function runPoint(baseline: Baseline, write: number, side: CrashSide): Promise<PointResult> {
  const t0 = Date.now();
  const env = await startEnv({ timeScale });
  try {
    const outcome = await withTimeout(crashAndResumeAt(env, write, side, ['apply', '--yes'], 300_000, 'in-process'), POINT_TIMEOUT_MS, `crash point ${write} (${side})`);
    if (!outcome.reached) return { write, side, reached: false, failures: [], duplicateWrites: 0, seconds: (Date.now() - t0) / 1000 };
    const { failures, duplicateWrites } = await convergenceFailures(env, baseline, outcome);
    return { write, side, reached: true, failures, duplicateWrites, seconds: (Date.now() - t0) / 1000 };
  } catch (e) {
    return { write, side, reached: true, failures: [`harness error: ${(e as Error).message}`], duplicateWrites: 0, seconds: (Date.now() - t0) / 1000 };
  } finally {
    await env.stop();
  }
}

if (process.argv.includes('--worker')) {
  // Worker: crash points one at a time, as the parent hands them out.
  const baseline = JSON.parse(process.env.CRASH_MATRIX_BASELINE!) as Baseline;
  // Ctrl-C reaches the whole process group: the parent decides, the running point finishes.
  process.on('SIGINT', () => {});
  process.on('message', (m: ToWorker) => {
    if (m.kind === 'exit') process.exit(0);
    void runPoint(baseline, m.write, m.side).then((result) => process.send!({ kind: 'result', result } satisfies FromWorker));
  });
  process.send!({ kind: 'ready' } satisfies FromWorker);
} else {
  const sides: CrashSide[] = (flag('side') ?? 'both') === 'both' ? ['after', 'before'] : [flag('side') as CrashSide];
  const stride = Math.max(1, Number(flag('stride') ?? 1));
  const jobs = Math.max(1, Number(flag('jobs') ?? 3));
  const attempts = Math.max(1, Number(flag('attempts') ?? 3));
  const named = flag('writes')?.split(',').map((w) => Number(w.trim()));
  if (named && (named.length === 0 || named.some((w) => !Number.isInteger(w) || w < 1))) {
    console.error(`--writes takes write numbers separated by commas (such as --writes 4,99,206), got ${JSON.stringify(flag('writes'))}`);
    process.exit(2);
  }

  const started = Date.now();
  const env = await startEnv({ timeScale });
  let baseline: Baseline;
  try {
    baseline = await uninterruptedRun(env);
  } finally {
    await env.stop();
  }
  const from = Math.max(1, Number(flag('from') ?? 1));
  const to = Math.min(baseline.writes, Number(flag('to') ?? baseline.writes));
  const minutes = flag('minutes') === undefined ? Infinity : Number(flag('minutes'));
  const perStep = STEP_IDS.map((id, i) => {
    const first = baseline.stepFirstWrite[id] ?? baseline.writes + 1;
    const next = STEP_IDS.slice(i + 1).map((n) => baseline.stepFirstWrite[n]).find((n) => n !== undefined) ?? baseline.writes + 1;
    return `${id} ${Math.max(0, next - first)}${next > first ? ` (${first}-${next - 1})` : ''}`;
  });
  console.log(`uninterrupted run: ${baseline.writes} mutating requests, ${baseline.arm.reimages} reimage POSTs, ${baseline.arm.scaleSetPatches} VMSS PATCHes (${Math.round((Date.now() - started) / 1000)} s, time scale ${timeScale})`);
  console.log(`writes per step: ${perStep.join(', ')}`);

  const chosen = new Set<number>();
  if (named) {
    const beyond = named.filter((w) => w > baseline.writes);
    if (beyond.length) console.log(`--writes: the uninterrupted run sent ${baseline.writes} writes, so ${beyond.join(', ')} cannot be crash points; left out`);
    for (const w of named) if (w <= baseline.writes) chosen.add(w);
  } else {
    for (let write = from; write <= to; write += stride) chosen.add(write);
    // With --stride, the first write of every step is a crash point too, so a part still covers every step.
    if (stride > 1) for (const id of STEP_IDS) if (baseline.stepFirstWrite[id] >= from && baseline.stepFirstWrite[id] <= to) chosen.add(baseline.stepFirstWrite[id]);
  }
  const writes = [...chosen].sort((a, b) => a - b);
  // Handed out interleaved (every 8th write first, then the ones between), so that the points done
  // so far are spread over every step while the run goes on.
  const queue: { write: number; side: CrashSide; attempt: number }[] = [];
  for (let offset = 0; offset < 8; offset++) for (let i = offset; i < writes.length; i += 8) for (const side of sides) queue.push({ write: writes[i], side, attempt: 1 });
  const total = queue.length;
  const results: PointResult[] = [];
  let retried = 0;
  const matrixStarted = Date.now();
  let stopped = '';
  const stop = (why: string) => {
    if (!stopped) console.log(`${why}: no new crash point is started; the running ones finish`);
    stopped ||= why;
    queue.length = 0;
  };
  process.on('SIGINT', () => stop('interrupted'));
  if (Number.isFinite(minutes)) setTimeout(() => stop(`--minutes ${minutes} reached`), minutes * 60_000).unref();

  const label = (r: { write: number; side: CrashSide }) => `write ${r.write} (${r.side}, ${stepOfWrite(baseline, r.write)})`;
  /** Records a point's verdict; an unreached point goes back to the end of the queue while it has attempts left. */
  const report = (r: PointResult, attempt: number) => {
    if (!r.reached && attempt < attempts && !stopped) {
      retried++;
      queue.push({ write: r.write, side: r.side, attempt: attempt + 1 });
      console.log(`[${results.length}/${total}] ${label(r)}: not reached in attempt ${attempt} of ${attempts}; tried again on a fresh sandbox (${Math.round(r.seconds)} s)`);
      return;
    }
    results.push(r);
    const verdict = !r.reached ? `not reached in ${attempt} attempt${attempt > 1 ? 's' : ''}` : r.failures.length ? `NOT converged: ${r.failures.join(' | ').slice(0, 2000)}` : 'converged';
    console.log(`[${results.length}/${total}] ${label(r)}: ${verdict} (${Math.round(r.seconds)} s)`);
  };

  await Promise.all(
    Array.from({ length: Math.min(jobs, total) }, async () => {
      const worker: ChildProcess = fork(import.meta.filename, ['--worker', '--time-scale', String(timeScale)], {
        env: { ...process.env, CRASH_MATRIX_BASELINE: JSON.stringify(baseline) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      let pending: ((r: PointResult | undefined) => void) | undefined;
      worker.on('message', (m: FromWorker) => {
        if (m.kind === 'result') pending?.(m.result);
      });
      void exited.then(() => pending?.(undefined));
      await new Promise<void>((resolve) => worker.once('message', () => resolve()));
      for (let next = queue.shift(); next; next = queue.shift()) {
        const point = next;
        const result = await new Promise<PointResult | undefined>((resolve) => {
          pending = resolve;
          worker.send({ kind: 'point', write: point.write, side: point.side } satisfies ToWorker);
        });
        pending = undefined;
        if (!result) {
          report({ write: point.write, side: point.side, reached: true, failures: ['the worker process died'], duplicateWrites: 0, seconds: 0 }, point.attempt);
          return;
        }
        report(result, point.attempt);
      }
      worker.send({ kind: 'exit' } satisfies ToWorker);
      await exited;
    }),
  );

  results.sort((a, b) => a.write - b.write || a.side.localeCompare(b.side));
  const reached = results.filter((r) => r.reached);
  const converged = reached.filter((r) => r.failures.length === 0);
  const duplicates = reached.reduce((n, r) => n + r.duplicateWrites, 0);
  const unreached = results.filter((r) => !r.reached).map(label);
  for (const r of reached.filter((x) => x.failures.length)) console.log(`NOT converged: ${label(r)}: ${r.failures.join(' | ').slice(0, 3000)}`);
  if (unreached.length) console.log(`not reached in ${attempts} attempt${attempts > 1 ? 's' : ''} (a refused write, or a run that sent fewer writes): ${unreached.join(', ')}`);
  const matrixSeconds = (Date.now() - matrixStarted) / 1000;
  for (const id of STEP_IDS) {
    const here = reached.filter((r) => stepOfWrite(baseline, r.write) === id);
    if (here.length) console.log(`  ${id}: ${here.length} points, ${here.filter((r) => !r.failures.length).length} converged, ${(here.reduce((n, r) => n + r.seconds, 0) / here.length).toFixed(1)} s per point`);
  }
  if (stopped) console.log(`${stopped}: ${results.length} of ${total} crash points run`);
  const perPoint = results.length ? results.reduce((n, r) => n + r.seconds, 0) / results.length : 0;
  console.log(`crash points: ${reached.length}, converged: ${converged.length}, duplicate writes: ${duplicates}`);
  console.log(
    `(${named ? `writes ${writes.join(',')}` : `writes ${from}-${to}, stride ${stride}`}, sides ${sides.join('+')}, ${jobs} jobs, time scale ${timeScale}, ${retried} attempt${retried === 1 ? '' : 's'} retried: ${Math.round((Date.now() - started) / 60_000)} min in all, ` +
      `${perPoint.toFixed(1)} s per point in a worker, ${(matrixSeconds / Math.max(1, results.length)).toFixed(1)} s of wall time per point)`,
  );
  process.exitCode = reached.length === converged.length && duplicates === 0 ? 0 : 1;
}
