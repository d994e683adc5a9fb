/**
 * Scale set executors.
 *
 * `vmss-add-identities`: one PATCH (chunks of 150) adding only the identities the scale set does
 * not carry yet; identities already there (the kubelet identity, add-ons, anything assigned by
 * hand or by MIC) are never touched. Undo removes exactly what this action set out to add over
 * every attempt, never an identity that was there before it first ran.
 *
 * `vmss-upgrade-instances`: `manualupgrade` of the instances that report
 * `latestModelApplied: false`, in small batches, each awaited. Only planned with the explicit
 * `--upgrade-instances` flag: an identity added to a scale set needs no instance update, and a
 * manual upgrade also rolls out unrelated pending model changes. It cannot be undone.
 */
import type { ScaleSetInstance } from '../../azure/gateway.ts';
import type { Executor } from '../lib/context.ts';
import { POLL_MS, remainingMs } from '../lib/util.ts';

/** Details of a `vmss-add-identities` action. */
export interface VmssAddIdentitiesDetails {
  pool: string;
  resourceGroup: string;
  vmss: string;
  /** Identity resource ids to add (only those missing when planned). */
  add: string[];
}

/** Pre-state: the identities the scale set carried before. */
export interface VmssPreState {
  resourceGroup: string;
  vmss: string;
  before: string[];
}

function lowerSet(ids: Iterable<string>): Set<string> {
  return new Set([...ids].map((i) => i.toLowerCase()));
}

/** Every id any attempt of this action set out to add (a resumed attempt plans only what was still missing). */
function intendedIds(history: readonly { details?: unknown }[], current: VmssAddIdentitiesDetails): string[] {
  const all = [...history.flatMap((r) => (r.details as VmssAddIdentitiesDetails | undefined)?.add ?? []), ...current.add];
  return [...new Map(all.map((id) => [id.toLowerCase(), id])).values()];
}

export const vmssAddIdentities: Executor<VmssAddIdentitiesDetails, VmssPreState, { added: string[]; alreadyPresent: string[]; patches: number; identityType?: string }> = {
  kind: 'vmss-add-identities',
  async capture(ctx, { details: d }) {
    const set = await ctx.azure.getScaleSet(d.resourceGroup, d.vmss);
    if (!set) throw new Error(`scale set ${d.vmss} no longer exists in ${d.resourceGroup}`);
    return { resourceGroup: d.resourceGroup, vmss: d.vmss, before: Object.keys(set.userAssignedIdentities).sort() };
  },
  async do(ctx, { action: { details: d } }) {
    ctx.progress(`vmss ${d.vmss}: adding ${d.add.length} identit${d.add.length === 1 ? 'y' : 'ies'}`);
    const r = await ctx.azure.assignIdentities(d.resourceGroup, d.vmss, d.add);
    return { added: r.added, alreadyPresent: r.alreadyPresent, patches: r.patches, identityType: r.identityType };
  },
  async reconcile(ctx, { action: { details: d } }) {
    const set = await ctx.azure.getScaleSet(d.resourceGroup, d.vmss);
    if (!set) return { applied: false, reason: `scale set ${d.vmss} does not exist` };
    const have = lowerSet(Object.keys(set.userAssignedIdentities));
    const missing = d.add.filter((id) => !have.has(id.toLowerCase()));
    if (missing.length) return { applied: false, reason: `vmss ${d.vmss} lacks ${missing.length} of the planned identities` };
    return { applied: true, result: { added: d.add, alreadyPresent: [], patches: 0 } };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre, history }) {
    if (!pre) return `vmss ${d.vmss}: nothing recorded to undo`;
    const before = lowerSet(pre.before);
    const added = history.filter((r) => r.status === 'done').flatMap((r) => (r.result as { added?: string[] } | undefined)?.added ?? []);
    // Only what this action added: never an id that was on the scale set before it first ran.
    const remove = [...new Map([...intendedIds(history, d), ...added].filter((id) => !before.has(id.toLowerCase())).map((id) => [id.toLowerCase(), id])).values()];
    ctx.progress(`vmss ${pre.vmss}: removing ${remove.length} identities this step added`);
    const r = await ctx.azure.unassignIdentities(pre.resourceGroup, pre.vmss, remove);
    return `vmss ${pre.vmss}: ${r.removed.length} identit${r.removed.length === 1 ? 'y' : 'ies'} removed`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre, history }) {
    if (!pre) return { ok: true, evidence: [], failures: [] };
    const set = await ctx.azure.getScaleSet(pre.resourceGroup, pre.vmss);
    if (!set) return { ok: false, evidence: [], failures: [`vmss ${pre.vmss} not found`] };
    const have = lowerSet(Object.keys(set.userAssignedIdentities));
    const before = lowerSet(pre.before);
    const lostBefore = pre.before.filter((id) => !have.has(id.toLowerCase()));
    const stillAdded = intendedIds(history, d).filter((id) => !before.has(id.toLowerCase()) && have.has(id.toLowerCase()));
    const failures: string[] = [];
    if (lostBefore.length) failures.push(`vmss ${pre.vmss}: identities that were there before are missing: ${lostBefore.join(', ')}`);
    if (stillAdded.length) failures.push(`vmss ${pre.vmss}: identities this step added are still there: ${stillAdded.join(', ')}`);
    return { ok: failures.length === 0, evidence: failures.length ? [] : [`vmss ${pre.vmss}: back to its ${pre.before.length} identities from before`], failures };
  },
};

