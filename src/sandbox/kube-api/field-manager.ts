/**
 * Field management and server-side apply, as the API server's field manager does them:
 *
 * - every write through the API records which manager set which fields in
 *   `metadata.managedFields` (FieldsV1), an update taking over the fields it changed;
 * - `application/apply-patch+yaml` merges the applied configuration into the live object,
 *   removes the fields that manager applied before and no longer applies (unless someone else
 *   owns them), and refuses with 409 Conflict a change to a field another manager owns with a
 *   different value, unless `force=true` takes it over.
 *
 * Lists are merged by key where the API declares them as list-maps (containers and env by
 * name, container ports by containerPort and protocol, volumes by name, volume mounts by
 * mountPath, service ports by port and protocol, owner references by uid, conditions by type),
 * `finalizers` is a set, every other list is atomic. ConfigMap `data` and label maps merge key
 * by key.
 */
import { ApiError } from './status.ts';
import type { KObject } from '../store.ts';

type Segment = string;
/** A field path in FieldsV1 segments: `f:spec`, `k:{"name":"a"}`, `v:"x"`, `.`. */
type Path = Segment[];

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time?: string;
  fieldsType: 'FieldsV1';
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

const IGNORED_META = new Set(['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generateName']);

/** The merge keys of a list, from its field name and the field that holds its parent item. */
function listKeys(field: string, parentField: string | undefined): string[] | 'set' | undefined {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'volumes':
    case 'imagePullSecrets':
    case 'env':
      return ['name'];
    case 'ports':
      return parentField === 'containers' || parentField === 'initContainers' ? ['containerPort', 'protocol'] : ['port', 'protocol'];
    case 'volumeMounts':
      return ['mountPath'];
    case 'ownerReferences':
      return ['uid'];
    case 'conditions':
      return ['type'];
    case 'finalizers':
      return 'set';
    default:
      return undefined;
  }
}

function keyOf(item: any, keys: string[]): string {
  const k: Record<string, unknown> = {};
  for (const name of keys) {
    let v = item?.[name];
    if (v === undefined && name === 'protocol') v = 'TCP';
    if (v !== undefined) k[name] = v;
  }
  return `k:${JSON.stringify(k)}`;
}

function isObject(v: unknown): v is Record<string, any> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** Every owned path of an object (leaves, and `.` for each list-map item). */
export function fieldSet(obj: Record<string, any>): Set<string> {
  const out = new Set<string>();
  const walk = (v: any, path: Path, field: string | undefined, parentField: string | undefined) => {
    if (isObject(v)) {
      const keys = Object.keys(v);
      if (keys.length === 0 && path.length) out.add(path.join('\u0000'));
      for (const k of keys) walk(v[k], [...path, `f:${k}`], k, field);
      return;
    }
    if (Array.isArray(v)) {
      const keys = field ? listKeys(field, parentField) : undefined;
      if (keys === 'set') {
        for (const x of v) out.add([...path, `v:${JSON.stringify(x)}`].join('\u0000'));
        if (v.length === 0) out.add(path.join('\u0000'));
      } else if (keys && v.every(isObject)) {
        for (const item of v) {
          const seg = keyOf(item, keys);
          out.add([...path, seg, '.'].join('\u0000'));
          for (const k of Object.keys(item)) walk(item[k], [...path, seg, `f:${k}`], k, field);
        }
        if (v.length === 0) out.add(path.join('\u0000'));
      } else out.add(path.join('\u0000'));
      return;
    }
    out.add(path.join('\u0000'));
  };
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'apiVersion' || k === 'kind' || k === 'status') continue;
    if (k === 'metadata' && isObject(v)) {
      for (const [mk, mv] of Object.entries(v)) if (!IGNORED_META.has(mk)) walk(mv, ['f:metadata', `f:${mk}`], mk, 'metadata');
      continue;
    }
    walk(v, [`f:${k}`], k, undefined);
  }
  return out;
}

/** FieldsV1 JSON from a set of paths. */
export function toFieldsV1(set: Set<string>): Record<string, unknown> {
  const root: Record<string, any> = {};
  for (const p of [...set].sort()) {
    let node = root;
    for (const seg of p.split('\u0000')) node = node[seg] ??= {};
  }
  return root;
}

/** The set of paths a FieldsV1 JSON holds. */
export function fromFieldsV1(f: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (node: any, path: Path) => {
    const keys = isObject(node) ? Object.keys(node) : [];
    if (keys.length === 0) {
      if (path.length) out.add(path.join('\u0000'));
      return;
    }
    for (const k of keys) walk(node[k], [...path, k]);
  };
  walk(f, []);
  return out;
}

