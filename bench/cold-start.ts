/**
 * Benchmark: cold start of the CLI against a bare `node -e 0`, side by side. Each command is
 * spawned N times, alternating with `node -e 0` on the same Node binary, so that machine load
 * affects both alike; prints wall-time medians and the ratio to `node -e 0`.
 *
 *   node bench/cold-start.ts                     (the build in dist/, this Node; N=21)
 *   node bench/cold-start.ts --runs 41 --node /usr/bin/node --sources
 *
 * `--sources` measures bin/ running the TypeScript sources instead of the build (the developer
 * loop). The compile cache (module.enableCompileCache, Node >= 22.1) is warmed by one untimed
 * run first, as every start after the first one finds it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '21' },
    node: { type: 'string', default: process.execPath },
    sources: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 3) throw new Error(`--runs: "${values.runs}" must be an integer >= 3`);
const node = values.node!;
const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'podid-migrate');
if (!values.sources && !existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first (or pass --sources)');

const env = { ...process.env, ...(values.sources ? {} : { PODID_MIGRATE_USE_BUILD: '1' }), NO_COLOR: '1' };
const cases: { name: string; args: string[] }[] = [
  { name: 'node -e 0', args: ['-e', '0'] },
  { name: 'podid-migrate --help', args: [bin, '--help'] },
  { name: 'podid-migrate plan --help', args: [bin, 'plan', '--help'] },
  { name: 'podid-migrate completion bash', args: [bin, 'completion', 'bash'] },
  { name: 'podid-migrate --version', args: [bin, '--version'] },
];

/** One run: wall milliseconds from spawn to exit. */
function once(args: string[]): { ms: number } {
  const start = process.hrtime.bigint();
  const r = spawnSync(node, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${node} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Warm-up: fills the OS file cache and Node's compile cache once.
for (const c of cases) once(c.args);
const times = new Map<string, number[]>(cases.map((c) => [c.name, []]));
for (let i = 0; i < runs; i++) {
  // node -e 0 between every command, so each command has a baseline measured next to it.
  for (const c of cases.slice(1)) {
    times.get('node -e 0')!.push(once(cases[0].args).ms);
    times.get(c.name)!.push(once(c.args).ms);
  }
}
const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
const baseline = median(times.get('node -e 0')!);
console.log(`cold start, ${runs} runs each, Node ${version} (${node}), ${values.sources ? 'TypeScript sources' : 'build in dist/'}`);
console.log(`${'command'.padEnd(34)}${'median ms'.padStart(10)}${'ratio'.padStart(8)}`);
for (const c of cases) {
  const m = median(times.get(c.name)!);
  console.log(`${c.name.padEnd(34)}${m.toFixed(1).padStart(10)}${(m / baseline).toFixed(2).padStart(7)}x`);
}
