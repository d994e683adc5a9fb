/**
 * Maps a Kubernetes REST path to the resource type, namespace, name and subresource it
 * addresses, the way the real server's API installer lays paths out:
 *
 *   /api/v1/<resource>[/<name>[/<subresource>]]
 *   /api/v1/namespaces/<ns>/<resource>[/<name>[/<subresource>]]
 *   /apis/<group>/<version>/...  (same shapes)
 *   .../pods/<name>[:<port>]/proxy/<path>
 */
import type { ObjectStore, ResourceType } from '../store.ts';
import { qualifiedResource } from '../store.ts';
import { notFoundPath } from './status.ts';

export interface ResourceRoute {
  type: ResourceType;
  /** Set for namespaced paths (`/namespaces/<ns>/...`). */
  namespace?: string;
  name?: string;
  subresource?: string;
  /** For `proxy`: the path after `/proxy` (always starting with `/`). */
  proxyPath?: string;
}

/**
 * Resolves the segments after `/api/v1` or `/apis/<group>/<version>`. Throws the real
 * server's 404 for unknown resources, wrong versions and unknown subresources.
 */
export function resolveResourcePath(store: ObjectStore, group: string, version: string, segments: string[], trailingSlash: boolean): ResourceRoute {
  let rest = segments;
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    const inner = store.type(group, rest[2]);
    if (inner && inner.namespaced) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
  }
  if (rest.length === 0) throw notFoundPath();
  const type = store.type(group, rest[0]);
  if (!type || type.version !== version) throw notFoundPath();
  if (namespace !== undefined && !type.namespaced) throw notFoundPath();
  const name = rest[1];
  const subresource = rest[2];
  if (name !== undefined && type.namespaced && namespace === undefined) throw notFoundPath();
  if (name === '') throw notFoundPath();
  if (subresource === undefined) {
    if (rest.length > 2) throw notFoundPath();
    return { type, namespace, name };
  }
  if (!(type.subresources ?? []).includes(subresource)) throw notFoundPath();
  if (subresource === 'proxy') {
    const tail = rest.slice(3).join('/');
    return { type, namespace, name, subresource, proxyPath: `/${tail}${trailingSlash && tail ? '/' : ''}` };
  }
  if (rest.length > 3) throw notFoundPath();
  return { type, namespace, name, subresource };
}

/** The resource label used in metrics: `pods`, `pods/eviction`, `deployments.apps/scale`. */
export function metricsResource(route: ResourceRoute): string {
  const base = qualifiedResource(route.type);
  return route.subresource ? `${base}/${route.subresource}` : base;
}