/** The value at a path (undefined when absent). */
function valueAt(obj: any, path: Path): unknown {
  let cur = obj;
  for (const seg of path) {
    if (cur === undefined || cur === null) return undefined;
    if (seg === '.') return cur;
    if (seg.startsWith('f:')) cur = cur[seg.slice(2)];
    else if (seg.startsWith('k:')) {
      const want = JSON.parse(seg.slice(2)) as Record<string, unknown>;
      cur = Array.isArray(cur) ? cur.find((it) => Object.entries(want).every(([k, v]) => (it?.[k] ?? (k === 'protocol' ? 'TCP' : undefined)) === v)) : undefined;
    } else if (seg.startsWith('v:')) {
      const want = JSON.parse(seg.slice(2));
      return Array.isArray(cur) && cur.some((x) => JSON.stringify(x) === JSON.stringify(want)) ? want : undefined;
    }
  }
  return cur;
}

/** Removes the field at a path from `obj` (in place). */
function removeAt(obj: any, path: Path): void {
  const last = path[path.length - 1];
  const parentPath = last === '.' ? path.slice(0, -2) : path.slice(0, -1);
  const parent = valueAt(obj, parentPath);
  if (last === '.') {
    const seg = path[path.length - 2];
    if (Array.isArray(parent)) {
      const item = valueAt(obj, path.slice(0, -1));
      const i = parent.indexOf(item);
      if (i >= 0) parent.splice(i, 1);
    }
    return;
    void seg;
  }
  if (last.startsWith('f:') && isObject(parent)) delete parent[last.slice(2)];
  else if (last.startsWith('v:') && Array.isArray(parent)) {
    const want = JSON.stringify(JSON.parse(last.slice(2)));
    const i = parent.findIndex((x) => JSON.stringify(x) === want);
    if (i >= 0) parent.splice(i, 1);
  }
}

/** Merges the applied configuration into `live` (in place): maps key by key, list-maps by key, other lists replaced. */
function mergeInto(live: any, applied: any, field: string | undefined, parentField: string | undefined): any {
  if (isObject(applied)) {
    const base = isObject(live) ? live : {};
    for (const [k, v] of Object.entries(applied)) base[k] = mergeInto(base[k], v, k, field);
    return base;
  }
  if (Array.isArray(applied)) {
    const keys = field ? listKeys(field, parentField) : undefined;
    if (keys === 'set') {
      const out = Array.isArray(live) ? [...live] : [];
      for (const x of applied) if (!out.some((y) => JSON.stringify(y) === JSON.stringify(x))) out.push(x);
      return out;
    }
    if (keys && applied.every(isObject) && Array.isArray(live)) {
      const liveByKey = new Map(live.filter(isObject).map((it) => [keyOf(it, keys), it]));
      const appliedKeys = new Set(applied.map((it) => keyOf(it, keys)));
      const merged = applied.map((it) => mergeInto(liveByKey.get(keyOf(it, keys)), it, field, parentField));
      // Items someone else set stay, after the applied ones.
      for (const it of live) if (isObject(it) && !appliedKeys.has(keyOf(it, keys))) merged.push(it);
      return merged;
    }
    return structuredClone(applied);
  }
  return applied;
}

function parseEntries(obj: KObject): ManagedFieldsEntry[] {
  const mf = obj.metadata.managedFields;
  return Array.isArray(mf) ? (structuredClone(mf) as ManagedFieldsEntry[]) : [];
}

function humanPath(p: string): string {
  return p
    .split('\u0000')
    .filter((s) => s !== '.')
    .map((s) => (s.startsWith('f:') ? `.${s.slice(2)}` : s.startsWith('k:') ? `[${Object.entries(JSON.parse(s.slice(2))).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]` : `[${s.slice(2)}]`))
    .join('');
}

function setEntry(entries: ManagedFieldsEntry[], manager: string, operation: 'Apply' | 'Update', apiVersion: string, set: Set<string>, time: string, subresource?: string): ManagedFieldsEntry[] {
  const rest = entries.filter((e) => !(e.manager === manager && e.operation === operation && (e.subresource ?? '') === (subresource ?? '')));
  if (set.size === 0) return rest;
  return [...rest, { manager, operation, apiVersion, time, fieldsType: 'FieldsV1', fieldsV1: toFieldsV1(set), ...(subresource ? { subresource } : {}) }];
}

function withoutPaths(entries: ManagedFieldsEntry[], remove: Set<string>, except?: { manager: string; operation: string }): ManagedFieldsEntry[] {
  const out: ManagedFieldsEntry[] = [];
  for (const e of entries) {
    if (except && e.manager === except.manager && e.operation === except.operation) {
      out.push(e);
      continue;
    }
    const set = fromFieldsV1(e.fieldsV1);
    let changed = false;
    for (const p of remove) if (set.delete(p)) changed = true;
    if (!changed) out.push(e);
    else if (set.size) out.push({ ...e, fieldsV1: toFieldsV1(set) });
  }
  return out;
}

/**
 * Records a non-apply write (create, update, patch) by `manager`: it takes over the fields
 * it set or changed; fields it removed leave every manager. Sets `next.metadata.managedFields`.
 */
