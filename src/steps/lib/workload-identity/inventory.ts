/**
 * The inventory as the workload identity runbook gets it: the shared inventory file (the same
 * one the managed-mode runbook writes), or, when there is none yet, the document the managed-mode
 * inventory step would write, computed with the same reading and analysis
 * (`lib/inventory/`). Only the blockers that matter for leaving pod identity are kept: the CRDs
 * must be served (else there is nothing to migrate from); the managed-mode rules (NMI version,
 * scale set assignment permissions) are not this runbook's.
 */
import type { Blocker } from '../../../engine/step.ts';
import type { Ctx } from '../context.ts';
import { analyse, inventoryDocument } from '../inventory/analysis.ts';
import { podIdentityInstalled } from '../inventory/blockers.ts';
import { readCluster } from '../inventory/reading.ts';
import { asInventory, type InventoryDocument } from '../inventory-model.ts';

/** The inventory document and where it came from. */
export interface WorkloadIdentityInventory {
  document: InventoryDocument;
  /** `file`: ctx.inventory (the file, or within one plan the preview); `discovered`: read from the cluster now. */
  source: 'file' | 'discovered';
  blockers: Blocker[];
  notes: string[];
}

/** The file's inventory, else a fresh discovery (read-only: list calls and one managed cluster GET). */
export async function workloadIdentityInventory(ctx: Ctx): Promise<WorkloadIdentityInventory> {
  if (ctx.inventory !== undefined && ctx.inventory !== null) return { document: asInventory(ctx.inventory, ctx.inventoryPath), source: 'file', blockers: [], notes: [] };
  const reading = await readCluster(ctx);
  const analysis = analyse(reading);
  const blockers = podIdentityInstalled({ reading, analysis, permissions: new Map() });
  const notes = [...analysis.notes];
  return { document: inventoryDocument(reading, analysis, notes), source: 'discovered', blockers, notes };
}
