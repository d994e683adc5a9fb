/**
 * `podid-migrate demo` through the real entry point (`bin/podid-migrate` under Node 24, as a
 * child process): starts the embedded sandbox, runs every step and prints the report; exit 0.
 * It runs at 40x here to keep the suite fast; at the default 15x it takes about 65 s.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'podid-migrate');

describe('podid-migrate demo', () => {
  it('migrates the default scenario with churn and reports every step checked', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'podid-demo-test-'));
    const started = Date.now();
    const r = await execa(process.execPath, [BIN, 'demo', '--time-scale', '40', '--dir', join(cwd, 'demo')], { cwd, env: { CI: 'true' }, reject: false, timeout: 170_000 });
    const seconds = (Date.now() - started) / 1000;
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
    // The plan, then the report: every step checked, with calls and time.
    expect(r.stdout).toMatch(/Step 5 drain +~ node aks-batch-/);
    for (const step of ['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup']) expect(r.stdout).toMatch(new RegExp(`^${step} +checked +\\S+`, 'm'));
    // One case per service and pool it may run on (reporting/exporter may run on two pools: 14), all passed.
    expect(r.stdout).toMatch(/^test +checked .* 14\/14 test cases passed on 5 fresh nodes$/m);
    expect(r.stdout).toContain('no failure caused by the migration outside NMI restart windows');
    // Progress went to stderr, as with apply.
    expect(r.stderr).toMatch(/\[COMPLETED\] .* cleanup/);
    expect(r.stdout + r.stderr).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
    // The stopped sandbox left no credential behind; the journal and the report stay.
    expect(existsSync(join(cwd, 'demo', 'sandbox', 'kubeconfig'))).toBe(false);
    expect(existsSync(join(cwd, 'demo', 'sandbox', 'arm-token'))).toBe(false);
    expect(existsSync(join(cwd, 'demo', 'journal.json'))).toBe(true);
    console.log(`figures: demo at 40x took ${seconds.toFixed(1)} s`);
  }, 180_000);
});
