/**
 * Step 2, `assign`: first protect every user-assigned identity from MIC's garbage collection
 * (its client id in MIC's `--immutable-user-msis`, then MIC's rollout awaited: `patch-container`),
 * then add to each node pool's scale set every identity its pods use (`vmss-add-identities`: one
 * PATCH per scale set carrying only the missing ids, scale sets four at a time). Identities already
 * there (the kubelet identity, add-ons, anything assigned by hand or by MIC) are never touched.
 *
 * No instance is upgraded unless asked: an identity added to a scale set needs no instance update,
 * and `manualupgrade` would also roll out unrelated pending model changes. With
 * `--upgrade-instances` (option `upgradeInstances`) each scale set gets its own planned
 * `vmss-upgrade-instances` action after its PATCH.
 */
import pLimit from 'p-limit';
import type { CheckResult, StepOutcome, StepPlan } from '../engine/step.ts';
import { analyseNmiBypass, bypassWarnings } from './lib/nmi-bypass.ts';
import { action, type MigrationAction } from './executors/index.ts';
import { upgradeBatchSize, type VmssAddIdentitiesDetails } from './executors/vmss.ts';
import { KINDS } from '../kube/kinds.ts';
import type { Ctx, MigrationStep } from './lib/context.ts';
import { inventoryFor, podIdentityFor } from './lib/inventory-source.ts';
import type { InventoryDocument } from './lib/inventory-model.ts';
import { parseImmutableUserMsis, withImmutableUserMsis } from './lib/pod-identity.ts';

export { argsPatch } from './executors/patch-container.ts';
export { UPGRADE_BATCH_MAX, UPGRADE_BATCH_SHARE } from './executors/vmss.ts';

/** Scale sets read (planning) at the same time. */
export const VMSS_CONCURRENCY = 4;

export const PROTECT_ACTION_ID = 'mic/protect-identities';

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

function helmImmutableValue(ids: string[]): string {
  return `mic.immutableUserMSIs={${ids.join(',')}}`;
}

/** Step 2 of the runbook. */
/**
 * Pods that call IMDS without NMI (hostNetwork, or matched by an AzurePodIdentityException) and
 * the pools where this step raises the scale set from one user-assigned identity to several:
 * such a call without a client id starts failing with 400 (nmi-bypass.ts). One warning per pool,
 * and a line listing every bypassing pod.
 */
async function bypassNotes(ctx: Ctx, sets: { pool: string; vmss: string; have: string[]; add: string[] }[]): Promise<string[]> {
  const [pods, nodes, exceptions] = await Promise.all([
    ctx.kube.list(KINDS.Pod),
    ctx.kube.list(KINDS.Node),
    ctx.kube.list(KINDS.AzurePodIdentityException).catch(() => []),
  ]);
  const analysis = analyseNmiBypass({
    pods,
    nodes,
    exceptions,
    scaleSets: sets.map((s) => ({ pool: s.pool, vmss: s.vmss, identityIds: s.have })),
    assignments: sets.map((s) => ({ vmss: s.vmss, identityIds: s.add })),
  });
  const out: string[] = [];
  if (analysis.pods.length) out.push(`${analysis.pods.length} pod${analysis.pods.length === 1 ? '' : 's'} call IMDS without NMI: ${analysis.pods.slice(0, 8).map((p) => `${p.pod} (${p.via.join(' + ')}${p.pool ? `, pool ${p.pool}` : ''})`).join(', ')}${analysis.pods.length > 8 ? ` and ${analysis.pods.length - 8} more` : ''}`);
  for (const w of bypassWarnings(analysis)) out.push(`warning: ${w.subject}: ${w.message} ${w.fix}`);
  return out;
}

