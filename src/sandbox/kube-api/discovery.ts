/**
 * Discovery and OpenAPI documents, built from the store's registered types so custom
 * resources appear as soon as their CRD is created.
 *
 * Legacy discovery (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) is served in full.
 * Aggregated discovery is not: the server answers plain `application/json`, which kubectl
 * and client-go treat as "aggregated discovery unsupported" and fall back from.
 *
 * The OpenAPI v3 documents are deliberately thin: for every resource they publish the
 * operations with their group-version-kind and the `fieldValidation` query parameter, which
 * is what kubectl checks before it leaves validation to the server (so `kubectl create -f`
 * works without `--validate=false`). Schemas are left open and unattributed.
 */
import { createHash } from 'node:crypto';
import type { ObjectStore, ResourceType } from '../store.ts';
import { apiVersionOf } from '../store.ts';
import { kindSchemas } from './openapi.ts';

/** The version the simulated control plane reports (an AKS 1.32 patch release). */
export const SERVER_VERSION = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.4',
  gitCommit: '59526cd4867447956156ae3a602fcbac10a2c335',
  gitTreeState: 'clean',
  buildDate: '2025-04-22T16:02:27Z',
  goVersion: 'go1.23.8',
  compiler: 'gc',
  platform: 'linux/amd64',
};

interface GroupVersion {
  group: string;
  version: string;
}

function groupVersions(store: ObjectStore): GroupVersion[] {
  const seen = new Map<string, GroupVersion>();
  for (const t of store.types()) {
    const k = `${t.group}/${t.version}`;
    if (!seen.has(k)) seen.set(k, { group: t.group, version: t.version });
  }
  return [...seen.values()];
}

