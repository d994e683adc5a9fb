/**
 * `annotate-object`: sets annotations on one existing object with a JSON merge patch (e.g. a
 * service account's `azure.workload.identity/client-id`). Undo puts back what each key held
 * before (removing keys that were absent), but only keys that still hold the value this action
 * wrote: a later edit by the operator is kept.
 */
import type { ResourceRef } from '../../kube/client.ts';
import type { Executor } from '../lib/context.ts';

/** Details of an `annotate-object` action. */
export interface AnnotateObjectDetails {
  ref: ResourceRef;
  namespace?: string;
  name: string;
  annotations: Record<string, string>;
}

/** Pre-state: each key's value before the first attempt (null: absent). */
export interface AnnotateObjectPreState {
  annotations: Record<string, string | null>;
}

function label(d: AnnotateObjectDetails): string {
  return `${d.ref.kind.toLowerCase()} ${d.namespace ? `${d.namespace}/` : ''}${d.name}`;
}

async function liveAnnotations(ctx: Parameters<Executor<AnnotateObjectDetails, unknown, unknown>['capture']>[0], d: AnnotateObjectDetails): Promise<Record<string, string> | undefined> {
  const live = await ctx.kube.get(d.ref, d.namespace, d.name);
  return live ? (live.metadata?.annotations ?? {}) : undefined;
}

export const annotateObject: Executor<AnnotateObjectDetails, AnnotateObjectPreState, { annotated: number }> = {
  kind: 'annotate-object',
  async capture(ctx, { details: d }) {
    const now = (await liveAnnotations(ctx, d)) ?? {};
    return { annotations: Object.fromEntries(Object.keys(d.annotations).map((k) => [k, now[k] ?? null])) };
  },
  async do(ctx, { action: { details: d } }) {
    ctx.progress(`annotating ${label(d)}`);
    await ctx.kube.patch(d.ref, d.namespace, d.name, { metadata: { annotations: d.annotations } }, 'merge');
    return { annotated: Object.keys(d.annotations).length };
  },
  async reconcile(ctx, { action: { details: d } }) {
    const now = await liveAnnotations(ctx, d);
    if (!now) return { applied: false, reason: `${label(d)} does not exist` };
    const missing = Object.entries(d.annotations).filter(([k, v]) => now[k] !== v);
    return missing.length ? { applied: false, reason: `${label(d)} lacks ${missing.map(([k]) => k).join(', ')}` } : { applied: true, result: { annotated: Object.keys(d.annotations).length } };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    const now = await liveAnnotations(ctx, d);
    if (!now) return `${label(d)}: not there, nothing to undo`;
    const back: Record<string, string | null> = {};
    const kept: string[] = [];
    for (const [k, v] of Object.entries(d.annotations)) {
      if (now[k] !== v) {
        if (now[k] !== (pre?.annotations[k] ?? undefined)) kept.push(k);
        continue;
      }
      back[k] = pre?.annotations[k] ?? null;
    }
    if (kept.length) ctx.log.warn(`${label(d)}: ${kept.join(', ')} changed since this tool set them; left as they are`);
    if (!Object.keys(back).length) return `${label(d)}: nothing of ours left to undo`;
    ctx.progress(`restoring annotations of ${label(d)}`);
    await ctx.kube.patch(d.ref, d.namespace, d.name, { metadata: { annotations: back } }, 'merge');
    return `${label(d)}: annotations ${Object.keys(back).join(', ')} restored`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
    const now = await liveAnnotations(ctx, d);
    if (!now) return { ok: true, evidence: [`${label(d)}: gone`], failures: [] };
    const still = Object.entries(d.annotations).filter(([k, v]) => now[k] === v && (pre?.annotations[k] ?? null) !== v);
    if (still.length) return { ok: false, evidence: [], failures: [`${label(d)} still has ${still.map(([k, v]) => `${k}=${v}`).join(', ')}`] };
    return { ok: true, evidence: [`${label(d)}: annotations ${Object.keys(d.annotations).join(', ')} as before`], failures: [] };
  },
};
