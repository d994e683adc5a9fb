/**
 * Runbooks as an engine notion: each runbook has its own step ids, its own journal per
 * cluster (default path and recorded runbook id), and the runner, saved plans and flags refuse
 * to mix them. The managed-mode runbook stays what it was (path, journals without a runbook id).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serialChains } from '../../src/engine/actions.ts';
import { RunbookMismatchError, UsageError } from '../../src/engine/errors.ts';
import { savedPlanProblems } from '../../src/engine/inputs.ts';
import { Journal, defaultJournalPath } from '../../src/engine/journal.ts';
import { acquireLock } from '../../src/engine/lock.ts';
import { Runner } from '../../src/engine/runner.ts';
import { STEP_IDS, WORKLOAD_IDENTITY_STEP_IDS, commandPrefix, isStepId, stepIndex, type PlannedAction } from '../../src/engine/step.ts';
import { stepFlag, validateGlobalOptions } from '../../src/cli/options.ts';
import { CLUSTER, fakeCluster, fakeExecutors, fakeSteps } from './fake-steps.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'podid-runbooks-'));

function runner(path: string, ids: readonly (typeof STEP_IDS[number] | typeof WORKLOAD_IDENTITY_STEP_IDS[number])[], runbook?: 'managed-mode' | 'workload-identity') {
  const cluster = fakeCluster();
  return new Runner({ ...(runbook ? { runbook } : {}), steps: fakeSteps(cluster, ids), executors: fakeExecutors(cluster), kube: cluster, azure: null, cluster: CLUSTER, journalPath: path, inventoryPath: join(path, '..', 'inventory.yaml'), loadInventory: async () => undefined });
}

describe('step ids and paths', () => {
  it('knows each runbook\'s ids, positions and journal path; the default runbook keeps its path', () => {
    expect(isStepId('wi-federate', 'workload-identity')).toBe(true);
    expect(isStepId('wi-federate', 'managed-mode')).toBe(false);
    expect(isStepId('wi-federate')).toBe(true);
    expect(stepIndex('wi-enable')).toBe(1);
    expect(stepIndex('assign')).toBe(1);
    expect(defaultJournalPath('prod-weu', '/w')).toBe('/w/.podid-migrate/prod-weu.json');
    expect(defaultJournalPath('prod-weu', '/w', 'workload-identity')).toBe('/w/.podid-migrate/prod-weu.workload-identity.json');
    expect(commandPrefix('workload-identity')).toBe('podid-migrate --runbook workload-identity');
  });

  it('validates --runbook and PODID_MIGRATE_RUNBOOK, and step flags against the chosen runbook', () => {
    expect(validateGlobalOptions({}, {}, '/w').runbook).toBe('managed-mode');
    expect(validateGlobalOptions({}, { PODID_MIGRATE_RUNBOOK: 'workload-identity' }, '/w').runbook).toBe('workload-identity');
    expect(validateGlobalOptions({ runbook: 'managed-mode' }, { PODID_MIGRATE_RUNBOOK: 'workload-identity' }, '/w').runbook).toBe('managed-mode');
    expect(() => validateGlobalOptions({}, { PODID_MIGRATE_RUNBOOK: 'blue-green' }, '/w')).toThrow(/PODID_MIGRATE_RUNBOOK: "blue-green" is not a runbook/);
    expect(stepFlag('--step', 'wi-enable', 'workload-identity')).toBe('wi-enable');
    const e = (() => {
      try {
        stepFlag('--step', 'wi-enable');
      } catch (error) {
        return error as UsageError;
      }
    })()!;
    expect(e).toBeInstanceOf(UsageError);
    expect(e.hint).toContain('"wi-enable" is a step of the workload-identity runbook: add --runbook workload-identity');
  });
});

describe('journal per runbook', () => {
  it('records its runbook and steps, and refuses to be opened for the other runbook', async () => {
    const path = join(dir(), 'j.json');
    const wi = await runner(path, WORKLOAD_IDENTITY_STEP_IDS.slice(0, 2)).apply();
    expect(wi.runbook).toBe('workload-identity');
    const doc = (await Journal.read(path))!;
    expect(doc.runbook).toBe('workload-identity');
    expect(Object.keys(doc.steps)).toEqual([...WORKLOAD_IDENTITY_STEP_IDS]);
    expect(doc.steps['wi-enable'].state).toBe('checked');
    await expect(Journal.open(path, CLUSTER)).rejects.toBeInstanceOf(RunbookMismatchError);
    await expect(runner(path, STEP_IDS.slice(0, 1)).apply()).rejects.toThrow(/records the workload-identity runbook, not managed-mode; it was not changed/);
    expect((await Journal.read(path))!.updatedAt).toBe(doc.updatedAt);
  });

  it('reads a journal written before runbooks existed as managed-mode', async () => {
    const path = join(dir(), 'old.json');
    await runner(path, STEP_IDS.slice(0, 1)).apply();
    const text = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    expect(text.runbook).toBe('managed-mode');
    delete text.runbook;
    writeFileSync(path, JSON.stringify(text));
    expect((await Journal.open(path, CLUSTER)).runbook).toBe('managed-mode');
    await expect(Journal.open(path, CLUSTER, { runbook: 'workload-identity' })).rejects.toThrow(/records the managed-mode runbook, not workload-identity/);
  });
});

describe('lock hints', () => {
  it('spell force-unlock with the runbook whose journal is locked', async () => {
    const path = join(dir(), 'j.json');
    const held = await acquireLock(path, 'apply', commandPrefix('workload-identity'));
    try {
      const e = await acquireLock(path, 'apply', commandPrefix('workload-identity')).then(
        () => undefined,
        (error: Error & { hint: string }) => error,
      );
      expect(e?.hint).toMatch(/If that run is gone: podid-migrate --runbook workload-identity force-unlock [0-9a-f-]{36}/);
    } finally {
      await held.release();
    }
  });
});

describe('runner and saved plans', () => {
  it('refuses a registry that mixes runbooks, and a saved plan of the other runbook', async () => {
    expect(() => runner(join(dir(), 'j.json'), ['inventory', 'wi-enable'])).toThrow(/"wi-enable" is not a step of the managed-mode runbook/);
    const d = dir();
    const saved = await runner(join(d, 'mm.json'), STEP_IDS.slice(0, 2)).plan();
    expect(saved.runbook).toBe('managed-mode');
    await expect(runner(join(d, 'wi.json'), WORKLOAD_IDENTITY_STEP_IDS.slice(0, 2)).apply({ savedPlan: saved })).rejects.toBeInstanceOf(RunbookMismatchError);
  });

  it('validates a saved plan\'s step ids against its own runbook', async () => {
    const plan = await runner(join(dir(), 'j.json'), WORKLOAD_IDENTITY_STEP_IDS.slice(0, 2)).plan();
    const json = JSON.parse(JSON.stringify(plan)) as Record<string, unknown>;
    expect(savedPlanProblems(json)).toEqual([]);
    delete json.runbook;
    expect(savedPlanProblems(json)).toEqual([
      'steps[0].stepId: "wi-preflight" is not a step of the managed-mode runbook (inventory, assign, nmi-managed, mic-scale, drain, test, cleanup)',
      'steps[1].stepId: "wi-enable" is not a step of the managed-mode runbook (inventory, assign, nmi-managed, mic-scale, drain, test, cleanup)',
    ]);
  });
});

describe('serialKey', () => {
  it('chains the actions of one key in plan order and leaves the others alone', () => {
    const a = (id: string, serialKey?: string): PlannedAction => ({ id, kind: 'k', op: '+', target: id, summary: '', api: 'arm', writes: { kube: 0, arm: 1 }, parallelGroup: 'g', ...(serialKey ? { serialKey } : {}), details: {} });
    const chains = serialChains([a('1', 'x'), a('2', 'y'), a('3', 'x'), a('4'), a('5', 'y')]);
    expect(chains.map((c) => c.map((x) => x.id))).toEqual([['1', '3'], ['2', '5'], ['4']]);
  });
});
