/**
 * The Job controller (non-indexed jobs): runs up to `parallelism` pods until `completions`
 * succeeded (or, without `completions`, until one succeeded and none is active), counts
 * finished pods through the `batch.kubernetes.io/job-tracking` finalizer so counts survive
 * pod deletion, recreates failed pods with the exponential back-off, gives up past
 * `backoffLimit` or `activeDeadlineSeconds`, sets the `Complete` / `Failed` conditions (with
 * `SuccessCriteriaMet` / `FailureTarget` before them, as since 1.31) and deletes finished
 * jobs `ttlSecondsAfterFinished` after they finished.
 */
import { isoSeconds } from '../clock.ts';
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';
import { controllerRef, deletePod, ignoreNotFound, isPodReady, objectKey, ownerRefTo, setCondition, splitKey, writeStatus } from './util.ts';
import { WorkQueue } from './work-queue.ts';
import { defaultPodSpec } from '../kube-api/defaults.ts';

export const JOB_TRACKING_FINALIZER = 'batch.kubernetes.io/job-tracking';

function finished(job: Readonly<KObject>): { type: 'Complete' | 'Failed'; time: number } | undefined {
  for (const c of (job.status?.conditions as any[] | undefined) ?? []) {
    if ((c.type === 'Complete' || c.type === 'Failed') && c.status === 'True') return { type: c.type, time: Date.parse(c.lastTransitionTime) || 0 };
  }
  return undefined;
}

