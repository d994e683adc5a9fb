/**
 * The scheduler: binds pending pods without `spec.nodeName` to a Ready, schedulable node
 * that matches their `nodeSelector` / required node affinity, whose taints they tolerate,
 * that has room under its pod capacity and no host-port clash, preferring the node with the
 * fewest pods (spreading). Pods that fit nowhere get `PodScheduled=False/Unschedulable`
 * with the real scheduler's summary and are retried when nodes or capacity change.
 */
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';
import { effectiveTaints, hostPorts, matchesNodeSelection, type Taint, toleratesTaints } from './scheduling.ts';
import { canonicalJson, ignoreNotFound, isTerminal, objectKey, setCondition, splitKey, writeStatus } from './util.ts';
import { WorkQueue } from './work-queue.ts';

const DEFAULT_MAX_PODS = 110;

function capacityOf(node: Readonly<KObject>): number {
  const v = Number(node.status?.allocatable?.pods ?? node.status?.capacity?.pods);
  return Number.isFinite(v) && v > 0 ? v : DEFAULT_MAX_PODS;
}

/** Pods that take a slot on their node: bound and not finished (terminating ones still do). */
function occupiesSlot(p: Readonly<KObject> | undefined): p is Readonly<KObject> {
  return !!p && !!p.spec?.nodeName && !isTerminal(p);
}

