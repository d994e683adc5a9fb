import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ActionMismatchError, BlockersFoundError, CheckFailedError, DirtyJournalError, PreconditionError, StalePlanError, StepFailedError, AbortedError } from '../../src/engine/errors.ts';
import { Journal } from '../../src/engine/journal.ts';
import { Runner, type RunnerConfig } from '../../src/engine/runner.ts';
import type { StepId } from '../../src/engine/step.ts';
import { CLUSTER, fakeCluster, fakeExecutors, fakeSteps, keysOf, type FakeCluster } from './fake-steps.ts';

let dir: string;
let cluster: FakeCluster;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podid-runner-'));
  cluster = fakeCluster();
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runner(extra: Partial<RunnerConfig<FakeCluster, null>> = {}): Runner<FakeCluster, null> {
  return new Runner<FakeCluster, null>({
    steps: fakeSteps(cluster),
    executors: fakeExecutors(cluster),
    kube: cluster,
    azure: null,
    cluster: CLUSTER,
    journalPath: join(dir, 'journal.json'),
    inventoryPath: join(dir, 'inventory.yaml'),
    ...extra,
  });
}
const states = async () => {
  const doc = await Journal.read(join(dir, 'journal.json'));
  return Object.fromEntries(Object.entries(doc!.steps).map(([id, e]) => [id, e.state]));
};

describe('runner: order', () => {
  it('applies up to a step in order, each checked before the next is planned for apply', async () => {
    const result = await runner().apply({ to: 'assign' });
    expect(result.steps.map((s) => [s.stepId, s.outcome])).toEqual([['inventory', 'checked'], ['assign', 'checked']]);
    const applyCalls = cluster.calls.filter((c) => !c.startsWith('plan'));
    expect(applyCalls).toEqual(['apply:inventory', 'check:inventory', 'apply:assign', 'check:assign']);
    expect(await states()).toMatchObject({ inventory: 'checked', assign: 'checked', 'nmi-managed': 'pending' });
    expect(result.next).toBe('nmi-managed');
  });

  it('refuses --step on a step whose earlier steps are not checked, changing nothing', async () => {
    await expect(runner().apply({ step: 'mic-scale' })).rejects.toThrow(PreconditionError);
    await expect(runner().apply({ step: 'mic-scale' })).rejects.toThrow(/earlier step "inventory" is pending/);
    expect(cluster.writes).toEqual([]);
  });

  it('skips checked steps on a second run and writes nothing again', async () => {
    await runner().apply({ to: 'assign' });
    const writes = cluster.writes.length;
    const again = await runner().apply({ to: 'assign' });
    expect(again.steps.every((s) => s.outcome === 'skipped')).toBe(true);
    expect(cluster.writes.length).toBe(writes);
  });
});

describe('runner: blockers and checks', () => {
  it('stops with exit 4 and changes nothing when any step in range has a blocker', async () => {
    cluster.blockers.assign = [{ code: 'cross-namespace', subject: 'pod batch/report', message: 'binding in another namespace', fix: 'copy it' }];
    const error = await runner().apply({ to: 'mic-scale' }).catch((e) => e);
    expect(error).toBeInstanceOf(BlockersFoundError);
    expect(error.exitCode).toBe(4);
    expect(error.blockers).toHaveLength(1);
    expect(cluster.writes).toEqual([]);
    expect(cluster.calls.some((c) => c.startsWith('apply'))).toBe(false);
    expect(await states()).toMatchObject({ inventory: 'pending', assign: 'pending' });
  });

  it('marks a step failed with exit 3 when its check fails, and a later apply re-plans it', async () => {
    cluster.failCheck.add('assign');
    const error = await runner().apply({ to: 'nmi-managed' }).catch((e) => e);
    expect(error).toBeInstanceOf(CheckFailedError);
    expect(error.exitCode).toBe(3);
    expect(await states()).toMatchObject({ inventory: 'checked', assign: 'failed', 'nmi-managed': 'pending' });
    expect(cluster.calls).not.toContain('apply:nmi-managed');
    cluster.failCheck.clear();
    const writes = cluster.writes.length;
    const result = await runner().apply({ to: 'nmi-managed' });
    expect(result.steps.find((s) => s.stepId === 'assign')).toMatchObject({ outcome: 'checked', resumed: true, actions: 0 });
    // assign's keys were already set: nothing rewritten for it, only nmi-managed's two writes.
    expect(cluster.writes.slice(writes)).toEqual(keysOf('nmi-managed').map((k) => `nmi-managed:${k}=nmi-managed-done`));
  });
});

