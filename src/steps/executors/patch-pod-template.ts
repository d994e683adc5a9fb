/**
 * `patch-pod-template`: sets (or removes) pod template labels and annotations, and optionally the
 * service account, of one Deployment, DaemonSet or StatefulSet with one merge patch, then awaits
 * that workload's own rollout (the controller saw the new generation, every replica updated and
 * available, no old replica left). Used by the workload identity runbook: the
 * `azure.workload.identity/use` label (and the proxy sidecar annotation) on, later the
 * `aadpodidbinding` label off.
 *
 * Writes: one PATCH. A template already as planned is not patched again (no second rollout):
 * `reconcile` after a crash reads the template and, when the patch is in, only finishes the
 * rollout wait. Undo writes back the captured values of only the fields this action planned
 * (labels, annotations, service account), and only where they differ, then awaits the rollout.
 */
import { expectFields, type Precondition } from '../../kube/conflict.ts';
import { KINDS } from '../../kube/kinds.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import type { CheckResult } from '../../engine/step.ts';
import type { Ctx, Executor } from '../lib/context.ts';
import { daemonSetRolloutGap, deploymentRolloutGap } from '../lib/pod-identity.ts';
import { POLL_MS, remainingMs } from '../lib/util.ts';

/** Workload kinds whose pod template this executor patches. */
export type TemplateWorkload = 'Deployment' | 'DaemonSet' | 'StatefulSet';

/** Details of a `patch-pod-template` action. A `null` value removes the label or annotation. */
export interface PatchPodTemplateDetails {
  workload: TemplateWorkload;
  namespace: string;
  name: string;
  /** Pod template labels after the patch (`null`: removed). Sorted keys. */
  labels: Record<string, string | null>;
  /** Pod template annotations after the patch (`null`: removed). Sorted keys. */
  annotations: Record<string, string | null>;
  /** `spec.template.spec.serviceAccountName` after the patch (unchanged when absent). */
  serviceAccountName?: string;
}

/** Pre-state: the planned fields exactly as they were (`null`: absent). */
export interface PatchPodTemplatePreState {
  labels: Record<string, string | null>;
  annotations: Record<string, string | null>;
  /** Only when the action sets it; `null`: unset (the `default` service account). */
  serviceAccountName?: string | null;
}

/** Result: the generation the patch produced and how the rollout ended. */
export interface PatchPodTemplateResult {
  generation?: number;
  patched: boolean;
  rollout: string;
}

interface Template {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { serviceAccountName?: string };
}

const REFS = { Deployment: KINDS.Deployment, DaemonSet: KINDS.DaemonSet, StatefulSet: KINDS.StatefulSet } as const;

function templateOf(obj: KubeObject): Template {
  return ((obj.spec as { template?: Template } | undefined)?.template ?? {}) as Template;
}

/** `deploy payments/api`, `ds kube-system/x`, `sts ns/name`. */
export function templateLabel(d: Pick<PatchPodTemplateDetails, 'workload' | 'namespace' | 'name'>): string {
  const short = d.workload === 'Deployment' ? 'deploy' : d.workload === 'DaemonSet' ? 'ds' : 'sts';
  return `${short} ${d.namespace}/${d.name}`;
}

