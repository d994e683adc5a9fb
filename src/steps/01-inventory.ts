/**
 * Step 1, `inventory`: reads what the migration will touch (identities, bindings, the pods
 * that use them and their services, node pools and their scale sets, the NMI and MIC
 * workloads), reports every blocker at once, copies bindings/identities into the namespaces
 * of the pods that use them from elsewhere (managed mode matches only within a namespace), and
 * writes the inventory file the later steps work from.
 *
 * Reading, analysis and blockers live in `lib/inventory/`; this file only turns a discovery
 * into actions (`create-object` per copy, `write-inventory`) and checks the result.
 */
import type { CheckResult, StepOutcome, StepPlan } from '../engine/step.ts';
import { action, NO_WRITES, type MigrationAction } from './executors/index.ts';
import type { MigrationStep } from './lib/context.ts';
import { discover } from './lib/inventory/discover.ts';
import type { CopyDetails } from './lib/inventory/analysis.ts';
import { BINDING_LABEL } from './lib/inventory/reading.ts';
import { findPodIdentityLive, type PodIdentityData } from './lib/inventory-source.ts';
import { identityKey, inventoryChanges, keepOperatorEdits, loadInventory, validateInventory, type InventoryDocument } from './lib/inventory-model.ts';
import { COPIED_FROM_LABEL } from './lib/pod-identity.ts';
import { sameJson } from './lib/util.ts';

export { nodeAdmits, placementUnconstrained, poolsAdmitting, podTemplateOf, type PlacementSpec } from './lib/inventory/placement.ts';
export type { PodIdentityData };

function copyActionId(c: CopyDetails): string {
  return `copy/${c.kind.toLowerCase()}/${c.object.metadata?.namespace}/${c.object.metadata?.name}`;
}

/** The document as written: no timestamp, so unchanged clusters give an unchanged file and plan. */
function stableDocument(doc: InventoryDocument): InventoryDocument {
  const { generatedAt: _ignored, ...rest } = doc;
  return rest;
}

