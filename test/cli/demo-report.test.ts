import { describe, expect, it } from 'vitest';
import { drainPoolsFromJournal, parseProcedure, podsEvictedFromJournal } from '../../src/cli/actions/demo.ts';
import type { ActionRecord } from '../../src/engine/step.ts';

const rec = (actionId: string, intentAt: string, doneAt: string | undefined, extra: Partial<ActionRecord> = {}): ActionRecord => ({
  actionId,
  op: '~',
  target: actionId,
  summary: '',
  api: 'kube',
  status: doneAt ? 'done' : 'intent',
  intentAt,
  ...(doneAt ? { doneAt } : {}),
  ...extra,
});

describe('demo report: drain per pool from the journal', () => {
  it('computes each pool from its first intent to its last done, with the fresh node and the evictions', () => {
    const actions = [
      rec('pool/batch/drain', '2026-12-02T10:00:00.000Z', '2026-12-02T10:00:02.500Z', { preState: { node: 'n-b0' }, result: { evicted: 3, workloads: [] } }),
      rec('pool/batch/replace', '2026-12-02T10:00:02.600Z', '2026-12-02T10:00:07.000Z'),
      rec('pool/pay/drain', '2026-12-02T10:00:07.100Z', '2026-12-02T10:00:08.000Z', { preState: { node: 'n-p1' }, result: { evicted: 2, workloads: [] } }),
      // A rolled-back attempt and an action still in flight do not count.
      rec('pool/pay/replace', '2026-12-02T09:00:00.000Z', '2026-12-02T09:30:00.000Z', { rolledBack: true }),
      rec('pool/pay/replace', '2026-12-02T10:00:08.100Z', '2026-12-02T10:00:12.100Z'),
      rec('pool/system/drain', '2026-12-02T10:00:12.200Z', undefined),
    ];
    const pools = drainPoolsFromJournal({ actions, data: { freshNodes: { batch: 'n-b0', pay: 'n-p1' } } });
    expect(pools).toEqual([
      { pool: 'batch', node: 'n-b0', seconds: 7, evicted: 3 },
      { pool: 'pay', node: 'n-p1', seconds: 5, evicted: 2 },
    ]);
    expect(drainPoolsFromJournal(undefined)).toEqual([]);
  });

  it("prefers the step's own poolTimings data when it records it", () => {
    const pools = drainPoolsFromJournal({ actions: [rec('pool/pay/drain', '2026-12-02T10:00:00Z', '2026-12-02T10:09:00Z')], data: { poolTimings: [{ pool: 'pay', node: 'n1', seconds: 4.2, evicted: 1 }, { pool: 'batch', node: 'n2', seconds: 3 }] } });
    expect(pools).toEqual([
      { pool: 'batch', node: 'n2', seconds: 3, evicted: 0 },
      { pool: 'pay', node: 'n1', seconds: 4.2, evicted: 1 },
    ]);
  });

  it('sums the evictions of every step', () => {
    const doc = {
      steps: {
        'nmi-managed': { actions: [rec('node/a/rollout', '2026-12-02T10:00:00Z', '2026-12-02T10:00:01Z', { result: { evicted: 4 } })] },
        drain: { actions: [rec('pool/pay/drain', '2026-12-02T10:00:00Z', '2026-12-02T10:00:01Z', { result: { evicted: 2 } }), rec('pool/x/drain', '2026-12-02T10:00:00Z', undefined, { result: { evicted: 9 } })] },
      },
    } as unknown as Parameters<typeof podsEvictedFromJournal>[0];
    expect(podsEvictedFromJournal(doc)).toBe(6);
  });

  it('accepts the procedures it can run and refuses drain until the strategy exists', () => {
    expect(parseProcedure(undefined)).toBe('drain');
    expect(parseProcedure('upstream')).toBe('upstream');
    expect(parseProcedure('drain')).toBe('drain');
    expect(() => parseProcedure('kubectl')).toThrow(/"kubectl" is not a procedure/);
  });
});