export class Scheduler {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly podType: ResourceType;
  readonly queue: WorkQueue;
  private readonly load = new Map<string, number>();
  private readonly unschedulable = new Set<string>();
  /** Scheduling signature -> names of nodes whose labels and taints admit it; cleared on node changes. */
  private eligible = new Map<string, string[]>();
  private stopResync?: () => void;

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache; podType: ResourceType }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.podType = opts.podType;
    this.queue = new WorkQueue('scheduler', this.clock, (k) => this.schedule(k), { batch: 2000 });
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    for (const [key, p] of this.cache.pods) {
      if (occupiesSlot(p)) this.bump(p.spec!.nodeName, 1);
      else if (this.wantsScheduling(p)) this.queue.add(key);
    }
    // A periodic retry, like the scheduler's unschedulable-queue flush.
    this.stopResync = this.clock.every(30_000, () => this.retryUnschedulable());
  }

  stop(): void {
    this.stopResync?.();
    this.queue.stop();
  }

  private wantsScheduling(p: Readonly<KObject>): boolean {
    return !p.spec?.nodeName && !p.metadata.deletionTimestamp && !isTerminal(p) && (p.spec?.schedulerName ?? 'default-scheduler') === 'default-scheduler';
  }

  private bump(node: string, d: number): void {
    this.load.set(node, (this.load.get(node) ?? 0) + d);
  }

  private onEvent(ev: CacheEvent): void {
    const kind = ev.resourceType;
    if (kind.group !== '') return;
    if (kind.resource === 'nodes') {
      this.eligible = new Map();
      if (ev.type !== 'DELETED') this.retryUnschedulable();
      else this.load.delete(ev.object.metadata.name!);
      return;
    }
    if (kind.resource !== 'pods') return;
    const key = objectKey(ev.object);
    const before = occupiesSlot(ev.old) ? ev.old.spec!.nodeName : undefined;
    const after = ev.type !== 'DELETED' && occupiesSlot(ev.object) ? ev.object.spec!.nodeName : undefined;
    if (before !== after) {
      if (before) this.bump(before, -1);
      if (after) this.bump(after, 1);
      // Room freed on a node may let a waiting pod in.
      if (before && !after && this.unschedulable.size) this.retryUnschedulable();
    }
    if (ev.type === 'DELETED' || !this.wantsScheduling(ev.object)) {
      this.unschedulable.delete(key);
      return;
    }
    if (!this.unschedulable.has(key)) this.queue.add(key);
  }

  private retryUnschedulable(): void {
    for (const k of this.unschedulable) this.queue.add(k);
    this.unschedulable.clear();
  }

  private eligibleNodes(spec: Record<string, any>): string[] {
    const sig = canonicalJson({ s: spec.nodeSelector, a: spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution, t: spec.tolerations });
    let names = this.eligible.get(sig);
    if (!names) {
      names = [];
      for (const [name, node] of this.cache.nodes) {
        if (matchesNodeSelection(spec, node) && toleratesTaints(spec.tolerations, effectiveTaints(node), ['NoSchedule', 'NoExecute'])) names.push(name);
      }
      names.sort();
      this.eligible.set(sig, names);
    }
    return names;
  }

  private portsFree(node: string, ports: string[], self: string): boolean {
    for (const other of this.cache.podsOnNode(node)) {
      if (objectKey(other) === self || isTerminal(other)) continue;
      const theirs = hostPorts(other.spec);
      if (ports.some((p) => theirs.includes(p))) return false;
    }
    return true;
  }

  private schedule(key: string): void {
    const pod = this.cache.pod(key);
    if (!pod || !this.wantsScheduling(pod)) return;
    const spec = pod.spec ?? {};
    const ports = hostPorts(spec);
    let best: string | undefined;
    let bestLoad = Infinity;
    for (const name of this.eligibleNodes(spec)) {
      const node = this.cache.nodes.get(name);
      if (!node) continue;
      const l = this.load.get(name) ?? 0;
      if (l >= capacityOf(node) || l >= bestLoad) continue;
      if (ports.length && !this.portsFree(name, ports, key)) continue;
      best = name;
      bestLoad = l;
    }
    if (!best) return this.markUnschedulable(key, pod, ports);
    this.bind(pod, best);
  }

  private bind(pod: Readonly<KObject>, nodeName: string): void {
    const cur = this.store.peek(this.podType, pod.metadata.namespace, pod.metadata.name!);
    if (!cur || cur.metadata.uid !== pod.metadata.uid || cur.spec?.nodeName || cur.metadata.deletionTimestamp) return;
    // What POST pods/binding does: set spec.nodeName, then PodScheduled=True.
    const bound = ignoreNotFound(() => this.store.update(this.podType, { ...(cur as KObject), spec: { ...cur.spec, nodeName } }));
    if (!bound) return;
    const status: Record<string, any> = { ...(bound.status ?? {}), phase: bound.status?.phase ?? 'Pending' };
    status.conditions = setCondition(bound.status?.conditions, { type: 'PodScheduled', status: 'True' }, this.clock);
    writeStatus(this.store, this.podType, bound, status);
  }

  private markUnschedulable(key: string, pod: Readonly<KObject>, ports: string[]): void {
    this.unschedulable.add(key);
    const message = this.explain(pod.spec ?? {}, ports, key);
    const cur = (pod.status?.conditions as any[] | undefined)?.find((c) => c.type === 'PodScheduled');
    if (cur?.status === 'False' && cur.message === message) return;
    const { namespace, name } = splitKey(key);
    ignoreNotFound(() =>
      this.store.mutate(
        this.podType,
        namespace,
        name,
        (p) => {
          if (p.metadata.uid !== pod.metadata.uid || p.spec?.nodeName) return false;
          p.status = p.status ?? {};
          p.status.phase = 'Pending';
          p.status.conditions = setCondition(p.status.conditions, { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }, this.clock, { probeTime: true });
        },
        { subresource: 'status' },
      ),
    );
  }

  /** The scheduler's FitError summary: `0/5 nodes are available: 2 node(s) ..., 3 node(s) ....` */
  private explain(spec: Record<string, any>, ports: string[], self: string): string {
    const reasons = new Map<string, number>();
    const add = (r: string) => reasons.set(r, (reasons.get(r) ?? 0) + 1);
    for (const [name, node] of this.cache.nodes) {
      if (node.spec?.unschedulable && !toleratesTaints(spec.tolerations, [{ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' }])) {
        add('node(s) were unschedulable');
        continue;
      }
      if (!matchesNodeSelection(spec, node)) {
        add("node(s) didn't match Pod's node affinity/selector");
        continue;
      }
      const untolerated = effectiveTaints(node).find((t: Taint) => (t.effect === 'NoSchedule' || t.effect === 'NoExecute') && !toleratesTaints(spec.tolerations, [t]));
      if (untolerated) {
        add(`node(s) had untolerated taint {${untolerated.key}: ${untolerated.value ?? ''}}`);
        continue;
      }
      if ((this.load.get(name) ?? 0) >= capacityOf(node)) {
        add('Too many pods');
        continue;
      }
      if (ports.length && !this.portsFree(name, ports, self)) add("node(s) didn't have free ports for the requested pod ports");
    }
    const total = this.cache.nodes.size;
    const parts = [...reasons.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([r, n]) => `${n} ${r}`);
    return `0/${total} nodes are available${parts.length ? `: ${parts.join(', ')}` : ''}. preemption: 0/${total} nodes are available: ${total} Preemption is not helpful for scheduling.`;
  }
}
