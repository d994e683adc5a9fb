/**
 * Events and node Leases, as a real cluster's components leave them behind.
 *
 * {@link EventRecorder} writes core/v1 Events (served under events.k8s.io/v1 too) with the
 * reasons, messages and sources of the upstream components, and aggregates repeats (`count`,
 * `lastTimestamp`) the way client-go's correlator does. {@link ClusterEvents} records them from
 * the transitions the controllers make, observed through the shared cache: the scheduler
 * (`Scheduled`, `FailedScheduling`), the kubelet (`Pulled`, `Created`, `Started`, `Killing`,
 * `NodeReady`, `NodeNotSchedulable`...), the ReplicaSet / DaemonSet / Job / Deployment
 * controllers (`SuccessfulCreate`, `ScalingReplicaSet`, `Completed`), the node lifecycle
 * controller (`RegisteredNode`, `NodeNotReady`, `TaintManagerEviction`) and MIC (`binding
 * applied`, `binding removed` on the AzureIdentityBinding). NMI itself records no Events
 * upstream (it logs); its pods get the kubelet's. Events expire after an hour of simulated
 * time, as upstream's `--event-ttl` default.
 *
 * {@link NodeLeases} renews each Ready node's Lease in `kube-node-lease` every 10 s, as the
 * kubelet does (`leaseDurationSeconds: 40`).
 */
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import { StoreError } from '../store.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';

const EVENT_TTL_MS = 60 * 60 * 1000;

function micro(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function seconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Who recorded an event: `source.component` (and `host` for the kubelet). */
export interface EventSource {
  component: string;
  host?: string;
}

interface Pending {
  involved: Readonly<KObject>;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  source: EventSource;
  fieldPath?: string;
}

/** Writes (and aggregates) core/v1 Events. Writes are batched after the triggering write. */
export class EventRecorder {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly eventType: ResourceType;
  /** Correlation key -> event name, for aggregation. */
  private readonly recent = new Map<string, { namespace: string; name: string; at: number }>();
  private queue: Pending[] = [];
  private scheduled = false;
  private seq = 0;
  private stopPrune?: () => void;

  constructor(store: ObjectStore, clock: Clock) {
    this.store = store;
    this.clock = clock;
    this.eventType = store.typeOrThrow('', 'events');
  }

  start(): void {
    this.stopPrune = this.clock.every(60_000, () => this.prune());
  }

  stop(): void {
    this.stopPrune?.();
    this.queue = [];
  }

  /** Records one event about `involved`; written right after the current write completes. */
  record(involved: Readonly<KObject>, type: 'Normal' | 'Warning', reason: string, message: string, source: EventSource, fieldPath?: string): void {
    this.queue.push({ involved, type, reason, message, source, fieldPath });
    if (this.scheduled) return;
    this.scheduled = true;
    // Never write from inside another write's notification: watchers must see the cause first.
    queueMicrotask(() => {
      this.scheduled = false;
      const batch = this.queue;
      this.queue = [];
      for (const p of batch) this.write(p);
    });
  }

  private write(p: Pending): void {
    const o = p.involved;
    const namespace = o.metadata.namespace || 'default';
    const now = this.clock.now();
    const key = `${o.metadata.uid}|${p.reason}|${p.message}|${p.source.component}|${p.fieldPath ?? ''}`;
    const prev = this.recent.get(key);
    try {
      if (prev && now - prev.at < 10 * 60 * 1000) {
        const updated = this.store.mutate(this.eventType, prev.namespace, prev.name, (e) => {
          e.count = (e.count ?? 1) + 1;
          e.lastTimestamp = seconds(now);
        });
        if (updated) {
          prev.at = now;
          return;
        }
      }
      const name = `${o.metadata.name}.${(now * 1000 + (this.seq++ % 1000)).toString(16)}`;
      this.store.create(this.eventType, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: { kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name, uid: o.metadata.uid, apiVersion: o.apiVersion, resourceVersion: o.metadata.resourceVersion, ...(p.fieldPath ? { fieldPath: p.fieldPath } : {}) },
        reason: p.reason,
        message: p.message,
        source: { component: p.source.component, ...(p.source.host ? { host: p.source.host } : {}) },
        firstTimestamp: seconds(now),
        lastTimestamp: seconds(now),
        count: 1,
        type: p.type,
        eventTime: null,
        reportingComponent: p.source.component,
        reportingInstance: p.source.host ?? '',
      });
      this.recent.set(key, { namespace, name, at: now });
    } catch (e) {
      // The namespace went away (or the object with it): nothing to report on any more.
      if (!(e instanceof StoreError)) throw e;
    }
  }

  /** Drops events whose last occurrence is older than the TTL. */
  private prune(): void {
    const cutoff = this.clock.now() - EVENT_TTL_MS;
    const old: { ns: string; name: string }[] = [];
    for (const e of this.store.scan(this.eventType)) {
      const last = Date.parse(e.lastTimestamp ?? e.metadata.creationTimestamp ?? '');
      if (last < cutoff) old.push({ ns: e.metadata.namespace!, name: e.metadata.name! });
    }
    for (const e of old) {
      try {
        this.store.delete(this.eventType, e.ns, e.name);
      } catch {
        // already gone
      }
    }
    for (const [k, v] of this.recent) if (v.at < cutoff) this.recent.delete(k);
  }
}

