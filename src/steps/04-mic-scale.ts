/**
 * Step 4, `mic-scale`: records MIC's replica count and scales it to zero (`scale`, waiting until
 * no MIC pod is left). With NMI in managed mode nothing needs MIC any more, and a MIC that still
 * runs would garbage-collect identities whenever pods come and go. Scaled to zero, MIC does
 * nothing: identities stay on the scale sets and its AzureAssignedIdentity objects stay until
 * `cleanup`. Rollback scales it back to the recorded count and awaits a leader.
 */
import type { CheckResult, StepOutcome, StepPlan } from '../engine/step.ts';
import { KINDS } from '../kube/kinds.ts';
import { action } from './executors/index.ts';
import type { ScalePreState } from './executors/scale.ts';
import type { MigrationStep } from './lib/context.ts';
import { inventoryFor, podIdentityFor, type MicRef } from './lib/inventory-source.ts';
import { podSelectorOf, probePortOf } from './lib/pod-identity.ts';

export const MIC_SCALE_ACTION_ID = 'mic/scale-to-zero';

/** Journal data `mic` (read by `cleanup` too): where MIC is and the count to restore. */
export type MicData = Required<MicRef>;

/** MIC's health port: `--http-probe-port`, else MIC's default 8080. */
export const micProbePort = probePortOf;

/** Step 4 of the runbook. */
export const micScaleStep: MigrationStep = {
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
        action({
          id: MIC_SCALE_ACTION_ID,
          kind: 'scale',
          op: '~',
          target: `deployment ${mic.namespace}/${mic.name}`,
          summary: `replicas: ${replicas} -> 0 (count recorded for rollback)`,
          api: 'kube',
          writes: { kube: 1, arm: 0 },
          details: { namespace: mic.namespace, name: mic.name, replicas: 0, from: replicas, mic: { container: mic.container } },
        }),
      ],
      blockers: [],
      notes,
    };
  },

  async afterActions(ctx, plan): Promise<StepOutcome> {
    const { mic } = await podIdentityFor(ctx);
    const first = ctx.journal.firstPreState<ScalePreState>(MIC_SCALE_ACTION_ID);
    // The first recorded count wins: a resumed run sees a MIC that may already be at zero.
    const recorded = ctx.journal.getData<MicData>('mic') ?? (mic ? { namespace: mic.namespace, name: mic.name, replicas: first?.replicas ?? mic.replicas ?? 0 } : undefined);
    if (recorded) await ctx.journal.setData('mic', recorded);
    const a = plan.actions[0];
    if (!a) return { summary: 'MIC already at 0 replicas' };
    const from = (a.details as { from: number }).from;
    if (ctx.dryRun !== 'none') return { summary: `MIC would be scaled from ${from} to 0` };
    return { summary: `MIC scaled from ${recorded?.replicas ?? from} to 0; no MIC pod left` };
  },

  async check(ctx): Promise<CheckResult> {
    const data = ctx.journal.getData<MicData>('mic');
    const { mic } = await podIdentityFor(ctx);
    if (!mic) return { ok: true, evidence: ['no MIC Deployment'], failures: [] };
    const evidence: string[] = [];
    const failures: string[] = [];
    if ((mic.replicas ?? 1) !== 0) failures.push(`deployment ${mic.namespace}/${mic.name} has ${mic.replicas} replicas, not 0`);
    else evidence.push(`deployment ${mic.namespace}/${mic.name} at 0 replicas (recorded ${data?.replicas ?? '?'} for rollback)`);
    const pods = await ctx.kube.list(KINDS.Pod, { namespace: mic.namespace, labelSelector: podSelectorOf(mic.object) });
    if (pods.length) failures.push(`${pods.length} MIC pod(s) still exist: ${pods.map((p) => p.metadata?.name).join(', ')}`);
    else evidence.push('no MIC pod exists');
    return { ok: failures.length === 0, evidence, failures };
  },
};

export default micScaleStep;
