/**
 * The REST verbs over the object store: get, list (selectors, paging), create, update,
 * patch, delete, deletecollection and the `status` / `scale` subresources. Each handler
 * returns the HTTP status and body to answer with, or throws an error the server turns into
 * a `v1.Status`.
 */
import { parse as parseYaml } from 'yaml';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import { apiVersionOf, qualifiedResource, StoreError } from '../store.ts';
import { type FieldRequirement, type LabelRequirement, labelSelectorFromObject, matchFields, matchLabels, parseFieldSelector, parseLabelSelector } from '../selectors.ts';
import { applyDefaults, validate } from './defaults.ts';
import { decodeProtobufObject, isProtobuf } from './protobuf.ts';
import type { ClientTime } from './client-time.ts';
import { serverSideApply, trackUpdate } from './field-manager.ts';
import { jsonPatch, mergePatch, strategicMergePatch } from './patch.ts';
import type { ResourceRoute } from './routes.ts';
import { ApiError, badRequest, successStatus } from './status.ts';

/** What a handler answers: an HTTP status and a JSON body. */
export interface HandlerResult {
  status: number;
  body: unknown;
  /** The body's timestamps are already in client time (server-side tables). */
  converted?: boolean;
}

/** Parsed request inputs every handler may need. */
export interface RequestInput {
  query: URLSearchParams;
  body: Buffer;
  contentType: string;
  dryRun: boolean;
  /** Maps timestamps in request bodies from client time to simulated time. */
  clientTime?: ClientTime;
  /** Who writes (`fieldManager`, else the User-Agent's first word), for managedFields. */
  manager?: string;
  /** Now (simulated, RFC 3339), for managedFields entries. */
  time?: string;
  /** Admission of the object about to be written (e.g. the RBAC escalation check); throws to refuse. */
  admit?: (t: ResourceType, obj: KObject) => void;
}

const APPLY_PATCH = 'application/apply-patch+yaml';

// Field selectors the real server accepts per type (beyond metadata.name / metadata.namespace).
const FIELD_LABELS: Record<string, string[]> = {
  '/pods': ['spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'spec.hostNetwork', 'status.phase', 'status.podIP', 'status.podIPs', 'status.nominatedNodeName'],
  '/nodes': ['spec.unschedulable'],
  '/namespaces': ['status.phase'],
  '/secrets': ['type'],
  '/events': ['involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid', 'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason', 'reportingComponent', 'source', 'type'],
  'apps/replicasets': ['status.replicas'],
  'batch/jobs': ['status.successful'],
};

/** Parses and checks `labelSelector` / `fieldSelector` (400 for what the server rejects). */
export function parseSelectors(t: ResourceType, query: URLSearchParams): { labels: LabelRequirement[]; fields: FieldRequirement[] } {
  const labels = parseLabelSelector(query.get('labelSelector'));
  const fields = parseFieldSelector(query.get('fieldSelector'));
  const allowed = new Set(['metadata.name', 'metadata.namespace', ...(FIELD_LABELS[`${t.group}/${t.resource}`] ?? [])]);
  for (const f of fields) {
    if (!allowed.has(f.path)) throw badRequest(`field label not supported: ${f.path}`);
  }
  return { labels, fields };
}

/** Decodes a JSON (or YAML) request body into an object. */
export function decodeBody(input: RequestInput): any {
  const obj = decodeRaw(input);
  input.clientTime?.fromClient(obj);
  return obj;
}

function decodeRaw(input: RequestInput): any {
  if (isProtobuf(input.contentType)) return decodeProtobufObject(input.body);
  const text = input.body.toString('utf8');
  if (text.trim() === '') throw badRequest('Object \'Kind\' is missing in \'\'');
  const ct = input.contentType;
  try {
    if (ct.includes('yaml')) return parseYaml(text);
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(`error decoding request body: ${(e as Error).message}`);
  }
}

interface ContinueToken {
  v: 'meta.k8s.io/v1';
  rv: number;
  start: string;
}

function encodeContinue(rv: number, lastKey: string): string {
  const token: ContinueToken = { v: 'meta.k8s.io/v1', rv, start: `${lastKey}\u0000` };
  return Buffer.from(JSON.stringify(token)).toString('base64url');
}

function decodeContinue(raw: string): ContinueToken {
  try {
    const t = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as ContinueToken;
    if (t.v !== 'meta.k8s.io/v1' || typeof t.start !== 'string' || typeof t.rv !== 'number') throw new Error('bad');
    return t;
  } catch {
    throw badRequest(`continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)`);
  }
}

function keyOf(o: Readonly<KObject>): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name!;
}

