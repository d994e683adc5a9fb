/**
 * The controllers' shared informer cache: one subscription to the store that keeps the
 * indexes every controller needs (pods by node, by owner and by namespace, nodes, objects
 * by uid and their dependents), so that handling one event never walks the whole cluster.
 * `ObjectStore.scan` sorts its keys on every call, which is fine for a list request but far
 * too slow for 10,000 pods churning.
 */
import type { KObject, ObjectStore, ResourceType, WatchEvent } from '../store.ts';
import { objectKey } from './util.ts';

/** Where an object lives, enough to read or delete it again. */
export interface ObjectRef {
  group: string;
  resource: string;
  namespace?: string;
  name: string;
  uid: string;
  /** `namespace/name` (or `name`), the cache key. */
  key: string;
}

/** A cache event: the store's event plus the object as the cache knew it before. */
export interface CacheEvent {
  type: WatchEvent['type'];
  resourceType: ResourceType;
  object: Readonly<KObject>;
  old?: Readonly<KObject>;
}

export type CacheListener = (ev: CacheEvent) => void;

/** `group/resource` of the kinds the workload controllers keep whole in the cache. */
const TRACKED = new Set(['/pods', '/nodes', 'apps/deployments', 'apps/replicasets', 'apps/daemonsets', 'batch/jobs', 'policy/poddisruptionbudgets']);

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

export class ClusterCache {
  private readonly store: ObjectStore;
  /** Tracked objects by `group/resource`, then by key. Values are the store's own (read-only) objects. */
  private readonly objects = new Map<string, Map<string, Readonly<KObject>>>();
  readonly podsByNode = new Map<string, Set<string>>();
  readonly podsByNamespace = new Map<string, Set<string>>();
  /** Every object's uid, for the garbage collector's "does the owner still exist". */
  readonly uids = new Map<string, ObjectRef>();
  /** Owner uid -> uids of objects that reference it. */
  readonly dependents = new Map<string, Set<string>>();
  private readonly listeners: CacheListener[] = [];
  private unsubscribe?: () => void;

  constructor(store: ObjectStore) {
    this.store = store;
    for (const k of TRACKED) this.objects.set(k, new Map());
  }

  /** Loads what the store holds now and follows every later change. */
  start(): void {
    if (this.unsubscribe) return;
    for (const t of this.store.types()) {
      for (const o of this.store.scan(t)) this.apply({ type: 'ADDED', object: o as KObject, resourceType: t, resourceVersion: 0 }, false);
    }
    this.unsubscribe = this.store.subscribe((ev) => this.apply(ev, true));
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  onEvent(listener: CacheListener): void {
    this.listeners.push(listener);
  }

  /** The tracked objects of a kind, keyed by `namespace/name`. */
  all(group: string, resource: string): Map<string, Readonly<KObject>> {
    const m = this.objects.get(`${group}/${resource}`);
    if (!m) throw new Error(`cache: ${group}/${resource} is not tracked`);
    return m;
  }

  get(group: string, resource: string, key: string): Readonly<KObject> | undefined {
    return this.objects.get(`${group}/${resource}`)?.get(key);
  }

  get pods(): Map<string, Readonly<KObject>> {
    return this.all('', 'pods');
  }

  get nodes(): Map<string, Readonly<KObject>> {
    return this.all('', 'nodes');
  }

  pod(key: string): Readonly<KObject> | undefined {
    return this.pods.get(key);
  }

  /** Tracked objects (any tracked kind) whose controller owner has this uid. */
  ownedBy(ownerUid: string, group: string, resource: string): Readonly<KObject>[] {
    const out: Readonly<KObject>[] = [];
    const deps = this.dependents.get(ownerUid);
    const bucket = this.objects.get(`${group}/${resource}`);
    if (!deps || !bucket) return out;
    for (const uid of deps) {
      const ref = this.uids.get(uid);
      if (!ref || ref.resource !== resource || ref.group !== group) continue;
      const o = bucket.get(ref.key);
      if (!o || o.metadata.uid !== uid) continue;
      const refs = o.metadata.ownerReferences!;
      for (let i = 0; i < refs.length; i++) {
        if (refs[i].uid === ownerUid && refs[i].controller) {
          out.push(o);
          break;
        }
      }
    }
    return out;
  }

  podsOnNode(node: string): Readonly<KObject>[] {
    const out: Readonly<KObject>[] = [];
    for (const k of this.podsByNode.get(node) ?? []) {
      const p = this.pods.get(k);
      if (p) out.push(p);
    }
    return out;
  }

  podsInNamespace(ns: string): Readonly<KObject>[] {
    const out: Readonly<KObject>[] = [];
    for (const k of this.podsByNamespace.get(ns) ?? []) {
      const p = this.pods.get(k);
      if (p) out.push(p);
    }
    return out;
  }

  private apply(ev: WatchEvent, notify: boolean): void {
    const t = ev.resourceType;
    const tk = `${t.group}/${t.resource}`;
    const obj = ev.object;
    const key = objectKey(obj);
    const bucket = this.objects.get(tk);
    const old = bucket?.get(key);
    const uid = obj.metadata.uid!;

    // Indexes by uid and owner, for every kind.
    const prevRef = this.uids.get(uid);
    if (ev.type === 'DELETED') {
      if (prevRef) this.uids.delete(uid);
      for (const r of obj.metadata.ownerReferences ?? []) removeFrom(this.dependents, r.uid, uid);
    } else {
      if (!prevRef) this.uids.set(uid, { group: t.group, resource: t.resource, namespace: obj.metadata.namespace, name: obj.metadata.name!, uid, key });
      const before = new Set(old?.metadata.uid === uid ? (old.metadata.ownerReferences?.map((r) => r.uid) ?? []) : []);
      const after = new Set(obj.metadata.ownerReferences?.map((r) => r.uid) ?? []);
      for (const u of before) if (!after.has(u)) removeFrom(this.dependents, u, uid);
      for (const u of after) addTo(this.dependents, u, uid);
    }

    if (bucket) {
      if (ev.type === 'DELETED') {
        if (old && old.metadata.uid === uid) bucket.delete(key);
      } else {
        // A delete and re-create under the same name replaces the old entry's owner links.
        if (old && old.metadata.uid !== uid) {
          for (const r of old.metadata.ownerReferences ?? []) removeFrom(this.dependents, r.uid, old.metadata.uid!);
          this.uids.delete(old.metadata.uid!);
        }
        bucket.set(key, obj);
      }
      if (tk === '/pods') this.indexPod(ev.type, key, old, obj);
    }

    if (!notify) return;
    const cev: CacheEvent = { type: ev.type, resourceType: t, object: obj, old };
    for (const l of this.listeners) {
      try {
        l(cev);
      } catch {
        // One controller's bug must not stop the others from seeing the event.
      }
    }
  }

  private indexPod(type: WatchEvent['type'], key: string, old: Readonly<KObject> | undefined, pod: Readonly<KObject>): void {
    const oldNode = old?.spec?.nodeName as string | undefined;
    const newNode = type === 'DELETED' ? undefined : (pod.spec?.nodeName as string | undefined);
    if (oldNode && oldNode !== newNode) removeFrom(this.podsByNode, oldNode, key);
    if (newNode) addTo(this.podsByNode, newNode, key);
    const ns = pod.metadata.namespace!;
    if (type === 'DELETED') removeFrom(this.podsByNamespace, ns, key);
    else addTo(this.podsByNamespace, ns, key);
  }
}