describe('runner: resume', () => {
  it('re-plans a step left applying by a crash instead of repeating its writes', async () => {
    cluster.crashAfterWrite.add('assign');
    const error = await runner().apply({ to: 'assign' }).catch((e) => e);
    expect(error).toBeInstanceOf(StepFailedError);
    // Simulate the harder case, a process killed mid-step: the journal still says applying.
    const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
    await journal.setState('assign', 'applying');
    const assignWrites = () => cluster.writes.filter((w) => w.startsWith('assign:'));
    expect(assignWrites()).toEqual(['assign:assign/a=assign-done']);
    const result = await runner().apply({ to: 'assign' });
    expect(result.steps[1]).toMatchObject({ stepId: 'assign', outcome: 'checked', resumed: true, actions: 1 });
    // The key written before the crash is not written again.
    expect(assignWrites()).toEqual(['assign:assign/a=assign-done', 'assign:assign/b=assign-done']);
    const doc = await Journal.read(join(dir, 'journal.json'));
    const records = doc!.steps.assign.actions;
    // The write that failed after the API took it is found in effect on resume and recorded done.
    expect(records.map((r) => [r.actionId, r.status])).toEqual([['key/assign/a', 'done'], ['key/assign/b', 'done']]);
    expect(doc!.events.some((e) => e.event === 'resume' && e.stepId === 'assign')).toBe(true);
  });

  it('stops at a step deadline and records the step failed, resumable', async () => {
    cluster.hang.add('inventory');
    const error = await runner({ stepTimeoutMs: 50 }).apply({ to: 'inventory' }).catch((e) => e);
    expect(error).toBeInstanceOf(AbortedError);
    expect(error.message).toMatch(/exceeded its deadline/);
    expect(await states()).toMatchObject({ inventory: 'failed' });
    cluster.hang.clear();
    await runner().apply({ to: 'inventory' });
    expect(await states()).toMatchObject({ inventory: 'checked' });
  });
});

describe('runner: rollback', () => {
  it('rolls back newest first, restores pre-states, and marks steps rolled-back', async () => {
    cluster.values.set('inventory/a', 'hand-made');
    await runner().apply({ to: 'nmi-managed' });
    cluster.calls.length = 0;
    const result = await runner().rollback({ all: true });
    const rollbacks = cluster.calls.filter((c) => c.startsWith('rollback'));
    // One undo per recorded action (two keys per step), newest step first.
    expect(rollbacks).toEqual(['rollback:nmi-managed', 'rollback:nmi-managed', 'rollback:assign', 'rollback:assign', 'rollback:inventory', 'rollback:inventory']);
    expect(result.steps.map((s) => s.outcome)).toEqual(['skipped', 'skipped', 'skipped', 'skipped', 'rolled-back', 'rolled-back', 'rolled-back']);
    expect(Object.fromEntries(cluster.values)).toEqual({ 'inventory/a': 'hand-made' });
    expect(await states()).toMatchObject({ inventory: 'rolled-back', assign: 'rolled-back', 'nmi-managed': 'rolled-back' });
  });

  it('refuses to roll back one step while a later one is still applied', async () => {
    await runner().apply({ to: 'assign' });
    await expect(runner().rollback({ step: 'inventory' })).rejects.toThrow(/later step "assign" is checked/);
  });

  it('a step whose rollback failed stays rolling-back and apply refuses to continue', async () => {
    await runner().apply({ to: 'inventory' });
    cluster.failUndo.add('inventory');
    await expect(runner().rollback({ to: 'inventory' })).rejects.toThrow(StepFailedError);
    expect(await states()).toMatchObject({ inventory: 'rolling-back' });
    cluster.failUndo.clear();
    await expect(runner().apply({})).rejects.toThrow(DirtyJournalError);
    await runner().rollback({ step: 'inventory' });
    expect(await states()).toMatchObject({ inventory: 'rolled-back' });
    // Re-applying after a rollback starts a new cycle; old records are archived.
    await runner().apply({ to: 'inventory' });
    const doc = await Journal.read(join(dir, 'journal.json'));
    expect(doc!.steps.inventory.archivedActions).toHaveLength(2);
    expect(doc!.steps.inventory.actions).toHaveLength(2);
  });
});