/** JSON pointer of a template label or annotation (RFC 6901 escaping of `/` in the key). */
function pointer(field: 'labels' | 'annotations', key: string): string {
  return `/spec/template/metadata/${field}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

/** The fields named by `keys` (labels, annotations, and the service account when it is named) as they are in `obj` now: the shape of the pre-state. */
export function currentFields(obj: KubeObject, keys: { labels: Record<string, unknown>; annotations: Record<string, unknown>; serviceAccountName?: unknown }): PatchPodTemplatePreState {
  const t = templateOf(obj);
  const pick = (have: Record<string, string> | undefined, names: Record<string, unknown>) => Object.fromEntries(Object.keys(names).sort().map((k) => [k, have?.[k] ?? null]));
  return {
    labels: pick(t.metadata?.labels, keys.labels),
    annotations: pick(t.metadata?.annotations, keys.annotations),
    ...('serviceAccountName' in keys && keys.serviceAccountName !== undefined ? { serviceAccountName: t.spec?.serviceAccountName ?? null } : {}),
  };
}

/** True when the template of `obj` carries every planned value. */
export function templateInEffect(obj: KubeObject, d: Pick<PatchPodTemplateDetails, 'labels' | 'annotations' | 'serviceAccountName'>): boolean {
  return fieldsDiffer(currentFields(obj, d), { labels: d.labels, annotations: d.annotations, ...(d.serviceAccountName !== undefined ? { serviceAccountName: d.serviceAccountName } : {}) }).length === 0;
}

/** Which planned fields differ between `now` and `want` (one line each). */
function fieldsDiffer(now: PatchPodTemplatePreState, want: PatchPodTemplatePreState): string[] {
  const out: string[] = [];
  for (const field of ['labels', 'annotations'] as const) {
    for (const [k, v] of Object.entries(want[field])) if ((now[field][k] ?? null) !== v) out.push(`${field.slice(0, -1)} ${k}: ${JSON.stringify(now[field][k] ?? null)}, expected ${JSON.stringify(v)}`);
  }
  if (want.serviceAccountName !== undefined && (now.serviceAccountName ?? null) !== want.serviceAccountName) out.push(`serviceAccountName: ${JSON.stringify(now.serviceAccountName ?? null)}, expected ${JSON.stringify(want.serviceAccountName)}`);
  return out;
}

/** The merge patch that makes the template's planned fields `want` (only the keys that differ from `now`). */
function mergePatchFor(now: PatchPodTemplatePreState, want: PatchPodTemplatePreState): Record<string, unknown> | undefined {
  const metadata: Record<string, Record<string, string | null>> = {};
  for (const field of ['labels', 'annotations'] as const) {
    for (const [k, v] of Object.entries(want[field])) {
      if ((now[field][k] ?? null) === v) continue;
      (metadata[field] ??= {})[k] = v;
    }
  }
  const template: Record<string, unknown> = {};
  if (Object.keys(metadata).length) template.metadata = metadata;
  if (want.serviceAccountName !== undefined && (now.serviceAccountName ?? null) !== want.serviceAccountName) {
    // `serviceAccountName` wins over the deprecated `serviceAccount` alias, which is left as it is.
    template.spec = { serviceAccountName: want.serviceAccountName };
  }
  return Object.keys(template).length ? { spec: { template } } : undefined;
}

/**
 * The precondition of the patch: the planned fields as read just before the write. After a 409
 * the gateway re-reads the workload; someone else's change to the same fields stops the step.
 */
function asRead(now: PatchPodTemplatePreState): Precondition {
  const expected: Record<string, unknown> = {};
  for (const field of ['labels', 'annotations'] as const) for (const [k, v] of Object.entries(now[field])) expected[pointer(field, k)] = v ?? undefined;
  if (now.serviceAccountName !== undefined) expected['/spec/template/spec/serviceAccountName'] = now.serviceAccountName ?? undefined;
  return expectFields(expected);
}

/** Why the workload's rollout is not complete, or undefined when it is. */
export function rolloutGap(obj: KubeObject): string | undefined {
  if (obj.kind === 'DaemonSet') return daemonSetRolloutGap(obj);
  if (obj.kind === 'StatefulSet') {
    const st = (obj.status ?? {}) as { observedGeneration?: number; updatedReplicas?: number; readyReplicas?: number; currentRevision?: string; updateRevision?: string };
    const want = (obj.spec as { replicas?: number } | undefined)?.replicas ?? 1;
    const gen = obj.metadata?.generation ?? 0;
    if ((st.observedGeneration ?? 0) < gen) return `observedGeneration ${st.observedGeneration ?? 0} < generation ${gen}`;
    if ((st.updatedReplicas ?? 0) < want) return `${st.updatedReplicas ?? 0}/${want} replicas updated`;
    if ((st.readyReplicas ?? 0) < want) return `${st.readyReplicas ?? 0}/${want} replicas ready`;
    return undefined;
  }
  return deploymentRolloutGap(obj);
}

async function awaitRollout(ctx: Ctx, d: PatchPodTemplateDetails, generation: number | undefined): Promise<string> {
  if (ctx.dryRun !== 'none') return 'not awaited (dry run)';
  const ref = REFS[d.workload];
  ctx.progress(`waiting for the rollout of ${templateLabel(d)}`);
  const final = await ctx.kube.waitFor(
    async (note) => {
      const live = await ctx.kube.get(ref, d.namespace, d.name);
      if (!live) throw new Error(`${templateLabel(d)} disappeared during its rollout`);
      // The rollout this patch caused: a later generation (someone else's change) also counts as observed.
      if (generation !== undefined && (live.metadata?.generation ?? 0) < generation) {
        note(`generation ${live.metadata?.generation} < ${generation}`);
        return undefined;
      }
      const gap = rolloutGap(live);
      if (gap) note(gap);
      return gap ? undefined : live;
    },
    { describe: `${templateLabel(d)} rollout`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS, signal: ctx.signal },
  );
  const replicas = (final.status as { replicas?: number; desiredNumberScheduled?: number } | undefined) ?? {};
  return `rolled out (${replicas.replicas ?? replicas.desiredNumberScheduled ?? 0} pods updated and available)`;
}

async function read(ctx: Ctx, d: PatchPodTemplateDetails): Promise<KubeObject> {
  const live = await ctx.kube.get(REFS[d.workload], d.namespace, d.name);
  if (!live) throw new Error(`${templateLabel(d)} no longer exists; plan again`);
  return live;
}

function wanted(d: PatchPodTemplateDetails): PatchPodTemplatePreState {
  return { labels: d.labels, annotations: d.annotations, ...(d.serviceAccountName !== undefined ? { serviceAccountName: d.serviceAccountName } : {}) };
}

export const patchPodTemplate: Executor<PatchPodTemplateDetails, PatchPodTemplatePreState, PatchPodTemplateResult> = {
  kind: 'patch-pod-template',
  async capture(ctx, { details: d }) {
    return currentFields(await read(ctx, d), d);
  },
  async do(ctx, { action: { details: d } }) {
    const live = await read(ctx, d);
    const now = currentFields(live, d);
    const patch = mergePatchFor(now, wanted(d));
    if (!patch) {
      // Already as planned (an earlier attempt's write took effect): no second rollout.
      return { generation: live.metadata?.generation, patched: false, rollout: await awaitRollout(ctx, d, live.metadata?.generation) };
    }
    ctx.progress(`patching the pod template of ${templateLabel(d)}`);
    const patched = await ctx.kube.patch(REFS[d.workload], d.namespace, d.name, patch, 'merge', { precondition: asRead(now) });
    return { generation: patched.metadata?.generation, patched: true, rollout: await awaitRollout(ctx, d, patched.metadata?.generation) };
  },
  async reconcile(ctx, { action: { details: d } }) {
    const live = await ctx.kube.get(REFS[d.workload], d.namespace, d.name);
    if (!live) return { applied: false, reason: `${templateLabel(d)} does not exist` };
    if (!templateInEffect(live, d)) return { applied: false, reason: `the pod template of ${templateLabel(d)} does not carry the planned fields` };
    // The patch is in: finish the rollout it started (never patch, so never roll out, again).
    return { applied: true, result: { generation: live.metadata?.generation, patched: true, rollout: await awaitRollout(ctx, d, live.metadata?.generation) } };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (!pre) return `${templateLabel(d)}: nothing recorded to restore`;
    const live = await ctx.kube.get(REFS[d.workload], d.namespace, d.name);
    if (!live) {
      ctx.log.warn(`${templateLabel(d)} no longer exists; its pod template cannot be restored`);
      return `${templateLabel(d)}: gone, nothing restored`;
    }
    // Only the fields this action planned, back to their captured values (an operator's other edits stay).
    const now = currentFields(live, pre);
    const patch = mergePatchFor(now, pre);
    if (!patch) return `${templateLabel(d)}: pod template already as before`;
    ctx.progress(`restoring the pod template of ${templateLabel(d)}`);
    const patched = await ctx.kube.patch(REFS[d.workload], d.namespace, d.name, patch, 'merge', { precondition: asRead(now) });
    return `${templateLabel(d)}: pod template restored, ${await awaitRollout(ctx, d, patched.metadata?.generation)}`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }): Promise<CheckResult> {
    if (!pre) return { ok: true, evidence: [`${templateLabel(d)}: nothing was changed`], failures: [] };
    const live = await ctx.kube.get(REFS[d.workload], d.namespace, d.name);
    if (!live) return { ok: false, evidence: [], failures: [`${templateLabel(d)} not found`] };
    const now = currentFields(live, pre);
    const failures = fieldsDiffer(now, pre).map((f) => `${templateLabel(d)}: ${f} (as before the migration)`);
    const gap = rolloutGap(live);
    if (gap) failures.push(`${templateLabel(d)} rollout not complete: ${gap}`);
    return { ok: failures.length === 0, evidence: failures.length ? [] : [`${templateLabel(d)}: pod template as before, rolled out`], failures };
  },
};
