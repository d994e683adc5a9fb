/**
 * Step 2, `assign`: first protect every user-assigned identity from MIC's garbage collection
 * (its client id in MIC's `--immutable-user-msis`, then MIC's rollout awaited), then add to each
 * node pool's scale set every identity its pods use: one PATCH per scale set carrying only the
 * missing ids (chunks of 150), scale sets in parallel with a bound. Identities already there
 * (the kubelet identity, add-ons, anything assigned by hand or by MIC) are never touched.
 */
import pLimit from 'p-limit';
import type { AzureGateway, ScaleSetInstance } from '../azure/gateway.ts';
import type { KubeGateway } from '../kube/gateway.ts';
import type { CheckResult, PlannedAction, Step, StepOutcome, StepPlan } from '../engine/step.ts';
import { inventoryFor, podIdentityFor, withScopedGateways, type Ctx } from './01-inventory.ts';
import type { InventoryDocument } from './inventory-model.ts';
import { POLL_MS, parseImmutableUserMsis, remainingMs, waitForMicLeader, withImmutableUserMsis } from './pod-identity.ts';
import { KINDS } from '../kube/kinds.ts';

/** Scale sets patched at the same time. */
export const VMSS_CONCURRENCY = 4;
/** `manualupgrade` batches: at most this share of a scale set's instances… */
export const UPGRADE_BATCH_SHARE = 0.2;
/** …and never more than this many instances at once. */
export const UPGRADE_BATCH_MAX = 5;

export const PROTECT_ACTION_ID = 'mic/protect-identities';

/** Details of the protect action. */
export interface ProtectDetails {
  namespace: string;
  name: string;
  container: string;
  containerIndex: number;
  /** Client ids added to `--immutable-user-msis`. */
  add: string[];
}

/** Pre-state of the protect action: MIC's container args as they were. */
export interface ProtectPreState {
  namespace: string;
  name: string;
  container: string;
  containerIndex: number;
  args: string[] | null;
}

/** Details of one scale set's action. */
export interface VmssDetails {
  pool: string;
  resourceGroup: string;
  vmss: string;
  /** Identity resource ids to add (only those missing when planned). */
  add: string[];
}

/** Pre-state of one scale set's action: the identities it carried before. */
export interface VmssPreState {
  resourceGroup: string;
  vmss: string;
  before: string[];
}

/** Journal data `assign.vmss`: every id this step set out to add per action id (kept across resumed attempts). */
type IntendedAdds = Record<string, { resourceGroup: string; vmss: string; ids: string[] }>;

function vmssActionId(vmss: string): string {
  return `vmss/${vmss}/add-identities`;
}

function parseScaleSetId(id: string): { resourceGroup: string; name: string } {
  const m = /\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)$/i.exec(id);
  if (!m) throw new Error(`${id} is not a VMSS resource id`);
  return { resourceGroup: m[1], name: m[2] };
}

/** Client ids of every user-assigned identity in the inventory (the ones MIC could garbage-collect). */
export function protectedClientIds(inv: InventoryDocument): string[] {
  const ids = inv.identities.filter((i) => i.type === 0 && i.clientId).map((i) => i.clientId!);
  return [...new Map(ids.map((id) => [id.toLowerCase(), id])).values()].sort();
}

/** Per pool with a scale set: the identity resource ids the inventory gives it. */
export function wantedByPool(inv: InventoryDocument): { pool: string; resourceGroup: string; vmss: string; ids: string[] }[] {
  const out: { pool: string; resourceGroup: string; vmss: string; ids: string[] }[] = [];
  for (const p of inv.pools) {
    if (!p.scaleSet) continue;
    const ids = inv.identities.filter((i) => i.type === 0 && i.resourceId && (i.pools ?? []).includes(p.name)).map((i) => i.resourceId!);
    const unique = [...new Map(ids.map((id) => [id.toLowerCase(), id])).values()].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
    if (!unique.length) continue;
    const { resourceGroup, name } = parseScaleSetId(p.scaleSet);
    out.push({ pool: p.name, resourceGroup, vmss: name, ids: unique });
  }
  return out.sort((a, b) => a.vmss.localeCompare(b.vmss));
}

function nameOf(inv: InventoryDocument, resourceId: string): string {
  return inv.identities.find((i) => i.resourceId?.toLowerCase() === resourceId.toLowerCase())?.name ?? resourceId.split('/').pop() ?? resourceId;
}

