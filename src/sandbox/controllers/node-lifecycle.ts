/**
 * Node registration and the node lifecycle controller.
 *
 * {@link addNode} registers a Ready node the way an AKS node's kubelet does. The
 * {@link NodeLifecycleController} keeps the condition-derived taints (`not-ready`,
 * `unschedulable`) in step, marks pods on a node that stopped being Ready as not Ready, and
 * follows the node pool's VM scale set: a reimage makes the node NotReady and kills every
 * container on it (DaemonSet pods come back when it is Ready again; other pods are lost and
 * deleted), a deleted instance takes its Node and pods with it, and a created instance
 * registers a new Node.
 */
import { isoSeconds } from '../clock.ts';
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';
import type { Kubelet } from './kubelet.ts';
import { isNodeReady, TAINT_NOT_READY, TAINT_UNSCHEDULABLE, type Taint } from './scheduling.ts';
import { controllerRef, deletePod, ignoreNotFound, requireType, setCondition } from './util.ts';
import { WorkQueue } from './work-queue.ts';

/** One VM scale set instance event, as `ArmState` emits them on `'event'`. */
export interface NodeInfraEvent {
  type: 'reimage' | 'instance-deleted' | 'instance-created' | string;
  scaleSet: string;
  instanceId: string;
  computerName: string;
  phase?: 'started' | 'completed';
  /** Optional details a producer may add; otherwise taken from sibling nodes of the same scale set. */
  pool?: string;
  providerID?: string;
  ip?: string;
}

/** The part of an EventEmitter (such as `ArmState`) the controller listens on. */
export interface NodeInfraEvents {
  on(event: 'event', listener: (e: NodeInfraEvent) => void): unknown;
  off(event: 'event', listener: (e: NodeInfraEvent) => void): unknown;
}

export interface NewNode {
  name: string;
  pool: string;
  providerID: string;
  ip: string;
  labels?: Record<string, string>;
  capacityPods?: number;
}

/** Picks the first free pod CIDR (`10.244.0.0/24`, `10.244.1.0/24`, ... then `10.245.x.0/24`). */
function freePodCidr(store: ObjectStore, nodeType: ResourceType): string {
  const used = new Set<string>();
  for (const n of store.scan(nodeType)) if (n.spec?.podCIDR) used.add(String(n.spec.podCIDR));
  for (let k = 0; ; k++) {
    const cidr = `10.${244 + Math.floor(k / 256)}.${k % 256}.0/24`;
    if (!used.has(cidr)) return cidr;
  }
}

/**
 * Registers a Ready node with the labels, addresses, capacity and node info an AKS node has.
 * Returns the stored Node.
 */
export function addNode(store: ObjectStore, n: NewNode): KObject {
  const nodeType = requireType(store, '', 'nodes');
  const pods = String(n.capacityPods ?? 110);
  const podCIDR = freePodCidr(store, nodeType);
  const now = isoSeconds(Date.now());
  const ready = (type: string, status: string, reason: string, message: string) => ({ type, status, lastHeartbeatTime: now, lastTransitionTime: now, reason, message });
  const node: KObject = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.name,
      labels: {
        'beta.kubernetes.io/arch': 'amd64',
        'beta.kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'kubernetes.io/os': 'linux',
        'kubernetes.io/hostname': n.name,
        'kubernetes.io/role': 'agent',
        'node-role.kubernetes.io/agent': '',
        'kubernetes.azure.com/role': 'agent',
        'kubernetes.azure.com/agentpool': n.pool,
        agentpool: n.pool,
        ...(n.labels ?? {}),
      },
      annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' },
    },
    spec: { providerID: n.providerID, podCIDR, podCIDRs: [podCIDR] },
    status: {
      capacity: { cpu: '4', 'ephemeral-storage': '129886128Ki', memory: '16375264Ki', pods },
      allocatable: { cpu: '3860m', 'ephemeral-storage': '119703055367', memory: '12880864Ki', pods },
      conditions: [
        ready('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        ready('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        ready('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        ready('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status'),
      ],
      addresses: [
        { type: 'InternalIP', address: n.ip },
        { type: 'Hostname', address: n.name },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        architecture: 'amd64',
        bootID: crypto.randomUUID(),
        containerRuntimeVersion: 'containerd://1.7.27-1',
        kernelVersion: '5.15.0-1089-azure',
        kubeProxyVersion: 'v1.32.6',
        kubeletVersion: 'v1.32.6',
        machineID: crypto.randomUUID().replace(/-/g, ''),
        operatingSystem: 'linux',
        osImage: 'Ubuntu 22.04.5 LTS',
        systemUUID: crypto.randomUUID(),
      },
    },
  };
  return store.create(nodeType, node);
}

