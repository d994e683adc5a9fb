/**
 * The kubelet's service account token projection: for a container that mounts a projected
 * volume with a `serviceAccountToken` source, the file `<mountPath>/<path>` holds a token the
 * kubelet obtained for the pod's service account (bound to the pod, with the source's
 * `audience` and `expirationSeconds`), and the kubelet rewrites it once the token is older
 * than 80 % of its lifetime (or 24 h), as the real token manager does. The content is what
 * the kubelet last wrote: reads between two rotations see the same token.
 */
import type { Clock } from '../clock.ts';
import type { VolumeFiles } from '../runtime.ts';
import type { KObject, ObjectStore } from '../store.ts';
import type { ServiceAccountIssuer } from './issuer.ts';

/** Audience of a projected token whose source names none: the API server's audience. */
const API_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';
const MAX_CACHED = 50_000;

interface Written {
  token: string;
  writtenAt: number;
  rotateAt: number;
  expiresAt: number;
}

export class ProjectedTokenFiles implements VolumeFiles {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly issuer: ServiceAccountIssuer;
  private readonly written = new Map<string, Written>();

  constructor(opts: { store: ObjectStore; clock: Clock; issuer: ServiceAccountIssuer }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.issuer = opts.issuer;
  }

  read(pod: Readonly<KObject>, container: Readonly<Record<string, any>>, path: string): string | undefined {
    for (const m of (container.volumeMounts as any[] | undefined) ?? []) {
      const base = String(m.mountPath ?? '').replace(/\/+$/, '');
      if (!base || !path.startsWith(`${base}/`)) continue;
      const rel = path.slice(base.length + 1);
      const volume = ((pod.spec?.volumes as any[] | undefined) ?? []).find((v) => v.name === m.name);
      const source = (volume?.projected?.sources as any[] | undefined)?.find((s) => s.serviceAccountToken && s.serviceAccountToken.path === rel)?.serviceAccountToken;
      if (!source) continue;
      return this.tokenFor(pod, String(volume.name), source);
    }
    return undefined;
  }

  /** The token currently in the file (rotated when due). */
  private tokenFor(pod: Readonly<KObject>, volume: string, source: { audience?: string; expirationSeconds?: number; path: string }): string {
    const key = `${pod.metadata.uid}/${volume}/${source.path}`;
    const now = this.clock.now();
    const cur = this.written.get(key);
    if (cur && now < cur.rotateAt) return cur.token;
    const ns = String(pod.metadata.namespace);
    const saName = String(pod.spec?.serviceAccountName ?? 'default');
    const saType = this.store.type('', 'serviceaccounts');
    const sa = saType ? this.store.peek(saType, ns, saName) : undefined;
    const nodeType = this.store.type('', 'nodes');
    const node = pod.spec?.nodeName && nodeType ? this.store.peek(nodeType, undefined, String(pod.spec.nodeName)) : undefined;
    const ttl = Math.max(600, Number(source.expirationSeconds ?? 3600));
    const t = this.issuer.issue({
      namespace: ns,
      serviceAccount: saName,
      serviceAccountUid: sa?.metadata.uid,
      audiences: [source.audience || API_AUDIENCE],
      expirationSeconds: ttl,
      pod: { name: String(pod.metadata.name), uid: String(pod.metadata.uid) },
      ...(node ? { node: { name: String(node.metadata.name), uid: node.metadata.uid } } : {}),
    });
    const rotateAfter = Math.min(ttl * 0.8, 24 * 3600) * 1000;
    if (this.written.size >= MAX_CACHED) for (const [k, w] of this.written) if (w.expiresAt <= now) this.written.delete(k);
    this.written.set(key, { token: t.token, writtenAt: now, rotateAt: now + rotateAfter, expiresAt: t.expiresAt });
    return t.token;
  }
}
