/**
 * Crash matrix: every crash point of a full migration of the default scenario converges.
 *
 * One uninterrupted `podid-migrate apply --yes` (the real CLI, a child process, against a fresh
 * sandbox) counts its mutating requests (the sandbox's metrics) and dumps the result. Then, for
 * each write N of that run and each side of it (right after the server applied it, with the
 * sandbox's `hold-response` fault; right before it is sent, with `hold-request`), a fresh
 * sandbox, `apply --yes` killed with SIGKILL at that point, `force-unlock`, `apply --yes`, and
 * the verdict: exit 0, every step checked, no action left in `intent`, the same Pod Identity
 * objects, MIC/NMI objects, RBAC and VMSS identities as the uninterrupted run (uid,
 * resourceVersion, timestamps and generated pod names ignored), and no reimage POST or VMSS
 * PATCH beyond the uninterrupted run's.
 *
 *   node bench/crash-matrix.ts [--from N] [--to N] [--stride K] [--side after|before|both] [--time-scale S]
 *
 * Prints one line per crash point, then `crash points: N, converged: N, duplicate writes: 0`.
 * Writes whose count depends on timing (eviction retries while a PDB holds, MIC lease
 * hand-overs) can make a late N unreached in a given run: such points are listed and not counted.
 */
import { convergenceFailures, crashAndResumeAt, uninterruptedRun, type Baseline, type CrashSide } from '../test/e2e/crash-matrix-harness.ts';
import { startEnv } from '../test/e2e/steps-1-4-harness.ts';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const timeScale = Number(flag('time-scale') ?? 35);
const sides: CrashSide[] = (flag('side') ?? 'both') === 'both' ? ['after', 'before'] : [flag('side') as CrashSide];
const stride = Math.max(1, Number(flag('stride') ?? 1));

async function baselineRun(): Promise<Baseline> {
  const env = await startEnv({ timeScale });
  try {
    return await uninterruptedRun(env);
  } finally {
    await env.stop();
  }
}

const started = Date.now();
const baseline = await baselineRun();
const from = Math.max(1, Number(flag('from') ?? 1));
const to = Math.min(baseline.writes, Number(flag('to') ?? baseline.writes));
console.log(`uninterrupted run: ${baseline.writes} mutating requests, ${baseline.arm.reimages} reimage POSTs, ${baseline.arm.scaleSetPatches} VMSS PATCHes (${Math.round((Date.now() - started) / 1000)} s)`);

let points = 0;
let converged = 0;
let duplicates = 0;
const unreached: string[] = [];
const failed: string[] = [];
for (let write = from; write <= to; write += stride) {
  for (const side of sides) {
    const t0 = Date.now();
    const env = await startEnv({ timeScale });
    try {
      const outcome = await crashAndResumeAt(env, write, side);
      const label = `write ${write} (${side})`;
      if (!outcome.reached) {
        unreached.push(label);
        console.log(`${label}: not reached in this run`);
        continue;
      }
      points++;
      const { failures, duplicateWrites } = await convergenceFailures(env, baseline, outcome);
      duplicates += duplicateWrites;
      if (failures.length === 0) converged++;
      else failed.push(`${label}: ${failures.join(' | ')}`);
      console.log(`${label}: ${failures.length ? `NOT converged: ${failures.join(' | ').slice(0, 2000)}` : 'converged'} (${Math.round((Date.now() - t0) / 1000)} s)`);
    } catch (e) {
      points++;
      failed.push(`write ${write} (${side}): ${(e as Error).message}`);
      console.log(`write ${write} (${side}): harness error: ${(e as Error).message.slice(0, 2000)}`);
    } finally {
      await env.stop();
    }
  }
}
if (unreached.length) console.log(`not reached (the run sent fewer writes): ${unreached.join(', ')}`);
console.log(`crash points: ${points}, converged: ${converged}, duplicate writes: ${duplicates}`);
console.log(`(writes ${from}-${to}, stride ${stride}, sides ${sides.join('+')}, ${Math.round((Date.now() - started) / 60_000)} min)`);
process.exitCode = failed.length ? 1 : 0;
