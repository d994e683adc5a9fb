/**
 * `vmss-remove-identities`: one PATCH removing the given user-assigned identities from a scale
 * set (the workload identity runbook's last step takes off the identities AAD Pod Identity
 * needed there: those MIC or the managed-mode `assign` step put on it). Every other identity
 * (the kubelet identity, add-on identities, anything assigned for another purpose) is kept: the
 * gateway sends `null` only for the ids given.
 *
 * Undo puts back exactly the removed ids that were on the scale set when this action first
 * captured it, never anything else.
 */
import type { CheckResult } from '../../engine/step.ts';
import type { Executor } from '../lib/context.ts';

/** Details of a `vmss-remove-identities` action. */
export interface VmssRemoveIdentitiesDetails {
  pool: string;
  resourceGroup: string;
  vmss: string;
  /** Identity resource ids to remove (only those present when planned), sorted. */
  remove: string[];
}

/** Pre-state: the user-assigned identities the scale set carried before. */
export interface VmssRemovePreState {
  resourceGroup: string;
  vmss: string;
  before: string[];
}

const lower = (ids: Iterable<string>) => new Set([...ids].map((i) => i.toLowerCase()));

/** The planned ids that were there before the first attempt (undo puts back these and only these). */
function toRestore(pre: VmssRemovePreState, history: readonly { details?: unknown }[], d: VmssRemoveIdentitiesDetails): string[] {
  const before = lower(pre.before);
  const planned = [...history.flatMap((r) => (r.details as VmssRemoveIdentitiesDetails | undefined)?.remove ?? []), ...d.remove];
  return [...new Map(planned.filter((id) => before.has(id.toLowerCase())).map((id) => [id.toLowerCase(), id])).values()].sort();
}

export const vmssRemoveIdentities: Executor<VmssRemoveIdentitiesDetails, VmssRemovePreState, { removed: string[]; notPresent: string[]; patches: number }> = {
  kind: 'vmss-remove-identities',
  async capture(ctx, { details: d }) {
    const set = await ctx.azure.getScaleSet(d.resourceGroup, d.vmss);
    if (!set) throw new Error(`scale set ${d.vmss} no longer exists in ${d.resourceGroup}`);
    return { resourceGroup: d.resourceGroup, vmss: d.vmss, before: Object.keys(set.userAssignedIdentities).sort() };
  },
  async do(ctx, { action: { details: d } }) {
    ctx.progress(`vmss ${d.vmss}: removing ${d.remove.length} identit${d.remove.length === 1 ? 'y' : 'ies'}`);
    const r = await ctx.azure.unassignIdentities(d.resourceGroup, d.vmss, d.remove);
    return { removed: r.removed, notPresent: r.notPresent, patches: r.patches };
  },
  async reconcile(ctx, { action: { details: d } }) {
    const set = await ctx.azure.getScaleSet(d.resourceGroup, d.vmss);
    if (!set) return { applied: false, reason: `scale set ${d.vmss} does not exist` };
    const have = lower(Object.keys(set.userAssignedIdentities));
    const still = d.remove.filter((id) => have.has(id.toLowerCase()));
    if (still.length) return { applied: false, reason: `vmss ${d.vmss} still carries ${still.length} of the planned identities` };
    return { applied: true, result: { removed: d.remove, notPresent: [], patches: 0 } };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre, history }) {
    if (!pre) return `vmss ${d.vmss}: nothing recorded to undo`;
    const ids = toRestore(pre, history, d);
    ctx.progress(`vmss ${pre.vmss}: putting back ${ids.length} identities`);
    const r = await ctx.azure.assignIdentities(pre.resourceGroup, pre.vmss, ids);
    return `vmss ${pre.vmss}: ${r.added.length} identit${r.added.length === 1 ? 'y' : 'ies'} put back`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre, history }): Promise<CheckResult> {
    if (!pre) return { ok: true, evidence: [], failures: [] };
    const set = await ctx.azure.getScaleSet(pre.resourceGroup, pre.vmss);
    if (!set) return { ok: false, evidence: [], failures: [`vmss ${pre.vmss} not found`] };
    const have = lower(Object.keys(set.userAssignedIdentities));
    const missing = toRestore(pre, history, d).filter((id) => !have.has(id.toLowerCase()));
    return missing.length
      ? { ok: false, evidence: [], failures: [`vmss ${pre.vmss}: identities removed by this step are not back: ${missing.join(', ')}`] }
      : { ok: true, evidence: [`vmss ${pre.vmss}: the ${toRestore(pre, history, d).length} removed identities are back`], failures: [] };
  },
};
