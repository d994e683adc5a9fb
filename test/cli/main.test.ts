import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fakeCluster, type FakeCluster } from '../engine/fake-steps.ts';
import { runCli } from './cli-harness.ts';

const ROOT = join(import.meta.dirname, '../..');
const NODE24 = join(ROOT, 'node_modules/.bin/node');
let cwd: string;
let cluster: FakeCluster;
beforeEach(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'podid-cli-'));
  cluster = fakeCluster();
});
afterEach(async () => {
  await rm(cwd, { recursive: true, force: true });
});
const run = (...args: string[]) => runCli(args, { cluster, cwd });
const journalFile = () => join(cwd, '.podid-migrate', 'prod-weu.json');

describe('plan', () => {
  it('prints Terraform-style lines and the summary; exit 0, or 2 with --detailed-exitcode', async () => {
    const plain = await run('plan');
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^Step 1 inventory\s+\+ key inventory\/a  set to inventory-done$/m);
    expect(plain.stdout).toContain('Plan: 14 to add, 0 to change, 0 to remove. 0 blockers. Azure writes: 0.');
    expect((await run('plan', '--detailed-exitcode')).code).toBe(2);
    expect(existsSync(journalFile())).toBe(false);
  });

  it('-o json on stdout stays parseable; markdown renders a table', async () => {
    const json = await run('plan', '-o', 'json');
    const plan = JSON.parse(json.stdout);
    expect(plan.kind).toBe('podid-migrate/plan');
    expect(plan.steps).toHaveLength(7);
    const md = await run('plan', '-o', 'markdown');
    expect(md.stdout).toContain('| 1 | inventory | `+` | key inventory/a | set to inventory-done |');
  });

  it('exit 4 under --detailed-exitcode when blockers exist, with the fix printed', async () => {
    cluster.blockers.inventory = [{ code: 'nmi-too-old', subject: 'ds default/nmi', message: 'NMI v1.5.2 has no managed mode', fix: 'upgrade NMI to v1.6.0 or newer first' }];
    const result = await run('plan', '--detailed-exitcode');
    expect(result.code).toBe(4);
    expect(result.stdout).toContain('Blockers (fix these first):');
    expect(result.stdout).toContain('Fix: upgrade NMI to v1.6.0 or newer first');
  });
});

describe('apply and exit codes', () => {
  it('applies with --yes, progress on stderr, JSON result on stdout, then status -o json', async () => {
    const result = await run('apply', '--to', 'assign', '--yes', '-o', 'json');
    expect(result.code).toBe(0);
    const data = JSON.parse(result.stdout);
    expect(data.steps.map((s: { outcome: string }) => s.outcome)).toEqual(['checked', 'checked']);
    expect(result.stderr).toMatch(/inventory/);
    const status = await run('status', '-o', 'json');
    const doc = JSON.parse(status.stdout);
    expect(doc.steps.assign.state).toBe('checked');
    expect(doc.steps['nmi-managed'].state).toBe('pending');
    const table = await run('status');
    expect(table.stdout).toMatch(/^assign\s+checked\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/m);
    expect(table.stdout).toContain('Next: podid-migrate apply --step nmi-managed');
    const yaml = parseYaml((await run('history', '-o', 'yaml')).stdout);
    expect(yaml.events.some((e: { event: string }) => e.event === 'step-checked')).toBe(true);
  });

  it('exit 4 on blockers, nothing changed, message and fix on stderr', async () => {
    cluster.blockers.assign = [{ code: 'cross-namespace', subject: 'pod batch/report-7d9f', message: 'binding "reports" is in namespace "shared"', fix: 'let inventory copy it into "batch"' }];
    const result = await run('apply', '--yes');
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('Error: 1 blocker found; nothing was changed.');
    expect(cluster.writes).toEqual([]);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('exit 3 when a check fails, and status shows the failure', async () => {
    cluster.failCheck.add('inventory');
    const result = await run('apply', '--to', 'inventory', '--yes');
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/step "inventory" was applied but its check failed/);
    expect((await run('status')).stdout).toMatch(/^inventory\s+failed/m);
  });

  it('exit 1 with the lock message when another run holds the lock', async () => {
    await run('apply', '--to', 'inventory', '--yes');
    const lock = { id: 'f00d-lock', owner: 'alice@laptop', user: 'alice', host: 'laptop', pid: 41233, operation: 'apply', createdAt: '2026-11-23T10:05:00.000Z' };
    await writeFile(`${journalFile()}.lock`, JSON.stringify(lock));
    const result = await run('apply', '--yes');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Error: another podid-migrate run holds the journal lock.');
    expect(result.stderr).toContain('Lock ID f00d-lock, apply by alice@laptop (pid 41233), since 2026-11-23 10:05:00Z.');
    expect((await run('force-unlock', 'wrong')).code).toBe(1);
    expect((await run('force-unlock', 'f00d-lock')).code).toBe(0);
    expect((await run('apply', '--yes')).code).toBe(0);
  });

  it('refuses to apply without --yes when there is no terminal, and honours a "no" on a terminal', async () => {
    const noTty = await runCli(['apply'], { cluster, cwd, env: { CI: '' } });
    expect(noTty.code).toBe(1);
    expect(noTty.stderr).toMatch(/needs confirmation.*\n.*--yes/);
    const questions: string[] = [];
    const declined = await runCli(['apply', '--to', 'inventory'], { cluster, cwd, env: { CI: '' }, interactive: true, confirm: async (q) => (questions.push(q), false) });
    expect(declined.code).toBe(0);
    expect(questions[0]).toMatch(/Apply inventory to cluster prod-weu/);
    expect(cluster.writes).toEqual([]);
  });

  it('--dry-run=server writes no journal and changes nothing it could not', async () => {
    const result = await run('apply', '--dry-run=server', '--to', 'inventory', '-o', 'json');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).dryRun).toBe('server');
    expect(existsSync(journalFile())).toBe(false);
  });

  it('refuses a stale saved plan', async () => {
    await run('plan', '--out', 'plan.json');
    cluster.values.set('inventory/a', 'edited');
    const result = await run('apply', '--plan', 'plan.json', '--yes');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/saved plan for step "inventory" no longer matches/);
  });
});