export class JobController {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly podType: ResourceType;
  private readonly jobType: ResourceType;
  readonly queue: WorkQueue;
  private stopResync?: () => void;

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache; podType: ResourceType; jobType: ResourceType }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.podType = opts.podType;
    this.jobType = opts.jobType;
    this.queue = new WorkQueue('job', this.clock, (k) => this.sync(k));
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    for (const k of this.cache.all('batch', 'jobs').keys()) this.queue.add(k);
    this.stopResync = this.clock.every(60_000, () => {
      for (const k of this.cache.all('batch', 'jobs').keys()) this.queue.add(k);
    });
  }

  stop(): void {
    this.stopResync?.();
    this.queue.stop();
  }

  private onEvent(ev: CacheEvent): void {
    const t = ev.resourceType;
    if (t.group === 'batch' && t.resource === 'jobs') {
      if (ev.type !== 'DELETED') this.queue.add(objectKey(ev.object));
      return;
    }
    if (t.group !== '' || t.resource !== 'pods') return;
    const ref = controllerRef(ev.object);
    if (ref?.kind === 'Job') this.queue.add(`${ev.object.metadata.namespace}/${ref.name}`);
  }

  private sync(key: string): void {
    const job = this.cache.get('batch', 'jobs', key);
    const now = this.clock.now();
    if (!job) return;
    const pods = this.cache.ownedBy(job.metadata.uid!, '', 'pods');
    const done = finished(job);
    let succeeded: number = job.status?.succeeded ?? 0;
    let failed: number = job.status?.failed ?? 0;
    // Count pods that finished and are still held by the tracking finalizer, then release them.
    const counted: Readonly<KObject>[] = [];
    for (const p of pods) {
      if (!p.metadata.finalizers?.includes(JOB_TRACKING_FINALIZER)) continue;
      const phase = p.status?.phase;
      if (phase === 'Succeeded') succeeded++;
      else if (phase === 'Failed' || (p.metadata.deletionTimestamp && !done)) failed++;
      else if (!p.metadata.deletionTimestamp) continue;
      counted.push(p);
    }
    for (const p of counted) this.releasePod(p);

    if (job.metadata.deletionTimestamp) return;
    if (done) {
      this.writeStatus(job, { ...(job.status ?? {}), succeeded: succeeded || undefined, failed: failed || undefined, active: undefined, ready: 0, terminating: this.terminating(pods) });
      this.scheduleTtl(job, done.time);
      return;
    }
    const spec = job.spec ?? {};
    const parallelism: number = spec.parallelism ?? 1;
    const completions: number | undefined = spec.completions === null ? undefined : (spec.completions ?? (spec.parallelism === undefined ? 1 : undefined));
    const backoffLimit: number = spec.backoffLimit ?? 6;
    const active = pods.filter((p) => !p.metadata.deletionTimestamp && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');
    const startTime = job.status?.startTime ?? (spec.suspend ? undefined : isoSeconds(now));
    let conditions = job.status?.conditions as Record<string, any>[] | undefined;
    const restarts = spec.template?.spec?.restartPolicy === 'OnFailure' ? active.reduce((n, p) => n + ((p.status?.containerStatuses as any[]) ?? []).reduce((m, c) => m + (c.restartCount ?? 0), 0), 0) : 0;

    let failure: { reason: string; message: string } | undefined;
    if (failed + restarts > backoffLimit) failure = { reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' };
    else if (spec.activeDeadlineSeconds && startTime && now - Date.parse(startTime) >= spec.activeDeadlineSeconds * 1000) {
      failure = { reason: 'DeadlineExceeded', message: 'Job was active longer than specified deadline' };
    }
    const complete = completions !== undefined ? succeeded >= completions : succeeded > 0 && active.length === 0;
    if (failure) {
      for (const p of active) deletePod(this.store, this.podType, p);
      conditions = setCondition(conditions, { type: 'FailureTarget', status: 'True', ...failure }, this.clock, { probeTime: true });
      conditions = setCondition(conditions, { type: 'Failed', status: 'True', ...failure }, this.clock, { probeTime: true });
      this.writeStatus(job, { ...(job.status ?? {}), conditions, startTime, active: undefined, ready: 0, succeeded: succeeded || undefined, failed: failed || undefined, terminating: this.terminating(pods), uncountedTerminatedPods: {} });
      this.scheduleTtl(job, now);
      return;
    }
    if (complete) {
      for (const p of active) deletePod(this.store, this.podType, p);
      conditions = setCondition(conditions, { type: 'SuccessCriteriaMet', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods' }, this.clock, { probeTime: true });
      conditions = setCondition(conditions, { type: 'Complete', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods' }, this.clock, { probeTime: true });
      this.writeStatus(job, { ...(job.status ?? {}), conditions, startTime, completionTime: isoSeconds(now), active: undefined, ready: 0, succeeded, failed: failed || undefined, terminating: this.terminating(pods), uncountedTerminatedPods: {} });
      this.scheduleTtl(job, now);
      return;
    }
    let activeCount = active.length;
    if (spec.suspend) {
      for (const p of active) deletePod(this.store, this.podType, p);
      activeCount = 0;
    } else {
      const want = completions !== undefined ? Math.min(parallelism, completions - succeeded) : succeeded > 0 ? 0 : parallelism;
      if (activeCount < want) {
        // Failed pods come back after 10 s, 20 s, ... (capped at 6 minutes) since the last failure.
        const delay = failed > 0 ? Math.min(10_000 * 2 ** (failed - 1), 360_000) : 0;
        const lastFailure = this.lastFailure(pods);
        const readyAt = lastFailure + delay;
        if (failed > 0 && readyAt > now) this.queue.addAfter(key, readyAt - now);
        else for (; activeCount < want; activeCount++) this.createPod(job);
      } else if (activeCount > want) {
        for (const p of active.slice(want)) deletePod(this.store, this.podType, p);
        activeCount = want;
      }
    }
    if (spec.activeDeadlineSeconds && startTime) this.queue.addAfter(key, Date.parse(startTime) + spec.activeDeadlineSeconds * 1000 - now);
    const status: Record<string, any> = {
      ...(job.status ?? {}),
      startTime,
      active: activeCount || undefined,
      ready: active.filter(isPodReady).length,
      succeeded: succeeded || undefined,
      failed: failed || undefined,
      terminating: this.terminating(pods),
      uncountedTerminatedPods: {},
    };
    this.writeStatus(job, status);
  }

  /** When the most recent failed pod finished (the back-off runs from there). */
  private lastFailure(pods: Readonly<KObject>[]): number {
    let last = 0;
    for (const p of pods) {
      if (p.status?.phase !== 'Failed') continue;
      for (const c of (p.status?.containerStatuses as any[] | undefined) ?? []) {
        last = Math.max(last, Date.parse(c.state?.terminated?.finishedAt ?? '') || 0);
      }
    }
    return last;
  }

  private terminating(pods: Readonly<KObject>[]): number {
    return pods.filter((p) => p.metadata.deletionTimestamp && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed').length;
  }

  private releasePod(p: Readonly<KObject>): void {
    const { namespace, name } = splitKey(objectKey(p));
    ignoreNotFound(() =>
      this.store.mutate(this.podType, namespace, name, (o) => {
        if (o.metadata.uid !== p.metadata.uid || !o.metadata.finalizers?.includes(JOB_TRACKING_FINALIZER)) return false;
        o.metadata.finalizers = o.metadata.finalizers.filter((f) => f !== JOB_TRACKING_FINALIZER);
      }),
    );
  }

  private createPod(job: Readonly<KObject>): void {
    const tpl = job.spec?.template ?? {};
    const uid = job.metadata.uid!;
    const spec = structuredClone(tpl.spec ?? {});
    spec.restartPolicy = spec.restartPolicy ?? 'Never';
    // The same defaults the API server gives a pod created through it.
    defaultPodSpec(spec);
    const pod: KObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: `${job.metadata.name}-`,
        namespace: job.metadata.namespace,
        labels: {
          ...(tpl.metadata?.labels ?? {}),
          'batch.kubernetes.io/controller-uid': uid,
          'batch.kubernetes.io/job-name': job.metadata.name!,
          'controller-uid': uid,
          'job-name': job.metadata.name!,
        },
        ...(tpl.metadata?.annotations ? { annotations: { ...tpl.metadata.annotations } } : {}),
        ownerReferences: [ownerRefTo(job)],
        finalizers: [JOB_TRACKING_FINALIZER],
      },
      spec,
      status: { phase: 'Pending', qosClass: 'BestEffort' },
    };
    ignoreNotFound(() => this.store.create(this.podType, pod));
  }

  private scheduleTtl(job: Readonly<KObject>, finishedAt: number): void {
    const ttl = job.spec?.ttlSecondsAfterFinished;
    if (ttl === undefined || ttl === null) return;
    const at = finishedAt + ttl * 1000;
    const now = this.clock.now();
    if (at > now) {
      this.queue.addAfter(objectKey(job), at - now);
      return;
    }
    // Background propagation: the garbage collector removes the pods.
    ignoreNotFound(() => this.store.delete(this.jobType, job.metadata.namespace, job.metadata.name!, { preconditions: { uid: job.metadata.uid } }));
  }

  private writeStatus(job: Readonly<KObject>, status: Record<string, any>): void {
    for (const k of Object.keys(status)) if (status[k] === undefined) delete status[k];
    writeStatus(this.store, this.jobType, job, status);
  }
}
