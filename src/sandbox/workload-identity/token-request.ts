/**
 * The `serviceaccounts/<name>/token` subresource (TokenRequest, `authentication.k8s.io/v1`),
 * what `kubectl create token` and the kubelet call: signs a service account token with the
 * cluster's key. Default audience: the API server's (its service account issuer); default
 * lifetime 1 h; at least 10 minutes; `boundObjectRef` to a Pod, Secret or Node must exist and
 * binds the token to it.
 */
import { isoSeconds, type Clock } from '../clock.ts';
import type { HandlerResult, RequestInput } from '../kube-api/handlers.ts';
import { decodeBody } from '../kube-api/handlers.ts';
import type { ResourceRoute } from '../kube-api/routes.ts';
import { StoreError, type ObjectStore } from '../store.ts';
import type { ServiceAccountIssuer } from './issuer.ts';

const MIN_SECONDS = 600;
const MAX_SECONDS = 2 ** 32;

function invalid(name: string, field: string, message: string): StoreError {
  return new StoreError('Invalid', `TokenRequest.authentication.k8s.io "${name}" is invalid: ${field}: ${message}`, {
    name,
    group: 'authentication.k8s.io',
    kind: 'TokenRequest',
    causes: [{ reason: 'FieldValueInvalid', message, field }],
  });
}

/** Handles `POST .../serviceaccounts/<name>/token`. */
export function tokenRequestHandler(opts: { store: ObjectStore; clock: Clock; issuer: ServiceAccountIssuer }): (method: string, route: ResourceRoute, input: RequestInput) => HandlerResult {
  const { store, issuer } = opts;
  return (method, route, input) => {
    if (method !== 'POST') throw new StoreError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
    const name = route.name!;
    const ns = route.namespace!;
    const sa = store.getOrThrow(route.type, ns, name);
    const body = decodeBody(input) ?? {};
    if (body.kind && body.kind !== 'TokenRequest') throw new StoreError('BadRequest', `${body.kind} in version "v1" cannot be handled as a TokenRequest: the kind in the data does not match the expected kind`);
    const spec = body.spec ?? {};
    const expirationSeconds = spec.expirationSeconds ?? 3600;
    if (!Number.isInteger(expirationSeconds)) throw invalid(name, 'spec.expirationSeconds', `Invalid value: ${JSON.stringify(expirationSeconds)}: must be an integer`);
    if (expirationSeconds < MIN_SECONDS) throw invalid(name, 'spec.expirationSeconds', `Invalid value: ${expirationSeconds}: may not specify a duration less than 10 minutes`);
    if (expirationSeconds > MAX_SECONDS) throw invalid(name, 'spec.expirationSeconds', `Invalid value: ${expirationSeconds}: may not specify a duration larger than 2^32 seconds`);
    const audiences: string[] = Array.isArray(spec.audiences) && spec.audiences.length ? spec.audiences.map(String) : [issuer.currentIssuer()];
    let pod: { name: string; uid: string } | undefined;
    let node: { name: string; uid?: string } | undefined;
    const ref = spec.boundObjectRef;
    if (ref) {
      const kind = String(ref.kind ?? '');
      const resource = kind === 'Pod' ? 'pods' : kind === 'Secret' ? 'secrets' : kind === 'Node' ? 'nodes' : '';
      if (!resource) throw invalid(name, 'spec.boundObjectRef.kind', `Unsupported value: "${kind}": supported values: "Pod", "Secret", "Node"`);
      const t = store.type('', resource);
      const obj = t ? store.peek(t, kind === 'Node' ? undefined : ns, String(ref.name ?? '')) : undefined;
      if (!obj || (ref.uid && ref.uid !== obj.metadata.uid)) throw new StoreError('NotFound', `${resource} "${ref.name}" not found`, { name: String(ref.name ?? ''), kind: resource });
      if (kind === 'Pod') {
        pod = { name: String(obj.metadata.name), uid: String(obj.metadata.uid) };
        if (obj.spec?.nodeName) node = { name: String(obj.spec.nodeName) };
      }
      if (kind === 'Node') node = { name: String(obj.metadata.name), uid: obj.metadata.uid };
    }
    const t = issuer.issue({ namespace: ns, serviceAccount: name, serviceAccountUid: sa.metadata.uid, audiences, expirationSeconds, pod, node });
    return {
      status: 201,
      body: {
        kind: 'TokenRequest',
        apiVersion: 'authentication.k8s.io/v1',
        metadata: { name, namespace: ns, creationTimestamp: null },
        spec: { audiences, expirationSeconds, boundObjectRef: ref ?? null },
        status: { token: t.token, expirationTimestamp: isoSeconds(t.expiresAt) },
      },
    };
  };
}
