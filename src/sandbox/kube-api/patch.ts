/**
 * The three patch formats the API server accepts: JSON patch (RFC 6902), JSON merge patch
 * (RFC 7386) and Kubernetes strategic merge patch.
 *
 * Strategic merge patch needs to know, per field, whether a list is merged by a key or
 * replaced. The real server reads that from the Go struct tags (`patchStrategy`,
 * `patchMergeKey`); here the same tags are written down for the fields a Pod Identity
 * migration touches (pod templates, node spec, conditions, metadata). Lists not described
 * are replaced as a whole, which is what the real server does for lists without a strategy.
 */
import fastJsonPatch from 'fast-json-patch';
import type { KObject } from '../store.ts';
import { StoreError } from '../store.ts';

/** How one field merges; `fields` describes the object (or the list items) below it. */
interface FieldMeta {
  /** Merge the list by this key (`patchStrategy:"merge" patchMergeKey:"<key>"`). */
  mergeKey?: string;
  /** A list of scalars merged as a set (`patchStrategy:"merge"` without a key, e.g. finalizers). */
  primitiveMerge?: boolean;
  fields?: Schema;
}
type Schema = Record<string, FieldMeta>;

const metadataSchema: Schema = {
  finalizers: { primitiveMerge: true },
  ownerReferences: { mergeKey: 'uid' },
};

const containerSchema: Schema = {
  env: { mergeKey: 'name' },
  ports: { mergeKey: 'containerPort' },
  volumeMounts: { mergeKey: 'mountPath' },
  volumeDevices: { mergeKey: 'devicePath' },
  // args, command, envFrom have no patch strategy upstream: they are replaced atomically.
};

const podSpecSchema: Schema = {
  containers: { mergeKey: 'name', fields: containerSchema },
  initContainers: { mergeKey: 'name', fields: containerSchema },
  ephemeralContainers: { mergeKey: 'name', fields: containerSchema },
  volumes: { mergeKey: 'name' },
  imagePullSecrets: { mergeKey: 'name' },
  hostAliases: { mergeKey: 'ip' },
  // tolerations and topologySpreadConstraints' siblings without strategy are replaced.
  topologySpreadConstraints: { mergeKey: 'topologyKey' },
};

const conditionsStatus: Schema = { conditions: { mergeKey: 'type' } };

const podTemplateSchema: Schema = { metadata: { fields: metadataSchema }, spec: { fields: podSpecSchema } };

const workloadSchema: Schema = {
  metadata: { fields: metadataSchema },
  spec: { fields: { template: { fields: podTemplateSchema } } },
  status: { fields: conditionsStatus },
};

const SCHEMAS: Record<string, Schema> = {
  Pod: {
    metadata: { fields: metadataSchema },
    spec: { fields: podSpecSchema },
    status: { fields: { conditions: { mergeKey: 'type' }, podIPs: { mergeKey: 'ip' } } },
  },
  Deployment: workloadSchema,
  ReplicaSet: workloadSchema,
  DaemonSet: workloadSchema,
  Job: { ...workloadSchema, status: { fields: conditionsStatus } },
  Node: {
    metadata: { fields: metadataSchema },
    status: { fields: { conditions: { mergeKey: 'type' }, addresses: { mergeKey: 'type' } } },
  },
  Service: { metadata: { fields: metadataSchema }, spec: { fields: { ports: { mergeKey: 'port' } } } },
  Namespace: { metadata: { fields: metadataSchema }, status: { fields: conditionsStatus } },
  PodDisruptionBudget: { metadata: { fields: metadataSchema }, status: { fields: conditionsStatus } },
};

const DEFAULT_SCHEMA: Schema = { metadata: { fields: metadataSchema } };

/** The patch media types the server accepts, as listed in its 415 answer. */
export const PATCH_TYPES = [
  'application/json-patch+json',
  'application/merge-patch+json',
  'application/apply-patch+yaml',
  'application/strategic-merge-patch+json',
] as const;

function isPlainObject(v: unknown): v is Record<string, any> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch: objects merge, `null` deletes, everything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const out: Record<string, any> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * RFC 6902 JSON patch. A failed `test` or a path that does not exist is a 422 like the
 * real server's `the server rejected our request due to an error in our request`.
 */
