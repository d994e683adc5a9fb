/**
 * `--runbook` through the CLI (fake steps of each runbook behind `main()`): the journal per
 * cluster and runbook, documents that name their runbook, step flags checked against the chosen
 * runbook, and commands of one runbook refusing the other's journal.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakeCluster } from '../engine/fake-steps.ts';
import { expectValidDocument } from '../helpers/schemas.ts';
import { runCli } from './cli-harness.ts';

describe('--runbook', () => {
  it('keeps a journal per runbook, names the runbook in every document, and refuses to mix them', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'podid-runbook-cli-'));
    const cluster = fakeCluster();
    const run = (args: string[], env: Record<string, string> = {}) => runCli(args, { cluster, cwd, env });

    const plan = await run(['--runbook', 'workload-identity', 'plan', '-o', 'json']);
    expect(plan.code, plan.stderr).toBe(0);
    const planDoc = JSON.parse(plan.stdout);
    expectValidDocument('plan', planDoc);
    expect(planDoc.runbook).toBe('workload-identity');
    expect(planDoc.steps.map((s: { stepId: string }) => s.stepId)).toEqual(['wi-preflight', 'wi-enable', 'wi-federate', 'wi-serviceaccounts', 'wi-workloads', 'wi-test', 'wi-remove-pod-identity']);

    const apply = await run(['--runbook', 'workload-identity', 'apply', '--to', 'wi-enable', '--yes', '-o', 'json']);
    expect(apply.code, apply.stderr).toBe(0);
    const applyDoc = JSON.parse(apply.stdout);
    expectValidDocument('apply', applyDoc);
    expect(applyDoc).toMatchObject({ runbook: 'workload-identity', journalPath: join(cwd, '.podid-migrate', 'prod-weu.workload-identity.json'), next: 'wi-federate' });
    expect(existsSync(join(cwd, '.podid-migrate', 'prod-weu.json'))).toBe(false);

    // The environment variable picks the runbook too; the table names it and the next command spells it out.
    const status = await run(['status'], { PODID_MIGRATE_RUNBOOK: 'workload-identity' });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain('runbook workload-identity');
    expect(status.stdout).toContain('Next: podid-migrate --runbook workload-identity apply --step wi-federate');
    const statusJson = await run(['--runbook', 'workload-identity', 'status', '-o', 'json']);
    expectValidDocument('status', JSON.parse(statusJson.stdout));
    expect(JSON.parse(statusJson.stdout).runbook).toBe('workload-identity');

    // The managed-mode runbook has no journal here; a step of the other runbook is named as such.
    const managed = await run(['status']);
    expect(managed.code).toBe(1);
    expect(managed.stderr).toMatch(/no journal at .*prod-weu\.json/);
    const wrongStep = await run(['apply', '--step', 'wi-federate', '--yes']);
    expect(wrongStep.code).toBe(1);
    expect(wrongStep.stderr).toContain('"wi-federate" is a step of the workload-identity runbook: add --runbook workload-identity');
    const mixed = await run(['--journal', join(cwd, '.podid-migrate', 'prod-weu.workload-identity.json'), 'apply', '--yes']);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toMatch(/records the workload-identity runbook, not managed-mode; it was not changed/);
    const drift = await run(['--runbook', 'workload-identity', 'drift']);
    expect(drift.code).toBe(1);
    expect(drift.stderr).toContain('drift checks a cluster migrated by the managed-mode runbook, not workload-identity');

    const rollback = await run(['--runbook', 'workload-identity', 'rollback', '--all', '--yes', '-o', 'json']);
    expect(rollback.code, rollback.stderr).toBe(0);
    const rollbackDoc = JSON.parse(rollback.stdout);
    expectValidDocument('rollback', rollbackDoc);
    expect(rollbackDoc.runbook).toBe('workload-identity');
    const history = await run(['--runbook', 'workload-identity', 'history', '-o', 'json']);
    const historyDoc = JSON.parse(history.stdout);
    expectValidDocument('history', historyDoc);
    expect(historyDoc.runbook).toBe('workload-identity');
  });
});
