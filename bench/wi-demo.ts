/**
 * Benchmark: the workload identity runbook on the default scenario (churn on), as
 * `podid-migrate --runbook workload-identity demo -o json --uninstall-pod-identity` runs it (a
 * fresh in-process sandbox in its own process, the real clients): after the managed-mode runbook
 * (`--from managed`) and straight from standard mode (`--from standard`). Prints, per run, each
 * workload identity step's state, real seconds and summary, the token cases that passed through
 * workload identity, and the outage meter's failing pod-seconds by cause (simulated seconds).
 *
 *   node_modules/.bin/node bench/wi-demo.ts [--from managed,standard] [--time-scale x]
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'podid-migrate');
const { values } = parseArgs({ options: { from: { type: 'string' }, 'time-scale': { type: 'string' } } });
const starts = (values.from ?? 'managed,standard').split(',').map((s) => s.trim()).filter(Boolean);

interface DemoDoc {
  realSeconds: number;
  steps: { id: string; state: string; seconds: number; checks: string[]; summary?: string }[];
  outage: { failingPodSeconds: number; windows: { seconds: number; cause: string }[]; byCause: Record<string, number> };
}

const pad = (cells: string[], widths: number[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');

for (const from of starts) {
  const dir = mkdtempSync(join(tmpdir(), `podid-bench-wi-${from}-`));
  const args = [BIN, '--runbook', 'workload-identity', 'demo', '--from', from, '--uninstall-pod-identity', '-o', 'json', '--dir', dir, ...(values['time-scale'] ? ['--time-scale', values['time-scale']] : [])];
  process.stderr.write(`running demo --runbook workload-identity --from ${from} --uninstall-pod-identity ...\n`);
  const t0 = performance.now();
  const r = await execa(process.execPath, args, { cwd: dir, env: { CI: 'true' }, reject: false, timeout: 60 * 60_000 });
  const wallS = (performance.now() - t0) / 1000;
  if (r.exitCode !== 0) {
    console.log(`--from ${from}: failed (exit ${r.exitCode}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    continue;
  }
  const doc = JSON.parse(r.stdout) as DemoDoc;
  const wi = doc.steps.filter((s) => s.id.startsWith('wi-'));
  const before = doc.steps.filter((s) => !s.id.startsWith('wi-'));
  console.log(`\n--from ${from}: wall ${wallS.toFixed(1)} s (sandbox start included); managed-mode part ${before.reduce((n, s) => n + s.seconds, 0).toFixed(1)} s (${before.map((s) => s.id).join(', ')}); workload identity part ${wi.reduce((n, s) => n + s.seconds, 0).toFixed(1)} s`);
  const widths = [24, 9, 8];
  console.log(`${pad(['step', 'state', 'real s'], widths)}  summary`);
  for (const s of wi) console.log(`${pad([s.id, s.state, s.seconds.toFixed(1)], widths)}  ${s.summary ?? ''}`);
  const tokens = wi.find((s) => s.id === 'wi-test')?.checks.filter((c) => /workload identity token for .* match/.test(c)).length ?? 0;
  console.log(`token cases passed through workload identity: ${tokens}`);
  const causes = Object.entries(doc.outage.byCause).sort((a, b) => b[1] - a[1]);
  console.log(`failing pod-seconds (simulated): ${doc.outage.failingPodSeconds} in ${doc.outage.windows.length} window(s)${causes.length ? `: ${causes.map(([c, n]) => `${n} ${c}`).join(', ')}` : ''}`);
  const wiCauses = causes.filter(([c]) => c.startsWith('wi-'));
  console.log(`of which workload identity causes: ${wiCauses.reduce((n, [, v]) => n + v, 0)}`);
}