/** `manualupgrade` batches: at most this share of a scale set's instances… */
export const UPGRADE_BATCH_SHARE = 0.2;
/** …and never more than this many instances at once. */
export const UPGRADE_BATCH_MAX = 5;

/** Instances per `manualupgrade` call for a scale set of `instances` instances. */
export function upgradeBatchSize(instances: number): number {
  return Math.max(1, Math.min(UPGRADE_BATCH_MAX, Math.ceil(instances * UPGRADE_BATCH_SHARE)));
}

/** Details of a `vmss-upgrade-instances` action. */
export interface VmssUpgradeDetails {
  resourceGroup: string;
  vmss: string;
}

export const vmssUpgradeInstances: Executor<VmssUpgradeDetails, { instances: string[] }, { upgraded: string[] }> = {
  kind: 'vmss-upgrade-instances',
  async capture(ctx, { details: d }) {
    const instances = await ctx.azure.listInstances(d.resourceGroup, d.vmss);
    return { instances: instances.filter((i) => i.latestModelApplied === false).map((i) => i.instanceId) };
  },
  async do(ctx, { action: { details: d } }) {
    const instances = await ctx.azure.listInstances(d.resourceGroup, d.vmss);
    const stale = instances.filter((i) => i.latestModelApplied === false).map((i) => i.instanceId);
    const size = upgradeBatchSize(instances.length);
    if (stale.length) ctx.log.info(`vmss ${d.vmss}: ${stale.length} instance(s) report latestModelApplied=false; manualupgrade in batches of ${size}`);
    for (let i = 0; i < stale.length; i += size) {
      const batch = stale.slice(i, i + size);
      ctx.progress(`vmss ${d.vmss}: manualupgrade of instances ${batch.join(', ')}`);
      await ctx.azure.manualUpgrade(d.resourceGroup, d.vmss, batch);
      if (ctx.dryRun !== 'none') continue;
      // The next batch starts only once this one runs the latest model again.
      await ctx.kube.waitFor(
        async (note) => {
          const now = await ctx.azure.listInstances(d.resourceGroup, d.vmss);
          const pending = now.filter((x: ScaleSetInstance) => batch.includes(x.instanceId) && (x.latestModelApplied === false || (x.provisioningState ?? 'Succeeded') !== 'Succeeded'));
          note(`${pending.length} of ${batch.length} instances still upgrading`);
          return pending.length === 0;
        },
        { describe: `manualupgrade of vmss ${d.vmss} instances ${batch.join(', ')}`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS * 2, signal: ctx.signal },
      );
    }
    return { upgraded: stale };
  },
  async reconcile() {
    // Upgrading again only touches instances still behind the model: repeat it.
    return { applied: false, reason: 'instances are re-read and upgraded where still behind' };
  },
  async undo(_ctx, { action: { details: d } }) {
    return `vmss ${d.vmss}: instance upgrades stay (a manual upgrade cannot be undone)`;
  },
  async verifyUndo() {
    return { ok: true, evidence: [], failures: [] };
  },
};