export function jsonPatch(target: KObject, ops: unknown): KObject {
  if (!Array.isArray(ops)) throw new StoreError('BadRequest', 'json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  try {
    return fastJsonPatch.applyPatch(structuredClone(target), ops as any, true, false).newDocument as KObject;
  } catch (e) {
    const err = e as Error & { name?: string; operation?: { op?: string; path?: string } };
    if (err.name === 'TEST_OPERATION_FAILED') {
      throw new StoreError('Invalid', `the server rejected our request due to an error in our request`);
    }
    const what = err.operation ? `${err.operation.op} operation does not apply: doc is missing path: "${err.operation.path}"` : err.message;
    throw new StoreError('Invalid', `the server rejected our request due to an error in our request: ${what}`);
  }
}

/**
 * Kubernetes strategic merge patch for an object of `kind`. Supports merge keys, primitive
 * list merging, `$patch: replace|delete` (maps and list items), `$retainKeys`,
 * `$deleteFromPrimitiveList/<field>` and ignores `$setElementOrder/<field>` (order hints).
 */
export function strategicMergePatch(target: KObject, patch: unknown, kind: string): KObject {
  if (!isPlainObject(patch)) throw new StoreError('BadRequest', 'json: cannot unmarshal array into Go value of type map[string]interface {}');
  const merged = mergeMap(target, patch, SCHEMAS[kind] ?? DEFAULT_SCHEMA);
  return (merged ?? {}) as KObject;
}

function mergeMap(orig: unknown, patch: Record<string, any>, schema: Schema | undefined): Record<string, any> | undefined {
  const directive = patch.$patch;
  if (directive === 'delete') return undefined;
  if (directive === 'replace') {
    const { $patch: _p, ...rest } = patch;
    return stripDirectives(rest) as Record<string, any>;
  }
  if (directive !== undefined) throw new StoreError('BadRequest', `Unknown patch type: ${directive} in map: ${JSON.stringify(patch)}`);
  const out: Record<string, any> = isPlainObject(orig) ? { ...orig } : {};
  const retainKeys: string[] | undefined = patch.$retainKeys;
  for (const [key, value] of Object.entries(patch)) {
    if (key === '$retainKeys' || key.startsWith('$setElementOrder/')) continue;
    if (key.startsWith('$deleteFromPrimitiveList/')) {
      const field = key.slice('$deleteFromPrimitiveList/'.length);
      if (Array.isArray(out[field]) && Array.isArray(value)) {
        const drop = new Set(value.map((v) => JSON.stringify(v)));
        out[field] = out[field].filter((v: unknown) => !drop.has(JSON.stringify(v)));
      }
      continue;
    }
    const meta = schema?.[key];
    if (value === null) {
      delete out[key];
    } else if (Array.isArray(value)) {
      out[key] = mergeList(out[key], value, meta);
    } else if (isPlainObject(value)) {
      const merged = mergeMap(out[key], value, meta?.fields);
      if (merged === undefined) delete out[key];
      else out[key] = merged;
    } else {
      out[key] = value;
    }
  }
  if (Array.isArray(retainKeys)) {
    const keep = new Set(retainKeys);
    for (const k of Object.keys(out)) if (!keep.has(k)) delete out[k];
  }
  return out;
}

function mergeList(orig: unknown, patch: unknown[], meta: FieldMeta | undefined): unknown[] {
  const replaceAll = patch.some((p) => isPlainObject(p) && p.$patch === 'replace' && Object.keys(p).length === 1);
  if (replaceAll) return stripDirectives(patch.filter((p) => !(isPlainObject(p) && p.$patch === 'replace'))) as unknown[];
  const base = Array.isArray(orig) ? [...orig] : [];
  if (meta?.primitiveMerge) {
    const seen = new Set(base.map((v) => JSON.stringify(v)));
    for (const v of patch) if (!seen.has(JSON.stringify(v))) base.push(v), seen.add(JSON.stringify(v));
    return base;
  }
  const key = meta?.mergeKey;
  if (!key) return stripDirectives(patch) as unknown[];
  for (const item of patch) {
    if (!isPlainObject(item)) throw new StoreError('BadRequest', `json: cannot unmarshal ${typeof item} into Go value of type map[string]interface {}`);
    const idx = base.findIndex((o) => isPlainObject(o) && o[key] === item[key]);
    if (item.$patch === 'delete') {
      if (idx >= 0) base.splice(idx, 1);
      continue;
    }
    if (item[key] === undefined) throw new StoreError('BadRequest', `map: ${JSON.stringify(item)} does not contain declared merge key: ${key}`);
    if (idx >= 0) base[idx] = mergeMap(base[idx], item, meta.fields) ?? base[idx];
    else base.push(mergeMap(undefined, item, meta.fields));
  }
  return base;
}

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isPlainObject(v)) return v;
  const out: Record<string, any> = {};
  for (const [k, val] of Object.entries(v)) if (!k.startsWith('$')) out[k] = stripDirectives(val);
  return out;
}
