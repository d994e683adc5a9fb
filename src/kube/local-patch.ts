/**
 * Applies a patch to an object locally, the way the API server would, so that a client-side
 * dry-run can return the object a write would have produced without sending it.
 *
 * JSON patch (RFC 6902) and JSON merge patch (RFC 7386) are exact. Strategic merge patch
 * follows the API server for the list fields the migration touches, merged by their patch
 * merge keys (containers and env by `name`, ports by `containerPort`, ...); other lists are
 * replaced, as the server does for lists without a merge key. `$patch: delete|replace` and
 * `$retainKeys` are honoured for maps and keyed list items.
 */
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

/** Merge key of each list field that strategic merge patch merges instead of replacing (from the Kubernetes API types). */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  ports: 'containerPort',
  imagePullSecrets: 'name',
  hostAliases: 'ip',
  conditions: 'type',
  ownerReferences: 'uid',
};

/** Lists of scalars merged as sets by the server (`patchStrategy: merge` on a primitive list). */
const SET_LISTS = new Set(['finalizers']);

/** Patch type names as the gateway takes them. */
export type PatchType = 'strategic' | 'merge' | 'json';

/** Returns a new object: `target` with `patch` applied. Does not modify its inputs. */
export function applyPatchLocally<T>(target: T, patch: unknown, type: PatchType): T {
  const base = structuredClone(target);
  if (type === 'json') {
    if (!Array.isArray(patch)) throw new Error('a JSON patch must be an array of operations');
    return fastJsonPatch.applyPatch(base, structuredClone(patch) as Operation[], true, false).newDocument;
  }
  if (type === 'merge') return mergePatch(base, patch) as T;
  return strategicMerge(base, patch, '') as T;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function strategicMerge(target: unknown, patch: unknown, field: string): unknown {
  if (Array.isArray(patch)) return mergeList(Array.isArray(target) ? target : [], patch, field);
  if (!isPlainObject(patch)) return structuredClone(patch);
  if (patch.$patch === 'replace') {
    const { $patch: _p, ...rest } = patch;
    return structuredClone(rest);
  }
  if (patch.$patch === 'delete') return undefined;
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  const retain = Array.isArray(patch.$retainKeys) ? new Set(patch.$retainKeys as string[]) : undefined;
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$retainKeys' || k === '$patch') continue;
    if (k.startsWith('$setElementOrder/')) continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const list = k.slice('$deleteFromPrimitiveList/'.length);
      const drop = new Set((v as unknown[]).map((x) => JSON.stringify(x)));
      if (Array.isArray(out[list])) out[list] = (out[list] as unknown[]).filter((x) => !drop.has(JSON.stringify(x)));
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const merged = strategicMerge(out[k], v, k);
    if (merged === undefined) delete out[k];
    else out[k] = merged;
  }
  if (retain) for (const k of Object.keys(out)) if (!retain.has(k)) delete out[k];
  return out;
}

function mergeList(target: unknown[], patch: unknown[], field: string): unknown[] {
  const key = MERGE_KEYS[field];
  if (SET_LISTS.has(field)) {
    const seen = new Set(target.map((x) => JSON.stringify(x)));
    return [...target, ...patch.filter((x) => !seen.has(JSON.stringify(x)))];
  }
  if (!key || !patch.every((p) => isPlainObject(p))) return structuredClone(patch);
  if (patch.length === 1 && isPlainObject(patch[0]) && patch[0].$patch === 'replace') return [];
  const out = target.map((x) => structuredClone(x));
  for (const item of patch as Record<string, unknown>[]) {
    const idx = out.findIndex((x) => isPlainObject(x) && x[key] === item[key]);
    if (item.$patch === 'delete') {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) out[idx] = strategicMerge(out[idx], item, field);
    else out.push(strategicMerge(undefined, item, field));
  }
  return out;
}
