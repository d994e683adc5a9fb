/**
 * `write-inventory`: writes the inventory document to a local file (atomically, validated). No
 * API call. In a dry run it is shown, not written (a dry run leaves no trace). Undo keeps the
 * file: it holds the operator's test cases and is the record of what was migrated.
 */
import { loadInventory, writeInventory, type InventoryDocument } from '../lib/inventory-model.ts';
import type { Executor } from '../lib/context.ts';
import { sameJson } from '../lib/util.ts';

/** Details of a `write-inventory` action. */
export interface WriteInventoryDetails {
  /** The document, without its `generatedAt` timestamp (stamped when written). */
  document: InventoryDocument;
}

function withoutTimestamp(doc: InventoryDocument): InventoryDocument {
  const { generatedAt: _ignored, ...rest } = doc;
  return rest;
}

export const writeInventoryFile: Executor<WriteInventoryDetails, { path: string; existed: boolean }, { path: string; written: boolean }> = {
  kind: 'write-inventory',
  async capture(ctx) {
    return { path: ctx.inventoryPath, existed: (await loadInventory(ctx.inventoryPath).catch(() => undefined)) !== undefined };
  },
  async do(ctx, { action: { details: d } }) {
    if (ctx.dryRun !== 'none') return { path: ctx.inventoryPath, written: false };
    await writeInventory(ctx.inventoryPath, { ...d.document, generatedAt: new Date().toISOString() });
    return { path: ctx.inventoryPath, written: true };
  },
  async reconcile(ctx, { action: { details: d } }) {
    const file = await loadInventory(ctx.inventoryPath).catch(() => undefined);
    if (file && sameJson(withoutTimestamp(file), withoutTimestamp(d.document))) return { applied: true, result: { path: ctx.inventoryPath, written: true } };
    return { applied: false, reason: `${ctx.inventoryPath} does not hold the planned document` };
  },
  async undo(ctx) {
    return `inventory ${ctx.inventoryPath} kept (it holds your test cases)`;
  },
  async verifyUndo() {
    return { ok: true, evidence: [], failures: [] };
  },
};