const INSTANCE_RE = /\/virtualMachineScaleSets\/([^/]+)\/virtualMachines\/([^/]+)$/i;

export class NodeLifecycleController {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly kubelet: Kubelet;
  private readonly nodeType: ResourceType;
  private readonly podType: ResourceType;
  private readonly infra?: NodeInfraEvents;
  readonly queue: WorkQueue;
  private readonly listener = (e: NodeInfraEvent) => this.onInfra(e);

  constructor(opts: { store: ObjectStore; clock: Clock; cache: ClusterCache; kubelet: Kubelet; nodeType: ResourceType; podType: ResourceType; infra?: NodeInfraEvents }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.kubelet = opts.kubelet;
    this.nodeType = opts.nodeType;
    this.podType = opts.podType;
    this.infra = opts.infra;
    this.queue = new WorkQueue('node-lifecycle', this.clock, (k) => this.syncNode(k));
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    for (const k of this.cache.nodes.keys()) this.queue.add(k);
    this.infra?.on('event', this.listener);
  }

  stop(): void {
    this.infra?.off('event', this.listener);
    this.queue.stop();
  }

  private onEvent(ev: CacheEvent): void {
    if (ev.resourceType.group !== '' || ev.resourceType.resource !== 'nodes' || ev.type === 'DELETED') return;
    const name = ev.object.metadata.name!;
    this.queue.add(name);
    if (ev.old && isNodeReady(ev.old) && !isNodeReady(ev.object)) this.markPodsNotReady(name);
  }

  /** Keeps the taints that mirror the node's state. */
  private syncNode(name: string): void {
    const node = this.cache.nodes.get(name);
    if (!node) return;
    const want = new Map<string, Taint>();
    if (node.spec?.unschedulable) want.set(TAINT_UNSCHEDULABLE, { key: TAINT_UNSCHEDULABLE, effect: 'NoSchedule' });
    if (!isNodeReady(node)) want.set(TAINT_NOT_READY, { key: TAINT_NOT_READY, effect: 'NoSchedule' });
    const managed = new Set([TAINT_UNSCHEDULABLE, TAINT_NOT_READY]);
    const taints = (node.spec?.taints as Taint[] | undefined) ?? [];
    const kept = taints.filter((t) => !managed.has(t.key) || (want.has(t.key) && t.effect === 'NoSchedule'));
    for (const [k, t] of want) if (!kept.some((x) => x.key === k && x.effect === 'NoSchedule')) kept.push({ ...t, timeAdded: isoSeconds(this.clock.now()) } as Taint);
    if (JSON.stringify(kept) === JSON.stringify(taints)) return;
    ignoreNotFound(() =>
      this.store.mutate(this.nodeType, undefined, name, (o) => {
        if (kept.length) o.spec.taints = kept;
        else delete o.spec.taints;
      }),
    );
  }

  private markPodsNotReady(node: string): void {
    for (const p of this.cache.podsOnNode(node)) {
      if (p.status?.conditions?.find((c: any) => c.type === 'Ready')?.status !== 'True') continue;
      ignoreNotFound(() =>
        this.store.mutate(
          this.podType,
          p.metadata.namespace,
          p.metadata.name!,
          (o) => {
            if (o.metadata.uid !== p.metadata.uid) return false;
            o.status.conditions = setCondition(o.status.conditions, { type: 'Ready', status: 'False' }, this.clock);
            for (const c of o.status.conditions) if (c.type === 'Ready') c.lastProbeTime = null;
            for (const cs of o.status.containerStatuses ?? []) cs.ready = false;
          },
          { subresource: 'status' },
        ),
      );
    }
  }