/** One page of a list: the stored objects themselves (read-only) and the list metadata. */
export interface ListPage {
  items: Readonly<KObject>[];
  resourceVersion: string;
  continue?: string;
  remainingItemCount?: number;
}

/**
 * Lists matching objects in key order. With `limit`, returns one page and an opaque
 * continue token; `remainingItemCount` is reported when no selector filters the list
 * (the real server only knows it then).
 */
export function listPage(store: ObjectStore, route: ResourceRoute, query: URLSearchParams): ListPage {
  const t = route.type;
  const { labels, fields } = parseSelectors(t, query);
  const limitRaw = query.get('limit');
  const limit = limitRaw ? Number(limitRaw) : 0;
  if (limitRaw && !(Number.isInteger(limit) && limit >= 0)) throw badRequest(`invalid limit: ${limitRaw}`);
  const cont = query.get('continue');
  const token = cont ? decodeContinue(cont) : undefined;
  const listRv = token?.rv ?? store.currentResourceVersion();
  const start = token?.start;
  const items: Readonly<KObject>[] = [];
  let remaining = 0;
  let lastKey: string | undefined;
  for (const o of store.scan(t, { namespace: route.namespace, labelSelector: labels, fieldSelector: fields })) {
    if (start !== undefined && keyOf(o) < start) continue;
    if (limit > 0 && items.length >= limit) {
      remaining++;
      continue;
    }
    items.push(o);
    lastKey = keyOf(o);
  }
  const page: ListPage = { items, resourceVersion: String(listRv) };
  if (remaining > 0 && lastKey !== undefined) {
    page.continue = encodeContinue(listRv, lastKey);
    if (labels.length === 0 && fields.length === 0) page.remainingItemCount = remaining;
  }
  return page;
}

/** The `<Kind>List` body of a page. */
export function listBody(t: ResourceType, page: ListPage): object {
  const metadata: Record<string, unknown> = { resourceVersion: page.resourceVersion };
  if (page.continue) metadata.continue = page.continue;
  if (page.remainingItemCount !== undefined) metadata.remainingItemCount = page.remainingItemCount;
  return { kind: t.listKind, apiVersion: apiVersionOf(t), metadata, items: page.items };
}

function expectKind(t: ResourceType, obj: any): void {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw badRequest(`Object 'Kind' is missing in '${JSON.stringify(obj)}'`);
  if (obj.apiVersion && obj.apiVersion !== apiVersionOf(t)) {
    throw badRequest(`the API version in the data (${obj.apiVersion}) does not match the expected API version (${apiVersionOf(t)})`);
  }
  if (obj.kind && obj.kind !== t.kind) throw badRequest(`${obj.kind} in version "${t.version}" cannot be handled as a ${t.kind}: the kind in the data does not match the expected kind`);
  obj.metadata = obj.metadata ?? {};
}