function lowerSet(ids: Iterable<string>): Set<string> {
  return new Set([...ids].map((i) => i.toLowerCase()));
}

/** JSON patch replacing one container's args, guarded by a test of the container's name (the index must still be that container). */
export function argsPatch(containerIndex: number, container: string, args: string[] | null): unknown[] {
  const base = `/spec/template/spec/containers/${containerIndex}`;
  return [{ op: 'test', path: `${base}/name`, value: container }, args === null ? { op: 'remove', path: `${base}/args` } : { op: 'add', path: `${base}/args`, value: args }];
}

function helmImmutableValue(ids: string[]): string {
  return `mic.immutableUserMSIs={${ids.join(',')}}`;
}

/** Adds `manualupgrade` only for instances that report `latestModelApplied: false`, in small batches, each awaited. */
async function upgradeStaleInstances(ctx: Ctx, resourceGroup: string, vmss: string): Promise<number> {
  const instances = await ctx.azure.listInstances(resourceGroup, vmss);
  const stale = instances.filter((i) => i.latestModelApplied === false).map((i) => i.instanceId);
  if (!stale.length) return 0;
  const size = Math.max(1, Math.min(UPGRADE_BATCH_MAX, Math.ceil(instances.length * UPGRADE_BATCH_SHARE)));
  ctx.log.info(`vmss ${vmss}: ${stale.length} instance(s) report latestModelApplied=false; manualupgrade in batches of ${size}`);
  for (let i = 0; i < stale.length; i += size) {
    const batch = stale.slice(i, i + size);
    ctx.progress(`vmss ${vmss}: manualupgrade of instances ${batch.join(', ')}`);
    await ctx.azure.manualUpgrade(resourceGroup, vmss, batch);
    // The next batch starts only once this one runs the latest model again.
    await ctx.kube.waitFor(
      async (note) => {
        const now = await ctx.azure.listInstances(resourceGroup, vmss);
        const pending = now.filter((x: ScaleSetInstance) => batch.includes(x.instanceId) && (x.latestModelApplied === false || (x.provisioningState ?? 'Succeeded') !== 'Succeeded'));
        note(`${pending.length} of ${batch.length} instances still upgrading`);
        return pending.length === 0;
      },
      { describe: `manualupgrade of vmss ${vmss} instances ${batch.join(', ')}`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS * 2 },
    );
  }
  return stale.length;
}

