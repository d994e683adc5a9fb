/**
 * `create-object`: creates one object that carries an ownership label (a binding or identity
 * copied into a pod's namespace). Undo deletes it only while it still carries that label with
 * the same value, so an object the operator took over is left alone.
 */
import type { KubeObject } from '../../kube/gateway.ts';
import type { Executor } from '../lib/context.ts';
import { statusOf } from '../lib/util.ts';

/** Details of a `create-object` action. */
export interface CreateObjectDetails {
  /** The object to create, with its ownership label set. */
  object: KubeObject;
  /** The label that marks it as ours, and its value. */
  ownerLabel: { key: string; value: string };
  /** Where it was copied from (for messages). */
  from?: { namespace: string; name: string };
}

/** Pre-state: the object did not exist. */
export interface CreateObjectPreState {
  kind: string;
  namespace: string;
  name: string;
  existedBefore: false;
}

function refOf(o: KubeObject): { apiVersion: string; kind: string } {
  return { apiVersion: o.apiVersion!, kind: o.kind! };
}

function describe(o: KubeObject): string {
  return `${o.kind?.toLowerCase()} ${o.metadata?.namespace}/${o.metadata?.name}`;
}

export const createObject: Executor<CreateObjectDetails, CreateObjectPreState, { uid?: string; alreadyExists?: boolean }> = {
  kind: 'create-object',
  async capture(_ctx, { details: d }) {
    return { kind: d.object.kind ?? '', namespace: d.object.metadata?.namespace ?? '', name: d.object.metadata?.name ?? '', existedBefore: false };
  },
  async do(ctx, { action: { details: d } }) {
    ctx.progress(`creating ${describe(d.object)}${d.from ? ` (copy of ${d.from.namespace}/${d.from.name})` : ''}`);
    try {
      const created = await ctx.kube.create(d.object);
      return { uid: created.metadata?.uid };
    } catch (e) {
      // Created by an earlier attempt whose answer was lost.
      if (statusOf(e) === 409) return { alreadyExists: true };
      throw e;
    }
  },
  async reconcile(ctx, { action: { details: d } }) {
    const live = await ctx.kube.get(refOf(d.object), d.object.metadata?.namespace, d.object.metadata!.name!);
    if (live?.metadata?.labels?.[d.ownerLabel.key] === d.ownerLabel.value) return { applied: true, result: { uid: live.metadata?.uid } };
    return { applied: false, reason: live ? `${describe(d.object)} exists without ${d.ownerLabel.key}=${d.ownerLabel.value}` : `${describe(d.object)} does not exist` };
  },
  async undo(ctx, { action: { details: d } }) {
    const ref = refOf(d.object);
    const live = await ctx.kube.get(ref, d.object.metadata?.namespace, d.object.metadata!.name!);
    if (!live) return `${describe(d.object)}: not there, nothing to remove`;
    // Only an object that still says it is ours is removed; anything else is the operator's.
    if (live.metadata?.labels?.[d.ownerLabel.key] !== d.ownerLabel.value) {
      ctx.log.warn(`${describe(d.object)} no longer carries ${d.ownerLabel.key}=${d.ownerLabel.value}; left in place`);
      return `${describe(d.object)}: left in place (no longer ours)`;
    }
    ctx.progress(`removing ${describe(d.object)}`);
    await ctx.kube.delete(ref, d.object.metadata?.namespace, d.object.metadata!.name!, { preconditions: { uid: live.metadata?.uid } });
    return `${describe(d.object)} removed`;
  },
  async verifyUndo(ctx, { action: { details: d } }) {
    const live = await ctx.kube.get(refOf(d.object), d.object.metadata?.namespace, d.object.metadata!.name!);
    if (live && live.metadata?.labels?.[d.ownerLabel.key] === d.ownerLabel.value && !live.metadata?.deletionTimestamp) return { ok: false, evidence: [], failures: [`${describe(d.object)} (our copy) still exists`] };
    return { ok: true, evidence: [`${describe(d.object)} (copy) is gone`], failures: [] };
  },
};