function checkNamespace(route: ResourceRoute, obj: KObject): void {
  if (!route.type.namespaced) return;
  const ns = obj.metadata.namespace;
  if (ns && route.namespace && ns !== route.namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
  obj.metadata.namespace = route.namespace ?? ns;
}

// Types whose status a client cannot set on create: the real strategies reset it.
const STATUS_RESET_ON_CREATE = new Set(['/Pod', 'apps/Deployment', 'apps/ReplicaSet', 'apps/DaemonSet', 'batch/Job', 'policy/PodDisruptionBudget']);

function resetStatusOnCreate(store: ObjectStore, t: ResourceType, obj: KObject): void {
  const builtin = STATUS_RESET_ON_CREATE.has(`${t.group}/${t.kind}`);
  const customWithStatus = !builtin && !!t.subresources?.includes('status') && isCustomType(store, t);
  if (builtin || customWithStatus) delete obj.status;
}

/** POST to a collection. */
export function createObject(store: ObjectStore, route: ResourceRoute, input: RequestInput): HandlerResult {
  const t = route.type;
  const obj = decodeBody(input) as KObject;
  expectKind(t, obj);
  checkNamespace(route, obj);
  resetStatusOnCreate(store, t, obj);
  const created = store.create(t, obj, {
    dryRun: input.dryRun,
    prepare: (o) => {
      applyDefaults(t, o);
      validate(store, t, o);
      input.admit?.(t, o);
      if (input.manager) trackUpdate(undefined, o, input.manager, input.time ?? o.metadata.creationTimestamp!);
    },
  });
  return { status: 201, body: created };
}

function checkName(route: ResourceRoute, obj: KObject): void {
  if (!obj.metadata.name) obj.metadata.name = route.name;
  if (obj.metadata.name !== route.name) throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${route.name})`);
}

/** Writes a full object (main resource or `status`) after defaulting and validation. */
function writeUpdate(store: ObjectStore, route: ResourceRoute, obj: KObject, dryRun: boolean, input?: RequestInput, tracked = false): KObject {
  const t = route.type;
  const old = store.getOrThrow(t, route.namespace, route.name!);
  if (route.subresource === 'status') return store.update(t, obj, { dryRun, subresource: 'status' });
  // Through the main resource a client never changes status (the store keeps the stored one,
  // but would accept one where none was stored yet).
  if (t.subresources?.includes('status')) {
    if (old.status === undefined) delete obj.status;
    else obj.status = old.status;
  }
  applyDefaults(t, obj);
  validate(store, t, obj, old);
  input?.admit?.(t, obj);
  if (!tracked && input?.manager) trackUpdate(old, obj, input.manager, input.time ?? old.metadata.creationTimestamp!);
  return store.update(t, obj, { dryRun });
}

/** PUT on an object or its `status`. */
export function updateObject(store: ObjectStore, route: ResourceRoute, input: RequestInput): HandlerResult {
  const obj = decodeBody(input) as KObject;
  expectKind(route.type, obj);
  checkName(route, obj);
  checkNamespace(route, obj);
  return { status: 200, body: writeUpdate(store, route, obj, input.dryRun, input) };
}

/** Applies a patch body of the given media type to `target`. */
export function applyPatch(target: KObject, input: RequestInput, kind: string, custom: boolean): KObject {
  const ct = input.contentType.split(';')[0].trim();
  let patch: unknown;
  try {
    patch = JSON.parse(input.body.toString('utf8'));
  } catch (e) {
    throw badRequest(`error decoding patch: ${(e as Error).message}`);
  }
  switch (ct) {
    case 'application/json-patch+json':
      return jsonPatch(target, patch);
    case 'application/merge-patch+json':
      if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) throw badRequest('json: cannot unmarshal array into Go value of type map[string]interface {}');
      return mergePatch(target, patch) as KObject;
    case 'application/strategic-merge-patch+json':
      if (custom) throw unsupportedPatch(true);
      return strategicMergePatch(target, patch, kind);
    default:
      throw unsupportedPatch(custom);
  }
}

/** The server's 415 for a patch media type it cannot apply. */
export function unsupportedPatch(custom: boolean): ApiError {
  const types = custom
    ? 'application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml'
    : 'application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml';
  return new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${types}`);
}

/** True for types served from a CustomResourceDefinition. */
export function isCustomType(store: ObjectStore, t: ResourceType): boolean {
  const crdType = store.type('apiextensions.k8s.io', 'customresourcedefinitions');
  return !!crdType && !!store.peek(crdType, undefined, `${t.resource}.${t.group}`);
}

