/**
 * `drift --update-inventory`: adds what the cluster gained since the inventory was written (new
 * pools, new identities, pools and bindings of known identities) to the inventory file, editing
 * the YAML document in place so the operator's comments, ordering and test cases are kept.
 * Nothing is removed or rewritten.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isMap, isSeq, parse as parseYaml, parseDocument, type Document, type YAMLMap, type YAMLSeq } from 'yaml';
import { writeFileAtomic } from '../engine/atomic-file.ts';
import { defaultTestCases, identityKey, InventoryError, validateInventory } from '../steps/lib/inventory-model.ts';
import type { InventoryUpdateDetails } from './model.ts';

/** SHA-256 of a file's text (what the journal compares before undoing an update). */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function seqAt(doc: Document, parent: YAMLMap, key: string): YAMLSeq {
  const found: unknown = parent.get(key, true);
  if (isSeq(found)) return found as YAMLSeq;
  const seq = doc.createNode([]) as YAMLSeq;
  parent.set(key, seq);
  return seq;
}

function addUnique(doc: Document, seq: YAMLSeq, values: readonly string[]): string[] {
  const have = new Set(seq.items.map((i) => String((i as { value?: unknown })?.value ?? i)));
  const added: string[] = [];
  for (const v of values) {
    if (have.has(v)) continue;
    seq.add(doc.createNode(v));
    have.add(v);
    added.push(v);
  }
  return added;
}

/**
 * The inventory text with `details` merged in. Returns the new text and what was added (one
 * line each); the text is unchanged when there is nothing to add.
 * @throws InventoryError when the result would not validate (nothing is written)
 */
export function mergeInventoryText(text: string, details: InventoryUpdateDetails, source: string): { text: string; added: string[] } {
  const doc = parseDocument(text);
  if (doc.errors.length) throw new InventoryError(source, [`YAML syntax error: ${doc.errors[0].message.split('\n')[0]}`]);
  const root = doc.contents;
  if (!isMap(root)) throw new InventoryError(source, ['the file is not a YAML mapping']);
  const added: string[] = [];

  const pools = seqAt(doc, root, 'pools');
  const poolNames = new Set(pools.items.map((p) => (isMap(p) ? String(p.get('name')) : '')));
  for (const p of details.pools) {
    if (poolNames.has(p.name)) continue;
    pools.add(doc.createNode({ name: p.name, ...(p.scaleSet ? { scaleSet: p.scaleSet } : {}), nodes: p.nodes, identitiesBefore: p.identitiesBefore }));
    added.push(`pool ${p.name}`);
  }

  const identities = seqAt(doc, root, 'identities');
  const byKey = new Map<string, YAMLMap>();
  for (const item of identities.items) {
    if (!isMap(item)) continue;
    const js = item.toJSON() as { name?: string; namespace?: string; resourceId?: string; clientId?: string };
    byKey.set(identityKey({ name: js.name ?? '', namespace: js.namespace ?? '', resourceId: js.resourceId, clientId: js.clientId }), item);
  }
  for (const p of details.identityPools) {
    const item = byKey.get(p.identity);
    if (!item) continue;
    for (const pool of addUnique(doc, seqAt(doc, item, 'pools'), p.pools)) added.push(`identity ${p.name}: pool ${pool}`);
  }
  for (const e of details.identityBindings) {
    const item = byKey.get(e.identity);
    if (!item) continue;
    const seq = seqAt(doc, item, 'bindings');
    const have = new Set(seq.items.map((b) => (isMap(b) ? `${b.get('namespace')}/${b.get('name')}` : '')));
    for (const b of e.bindings) {
      if (have.has(`${b.namespace}/${b.name}`)) continue;
      seq.add(doc.createNode(b));
      added.push(`identity ${item.get('name')}: binding ${b.namespace}/${b.name}`);
    }
  }
  for (const i of details.identities) {
    const key = identityKey(i);
    if (byKey.has(key)) continue;
    const node = doc.createNode({
      name: i.name,
      namespace: i.namespace,
      type: i.type,
      ...(i.resourceId ? { resourceId: i.resourceId } : {}),
      ...(i.clientId ? { clientId: i.clientId } : {}),
      pools: i.pools,
      namespaces: i.namespaces,
      bindings: i.bindings,
      services: i.services.map((s) => ({ name: s.name, kind: s.kind, selector: s.selector, pools: s.pools, testCases: defaultTestCases() })),
    }) as YAMLMap;
    node.commentBefore = ' added by podid-migrate drift --update-inventory: edit the testCases';
    identities.add(node);
    byKey.set(key, node);
    added.push(`identity ${i.namespace}/${i.name}`);
  }
  if (!added.length) return { text, added };
  const out = doc.toString({ lineWidth: 0 });
  const problems = validateInventory(parseYaml(out));
  if (problems.length) throw new InventoryError(`${source} (after --update-inventory)`, problems);
  return { text: out, added };
}

/** Reads, merges and writes the inventory atomically; `before` is the text it replaced. */
export async function updateInventoryFile(path: string, details: InventoryUpdateDetails): Promise<{ before: string; after: string; added: string[] }> {
  const before = await readFile(path, 'utf8');
  const { text, added } = mergeInventoryText(before, details, path);
  if (added.length) await writeFileAtomic(path, text, { mode: 0o644 });
  return { before, after: text, added };
}
