/**
 * The DaemonSet controller: one pod per eligible node (node selection and taints judged with
 * the tolerations the real controller adds to every daemon pod, so cordoned nodes keep
 * theirs), pods pinned with a `metadata.name` node-affinity term and labelled with
 * `controller-revision-hash`, `RollingUpdate` honouring `maxUnavailable` (default 1: an old
 * pod is deleted only while fewer than that many nodes lack an available pod, and its
 * replacement is created once it is gone) or `OnDelete`, and the real status fields.
 */
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';
import { effectiveTaints, matchesNodeSelection, TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE, type Toleration, toleratesTaints } from './scheduling.ts';
import { controllerRef, deletePod, ignoreNotFound, isPodReady, isTerminal, objectKey, ownerRefTo, podAvailability, scaledValue, templateHash, writeStatus } from './util.ts';
import { WorkQueue } from './work-queue.ts';
import { defaultPodSpec } from '../kube-api/defaults.ts';

const REVISION_HASH = 'controller-revision-hash';
const TEMPLATE_GENERATION = 'pod-template-generation';

/** The tolerations `AddOrUpdateDaemonPodTolerations` gives every daemon pod. */
export function daemonPodTolerations(spec: Record<string, any>): Toleration[] {
  const tol: Toleration[] = [...((spec.tolerations as Toleration[] | undefined) ?? [])];
  const add = (t: Toleration) => {
    if (!tol.some((x) => x.key === t.key && x.effect === t.effect && (x.operator ?? 'Equal') === t.operator)) tol.push(t);
  };
  add({ key: TAINT_NOT_READY, operator: 'Exists', effect: 'NoExecute' });
  add({ key: TAINT_UNREACHABLE, operator: 'Exists', effect: 'NoExecute' });
  add({ key: 'node.kubernetes.io/disk-pressure', operator: 'Exists', effect: 'NoSchedule' });
  add({ key: 'node.kubernetes.io/memory-pressure', operator: 'Exists', effect: 'NoSchedule' });
  add({ key: 'node.kubernetes.io/pid-pressure', operator: 'Exists', effect: 'NoSchedule' });
  add({ key: TAINT_UNSCHEDULABLE, operator: 'Exists', effect: 'NoSchedule' });
  if (spec.hostNetwork) add({ key: 'node.kubernetes.io/network-unavailable', operator: 'Exists', effect: 'NoSchedule' });
  return tol;
}

/** `NodeShouldRunDaemonPod`: shouldRun (create here) and shouldContinueRunning (keep an existing pod). */
export function nodeShouldRun(node: Readonly<KObject>, podSpec: Record<string, any>): { shouldRun: boolean; shouldContinueRunning: boolean } {
  if (!matchesNodeSelection({ ...podSpec, affinity: podSpec.affinity }, node)) return { shouldRun: false, shouldContinueRunning: false };
  const tol = daemonPodTolerations(podSpec);
  const taints = effectiveTaints(node);
  if (!toleratesTaints(tol, taints, ['NoExecute'])) return { shouldRun: false, shouldContinueRunning: false };
  if (!toleratesTaints(tol, taints, ['NoSchedule'])) return { shouldRun: false, shouldContinueRunning: true };
  return { shouldRun: true, shouldContinueRunning: true };
}

