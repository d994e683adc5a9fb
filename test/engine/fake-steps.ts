/**
 * Fake steps over an in-memory "cluster" (a map of key -> value) for engine and CLI tests.
 * Each step wants its own keys at `want`; plan reports the delta as `set-key` actions, the
 * runner executes them through {@link fakeExecutors}, check compares, and the runner's
 * rollback restores the first recorded pre-state through the executor.
 */
import type { ClusterIdentity } from '../../src/engine/journal.ts';
import { STEP_IDS, type ActionExecutor, type Blocker, type ExecutorRegistry, type Step, type StepContext, type StepId, type StepPlan } from '../../src/engine/step.ts';

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
  /** Undo throws for these steps (a rollback that fails). */
  failUndo: Set<StepId>;
}

export function fakeCluster(): FakeCluster {
  return { values: new Map(), writes: [], calls: [], blockers: {}, failCheck: new Set(), crashAfterWrite: new Set(), hang: new Set(), failUndo: new Set() };
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

/** Details of the fake `set-key` action. */
interface SetKey {
  stepId: StepId;
  key: string;
  value: string;
}

/** The one executor the fake steps' actions use: sets a key of the fake cluster. */
export function fakeExecutors(cluster: FakeCluster): ExecutorRegistry<FakeCluster, null> {
  const setKey: ActionExecutor<FakeCluster, null, SetKey, { key: string; previous: string | null }, { key: string; value: string }> = {
    kind: 'set-key',
    async capture(ctx, action) {
      return { key: action.details.key, previous: ctx.kube.values.get(action.details.key) ?? null };
    },
    async do(ctx, { action: { details: d } }) {
      if (cluster.hang.has(d.stepId)) {
        await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true }));
      }
      ctx.kube.values.set(d.key, d.value);
      cluster.writes.push(`${d.stepId}:${d.key}=${d.value}`);
      if (cluster.crashAfterWrite.has(d.stepId)) {
        cluster.crashAfterWrite.delete(d.stepId);
        throw new Error('connection reset after the write was accepted');
      }
      return { key: d.key, value: d.value };
    },
    async reconcile(ctx, { action: { details: d } }) {
      cluster.calls.push(`reconcile:${d.stepId}:${d.key}`);
      return ctx.kube.values.get(d.key) === d.value ? { applied: true, result: { key: d.key, value: d.value } } : { applied: false, reason: `${d.key} is not ${d.value}` };
    },
    async undo(ctx, { action: { details: d }, firstPreState: pre }) {
      cluster.calls.push(`rollback:${d.stepId}`);
      if (cluster.failUndo.has(d.stepId)) throw new Error('API server unavailable');
      if (pre!.previous === null) ctx.kube.values.delete(pre!.key);
      else ctx.kube.values.set(pre!.key, pre!.previous);
      cluster.writes.push(`${d.stepId}:${pre!.key}=${pre!.previous}`);
      return `${d.key} restored`;
    },
    async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
      const now = ctx.kube.values.get(d.key) ?? null;
      return now === pre!.previous ? { ok: true, evidence: [`${d.key} restored`], failures: [] } : { ok: false, evidence: [], failures: [`${d.key} is ${now}`] };
    },
  };
  return { 'set-key': setKey };
}

export function fakeSteps(cluster: FakeCluster, ids: readonly StepId[] = STEP_IDS): Step<FakeCluster, null>[] {
  return ids.map((id) => {
    const want = `${id}-done`;
    const plan = async (ctx: StepContext<FakeCluster, null>): Promise<StepPlan> => {
      cluster.calls.push(`plan:${id}`);
      const actions = keysOf(id)
        .filter((key) => ctx.kube.values.get(key) !== want)
        .map((key) => ({ id: `key/${key}`, kind: 'set-key', op: (ctx.kube.values.has(key) ? '~' : '+') as '~' | '+', target: `key ${key}`, summary: `set to ${want}`, api: 'kube' as const, writes: { kube: 1, arm: 0 }, details: { stepId: id, key, value: want } }));
      return { stepId: id, actions, blockers: cluster.blockers[id] ?? [], notes: [] };
    };
    return {
      id,
      title: `fake ${id}`,
      plan,
      async afterActions(_ctx, p) {
        cluster.calls.push(`apply:${id}`);
        return { summary: `${p.actions.length} key(s) set` };
      },
      async check(ctx) {
        cluster.calls.push(`check:${id}`);
        const wrong = keysOf(id).filter((key) => ctx.kube.values.get(key) !== want);
        if (cluster.failCheck.has(id)) wrong.push(`${id}: forced failure`);
        return { ok: wrong.length === 0, evidence: keysOf(id).map((k) => `${k}=${ctx.kube.values.get(k)}`), failures: wrong };
      },
    } satisfies Step<FakeCluster, null>;
  });
}