function condition(o: Readonly<KObject> | undefined, type: string): any {
  return (o?.status?.conditions as any[] | undefined)?.find((c) => c.type === type);
}

function controllerOf(o: Readonly<KObject>): { kind: string; name: string; uid: string } | undefined {
  return o.metadata.ownerReferences?.find((r) => r.controller);
}

/** Records the events of the cluster's components from what they change. */
export class ClusterEvents {
  private readonly recorder: EventRecorder;
  private readonly store: ObjectStore;
  private readonly cache: ClusterCache;
  private unsubscribeStore?: () => void;
  private readonly assigned = new Map<string, string>();

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache }) {
    this.store = opts.store;
    this.cache = opts.cache;
    this.recorder = new EventRecorder(opts.store, opts.clock);
    opts.cache.onEvent((ev) => this.onCacheEvent(ev));
  }

  start(): void {
    this.recorder.start();
    // Nodes registered before the controllers started: their kubelets just started too.
    for (const node of this.cache.nodes.values()) {
      const name = node.metadata.name!;
      this.recorder.record(node, 'Normal', 'Starting', 'Starting kubelet.', { component: 'kubelet', host: name });
      this.recorder.record(node, 'Normal', 'RegisteredNode', `Node ${name} event: Registered Node ${name} in Controller`, { component: 'node-controller' });
      if (condition(node, 'Ready')?.status === 'True') this.recorder.record(node, 'Normal', 'NodeReady', `Node ${name} status is now: NodeReady`, { component: 'kubelet', host: name });
    }
    // Pod Identity's kinds are not in the controllers' cache: MIC's events come from the store.
    this.unsubscribeStore = this.store.subscribe((ev) => {
      if (ev.resourceType.group !== 'aadpodidentity.k8s.io' || ev.resourceType.resource !== 'azureassignedidentities') return;
      this.onAssignedIdentity(ev.type, ev.object);
    });
  }

  stop(): void {
    this.unsubscribeStore?.();
    this.recorder.stop();
  }

  private onCacheEvent(ev: CacheEvent): void {
    const t = ev.resourceType;
    const key = `${t.group}/${t.resource}`;
    if (key === '/pods') this.onPod(ev);
    else if (key === '/nodes') this.onNode(ev);
    else if (key === 'apps/replicasets') this.onReplicaSet(ev);
    else if (key === 'batch/jobs') this.onJob(ev);
  }

  private owner(o: Readonly<KObject>): Readonly<KObject> | undefined {
    const ref = controllerOf(o);
    if (!ref) return undefined;
    const resource = ref.kind === 'ReplicaSet' ? ['apps', 'replicasets'] : ref.kind === 'DaemonSet' ? ['apps', 'daemonsets'] : ref.kind === 'Job' ? ['batch', 'jobs'] : ref.kind === 'Deployment' ? ['apps', 'deployments'] : undefined;
    if (!resource) return undefined;
    const found = this.cache.get(resource[0], resource[1], `${o.metadata.namespace}/${ref.name}`);
    return found?.metadata.uid === ref.uid ? found : undefined;
  }

  private onPod(ev: CacheEvent): void {
    const pod = ev.object;
    const old = ev.old;
    const r = this.recorder;
    const name = `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (ev.type === 'ADDED') {
      const owner = this.owner(pod);
      if (owner) {
        const component = owner.kind === 'ReplicaSet' ? 'replicaset-controller' : owner.kind === 'DaemonSet' ? 'daemonset-controller' : 'job-controller';
        r.record(owner, 'Normal', 'SuccessfulCreate', `Created pod: ${pod.metadata.name}`, { component });
      }
    }
    if (ev.type === 'DELETED') return;
    const node: string | undefined = pod.spec?.nodeName;
    if (node && condition(pod, 'PodScheduled')?.status === 'True' && condition(old, 'PodScheduled')?.status !== 'True') {
      r.record(pod, 'Normal', 'Scheduled', `Successfully assigned ${name} to ${node}`, { component: 'default-scheduler' });
    }
    const sched = condition(pod, 'PodScheduled');
    const oldSched = condition(old, 'PodScheduled');
    if (sched?.status === 'False' && sched.reason === 'Unschedulable' && (oldSched?.status !== 'False' || oldSched?.message !== sched.message)) {
      r.record(pod, 'Warning', 'FailedScheduling', sched.message ?? '0/0 nodes are available', { component: 'default-scheduler' });
    }
    if (!node) return;
    const kubelet = { component: 'kubelet', host: node };
    const before = new Map<string, any>(((old?.status?.containerStatuses as any[]) ?? []).map((s) => [s.name, s]));
    for (const s of (pod.status?.containerStatuses as any[]) ?? []) {
      const prev = before.get(s.name);
      const started = s.state?.running && !prev?.state?.running;
      const restarted = (s.restartCount ?? 0) > (prev?.restartCount ?? 0);
      if (started || restarted) {
        const spec = ((pod.spec?.containers as any[]) ?? []).find((c) => c.name === s.name);
        const fieldPath = `spec.containers{${s.name}}`;
        r.record(pod, 'Normal', 'Pulled', `Container image "${spec?.image ?? s.image}" already present on machine`, kubelet, fieldPath);
        r.record(pod, 'Normal', 'Created', `Created container: ${s.name}`, kubelet, fieldPath);
        r.record(pod, 'Normal', 'Started', `Started container ${s.name}`, kubelet, fieldPath);
      }
      if (s.state?.terminated && prev && !prev.state?.terminated && (s.state.terminated.exitCode ?? 0) !== 0 && pod.spec?.restartPolicy !== 'Never') {
        r.record(pod, 'Warning', 'BackOff', `Back-off restarting failed container ${s.name} in pod ${pod.metadata.name}_${pod.metadata.namespace}(${pod.metadata.uid})`, kubelet, `spec.containers{${s.name}}`);
      }
    }
    if (pod.metadata.deletionTimestamp && !old?.metadata.deletionTimestamp) {
      const unreachable = (this.cache.nodes.get(node)?.spec?.taints as any[] | undefined)?.some((t) => t.effect === 'NoExecute' && t.key?.startsWith('node.kubernetes.io/'));
      if (unreachable) r.record(pod, 'Normal', 'TaintManagerEviction', `Marking for deletion Pod ${name}`, { component: 'taint-eviction-controller' });
      for (const c of (pod.spec?.containers as any[]) ?? []) {
        if (((pod.status?.containerStatuses as any[]) ?? []).some((s) => s.name === c.name && s.state?.running)) {
          r.record(pod, 'Normal', 'Killing', `Stopping container ${c.name}`, kubelet, `spec.containers{${c.name}}`);
        }
      }
    }
  }

  private onNode(ev: CacheEvent): void {
    const node = ev.object;
    const name = node.metadata.name!;
    const r = this.recorder;
    const kubelet = { component: 'kubelet', host: name };
    if (ev.type === 'ADDED') {
      r.record(node, 'Normal', 'Starting', 'Starting kubelet.', kubelet);
      r.record(node, 'Normal', 'RegisteredNode', `Node ${name} event: Registered Node ${name} in Controller`, { component: 'node-controller' });
      return;
    }
    if (ev.type === 'DELETED') return;
    const old = ev.old;
    const ready = condition(node, 'Ready')?.status;
    const wasReady = condition(old, 'Ready')?.status;
    if (ready === 'True' && wasReady !== 'True') r.record(node, 'Normal', 'NodeReady', `Node ${name} status is now: NodeReady`, kubelet);
    if (ready !== 'True' && wasReady === 'True') r.record(node, 'Normal', 'NodeNotReady', 'Node is not ready', { component: 'node-controller' });
    const cordoned = !!node.spec?.unschedulable;
    if (cordoned !== !!old?.spec?.unschedulable) {
      r.record(node, 'Normal', cordoned ? 'NodeNotSchedulable' : 'NodeSchedulable', `Node ${name} status is now: ${cordoned ? 'NodeNotSchedulable' : 'NodeSchedulable'}`, kubelet);
    }
    const bootOld = old?.status?.nodeInfo?.bootID;
    const bootNew = node.status?.nodeInfo?.bootID;
    if (bootOld && bootNew && bootOld !== bootNew) r.record(node, 'Warning', 'Rebooted', `Node ${name} has been rebooted, boot id: ${bootNew}`, kubelet);
  }

  private onReplicaSet(ev: CacheEvent): void {
    if (ev.type === 'DELETED') return;
    const rs = ev.object;
    const owner = this.owner(rs);
    if (!owner || owner.kind !== 'Deployment') return;
    const to: number = rs.spec?.replicas ?? 0;
    const from: number = ev.type === 'ADDED' ? 0 : (ev.old?.spec?.replicas ?? 0);
    if (to === from) return;
    const verb = to > from ? 'up' : 'down';
    this.recorder.record(owner, 'Normal', 'ScalingReplicaSet', `Scaled ${verb} replica set ${rs.metadata.name} from ${from} to ${to}`, { component: 'deployment-controller' });
  }

  private onJob(ev: CacheEvent): void {
    if (ev.type !== 'MODIFIED') return;
    const done = condition(ev.object, 'Complete')?.status === 'True';
    if (done && condition(ev.old, 'Complete')?.status !== 'True') this.recorder.record(ev.object, 'Normal', 'Completed', 'Job completed', { component: 'job-controller' });
    const failed = condition(ev.object, 'Failed');
    if (failed?.status === 'True' && condition(ev.old, 'Failed')?.status !== 'True') this.recorder.record(ev.object, 'Warning', failed.reason ?? 'BackoffLimitExceeded', failed.message ?? 'Job has reached the specified backoff limit', { component: 'job-controller' });
  }

  /** MIC's events are about the AzureIdentityBinding that an assignment applies. */
  private onAssignedIdentity(type: string, a: Readonly<KObject>): void {
    const uid = a.metadata.uid!;
    const binding = a.spec?.azureBindingRef;
    const status: string | undefined = a.status?.status;
    const was = this.assigned.get(uid);
    if (!binding?.metadata?.name) return;
    const involved: KObject = { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: binding.metadata.name, namespace: binding.metadata.namespace, uid: binding.metadata.uid, resourceVersion: binding.metadata.resourceVersion } };
    const source = { component: 'aadpodidentity-mic' };
    if (type !== 'DELETED' && status === 'Assigned' && was !== 'Assigned') {
      this.assigned.set(uid, 'Assigned');
      this.recorder.record(involved, 'Normal', 'binding applied', `Binding ${binding.metadata.name} applied on node ${a.spec?.nodename} for pod ${a.spec?.pod}`, source);
    } else if (type === 'DELETED' || (a.metadata.deletionTimestamp && was === 'Assigned')) {
      if (was === 'Assigned') this.recorder.record(involved, 'Normal', 'binding removed', `Binding ${binding.metadata.name} removed from node ${a.spec?.nodename} for pod ${a.spec?.pod}`, source);
      this.assigned.delete(uid);
    } else if (status) this.assigned.set(uid, status);
  }
}

/** Renews each Ready node's Lease in `kube-node-lease`, as its kubelet does. */
export class NodeLeases {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly leaseType: ResourceType;
  private stopTimer?: () => void;

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.leaseType = opts.store.typeOrThrow('coordination.k8s.io', 'leases');
  }

  start(): void {
    this.renewAll();
    this.stopTimer = this.clock.every(10_000, () => this.renewAll());
  }

  stop(): void {
    this.stopTimer?.();
  }

  private renewAll(): void {
    const now = micro(this.clock.now());
    for (const node of this.cache.nodes.values()) {
      // A node whose kubelet is down (rebooting, deleted) stops renewing; the lease then expires.
      if (condition(node, 'Ready')?.status !== 'True' || node.metadata.deletionTimestamp) continue;
      const name = node.metadata.name!;
      try {
        const cur = this.store.peek(this.leaseType, 'kube-node-lease', name);
        if (!cur) {
          this.store.create(this.leaseType, {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name, namespace: 'kube-node-lease', ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: node.metadata.uid! }] },
            spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: now },
          });
        } else {
          this.store.mutate(this.leaseType, 'kube-node-lease', name, (l) => {
            l.spec = { ...(l.spec ?? {}), holderIdentity: name, leaseDurationSeconds: 40, renewTime: now };
          });
        }
      } catch (e) {
        // kube-node-lease may be missing in a bare test cluster; a conflict is retried next round.
        if (!(e instanceof StoreError)) throw e;
      }
    }
  }
}
