/**
 * The simulated kubelet, one component for every node. For each pod bound to a Ready node it
 * creates the pod sandbox (pod IP from the node's CIDR, or the node IP for hostNetwork pods),
 * pulls images (once per node), runs init containers in order and then the containers
 * through {@link ProgramRegistry} programs (the command emulator and a "runs until stopped"
 * program are the fallbacks), restarts them per `restartPolicy` with the real back-off,
 * runs readiness / liveness probes (exec through the command emulator, httpGet, tcpSocket),
 * reports pod status the way the real kubelet does, and carries out graceful deletion:
 * SIGTERM, wait up to the grace period, kill, then remove the pod.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import { isoSeconds } from '../clock.ts';
import type { PodNetwork, SimSource } from '../netsim.ts';
import type { PodLogs } from '../pod-logs.ts';
import type { ContainerContext, ContainerProcess, ContainerProgram, ProgramRegistry, VolumeFiles } from '../runtime.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import type { CacheEvent, ClusterCache } from './cache.ts';
import { commandEmulator, matchesEmulatedContainer, runCommand } from './command-emulator.ts';
import { ContainerConfigError, resolveArgv, resolveEnv } from './env.ts';
import { isNodeReady } from './scheduling.ts';
import { isTerminal, objectKey, unitHash } from './util.ts';
import { WorkQueue } from './work-queue.ts';

/** Simulated durations of the kubelet's work. */
export interface KubeletTiming {
  /** From binding to a running pod sandbox (pod IP assigned). */
  sandboxSeconds: number;
  /** Image pull when the node does not have the image yet: a repeatable value between min and max per pod. */
  imagePullMinSeconds: number;
  imagePullMaxSeconds: number;
  /** Creating and starting a container whose image is present. */
  containerStartSeconds: number;
  /** First crash-loop back-off; doubles per restart up to the maximum (the kubelet's 10 s / 300 s). */
  backoffInitialSeconds: number;
  backoffMaxSeconds: number;
  /** How often the kubelet re-reads `ContainerProcess.isReady()`. */
  readinessPollSeconds: number;
}

export const DEFAULT_KUBELET_TIMING: KubeletTiming = {
  sandboxSeconds: 0.5,
  imagePullMinSeconds: 1,
  imagePullMaxSeconds: 2,
  containerStartSeconds: 0.2,
  backoffInitialSeconds: 10,
  backoffMaxSeconds: 300,
  readinessPollSeconds: 1,
};

type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; reason: string; startedAt?: string; finishedAt: string; containerID?: string; message?: string; signal?: number } };

interface ContainerRun {
  spec: Record<string, any>;
  name: string;
  isInit: boolean;
  state: ContainerState;
  lastState: ContainerState | undefined;
  restartCount: number;
  containerID?: string;
  imageID?: string;
  process?: ContainerProcess;
  exited?: Promise<number>;
  kill?: AbortController;
  /** Readiness from the probe (undefined when the container declares no readiness probe). */
  probeReady?: boolean;
  /** Readiness the process itself reports (polled). */
  selfReady: boolean;
  /** Finished for good: no restart will follow. */
  done: boolean;
  startedAtMs?: number;
  stopProbes: (() => void)[];
}

interface PodRun {
  uid: string;
  key: string;
  namespace: string;
  name: string;
  node: string;
  hostIP: string;
  podIP?: string;
  startTime: string;
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  init: ContainerRun[];
  main: ContainerRun[];
  sandboxReady: boolean;
  initDone: boolean;
  initFailed: boolean;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  terminating: boolean;
  /** Aborted to stop everything the pod runs (kill). */
  abort: AbortController;
  condTimes: Map<string, { status: string; time: string }>;
  killTimer?: ReturnType<Clock['setTimeout']>;
  killNow?: () => void;
  graceSeconds?: number;
  finished: boolean;
}

/** The default program: a long-running service that exits 0 on SIGTERM (or 137 when killed). */
export const runUntilStopped: ContainerProgram = (ctx: ContainerContext): ContainerProcess => {
  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((r) => (resolveExit = r));
  const onKill = () => resolveExit(137);
  if (ctx.signal.aborted) onKill();
  else ctx.signal.addEventListener('abort', onKill, { once: true });
  return {
    exited,
    terminate() {
      ctx.signal.removeEventListener('abort', onKill);
      resolveExit(0);
    },
  };
};

