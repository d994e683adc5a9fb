import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { actionBatches, executeActions, PARALLEL_ACTIONS, undoActions } from '../../src/engine/actions.ts';
import { Journal } from '../../src/engine/journal.ts';
import type { ActionExecutor, PlannedAction, StepContext } from '../../src/engine/step.ts';
import { CLUSTER } from './fake-steps.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podid-actions-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function act(id: string, group?: string): PlannedAction {
  return { id, kind: 'wait', op: '~', target: id, summary: id, api: 'kube', writes: { kube: 1, arm: 0 }, details: { id }, ...(group ? { parallelGroup: group } : {}) };
}

async function ctx(): Promise<StepContext<null, null>> {
  const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
  return { kube: null, azure: null, journal: journal.forStep('assign'), inventory: undefined, inventoryPath: '', options: {}, dryRun: 'none', signal: new AbortController().signal, deadline: Date.now() + 10_000, progress: () => {}, log: { info: () => {}, warn: () => {}, debug: () => {} } };
}

describe('executing actions', () => {
  it('runs consecutive actions of one parallel group concurrently (bounded), everything else alone and in order', async () => {
    expect(actionBatches([act('a'), act('b', 'g'), act('c', 'g'), act('d'), act('e', 'g')]).map((b) => b.map((a) => a.id))).toEqual([['a'], ['b', 'c'], ['d'], ['e']]);
    let running = 0;
    let most = 0;
    const order: string[] = [];
    const wait: ActionExecutor<null, null, { id: string }> = {
      kind: 'wait',
      capture: async () => undefined,
      do: async (_c, { action }) => {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        order.push(action.details.id);
      },
      reconcile: async () => ({ applied: false, reason: 'n/a' }),
      undo: async (_c, { action }) => `undid ${action.details.id}`,
      verifyUndo: async () => ({ ok: true, evidence: [], failures: [] }),
    };
    const actions = [act('first'), ...Array.from({ length: 6 }, (_, i) => act(`vmss-${i}`, 'vmss')), act('last')];
    const c = await ctx();
    await executeActions(c, { stepId: 'assign', actions, blockers: [], notes: [] }, { wait });
    expect(most).toBe(PARALLEL_ACTIONS);
    expect(order[0]).toBe('first');
    expect(order.at(-1)).toBe('last');
    expect(c.journal.records().map((r) => r.status)).toEqual(Array(8).fill('done'));
    // Rollback: newest record first.
    expect((await undoActions(c, { wait }))[0]).toBe('undid last');
  });
});
