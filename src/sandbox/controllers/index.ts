/**
 * The sandbox's control plane and node agents: scheduler, ReplicaSet / Deployment /
 * DaemonSet / Job controllers, disruption controller (PodDisruptionBudget status), garbage
 * collector, node lifecycle controller and the kubelet, all driven by the shared
 * {@link ObjectStore} and {@link Clock}. Every controller reacts to store events through one
 * shared cache and resyncs periodically through the clock.
 */
import type { Clock } from '../clock.ts';
import type { PodNetwork } from '../netsim.ts';
import type { PodLogs } from '../pod-logs.ts';
import type { ProgramRegistry, VolumeFiles } from '../runtime.ts';
import type { ObjectStore } from '../store.ts';
import { ClusterCache } from './cache.ts';
import { DaemonSetController } from './daemonset.ts';
import { DeploymentController } from './deployment.ts';
import { DisruptionController } from './disruption.ts';
import { GarbageCollector } from './garbage-collector.ts';
import { JobController } from './job.ts';
import { Kubelet, type KubeletTiming } from './kubelet.ts';
import { type NodeInfraEvents, NodeLifecycleController } from './node-lifecycle.ts';
import { ReplicaSetController } from './replicaset.ts';
import { Scheduler } from './scheduler.ts';
import { ClusterEvents, NodeLeases } from './events.ts';
import { requireType } from './util.ts';
import type { WorkQueue } from './work-queue.ts';

export { addNode, type NewNode, type NodeInfraEvent, type NodeInfraEvents } from './node-lifecycle.ts';
export { DEFAULT_KUBELET_TIMING, type KubeletTiming } from './kubelet.ts';
export { startChurn, type ChurnSpec } from './churn.ts';

export interface ControllerOptions {
  store: ObjectStore;
  clock: Clock;
  network: PodNetwork;
  logs: PodLogs;
  programs: ProgramRegistry;
  /** Scale-set instance events (`ArmState`): reimage, instance-deleted, instance-created. */
  infra?: NodeInfraEvents;
  timing?: Partial<KubeletTiming>;
  /** Projected volume files the kubelet serves to containers (service account tokens). */
  volumeFiles?: VolumeFiles;
}

/**
 * Every controller of the simulated cluster. Construct after the store's built-in types are
 * registered, call {@link ClusterControllers.start}, and {@link ClusterControllers.stop} when
 * the sandbox shuts down.
 */
export class ClusterControllers {
  private readonly opts: ControllerOptions;
  private cache?: ClusterCache;
  private queues: WorkQueue[] = [];
  private stoppers: (() => void | Promise<void>)[] = [];
  /** The kubelet (exposed for diagnostics and for tests that look at running containers). */
  kubelet?: Kubelet;
  private started = false;

  constructor(opts: ControllerOptions) {
    this.opts = opts;
  }

  /** Starts every controller; objects already in the store are picked up. Idempotent. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const { store, clock, network, logs, programs, infra, timing, volumeFiles } = this.opts;
    const podType = requireType(store, '', 'pods');
    const nodeType = requireType(store, '', 'nodes');
    const rsType = requireType(store, 'apps', 'replicasets');
    const deployType = requireType(store, 'apps', 'deployments');
    const dsType = requireType(store, 'apps', 'daemonsets');
    const jobType = requireType(store, 'batch', 'jobs');
    const pdbType = requireType(store, 'policy', 'poddisruptionbudgets');
    const cache = new ClusterCache(store);
    this.cache = cache;
    const kubelet = new Kubelet({ store, clock, cache, network, logs, programs, podType, timing, volumeFiles });
    this.kubelet = kubelet;
    const scheduler = new Scheduler({ store, clock, cache, podType });
    const rs = new ReplicaSetController({ store, clock, cache, podType, rsType });
    const deploy = new DeploymentController({ store, clock, cache, deployType, rsType });
    const ds = new DaemonSetController({ store, clock, cache, podType, dsType });
    const job = new JobController({ store, clock, cache, podType, jobType });
    const pdb = new DisruptionController({ store, clock, cache, pdbType });
    const gc = new GarbageCollector({ store, clock, cache });
    const nodes = new NodeLifecycleController({ store, clock, cache, kubelet, nodeType, podType, infra });
    this.queues = [scheduler.queue, rs.queue, deploy.queue, ds.queue, job.queue, pdb.queue, gc.queue, nodes.queue, kubelet.podQueue, kubelet.statusQueue];
    // Events and node leases: what the components leave behind for `describe` and `get events`.
    const events = new ClusterEvents({ store, clock, cache });
    const leases = new NodeLeases({ store, clock, cache });
    cache.start();
    for (const c of [nodes, scheduler, kubelet, deploy, rs, ds, job, pdb, gc, events, leases]) {
      c.start();
      this.stoppers.push(() => c.stop());
    }
  }

  /** Stops every controller and kills every simulated container. */
  async stop(): Promise<void> {
    const s = this.stoppers.reverse();
    this.stoppers = [];
    for (const fn of s) await fn();
    this.cache?.stop();
  }

  /**
   * Resolves when no controller has queued work (delayed re-queues waiting on the clock do
   * not count). Tests advance a {@link ManualClock} and then await this.
   */
  async idle(): Promise<void> {
    for (let i = 0; i < 10_000; i++) {
      await Promise.all(this.queues.map((q) => q.drained()));
      // Let promise chains started by the last batch (container starts, status writes) settle.
      await new Promise<void>((r) => setImmediate(r));
      if (this.queues.every((q) => !q.busy)) return;
    }
    throw new Error(`controllers never became idle: ${this.queues.filter((q) => q.busy).map((q) => q.name).join(', ')}`);
  }
}
