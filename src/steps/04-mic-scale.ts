/**
 * Step 4, `mic-scale`: records MIC's replica count and scales it to zero. With NMI in managed
 * mode nothing needs MIC any more, and a MIC that still runs would garbage-collect identities
 * whenever pods come and go. Scaled to zero, MIC does nothing: identities stay on the scale
 * sets and its AzureAssignedIdentity objects stay until `cleanup`.
 */
import type { AzureGateway } from '../azure/gateway.ts';
import type { KubeGateway, KubeObject } from '../kube/gateway.ts';
import type { CheckResult, Step, StepOutcome, StepPlan } from '../engine/step.ts';
import { inventoryFor, podIdentityFor, withScopedGateways, type Ctx } from './01-inventory.ts';
import { POLL_MS, findMicDeployments, healthBodies, podSelectorOf, probePortOf, remainingMs, waitForMicLeader } from './pod-identity.ts';
import { KINDS } from '../kube/kinds.ts';

export const MIC_SCALE_ACTION_ID = 'mic/scale-to-zero';

/** Journal data `mic` (read by `cleanup`'s rollback too): the count to restore. */
export interface MicData {
  namespace: string;
  name: string;
  replicas: number;
}

/** MIC's health port: `--http-probe-port`, else MIC's default 8080. */
export const micProbePort = probePortOf;

async function micPods(ctx: Ctx, dep: KubeObject): Promise<KubeObject[]> {
  return ctx.kube.list(KINDS.Pod, { namespace: dep.metadata?.namespace, labelSelector: podSelectorOf(dep) });
}

