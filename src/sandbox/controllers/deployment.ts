/**
 * The Deployment controller: one ReplicaSet per pod template (named
 * `<deployment>-<pod-template-hash>`, the hash also labelled on the ReplicaSet and its pods),
 * `RollingUpdate` with `maxSurge` / `maxUnavailable` (25% / 25% by default) or `Recreate`,
 * the `deployment.kubernetes.io/revision` annotations, old ReplicaSets pruned past
 * `revisionHistoryLimit`, and the status the real controller reports (`observedGeneration`,
 * `replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`,
 * `unavailableReplicas`, conditions `Available` and `Progressing`).
 */
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';
import { controllerRef, ignoreNotFound, objectKey, ownerRefTo, scaledValue, setCondition, splitKey, templateHash, writeStatus } from './util.ts';
import { WorkQueue } from './work-queue.ts';

const REVISION = 'deployment.kubernetes.io/revision';
const REVISION_HISTORY = 'deployment.kubernetes.io/revision-history';
const DESIRED = 'deployment.kubernetes.io/desired-replicas';
const MAX_REPLICAS = 'deployment.kubernetes.io/max-replicas';
const HASH = 'pod-template-hash';

/** The template as the hash sees it: without the hash label the controller itself adds. */
function hashableTemplate(tpl: Record<string, any> | undefined): Record<string, any> {
  const t = withoutNulls(structuredClone(tpl ?? {}));
  if (t.metadata?.labels) delete t.metadata.labels[HASH];
  return t;
}

/**
 * The controller hashes the decoded Go struct, where `null` and absent are the same (a
 * template copied back by `kubectl rollout undo` carries `creationTimestamp: null`).
 */
function withoutNulls(v: any): any {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (v && typeof v === 'object') {
    for (const k of Object.keys(v)) {
      if (v[k] === null) delete v[k];
      else v[k] = withoutNulls(v[k]);
    }
  }
  return v;
}

function revisionOf(rs: Readonly<KObject>): number {
  return Number(rs.metadata.annotations?.[REVISION] ?? 0) || 0;
}

