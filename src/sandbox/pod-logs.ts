/** Container logs kept by the simulated kubelet and served by the `pods/log` subresource. */

/** A new log line of one container. */
export type LogListener = (namespace: string, pod: string, container: string, line: string) => void;

export class PodLogs {
  private readonly logs = new Map<string, string[]>();
  private readonly listeners = new Set<LogListener>();
  private readonly maxLines: number;

  constructor(maxLines = 2000) {
    this.maxLines = maxLines;
  }

  private key(namespace: string, pod: string, container: string): string {
    return `${namespace}/${pod}/${container}`;
  }

  append(namespace: string, pod: string, container: string, line: string): void {
    const k = this.key(namespace, pod, container);
    let arr = this.logs.get(k);
    if (!arr) this.logs.set(k, (arr = []));
    arr.push(line);
    if (arr.length > this.maxLines) arr.splice(0, arr.length - this.maxLines);
    for (const l of this.listeners) l(namespace, pod, container, line);
  }

  /** Calls `listener` for every line appended from now on (`logs -f`). Returns the unsubscribe function. */
  subscribe(listener: LogListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The log text (lines joined with '\n', trailing newline), or undefined when the container never logged. */
  read(namespace: string, pod: string, container: string, opts: { tailLines?: number } = {}): string | undefined {
    const arr = this.logs.get(this.key(namespace, pod, container));
    if (!arr) return undefined;
    const lines = opts.tailLines !== undefined ? arr.slice(-opts.tailLines) : arr;
    return lines.length ? lines.join('\n') + '\n' : '';
  }

  /** Drops every log of a pod (when the pod object is removed). */
  forget(namespace: string, pod: string): void {
    const prefix = `${namespace}/${pod}/`;
    for (const k of [...this.logs.keys()]) if (k.startsWith(prefix)) this.logs.delete(k);
  }
}
