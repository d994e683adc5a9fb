/**
 * The runner's read snapshot wiring: every step call runs inside `readScope(phase, call)` with
 * its phase, so the command's snapshot can share plan and check reads and keep apply and
 * rollback reads live. The phase seen by a step is checked from inside the step call.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Runner } from '../../src/engine/runner.ts';
import type { ExecutorRegistry } from '../../src/engine/step.ts';
import { CLUSTER, fakeCluster, fakeExecutors, fakeSteps, type FakeCluster } from './fake-steps.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podid-read-scope-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('runner: readScope', () => {
  it('wraps every plan, apply, check and rollback call in its phase', async () => {
    const cluster: FakeCluster = fakeCluster();
    const phase = new AsyncLocalStorage<string>();
    const seen: string[] = [];
    // Record, from inside each step call, the phase the call runs in.
    const steps = fakeSteps(cluster, ['inventory', 'assign']).map((s) => ({
      ...s,
      plan: (ctx: Parameters<typeof s.plan>[0]) => (seen.push(`plan:${s.id}:${phase.getStore()}`), s.plan(ctx)),
      check: (ctx: Parameters<typeof s.check>[0]) => (seen.push(`check:${s.id}:${phase.getStore()}`), s.check(ctx)),
    }));
    // The runner executes and undoes the steps' actions through the executors: record their phase too.
    const base = fakeExecutors(cluster);
    const executors: ExecutorRegistry<FakeCluster, null> = Object.fromEntries(
      Object.entries(base).map(([kind, ex]) => [
        kind,
        {
          ...ex,
          do: (ctx: Parameters<typeof ex.do>[0], input: Parameters<typeof ex.do>[1]) => (seen.push(`do:${(input.action.details as { stepId: string }).stepId}:${phase.getStore()}`), ex.do(ctx, input)),
          undo: (ctx: Parameters<typeof ex.undo>[0], input: Parameters<typeof ex.undo>[1]) => (seen.push(`undo:${(input.action.details as { stepId: string }).stepId}:${phase.getStore()}`), ex.undo(ctx, input)),
        },
      ]),
    );
    const runner = new Runner<FakeCluster, null>({
      steps,
      executors,
      kube: cluster,
      azure: null,
      cluster: CLUSTER,
      journalPath: join(dir, 'journal.json'),
      inventoryPath: join(dir, 'inventory.yaml'),
      readScope: (p, call) => phase.run(p, call),
    });
    await runner.plan();
    await runner.apply({ step: 'inventory' });
    await runner.rollback({ step: 'inventory' });
    expect(seen).toEqual([
      'plan:inventory:plan',
      'plan:assign:plan',
      // apply: preflight plan, the plan just before the step runs, apply, check
      'plan:inventory:plan',
      'plan:inventory:plan',
      'do:inventory:apply',
      'do:inventory:apply',
      'check:inventory:check',
      'undo:inventory:rollback',
      'undo:inventory:rollback',
    ]);
  });
});
