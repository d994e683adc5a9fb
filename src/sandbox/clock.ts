/**
 * Simulated time for the sandbox.
 *
 * Every controller in the sandbox schedules work through a {@link Clock}, never through the
 * global timers, so that the same code runs at real speed, at a time scale (the default
 * scenario runs at 10x so a whole migration finishes in well under two minutes), or under a
 * {@link ManualClock} that unit tests advance by hand and deterministically.
 */

/** Handle returned by {@link Clock.setTimeout}; pass it to {@link Clock.clearTimeout}. */
export interface TimerHandle {
  readonly id: number;
}

/** The clock contract shared by every sandbox component. All durations are simulated ms. */
export interface Clock {
  /** Simulated epoch milliseconds. */
  now(): number;
  /** Runs `fn` once after `simMs` simulated milliseconds. */
  setTimeout(fn: () => void, simMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
  /** Runs `fn` every `simMs` simulated milliseconds until the returned function is called. */
  every(simMs: number, fn: () => void): () => void;
  /** Resolves after `simMs` simulated milliseconds; rejects with the signal's reason on abort. */
  sleep(simMs: number, signal?: AbortSignal): Promise<void>;
  /** How many simulated milliseconds pass per real millisecond. */
  readonly timeScale: number;
  /**
   * The wall-clock instant a simulated instant is shown to clients as (API timestamps), so
   * that ages computed by clients against their own clock are never negative. Absent: the
   * same instant.
   */
  toWall?(simMs: number): number;
  /** The inverse of {@link Clock.toWall}, for timestamps clients send. */
  fromWall?(wallMs: number): number;
}

/** RFC 3339 timestamp with second precision, as the Kubernetes API server writes them. */
export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** A clock that follows real time, multiplied by `timeScale`. */
export class ScaledClock implements Clock {
  readonly timeScale: number;
  private readonly realStart = performance.now();
  private readonly simStart: number;
  private nextId = 1;
  private readonly timers = new Map<number, NodeJS.Timeout>();

  /** Wall-clock epoch ms when the clock started: simulated time is anchored there. */
  readonly wallStart = Date.now();

  constructor(opts: { timeScale?: number; start?: number } = {}) {
    this.timeScale = opts.timeScale ?? 1;
    if (!(this.timeScale > 0)) throw new RangeError(`timeScale must be > 0, got ${this.timeScale}`);
    this.simStart = opts.start ?? this.wallStart;
  }

  /** Simulated time runs `timeScale` times faster from the anchor; clients see it compressed back onto the wall clock. */
  toWall(simMs: number): number {
    return this.wallStart + (simMs - this.simStart) / this.timeScale;
  }

  fromWall(wallMs: number): number {
    return this.simStart + (wallMs - this.wallStart) * this.timeScale;
  }

  now(): number {
    return Math.floor(this.simStart + (performance.now() - this.realStart) * this.timeScale);
  }

  setTimeout(fn: () => void, simMs: number): TimerHandle {
    const id = this.nextId++;
    const t = setTimeout(() => {
      this.timers.delete(id);
      fn();
    }, Math.max(0, simMs / this.timeScale));
    // Sandbox timers must never keep a CLI process alive on their own.
    t.unref();
    this.timers.set(id, t);
    return { id };
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (!handle) return;
    const t = this.timers.get(handle.id);
    if (t) clearTimeout(t);
    this.timers.delete(handle.id);
  }

  every(simMs: number, fn: () => void): () => void {
    const t = setInterval(fn, Math.max(1, simMs / this.timeScale));
    t.unref();
    return () => clearInterval(t);
  }

  sleep(simMs: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, simMs, signal);
  }

  /** Cancels every pending timer (used when the sandbox stops). */
  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

interface ManualTimer {
  id: number;
  at: number;
  seq: number;
  fn: () => void;
  interval?: number;
}

/**
 * A clock that only moves when {@link ManualClock.advance} is called. Timers fire in time
 * order, and pending promise jobs run between them, so controller logic that awaits
 * store calls behaves as it would under real time.
 */
export class ManualClock implements Clock {
  readonly timeScale = 1;
  private current: number;
  private nextId = 1;
  private seq = 0;
  private readonly timers = new Map<number, ManualTimer>();

  constructor(start = Date.UTC(2026, 10, 23, 10, 0, 0)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, simMs: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.current + Math.max(0, simMs), seq: this.seq++, fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle) this.timers.delete(handle.id);
  }

  every(simMs: number, fn: () => void): () => void {
    const id = this.nextId++;
    const interval = Math.max(1, simMs);
    this.timers.set(id, { id, at: this.current + interval, seq: this.seq++, fn, interval });
    return () => this.timers.delete(id);
  }

  sleep(simMs: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, simMs, signal);
  }

  /** Moves time forward by `ms`, firing due timers in order and settling promises between them. */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      await flushMicrotasks();
      let next: ManualTimer | undefined;
      for (const t of this.timers.values()) {
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      }
      if (!next) break;
      this.current = Math.max(this.current, next.at);
      if (next.interval) {
        next.at += next.interval;
        next.seq = this.seq++;
      } else {
        this.timers.delete(next.id);
      }
      next.fn();
    }
    this.current = target;
    await flushMicrotasks();
  }

  /** Number of timers still pending (for tests that assert a controller cleaned up). */
  pendingTimers(): number {
    return this.timers.size;
  }
}

async function flushMicrotasks(): Promise<void> {
  // setImmediate lets already-resolved promise chains (several hops deep) run to completion.
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
}

function sleepWith(clock: Clock, simMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clock.clearTimeout(h);
      reject(signal?.reason);
    };
    const h = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, simMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
