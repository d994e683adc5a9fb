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
import { CLUSTER, fakeCluster, fakeSteps, type FakeCluster } from './fake-steps.ts';

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
      apply: (ctx: Parameters<typeof s.apply>[0], p: Parameters<typeof s.apply>[1]) => (seen.push(`apply:${s.id}:${phase.getStore()}`), s.apply(ctx, p)),
      check: (ctx: Parameters<typeof s.check>[0]) => (seen.push(`check:${s.id}:${phase.getStore()}`), s.check(ctx)),
      rollback: (ctx: Parameters<typeof s.rollback>[0]) => (seen.push(`rollback:${s.id}:${phase.getStore()}`), s.rollback(ctx)),
    }));
    const runner = new Runner<FakeCluster, null>({
      steps,
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
      'apply:inventory:apply',
      'check:inventory:check',
      'rollback:inventory:rollback',
    ]);
  });
});
