/**
 * `patch-container`: sets one container's args (and, optionally, the workload's update strategy)
 * of a Deployment or DaemonSet with a JSON patch guarded by a test of the container's name (the
 * index must still address that container), then awaits the rollout the change causes:
 * - `mic-leader`: MIC rolled out with a leader answering `Active` (handing over the lease of a
 *   leader the rollout replaced: one Endpoints PATCH, declared in the action's writes);
 * - `nmi-active`: the DaemonSet rolled out and every NMI pod answering `Active`;
 * - `on-delete`: nothing to await, the patch sets `updateStrategy: OnDelete` with the template,
 *   so no pod restarts (the `nmi-node-rollout` actions restart them node by node). Its undo
 *   restores a rolling strategy and so awaits the rollout as `nmi-active` does.
 * Undo writes back the original args and update strategy (nothing else the operator may have
 * changed since) and awaits the same rollout.
 */
import { expectFields, type Precondition } from '../../kube/conflict.ts';
import { KINDS } from '../../kube/kinds.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import type { Ctx, Executor } from '../lib/context.ts';
import {
  daemonSetRolloutGap,
  healthBodies,
  nmiPods,
  nmiProbePort,
  waitForDaemonSetRollout,
  waitForMicLeader,
  waitForNmiPodsActive,
  withoutAddedDefaults,
} from '../lib/pod-identity.ts';
import { sameJson } from '../lib/util.ts';

/** What the rollout after the patch is awaited for. */
export type RolloutWait = 'mic-leader' | 'nmi-active' | 'on-delete';

/** Details of a `patch-container` action. */
export interface PatchContainerDetails {
  workload: 'Deployment' | 'DaemonSet';
  namespace: string;
  name: string;
  container: string;
  containerIndex: number;
  /** The container's args after the patch. */
  args: string[];
  /** The workload's `spec.updateStrategy` after the patch (unchanged when absent). */
  updateStrategy?: unknown;
  rollout: RolloutWait;
  /**
   * The id of an earlier action of the same step that patched the same workload and whose undo
   * restores the true original (e.g. NMI's update strategy put back after a drain rollout: undoing
   * the `OnDelete` patch restores args and strategy). This action's undo then changes nothing.
   */
  undoneWith?: string;
}

/** Pre-state: the container and update strategy exactly as they were. */
export interface PatchContainerPreState {
  namespace: string;
  name: string;
  container: string;
  containerIndex: number;
  /** The container's args (`null`: it had none). */
  args: string[] | null;
  /** The whole container as it was (verification compares it). */
  containerSpec: Record<string, unknown>;
  /** `spec.updateStrategy` as it was (`null`: unset), only when the action changes it. */
  updateStrategy?: unknown;
}

type Container = { name: string; args?: string[]; [k: string]: unknown };

function containerAt(obj: KubeObject, index: number): Container | undefined {
  return (obj.spec as { template?: { spec?: { containers?: Container[] } } } | undefined)?.template?.spec?.containers?.[index];
}

function refOf(d: Pick<PatchContainerDetails, 'workload'>) {
  return d.workload === 'Deployment' ? KINDS.Deployment : KINDS.DaemonSet;
}

function label(d: Pick<PatchContainerDetails, 'workload' | 'namespace' | 'name'>): string {
  return `${d.workload.toLowerCase()} ${d.namespace}/${d.name}`;
}

/** JSON patch setting one container's args (`null` removes them), guarded by a test of the container's name. */
export function argsPatch(containerIndex: number, container: string, args: string[] | null): unknown[] {
  const base = `/spec/template/spec/containers/${containerIndex}`;
  return [{ op: 'test', path: `${base}/name`, value: container }, args === null ? { op: 'remove', path: `${base}/args` } : { op: 'add', path: `${base}/args`, value: args }];
}

async function awaitRollout(ctx: Ctx, d: PatchContainerDetails, args: readonly string[], strategy: unknown = d.updateStrategy): Promise<string> {
  if (ctx.dryRun !== 'none') return 'not awaited (dry run)';
  // Under OnDelete a template change restarts nothing: there is no rollout to wait for.
  if ((strategy as { type?: string } | null | undefined)?.type === 'OnDelete') return 'no restart (updateStrategy OnDelete)';
  if (d.rollout === 'mic-leader') {
    // MIC must run with the new args before anything depends on them, and a leader must serve again.
    ctx.progress(`waiting for MIC ${d.namespace}/${d.name} to roll out and elect a leader`);
    const { leader, released } = await waitForMicLeader(ctx.kube, d, ctx.deadline, ctx.signal);
    if (released.length) ctx.log.info(`MIC lease of replaced leader ${released.join(', ')} handed over at once`);
    return leader ? `MIC leader ${leader} Active` : 'MIC at 0 replicas';
  }
  ctx.progress(`waiting for the NMI rollout of ${d.namespace}/${d.name} (one node at a time)`);
  const ds = await waitForDaemonSetRollout(ctx.kube, d.namespace, d.name, ctx.deadline, ctx.signal);
  const bodies = await waitForNmiPodsActive(ctx.kube, ds, nmiProbePort(args), ctx.deadline, ctx.signal);
  return `${bodies.length} NMI pods Active`;
}

/**
 * The precondition of a container patch: the container's name and args as read just before the
 * write. After a 409 the gateway re-reads the workload; if someone else (Helm, a GitOps
 * controller, a person) changed the args meanwhile, the step stops with the diff instead of
 * writing over their change.
 */
async function containerAsNow(ctx: Ctx, d: PatchContainerDetails, index: number, container: string): Promise<Precondition> {
  const live = await ctx.kube.get(refOf(d), d.namespace, d.name);
  const base = `/spec/template/spec/containers/${index}`;
  return expectFields({ [`${base}/name`]: container, [`${base}/args`]: live ? containerAt(live, index)?.args : undefined });
}