function newContainerId(): string {
  return `containerd://${randomBytes(32).toString('hex')}`;
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Hands out pod IPs from a node's `/24` (or larger) pod CIDR. */
class NodeIpam {
  private readonly base: number;
  private readonly size: number;
  private readonly used = new Set<number>();
  private next = 2;

  constructor(cidr: string) {
    const [ip, bits] = cidr.split('/');
    this.size = 2 ** (32 - Number(bits));
    this.base = ipToInt(ip) & ~(this.size - 1);
  }

  claim(ip: string): void {
    const off = ipToInt(ip) - this.base;
    if (off > 0 && off < this.size) this.used.add(off);
  }

  allocate(): string | undefined {
    for (let i = 0; i < this.size - 3; i++) {
      const off = ((this.next - 2 + i) % (this.size - 3)) + 2;
      if (!this.used.has(off)) {
        this.used.add(off);
        this.next = off + 1;
        return intToIp(this.base + off);
      }
    }
    return undefined;
  }

  release(ip: string): void {
    this.used.delete(ipToInt(ip) - this.base);
  }
}

export interface KubeletOptions {
  store: ObjectStore;
  clock: Clock;
  cache: ClusterCache;
  network: PodNetwork;
  logs: PodLogs;
  programs: ProgramRegistry;
  podType: ResourceType;
  timing?: Partial<KubeletTiming>;
  /** Projected volume files (service account tokens) containers can read. */
  volumeFiles?: VolumeFiles;
}

export class Kubelet {
  private readonly store: ObjectStore;
  private readonly clock: Clock;
  private readonly cache: ClusterCache;
  private readonly network: PodNetwork;
  private readonly logs: PodLogs;
  private readonly programs: ProgramRegistry;
  private readonly podType: ResourceType;
  private readonly volumeFiles?: VolumeFiles;
  readonly timing: KubeletTiming;
  private readonly runs = new Map<string, PodRun>(); // by pod uid
  private readonly ipam = new Map<string, NodeIpam>();
  private readonly images = new Map<string, Set<string>>(); // node -> pulled images
  private readonly selfReadyPolled = new Set<ContainerRun>();
  private readonly runOf = new Map<ContainerRun, PodRun>();
  readonly statusQueue: WorkQueue;
  readonly podQueue: WorkQueue;
  private stopPoll?: () => void;
  private stopped = false;

  constructor(opts: KubeletOptions) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.cache = opts.cache;
    this.volumeFiles = opts.volumeFiles;
    this.network = opts.network;
    this.logs = opts.logs;
    this.programs = opts.programs;
    this.podType = opts.podType;
    this.timing = { ...DEFAULT_KUBELET_TIMING, ...opts.timing };
    this.statusQueue = new WorkQueue('kubelet-status', this.clock, (uid) => this.flushStatus(uid), { batch: 2000 });
    this.podQueue = new WorkQueue('kubelet-pods', this.clock, (key) => this.syncPod(key), { batch: 2000 });
    opts.cache.onEvent((ev) => this.onEvent(ev));
  }

  start(): void {
    for (const [name, node] of this.cache.nodes) this.ipamFor(name, node);
    for (const [key, p] of this.cache.pods) {
      const ip = p.status?.podIP as string | undefined;
      if (ip && p.spec?.nodeName && !p.spec?.hostNetwork) this.ipam.get(p.spec.nodeName)?.claim(ip);
      if (p.spec?.nodeName) this.podQueue.add(key);
    }
    this.stopPoll = this.clock.every(this.timing.readinessPollSeconds * 1000, () => this.pollSelfReadiness());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopPoll?.();
    this.podQueue.stop();
    this.statusQueue.stop();
    for (const run of this.runs.values()) this.killRun(run);
    this.runs.clear();
  }

  /** Pods the kubelet currently runs (for diagnostics and tests). */
  get runningPods(): number {
    let n = 0;
    for (const r of this.runs.values()) if (!r.finished) n++;
    return n;
  }

  /**
   * The node's machine went away (reimage, deallocation): every container on it dies at
   * once, without SIGTERM and without status updates, and its image cache is lost.
   */
  nodeLost(node: string): void {
    for (const run of [...this.runs.values()]) {
      if (run.node !== node) continue;
      this.killRun(run);
      this.runs.delete(run.uid);
    }
    this.images.delete(node);
  }

  private ipamFor(name: string, node: Readonly<KObject> | undefined): NodeIpam | undefined {
    let i = this.ipam.get(name);
    if (!i && node?.spec?.podCIDR) {
      i = new NodeIpam(String(node.spec.podCIDR));
      this.ipam.set(name, i);
    }
    return i;
  }

  private onEvent(ev: CacheEvent): void {
    if (ev.resourceType.group !== '' || this.stopped) return;
    if (ev.resourceType.resource === 'nodes') {
      const name = ev.object.metadata.name!;
      if (ev.type === 'DELETED') {
        this.nodeLost(name);
        this.ipam.delete(name);
        return;
      }
      this.ipamFor(name, ev.object);
      if (isNodeReady(ev.object) && !isNodeReady(ev.old)) {
        for (const k of this.cache.podsByNode.get(name) ?? []) this.podQueue.add(k);
      }
      return;
    }
    if (ev.resourceType.resource !== 'pods') return;
    const pod = ev.object;
    if (ev.type === 'DELETED') {
      const run = this.runs.get(pod.metadata.uid!);
      if (run) {
        this.killRun(run);
        this.runs.delete(run.uid);
      }
      this.logs.forget(pod.metadata.namespace!, pod.metadata.name!);
      return;
    }
    if (!pod.spec?.nodeName) return;
    const run = this.runs.get(pod.metadata.uid!);
    // Status-only changes written by the kubelet itself need no work.
    if (run && !pod.metadata.deletionTimestamp) return;
    if (run?.terminating && pod.metadata.deletionGracePeriodSeconds !== undefined && pod.metadata.deletionGracePeriodSeconds < (run.graceSeconds ?? Infinity)) {
      this.shortenGrace(run, pod.metadata.deletionGracePeriodSeconds);
      return;
    }
    this.podQueue.add(objectKey(pod));
  }

  private syncPod(key: string): void {
    const pod = this.cache.pod(key);
    if (!pod || !pod.spec?.nodeName) return;
    const node = this.cache.nodes.get(pod.spec.nodeName);
    const run = this.runs.get(pod.metadata.uid!);
    if (pod.metadata.deletionTimestamp) {
      if (run && !run.finished) {
        if (!run.terminating) void this.terminatePod(run, pod);
        return;
      }
      // Nothing runs (never started, finished, or the kubelet is back after losing the pod):
      // only a live kubelet confirms the deletion, as on a real node.
      if (isNodeReady(node)) this.finalize(pod);
      return;
    }
    if (run || isTerminal(pod) || !isNodeReady(node)) return;
    this.startPod(pod, node!);
  }

  // ---- pod lifecycle ------------------------------------------------------------------------

  private startPod(pod: Readonly<KObject>, node: Readonly<KObject>): void {
    const nodeIp = (node.status?.addresses as any[] | undefined)?.find((a) => a.type === 'InternalIP')?.address ?? '';
    const prevStatuses = new Map<string, any>();
    for (const s of [...((pod.status?.initContainerStatuses as any[]) ?? []), ...((pod.status?.containerStatuses as any[]) ?? [])]) prevStatuses.set(s.name, s);
    const mk = (spec: any, isInit: boolean): ContainerRun => {
      const prev = prevStatuses.get(spec.name);
      // A pod that ran before on this node (the machine was reimaged) restarts its containers.
      const restarted = prev && (prev.state?.running || prev.state?.terminated || prev.lastState?.terminated);
      return {
        spec,
        name: spec.name,
        isInit,
        state: { waiting: { reason: isInit ? 'PodInitializing' : (pod.spec?.initContainers?.length ? 'PodInitializing' : 'ContainerCreating') } },
        lastState: restarted ? (prev.state?.terminated ? { terminated: prev.state.terminated } : prev.lastState) : undefined,
        restartCount: restarted ? (prev.restartCount ?? 0) + 1 : (prev?.restartCount ?? 0),
        selfReady: true,
        done: false,
        stopProbes: [],
      };
    };
    const run: PodRun = {
      uid: pod.metadata.uid!,
      key: objectKey(pod),
      namespace: pod.metadata.namespace!,
      name: pod.metadata.name!,
      node: pod.spec!.nodeName,
      hostIP: nodeIp,
      startTime: (pod.status?.startTime as string | undefined) ?? isoSeconds(this.clock.now()),
      restartPolicy: pod.spec?.restartPolicy ?? 'Always',
      init: ((pod.spec?.initContainers as any[]) ?? []).map((c) => mk(c, true)),
      main: ((pod.spec?.containers as any[]) ?? []).map((c) => mk(c, false)),
      sandboxReady: false,
      initDone: false,
      initFailed: false,
      phase: 'Pending',
      terminating: false,
      abort: new AbortController(),
      condTimes: new Map(),
      finished: false,
    };
    for (const c of (pod.status?.conditions as any[] | undefined) ?? []) run.condTimes.set(c.type, { status: c.status, time: c.lastTransitionTime });
    this.runs.set(run.uid, run);
    this.markDirty(run);
    void this.runPod(run, pod).catch(() => {
      // A kill while starting ends the run; nothing else to report.
    });
  }

  private async runPod(run: PodRun, pod: Readonly<KObject>): Promise<void> {
    await this.clock.sleep(this.timing.sandboxSeconds * 1000, run.abort.signal);
    if (pod.spec?.hostNetwork) run.podIP = run.hostIP;
    else {
      const ipam = this.ipamFor(run.node, this.cache.nodes.get(run.node));
      run.podIP = ipam?.allocate();
      if (!run.podIP) {
        // No address left: the pod stays in ContainerCreating, as with an exhausted CNI range.
        for (const c of [...run.init, ...run.main]) c.state = { waiting: { reason: 'ContainerCreating', message: 'failed to allocate for range 0: no IP addresses available in range set' } };
        this.markDirty(run);
        return;
      }
    }
    run.sandboxReady = true;
    this.markDirty(run);
    for (const c of run.init) {
      for (;;) {
        const code = await this.runContainerOnce(run, c);
        if (run.abort.signal.aborted || run.terminating) return;
        if (code === 0) {
          c.done = true;
          break;
        }
        if (run.restartPolicy === 'Never') {
          c.done = true;
          run.initFailed = true;
          run.phase = 'Failed';
          for (const m of run.main) m.state = { waiting: { reason: 'PodInitializing' } };
          this.finishRun(run);
          return;
        }
        await this.backoff(run, c);
      }
    }
    run.initDone = true;
    for (const c of run.main) if ('waiting' in c.state && c.state.waiting.reason === 'PodInitializing') c.state = { waiting: { reason: 'ContainerCreating' } };
    this.markDirty(run);
    await Promise.all(run.main.map((c) => this.containerLoop(run, c)));
  }

  private async containerLoop(run: PodRun, c: ContainerRun): Promise<void> {
    for (;;) {
      const code = await this.runContainerOnce(run, c);
      if (run.abort.signal.aborted || run.terminating) return;
      const restart = run.restartPolicy === 'Always' || (run.restartPolicy === 'OnFailure' && code !== 0);
      if (!restart) {
        c.done = true;
        this.updatePhase(run);
        return;
      }
      await this.backoff(run, c);
      if (run.abort.signal.aborted || run.terminating) return;
    }
  }

  /** Waits out the crash-loop back-off; the first restart is immediate, then 10 s, 20 s, ... 300 s. */
  private async backoff(run: PodRun, c: ContainerRun): Promise<void> {
    const ranLong = c.startedAtMs !== undefined && this.clock.now() - c.startedAtMs > 10 * 60_000;
    const n = ranLong ? 0 : c.restartCount;
    const delay = n === 0 ? 0 : Math.min(this.timing.backoffInitialSeconds * 2 ** (n - 1), this.timing.backoffMaxSeconds);
    c.lastState = c.state;
    if (delay > 0) {
      c.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(delay)}s restarting failed container=${c.name} pod=${run.name}_${run.namespace}(${run.uid})` } };
      this.markDirty(run);
      await this.clock.sleep(delay * 1000, run.abort.signal);
    }
    c.restartCount++;
  }

  private imageDelay(run: PodRun, c: ContainerRun): number {
    const image = String(c.spec.image ?? '');
    let pulled = this.images.get(run.node);
    if (!pulled) this.images.set(run.node, (pulled = new Set()));
    const always = c.spec.imagePullPolicy === 'Always' || (!c.spec.imagePullPolicy && /:latest$|^[^:]*$/.test(image));
    let s = this.timing.containerStartSeconds;
    if (!pulled.has(image) || always) {
      const t = this.timing;
      s += t.imagePullMinSeconds + (t.imagePullMaxSeconds - t.imagePullMinSeconds) * unitHash(`${run.uid}/${c.name}`);
      pulled.add(image);
    }
    return s;
  }

  /** Creates, starts and waits for one container instance; returns its exit code. */
  private async runContainerOnce(run: PodRun, c: ContainerRun): Promise<number> {
    await this.clock.sleep(this.imageDelay(run, c) * 1000, run.abort.signal);
    const pod = this.cache.pod(run.key);
    if (!pod || pod.metadata.uid !== run.uid) throw new Error('pod gone');
    const view: KObject = {
      ...(pod as KObject),
      status: { ...(pod.status ?? {}), hostIP: run.hostIP, podIP: run.podIP, hostIPs: [{ ip: run.hostIP }], podIPs: run.podIP ? [{ ip: run.podIP }] : [] },
    };
    let env: Record<string, string>;
    let argv: string[];
    try {
      env = resolveEnv(view, c.spec, this.store);
      argv = resolveArgv(c.spec, env);
    } catch (e) {
      if (!(e instanceof ContainerConfigError)) throw e;
      c.state = { waiting: { reason: 'CreateContainerConfigError', message: e.message } };
      this.markDirty(run);
      await this.clock.sleep(10_000, run.abort.signal);
      return this.runContainerOnce(run, c);
    }
    const program = this.programs.resolve(c.spec)?.program ?? (matchesEmulatedContainer(String(c.spec.image ?? ''), c.spec) ? commandEmulator : runUntilStopped);
    const kill = new AbortController();
    const onPodAbort = () => kill.abort(run.abort.signal.reason);
    run.abort.signal.addEventListener('abort', onPodAbort, { once: true });
    const startedAt = isoSeconds(this.clock.now());
    c.containerID = newContainerId();
    c.imageID = `${String(c.spec.image ?? '').split(':')[0]}@sha256:${randomBytes(32).toString('hex')}`;
    c.kill = kill;
    c.startedAtMs = this.clock.now();
    c.probeReady = c.spec.readinessProbe && !c.isInit ? false : undefined;
    c.selfReady = true;
    const ctx: ContainerContext = {
      pod: view,
      container: c.spec,
      nodeName: run.node,
      nodeIp: run.hostIP,
      podIp: run.podIP ?? '',
      env,
      argv,
      clock: this.clock,
      network: this.network,
      log: (line: string) => this.logs.append(run.namespace, run.name, c.name, line),
      signal: kill.signal,
      readFile: this.volumeFiles ? (path: string) => this.volumeFiles!.read(this.cache.pod(run.key) ?? view, c.spec, path) : undefined,
    };
    let proc: ContainerProcess;
    try {
      proc = program(ctx);
    } catch (e) {
      run.abort.signal.removeEventListener('abort', onPodAbort);
      c.state = { terminated: { exitCode: 128, reason: 'StartError', message: (e as Error).message, finishedAt: startedAt, containerID: c.containerID } };
      this.markDirty(run);
      return 128;
    }
    c.process = proc;
    c.exited = proc.exited.catch(() => 137);
    c.state = { running: { startedAt } };
    if (proc.isReady) {
      c.selfReady = proc.isReady();
      this.selfReadyPolled.add(c);
      this.runOf.set(c, run);
    }
    if (!c.isInit) this.startProbes(run, c, env);
    this.updatePhase(run);
    this.markDirty(run);
    const code = await c.exited;
    run.abort.signal.removeEventListener('abort', onPodAbort);
    for (const s of c.stopProbes) s();
    c.stopProbes = [];
    this.selfReadyPolled.delete(c);
    this.runOf.delete(c);
    c.process = undefined;
    c.state = {
      terminated: {
        exitCode: code,
        reason: code === 0 ? 'Completed' : 'Error',
        startedAt,
        finishedAt: isoSeconds(this.clock.now()),
        containerID: c.containerID,
        ...(code > 128 && kill.signal.aborted ? { signal: code - 128 } : {}),
      },
    };
    this.markDirty(run);
    return code;
  }

  private updatePhase(run: PodRun): void {
    if (run.finished) return;
    if (run.main.length && run.main.every((c) => c.done)) {
      const ok = run.main.every((c) => 'terminated' in c.state && c.state.terminated.exitCode === 0);
      run.phase = ok ? 'Succeeded' : 'Failed';
      this.finishRun(run);
      return;
    }
    if (run.initDone && run.main.some((c) => c.containerID)) run.phase = 'Running';
    this.markDirty(run);
  }

  private finishRun(run: PodRun): void {
    run.finished = true;
    if (run.podIP && run.podIP !== run.hostIP) this.ipam.get(run.node)?.release(run.podIP);
    this.markDirty(run);
  }

  // ---- probes ------------------------------------------------------------------------------

  private startProbes(run: PodRun, c: ContainerRun, env: Record<string, string>): void {
    const setup = (probe: Record<string, any> | undefined, onResult: (ok: boolean, state: { ok: number; fail: number }) => void) => {
      if (!probe) return;
      const period = (probe.periodSeconds ?? 10) * 1000;
      const state = { ok: 0, fail: 0 };
      let inFlight = false;
      let stopEvery: (() => void) | undefined;
      const tick = () => {
        if (inFlight || !c.process) return;
        inFlight = true;
        void this.runProbe(run, c, probe, env)
          .then((ok) => {
            inFlight = false;
            if (!c.process) return;
            if (ok) {
              state.ok++;
              state.fail = 0;
            } else {
              state.fail++;
              state.ok = 0;
            }
            onResult(ok, state);
          })
          .catch(() => (inFlight = false));
      };
      const first = this.clock.setTimeout(() => {
        tick();
        stopEvery = this.clock.every(period, tick);
      }, (probe.initialDelaySeconds ?? 0) * 1000);
      c.stopProbes.push(() => {
        this.clock.clearTimeout(first);
        stopEvery?.();
      });
    };
    setup(c.spec.readinessProbe, (_ok, s) => {
      const before = c.probeReady;
      if (s.ok >= (c.spec.readinessProbe.successThreshold ?? 1)) c.probeReady = true;
      if (s.fail >= (c.spec.readinessProbe.failureThreshold ?? 3)) c.probeReady = false;
      if (before !== c.probeReady) this.markDirty(run);
    });
    setup(c.spec.livenessProbe, (_ok, s) => {
      if (s.fail < (c.spec.livenessProbe.failureThreshold ?? 3) || !c.process) return;
      // Liveness failure: the kubelet kills the container and the restart policy decides what follows.
      const proc = c.process;
      const kill = c.kill;
      proc.terminate();
      const grace = (c.spec.livenessProbe.terminationGracePeriodSeconds ?? this.cache.pod(run.key)?.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
      const t = this.clock.setTimeout(() => kill?.abort(new Error('liveness probe failed')), grace);
      void c.exited?.then(() => this.clock.clearTimeout(t));
      s.fail = 0;
    });
  }

  private async runProbe(run: PodRun, c: ContainerRun, probe: Record<string, any>, env: Record<string, string>): Promise<boolean> {
    const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
    const ctl = new AbortController();
    const timer = this.clock.setTimeout(() => ctl.abort(new Error('probe timeout')), timeoutMs);
    const onKill = () => ctl.abort(new Error('container stopped'));
    c.kill?.signal.addEventListener('abort', onKill, { once: true });
    const source: SimSource = { ip: run.podIP ?? '', nodeName: run.node, pod: { namespace: run.namespace, name: run.name } };
    try {
      if (probe.exec) {
        const code = await runCommand(((probe.exec.command as string[]) ?? []).map(String), {
          clock: this.clock,
          network: this.network,
          source,
          env,
          image: String(c.spec.image ?? ''),
          signal: ctl.signal,
          out: () => {},
          err: () => {},
          readMounted: (path) => {
            const pod = this.cache.pod(run.key);
            return pod && this.volumeFiles ? this.volumeFiles.read(pod, c.spec, path) : undefined;
          },
        });
        return code === 0 && !ctl.signal.aborted;
      }
      const port = this.resolvePort(c, probe.httpGet?.port ?? probe.tcpSocket?.port);
      if (probe.httpGet) {
        const host = probe.httpGet.host ?? run.podIP;
        const scheme = String(probe.httpGet.scheme ?? 'HTTP').toLowerCase();
        const headers: Record<string, string> = { 'User-Agent': 'kube-probe/1.32', Accept: '*/*' };
        for (const h of probe.httpGet.httpHeaders ?? []) headers[h.name] = h.value;
        const res = await Promise.race([
          this.network.request({ method: 'GET', url: new URL(`${scheme}://${host}:${port}${probe.httpGet.path ?? '/'}`), headers, source: { ip: run.hostIP, nodeName: run.node }, signal: ctl.signal }),
          new Promise<never>((_r, rej) => ctl.signal.addEventListener('abort', () => rej(ctl.signal.reason), { once: true })),
        ]);
        return res.status >= 200 && res.status < 400;
      }
      if (probe.tcpSocket) return this.network.isListening(probe.tcpSocket.host ?? run.podIP ?? '', Number(port));
      return false;
    } catch {
      return false;
    } finally {
      this.clock.clearTimeout(timer);
      c.kill?.signal.removeEventListener('abort', onKill);
    }
  }

  private resolvePort(c: ContainerRun, port: number | string | undefined): number {
    if (typeof port === 'number') return port;
    const named = (c.spec.ports as any[] | undefined)?.find((p) => p.name === port);
    return Number(named?.containerPort ?? port);
  }

  private pollSelfReadiness(): void {
    for (const c of this.selfReadyPolled) {
      const v = c.process?.isReady?.() ?? true;
      if (v !== c.selfReady) {
        c.selfReady = v;
        const run = this.runOf.get(c);
        if (run) this.markDirty(run);
      }
    }
  }

  // ---- termination -------------------------------------------------------------------------

  private async terminatePod(run: PodRun, pod: Readonly<KObject>): Promise<void> {
    run.terminating = true;
    run.graceSeconds = pod.metadata.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    const live = [...run.init, ...run.main].filter((c) => c.process);
    for (const c of live) {
      for (const s of c.stopProbes) s();
      c.stopProbes = [];
    }
    this.markDirty(run);
    for (const c of live) c.process!.terminate();
    const allExited = Promise.all(live.map((c) => c.exited));
    const graceOver = new Promise<void>((resolve) => {
      run.killNow = resolve;
      run.killTimer = this.clock.setTimeout(resolve, run.graceSeconds! * 1000);
    });
    await Promise.race([allExited, graceOver]);
    this.clock.clearTimeout(run.killTimer);
    // SIGKILL whatever is still running, then wait for the runtime to report it gone.
    run.abort.abort(new Error('grace period over'));
    await Promise.race([allExited, this.clock.sleep(2000).catch(() => {})]);
    if (!run.finished) this.finishRun(run);
    const cur = this.cache.pod(run.key);
    if (cur && cur.metadata.uid === run.uid) {
      this.flushStatus(run.uid);
      this.finalize(cur);
    }
  }

  private shortenGrace(run: PodRun, seconds: number): void {
    run.graceSeconds = seconds;
    this.clock.clearTimeout(run.killTimer);
    if (run.killNow) run.killTimer = this.clock.setTimeout(run.killNow, seconds * 1000);
  }

  private finalize(pod: Readonly<KObject>): void {
    try {
      this.store.finalizeGraceful(this.podType, pod.metadata.namespace, pod.metadata.name!);
    } catch {
      // Already gone.
    }
  }

  private killRun(run: PodRun): void {
    run.abort.abort(new Error('killed'));
    this.clock.clearTimeout(run.killTimer);
    for (const c of [...run.init, ...run.main]) {
      for (const s of c.stopProbes) s();
      c.stopProbes = [];
      this.selfReadyPolled.delete(c);
      this.runOf.delete(c);
    }
    if (run.podIP && run.podIP !== run.hostIP) this.ipam.get(run.node)?.release(run.podIP);
    run.finished = true;
  }

  // ---- status ------------------------------------------------------------------------------

  private markDirty(run: PodRun): void {
    this.statusQueue.add(run.uid);
  }

  private cond(run: PodRun, type: string, status: boolean, reason?: string, message?: string): Record<string, any> {
    const s = status ? 'True' : 'False';
    const prev = run.condTimes.get(type);
    let time = prev?.time;
    if (!prev || prev.status !== s) {
      time = isoSeconds(this.clock.now());
      run.condTimes.set(type, { status: s, time });
    }
    const c: Record<string, any> = { type, status: s, lastProbeTime: null, lastTransitionTime: time };
    if (reason) c.reason = reason;
    if (message) c.message = message;
    return c;
  }

  private containerStatus(c: ContainerRun, ready: boolean): Record<string, any> {
    const s: Record<string, any> = {
      name: c.name,
      state: c.state,
      lastState: c.lastState && !('waiting' in c.lastState) ? c.lastState : {},
      ready,
      restartCount: c.restartCount,
      image: c.spec.image,
      imageID: c.imageID ?? '',
      started: 'running' in c.state,
    };
    if (c.containerID) s.containerID = c.containerID;
    return s;
  }

  private buildStatus(run: PodRun, pod: Readonly<KObject>): Record<string, any> {
    const nodeReady = isNodeReady(this.cache.nodes.get(run.node));
    const containerReady = (c: ContainerRun) => 'running' in c.state && !run.terminating && (c.probeReady ?? true) && c.selfReady;
    const unready = run.main.filter((c) => !containerReady(c)).map((c) => c.name);
    const allReady = unready.length === 0 && run.initDone && !run.finished;
    const finished = run.phase === 'Succeeded' || run.phase === 'Failed';
    const incompleteInit = run.init.filter((c) => !c.done || ('terminated' in c.state && c.state.terminated.exitCode !== 0)).map((c) => c.name);
    const conditions = [
      this.cond(run, 'PodReadyToStartContainers', run.sandboxReady && !run.finished),
      run.initDone || !run.init.length ? this.cond(run, 'Initialized', true) : this.cond(run, 'Initialized', false, 'ContainersNotInitialized', `containers with incomplete status: [${incompleteInit.join(' ')}]`),
      finished
        ? this.cond(run, 'Ready', false, 'PodCompleted')
        : allReady && nodeReady
          ? this.cond(run, 'Ready', true)
          : this.cond(run, 'Ready', false, 'ContainersNotReady', `containers with unready status: [${(unready.length ? unready : run.main.map((c) => c.name)).join(' ')}]`),
      finished
        ? this.cond(run, 'ContainersReady', false, 'PodCompleted')
        : allReady
          ? this.cond(run, 'ContainersReady', true)
          : this.cond(run, 'ContainersReady', false, 'ContainersNotReady', `containers with unready status: [${(unready.length ? unready : run.main.map((c) => c.name)).join(' ')}]`),
    ];
    const scheduled = (pod.status?.conditions as any[] | undefined)?.find((c) => c.type === 'PodScheduled') ?? { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: run.startTime };
    conditions.push(scheduled);
    const status: Record<string, any> = {
      phase: run.phase,
      conditions,
      hostIP: run.hostIP,
      hostIPs: [{ ip: run.hostIP }],
      startTime: run.startTime,
      qosClass: this.qosClass(pod),
    };
    if (run.podIP) {
      status.podIP = run.podIP;
      status.podIPs = [{ ip: run.podIP }];
    }
    if (run.init.length) status.initContainerStatuses = run.init.map((c) => this.containerStatus(c, 'terminated' in c.state && c.state.terminated.exitCode === 0));
    status.containerStatuses = run.main.map((c) => this.containerStatus(c, containerReady(c) && !finished));
    return status;
  }

  private qosClass(pod: Readonly<KObject>): string {
    const cs = [...((pod.spec?.containers as any[]) ?? []), ...((pod.spec?.initContainers as any[]) ?? [])];
    const any = cs.some((c) => c.resources?.requests || c.resources?.limits);
    if (!any) return 'BestEffort';
    const guaranteed = cs.every((c) => {
      const l = c.resources?.limits ?? {};
      const r = c.resources?.requests ?? l;
      return l.cpu && l.memory && r.cpu === l.cpu && r.memory === l.memory;
    });
    return guaranteed ? 'Guaranteed' : 'Burstable';
  }

  private flushStatus(uid: string): void {
    const run = this.runs.get(uid);
    if (!run) return;
    const cur = this.store.peek(this.podType, run.namespace, run.name);
    if (!cur || cur.metadata.uid !== uid) return;
    const status = this.buildStatus(run, cur);
    if (JSON.stringify(cur.status ?? {}) === JSON.stringify(status)) return;
    try {
      this.store.update(this.podType, { ...(cur as KObject), metadata: { ...cur.metadata, resourceVersion: undefined }, status }, { subresource: 'status' });
    } catch {
      // The pod went away between peek and write.
    }
  }
}
