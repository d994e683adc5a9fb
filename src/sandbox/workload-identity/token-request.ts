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
    const body = input.contentType.includes('protobuf') ? decodeTokenRequestProtobuf(input.body) : (decodeBody(input) ?? {});
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

/** Reads protobuf fields of one message: field number -> values (varints as numbers, length-delimited as buffers). */
function protoFields(buf: Buffer): Map<number, (number | Buffer)[]> {
  const out = new Map<number, (number | Buffer)[]>();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new StoreError('BadRequest', 'the protobuf body is truncated');
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value: number | Buffer;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const len = varint();
      value = buf.subarray(i, i + len);
      i += len;
    } else if (wire === 1) {
      value = Number(buf.readBigUInt64LE(i));
      i += 8;
    } else if (wire === 5) {
      value = buf.readUInt32LE(i);
      i += 4;
    } else throw new StoreError('BadRequest', `unsupported protobuf wire type ${wire}`);
    const list = out.get(field) ?? [];
    list.push(value);
    out.set(field, list);
  }
  return out;
}

/**
 * Decodes a TokenRequest sent as `application/vnd.kubernetes.protobuf` (what kubectl sends):
 * the `k8s\0` envelope (runtime.Unknown: raw object in field 2), then `spec` (field 2) with
 * `audiences` (1), `expirationSeconds` (4) and `boundObjectRef` (3: kind 1, apiVersion 2,
 * name 3, uid 4).
 */
export function decodeTokenRequestProtobuf(body: Buffer): any {
  if (body.length < 4 || body.subarray(0, 4).toString('latin1') !== 'k8s\0') throw new StoreError('BadRequest', 'the protobuf body lacks the k8s envelope');
  const envelope = protoFields(body.subarray(4));
  const raw = envelope.get(2)?.[0];
  if (!Buffer.isBuffer(raw)) return {};
  const spec = protoFields(raw).get(2)?.[0];
  if (!Buffer.isBuffer(spec)) return { kind: 'TokenRequest', spec: {} };
  const f = protoFields(spec);
  const text = (v: number | Buffer | undefined) => (Buffer.isBuffer(v) ? v.toString('utf8') : undefined);
  const out: Record<string, unknown> = {};
  const audiences = (f.get(1) ?? []).map((v) => text(v)!).filter((v) => v !== undefined);
  if (audiences.length) out.audiences = audiences;
  const exp = f.get(4)?.[0];
  if (typeof exp === 'number') out.expirationSeconds = exp;
  const ref = f.get(3)?.[0];
  if (Buffer.isBuffer(ref)) {
    const r = protoFields(ref);
    out.boundObjectRef = { kind: text(r.get(1)?.[0]), apiVersion: text(r.get(2)?.[0]), name: text(r.get(3)?.[0]), uid: text(r.get(4)?.[0]) };
  }
  return { kind: 'TokenRequest', spec: out };
}
