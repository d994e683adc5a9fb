/**
 * A de-duplicating work queue, the sandbox's equivalent of client-go's workqueue: a key
 * added several times before it is processed is processed once, keys are handled in
 * batches off the current call stack (never inside the store write that triggered them),
 * and delayed re-queues go through the simulated clock.
 */
import type { Clock, TimerHandle } from '../clock.ts';

export type WorkHandler = (key: string) => void | Promise<void>;

export class WorkQueue {
  readonly name: string;
  private readonly handler: WorkHandler;
  private readonly clock: Clock;
  private readonly batch: number;
  private readonly keys = new Set<string>();
  private readonly delayed = new Map<string, { at: number; handle: TimerHandle }>();
  private scheduled = false;
  private running = false;
  private stopped = false;
  private waiters: (() => void)[] = [];
  /** The last error a handler threw (kept for diagnostics; the key is retried later). */
  lastError: unknown;

  constructor(name: string, clock: Clock, handler: WorkHandler, opts: { batch?: number } = {}) {
    this.name = name;
    this.clock = clock;
    this.handler = handler;
    this.batch = opts.batch ?? 1000;
  }

  add(key: string): void {
    if (this.stopped) return;
    this.keys.add(key);
    this.schedule();
  }

  /** Processes `key` after `ms` simulated milliseconds; an earlier pending re-queue wins. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) return this.add(key);
    const at = this.clock.now() + ms;
    const cur = this.delayed.get(key);
    if (cur && cur.at <= at) return;
    if (cur) this.clock.clearTimeout(cur.handle);
    const handle = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, handle });
  }

  get length(): number {
    return this.keys.size;
  }

  /** True while keys wait or a batch runs (delayed re-queues do not count: they wait on the clock). */
  get busy(): boolean {
    return this.keys.size > 0 || this.running || this.scheduled;
  }

  /** Resolves once the queue is empty and no batch is running. */
  drained(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  stop(): void {
    this.stopped = true;
    this.keys.clear();
    for (const d of this.delayed.values()) this.clock.clearTimeout(d.handle);
    this.delayed.clear();
    this.wake();
  }

  private schedule(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    // setImmediate defers without measuring time: the work itself is instantaneous in
    // simulated time, it only must not run inside the store write that announced it.
    setImmediate(() => void this.run());
  }

  private async run(): Promise<void> {
    this.scheduled = false;
    if (this.stopped) return this.wake();
    this.running = true;
    try {
      let n = 0;
      for (const key of this.keys) {
        this.keys.delete(key);
        try {
          const r = this.handler(key);
          if (r) await r;
        } catch (e) {
          this.lastError = e;
          // Like a rate-limited requeue: try the key again a little later.
          this.addAfter(key, 1000);
        }
        if (++n >= this.batch) break;
      }
    } finally {
      this.running = false;
    }
    if (this.keys.size && !this.stopped) this.schedule();
    else this.wake();
  }

  private wake(): void {
    if (this.busy && !this.stopped) return;
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}
