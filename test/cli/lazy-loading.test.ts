/**
 * Start-up cost: help, version and completion must not load any command's work. A child Node
 * records every module it resolves (module.registerHooks) while `main()` answers; only
 * commander may come from node_modules, none of the engine runner, gateways, steps, sandbox,
 * renderers or progress view may load, nor built-ins such as crypto, readline or https.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_SANDBOX_DIR } from '../../src/sandbox/lifecycle.ts';
import { SANDBOX_DIR } from '../../src/cli/commands/sandbox.ts';

const run = promisify(execFile);
const MAIN = pathToFileURL(join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts')).href;
const dir = mkdtempSync(join(tmpdir(), 'podid-lazy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const probe = join(dir, 'probe.mjs');
writeFileSync(
  probe,
  `import module from 'node:module';
const seen = new Set();
module.registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.add(r.url); return r; } });
const { main } = await import(${JSON.stringify(MAIN)});
let out = '';
const sink = { write: (s) => ((out += s), true), isTTY: false };
const code = await main(['node', 'podid-migrate', ...process.argv.slice(2)], { stdout: sink, stderr: sink, env: { CI: 'true' } });
process.stdout.write(JSON.stringify({ code, out, modules: [...seen] }));
`,
);

async function modulesFor(args: string[]): Promise<{ code: number; out: string; modules: string[] }> {
  const r = await run(process.execPath, [probe, ...args], { timeout: 30_000 });
  return JSON.parse(r.stdout);
}

// Our heavy modules, any package but commander, and built-ins that cost milliseconds to load.
const HEAVY = /\/src\/(engine\/(runner|lock|plan)|kube\/|steps\/|sandbox\/|cli\/(render|progress|context)\.ts|azure\/(client|gateway|index)\.ts)|\/node_modules\/(?!commander\/)|^node:(crypto|readline|https?|http2|tls|net|zlib|worker_threads)/;

describe('cold start loads only what the answer needs', () => {
  for (const args of [['--help'], ['plan', '--help'], ['apply', '--help'], ['sandbox', 'up', '--help'], ['--version'], ['completion', 'bash'], ['__complete', 'apply', '--st']]) {
    it(`podid-migrate ${args.join(' ')}`, async () => {
      const r = await modulesFor(args);
      expect(r.code).toBe(0);
      expect(r.out.length).toBeGreaterThan(0);
      const heavy = r.modules.filter((url) => HEAVY.test(url));
      expect(heavy).toEqual([]);
      // The probe itself works: commander was seen.
      expect(r.modules.some((url) => url.includes('/node_modules/commander/'))).toBe(true);
    });
  }

  it('a command that runs does load its work (the probe sees lazy imports)', async () => {
    const r = await modulesFor(['status', '--journal', join(dir, 'none.json')]);
    expect(r.code).toBe(1);
    expect(r.modules.some((url) => url.endsWith('/src/cli/actions/status.ts'))).toBe(true);
    expect(r.modules.some((url) => url.endsWith('/src/cli/render.ts'))).toBe(true);
  });

  it('the sandbox directory in help is the one the sandbox uses', () => {
    expect(SANDBOX_DIR).toBe(DEFAULT_SANDBOX_DIR);
  });
});