/** PATCH on an object or its `status`. */
export function patchObject(store: ObjectStore, route: ResourceRoute, input: RequestInput): HandlerResult {
  const t = route.type;
  if (input.contentType.split(';')[0].trim() === APPLY_PATCH) return applyObject(store, route, input);
  const cur = store.getOrThrow(t, route.namespace, route.name!);
  const next = applyPatch(cur, input, t.kind, isCustomType(store, t));
  if (!next || typeof next !== 'object' || !next.metadata) throw badRequest('the patch removed the object\'s metadata');
  if (next.metadata.name !== cur.metadata.name) throw badRequest(`the name of the object (${next.metadata.name}) does not match the name on the URL (${route.name})`);
  if (t.namespaced && next.metadata.namespace !== cur.metadata.namespace) {
    throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
  }
  next.apiVersion = cur.apiVersion;
  next.kind = cur.kind;
  return { status: 200, body: writeUpdate(store, route, next, input.dryRun, input) };
}

/** PATCH with `application/apply-patch+yaml`: server-side apply (creates the object when absent). */
function applyObject(store: ObjectStore, route: ResourceRoute, input: RequestInput): HandlerResult {
  const t = route.type;
  const manager = input.query.get('fieldManager');
  if (!manager) {
    throw new ApiError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch', {
      group: 'meta.k8s.io',
      kind: 'PatchOptions',
      causes: [{ reason: 'FieldValueRequired', message: 'Required value: is required for apply patch', field: 'fieldManager' }],
    });
  }
  const forceRaw = input.query.get('force');
  if (forceRaw !== null && forceRaw !== 'true' && forceRaw !== 'false') throw badRequest(`invalid force: ${forceRaw}`);
  let applied: any;
  try {
    applied = parseYaml(input.body.toString('utf8'));
  } catch (e) {
    throw badRequest(`error decoding YAML: ${(e as Error).message}`);
  }
  input.clientTime?.fromClient(applied);
  expectKind(t, applied);
  if (!applied.apiVersion || !applied.kind) throw badRequest('apiVersion and kind must be set in an apply patch');
  if (applied.metadata.name && applied.metadata.name !== route.name) throw badRequest(`the name of the object (${applied.metadata.name}) does not match the name on the URL (${route.name})`);
  applied.metadata.name = route.name;
  if (t.namespaced) {
    if (applied.metadata.namespace && applied.metadata.namespace !== route.namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
  }
  const time = input.time ?? new Date().toISOString();
  const live = store.get(t, route.namespace, route.name!);
  const next = serverSideApply(live, applied, manager, forceRaw === 'true', time);
  if (!live) {
    if (t.namespaced) next.metadata.namespace = route.namespace;
    resetStatusOnCreate(store, t, next);
    const created = store.create(t, next, {
      dryRun: input.dryRun,
      prepare: (o) => {
        applyDefaults(t, o);
        validate(store, t, o);
        input.admit?.(t, o);
      },
    });
    return { status: 201, body: created };
  }
  return { status: 200, body: writeUpdate(store, route, next, input.dryRun, input, true) };
}

/** Options of a DELETE, from the body (`DeleteOptions`) and the query, query winning. */
export interface DeleteRequest {
  gracePeriodSeconds?: number;
  propagationPolicy?: string;
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun: boolean;
}

