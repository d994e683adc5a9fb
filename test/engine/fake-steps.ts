/**
 * Fake steps over an in-memory "cluster" (a map of key -> value) for engine and CLI tests.
 * Each step wants its own key at `want`; plan reports the delta, apply writes it through the
 * journal, check compares, rollback restores the first recorded pre-state.
 */
import type { ClusterIdentity } from '../../src/engine/journal.ts';
import { STEP_IDS, type Blocker, type Step, type StepContext, type StepId, type StepPlan } from '../../src/engine/step.ts';

export interface FakeCluster {
  values: Map<string, string>;
  /** Every mutation, in order: `${stepId}:${key}=${value}` */
  writes: string[];
  /** Call log: `${phase}:${stepId}` */
  calls: string[];
  blockers: Partial<Record<StepId, Blocker[]>>;
  failCheck: Set<StepId>;
  /** Apply throws after this step's first write (a crash after the API accepted it). */
  crashAfterWrite: Set<StepId>;
  /** apply waits on this signal-aware promise (for abort tests). */
  hang: Set<StepId>;
}

export function fakeCluster(): FakeCluster {
  return { values: new Map(), writes: [], calls: [], blockers: {}, failCheck: new Set(), crashAfterWrite: new Set(), hang: new Set() };
}

export const CLUSTER: ClusterIdentity = {
  name: 'prod-weu',
  apiServer: 'https://prod-weu-dns.hcp.westeurope.azmk8s.io:443',
  kubeSystemUid: '6f1c2d3e-0000-4000-8000-000000000001',
  subscriptionId: '1b2c3d4e-0000-4000-8000-000000000002',
  aksResourceId: '/subscriptions/1b2c3d4e-0000-4000-8000-000000000002/resourceGroups/prod/providers/Microsoft.ContainerService/managedClusters/prod-weu',
};

/** Each step owns two keys so a crash can leave it half applied. */
export function keysOf(id: StepId): string[] {
  return [`${id}/a`, `${id}/b`];
}

export function fakeSteps(cluster: FakeCluster, ids: readonly StepId[] = STEP_IDS): Step<FakeCluster, null>[] {
  return ids.map((id) => {
    const want = `${id}-done`;
    const plan = async (ctx: StepContext<FakeCluster, null>): Promise<StepPlan> => {
      cluster.calls.push(`plan:${id}`);
      const actions = keysOf(id)
        .filter((key) => ctx.kube.values.get(key) !== want)
        .map((key) => ({ id: `key/${key}`, op: (ctx.kube.values.has(key) ? '~' : '+') as '~' | '+', target: `key ${key}`, summary: `set to ${want}`, api: 'kube' as const, writes: 1, details: { key, value: want } }));
      return { stepId: id, actions, blockers: cluster.blockers[id] ?? [], notes: [] };
    };
    return {
      id,
      title: `fake ${id}`,
      plan,
      async apply(ctx, p) {
        cluster.calls.push(`apply:${id}`);
        if (cluster.hang.has(id)) {
          await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true }));
        }
        for (const action of p.actions) {
          const { key, value } = action.details as { key: string; value: string };
          await ctx.journal.runAction(action, { key, previous: ctx.kube.values.get(key) ?? null }, async () => {
            ctx.kube.values.set(key, value);
            cluster.writes.push(`${id}:${key}=${value}`);
            if (cluster.crashAfterWrite.has(id)) {
              cluster.crashAfterWrite.delete(id);
              throw new Error('connection reset after the write was accepted');
            }
            return { key, value };
          });
        }
        return { summary: `${p.actions.length} key(s) set` };
      },
      async check(ctx) {
        cluster.calls.push(`check:${id}`);
        const wrong = keysOf(id).filter((key) => ctx.kube.values.get(key) !== want);
        if (cluster.failCheck.has(id)) wrong.push(`${id}: forced failure`);
        return { ok: wrong.length === 0, evidence: keysOf(id).map((k) => `${k}=${ctx.kube.values.get(k)}`), failures: wrong };
      },
      async rollback(ctx) {
        cluster.calls.push(`rollback:${id}`);
        const records = ctx.journal.records().filter((r) => !r.rolledBack).reverse();
        const seen = new Set<string>();
        for (const record of records) {
          if (seen.has(record.actionId)) continue;
          seen.add(record.actionId);
          const pre = ctx.journal.firstPreState<{ key: string; previous: string | null }>(record.actionId)!;
          if (pre.previous === null) ctx.kube.values.delete(pre.key);
          else ctx.kube.values.set(pre.key, pre.previous);
          cluster.writes.push(`${id}:${pre.key}=${pre.previous}`);
          await ctx.journal.markRolledBack(record.actionId);
        }
        return { summary: `${seen.size} key(s) restored` };
      },
      async verifyRollback(ctx) {
        const left = keysOf(id).filter((key) => ctx.kube.values.get(key) === want);
        return { ok: left.length === 0, evidence: [`${id}: keys restored`], failures: left };
      },
    } satisfies Step<FakeCluster, null>;
  });
}