export function trackUpdate(old: Readonly<KObject> | undefined, next: KObject, manager: string, time: string, subresource?: string): void {
  // A client that sends managedFields explicitly replaces them (as upstream allows).
  const sent = next.metadata.managedFields;
  let entries = Array.isArray(sent) && sent.length ? (structuredClone(sent) as ManagedFieldsEntry[]) : old ? parseEntries(old as KObject) : [];
  const after = fieldSet(next);
  const before = old ? fieldSet(old as KObject) : new Set<string>();
  const changed = new Set<string>();
  for (const p of after) if (!before.has(p) || JSON.stringify(valueAt(old, p.split('\u0000'))) !== JSON.stringify(valueAt(next, p.split('\u0000')))) changed.add(p);
  const removed = new Set<string>();
  for (const p of before) if (!after.has(p)) removed.add(p);
  entries = withoutPaths(entries, new Set([...changed, ...removed]));
  const mine = entries.find((e) => e.manager === manager && e.operation === 'Update' && (e.subresource ?? '') === (subresource ?? ''));
  const set = mine ? fromFieldsV1(mine.fieldsV1) : new Set<string>();
  for (const p of changed) set.add(p);
  for (const p of removed) set.delete(p);
  if (changed.size || removed.size || !old) entries = setEntry(entries, manager, 'Update', next.apiVersion, set, time, subresource);
  next.metadata.managedFields = entries;
  if (entries.length === 0) delete next.metadata.managedFields;
}

/**
 * Server-side apply of `applied` by `manager` onto `live` (undefined: the object is created).
 * Returns the object to write, with managedFields; throws the API server's 409 on conflicts.
 */
export function serverSideApply(live: Readonly<KObject> | undefined, applied: KObject, manager: string, force: boolean, time: string): KObject {
  const appliedSet = fieldSet(applied);
  let entries = live ? parseEntries(live as KObject) : [];
  const conflicts: { manager: string; apiVersion: string; path: string; subresource?: string }[] = [];
  if (live) {
    for (const e of entries) {
      if (e.manager === manager && e.operation === 'Apply') continue;
      const theirs = fromFieldsV1(e.fieldsV1);
      for (const p of appliedSet) {
        if (!theirs.has(p) || p.endsWith('\u0000.')) continue;
        const segs = p.split('\u0000');
        if (JSON.stringify(valueAt(live, segs)) !== JSON.stringify(valueAt(applied, segs))) conflicts.push({ manager: e.manager, apiVersion: e.apiVersion, path: p, subresource: e.subresource });
      }
    }
  }
  if (conflicts.length && !force) {
    const who = (c: (typeof conflicts)[number]) => `conflict with "${c.manager}"${c.subresource ? ` with subresource "${c.subresource}"` : ''}${c.apiVersion ? ` using ${c.apiVersion}` : ''}`;
    const causes = conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: who(c), field: humanPath(c.path) }));
    const lines = conflicts.map((c) => `${who(c)}: ${humanPath(c.path)}`);
    const message = conflicts.length === 1 ? `Apply failed with 1 conflict: ${lines[0]}` : `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`;
    throw new ApiError(409, 'Conflict', message, { causes });
  }
  if (force && conflicts.length) entries = withoutPaths(entries, new Set(conflicts.map((c) => c.path)), { manager, operation: 'Apply' });
  const next: KObject = live ? structuredClone(live as KObject) : { apiVersion: applied.apiVersion, kind: applied.kind, metadata: {} };
  if (live) {
    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    const previous = entries.find((e) => e.manager === manager && e.operation === 'Apply');
    if (previous) {
      const othersOwn = new Set<string>();
      for (const e of entries) if (e !== previous) for (const p of fromFieldsV1(e.fieldsV1)) othersOwn.add(p);
      const gone = [...fromFieldsV1(previous.fieldsV1)].filter((p) => !appliedSet.has(p) && !othersOwn.has(p));
      // Whole list items first (their fields go with them), deepest paths first.
      gone.sort((a, b) => b.split('\u0000').length - a.split('\u0000').length);
      for (const p of gone) removeAt(next, p.split('\u0000'));
    }
  }
  const { metadata: appliedMeta, ...appliedRest } = applied;
  for (const [k, v] of Object.entries(appliedRest)) {
    if (k === 'apiVersion' || k === 'kind') continue;
    next[k] = mergeInto(next[k], v, k, undefined);
  }
  for (const [k, v] of Object.entries(appliedMeta ?? {})) {
    if (k === 'managedFields' || k === 'resourceVersion' || k === 'uid' || k === 'creationTimestamp' || k === 'generation') continue;
    next.metadata[k] = mergeInto(next.metadata[k], v, k, 'metadata');
  }
  entries = setEntry(entries, manager, 'Apply', applied.apiVersion, appliedSet, time);
  next.metadata.managedFields = entries;
  return next;
}