export function parseDeleteOptions(input: RequestInput): DeleteRequest {
  let body: any = {};
  const text = isProtobuf(input.contentType) ? '' : input.body.toString('utf8').trim();
  if (isProtobuf(input.contentType) && input.body.length > 0) body = decodeProtobufObject(input.body);
  else if (text) {
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw badRequest(`error decoding DeleteOptions: ${(e as Error).message}`);
    }
  }
  const q = input.query;
  const graceRaw = q.get('gracePeriodSeconds') ?? body.gracePeriodSeconds;
  const grace = graceRaw === undefined || graceRaw === null ? undefined : Number(graceRaw);
  if (grace !== undefined && (!Number.isInteger(grace) || grace < 0)) throw badRequest(`invalid gracePeriodSeconds: ${graceRaw}`);
  const propagationPolicy = q.get('propagationPolicy') ?? body.propagationPolicy ?? undefined;
  if (propagationPolicy !== undefined && !['Orphan', 'Background', 'Foreground'].includes(propagationPolicy)) {
    throw new ApiError(422, 'Invalid', `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${propagationPolicy}": supported values: "Foreground", "Background", "Orphan", "nil"`, {
      kind: 'DeleteOptions',
      group: 'meta.k8s.io',
      causes: [{ reason: 'FieldValueNotSupported', message: `Unsupported value: "${propagationPolicy}": supported values: "Foreground", "Background", "Orphan", "nil"`, field: 'propagationPolicy' }],
    });
  }
  const bodyDry = Array.isArray(body.dryRun) && body.dryRun.includes('All');
  return { gracePeriodSeconds: grace, propagationPolicy, preconditions: body.preconditions, dryRun: input.dryRun || bodyDry };
}

/**
 * The grace period a pod deletion gets: none for pods never scheduled or already finished,
 * else the requested one, else the pod's `terminationGracePeriodSeconds` (default 30).
 */
export function podGracePeriod(pod: Readonly<KObject>, requested: number | undefined): number {
  if (!pod.spec?.nodeName) return 0;
  if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return 0;
  if (requested !== undefined) return requested;
  return pod.spec?.terminationGracePeriodSeconds ?? 30;
}

function isPod(t: ResourceType): boolean {
  return t.group === '' && t.resource === 'pods';
}

/** Deletes one object; returns what the real server answers (the object, or a Success Status). */
export function deleteOne(store: ObjectStore, t: ResourceType, namespace: string | undefined, name: string, opts: DeleteRequest): unknown {
  const cur = store.peek(t, namespace, name);
  if (!cur) store.getOrThrow(t, namespace, name);
  const grace = isPod(t) ? podGracePeriod(cur!, opts.gracePeriodSeconds) : 0;
  // Foreground and Orphan propagation are finalizers the garbage collector carries out.
  const addFinalizers = opts.propagationPolicy === 'Foreground' ? ['foregroundDeletion'] : opts.propagationPolicy === 'Orphan' ? ['orphan'] : undefined;
  const { object, removed } = store.delete(t, namespace, name, { gracePeriodSeconds: grace, preconditions: opts.preconditions, dryRun: opts.dryRun, addFinalizers });
  // Pods (and anything not yet gone) are answered with the object; the rest with a Status.
  if (isPod(t) || !removed) return object;
  return successStatus(200, { name, group: t.group, kind: t.resource, uid: object.metadata.uid });
}

/** DELETE on an object. */
export function deleteObject(store: ObjectStore, route: ResourceRoute, input: RequestInput): HandlerResult {
  const opts = parseDeleteOptions(input);
  return { status: 200, body: deleteOne(store, route.type, route.namespace, route.name!, opts) };
}

/** DELETE on a collection: deletes every match and answers the list of what was deleted. */
export function deleteCollection(store: ObjectStore, route: ResourceRoute, input: RequestInput): HandlerResult {
  const t = route.type;
  if (!t.verbs.includes('deletecollection')) throw new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
  const opts = parseDeleteOptions(input);
  const { labels, fields } = parseSelectors(t, input.query);
  const targets = [...store.scan(t, { namespace: route.namespace, labelSelector: labels, fieldSelector: fields })].map((o) => ({ ns: o.metadata.namespace, name: o.metadata.name! }));
  const items: unknown[] = [];
  for (const target of targets) {
    try {
      const r = deleteOne(store, t, target.ns, target.name, opts);
      items.push((r as any)?.kind === 'Status' ? store.get(t, target.ns, target.name) ?? { metadata: { name: target.name, namespace: target.ns } } : r);
    } catch (e) {
      // Objects deleted concurrently are simply not in the answer.
      if (!(e instanceof StoreError && e.reason === 'NotFound')) throw e;
    }
  }
  return { status: 200, body: { kind: t.listKind, apiVersion: apiVersionOf(t), metadata: { resourceVersion: String(store.currentResourceVersion()) }, items } };
}

