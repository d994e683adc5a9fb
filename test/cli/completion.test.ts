/**
 * `completion bash|zsh|fish`: the bash script is sourced in a real bash and asked for
 * completions the way bash asks (COMP_WORDS/COMP_CWORD); zsh and fish scripts are checked for
 * the same vocabulary (and parsed by the shell when it is installed).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STEP_IDS } from '../../src/engine/step.ts';
import { fakeCluster } from '../engine/fake-steps.ts';
import { runCli } from './cli-harness.ts';

const run = promisify(execFile);
const cwd = mkdtempSync(join(tmpdir(), 'podid-completion-'));
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

const script = async (shell: string) => {
  const r = await runCli(['completion', shell], { cluster: fakeCluster(), cwd });
  expect(r.code).toBe(0);
  expect(r.stderr).toBe('');
  return r.stdout;
};

const hasShell = (name: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

describe('bash completion, sourced in bash', () => {
  let file: string;
  beforeAll(async () => {
    file = join(cwd, 'podid-migrate.bash');
    writeFileSync(file, await script('bash'));
  });

  /** What bash offers for the command line `words` (the last one is the word being completed). */
  async function complete(...words: string[]): Promise<string[]> {
    const quoted = ['podid-migrate', ...words].map((w) => `'${w.replace(/'/g, "'\\''")}'`).join(' ');
    const program = `source '${file}'\nCOMP_WORDS=(${quoted}); COMP_CWORD=${words.length}\n_podid_migrate_complete\nprintf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = await run('bash', ['--norc', '--noprofile', '-c', program], { cwd });
    return r.stdout.split('\n').filter(Boolean);
  }

  it('is registered for podid-migrate and parses', async () => {
    const r = await run('bash', ['--norc', '--noprofile', '-c', `source '${file}' && complete -p podid-migrate`]);
    expect(r.stdout).toContain('-F _podid_migrate_complete podid-migrate');
  });

  it('offers the commands, then each command\'s flags and the global ones', async () => {
    expect(await complete('')).toEqual(['plan', 'apply', 'rollback', 'status', 'history', 'force-unlock', 'drift', 'sandbox', 'demo', 'completion', 'help']);
    expect(await complete('ap')).toEqual(['apply']);
    const applyFlags = await complete('apply', '--');
    expect(applyFlags).toEqual(expect.arrayContaining(['--step', '--to', '--dry-run', '--drain-strategy', '--yes', '--kubeconfig', '--output', '--cloud']));
    expect(applyFlags).not.toContain('--detailed-exitcode');
    expect(await complete('plan', '--de')).toEqual(['--delete-emptydir-data', '--detailed-exitcode']);
    expect(await complete('sandbox', '')).toEqual(expect.arrayContaining(['up', 'down', 'status']));
    expect(await complete('sandbox', 'up', '--t')).toEqual(['--time-scale', '--timeout']);
  });

  it('completes values: step ids, -o formats, clouds, dry-run modes, shells, and skips flag values when finding the command', async () => {
    expect(await complete('apply', '--step', '')).toEqual([...STEP_IDS]);
    expect(await complete('rollback', '--to', 'n')).toEqual(['nmi-managed']);
    expect(await complete('plan', '-o', '')).toEqual(['table', 'json', 'yaml', 'markdown']);
    expect(await complete('--output', 'y')).toEqual(['yaml']);
    expect(await complete('--cloud', 'AzureU')).toEqual(['AzureUSGovernment']);
    expect(await complete('apply', '--dry-run', '')).toEqual(['client', 'server']);
    expect(await complete('completion', '')).toEqual(expect.arrayContaining(['bash', 'zsh', 'fish']));
    // `-o json` before the command: "json" is a value, not the command.
    expect(await complete('-o', 'json', 'plan', '--o')).toEqual(expect.arrayContaining(['--out', '--output']));
  });
});

describe('zsh and fish completion', () => {
  it('zsh: a compdef function with the commands, step ids and formats', async () => {
    const zsh = await script('zsh');
    expect(zsh.split('\n')[0]).toBe('#compdef podid-migrate');
    expect(zsh).toContain('compdef _podid_migrate podid-migrate');
    expect(zsh).toContain(`:value:(${STEP_IDS.join(' ')})`);
    expect(zsh).toContain(':value:(table json yaml markdown)');
    for (const c of ['plan', 'apply', 'rollback', 'sandbox', 'demo']) expect(zsh).toContain(`'${c}:`);
    if (hasShell('zsh')) await run('zsh', ['-n', '-c', zsh]);
  });

  it('fish: complete lines for commands, sandbox sub-commands and flag values', async () => {
    const fish = await script('fish');
    expect(fish).toContain("complete -c podid-migrate -n '__fish_use_subcommand' -a apply");
    expect(fish).toContain(`-l step -x -a '${STEP_IDS.join(' ')}'`);
    expect(fish).toContain("-s o -l output -x -a 'table json yaml markdown'");
    expect(fish).toMatch(/__fish_seen_subcommand_from sandbox; and not __fish_seen_subcommand_from up down status aks' -a up/);
    if (hasShell('fish')) await run('fish', ['--no-execute', '-c', fish]);
  });

  it('an unknown shell is a usage error naming the choices', async () => {
    const r = await runCli(['completion', 'powershell'], { cluster: fakeCluster(), cwd });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('"powershell" is not a supported shell');
    expect(r.stderr).toContain('bash, zsh, fish');
  });
});
