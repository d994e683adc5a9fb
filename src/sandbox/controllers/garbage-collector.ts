/**
 * The garbage collector: deletes objects whose owners are all gone (background
 * propagation), and carries out the `foregroundDeletion` (dependents first, then the owner)
 * and `orphan` (dependents lose their owner reference) deletion finalizers.
 */
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore } from '../store.ts';
import type { CacheEvent, ClusterCache, ObjectRef } from './cache.ts';
import { defaultPodGrace, ignoreNotFound } from './util.ts';
import { WorkQueue } from './work-queue.ts';

const FOREGROUND = 'foregroundDeletion';
const ORPHAN = 'orphan';

export class GarbageCollector {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  /** Keys are object uids. */
  readonly queue: WorkQueue;
  private stopResync?: () => void;

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.queue = new WorkQueue('garbage-collector', this.clock, (uid) => this.process(uid), { batch: 2000 });
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    this.resync();
    this.stopResync = this.clock.every(60_000, () => this.resync());
  }

  stop(): void {
    this.stopResync?.();
    this.queue.stop();
  }

  /** Re-checks every object that has owners (catches owners removed while the collector was not running). */
  private resync(): void {
    for (const [ownerUid, deps] of this.cache.dependents) {
      if (!this.cache.uids.has(ownerUid)) for (const d of deps) this.queue.add(d);
    }
  }

  private onEvent(ev: CacheEvent): void {
    const o = ev.object;
    const uid = o.metadata.uid!;
    if (ev.type === 'DELETED') {
      for (const d of this.cache.dependents.get(uid) ?? []) this.queue.add(d);
      // A dependent leaving may let a foreground-deleting owner finish.
      for (const r of o.metadata.ownerReferences ?? []) this.queue.add(r.uid);
      return;
    }
    const fin = o.metadata.finalizers;
    if (o.metadata.deletionTimestamp && fin && (fin.includes(FOREGROUND) || fin.includes(ORPHAN))) this.queue.add(uid);
    if (o.metadata.ownerReferences?.length) {
      // A new dependent of an owner that is already gone.
      if (o.metadata.ownerReferences.some((r) => !this.cache.uids.has(r.uid))) this.queue.add(uid);
    }
  }

  private read(ref: ObjectRef): Readonly<KObject> | undefined {
    const t = this.store.type(ref.group, ref.resource);
    if (!t) return undefined;
    const o = this.store.peek(t, ref.namespace, ref.name);
    return o && o.metadata.uid === ref.uid ? o : undefined;
  }

  private process(uid: string): void {
    const ref = this.cache.uids.get(uid);
    if (!ref) return;
    const obj = this.read(ref);
    if (!obj) return;
    const fin = obj.metadata.finalizers ?? [];
    if (obj.metadata.deletionTimestamp && fin.includes(ORPHAN)) this.orphanDependents(ref, obj);
    else if (obj.metadata.deletionTimestamp && fin.includes(FOREGROUND)) this.foreground(ref, obj);
    const owners = obj.metadata.ownerReferences ?? [];
    if (!owners.length || obj.metadata.deletionTimestamp) return;
    const alive = owners.filter((r) => this.cache.uids.has(r.uid));
    if (alive.length === owners.length) return;
    const t = this.store.type(ref.group, ref.resource)!;
    if (alive.length === 0) {
      ignoreNotFound(() =>
        this.store.delete(t, ref.namespace, ref.name, {
          preconditions: { uid },
          gracePeriodSeconds: ref.group === '' && ref.resource === 'pods' ? defaultPodGrace(obj) : undefined,
        }),
      );
      return;
    }
    // Some owners remain: drop only the dangling references.
    ignoreNotFound(() =>
      this.store.mutate(t, ref.namespace, ref.name, (o) => {
        if (o.metadata.uid !== uid) return false;
        o.metadata.ownerReferences = (o.metadata.ownerReferences ?? []).filter((r) => this.cache.uids.has(r.uid));
      }),
    );
  }

  private dependentsOf(uid: string): { ref: ObjectRef; obj: Readonly<KObject> }[] {
    const out: { ref: ObjectRef; obj: Readonly<KObject> }[] = [];
    for (const d of this.cache.dependents.get(uid) ?? []) {
      const ref = this.cache.uids.get(d);
      const obj = ref && this.read(ref);
      if (ref && obj) out.push({ ref, obj });
    }
    return out;
  }

  private removeFinalizer(ref: ObjectRef, name: string): void {
    const t = this.store.type(ref.group, ref.resource);
    if (!t) return;
    ignoreNotFound(() =>
      this.store.mutate(t, ref.namespace, ref.name, (o) => {
        if (o.metadata.uid !== ref.uid || !o.metadata.finalizers?.includes(name)) return false;
        o.metadata.finalizers = o.metadata.finalizers.filter((f) => f !== name);
      }),
    );
  }

  private orphanDependents(ref: ObjectRef, obj: Readonly<KObject>): void {
    for (const d of this.dependentsOf(obj.metadata.uid!)) {
      const t = this.store.type(d.ref.group, d.ref.resource)!;
      ignoreNotFound(() =>
        this.store.mutate(t, d.ref.namespace, d.ref.name, (o) => {
          if (o.metadata.uid !== d.ref.uid) return false;
          o.metadata.ownerReferences = (o.metadata.ownerReferences ?? []).filter((r) => r.uid !== obj.metadata.uid);
          if (!o.metadata.ownerReferences.length) delete o.metadata.ownerReferences;
        }),
      );
    }
    this.removeFinalizer(ref, ORPHAN);
  }

  private foreground(ref: ObjectRef, obj: Readonly<KObject>): void {
    const deps = this.dependentsOf(obj.metadata.uid!);
    let blocking = 0;
    for (const d of deps) {
      if (d.obj.metadata.ownerReferences?.some((r) => r.uid === obj.metadata.uid && r.blockOwnerDeletion)) blocking++;
      if (d.obj.metadata.deletionTimestamp) continue;
      const t = this.store.type(d.ref.group, d.ref.resource)!;
      // Dependents of a foreground deletion are deleted in the foreground too.
      const hasOwnDeps = (this.cache.dependents.get(d.ref.uid)?.size ?? 0) > 0;
      if (hasOwnDeps) {
        ignoreNotFound(() =>
          this.store.mutate(t, d.ref.namespace, d.ref.name, (o) => {
            if (o.metadata.uid !== d.ref.uid) return false;
            o.metadata.finalizers = [...new Set([...(o.metadata.finalizers ?? []), FOREGROUND])];
          }),
        );
      }
      ignoreNotFound(() =>
        this.store.delete(t, d.ref.namespace, d.ref.name, {
          preconditions: { uid: d.ref.uid },
          gracePeriodSeconds: d.ref.group === '' && d.ref.resource === 'pods' ? defaultPodGrace(d.obj) : undefined,
        }),
      );
    }
    if (blocking === 0) this.removeFinalizer(ref, FOREGROUND);
  }
}