const assign: Step<KubeGateway, AzureGateway> = {
  id: 'assign',
  title: 'Protect identities in MIC and assign them to every scale set',

  async plan(ctx): Promise<StepPlan> {
    const inv = await inventoryFor(ctx);
    const { mic } = await podIdentityFor(ctx);
    const actions: PlannedAction[] = [];
    const notes: string[] = [];
    const clientIds = protectedClientIds(inv);
    if (ctx.options.skipProtect === true) {
      notes.push('protect skipped (test switch): MIC may garbage-collect identities while it still runs');
    } else if (!mic) {
      notes.push('no MIC Deployment: nothing to protect');
    } else {
      const current = lowerSet(parseImmutableUserMsis(mic.args));
      const add = clientIds.filter((c) => !current.has(c.toLowerCase()));
      if (add.length) {
        const names = add.map((c) => inv.identities.find((i) => i.clientId === c)?.name ?? c);
        actions.push({
          id: PROTECT_ACTION_ID,
          op: '~',
          target: `deployment ${mic.namespace}/${mic.name}`,
          summary: `--immutable-user-msis: ${names.map((n) => `+ ${n}`).join(', ')}${current.size ? ` (keeps ${current.size} existing)` : ''}`,
          api: 'kube',
          writes: 1,
          details: { namespace: mic.namespace, name: mic.name, container: mic.container, containerIndex: mic.containerIndex, add } satisfies ProtectDetails,
        });
      }
      if (mic.install === 'helm') {
        notes.push(`MIC is a Helm install: the protection is the chart value ${helmImmutableValue([...parseImmutableUserMsis(mic.args), ...add])}; a helm upgrade without it removes the protection`);
      }
    }
    ctx.progress('reading the identities on each scale set');
    const wanted = wantedByPool(inv);
    const limit = pLimit(VMSS_CONCURRENCY);
    const planned = await Promise.all(
      wanted.map((w) =>
        limit(async () => {
          const set = await ctx.azure.getScaleSet(w.resourceGroup, w.vmss);
          if (!set) throw new Error(`scale set ${w.vmss} of pool ${w.pool} does not exist in ${w.resourceGroup}; re-run the inventory step`);
          const have = Object.keys(set.userAssignedIdentities);
          const haveLower = lowerSet(have);
          const add = w.ids.filter((id) => !haveLower.has(id.toLowerCase()));
          return { w, add, have };
        }),
      ),
    );
    for (const { w, add, have } of planned) {
      if (!add.length) {
        notes.push(`vmss ${w.vmss} (pool ${w.pool}) already carries its ${w.ids.length} identit${w.ids.length === 1 ? 'y' : 'ies'}`);
        continue;
      }
      actions.push({
        id: vmssActionId(w.vmss),
        op: '~',
        target: `vmss ${w.vmss}`,
        summary: `identities: ${add.map((id) => `+ ${nameOf(inv, id)}`).join(', ')} (keeps ${have.length} existing)`,
        api: 'arm',
        writes: Math.ceil(add.length / 150),
        details: { pool: w.pool, resourceGroup: w.resourceGroup, vmss: w.vmss, add } satisfies VmssDetails,
      });
    }
    return { stepId: 'assign', actions, blockers: [], notes };
  },

  async apply(ctx, plan): Promise<StepOutcome> {
    const parts: string[] = [];
    const protect = plan.actions.find((a) => a.id === PROTECT_ACTION_ID);
    if (protect) {
      const d = protect.details as ProtectDetails;
      const live = await ctx.kube.get(KINDS.Deployment, d.namespace, d.name);
      if (!live) throw new Error(`deployment ${d.namespace}/${d.name} (MIC) disappeared; re-run the inventory step`);
      const container = (live.spec as { template: { spec: { containers: { name: string; args?: string[] }[] } } }).template.spec.containers[d.containerIndex];
      if (container?.name !== d.container) throw new Error(`deployment ${d.namespace}/${d.name} changed: container ${d.containerIndex} is no longer ${d.container}; plan again`);
      const pre: ProtectPreState = { namespace: d.namespace, name: d.name, container: d.container, containerIndex: d.containerIndex, args: container.args ? [...container.args] : null };
      const args = withImmutableUserMsis(container.args ?? [], d.add);
      ctx.progress(`protecting ${d.add.length} identities in MIC (${d.namespace}/${d.name})`);
      await ctx.journal.runAction(protect, pre, async () => {
        const patched = await ctx.kube.patch(KINDS.Deployment, d.namespace, d.name, argsPatch(d.containerIndex, d.container, args), 'json');
        return { generation: patched.metadata?.generation };
      });
      // MIC must run with the new args before any identity is added by hand, or its GC can still remove them;
      // and a leader must serve again, or pods started meanwhile wait for their identity.
      if (ctx.dryRun === 'none') {
        ctx.progress(`waiting for MIC ${d.namespace}/${d.name} to roll out and elect a leader`);
        const { leader, released } = await waitForMicLeader(ctx.kube, d, ctx.deadline, ctx.signal);
        if (released.length) ctx.log.info(`MIC lease of replaced leader ${released.join(', ')} handed over at once`);
        if (leader) ctx.log.info(`MIC leader ${leader} reports Active with the protected ids`);
      }
      parts.push(`${d.add.length} identities ${ctx.dryRun !== 'none' ? 'would be ' : ''}protected in MIC`);
    } else if (ctx.dryRun === 'none' && ctx.options.skipProtect !== true) {
      // Protected already, perhaps by an attempt that stopped during MIC's rollout: an old MIC must be gone before identities are added.
      const { mic } = await podIdentityFor(ctx);
      if (mic && (mic.replicas ?? 1) > 0) {
        ctx.progress(`waiting for MIC ${mic.namespace}/${mic.name} to run with the protected ids`);
        await waitForMicLeader(ctx.kube, mic, ctx.deadline, ctx.signal);
      }
    }

    const vmssActions = plan.actions.filter((a) => a.id.startsWith('vmss/'));
    // Record every id this step sets out to add before the first write: a resumed attempt's pre-state is not kept, this is.
    const intended: IntendedAdds = { ...(ctx.journal.getData<IntendedAdds>('intendedAdds') ?? {}) };
    for (const a of vmssActions) {
      const d = a.details as VmssDetails;
      const prev = intended[a.id]?.ids ?? [];
      intended[a.id] = { resourceGroup: d.resourceGroup, vmss: d.vmss, ids: [...new Map([...prev, ...d.add].map((id) => [id.toLowerCase(), id])).values()] };
    }
    if (vmssActions.length) await ctx.journal.setData('intendedAdds', intended);

    const limit = pLimit(VMSS_CONCURRENCY);
    let done = 0;
    let upgraded = 0;
    const results = await Promise.all(
      vmssActions.map((a) =>
        limit(async () => {
          const d = a.details as VmssDetails;
          const set = await ctx.azure.getScaleSet(d.resourceGroup, d.vmss);
          if (!set) throw new Error(`scale set ${d.vmss} no longer exists in ${d.resourceGroup}`);
          const pre: VmssPreState = { resourceGroup: d.resourceGroup, vmss: d.vmss, before: Object.keys(set.userAssignedIdentities).sort() };
          const result = await ctx.journal.runAction(a, pre, async () => {
            const r = await ctx.azure.assignIdentities(d.resourceGroup, d.vmss, d.add);
            const n = r.dryRun ? 0 : await upgradeStaleInstances(ctx, d.resourceGroup, d.vmss);
            return { added: r.added, alreadyPresent: r.alreadyPresent, patches: r.patches, identityType: r.identityType, upgradedInstances: n };
          });
          upgraded += result.upgradedInstances;
          ctx.progress(`scale sets patched: ${++done}/${vmssActions.length}`);
          return result;
        }),
      ),
    );
    const added = results.reduce((n, r) => n + r.added.length, 0);
    if (ctx.dryRun !== 'none') {
      // Azure writes are not sent in a dry run: say exactly which PATCHes would be.
      const lines = vmssActions.map((a) => `vmss ${(a.details as VmssDetails).vmss}: ${(a.details as VmssDetails).add.map((id) => `+ ${id.split('/').pop()}`).join(', ')}`);
      parts.push(lines.length ? `would PATCH ${lines.join('; ')}` : 'no scale set to patch');
      return { summary: parts.join('; ') };
    }
    parts.push(`${results.length} scale set(s) patched, ${added} identit${added === 1 ? 'y' : 'ies'} added${upgraded ? `, ${upgraded} instance(s) upgraded` : ''}`);
    return { summary: parts.join('; ') || 'nothing to change' };
  },

  async check(ctx): Promise<CheckResult> {
    const inv = await inventoryFor(ctx);
    const evidence: string[] = [];
    const failures: string[] = [];
    for (const w of wantedByPool(inv)) {
      const set = await ctx.azure.getScaleSet(w.resourceGroup, w.vmss);
      if (!set) {
        failures.push(`vmss ${w.vmss} (pool ${w.pool}) not found in ${w.resourceGroup}`);
        continue;
      }
      const byLower = new Map(Object.entries(set.userAssignedIdentities).map(([k, v]) => [k.toLowerCase(), v]));
      const bad: string[] = [];
      for (const id of w.ids) {
        const entry = byLower.get(id.toLowerCase());
        if (!entry) bad.push(`${nameOf(inv, id)} missing`);
        else if (!entry.clientId) bad.push(`${nameOf(inv, id)} has no client id yet`);
      }
      if (bad.length) failures.push(`vmss ${w.vmss} (pool ${w.pool}): ${bad.join(', ')}; run podid-migrate apply --step assign again`);
      else evidence.push(`vmss ${w.vmss} (pool ${w.pool}): ${w.ids.length}/${w.ids.length} identities with client ids`);
    }
    const { mic } = await podIdentityFor(ctx);
    const wantProtected = protectedClientIds(inv);
    if (ctx.options.skipProtect === true) evidence.push('MIC protection skipped (test switch)');
    else if (mic) {
      const have = lowerSet(parseImmutableUserMsis(mic.args));
      const missing = wantProtected.filter((c) => !have.has(c.toLowerCase()));
      if (missing.length) failures.push(`deployment ${mic.namespace}/${mic.name}: --immutable-user-msis lacks ${missing.join(', ')}`);
      else evidence.push(`MIC ${mic.namespace}/${mic.name} --immutable-user-msis holds all ${wantProtected.length} user-assigned identities`);
    }
    return { ok: failures.length === 0, evidence, failures };
  },

  async rollback(ctx): Promise<StepOutcome> {
    const records = ctx.journal.records();
    const intended = ctx.journal.getData<IntendedAdds>('intendedAdds') ?? {};
    const vmssIds = [...new Set(records.filter((r) => r.actionId.startsWith('vmss/') && !r.rolledBack).map((r) => r.actionId))];
    let removed = 0;
    const limit = pLimit(VMSS_CONCURRENCY);
    await Promise.all(
      vmssIds.map((actionId) =>
        limit(async () => {
          const pre = ctx.journal.firstPreState<VmssPreState>(actionId);
          const target = intended[actionId];
          if (!pre || !target) return;
          const resultAdded = records.filter((r) => r.actionId === actionId && r.status === 'done').flatMap((r) => (r.result as { added?: string[] } | undefined)?.added ?? []);
          // Only what this step added: never an id that was on the scale set before it ran.
          const before = lowerSet(pre.before);
          const remove = [...new Map([...target.ids, ...resultAdded].filter((id) => !before.has(id.toLowerCase())).map((id) => [id.toLowerCase(), id])).values()];
          ctx.progress(`vmss ${pre.vmss}: removing ${remove.length} identities this step added`);
          const r = await ctx.azure.unassignIdentities(pre.resourceGroup, pre.vmss, remove);
          removed += r.removed.length;
          await ctx.journal.markRolledBack(actionId);
        }),
      ),
    );
    let restored = false;
    const protectRecord = records.find((r) => r.actionId === PROTECT_ACTION_ID && !r.rolledBack);
    const pre = ctx.journal.firstPreState<ProtectPreState>(PROTECT_ACTION_ID);
    if (protectRecord && pre) {
      ctx.progress(`restoring MIC ${pre.namespace}/${pre.name} args`);
      const live = await ctx.kube.get(KINDS.Deployment, pre.namespace, pre.name);
      if (live) {
        await ctx.kube.patch(KINDS.Deployment, pre.namespace, pre.name, argsPatch(pre.containerIndex, pre.container, pre.args), 'json');
        if (ctx.dryRun === 'none') await waitForMicLeader(ctx.kube, pre, ctx.deadline, ctx.signal);
        restored = true;
      } else ctx.log.warn(`deployment ${pre.namespace}/${pre.name} no longer exists; its args cannot be restored`);
      await ctx.journal.markRolledBack(PROTECT_ACTION_ID);
    }
    return { summary: `${removed} identit${removed === 1 ? 'y' : 'ies'} removed from ${vmssIds.length} scale set(s)${restored ? '; MIC args restored' : ''}` };
  },

  async verifyRollback(ctx): Promise<CheckResult> {
    const evidence: string[] = [];
    const failures: string[] = [];
    const intended = ctx.journal.getData<IntendedAdds>('intendedAdds') ?? {};
    for (const [actionId, t] of Object.entries(intended)) {
      const pre = ctx.journal.firstPreState<VmssPreState>(actionId);
      if (!pre) continue;
      const set = await ctx.azure.getScaleSet(pre.resourceGroup, pre.vmss);
      if (!set) {
        failures.push(`vmss ${pre.vmss} not found`);
        continue;
      }
      const have = lowerSet(Object.keys(set.userAssignedIdentities));
      const lostBefore = pre.before.filter((id) => !have.has(id.toLowerCase()));
      const before = lowerSet(pre.before);
      const stillAdded = t.ids.filter((id) => !before.has(id.toLowerCase()) && have.has(id.toLowerCase()));
      if (lostBefore.length) failures.push(`vmss ${pre.vmss}: identities that were there before are missing: ${lostBefore.join(', ')}`);
      if (stillAdded.length) failures.push(`vmss ${pre.vmss}: identities this step added are still there: ${stillAdded.join(', ')}`);
      if (!lostBefore.length && !stillAdded.length) evidence.push(`vmss ${pre.vmss}: back to its ${pre.before.length} identities from before`);
    }
    const pre = ctx.journal.firstPreState<ProtectPreState>(PROTECT_ACTION_ID);
    if (pre) {
      const live = await ctx.kube.get(KINDS.Deployment, pre.namespace, pre.name);
      const container = (live?.spec as { template?: { spec?: { containers?: { name: string; args?: string[] }[] } } } | undefined)?.template?.spec?.containers?.[pre.containerIndex];
      if (!live) failures.push(`deployment ${pre.namespace}/${pre.name} not found`);
      else if (JSON.stringify(container?.args ?? null) !== JSON.stringify(pre.args)) failures.push(`deployment ${pre.namespace}/${pre.name}: args differ from before (${JSON.stringify(container?.args)})`);
      else evidence.push(`MIC ${pre.namespace}/${pre.name} args are back to the original`);
    }
    return { ok: failures.length === 0, evidence, failures };
  },
};

/** Step 2 of the runbook. */
export const assignStep = withScopedGateways(assign);
export default assignStep;