describe('flag validation', () => {
  const cases: Array<[string[], RegExp]> = [
    [['plan', '-o', 'xml'], /option '-o, --output <format>' argument 'xml' is invalid/],
    [['apply', '--step', 'drainn'], /--step: "drainn" is not a step/],
    [['apply', '--dry-run=maybe'], /--dry-run: "maybe" is not a mode/],
    [['apply', '--drain-timeout', 'soon'], /--drain-timeout: "soon" is not a duration/],
    [['apply', '--test-timeout', 'soon'], /--test-timeout: "soon" is not a duration/],
    [['apply', '--step', 'assign', '--to', 'drain'], /--step and --to cannot be combined/],
    [['rollback'], /exactly one of --step ID, --to ID or --all/],
    [['plan', '--aks-id', '/subscriptions/x/clusters/y'], /--aks-id: "\/subscriptions\/x\/clusters\/y" is not an AKS resource id/],
    [['plan', '--subscription', 'prod'], /--subscription: "prod" is not a subscription id/],
    [['plan', '--frobnicate'], /unknown option '--frobnicate'/],
  ];
  for (const [args, message] of cases) {
    it(`${args.join(' ')} -> exit 1 naming the flag, nothing connected or written`, async () => {
      const result = await run(...args);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(message);
      expect(result.connects).toBe(0);
      expect(existsSync(join(cwd, '.podid-migrate'))).toBe(false);
    });
  }
});

describe('bin/podid-migrate (Node 24, real process)', () => {
  it('exit 1 and a named flag for a bad value', async () => {
    const result = await execa(NODE24, [join(ROOT, 'bin/podid-migrate'), 'apply', '--to', 'nowhere'], { reject: false, env: { CI: 'true' } });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe('Error: --to: "nowhere" is not a step.\n  Steps, in order: inventory, assign, nmi-managed, mic-scale, drain, test, cleanup.');
    expect(result.stdout).toBe('');
  });

  it('status -o json from a journal written by apply, and exit 1 for a corrupt journal', async () => {
    await run('apply', '--to', 'inventory', '--yes');
    const ok = await execa(NODE24, [join(ROOT, 'bin/podid-migrate'), 'status', '-o', 'json', '--journal', journalFile()], { reject: false });
    expect(ok.exitCode).toBe(0);
    expect(JSON.parse(ok.stdout).steps.inventory.state).toBe('checked');
    await writeFile(journalFile(), '{"kind":');
    const bad = await execa(NODE24, [join(ROOT, 'bin/podid-migrate'), 'status', '--journal', journalFile()], { reject: false });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/^Error: journal .*prod-weu\.json is not valid JSON/);
    expect(await readFile(journalFile(), 'utf8')).toBe('{"kind":');
  });
});
