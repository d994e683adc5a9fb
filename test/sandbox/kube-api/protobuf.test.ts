/**
 * Kubernetes protobuf request bodies: the `k8s\0` + runtime.Unknown envelope decodes into the
 * same object as its JSON, Go's always-written empty fields are dropped while pointer zeros
 * stay, and a field the definitions do not know is refused instead of silently lost.
 */
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { decodeProtobufObject } from '../../../src/sandbox/kube-api/protobuf.ts';
import { ApiError } from '../../../src/sandbox/kube-api/status.ts';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** Wraps a raw object message in runtime.Unknown as the Go client does. */
function envelope(apiVersion: string, kind: string, raw: Uint8Array): Buffer {
  const typeMeta = protobuf.Writer.create().uint32((1 << 3) | 2).string(apiVersion).uint32((2 << 3) | 2).string(kind).finish();
  const unknown = protobuf.Writer.create().uint32((1 << 3) | 2).bytes(typeMeta).uint32((2 << 3) | 2).bytes(raw).uint32((3 << 3) | 2).string('').uint32((4 << 3) | 2).string('').finish();
  return Buffer.concat([MAGIC, Buffer.from(unknown)]);
}

/** ObjectMeta with a name, plus the empty strings Go writes for unset string fields. */
function meta(name: string): Uint8Array {
  return protobuf.Writer.create().uint32((1 << 3) | 2).string(name).uint32((2 << 3) | 2).string('').uint32((3 << 3) | 2).string('').finish();
}

describe('protobuf request bodies', () => {
  it('decodes a Deployment with replicas 0 kept and empty Go fields dropped', () => {
    const spec = protobuf.Writer.create().uint32((1 << 3) | 0).int32(0).uint32((6 << 3) | 0).int32(0).finish();
    const deploy = protobuf.Writer.create().uint32((1 << 3) | 2).bytes(meta('web')).uint32((2 << 3) | 2).bytes(spec).uint32((3 << 3) | 2).bytes(new Uint8Array()).finish();
    const obj = decodeProtobufObject(envelope('apps/v1', 'Deployment', deploy));
    expect(obj).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { replicas: 0, revisionHistoryLimit: 0 } });
  });

  it('decodes Secret data as base64 and keeps stringData for the registry to fold', () => {
    const entry = (k: string, v: Uint8Array | string, bytes: boolean) => {
      const w = protobuf.Writer.create().uint32((1 << 3) | 2).string(k).uint32((2 << 3) | 2);
      return (bytes ? w.bytes(v as Uint8Array) : w.string(v as string)).finish();
    };
    const secret = protobuf.Writer.create()
      .uint32((1 << 3) | 2).bytes(meta('creds'))
      .uint32((2 << 3) | 2).bytes(entry('pw', Buffer.from('hunter2'), true))
      .uint32((4 << 3) | 2).bytes(entry('user', 'admin', false))
      .finish();
    const obj = decodeProtobufObject(envelope('v1', 'Secret', secret));
    expect(obj.data).toEqual({ pw: Buffer.from('hunter2').toString('base64') });
    expect(obj.stringData).toEqual({ user: 'admin' });
  });

  it('refuses a field it does not know (415, naming the field) and a body without the magic (400)', () => {
    const cm = protobuf.Writer.create().uint32((1 << 3) | 2).bytes(meta('x')).uint32((9 << 3) | 2).string('surprise').finish();
    let err: unknown;
    try {
      decodeProtobufObject(envelope('v1', 'ConfigMap', cm));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe(415);
    expect((err as ApiError).message).toContain('field 9 of ConfigMap');
    expect(() => decodeProtobufObject(Buffer.from('{"kind":"ConfigMap"}'))).toThrow(/expected prefix \[107 56 115 0\]/);
    expect(() => decodeProtobufObject(envelope('v1', 'PersistentVolume', new Uint8Array()))).toThrow(/cannot decode PersistentVolume/);
  });
});
