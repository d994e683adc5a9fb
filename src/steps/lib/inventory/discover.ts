/**
 * Discovery: the inventory's reading, analysis and blockers put together. Read-only: list calls
 * and the assign-permission checks, nothing else.
 */
import type { Blocker } from '../../../engine/step.ts';
import type { InventoryDocument } from '../inventory-model.ts';
import type { PodIdentityWorkload } from '../pod-identity.ts';
import type { Ctx } from '../context.ts';
import { analyse, inventoryDocument, permissionNotes, type CopyDetails } from './analysis.ts';
import { inventoryBlockers } from './blockers.ts';
import { readAssignPermissions, readCluster } from './reading.ts';

/** Everything discovery found, with the inventory document it implies. */
export interface Discovery {
  document: InventoryDocument;
  copies: CopyDetails[];
  blockers: Blocker[];
  notes: string[];
  nmi?: PodIdentityWorkload;
  mic?: PodIdentityWorkload;
  /** Volatile counts for summaries (never in plan details). */
  counts: { pods: number; services: number; nodes: number; assigned: number; exceptions: number };
}

/** Reads the cluster and Azure and computes the inventory, blockers and copies. Read-only. */
export async function discover(ctx: Ctx): Promise<Discovery> {
  const reading = await readCluster(ctx);
  const analysis = analyse(reading);
  const permissions = await readAssignPermissions(ctx, analysis.assignable.flatMap((x) => (x.resourceId ? [x.resourceId] : [])));
  const blockers = inventoryBlockers({ reading, analysis, permissions });
  const notes = [...analysis.notes, ...permissionNotes(analysis, permissions)];
  const document = inventoryDocument(reading, analysis, notes);
  const services = new Set(document.identities.flatMap((i) => i.services.map((s) => s.name))).size;
  return {
    document,
    copies: analysis.copies,
    blockers,
    notes,
    nmi: analysis.nmi,
    mic: analysis.mic,
    counts: { pods: analysis.livePods, services, nodes: reading.nodes.length, assigned: reading.assigned?.length ?? 0, exceptions: reading.exceptions?.length ?? 0 },
  };
}
