/**
 * Deletes with a saved copy.
 *
 * `delete-object`: deletes one object (background propagation) after its full copy went into the
 * journal as the pre-state. Writes: one DELETE. Undo re-creates it from the copy without its
 * server-set fields, unless it exists again.
 *
 * `delete-objects`: the same for many objects of one kind (every AzureAssignedIdentity): clears
 * each one's finalizers first when asked (with MIC gone nothing else would, and the delete would
 * hang), deletes them eight at a time and waits until they are gone. Writes: one DELETE per
 * object plus one PATCH per object with finalizers. Undo waits for the kind's CRD to be
 * established (it may come back with the same rollback) and re-creates them.
 */
import pLimit from 'p-limit';
import type { KubeGateway, KubeObject, ResourceRef } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import type { Ctx, Executor } from '../lib/context.ts';
import { POLL_MS, remainingMs, statusOf } from '../lib/util.ts';

/** Deletes (and re-creations) in flight at once. */
export const PARALLEL_DELETES = 8;

/** Metadata fields the API server sets; a re-created object must not carry them. */
const SERVER_METADATA = ['uid', 'resourceVersion', 'creationTimestamp', 'managedFields', 'generation', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds'];

/**
 * A saved object made fit for re-creation: server-set metadata removed; `status` dropped
 * except on kinds whose status is plain data written with the object (the aadpodidentity CRDs
 * have no status subresource, and MIC reads `status.status` of an AzureAssignedIdentity).
 */
export function stripServerFields(obj: KubeObject): KubeObject {
  const copy = structuredClone(obj);
  const meta = (copy.metadata ?? {}) as Record<string, unknown>;
  for (const f of SERVER_METADATA) delete meta[f];
  const keepStatus = copy.apiVersion?.startsWith('aadpodidentity.k8s.io/');
  if (!keepStatus) delete copy.status;
  if (copy.kind === 'CustomResourceDefinition') delete copy.status;
  return copy;
}

/** Creates the saved object unless it exists again; true when created. */
export async function recreate(kube: KubeGateway, saved: KubeObject): Promise<boolean> {
  const ref = { apiVersion: saved.apiVersion!, kind: saved.kind! };
  const existing = await kube.get(ref, saved.metadata?.namespace, saved.metadata!.name!);
  if (existing && !existing.metadata?.deletionTimestamp) return false;
  try {
    await kube.create(stripServerFields(saved));
    return true;
  } catch (e) {
    if (statusOf(e) === 409) return false;
    throw e;
  }
}

function label(ref: ResourceRef, namespace: string | undefined, name: string): string {
  return `${ref.kind.toLowerCase()} ${namespace ? `${namespace}/` : ''}${name}`;
}

/** Details of a `delete-object` action (fingerprinted: names only). */
export interface DeleteObjectDetails {
  ref: ResourceRef;
  namespace?: string;
  name: string;
}

/** Pre-state: the object as it was, in full (absent when it was already gone). */
export interface SavedObject {
  object?: KubeObject;
}

export const deleteObject: Executor<DeleteObjectDetails, SavedObject, { result: string }> = {
  kind: 'delete-object',
  async capture(ctx, { details: d }) {
    const obj = await ctx.kube.get(d.ref, d.namespace, d.name);
    return obj ? { object: obj } : {};
  },
  async do(ctx, { action: { details: d } }) {
    ctx.progress(`delete ${label(d.ref, d.namespace, d.name)}`);
    return { result: await ctx.kube.delete(d.ref, d.namespace, d.name, { propagationPolicy: 'Background' }) };
  },
  async reconcile(ctx, { action: { details: d } }) {
    const live = await ctx.kube.get(d.ref, d.namespace, d.name);
    if (live && !live.metadata?.deletionTimestamp) return { applied: false, reason: `${label(d.ref, d.namespace, d.name)} still exists` };
    return { applied: true, result: { result: 'deleted' } };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (!pre?.object) return `${label(d.ref, d.namespace, d.name)}: no copy saved (it was already gone)`;
    if (pre.object.kind === 'AzureAssignedIdentity') await waitForCrd(ctx);
    const created = await recreate(ctx.kube, pre.object);
    return `${label(d.ref, d.namespace, d.name)} ${created ? 're-created from the journal' : 'exists again'}`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (!pre?.object) return { ok: true, evidence: [], failures: [] };
    const live = await ctx.kube.get(d.ref, d.namespace, d.name);
    return live ? { ok: true, evidence: [`${label(d.ref, d.namespace, d.name)}: back`], failures: [] } : { ok: false, evidence: [], failures: [`${pre.object.kind} ${d.namespace ? `${d.namespace}/` : ''}${d.name} was not re-created`] };
  },
};

/** The AzureAssignedIdentity CRD: re-created objects of it need it established. */
export const AAI_CRD = 'azureassignedidentities.aadpodidentity.k8s.io';

/** A re-created CRD is usable once the API server has established it. */
async function waitForCrd(ctx: Ctx, name = AAI_CRD): Promise<void> {
  await ctx.kube.waitFor(
    async () => {
      const crd = await ctx.kube.get(KINDS.CustomResourceDefinition, undefined, name);
      const conds = (crd?.status as { conditions?: { type?: string; status?: string }[] } | undefined)?.conditions ?? [];
      return Boolean(crd) && (conds.length === 0 || conds.some((c) => c.type === 'Established' && c.status === 'True'));
    },
    { describe: `CRD ${name} to be established`, timeoutMs: Math.min(remainingMs(ctx.deadline), 60_000), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

/** Details of a `delete-objects` action. */
export interface DeleteObjectsDetails {
  ref: ResourceRef;
  /** The objects, sorted. */
  objects: { namespace: string; name: string }[];
  /** Clear `metadata.finalizers` before each delete. */
  clearFinalizers: boolean;
  /** The CRD of `ref` (undo waits for it to be established). */
  crd?: string;
}

/** Pre-state: full copies of the objects as they were. */
export interface SavedObjects {
  objects: KubeObject[];
}

async function listWanted(ctx: Ctx, d: DeleteObjectsDetails): Promise<KubeObject[]> {
  const wanted = new Set(d.objects.map((o) => `${o.namespace}/${o.name}`));
  return (await ctx.kube.list(d.ref)).filter((a) => wanted.has(`${a.metadata?.namespace}/${a.metadata?.name}`));
}

async function awaitGone(ctx: Ctx, d: DeleteObjectsDetails): Promise<void> {
  if (ctx.dryRun !== 'none') return;
  await ctx.kube.waitFor(
    async (note) => {
      const left = (await listWanted(ctx, d)).length;
      note(`${left} left`);
      return left === 0;
    },
    { describe: `${d.ref.kind} objects to be gone`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

export const deleteObjects: Executor<DeleteObjectsDetails, SavedObjects, { deleted: number }> = {
  kind: 'delete-objects',
  async capture(ctx, { details: d }) {
    return { objects: await listWanted(ctx, d) };
  },
  async do(ctx, { action: { details: d } }) {
    const live = await listWanted(ctx, d);
    const limit = pLimit(PARALLEL_DELETES);
    let done = 0;
    await Promise.all(
      live.map((a) =>
        limit(async () => {
          const ns = a.metadata!.namespace!;
          const name = a.metadata!.name!;
          if (d.clearFinalizers && a.metadata?.finalizers?.length) {
            try {
              await ctx.kube.patch(d.ref, ns, name, { metadata: { finalizers: null } }, 'merge');
            } catch (e) {
              if (statusOf(e) !== 404) throw e;
            }
          }
          await ctx.kube.delete(d.ref, ns, name);
          done++;
          if (done % 25 === 0) ctx.progress(`deleted ${done}/${live.length} ${d.ref.kind} objects`);
        }),
      ),
    );
    await awaitGone(ctx, d);
    return { deleted: live.length };
  },
  async reconcile(ctx, { action: { details: d } }) {
    const left = await listWanted(ctx, d);
    if (left.length) return { applied: false, reason: `${left.length} of ${d.objects.length} ${d.ref.kind} objects still exist` };
    return { applied: true, result: { deleted: d.objects.length } };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (!pre?.objects.length) return `${d.ref.kind}: no copies saved`;
    if (d.crd) await waitForCrd(ctx, d.crd);
    const limit = pLimit(PARALLEL_DELETES);
    const created = (await Promise.all(pre.objects.map((o) => limit(() => recreate(ctx.kube, o))))).filter(Boolean).length;
    ctx.progress(`re-created ${created} ${d.ref.kind} objects`);
    return `re-created ${created} ${d.ref.kind} object${created === 1 ? '' : 's'} from the journal`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
    const objects = pre?.objects ?? [];
    const live = new Set((await ctx.kube.list(d.ref)).map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`));
    const missing = objects.filter((o) => !live.has(`${o.metadata?.namespace}/${o.metadata?.name}`));
    return {
      ok: missing.length === 0,
      evidence: [`${objects.length} ${d.ref.kind}: ${objects.length - missing.length}/${objects.length} back`],
      failures: missing.map((o) => `${o.kind} ${o.metadata?.namespace}/${o.metadata?.name} was not re-created`),
    };
  },
};