  private findNode(e: NodeInfraEvent): string | undefined {
    if (e.computerName && this.cache.nodes.has(e.computerName)) return e.computerName;
    for (const [name, n] of this.cache.nodes) {
      const m = INSTANCE_RE.exec(String(n.spec?.providerID ?? ''));
      if (m && m[1].toLowerCase() === e.scaleSet.toLowerCase() && m[2] === String(e.instanceId)) return name;
    }
    return undefined;
  }

  private setReady(name: string, ready: boolean): void {
    ignoreNotFound(() =>
      this.store.mutate(
        this.nodeType,
        undefined,
        name,
        (o) => {
          const now = isoSeconds(this.clock.now());
          const next = ready
            ? { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }
            : { type: 'Ready', status: 'False', reason: 'KubeletNotReady', message: 'node is being reimaged: kubelet stopped' };
          o.status.conditions = setCondition(o.status.conditions, next, this.clock);
          for (const c of o.status.conditions) c.lastHeartbeatTime = now;
          if (ready) o.status.nodeInfo = { ...(o.status.nodeInfo ?? {}), bootID: crypto.randomUUID() };
        },
        { subresource: 'status' },
      ),
    );
  }

  private onInfra(e: NodeInfraEvent): void {
    try {
      if (e.type === 'reimage') {
        const name = this.findNode(e);
        if (!name) return;
        if (e.phase === 'started') {
          this.setReady(name, false);
          this.kubelet.nodeLost(name);
          // The machine's disk is wiped: only DaemonSet pods are recreated there by their controller.
          for (const p of this.cache.podsOnNode(name)) {
            if (controllerRef(p)?.kind === 'DaemonSet') continue;
            deletePod(this.store, this.podType, p, 0);
          }
        } else if (e.phase === 'completed') this.setReady(name, true);
      } else if (e.type === 'instance-deleted') {
        const name = this.findNode(e);
        if (!name) return;
        this.kubelet.nodeLost(name);
        for (const p of this.cache.podsOnNode(name)) deletePod(this.store, this.podType, p, 0);
        ignoreNotFound(() => this.store.delete(this.nodeType, undefined, name));
      } else if (e.type === 'instance-created') {
        if (this.findNode(e)) return;
        this.registerInstance(e);
      }
    } catch {
      // A malformed infrastructure event must not take the controller down.
    }
  }

  /** Registers the Node of a new scale set instance, modelled on its siblings. */
  private registerInstance(e: NodeInfraEvent): void {
    let sibling: Readonly<KObject> | undefined;
    for (const n of this.cache.nodes.values()) {
      const m = INSTANCE_RE.exec(String(n.spec?.providerID ?? ''));
      if (m && m[1].toLowerCase() === e.scaleSet.toLowerCase()) {
        sibling = n;
        break;
      }
    }
    const pool = e.pool ?? sibling?.metadata.labels?.['kubernetes.azure.com/agentpool'];
    const providerID = e.providerID ?? (sibling ? String(sibling.spec.providerID).replace(INSTANCE_RE, `/virtualMachineScaleSets/${e.scaleSet}/virtualMachines/${e.instanceId}`) : undefined);
    if (!pool || !providerID) return;
    const ip = e.ip ?? this.freeNodeIp(sibling);
    const inherited: Record<string, string> = {};
    for (const [k, v] of Object.entries(sibling?.metadata.labels ?? {})) {
      if (k.startsWith('kubernetes.azure.com/') || k.startsWith('node.kubernetes.io/') || k.startsWith('topology.kubernetes.io/')) inherited[k] = v;
    }
    addNode(this.store, { name: e.computerName, pool, providerID, ip, labels: inherited, capacityPods: Number(sibling?.status?.capacity?.pods) || undefined });
  }

  private freeNodeIp(sibling: Readonly<KObject> | undefined): string {
    const used = new Set<string>();
    for (const n of this.cache.nodes.values()) for (const a of n.status?.addresses ?? []) if (a.type === 'InternalIP') used.add(a.address);
    const base = (sibling?.status?.addresses as any[] | undefined)?.find((a) => a.type === 'InternalIP')?.address ?? '10.224.0.4';
    const [a, b] = base.split('.');
    for (let i = 4; i < 65_000; i++) {
      const ip = `${a}.${b}.${Math.floor(i / 250)}.${(i % 250) + 4}`;
      if (!used.has(ip)) return ip;
    }
    throw new Error('no free node address');
  }
}