// ---- scale ------------------------------------------------------------------------------

function selectorText(sel: any): string {
  const reqs = labelSelectorFromObject(sel);
  return reqs
    .map((r) => {
      switch (r.op) {
        case 'eq':
          return `${r.key}=${r.value}`;
        case 'neq':
          return `${r.key}!=${r.value}`;
        case 'in':
          return `${r.key} in (${r.values.join(',')})`;
        case 'notin':
          return `${r.key} notin (${r.values.join(',')})`;
        case 'exists':
          return r.key;
        case 'notexists':
          return `!${r.key}`;
      }
    })
    .join(',');
}

/** The autoscaling/v1 Scale view of a Deployment or ReplicaSet. */
export function scaleOf(o: Readonly<KObject>): KObject {
  const md = o.metadata;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name: md.name, namespace: md.namespace, uid: md.uid, resourceVersion: md.resourceVersion, creationTimestamp: md.creationTimestamp },
    spec: { replicas: o.spec?.replicas ?? 0 },
    status: { replicas: o.status?.replicas ?? 0, selector: selectorText(o.spec?.selector) },
  };
}

/** GET / PUT / PATCH on `scale`. */
export function handleScale(store: ObjectStore, route: ResourceRoute, method: string, input: RequestInput): HandlerResult {
  const t = route.type;
  const cur = store.getOrThrow(t, route.namespace, route.name!);
  if (method === 'GET') return { status: 200, body: scaleOf(cur) };
  let scale: any;
  if (method === 'PUT') {
    scale = decodeBody(input);
    if (scale?.kind && scale.kind !== 'Scale') throw badRequest(`${scale.kind} in version "v1" cannot be handled as a Scale: the kind in the data does not match the expected kind`);
  } else if (method === 'PATCH') {
    scale = applyPatch(scaleOf(cur), input, 'Scale', false);
  } else throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
  const replicas = scale?.spec?.replicas ?? 0;
  if (!Number.isInteger(replicas) || replicas < 0) {
    throw new ApiError(422, 'Invalid', `Scale.autoscaling "${route.name}" is invalid: spec.replicas: Invalid value: ${replicas}: must be greater than or equal to 0`, {
      name: route.name,
      group: 'autoscaling',
      kind: 'Scale',
      causes: [{ reason: 'FieldValueInvalid', message: `Invalid value: ${replicas}: must be greater than or equal to 0`, field: 'spec.replicas' }],
    });
  }
  const rv = scale?.metadata?.resourceVersion;
  if (rv && rv !== cur.metadata.resourceVersion) {
    throw new StoreError('Conflict', `Operation cannot be fulfilled on ${qualifiedResource(t)} "${route.name}": the object has been modified; please apply your changes to the latest version and try again`, { name: route.name, group: t.group, kind: t.resource });
  }
  const next = structuredClone(cur);
  next.spec = { ...(next.spec ?? {}), replicas };
  if (input.manager) trackUpdate(cur, next, input.manager, input.time ?? cur.metadata.creationTimestamp!, 'scale');
  const written = store.update(t, next, { dryRun: input.dryRun });
  return { status: 200, body: scaleOf(written) };
}

/** Evaluates a PDB's selector against pod labels: nil selects nothing, `{}` selects everything. */
export function pdbSelects(pdb: Readonly<KObject>, labels: Record<string, string> | undefined): boolean {
  const sel = pdb.spec?.selector;
  if (!sel) return false;
  try {
    return matchLabels(labelSelectorFromObject(sel), labels);
  } catch {
    return false;
  }
}

export { matchFields, matchLabels };
