/**
 * The ReplicaSet controller: keeps `spec.replicas` live pods from the template (created with
 * `generateName`, the template's labels and a controller owner reference), deletes the
 * surplus (unscheduled, pending and not-ready pods first, then the newest), and reports
 * `replicas`, `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas` and
 * `observedGeneration`.
 */
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import { labelSelectorFromObject, matchLabels } from '../selectors.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';
import { controllerRef, deletePod, ignoreNotFound, isActive, isPodReady, objectKey, ownerRefTo, podAvailability, writeStatus } from './util.ts';
import { WorkQueue } from './work-queue.ts';

/** How many pods one sync may create or delete (the real controller's burst). */
const BURST = 500;

function deletionRank(p: Readonly<KObject>): number[] {
  // Lower sorts first = deleted first, as in the real controller's ActivePods ordering.
  const ready = isPodReady(p) ? 1 : 0;
  const phase = p.status?.phase === 'Running' ? 2 : p.status?.phase === 'Pending' ? 1 : 0;
  return [p.spec?.nodeName ? 1 : 0, phase, ready, -Date.parse(p.metadata.creationTimestamp ?? '0') || 0];
}

export class ReplicaSetController {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly podType: ResourceType;
  private readonly rsType: ResourceType;
  readonly queue: WorkQueue;
  private stopResync?: () => void;

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache; podType: ResourceType; rsType: ResourceType }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.podType = opts.podType;
    this.rsType = opts.rsType;
    this.queue = new WorkQueue('replicaset', this.clock, (k) => this.sync(k));
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    for (const k of this.cache.all('apps', 'replicasets').keys()) this.queue.add(k);
    this.stopResync = this.clock.every(60_000, () => {
      for (const k of this.cache.all('apps', 'replicasets').keys()) this.queue.add(k);
    });
  }

  stop(): void {
    this.stopResync?.();
    this.queue.stop();
  }

  private onEvent(ev: CacheEvent): void {
    const t = ev.resourceType;
    if (t.group === 'apps' && t.resource === 'replicasets') {
      if (ev.type !== 'DELETED') this.queue.add(objectKey(ev.object));
      return;
    }
    if (t.group !== '' || t.resource !== 'pods') return;
    const ref = controllerRef(ev.object);
    if (!ref || ref.kind !== 'ReplicaSet') return;
    this.queue.add(`${ev.object.metadata.namespace}/${ref.name}`);
  }

  private sync(key: string): void {
    const rs = this.cache.get('apps', 'replicasets', key);
    if (!rs || rs.metadata.deletionTimestamp) return;
    const minReady = rs.spec?.minReadySeconds ?? 0;
    const pods = this.cache.ownedBy(rs.metadata.uid!, '', 'pods');
    const active = pods.filter(isActive);
    const want = rs.spec?.replicas ?? 1;
    const diff = want - active.length;
    if (diff > 0) {
      for (let i = 0; i < Math.min(diff, BURST); i++) this.createPod(rs);
    } else if (diff < 0) {
      const victims = [...active].sort((a, b) => {
        const ra = deletionRank(a);
        const rb = deletionRank(b);
        for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i] - rb[i];
        return 0;
      });
      for (const p of victims.slice(0, Math.min(-diff, BURST))) deletePod(this.store, this.podType, p);
    }
    this.updateStatus(rs, minReady);
    if (Math.abs(diff) > BURST) this.queue.add(key);
  }

  private createPod(rs: Readonly<KObject>): void {
    const tpl = rs.spec?.template ?? {};
    const pod: KObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: `${rs.metadata.name}-`,
        namespace: rs.metadata.namespace,
        labels: { ...(tpl.metadata?.labels ?? {}) },
        ...(tpl.metadata?.annotations ? { annotations: { ...tpl.metadata.annotations } } : {}),
        ownerReferences: [ownerRefTo(rs)],
      },
      spec: structuredClone(tpl.spec ?? {}),
      status: { phase: 'Pending', qosClass: 'BestEffort' },
    };
    pod.spec.restartPolicy = pod.spec.restartPolicy ?? 'Always';
    pod.spec.terminationGracePeriodSeconds = pod.spec.terminationGracePeriodSeconds ?? 30;
    pod.spec.schedulerName = pod.spec.schedulerName ?? 'default-scheduler';
    pod.spec.serviceAccountName = pod.spec.serviceAccountName ?? pod.spec.serviceAccount ?? 'default';
    pod.spec.dnsPolicy = pod.spec.dnsPolicy ?? 'ClusterFirst';
    ignoreNotFound(() => this.store.create(this.podType, pod));
  }

  private updateStatus(rs: Readonly<KObject>, minReady: number): void {
    const now = this.clock.now();
    const pods = this.cache.ownedBy(rs.metadata.uid!, '', 'pods').filter(isActive);
    const selector = labelSelectorFromObject(rs.spec?.selector);
    let ready = 0;
    let available = 0;
    let labeled = 0;
    let nextAvailableAt = Infinity;
    for (const p of pods) {
      if (matchLabels(selector, p.metadata.labels)) labeled++;
      if (isPodReady(p)) ready++;
      const av = podAvailability(p, minReady, now);
      if (av.available) available++;
      else if (av.at) nextAvailableAt = Math.min(nextAvailableAt, av.at);
    }
    if (nextAvailableAt < Infinity) this.queue.addAfter(objectKey(rs), nextAvailableAt - now + 1);
    const status: Record<string, any> = {
      replicas: pods.length,
      fullyLabeledReplicas: labeled,
      readyReplicas: ready,
      availableReplicas: available,
      observedGeneration: rs.metadata.generation ?? 1,
    };
    // The real API omits zero counts from the JSON (omitempty), except replicas.
    for (const k of ['fullyLabeledReplicas', 'readyReplicas', 'availableReplicas']) if (!status[k]) delete status[k];
    if (rs.status?.conditions) status.conditions = rs.status.conditions;
    writeStatus(this.store, this.rsType, rs, status);
  }
}