/** Step 1 of the runbook. */
export const inventoryStep: MigrationStep = {
  id: 'inventory',
  title: 'Inventory identities, bindings, pools and scale sets',

  async plan(ctx): Promise<StepPlan> {
    const d = await discover(ctx);
    const actions: MigrationAction[] = [];
    for (const c of d.copies) {
      const from = `${c.from.namespace}/${c.from.name}`;
      const to = `${c.object.metadata?.namespace}/${c.object.metadata?.name}`;
      const owner = c.object.metadata?.labels?.[COPIED_FROM_LABEL] ?? '';
      actions.push(
        action({
          id: copyActionId(c),
          kind: 'create-object',
          op: '+',
          target: `copy ${c.kind.toLowerCase()} ${from} -> ${to}`,
          summary: `managed mode only matches within a namespace; original kept, copy labelled ${COPIED_FROM_LABEL}=${owner}`,
          api: 'kube',
          writes: { kube: 1, arm: 0 },
          details: { object: c.object, ownerLabel: { key: COPIED_FROM_LABEL, value: owner }, from: c.from },
        }),
      );
    }
    const notes = [...d.notes];
    let previous: InventoryDocument | undefined;
    try {
      previous = await loadInventory(ctx.inventoryPath);
    } catch (e) {
      d.blockers.push({
        code: 'inventory-file-invalid',
        subject: `file ${ctx.inventoryPath}`,
        message: (e as Error).message,
        fix: 'Fix the fields named above (it may hold your test cases), or move the file aside to have a fresh one written.',
      });
    }
    const doc = keepOperatorEdits(previous, d.document);
    if (previous) {
      const changes = inventoryChanges(previous, doc);
      notes.push(changes.length ? `changed in the cluster since the inventory was written: ${changes.join('; ')}` : 'the cluster matches the existing inventory file');
    }
    const writesFile = !previous || !sameJson(stableDocument(previous), stableDocument(doc));
    if (writesFile) {
      actions.push(
        action({
          id: 'file/inventory',
          kind: 'write-inventory',
          op: previous ? '~' : '+',
          target: `file ${ctx.inventoryPath}`,
          summary: `${doc.identities.length} identities, ${doc.pools.length} pools, ${d.counts.services} services${previous ? ' (test cases kept)' : ''}`,
          api: 'none',
          writes: NO_WRITES,
          details: { document: stableDocument(doc) },
        }),
      );
    }
    notes.unshift(`${d.counts.pods} pods with ${BINDING_LABEL} in ${d.counts.services} services on ${d.counts.nodes} nodes; ${d.counts.assigned} AzureAssignedIdentities`);
    // The later steps of the same plan (and of a dry run) are planned against the document this apply would write.
    return { stepId: 'inventory', actions, blockers: d.blockers, notes, ...(writesFile && !d.blockers.length ? { inventoryPreview: stableDocument(doc) } : {}) };
  },

  async afterActions(ctx, plan): Promise<StepOutcome> {
    const pi = await findPodIdentityLive(ctx.kube);
    if (pi.nmi) {
      const data: PodIdentityData = {
        nmi: { namespace: pi.nmi.namespace, name: pi.nmi.name, install: pi.nmi.install, version: pi.nmi.version },
        ...(pi.mic ? { mic: { namespace: pi.mic.namespace, name: pi.mic.name, replicas: pi.mic.replicas ?? 1 } } : {}),
      };
      await ctx.journal.setData('podIdentity', data);
    }
    const dry = ctx.dryRun !== 'none';
    const copied = plan.actions.filter((a) => a.kind === 'create-object').length;
    const wrote = plan.actions.some((a) => a.kind === 'write-inventory');
    const parts = [`${copied} object(s) ${dry ? 'would be ' : ''}copied`, wrote ? `inventory ${dry ? 'would be ' : ''}written to ${ctx.inventoryPath}` : 'inventory unchanged'];
    return { summary: parts.join(', ') };
  },

  async check(ctx): Promise<CheckResult> {
    const evidence: string[] = [];
    const failures: string[] = [];
    let file: InventoryDocument | undefined;
    try {
      file = await loadInventory(ctx.inventoryPath);
      if (!file) failures.push(`no inventory file at ${ctx.inventoryPath}; run podid-migrate apply --step inventory`);
    } catch (e) {
      failures.push((e as Error).message);
    }
    const d = await discover(ctx);
    if (file) {
      evidence.push(`${ctx.inventoryPath} validates against the inventory schema`);
      const fileIds = new Map(file.identities.map((i) => [identityKey(i), i]));
      const liveIds = new Map(d.document.identities.map((i) => [identityKey(i), i]));
      for (const [k, i] of liveIds) {
        const f = fileIds.get(k);
        if (!f) failures.push(`identity ${i.namespace}/${i.name} is in the cluster but not in the inventory; re-run the inventory step`);
        else if ((f.pools ?? []).join(',') !== (i.pools ?? []).join(',')) failures.push(`identity ${i.name}: inventory pools [${(f.pools ?? []).join(', ')}] but the cluster runs it in [${(i.pools ?? []).join(', ')}]`);
      }
      for (const [k, f] of fileIds) if (!liveIds.has(k)) failures.push(`identity ${f.namespace}/${f.name} is in the inventory but not in the cluster`);
      const livePools = new Map(d.document.pools.map((p) => [p.name, p]));
      for (const p of file.pools) {
        const live = livePools.get(p.name);
        if (!live) failures.push(`pool ${p.name} is in the inventory but not in the cluster`);
        else if ((live.scaleSet ?? '').toLowerCase() !== (p.scaleSet ?? '').toLowerCase()) failures.push(`pool ${p.name}: inventory scale set ${p.scaleSet ?? '(none)'} but the cluster uses ${live.scaleSet ?? '(none)'}`);
      }
      for (const p of d.document.pools) if (!file.pools.some((q) => q.name === p.name)) failures.push(`pool ${p.name} is in the cluster but not in the inventory`);
      if (!failures.length) evidence.push(`inventory matches the cluster: ${liveIds.size} identities, ${livePools.size} pools (${d.document.pools.map((p) => p.name).join(', ')})`);
    }
    if (d.copies.length) failures.push(`still missing in pod namespaces: ${d.copies.map((c) => `${c.kind.toLowerCase()} ${c.object.metadata?.namespace}/${c.object.metadata?.name}`).join(', ')}`);
    else evidence.push('every pod namespace has its bindings and identities (managed mode can match them)');
    const schemaProblems = file ? validateInventory(file) : [];
    failures.push(...schemaProblems);
    return { ok: failures.length === 0, evidence, failures };
  },

};

export default inventoryStep;