export const assignStep: MigrationStep = {
  id: 'assign',
  title: 'Protect identities in MIC and assign them to every scale set',

  async plan(ctx): Promise<StepPlan> {
    const inv = await inventoryFor(ctx);
    const { mic } = await podIdentityFor(ctx);
    const actions: MigrationAction[] = [];
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
        const replicas = mic.replicas ?? 1;
        actions.push(
          action({
            id: PROTECT_ACTION_ID,
            kind: 'patch-container',
            op: '~',
            target: `deployment ${mic.namespace}/${mic.name}`,
            summary: `--immutable-user-msis: ${names.map((n) => `+ ${n}`).join(', ')}${current.size ? ` (keeps ${current.size} existing)` : ''}`,
            api: 'kube',
            // The PATCH; then the rollout replaces every old replica, and each one MIC's election made
            // leader dies holding the lease: one Endpoints PATCH hands it over, up to one per replica.
            writes: { kube: 1, arm: 0 },
            ...(replicas > 0 ? { writesUpTo: { kube: 1 + replicas, arm: 0 } } : {}),
            details: { workload: 'Deployment', namespace: mic.namespace, name: mic.name, container: mic.container, containerIndex: mic.containerIndex, args: withImmutableUserMsis(mic.args, add), rollout: 'mic-leader' },
          }),
        );
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
          const instances = ctx.options.upgradeInstances === true && add.length ? (await ctx.azure.listInstances(w.resourceGroup, w.vmss)).length : 0;
          return { w, add, have, instances };
        }),
      ),
    );
    const upgrades: MigrationAction[] = [];
    for (const { w, add, have, instances } of planned) {
      if (!add.length) {
        notes.push(`vmss ${w.vmss} (pool ${w.pool}) already carries its ${w.ids.length} identit${w.ids.length === 1 ? 'y' : 'ies'}`);
        continue;
      }
      actions.push(
        action({
          id: vmssActionId(w.vmss),
          kind: 'vmss-add-identities',
          op: '~',
          target: `vmss ${w.vmss}`,
          summary: `identities: ${add.map((id) => `+ ${nameOf(inv, id)}`).join(', ')} (keeps ${have.length} existing)`,
          api: 'arm',
          writes: { kube: 0, arm: Math.ceil(add.length / 150) },
          parallelGroup: 'vmss-add-identities',
          details: { pool: w.pool, resourceGroup: w.resourceGroup, vmss: w.vmss, add } satisfies VmssAddIdentitiesDetails,
        }),
      );
      if (ctx.options.upgradeInstances === true) {
        upgrades.push(
          action({
            id: `vmss/${w.vmss}/upgrade-instances`,
            kind: 'vmss-upgrade-instances',
            op: '~',
            target: `vmss ${w.vmss} instances`,
            summary: `manualupgrade of the instances not on the latest model after the PATCH, ${upgradeBatchSize(instances)} at a time (--upgrade-instances; also rolls out other pending model changes)`,
            api: 'arm',
            // At most one call per batch over every instance; only those behind the model are upgraded.
            writes: { kube: 0, arm: Math.ceil(instances / upgradeBatchSize(instances)) },
            details: { resourceGroup: w.resourceGroup, vmss: w.vmss },
          }),
        );
      }
    }
    notes.push(...(await bypassNotes(ctx, planned.map(({ w, add, have }) => ({ pool: w.pool, vmss: w.vmss, have, add })))));
    if (!upgrades.length && planned.some((p) => p.add.length)) notes.push('no instance is upgraded: an identity added to a scale set reaches its instances without one (--upgrade-instances forces a manualupgrade)');
    return { stepId: 'assign', actions: [...actions, ...upgrades], blockers: [], notes };
  },

  async afterActions(ctx, plan): Promise<StepOutcome> {
    const parts: string[] = [];
    const dry = ctx.dryRun !== 'none';
    const protect = plan.actions.find((a) => a.id === PROTECT_ACTION_ID);
    if (protect) parts.push(`${clientIdsAdded(protect.details, ctx.journal.firstPreState<{ args: string[] | null }>(PROTECT_ACTION_ID)?.args ?? [])} identities ${dry ? 'would be ' : ''}protected in MIC`);
    const vmss = plan.actions.filter((a) => a.kind === 'vmss-add-identities').map((a) => a.details as VmssAddIdentitiesDetails);
    if (dry) {
      // Azure writes are not sent in a dry run: say exactly which PATCHes would be.
      const lines = vmss.map((d) => `vmss ${d.vmss}: ${d.add.map((id) => `+ ${id.split('/').pop()}`).join(', ')}`);
      parts.push(lines.length ? `would PATCH ${lines.join('; ')}` : 'no scale set to patch');
      return { summary: parts.join('; ') };
    }
    const added = vmss.reduce((n, d) => n + d.add.length, 0);
    const upgraded = plan.actions.filter((a) => a.kind === 'vmss-upgrade-instances').length;
    parts.push(`${vmss.length} scale set(s) patched, ${added} identit${added === 1 ? 'y' : 'ies'} added${upgraded ? `, instances of ${upgraded} scale set(s) upgraded` : ''}`);
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

};

/** How many client ids a protect action adds to MIC's args (`before`: the args it found). */
function clientIdsAdded(details: unknown, before: readonly string[]): number {
  const had = lowerSet(parseImmutableUserMsis(before));
  return parseImmutableUserMsis((details as { args: string[] }).args).filter((c) => !had.has(c.toLowerCase())).length;
}

export default assignStep;
