/**
 * Client-side token bucket, the same model as client-go's `flowcontrol.NewTokenBucketRateLimiter`:
 * `qps` tokens per second refill a bucket of `burst` tokens, every request takes one. The first
 * seed's cluster was throttled into timeouts by a tool that listed without a limit; this keeps
 * the tool polite even when steps poll in parallel.
 */
import { abortReason } from './retry.ts';

/** Rate limit settings; client-go defaults are 5 QPS / burst 10, scaled up here for list-heavy steps. */
export interface RateLimit {
  /** Sustained requests per second. */
  qps: number;
  /** Requests allowed at once from a full bucket. */
  burst: number;
}

/** Default rate limit of the Kubernetes gateway: 20 QPS, burst 40. */
export const DEFAULT_KUBE_RATE_LIMIT: RateLimit = { qps: 20, burst: 40 };

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * A FIFO token bucket. `acquire` resolves when the caller may send its request; waiters are
 * served in arrival order so a long poll loop cannot starve a step's writes.
 */
export class TokenBucket {
  readonly qps: number;
  readonly burst: number;
  private tokens: number;
  private last: number;
  private readonly queue: Waiter[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly now: () => number;

  /** @param now injectable monotonic clock in ms (defaults to `performance.now`). */
  constructor(limit: RateLimit, now: () => number = () => performance.now()) {
    if (!(limit.qps > 0) || !(limit.burst >= 1)) throw new Error(`invalid rate limit: qps ${limit.qps}, burst ${limit.burst} (need qps > 0, burst >= 1)`);
    this.qps = limit.qps;
    this.burst = Math.floor(limit.burst);
    this.tokens = this.burst;
    this.now = now;
    this.last = now();
  }

  /** Takes one token, waiting for it if needed. Rejects with the signal's reason on abort. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    this.refill();
    if (this.queue.length === 0 && this.tokens >= 1) {
      this.tokens -= 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.queue.indexOf(w);
          if (i >= 0) this.queue.splice(i, 1);
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.queue.push(w);
      this.schedule();
    });
  }

  /** Tokens available right now (fractional), for diagnostics. */
  available(): number {
    this.refill();
    return this.tokens;
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.qps);
    this.last = t;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.queue.length === 0) return;
    const waitMs = Math.max(0, ((1 - this.tokens) / this.qps) * 1000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refill();
      while (this.queue.length > 0 && this.tokens >= 1) {
        this.tokens -= 1;
        const w = this.queue.shift()!;
        if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
        w.resolve();
      }
      this.schedule();
    }, Math.ceil(waitMs));
    // Deliberately not unref'd: the timer exists only while a request waits for a slot, and
    // that request is what the process is waiting for (an unref'd timer let the CLI exit).
  }
}
