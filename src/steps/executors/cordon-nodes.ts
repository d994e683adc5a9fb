/**
 * `cordon-nodes`: cordons a set of nodes at once, so nothing new is scheduled there until each
 * is uncordoned again by the action that finishes with it (step `nmi-managed` with
 * `--nmi-rollout drain`: after the first wave, every node still on the old NMI, so evicted and new
 * pods start only on nodes whose NMI already runs in managed mode, where no MIC assignment is
 * awaited).
 *
 * Writes: one cordon per listed node that is schedulable. Undo uncordons every node this action
 * found schedulable and that is still cordoned (a node cordoned before is left as it was).
 */
import pLimit from 'p-limit';
import { KINDS } from '../../kube/kinds.ts';
import type { Executor } from '../lib/context.ts';
import { cordon, isCordoned, uncordon } from '../lib/nodes.ts';

/** Details of a `cordon-nodes` action. */
export interface CordonNodesDetails {
  /** Node names, sorted. */
  nodes: string[];
  /** Why, for progress lines (e.g. `still on the old NMI`). */
  reason: string;
}

/** Pre-state: each listed node that existed, and whether it was cordoned before. */
export interface CordonNodesPreState {
  nodes: { node: string; wasUnschedulable: boolean }[];
}

/** Result: the nodes this action cordoned. */
export interface CordonNodesResult {
  cordoned: string[];
}

/** Whether `node` was cordoned before the `cordon-nodes` action whose first pre-state is `pre` (undefined: not listed). */
export function wasCordonedBefore(pre: CordonNodesPreState | undefined, node: string): boolean | undefined {
  return pre?.nodes.find((n) => n.node === node)?.wasUnschedulable;
}

const LIMIT = 8;

export const cordonNodes: Executor<CordonNodesDetails, CordonNodesPreState, CordonNodesResult> = {
  kind: 'cordon-nodes',
  async capture(ctx, { details: d }) {
    const nodes = await ctx.kube.list(KINDS.Node);
    const byName = new Map(nodes.map((n) => [n.metadata?.name ?? '', n]));
    return { nodes: d.nodes.filter((n) => byName.has(n)).map((n) => ({ node: n, wasUnschedulable: isCordoned(byName.get(n)!) })) };
  },
  async do(ctx, { action: { details: d } }) {
    const nodes = await ctx.kube.list(KINDS.Node);
    const todo = nodes.filter((n) => d.nodes.includes(n.metadata?.name ?? '') && !isCordoned(n)).map((n) => n.metadata!.name!);
    if (todo.length) ctx.progress(`cordon ${todo.length} node${todo.length === 1 ? '' : 's'} ${d.reason}`);
    const limit = pLimit(LIMIT);
    await Promise.all(todo.map((n) => limit(() => cordon(ctx.kube, n))));
    return { cordoned: todo.sort() };
  },
  async reconcile(ctx, { action: { details: d }, firstPreState }) {
    const nodes = await ctx.kube.list(KINDS.Node);
    const open = nodes.filter((n) => d.nodes.includes(n.metadata?.name ?? '') && !isCordoned(n)).map((n) => n.metadata!.name!);
    if (open.length) return { applied: false, reason: `${open.length} of the nodes are not cordoned (${open.slice(0, 3).join(', ')}${open.length > 3 ? ', …' : ''})` };
    return { applied: true, result: { cordoned: (firstPreState?.nodes ?? []).filter((n) => !n.wasUnschedulable).map((n) => n.node) } };
  },
  async undo(ctx, { firstPreState: pre }) {
    const nodes = await ctx.kube.list(KINDS.Node);
    const byName = new Map(nodes.map((n) => [n.metadata?.name ?? '', n]));
    const todo = (pre?.nodes ?? []).filter((n) => !n.wasUnschedulable && byName.has(n.node) && isCordoned(byName.get(n.node)!)).map((n) => n.node);
    const limit = pLimit(LIMIT);
    await Promise.all(todo.map((n) => limit(() => uncordon(ctx.kube, n))));
    return todo.length ? `uncordoned ${todo.length} node${todo.length === 1 ? '' : 's'} (${todo.join(', ')})` : 'no node left cordoned';
  },
  async verifyUndo(ctx, { firstPreState: pre }) {
    const nodes = await ctx.kube.list(KINDS.Node);
    const byName = new Map(nodes.map((n) => [n.metadata?.name ?? '', n]));
    const still = (pre?.nodes ?? []).filter((n) => !n.wasUnschedulable && byName.has(n.node) && isCordoned(byName.get(n.node)!)).map((n) => n.node);
    if (still.length) return { ok: false, evidence: [], failures: still.map((n) => `node ${n} is still cordoned`) };
    return { ok: true, evidence: [`${(pre?.nodes ?? []).length} node(s) as before the cordon`], failures: [] };
  },
};