function inEffect(live: KubeObject, d: PatchContainerDetails): boolean {
  const c = containerAt(live, d.containerIndex);
  if (c?.name !== d.container || !sameJson(c.args ?? null, d.args)) return false;
  return d.updateStrategy === undefined || sameJson(withoutAddedDefaults((live.spec as { updateStrategy?: unknown }).updateStrategy, d.updateStrategy), d.updateStrategy);
}

export const patchContainer: Executor<PatchContainerDetails, PatchContainerPreState, { generation?: number; rollout: string }> = {
  kind: 'patch-container',
  async capture(ctx, { details: d }) {
    const live = await ctx.kube.get(refOf(d), d.namespace, d.name);
    if (!live) throw new Error(`${label(d)} disappeared; re-run the inventory step`);
    const c = containerAt(live, d.containerIndex);
    if (c?.name !== d.container) throw new Error(`${label(d)} changed: container ${d.containerIndex} is no longer ${d.container}; plan again`);
    return {
      namespace: d.namespace,
      name: d.name,
      container: d.container,
      containerIndex: d.containerIndex,
      args: c.args ? [...c.args] : null,
      containerSpec: structuredClone(c),
      ...(d.updateStrategy !== undefined ? { updateStrategy: structuredClone((live.spec as { updateStrategy?: unknown }).updateStrategy ?? null) } : {}),
    };
  },
  async do(ctx, { action: { details: d } }) {
    const patch = argsPatch(d.containerIndex, d.container, d.args);
    if (d.updateStrategy !== undefined) patch.push({ op: 'add', path: '/spec/updateStrategy', value: d.updateStrategy });
    ctx.progress(`patching ${label(d)}`);
    const patched = await ctx.kube.patch(refOf(d), d.namespace, d.name, patch, 'json', { precondition: await containerAsNow(ctx, d, d.containerIndex, d.container) });
    return { generation: patched.metadata?.generation, rollout: await awaitRollout(ctx, d, d.args) };
  },
  async reconcile(ctx, { action: { details: d } }) {
    const live = await ctx.kube.get(refOf(d), d.namespace, d.name);
    if (!live) return { applied: false, reason: `${label(d)} does not exist` };
    if (!inEffect(live, d)) return { applied: false, reason: `${label(d)} does not carry the planned args` };
    // The patch is in: finish the rollout wait the interrupted run was in.
    return { applied: true, result: { generation: live.metadata?.generation, rollout: await awaitRollout(ctx, d, d.args) } };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (d.undoneWith) return `${label(d)}: restored with ${d.undoneWith}`;
    if (!pre) return `${label(d)}: nothing recorded to restore`;
    const live = await ctx.kube.get(refOf(d), d.namespace, d.name);
    if (!live) {
      ctx.log.warn(`${label(d)} no longer exists; its args cannot be restored`);
      return `${label(d)}: gone, nothing restored`;
    }
    const patch = argsPatch(pre.containerIndex, pre.container, pre.args);
    if (pre.updateStrategy !== undefined) patch.push(pre.updateStrategy === null ? { op: 'remove', path: '/spec/updateStrategy' } : { op: 'add', path: '/spec/updateStrategy', value: pre.updateStrategy });
    ctx.progress(`restoring ${label(d)}`);
    await ctx.kube.patch(refOf(d), d.namespace, d.name, patch, 'json', { precondition: await containerAsNow(ctx, d, pre.containerIndex, pre.container) });
    const rollout = await awaitRollout(ctx, d, pre.args ?? [], pre.updateStrategy === undefined ? (live.spec as { updateStrategy?: unknown }).updateStrategy : pre.updateStrategy);
    return `${label(d)} restored (${rollout})`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (d.undoneWith) return { ok: true, evidence: [`${label(d)}: verified with ${d.undoneWith}`], failures: [] };
    if (!pre) return { ok: true, evidence: [`${label(d)}: nothing was changed`], failures: [] };
    const live = await ctx.kube.get(refOf(d), d.namespace, d.name);
    if (!live) return { ok: false, evidence: [], failures: [`${label(d)} not found`] };
    const failures: string[] = [];
    const evidence: string[] = [];
    const now = containerAt(live, pre.containerIndex);
    if (!sameJson(withoutAddedDefaults(now, pre.containerSpec), pre.containerSpec)) failures.push(`${label(d)}: container differs from the original (args ${JSON.stringify(now?.args ?? null)})`);
    else evidence.push(`${label(d)}: container spec is the original (args ${(now?.args ?? []).join(' ')})`);
    if (pre.updateStrategy !== undefined && pre.updateStrategy !== null) {
      const strategy = (live.spec as { updateStrategy?: unknown }).updateStrategy ?? null;
      if (!sameJson(withoutAddedDefaults(strategy, pre.updateStrategy), pre.updateStrategy)) failures.push(`${label(d)}: updateStrategy differs from the original`);
    }
    if (d.rollout !== 'mic-leader') {
      const gap = daemonSetRolloutGap(live);
      if (gap) failures.push(`${label(d)} rollout not complete: ${gap}`);
      const bodies = await healthBodies(ctx.kube, await nmiPods(ctx.kube, live), nmiProbePort(pre.args ?? []));
      const inactive = bodies.filter((b) => b.body !== 'Active');
      if (inactive.length) failures.push(...inactive.map((b) => `NMI ${b.pod}: ${b.body}`));
      else evidence.push(`${bodies.length} NMI pods report Active`);
    }
    return { ok: failures.length === 0, evidence, failures };
  },
};