/** `GET /api`. */
export function apiVersions(serverAddress: string): object {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

/** `GET /apis`: every non-core group with its (single) served version. */
export function apiGroupList(store: ObjectStore): object {
  const groups = groupVersions(store)
    .filter((gv) => gv.group !== '')
    .map((gv) => {
      const v = { groupVersion: `${gv.group}/${gv.version}`, version: gv.version };
      return { name: gv.group, versions: [v], preferredVersion: v };
    });
  return { kind: 'APIGroupList', apiVersion: 'v1', groups };
}

/** `GET /apis/<group>`. */
export function apiGroup(store: ObjectStore, group: string): object | undefined {
  const gv = groupVersions(store).find((g) => g.group === group);
  if (!gv) return undefined;
  const v = { groupVersion: `${gv.group}/${gv.version}`, version: gv.version };
  return { kind: 'APIGroup', apiVersion: 'v1', name: group, versions: [v], preferredVersion: v };
}

const SUBRESOURCE_ENTRY: Record<string, (t: ResourceType) => Record<string, unknown>> = {
  status: (t) => ({ kind: t.kind, verbs: ['get', 'patch', 'update'] }),
  scale: () => ({ group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] }),
  eviction: () => ({ group: 'policy', version: 'v1', kind: 'Eviction', verbs: ['create'] }),
  log: () => ({ kind: 'Pod', verbs: ['get'] }),
  proxy: (t) => ({ kind: `${t.kind}ProxyOptions`, verbs: ['create', 'delete', 'get', 'patch', 'update'] }),
  finalize: (t) => ({ kind: t.kind, verbs: ['update'] }),
  token: () => ({ group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest', verbs: ['create'] }),
  exec: () => ({ kind: 'PodExecOptions', verbs: ['create', 'get'] }),
  attach: () => ({ kind: 'PodAttachOptions', verbs: ['create', 'get'] }),
  portforward: () => ({ kind: 'PodPortForwardOptions', verbs: ['create', 'get'] }),
};

function storageVersionHash(t: ResourceType): string {
  return createHash('sha256').update(`${t.group}/${t.version}/${t.kind}`).digest('base64').slice(0, 11);
}

/** `GET /api/v1` or `/apis/<group>/<version>`; undefined when the group version is not served. */
export function apiResourceList(store: ObjectStore, group: string, version: string): object | undefined {
  const types = store.types().filter((t) => t.group === group && t.version === version);
  if (types.length === 0) return undefined;
  const resources: Record<string, unknown>[] = [];
  for (const t of types) {
    const r: Record<string, unknown> = { name: t.resource, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: t.verbs };
    if (t.shortNames?.length) r.shortNames = t.shortNames;
    if (t.categories?.length) r.categories = t.categories;
    r.storageVersionHash = storageVersionHash(t);
    resources.push(r);
    for (const sub of t.subresources ?? []) {
      const make = SUBRESOURCE_ENTRY[sub];
      if (!make) continue;
      resources.push({ name: `${t.resource}/${sub}`, singularName: '', namespaced: t.namespaced, ...make(t) });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: apiVersionOf({ group, version }), resources };
}

function gvPath(gv: GroupVersion): string {
  return gv.group ? `apis/${gv.group}/${gv.version}` : `api/${gv.version}`;
}

/** `GET /openapi/v2`: one Swagger 2.0 document with the definitions of every served kind. */
export function openApiV2Document(store: ObjectStore): object {
  const definitions: Record<string, unknown> = {};
  for (const t of store.types()) Object.assign(definitions, kindSchemas(store, t, (n) => `#/definitions/${n}`).schemas);
  return { swagger: '2.0', info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion }, paths: {}, definitions };
}

/** `GET /openapi/v3`: the index of per-group-version documents, with content hashes. */
export function openApiV3Index(store: ObjectStore): object {
  const paths: Record<string, { serverRelativeURL: string }> = {};
  for (const gv of groupVersions(store)) {
    const doc = JSON.stringify(openApiV3Document(store, gv.group, gv.version));
    const hash = createHash('sha512').update(doc).digest('hex').slice(0, 128).toUpperCase();
    paths[gvPath(gv)] = { serverRelativeURL: `/openapi/v3/${gvPath(gv)}?hash=${hash}` };
  }
  return { paths };
}

const FIELD_VALIDATION_PARAM = {
  name: 'fieldValidation',
  in: 'query',
  description: 'fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields.',
  schema: { type: 'string', uniqueItems: true },
};
const DRY_RUN_PARAM = { name: 'dryRun', in: 'query', description: 'When present, indicates that modifications should not be persisted.', schema: { type: 'string', uniqueItems: true } };

/** One group version's OpenAPI v3 document, or undefined when it is not served. */
export function openApiV3Document(store: ObjectStore, group: string, version: string): object | undefined {
  const types = store.types().filter((t) => t.group === group && t.version === version);
  if (types.length === 0) return undefined;
  const paths: Record<string, unknown> = {};
  const schemas: Record<string, unknown> = {};
  const prefix = group ? `/apis/${group}/${version}` : `/api/${version}`;
  for (const t of types) {
    const gvk = { group, version, kind: t.kind };
    const kind = kindSchemas(store, t, (n) => `#/components/schemas/${n}`);
    Object.assign(schemas, kind.schemas);
    const ref = { $ref: `#/components/schemas/${kind.name}` };
    const body = { content: { 'application/json': { schema: ref } }, required: true };
    const ok = { description: 'OK', content: { 'application/json': { schema: ref } } };
    const op = (action: string, extra: Record<string, unknown> = {}) => ({
      operationId: `${action}${t.kind}`,
      'x-kubernetes-action': action,
      'x-kubernetes-group-version-kind': gvk,
      responses: { '200': ok },
      ...extra,
    });
    const collection = t.namespaced ? `${prefix}/namespaces/{namespace}/${t.resource}` : `${prefix}/${t.resource}`;
    paths[collection] = {
      get: op('list'),
      post: op('post', { requestBody: body, parameters: [DRY_RUN_PARAM, FIELD_VALIDATION_PARAM] }),
    };
    paths[`${collection}/{name}`] = {
      get: op('get'),
      put: op('put', { requestBody: body, parameters: [DRY_RUN_PARAM, FIELD_VALIDATION_PARAM] }),
      patch: op('patch', {
        // Strategic merge patch is accepted but not advertised: kubectl then computes apply
        // patches from its compiled-in types (exact for every field), not from these schemas,
        // which describe the fields a migration uses rather than the whole API.
        requestBody: { content: { 'application/json-patch+json': { schema: { type: 'object' } }, 'application/merge-patch+json': { schema: { type: 'object' } }, 'application/apply-patch+yaml': { schema: { type: 'object' } } }, required: true },
        parameters: [DRY_RUN_PARAM, FIELD_VALIDATION_PARAM],
      }),
      delete: op('delete', { parameters: [DRY_RUN_PARAM] }),
    };
  }
  return {
    openapi: '3.0.0',
    info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion },
    paths,
    components: { schemas },
  };
}
