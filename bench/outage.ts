/**
 * Benchmark: what each migration procedure costs the workloads, side by side on the same
 * scenario. Each procedure runs as `podid-migrate demo --procedure <p> -o json` (a fresh
 * in-process sandbox in its own process, churn on, the real clients), and the table shows from
 * its report: failing pod-seconds (and the ratio to in-place), the longest failure window, pods
 * evicted, wall time and ARM writes. A procedure the tool refuses prints "not available".
 *
 *   node_modules/.bin/node bench/outage.ts [--large] [--time-scale x] [--procedures upstream,in-place,drain]
 *
 * `--large` also runs scenarios/large.yaml (20 pools, 200 nodes; about 10 minutes per procedure).
 * Every run keeps measuring for `--observe` simulated seconds after its last step (default 600),
 * so failures that never end (a binding left in another namespace) count the same for all.
 * `upstream@N` runs the documented procedure with N simulated seconds between two of its steps
 * (an operator reading the doc); plain `upstream` runs its commands back to back, as a script.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'podid-migrate');
const { values } = parseArgs({ options: { large: { type: 'boolean' }, 'time-scale': { type: 'string' }, procedures: { type: 'string' }, observe: { type: 'string' } } });
const observe = values.observe ?? '600';
const procedures = (values.procedures ?? 'upstream,upstream@120,in-place,drain').split(',').map((p) => p.trim()).filter(Boolean);
const scenarios: { name: string; file?: string }[] = [{ name: 'default' }, ...(values.large ? [{ name: 'large', file: join(ROOT, 'scenarios', 'large.yaml') }] : [])];

interface DemoDoc {
  realSeconds: number;
  steps: { id: string; seconds: number; armWrites: number }[];
  drain: { pools: { pool: string; seconds: number }[] };
  podsEvicted: number;
  outage: { failingPodSeconds: number; windows: { seconds: number; cause: string }[]; byCause: Record<string, number> };
}

type Row = { procedure: string; doc?: DemoDoc; wallMs: number; unavailable?: string; failed?: string };

async function run(procedure: string, scenario: { file?: string }): Promise<Row> {
  const [name, pause] = procedure.split('@');
  const dir = mkdtempSync(join(tmpdir(), `podid-bench-outage-${name}-`));
  const args = [BIN, 'demo', '--procedure', name, '-o', 'json', '--dir', dir, '--observe', observe, ...(pause ? ['--operator-pause', pause] : []), ...(scenario.file ? ['--scenario', scenario.file] : []), ...(values['time-scale'] ? ['--time-scale', values['time-scale']] : [])];
  const t0 = performance.now();
  const r = await execa(process.execPath, args, { cwd: dir, env: { CI: 'true' }, reject: false, timeout: 60 * 60_000 });
  const wallMs = performance.now() - t0;
  if (r.exitCode !== 0) {
    const msg = /error: (.*)/i.exec(r.stderr)?.[1] ?? r.stderr.trim().split('\n').at(-1) ?? `exit ${r.exitCode}`;
    if (/not available yet/.test(r.stderr)) return { procedure, wallMs, unavailable: msg };
    return { procedure, wallMs, failed: msg };
  }
  return { procedure, wallMs, doc: JSON.parse(r.stdout) as DemoDoc };
}

const pad = (cells: string[], widths: number[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');

for (const scenario of scenarios) {
  const rows: Row[] = [];
  for (const p of procedures) {
    process.stderr.write(`scenario ${scenario.name}: running demo --procedure ${p} ...\n`);
    const row = await run(p, scenario);
    process.stderr.write(`  ${row.doc ? `${row.doc.outage.failingPodSeconds} failing pod-seconds` : (row.unavailable ?? row.failed)} (${(row.wallMs / 1000).toFixed(1)} s)\n`);
    rows.push(row);
  }
  const base = rows.find((r) => r.procedure === 'in-place')?.doc?.outage.failingPodSeconds;
  const header = ['PROCEDURE', 'FAILING POD-S', 'VS IN-PLACE', 'LONGEST WINDOW', 'PODS EVICTED', 'WALL TIME', 'ARM WRITES', 'DRAIN STEP / SLOWEST POOL'];
  const body = rows.map((r) => {
    if (!r.doc) return [r.procedure, r.unavailable ? 'not available' : `failed: ${r.failed}`, '', '', '', '', '', ''];
    const d = r.doc;
    const longest = Math.max(0, ...d.outage.windows.map((w) => w.seconds));
    const writes = d.steps.reduce((a, s) => a + s.armWrites, 0);
    const drainStep = d.steps.find((s) => s.id === 'drain');
    const slowest = Math.max(0, ...d.drain.pools.map((p) => p.seconds));
    const ratio = base ? `${(d.outage.failingPodSeconds / base).toFixed(2)}x` : base === 0 ? (d.outage.failingPodSeconds === 0 ? '1.00x' : 'inf') : '-';
    return [r.procedure, String(d.outage.failingPodSeconds), ratio, `${longest} s`, String(d.podsEvicted), `${d.realSeconds.toFixed(1)} s`, String(writes), drainStep && slowest ? `${drainStep.seconds.toFixed(1)} s / ${slowest.toFixed(1)} s` : '-'];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  console.log('');
  console.log(`Outage by procedure, scenario ${scenario.name} (churn on; each on a fresh sandbox, measured until ${observe} simulated s after its last step; failing pod-seconds and windows in simulated seconds, wall time real and without the observation)`);
  console.log(pad(header, widths));
  for (const b of body) console.log(pad(b, widths));
  for (const r of rows) {
    if (!r.doc) continue;
    const causes = Object.entries(r.doc.outage.byCause).sort((a, b) => b[1] - a[1]);
    if (causes.length) console.log(`  ${r.procedure}: ${causes.map(([c, n]) => `${n} ${c}`).join('; ')}`);
  }
}
