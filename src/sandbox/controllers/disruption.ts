/**
 * The disruption controller: keeps every PodDisruptionBudget's status current from the pods
 * its selector matches in its namespace — `expectedPods`, `currentHealthy`, `desiredHealthy`,
 * `disruptionsAllowed`, `observedGeneration`, the `DisruptionAllowed` condition — and prunes
 * `disruptedPods` entries (written by the eviction API) once the pod is gone, terminating,
 * or two minutes old.
 */
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import { labelSelectorFromObject, matchLabels } from '../selectors.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';
import { controllerRef, ignoreNotFound, isPodReady, isTerminal, objectKey, scaledValue, setCondition, splitKey } from './util.ts';
import { WorkQueue } from './work-queue.ts';

/** How long an eviction's entry in `disruptedPods` keeps the pod out of `currentHealthy`. */
const DELETION_TIMEOUT_MS = 2 * 60_000;

export class DisruptionController {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly pdbType: ResourceType;
  readonly queue: WorkQueue;
  private stopResync?: () => void;

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache; pdbType: ResourceType }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.pdbType = opts.pdbType;
    this.queue = new WorkQueue('disruption', this.clock, (k) => this.sync(k));
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    for (const k of this.pdbs().keys()) this.queue.add(k);
    this.stopResync = this.clock.every(30_000, () => {
      for (const k of this.pdbs().keys()) this.queue.add(k);
    });
  }

  stop(): void {
    this.stopResync?.();
    this.queue.stop();
  }

  private pdbs(): Map<string, Readonly<KObject>> {
    return this.cache.all('policy', 'poddisruptionbudgets');
  }

  private onEvent(ev: CacheEvent): void {
    const t = ev.resourceType;
    if (t.group === 'policy' && t.resource === 'poddisruptionbudgets') {
      if (ev.type !== 'DELETED') this.queue.add(objectKey(ev.object));
      return;
    }
    if (t.group !== '' || t.resource !== 'pods' || this.pdbs().size === 0) return;
    const ns = ev.object.metadata.namespace;
    for (const [key, pdb] of this.pdbs()) {
      if (pdb.metadata.namespace !== ns) continue;
      const sel = labelSelectorFromObject(pdb.spec?.selector);
      if (matchLabels(sel, ev.object.metadata.labels) || (ev.old && matchLabels(sel, ev.old.metadata.labels))) this.queue.add(key);
    }
  }

  /** The scale of the pods' controllers, for percentages and `maxUnavailable` (the real `getExpectedPodCount`). */
  private expectedFromControllers(pods: Readonly<KObject>[]): number | undefined {
    const seen = new Map<string, number>();
    for (const p of pods) {
      const ref = controllerRef(p);
      if (!ref) return undefined;
      if (seen.has(ref.uid)) continue;
      const ns = p.metadata.namespace!;
      if (ref.kind === 'ReplicaSet') {
        const rs = this.cache.get('apps', 'replicasets', `${ns}/${ref.name}`);
        if (!rs) return undefined;
        const dref = controllerRef(rs);
        if (dref?.kind === 'Deployment') {
          const d = this.cache.get('apps', 'deployments', `${ns}/${dref.name}`);
          if (!d) return undefined;
          if (!seen.has(d.metadata.uid!)) seen.set(d.metadata.uid!, d.spec?.replicas ?? 1);
          seen.set(ref.uid, 0);
        } else seen.set(ref.uid, rs.spec?.replicas ?? 1);
      } else if (ref.kind === 'StatefulSet') {
        return undefined;
      } else return undefined;
    }
    let n = 0;
    for (const v of seen.values()) n += v;
    return n;
  }

  private sync(key: string): void {
    const pdb = this.cache.get('policy', 'poddisruptionbudgets', key);
    if (!pdb || pdb.metadata.deletionTimestamp) return;
    const now = this.clock.now();
    const sel = labelSelectorFromObject(pdb.spec?.selector);
    const pods = this.cache.podsInNamespace(pdb.metadata.namespace!).filter((p) => !isTerminal(p) && matchLabels(sel, p.metadata.labels));
    const disrupted: Record<string, string> = {};
    for (const [name, at] of Object.entries((pdb.status?.disruptedPods as Record<string, string> | undefined) ?? {})) {
      const p = this.cache.pod(`${pdb.metadata.namespace}/${name}`);
      const t = Date.parse(at);
      if (!p || p.metadata.deletionTimestamp || !(t + DELETION_TIMEOUT_MS > now)) continue;
      disrupted[name] = at;
    }
    const healthy = pods.filter((p) => !p.metadata.deletionTimestamp && isPodReady(p) && !disrupted[p.metadata.name!]).length;
    let expected = pods.length;
    let desired = 0;
    let error: string | undefined;
    const spec = pdb.spec ?? {};
    try {
      if (spec.maxUnavailable !== undefined && spec.maxUnavailable !== null) {
        const scale = this.expectedFromControllers(pods);
        if (scale === undefined && pods.length) throw new Error('found no controllers for pods');
        expected = scale ?? 0;
        desired = Math.max(0, expected - scaledValue(spec.maxUnavailable, expected, true, 0));
      } else if (typeof spec.minAvailable === 'string' && spec.minAvailable.endsWith('%')) {
        const scale = this.expectedFromControllers(pods);
        if (scale === undefined && pods.length) throw new Error('found no controllers for pods');
        expected = scale ?? 0;
        desired = scaledValue(spec.minAvailable, expected, true, 0);
      } else {
        desired = scaledValue(spec.minAvailable ?? 1, expected, true, 1);
      }
    } catch (e) {
      error = (e as Error).message;
    }
    const allowed = error ? 0 : Math.max(0, healthy - desired);
    for (const at of Object.values(disrupted)) {
      const due = Date.parse(at) + DELETION_TIMEOUT_MS - now;
      if (due > 0) this.queue.addAfter(key, due + 1);
    }
    let conditions = pdb.status?.conditions as Record<string, any>[] | undefined;
    conditions = error
      ? setCondition(conditions, { type: 'DisruptionAllowed', status: 'False', reason: 'SyncFailed', message: error }, this.clock)
      : allowed > 0
        ? setCondition(conditions, { type: 'DisruptionAllowed', status: 'True', reason: 'SufficientPods' }, this.clock)
        : setCondition(conditions, { type: 'DisruptionAllowed', status: 'False', reason: 'InsufficientPods' }, this.clock);
    for (const c of conditions) if (c.type === 'DisruptionAllowed') c.observedGeneration = pdb.metadata.generation ?? 1;
    const status: Record<string, any> = {
      observedGeneration: pdb.metadata.generation ?? 1,
      disruptionsAllowed: allowed,
      currentHealthy: healthy,
      desiredHealthy: desired,
      expectedPods: expected,
      conditions,
    };
    if (Object.keys(disrupted).length) status.disruptedPods = disrupted;
    // Reading and cloning the object is the expensive part of a write: skip no-op writes up front.
    if (JSON.stringify(pdb.status ?? {}) === JSON.stringify(status)) return;
    const { namespace, name } = splitKey(key);
    ignoreNotFound(() =>
      this.store.mutate(
        this.pdbType,
        namespace,
        name,
        (o) => {
          if (o.metadata.uid !== pdb.metadata.uid) return false;
          // An eviction may have added a disrupted pod since we read: keep it.
          for (const [n, at] of Object.entries((o.status?.disruptedPods as Record<string, string> | undefined) ?? {})) {
            if (!(n in disrupted) && !(pdb.status?.disruptedPods ?? {})[n]) {
              status.disruptedPods = { ...(status.disruptedPods ?? {}), [n]: at };
              status.currentHealthy = Math.max(0, status.currentHealthy - 1);
              status.disruptionsAllowed = Math.max(0, status.currentHealthy - desired);
            }
          }
          if (JSON.stringify(o.status ?? {}) === JSON.stringify(status)) return false;
          o.status = status;
        },
        { subresource: 'status' },
      ),
    );
  }
}