const micScale: Step<KubeGateway, AzureGateway> = {
  id: 'mic-scale',
  title: 'Scale MIC to zero',

  async plan(ctx): Promise<StepPlan> {
    await inventoryFor(ctx);
    const { mic } = await podIdentityFor(ctx);
    if (!mic) return { stepId: 'mic-scale', actions: [], blockers: [], notes: ['no MIC Deployment: nothing to scale'] };
    const replicas = mic.replicas ?? 1;
    const recorded = ctx.journal.getData<MicData>('mic');
    const notes = recorded ? [`recorded replica count: ${recorded.replicas}`] : [];
    if (replicas === 0) return { stepId: 'mic-scale', actions: [], blockers: [], notes: [...notes, `deployment ${mic.namespace}/${mic.name} is already at 0 replicas`] };
    return {
      stepId: 'mic-scale',
      actions: [
        {
          id: MIC_SCALE_ACTION_ID,
          op: '~',
          target: `deployment ${mic.namespace}/${mic.name}`,
          summary: `replicas: ${replicas} -> 0 (count recorded for rollback)`,
          api: 'kube',
          writes: 1,
          details: { namespace: mic.namespace, name: mic.name, from: replicas },
        },
      ],
      blockers: [],
      notes,
    };
  },

  async apply(ctx, plan): Promise<StepOutcome> {
    const action = plan.actions.find((a) => a.id === MIC_SCALE_ACTION_ID);
    let d: { namespace: string; name: string; from: number };
    let recorded: MicData;
    if (action) {
      d = action.details as { namespace: string; name: string; from: number };
      // The first recorded count wins: a resumed run sees a MIC that may already be at zero.
      recorded = ctx.journal.getData<MicData>('mic') ?? { namespace: d.namespace, name: d.name, replicas: d.from };
      await ctx.journal.setData('mic', recorded);
      ctx.progress(`scaling MIC ${d.namespace}/${d.name} from ${d.from} to 0`);
      await ctx.journal.runAction(action, { replicas: recorded.replicas }, () => ctx.kube.scale(d.namespace, d.name, 0));
      if (ctx.dryRun !== 'none') return { summary: `MIC would be scaled from ${d.from} to 0` };
    } else {
      const { mic } = await podIdentityFor(ctx);
      if (!mic || ctx.dryRun !== 'none') return { summary: 'MIC already at 0 replicas' };
      // Already at zero, possibly scaled by an attempt that stopped before its pods were gone: finish waiting.
      d = { namespace: mic.namespace, name: mic.name, from: 0 };
      recorded = ctx.journal.getData<MicData>('mic') ?? { namespace: mic.namespace, name: mic.name, replicas: 0 };
    }
    const dep = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
    if (dep) {
      await ctx.kube.waitFor(
        async (note) => {
          const pods = await micPods(ctx, dep);
          note(`${pods.length} MIC pod(s) left`);
          return pods.length === 0;
        },
        { describe: `no MIC pod of ${d.namespace}/${d.name} left`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS },
      );
    }
    return { summary: `MIC scaled from ${recorded.replicas} to 0; no MIC pod left` };
  },

  async check(ctx): Promise<CheckResult> {
    const data = ctx.journal.getData<MicData>('mic');
    const { mic } = await podIdentityFor(ctx);
    if (!mic) return { ok: true, evidence: ['no MIC Deployment'], failures: [] };
    const evidence: string[] = [];
    const failures: string[] = [];
    if ((mic.replicas ?? 1) !== 0) failures.push(`deployment ${mic.namespace}/${mic.name} has ${mic.replicas} replicas, not 0`);
    else evidence.push(`deployment ${mic.namespace}/${mic.name} at 0 replicas (recorded ${data?.replicas ?? '?'} for rollback)`);
    const pods = await micPods(ctx, mic.object);
    if (pods.length) failures.push(`${pods.length} MIC pod(s) still exist: ${pods.map((p) => p.metadata?.name).join(', ')}`);
    else evidence.push('no MIC pod exists');
    return { ok: failures.length === 0, evidence, failures };
  },

  async rollback(ctx): Promise<StepOutcome> {
    const pre = ctx.journal.firstPreState<{ replicas: number }>(MIC_SCALE_ACTION_ID);
    const data = ctx.journal.getData<MicData>('mic');
    if (!pre || !data) return { summary: 'nothing recorded to undo' };
    ctx.progress(`scaling MIC ${data.namespace}/${data.name} back to ${pre.replicas}`);
    await ctx.kube.scale(data.namespace, data.name, pre.replicas);
    const dep = await ctx.kube.get(KINDS.Deployment, data.namespace, data.name);
    const mic = dep ? findMicDeployments([dep])[0] : undefined;
    // The replicas scaled away still hold MIC's lease: it is handed over so a new leader need not wait it out.
    const { leader } = await waitForMicLeader(ctx.kube, { namespace: data.namespace, name: data.name, container: mic?.container ?? 'mic' }, ctx.deadline, ctx.signal);
    await ctx.journal.markRolledBack(MIC_SCALE_ACTION_ID);
    return { summary: `MIC back at ${pre.replicas} replicas; leader ${leader} reports Active` };
  },

  async verifyRollback(ctx): Promise<CheckResult> {
    const pre = ctx.journal.firstPreState<{ replicas: number }>(MIC_SCALE_ACTION_ID);
    const data = ctx.journal.getData<MicData>('mic');
    if (!pre || !data) return { ok: true, evidence: ['nothing was changed'], failures: [] };
    const dep = await ctx.kube.get(KINDS.Deployment, data.namespace, data.name);
    if (!dep) return { ok: false, evidence: [], failures: [`deployment ${data.namespace}/${data.name} not found`] };
    const replicas = (dep.spec as { replicas?: number }).replicas ?? 1;
    const failures: string[] = [];
    const evidence: string[] = [];
    if (replicas !== pre.replicas) failures.push(`deployment ${data.namespace}/${data.name} has ${replicas} replicas, recorded ${pre.replicas}`);
    else evidence.push(`deployment ${data.namespace}/${data.name} back at ${replicas} replicas`);
    const bodies = await healthBodies(ctx.kube, await micPods(ctx, dep), micProbePort(micArgs(dep)));
    const active = bodies.filter((b) => b.body === 'Active');
    if (pre.replicas > 0 && active.length === 0) failures.push(`no MIC pod reports Active (${bodies.map((b) => `${b.pod}: ${b.body}`).join('; ') || 'no pods'})`);
    else if (active.length) evidence.push(`MIC leader ${active[0].pod} reports Active`);
    return { ok: failures.length === 0, evidence, failures };
  },
};

function micArgs(dep: KubeObject): string[] {
  const containers = (dep.spec as { template?: { spec?: { containers?: { name: string; image?: string; args?: string[] }[] } } }).template?.spec?.containers ?? [];
  return (containers.find((c) => c.name === 'mic') ?? containers[0])?.args ?? [];
}

/** Step 4 of the runbook. */
export const micScaleStep = withScopedGateways(micScale);
export default micScaleStep;