export class DeploymentController {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly deployType: ResourceType;
  private readonly rsType: ResourceType;
  readonly queue: WorkQueue;
  private stopResync?: () => void;

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache; deployType: ResourceType; rsType: ResourceType }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.deployType = opts.deployType;
    this.rsType = opts.rsType;
    this.queue = new WorkQueue('deployment', this.clock, (k) => this.sync(k));
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    for (const k of this.cache.all('apps', 'deployments').keys()) this.queue.add(k);
    // Periodic resync also notices `progressDeadlineSeconds` running out.
    this.stopResync = this.clock.every(30_000, () => {
      for (const k of this.cache.all('apps', 'deployments').keys()) this.queue.add(k);
    });
  }

  stop(): void {
    this.stopResync?.();
    this.queue.stop();
  }

  private onEvent(ev: CacheEvent): void {
    const t = ev.resourceType;
    if (t.group !== 'apps') return;
    if (t.resource === 'deployments') {
      if (ev.type !== 'DELETED') this.queue.add(objectKey(ev.object));
    } else if (t.resource === 'replicasets') {
      const ref = controllerRef(ev.object);
      if (ref?.kind === 'Deployment') this.queue.add(`${ev.object.metadata.namespace}/${ref.name}`);
    }
  }

  private ownedReplicaSets(d: Readonly<KObject>): Readonly<KObject>[] {
    return this.cache.ownedBy(d.metadata.uid!, 'apps', 'replicasets').filter((rs) => !rs.metadata.deletionTimestamp);
  }

  private sync(key: string): void {
    const d = this.cache.get('apps', 'deployments', key);
    if (!d || d.metadata.deletionTimestamp) return;
    const spec = d.spec ?? {};
    const replicas: number = spec.replicas ?? 1;
    const hash = templateHash(hashableTemplate(spec.template), d.status?.collisionCount ?? 0);
    let all = this.ownedReplicaSets(d);
    let newRS = all.find((rs) => rs.metadata.labels?.[HASH] === hash);
    const maxRevision = all.reduce((m, rs) => Math.max(m, revisionOf(rs)), 0);
    const strategy = spec.strategy?.type ?? 'RollingUpdate';
    const maxSurge = strategy === 'RollingUpdate' ? scaledValue(spec.strategy?.rollingUpdate?.maxSurge, replicas, true, '25%') : 0;
    let maxUnavailable = strategy === 'RollingUpdate' ? scaledValue(spec.strategy?.rollingUpdate?.maxUnavailable, replicas, false, '25%') : replicas;
    if (strategy === 'RollingUpdate' && maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
    let createdNew = false;

    if (!spec.paused) {
      if (!newRS) {
        const old = all.filter((rs) => rs.metadata.labels?.[HASH] !== hash);
        const oldPods = old.reduce((n, rs) => n + (rs.spec?.replicas ?? 0), 0);
        let initial = replicas;
        if (strategy === 'Recreate') initial = oldPods > 0 || old.some((rs) => (rs.status?.replicas ?? 0) > 0) ? 0 : replicas;
        else if (old.length) initial = Math.max(0, Math.min(replicas, replicas + maxSurge - oldPods));
        newRS = this.createReplicaSet(d, hash, initial, maxRevision + 1, replicas + maxSurge);
        createdNew = !!newRS;
        all = this.ownedReplicaSets(d);
        if (newRS && !all.some((rs) => rs.metadata.uid === newRS!.metadata.uid)) all.push(newRS);
      } else if (revisionOf(newRS) < maxRevision && all.length > 1) {
        // Rolling back to an older template makes its ReplicaSet the newest revision again.
        // The revisions it had before are kept in revision-history, as upstream does.
        this.patchReplicaSet(newRS, (o) => {
          const previous = o.metadata.annotations?.[REVISION];
          const history = [o.metadata.annotations?.[REVISION_HISTORY], previous].filter((x) => x).join(',');
          o.metadata.annotations = { ...(o.metadata.annotations ?? {}), [REVISION]: String(maxRevision + 1), ...(history ? { [REVISION_HISTORY]: history } : {}) };
        });
      }
      if (newRS) {
        const old = all.filter((rs) => rs.metadata.uid !== newRS!.metadata.uid);
        if (strategy === 'Recreate') this.recreate(d, newRS, old, replicas);
        else this.rollingUpdate(d, newRS, old, replicas, maxSurge, maxUnavailable);
        this.pruneHistory(d, old);
      }
    }
    this.updateStatus(d, this.ownedReplicaSets(d), newRS, replicas, maxUnavailable, createdNew);
  }

  private createReplicaSet(d: Readonly<KObject>, hash: string, replicas: number, revision: number, maxReplicas: number): Readonly<KObject> | undefined {
    const tpl = structuredClone(d.spec?.template ?? {});
    tpl.metadata = tpl.metadata ?? {};
    tpl.metadata.labels = { ...(tpl.metadata.labels ?? {}), [HASH]: hash };
    const selector = structuredClone(d.spec?.selector ?? {});
    selector.matchLabels = { ...(selector.matchLabels ?? {}), [HASH]: hash };
    const rs: KObject = {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name: `${d.metadata.name}-${hash}`,
        namespace: d.metadata.namespace,
        labels: { ...(tpl.metadata.labels ?? {}) },
        annotations: { [DESIRED]: String(d.spec?.replicas ?? 1), [MAX_REPLICAS]: String(maxReplicas), [REVISION]: String(revision) },
        ownerReferences: [ownerRefTo(d)],
      },
      spec: { replicas, minReadySeconds: d.spec?.minReadySeconds ?? 0, selector, template: tpl },
    };
    try {
      return this.store.create(this.rsType, rs);
    } catch (e) {
      // A ReplicaSet by that name that is not ours is a hash collision: bump collisionCount.
      const existing = this.store.peek(this.rsType, d.metadata.namespace, rs.metadata.name!);
      if (existing && !existing.metadata.ownerReferences?.some((r) => r.uid === d.metadata.uid)) {
        const { namespace, name } = splitKey(objectKey(d));
        ignoreNotFound(() =>
          this.store.mutate(this.deployType, namespace, name, (o) => {
            o.status = { ...(o.status ?? {}), collisionCount: (o.status?.collisionCount ?? 0) + 1 };
          }, { subresource: 'status' }),
        );
        return undefined;
      }
      if (existing) return existing as KObject;
      throw e;
    }
  }

  private patchReplicaSet(rs: Readonly<KObject>, fn: (o: KObject) => void): void {
    const { namespace, name } = splitKey(objectKey(rs));
    ignoreNotFound(() =>
      this.store.mutate(this.rsType, namespace, name, (o) => {
        if (o.metadata.uid !== rs.metadata.uid) return false;
        const before = JSON.stringify(o);
        fn(o);
        if (JSON.stringify(o) === before) return false;
      }),
    );
  }

  private scale(rs: Readonly<KObject>, replicas: number, d: Readonly<KObject>, maxReplicas: number): void {
    if ((rs.spec?.replicas ?? 0) === replicas && rs.metadata.annotations?.[DESIRED] === String(d.spec?.replicas ?? 1)) return;
    this.patchReplicaSet(rs, (o) => {
      o.spec.replicas = replicas;
      o.metadata.annotations = { ...(o.metadata.annotations ?? {}), [DESIRED]: String(d.spec?.replicas ?? 1), [MAX_REPLICAS]: String(maxReplicas) };
    });
  }

  private recreate(d: Readonly<KObject>, newRS: Readonly<KObject>, old: Readonly<KObject>[], replicas: number): void {
    for (const rs of old) if ((rs.spec?.replicas ?? 0) > 0) this.scale(rs, 0, d, replicas);
    // The new pods start only once every old pod is gone.
    const oldPodsLeft = old.some((rs) => this.cache.ownedBy(rs.metadata.uid!, '', 'pods').length > 0);
    if (!oldPodsLeft) this.scale(newRS, replicas, d, replicas);
  }

  private rollingUpdate(d: Readonly<KObject>, newRS: Readonly<KObject>, old: Readonly<KObject>[], replicas: number, maxSurge: number, maxUnavailable: number): void {
    const maxTotal = replicas + maxSurge;
    const specOf = (rs: Readonly<KObject>) => rs.spec?.replicas ?? 0;
    const availableOf = (rs: Readonly<KObject>) => rs.status?.availableReplicas ?? 0;
    if (!old.some((rs) => specOf(rs) > 0)) {
      // Steady state (or plain scaling): the new ReplicaSet takes the full count.
      this.scale(newRS, replicas, d, maxTotal);
      return;
    }
    // Scale up the new ReplicaSet within the surge budget.
    const total = specOf(newRS) + old.reduce((n, rs) => n + specOf(rs), 0);
    let newCount = specOf(newRS);
    if (newCount < replicas && total < maxTotal) {
      newCount = Math.min(replicas, newCount + (maxTotal - total));
      this.scale(newRS, newCount, d, maxTotal);
    } else if (newCount > replicas) {
      newCount = replicas;
      this.scale(newRS, newCount, d, maxTotal);
    }
    // Scale down old ReplicaSets without dropping below replicas - maxUnavailable available pods.
    const minAvailable = replicas - maxUnavailable;
    const allTotal = newCount + old.reduce((n, rs) => n + specOf(rs), 0);
    const newUnavailable = newCount - availableOf(newRS);
    let budget = allTotal - minAvailable - newUnavailable;
    if (budget <= 0) return;
    // First the old pods that are not available anyway, then available ones, oldest first.
    const sorted = [...old].sort((a, b) => revisionOf(a) - revisionOf(b));
    const remaining = new Map(sorted.map((rs) => [rs.metadata.uid!, specOf(rs)]));
    for (const rs of sorted) {
      if (budget <= 0) break;
      const unhealthy = Math.max(0, specOf(rs) - availableOf(rs));
      const cut = Math.min(unhealthy, budget);
      if (cut > 0) {
        remaining.set(rs.metadata.uid!, specOf(rs) - cut);
        budget -= cut;
      }
    }
    const allAvailable = availableOf(newRS) + old.reduce((n, rs) => n + availableOf(rs), 0);
    let availableBudget = Math.min(budget, allAvailable - minAvailable);
    for (const rs of sorted) {
      if (availableBudget <= 0) break;
      const left = remaining.get(rs.metadata.uid!)!;
      const cut = Math.min(left, availableBudget);
      remaining.set(rs.metadata.uid!, left - cut);
      availableBudget -= cut;
    }
    for (const rs of sorted) {
      const target = remaining.get(rs.metadata.uid!)!;
      if (target !== specOf(rs)) this.scale(rs, target, d, maxTotal);
    }
  }

  private pruneHistory(d: Readonly<KObject>, old: Readonly<KObject>[]): void {
    const limit = d.spec?.revisionHistoryLimit ?? 10;
    const idle = old.filter((rs) => (rs.spec?.replicas ?? 0) === 0 && (rs.status?.replicas ?? 0) === 0 && this.cache.ownedBy(rs.metadata.uid!, '', 'pods').length === 0);
    if (idle.length <= limit) return;
    idle.sort((a, b) => revisionOf(a) - revisionOf(b));
    for (const rs of idle.slice(0, idle.length - limit)) {
      ignoreNotFound(() => this.store.delete(this.rsType, rs.metadata.namespace, rs.metadata.name!, { preconditions: { uid: rs.metadata.uid } }));
    }
  }

  private updateStatus(d: Readonly<KObject>, all: Readonly<KObject>[], newRS: Readonly<KObject> | undefined, replicas: number, maxUnavailable: number, createdNew: boolean): void {
    const sum = (f: (rs: Readonly<KObject>) => number) => all.reduce((n, rs) => n + f(rs), 0);
    const statusReplicas = sum((rs) => rs.status?.replicas ?? 0);
    const updated = newRS ? (newRS.status?.replicas ?? 0) : 0;
    const ready = sum((rs) => rs.status?.readyReplicas ?? 0);
    const available = sum((rs) => rs.status?.availableReplicas ?? 0);
    const specTotal = sum((rs) => rs.spec?.replicas ?? 0);
    const unavailable = Math.max(0, specTotal - available);
    let conditions = d.status?.conditions as Record<string, any>[] | undefined;
    const minAvailable = replicas - maxUnavailable;
    conditions =
      available >= minAvailable
        ? setCondition(conditions, { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' }, this.clock, { updateTime: true })
        : setCondition(conditions, { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'Deployment does not have minimum availability.' }, this.clock, { updateTime: true });
    const rsName = newRS?.metadata.name ?? '';
    const oldLeft = all.some((rs) => rs !== newRS && rs.metadata.uid !== newRS?.metadata.uid && ((rs.spec?.replicas ?? 0) > 0 || (rs.status?.replicas ?? 0) > 0));
    const complete = !!newRS && updated === replicas && (newRS.status?.availableReplicas ?? 0) === replicas && !oldLeft && statusReplicas === replicas;
    const prevProgressing = conditions.find((c) => c.type === 'Progressing');
    if (d.spec?.paused) {
      conditions = setCondition(conditions, { type: 'Progressing', status: 'Unknown', reason: 'DeploymentPaused', message: 'Deployment is paused' }, this.clock, { updateTime: true });
    } else if (complete) {
      conditions = setCondition(conditions, { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: `ReplicaSet "${rsName}" has successfully progressed.` }, this.clock, { updateTime: true });
    } else if (createdNew) {
      conditions = setCondition(conditions, { type: 'Progressing', status: 'True', reason: 'NewReplicaSetCreated', message: `Created new replica set "${rsName}"` }, this.clock, { updateTime: true });
    } else if (newRS) {
      const deadline = (d.spec?.progressDeadlineSeconds ?? 600) * 1000;
      const since = Date.parse(prevProgressing?.lastUpdateTime ?? '') || this.clock.now();
      const progressed = (d.status?.updatedReplicas ?? 0) !== updated || (d.status?.availableReplicas ?? 0) !== available || (d.status?.readyReplicas ?? 0) !== ready;
      if (!progressed && prevProgressing?.reason !== 'NewReplicaSetCreated' && this.clock.now() - since > deadline) {
        conditions = setCondition(conditions, { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: `ReplicaSet "${rsName}" has timed out progressing.` }, this.clock, { updateTime: true });
      } else if (progressed || prevProgressing?.reason !== 'ReplicaSetUpdated' || prevProgressing?.status !== 'True') {
        conditions = setCondition(conditions, { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: `ReplicaSet "${rsName}" is progressing.` }, this.clock, { updateTime: progressed || prevProgressing?.reason !== 'ReplicaSetUpdated' });
        if (progressed) {
          const c = conditions.find((x) => x.type === 'Progressing')!;
          c.lastUpdateTime = new Date(Math.floor(this.clock.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
        }
      }
    }
    // The real controller lists Available first, then Progressing.
    conditions.sort((a, b) => (a.type === 'Available' ? -1 : b.type === 'Available' ? 1 : 0));
    const status: Record<string, any> = {
      observedGeneration: d.metadata.generation ?? 1,
      replicas: statusReplicas,
      updatedReplicas: updated,
      readyReplicas: ready,
      availableReplicas: available,
      unavailableReplicas: unavailable,
      conditions,
    };
    for (const k of ['replicas', 'updatedReplicas', 'readyReplicas', 'availableReplicas', 'unavailableReplicas']) if (!status[k]) delete status[k];
    if (d.status?.collisionCount) status.collisionCount = d.status.collisionCount;
    const { namespace, name } = splitKey(objectKey(d));
    writeStatus(this.store, this.deployType, d, status);
    if (!complete && !d.spec?.paused) this.queue.addAfter(objectKey(d), (d.spec?.progressDeadlineSeconds ?? 600) * 1000 + 1000);
    // Keep the deployment's revision annotation in step with its newest ReplicaSet.
    const rev = newRS?.metadata.annotations?.[REVISION];
    if (rev && d.metadata.annotations?.[REVISION] !== rev) {
      ignoreNotFound(() =>
        this.store.mutate(this.deployType, namespace, name, (o) => {
          if (o.metadata.uid !== d.metadata.uid) return false;
          o.metadata.annotations = { ...(o.metadata.annotations ?? {}), [REVISION]: rev };
        }),
      );
    }
  }
}
