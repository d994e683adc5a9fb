/**
 * The contract between the simulated kubelet and the "programs" that stand in for container
 * images. The sandbox cannot run containers; instead the kubelet looks up a program for
 * each container (NMI, MIC, the curl/wget command emulator, or a default that just runs)
 * and drives it through start, readiness, SIGTERM and SIGKILL like a container runtime.
 */
import type { Clock } from './clock.ts';
import type { PodNetwork } from './netsim.ts';
import type { KObject } from './store.ts';

export interface ContainerContext {
  /** The pod as it was when the container started (read-only). */
  pod: Readonly<KObject>;
  /** The container spec (`spec.containers[i]` or `spec.initContainers[i]`). */
  container: Readonly<Record<string, any>>;
  nodeName: string;
  nodeIp: string;
  podIp: string;
  /** The container's environment with `value` and `valueFrom.fieldRef` resolved. */
  env: Record<string, string>;
  /** `command` + `args` with `$(VAR)` references expanded, as the kubelet passes them. */
  argv: string[];
  clock: Clock;
  network: PodNetwork;
  /** Appends one line to the container's log (what `kubectl logs` shows). */
  log(line: string): void;
  /** Aborted when the kubelet kills the container (grace period over, or node gone). */
  signal: AbortSignal;
  /** Reads a file of the container's volumes (projected service account tokens); undefined when absent. */
  readFile?(path: string): string | undefined;
}

/** Files the kubelet projects into containers (the service account token projection). */
export interface VolumeFiles {
  /** Content of `path` as `container` of `pod` sees it now, or undefined. */
  read(pod: Readonly<KObject>, container: Readonly<Record<string, any>>, path: string): string | undefined;
}

export interface ContainerProcess {
  /** Resolves with the exit code when the process ends, on its own or after terminate/kill. */
  exited: Promise<number>;
  /** Readiness as the container itself would report it; the kubelet treats absent as ready. */
  isReady?(): boolean;
  /** SIGTERM. The kubelet then waits up to the pod's grace period for `exited` before aborting `signal`. */
  terminate(): void;
}

export type ContainerProgram = (ctx: ContainerContext) => ContainerProcess;

/** Picks a program for a container; the first registered match wins. */
export class ProgramRegistry {
  private readonly entries: { name: string; match: (image: string, container: Readonly<Record<string, any>>) => boolean; program: ContainerProgram }[] = [];

  register(name: string, match: (image: string, container: Readonly<Record<string, any>>) => boolean, program: ContainerProgram): void {
    this.entries.push({ name, match, program });
  }

  resolve(container: Readonly<Record<string, any>>): { name: string; program: ContainerProgram } | undefined {
    const image = String(container.image ?? '');
    for (const e of this.entries) if (e.match(image, container)) return { name: e.name, program: e.program };
    return undefined;
  }
}