describe('runner: saved plans and dry-run', () => {
  it('applies a saved plan that still matches and refuses one that went stale', async () => {
    const saved = await runner().plan();
    expect(saved.steps.map((s) => s.status)).toEqual(['planned', 'tentative', 'tentative', 'tentative', 'tentative', 'tentative', 'tentative']);
    expect(saved.totals).toMatchObject({ add: 14, change: 0, remove: 0, blockers: 0, kubeWrites: 14 });
    await runner().apply({ to: 'inventory', savedPlan: saved });
    cluster.values.set('assign/a', 'changed-by-someone');
    const error = await runner().apply({ to: 'assign', savedPlan: saved }).catch((e) => e);
    expect(error).toBeInstanceOf(StalePlanError);
    expect(cluster.writes.filter((w) => w.startsWith('assign:'))).toEqual([]);
  });

  it('dry-run runs plan and apply with no journal and no lock, and skips checks', async () => {
    const seen: string[] = [];
    const steps = fakeSteps(cluster);
    for (const step of steps) {
      step.afterActions = async (ctx, plan) => {
        seen.push(`${step.id}:${ctx.dryRun}`);
        return { summary: `${plan.actions.length} key(s) would be set` };
      };
    }
    // A dry-run gateway writes nothing: here, a throw-away copy of the cluster.
    const dryCluster = fakeCluster();
    const result = await runner({ steps, dryRun: 'server', kube: dryCluster }).apply({ to: 'assign' });
    expect(result.steps.map((s) => s.outcome)).toEqual(['dry-run', 'dry-run']);
    expect(seen).toEqual(['inventory:server', 'assign:server']);
    expect(cluster.values.size).toBe(0);
    expect(cluster.calls.filter((c) => c.startsWith('check'))).toEqual([]);
    await expect(stat(join(dir, 'journal.json'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(dir, 'journal.json.lock'))).rejects.toThrow(/ENOENT/);
  });

  it('plan marks later steps unavailable when they need an earlier result', async () => {
    const steps = fakeSteps(cluster);
    steps[2].plan = async () => {
      throw new PreconditionError('the inventory file does not exist yet', '');
    };
    const plan = await runner({ steps }).plan();
    expect(plan.steps[2]).toMatchObject({ stepId: 'nmi-managed', status: 'unavailable' });
    expect(plan.steps[2].reason).toMatch(/depends on step assign: the inventory file does not exist yet/);
    const text = await readFile(join(dir, 'journal.json')).catch(() => 'none');
    expect(text).toBe('none');
  });
});

describe('runner: inventory preview within one plan run', () => {
  it("hands the inventory step's preview to later plans, never to apply, and keeps it out of the plan output", async () => {
    const steps = fakeSteps(cluster);
    const seen: Record<string, unknown> = {};
    const basePlan = steps[0].plan;
    steps[0].plan = async (ctx) => ({ ...(await basePlan(ctx)), inventoryPreview: { identities: ['api-id'] } });
    for (const i of [1, 2]) {
      const inner = steps[i].plan;
      steps[i].plan = async (ctx) => {
        seen[`${steps[i].id}:${ctx.dryRun}`] = ctx.inventory;
        if (ctx.inventory === undefined) throw new PreconditionError('there is no inventory yet', '');
        return inner(ctx);
      };
    }
    const plan = await runner({ steps }).plan();
    expect(plan.steps.slice(0, 3).map((s) => s.status)).toEqual(['planned', 'tentative', 'tentative']);
    expect(seen).toEqual({ 'assign:none': { identities: ['api-id'] }, 'nmi-managed:none': { identities: ['api-id'] } });
    expect(JSON.stringify(plan)).not.toContain('inventoryPreview');
    expect(plan.inventory).toBeUndefined();

    // apply plans each step against the file only: without one, assign still depends on inventory.
    for (const k of Object.keys(seen)) delete seen[k];
    await runner({ steps }).apply({ step: 'inventory' });
    await expect(runner({ steps }).apply({ step: 'assign' })).rejects.toThrow(/no inventory yet/);
    expect(seen['assign:none']).toBeUndefined();
  });
});

describe('runner: registry', () => {
  it('rejects a registry out of runbook order', () => {
    const steps = fakeSteps(cluster, ['assign', 'inventory'] as StepId[]);
    expect(() => runner({ steps })).toThrow(/runbook order/);
  });
});

describe('runner: actions are executed and reconciled by the runner', () => {
  it('resolves an intent a killed run left before re-planning: a write that took effect is recorded done, not repeated', async () => {
    await runner().apply({ to: 'inventory' });
    // A run killed between assign's first write and its done record: the API took the write, the journal says intent.
    cluster.values.set('assign/a', 'assign-done');
    const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
    await journal.forStep('assign').runAction({ id: 'key/assign/a', kind: 'set-key', op: '+', target: 'key assign/a', summary: 'set', api: 'kube', details: { stepId: 'assign', key: 'assign/a', value: 'assign-done' } }, { key: 'assign/a', previous: null }, async () => {
      throw Object.assign(new Error('killed'), { leaveIntent: true });
    }).catch(() => {});
    await journal.updateStep('assign', (e) => {
      e.state = 'applying';
      const last = e.actions.at(-1)!;
      last.status = 'intent';
      delete last.doneAt;
      delete last.error;
    });
    cluster.calls.length = 0;
    const result = await runner().apply({ to: 'assign' });
    expect(result.steps[1]).toMatchObject({ outcome: 'checked', resumed: true, actions: 1 });
    expect(cluster.calls.filter((c) => c.startsWith('reconcile') || c.startsWith('apply') || c.startsWith('plan:assign'))).toEqual(['plan:assign', 'reconcile:assign:assign/a', 'plan:assign', 'apply:assign']);
    expect(cluster.writes.filter((w) => w.startsWith('assign:'))).toEqual(['assign:assign/b=assign-done']);
    const doc = await Journal.read(join(dir, 'journal.json'));
    expect(doc!.steps.assign.actions.map((r) => [r.actionId, r.status])).toEqual([['key/assign/a', 'done'], ['key/assign/b', 'done']]);
    // Rollback undoes both, newest first, from the first pre-state.
    await runner().rollback({ step: 'assign' });
    expect(cluster.values.has('assign/a')).toBe(false);
    expect(cluster.values.has('assign/b')).toBe(false);
  });

  it('an intent whose write did not take effect is recorded failed and the action is planned again', async () => {
    await runner().apply({ to: 'inventory' });
    const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
    await journal.updateStep('assign', (e) => {
      e.state = 'applying';
      e.actions.push({ actionId: 'key/assign/a', kind: 'set-key', details: { stepId: 'assign', key: 'assign/a', value: 'assign-done' }, op: '+', target: 'key assign/a', summary: 'set', api: 'kube', status: 'intent', preState: { key: 'assign/a', previous: null }, intentAt: new Date().toISOString() });
    });
    await runner().apply({ to: 'assign' });
    const doc = await Journal.read(join(dir, 'journal.json'));
    expect(doc!.steps.assign.actions.map((r) => [r.actionId, r.status])).toEqual([['key/assign/a', 'failed'], ['key/assign/a', 'done'], ['key/assign/b', 'done']]);
    expect(doc!.steps.assign.actions[0].error).toMatch(/not in effect when resumed/);
  });

  it('refuses, as a typed error, a step whose done records do not match its plan', async () => {
    const steps = fakeSteps(cluster);
    const executors = fakeExecutors(cluster);
    // An executor that (wrongly) journals a second action of its own.
    const inner = executors['set-key'];
    const sneaky = { ...inner, do: async (ctx: Parameters<typeof inner.do>[0], input: Parameters<typeof inner.do>[1]) => {
      await ctx.journal.runAction({ id: 'extra', op: '~', target: 'x', summary: 'x', api: 'kube' }, undefined, async () => 1);
      return inner.do(ctx, input);
    } };
    const error = await runner({ steps, executors: { 'set-key': sneaky } }).apply({ to: 'inventory' }).catch((e) => e);
    expect(error).toBeInstanceOf(ActionMismatchError);
    expect(error.unplanned).toEqual(['extra']);
    expect(await states()).toMatchObject({ inventory: 'failed' });
  });

  it('an unknown action kind changes nothing', async () => {
    const steps = fakeSteps(cluster);
    const plan = steps[0].plan;
    steps[0].plan = async (ctx) => {
      const p = await plan(ctx);
      return { ...p, actions: p.actions.map((a, i) => (i === 1 ? { ...a, kind: 'teleport' } : a)) };
    };
    await expect(runner({ steps }).apply({ to: 'inventory' })).rejects.toThrow(/kind "teleport"/);
    expect(cluster.writes).toEqual([]);
  });

  it('a check fails while an action is left in intent', async () => {
    await runner().apply({ to: 'inventory' });
    const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
    await journal.updateStep('inventory', (e) => {
      e.state = 'applied';
      e.actions.at(-1)!.status = 'intent';
    });
    const error = await runner().apply({ to: 'inventory' }).catch((e) => e);
    expect(error).toBeInstanceOf(CheckFailedError);
    expect(error.message).toMatch(/still recorded as intent/);
  });

  it('plan output gives each step its writes', async () => {
    const plan = await runner().plan();
    expect(plan.steps[0].writes).toEqual({ kube: 2, arm: 0 });
    expect(plan.totals.kubeWrites).toBe(14);
  });
});
