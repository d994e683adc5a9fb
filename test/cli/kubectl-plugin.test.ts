/**
 * `kubectl podid-migrate`: stock kubectl finds `kubectl-podid_migrate` on PATH and runs it;
 * help and error hints name the tool the way it was invoked; kubectl's own completion
 * (`kubectl __complete`, what its shell scripts call) completes the plugin's commands, flags
 * and values through `kubectl_complete-podid_migrate`.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { VERSION } from '../../src/cli/main.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
// bin/ first (the plugin), then the Node running the tests (the plugin's `#!/usr/bin/env node`).
const PATH = [join(ROOT, 'bin'), dirname(process.execPath), process.env.PATH].join(delimiter);
const env = { ...process.env, PATH, CI: 'true' };

async function kubectl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run('kubectl', args, { env, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

describe('kubectl plugin', () => {
  it('kubectl plugin list finds it, and kubectl podid-migrate --help names itself so', async () => {
    const list = await kubectl('plugin', 'list');
    expect(list.stdout).toContain(join(ROOT, 'bin', 'kubectl-podid_migrate'));
    const help = await kubectl('podid-migrate', '--help');
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: kubectl podid-migrate \[options\] \[command\]$/m);
    const plan = await kubectl('podid-migrate', 'plan', '--help');
    expect(plan.stdout).toMatch(/^Usage: kubectl podid-migrate plan \[options\]$/m);
  });

  it('a usage error points at the help of the name typed; --version is the package version', async () => {
    const bad = await kubectl('podid-migrate', 'plan', '--bogus');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("error: unknown option '--bogus'");
    expect(bad.stderr).toContain('Run `kubectl podid-migrate plan --help` for the options.');
    const version = await kubectl('podid-migrate', '--version');
    expect(version.stdout.trim()).toBe(VERSION);
    expect(VERSION).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  });

  it('kubectl completes the plugin: commands, sub-commands, flags, step ids, -o values; files for path flags', async () => {
    /** Candidates and directive kubectl prints for `kubectl podid-migrate <words>`. */
    const complete = async (...words: string[]) => {
      const r = await kubectl('__complete', 'podid-migrate', ...words);
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trimEnd().split('\n');
      return { candidates: lines.slice(0, -1), directive: lines.at(-1) };
    };
    expect(await complete('ap')).toEqual({ candidates: ['apply'], directive: ':4' });
    expect((await complete('')).candidates).toEqual(['plan', 'apply', 'rollback', 'status', 'history', 'force-unlock', 'drift', 'sandbox', 'demo', 'completion', 'help']);
    expect((await complete('apply', '--step', '')).candidates).toEqual(['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup']);
    expect((await complete('-o', 'js')).candidates).toEqual(['json']);
    expect((await complete('sandbox', '')).candidates).toEqual(['up', 'down', 'status', 'aks']);
    expect((await complete('rollback', '--a')).candidates).toEqual(['--all', '--aks-id']);
    expect(await complete('plan', '--out', '')).toEqual({ candidates: [], directive: ':0' });
  });
});