export class DaemonSetController {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly podType: ResourceType;
  private readonly dsType: ResourceType;
  private readonly revisionType: ResourceType | undefined;
  readonly queue: WorkQueue;
  private stopResync?: () => void;

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache; podType: ResourceType; dsType: ResourceType }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.podType = opts.podType;
    this.dsType = opts.dsType;
    this.revisionType = opts.store.type('apps', 'controllerrevisions');
    this.queue = new WorkQueue('daemonset', this.clock, (k) => this.sync(k));
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    this.enqueueAll();
    this.stopResync = this.clock.every(60_000, () => this.enqueueAll());
  }

  stop(): void {
    this.stopResync?.();
    this.queue.stop();
  }

  private enqueueAll(): void {
    for (const k of this.cache.all('apps', 'daemonsets').keys()) this.queue.add(k);
  }

  private onEvent(ev: CacheEvent): void {
    const t = ev.resourceType;
    if (t.group === 'apps' && t.resource === 'daemonsets') {
      if (ev.type !== 'DELETED') this.queue.add(objectKey(ev.object));
      return;
    }
    if (t.group !== '') return;
    if (t.resource === 'nodes') {
      // Only changes that can alter placement or readiness matter.
      const o = ev.old;
      const n = ev.object;
      if (
        ev.type !== 'MODIFIED' ||
        JSON.stringify(o?.metadata.labels) !== JSON.stringify(n.metadata.labels) ||
        JSON.stringify(o?.spec) !== JSON.stringify(n.spec) ||
        JSON.stringify(o?.status?.conditions?.map((c: any) => [c.type, c.status])) !== JSON.stringify(n.status?.conditions?.map((c: any) => [c.type, c.status]))
      ) {
        this.enqueueAll();
      }
      return;
    }
    if (t.resource !== 'pods') return;
    const ref = controllerRef(ev.object);
    if (ref?.kind === 'DaemonSet') this.queue.add(`${ev.object.metadata.namespace}/${ref.name}`);
  }

  private hashOf(ds: Readonly<KObject>): string {
    return templateHash(ds.spec?.template ?? {}, ds.status?.collisionCount ?? 0);
  }

  private sync(key: string): void {
    const ds = this.cache.get('apps', 'daemonsets', key);
    if (!ds || ds.metadata.deletionTimestamp) return;
    const now = this.clock.now();
    const tplSpec = ds.spec?.template?.spec ?? {};
    const hash = this.hashOf(ds);
    this.ensureRevision(ds, hash);
    const minReady = ds.spec?.minReadySeconds ?? 0;
    // Finished pods that are already being deleted are not the controller's concern any more.
    const byNode = this.podsByNode(ds);
    const toCreate: string[] = [];
    const toDelete: Readonly<KObject>[] = [];
    for (const [name, node] of this.cache.nodes) {
      const { shouldRun, shouldContinueRunning } = nodeShouldRun(node, tplSpec);
      const here = byNode.get(name) ?? [];
      if (shouldRun && here.length === 0) toCreate.push(name);
      else if (shouldContinueRunning) {
        const running = here.filter((p) => !p.metadata.deletionTimestamp);
        for (const p of running) if (p.status?.phase === 'Failed') toDelete.push(p);
        const healthy = running.filter((p) => p.status?.phase !== 'Failed');
        if (healthy.length > 1) {
          // Keep the oldest, delete the extras.
          healthy.sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''));
          toDelete.push(...healthy.slice(1));
        }
      } else {
        for (const p of here) if (!p.metadata.deletionTimestamp) toDelete.push(p);
      }
    }
    // Pods pinned to nodes that no longer exist.
    for (const [node, ps] of byNode) if (!this.cache.nodes.has(node)) for (const p of ps) if (!p.metadata.deletionTimestamp) toDelete.push(p);
    for (const n of toCreate) this.createPod(ds, n, hash);
    for (const p of toDelete) deletePod(this.store, this.podType, p);

    if ((ds.spec?.updateStrategy?.type ?? 'RollingUpdate') === 'RollingUpdate') this.rollingUpdate(ds, hash, minReady, now);
    this.updateStatus(ds, hash, minReady, now);
  }

  private targetNode(p: Readonly<KObject>): string | undefined {
    if (p.spec?.nodeName) return p.spec.nodeName;
    const terms = p.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms as any[] | undefined;
    for (const t of terms ?? []) for (const f of t.matchFields ?? []) if (f.key === 'metadata.name' && f.operator === 'In' && f.values?.length === 1) return f.values[0];
    return undefined;
  }

  private podsByNode(ds: Readonly<KObject>): Map<string, Readonly<KObject>[]> {
    const byNode = new Map<string, Readonly<KObject>[]>();
    for (const p of this.cache.ownedBy(ds.metadata.uid!, '', 'pods')) {
      if (p.metadata.deletionTimestamp && isTerminal(p)) continue;
      const n = this.targetNode(p);
      if (!n) continue;
      let arr = byNode.get(n);
      if (!arr) byNode.set(n, (arr = []));
      arr.push(p);
    }
    return byNode;
  }

  private rollingUpdate(ds: Readonly<KObject>, hash: string, minReady: number, now: number): void {
    const tplSpec = ds.spec?.template?.spec ?? {};
    // Re-read: the deletions and creations just made are already in the cache.
    const byNode = this.podsByNode(ds);
    let desired = 0;
    for (const node of this.cache.nodes.values()) if (nodeShouldRun(node, tplSpec).shouldRun) desired++;
    const maxUnavailable = Math.max(scaledValue(ds.spec?.updateStrategy?.rollingUpdate?.maxUnavailable, desired, true, 1), 0);
    let unavailable = 0;
    const oldAvailable: Readonly<KObject>[] = [];
    const oldUnavailable: Readonly<KObject>[] = [];
    for (const [name, node] of this.cache.nodes) {
      if (!nodeShouldRun(node, tplSpec).shouldRun) continue;
      const here = (byNode.get(name) ?? []).filter((p) => !isTerminal(p));
      const live = here.filter((p) => !p.metadata.deletionTimestamp);
      if (live.length === 0) {
        // No pod, or only one on its way out: this node counts as unavailable.
        unavailable++;
        continue;
      }
      const p = live[0];
      const isNew = p.metadata.labels?.[REVISION_HASH] === hash;
      const av = podAvailability(p, minReady, now);
      if (!av.available) {
        unavailable++;
        if (av.at) this.queue.addAfter(objectKey(ds), av.at - now + 1);
        if (!isNew) oldUnavailable.push(p);
      } else if (!isNew) oldAvailable.push(p);
    }
    // Old pods that are unavailable anyway go first; they do not reduce availability further.
    for (const p of oldUnavailable) deletePod(this.store, this.podType, p);
    let budget = maxUnavailable - unavailable;
    oldAvailable.sort((a, b) => (this.targetNode(a) ?? '').localeCompare(this.targetNode(b) ?? ''));
    for (const p of oldAvailable) {
      if (budget <= 0) break;
      deletePod(this.store, this.podType, p);
      budget--;
    }
  }

  private createPod(ds: Readonly<KObject>, node: string, hash: string): void {
    const tpl = ds.spec?.template ?? {};
    const spec = structuredClone(tpl.spec ?? {});
    spec.tolerations = daemonPodTolerations(spec);
    // Pin to the node with a required node-affinity term, as the controller does since 1.12.
    const pin = { key: 'metadata.name', operator: 'In', values: [node] };
    const na = spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
    spec.affinity = {
      ...(spec.affinity ?? {}),
      nodeAffinity: {
        ...(spec.affinity?.nodeAffinity ?? {}),
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: na?.nodeSelectorTerms?.length ? na.nodeSelectorTerms.map((t: any) => ({ ...t, matchFields: [pin] })) : [{ matchFields: [pin] }],
        },
      },
    };
    // The same defaults the API server gives a pod created through it.
    defaultPodSpec(spec);
    const pod: KObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: `${ds.metadata.name}-`,
        namespace: ds.metadata.namespace,
        labels: { ...(tpl.metadata?.labels ?? {}), [REVISION_HASH]: hash, [TEMPLATE_GENERATION]: String(ds.metadata.generation ?? 1) },
        ...(tpl.metadata?.annotations ? { annotations: { ...tpl.metadata.annotations } } : {}),
        ownerReferences: [ownerRefTo(ds)],
      },
      spec,
      status: { phase: 'Pending', qosClass: 'BestEffort' },
    };
    ignoreNotFound(() => this.store.create(this.podType, pod));
  }

  /** Keeps a ControllerRevision per template when the API serves them (`kubectl rollout history`). */
  private ensureRevision(ds: Readonly<KObject>, hash: string): void {
    const t = this.revisionType;
    if (!t) return;
    const name = `${ds.metadata.name}-${hash}`;
    if (this.store.peek(t, ds.metadata.namespace, name)) return;
    let max = 0;
    for (const r of this.store.scan(t, { namespace: ds.metadata.namespace })) {
      if (r.metadata.ownerReferences?.some((o) => o.uid === ds.metadata.uid)) max = Math.max(max, Number(r.revision ?? 0));
    }
    ignoreNotFound(() =>
      this.store.create(t, {
        apiVersion: 'apps/v1',
        kind: 'ControllerRevision',
        metadata: { name, namespace: ds.metadata.namespace, labels: { ...(ds.spec?.template?.metadata?.labels ?? {}), [REVISION_HASH]: hash }, ownerReferences: [ownerRefTo(ds)] },
        data: { spec: { template: { ...structuredClone(ds.spec?.template ?? {}), $patch: 'replace' } } },
        revision: max + 1,
      }),
    );
  }

  private updateStatus(ds: Readonly<KObject>, hash: string, minReady: number, now: number): void {
    const tplSpec = ds.spec?.template?.spec ?? {};
    const pods = this.cache.ownedBy(ds.metadata.uid!, '', 'pods').filter((p) => !(p.metadata.deletionTimestamp && isTerminal(p)));
    const byNode = new Map<string, Readonly<KObject>[]>();
    for (const p of pods) {
      const n = this.targetNode(p);
      if (!n || !p.spec?.nodeName) continue;
      let arr = byNode.get(n);
      if (!arr) byNode.set(n, (arr = []));
      arr.push(p);
    }
    let desired = 0;
    let current = 0;
    let misscheduled = 0;
    let ready = 0;
    let available = 0;
    let updated = 0;
    for (const [name, node] of this.cache.nodes) {
      const { shouldRun } = nodeShouldRun(node, tplSpec);
      const here = byNode.get(name) ?? [];
      const scheduled = here.length > 0;
      if (shouldRun) {
        desired++;
        if (!scheduled) continue;
        current++;
        // The oldest pod on the node speaks for it, as in the real controller.
        const p = [...here].sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''))[0];
        if (isPodReady(p)) {
          ready++;
          if (podAvailability(p, minReady, now).available) available++;
        }
        if (here.some((x) => x.metadata.labels?.[REVISION_HASH] === hash && !x.metadata.deletionTimestamp)) updated++;
      } else if (scheduled) misscheduled++;
    }
    const status: Record<string, any> = {
      currentNumberScheduled: current,
      numberMisscheduled: misscheduled,
      desiredNumberScheduled: desired,
      numberReady: ready,
      observedGeneration: ds.metadata.generation ?? 1,
      updatedNumberScheduled: updated,
      numberAvailable: available,
      numberUnavailable: desired - available,
    };
    for (const k of ['updatedNumberScheduled', 'numberAvailable', 'numberUnavailable']) if (!status[k]) delete status[k];
    if (ds.status?.collisionCount) status.collisionCount = ds.status.collisionCount;
    writeStatus(this.store, this.dsType, ds, status);
  }
}
