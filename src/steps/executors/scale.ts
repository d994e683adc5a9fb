/**
 * `scale`: sets a Deployment's replicas through the `scale` subresource and waits until its pod
 * count follows (at 0: no pod left). Undo scales back to the count captured before the first
 * attempt; for MIC (`mic` set) it then awaits a leader answering `Active`, handing over the
 * lease the scaled-away replicas still hold (one Endpoints PATCH).
 */
import { KINDS } from '../../kube/kinds.ts';
import { expectFields, type Precondition } from '../../kube/conflict.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import type { Ctx, Executor } from '../lib/context.ts';
import { findMicDeployments, healthBodies, podSelectorOf, probePortOf, waitForMicLeader } from '../lib/pod-identity.ts';
import { POLL_MS, remainingMs } from '../lib/util.ts';

/** Details of a `scale` action. */
export interface ScaleDetails {
  namespace: string;
  name: string;
  /** Replicas after the action. */
  replicas: number;
  /** Replicas when planned (for messages). */
  from: number;
  /** Set when the Deployment is MIC: undo awaits its leader. */
  mic?: { container: string };
}

/** Pre-state: the replica count before the first attempt. */
export interface ScalePreState {
  replicas: number;
}

async function podsOf(ctx: Ctx, dep: KubeObject): Promise<KubeObject[]> {
  return ctx.kube.list(KINDS.Pod, { namespace: dep.metadata?.namespace, labelSelector: podSelectorOf(dep) });
}

async function awaitPodsGone(ctx: Ctx, d: ScaleDetails): Promise<void> {
  if (ctx.dryRun !== 'none' || d.replicas !== 0) return;
  const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
  if (!dep) return;
  await ctx.kube.waitFor(
    async (note) => {
      const pods = await podsOf(ctx, dep);
      note(`${pods.length} pod(s) left`);
      return pods.length === 0;
    },
    { describe: `no pod of ${d.namespace}/${d.name} left`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

/**
 * The precondition of a scale: the replica count as read just before it. After a 409 the
 * gateway re-reads the Deployment; if someone else (an autoscaler, Helm, a person) changed the
 * count meanwhile, the step stops with the diff instead of overwriting their change.
 */
async function replicasAsNow(ctx: Ctx, d: ScaleDetails): Promise<Precondition> {
  const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
  return expectFields({ '/spec/replicas': dep ? (dep.spec as { replicas?: number } | undefined)?.replicas : undefined });
}

function replicasOf(dep: KubeObject): number {
  return (dep.spec as { replicas?: number } | undefined)?.replicas ?? 1;
}

export const scaleDeployment: Executor<ScaleDetails, ScalePreState, { previousReplicas: number; replicas: number }> = {
  kind: 'scale',
  async capture(ctx, { details: d }) {
    const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
    if (!dep) throw new Error(`deployment ${d.namespace}/${d.name} disappeared; re-run the inventory step`);
    return { replicas: replicasOf(dep) };
  },
  async do(ctx, { action: { details: d } }) {
    ctx.progress(`scaling ${d.namespace}/${d.name} from ${d.from} to ${d.replicas}`);
    const r = await ctx.kube.scale(d.namespace, d.name, d.replicas, KINDS.Deployment, { precondition: await replicasAsNow(ctx, d) });
    await awaitPodsGone(ctx, d);
    return r;
  },
  async reconcile(ctx, { action: { details: d }, firstPreState }) {
    const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
    if (!dep) return { applied: false, reason: `deployment ${d.namespace}/${d.name} does not exist` };
    if (replicasOf(dep) !== d.replicas) return { applied: false, reason: `deployment ${d.namespace}/${d.name} has ${replicasOf(dep)} replicas` };
    await awaitPodsGone(ctx, d);
    return { applied: true, result: { previousReplicas: firstPreState?.replicas ?? d.from, replicas: d.replicas } };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (!pre) return `deployment ${d.namespace}/${d.name}: nothing recorded to undo`;
    ctx.progress(`scaling ${d.namespace}/${d.name} back to ${pre.replicas}`);
    await ctx.kube.scale(d.namespace, d.name, pre.replicas, KINDS.Deployment, { precondition: await replicasAsNow(ctx, d) });
    if (!d.mic) return `deployment ${d.namespace}/${d.name} back at ${pre.replicas} replicas`;
    const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
    const mic = dep ? findMicDeployments([dep])[0] : undefined;
    // The replicas scaled away still hold MIC's lease: it is handed over so a new leader need not wait it out.
    const { leader } = await waitForMicLeader(ctx.kube, { namespace: d.namespace, name: d.name, container: mic?.container ?? d.mic.container }, ctx.deadline, ctx.signal);
    return `MIC back at ${pre.replicas} replicas; leader ${leader} reports Active`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (!pre) return { ok: true, evidence: ['nothing was changed'], failures: [] };
    const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
    if (!dep) return { ok: false, evidence: [], failures: [`deployment ${d.namespace}/${d.name} not found`] };
    const failures: string[] = [];
    const evidence: string[] = [];
    if (replicasOf(dep) !== pre.replicas) failures.push(`deployment ${d.namespace}/${d.name} has ${replicasOf(dep)} replicas, recorded ${pre.replicas}`);
    else evidence.push(`deployment ${d.namespace}/${d.name} back at ${pre.replicas} replicas`);
    if (d.mic) {
      const args = findMicDeployments([dep])[0]?.args ?? [];
      const bodies = await healthBodies(ctx.kube, await podsOf(ctx, dep), probePortOf(args));
      const active = bodies.filter((b) => b.body === 'Active');
      if (pre.replicas > 0 && active.length === 0) failures.push(`no MIC pod reports Active (${bodies.map((b) => `${b.pod}: ${b.body}`).join('; ') || 'no pods'})`);
      else if (active.length) evidence.push(`MIC leader ${active[0].pod} reports Active`);
    }
    return { ok: failures.length === 0, evidence, failures };
  },
};
