/**
 * Retry timing shared by the Kubernetes and Azure gateways: capped exponential backoff with
 * jitter, a capped `Retry-After`, a caller deadline, and sleeps that honour an AbortSignal.
 *
 * Neither SDK is imported here; both gateways classify their own responses and use these
 * helpers to decide how long to wait and whether the deadline still allows it.
 */
import { RetryableError } from '../engine/errors.ts';

/** How a gateway retries a retryable response. */
export interface RetryOptions {
  /** Attempts in total, the first one included (default 8). */
  maxAttempts: number;
  /** First backoff step in ms when the server gives no `Retry-After` (default 500). */
  baseDelayMs: number;
  /** Upper bound of one backoff step without `Retry-After` (default 30 s). */
  maxDelayMs: number;
  /**
   * Upper bound of one wait that the server asked for with `Retry-After` (default 60 s).
   * Azure compute may answer `Retry-After: 1200`; waiting that long blindly would stall a step.
   */
  maxRetryAfterMs: number;
}

/** The defaults documented on {@link RetryOptions}. */
export const DEFAULT_RETRY: RetryOptions = {
  maxAttempts: 8,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  maxRetryAfterMs: 60_000,
};

/** Fills unset fields of a partial {@link RetryOptions} with the defaults. */
export function retryOptions(partial: Partial<RetryOptions> = {}): RetryOptions {
  return { ...DEFAULT_RETRY, ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) };
}

/** Where a call must stop: the caller's AbortSignal and its deadline (epoch ms). */
export interface CallScope {
  signal?: AbortSignal;
  /** Epoch ms; no retry wait may end after it. */
  deadline?: number;
  /** Receives a line when a wait is long enough to be noticed, then a countdown (see {@link LONG_WAIT_MS}). */
  progress?: ProgressSink;
}

/** Where the gateways report long waits: one human line per call, e.g. `GET pods: HTTP 429; retrying in 30 s (server asked for Retry-After 3600 s, capped)`. */
export type ProgressSink = (line: string) => void;

/** Waits at least this long are announced on the progress sink, with a countdown every {@link COUNTDOWN_EVERY_MS}. */
export const LONG_WAIT_MS = 3000;
export const COUNTDOWN_EVERY_MS = 10_000;

/**
 * Thrown when the next retry wait would end after the caller's deadline. It names what was
 * being retried and the last failure, so the operator sees why the step ran out of time.
 */
export class DeadlineExceededError extends RetryableError {
  readonly retryable = true;
  readonly waitMs: number;
  readonly remainingMs: number;
  constructor(what: string, waitMs: number, remainingMs: number, lastFailure: string) {
    super(
      `${what}: giving up, the next retry would wait ${formatMs(waitMs)} but the deadline is ` +
        `${remainingMs <= 0 ? 'already past' : `in ${formatMs(remainingMs)}`} (last failure: ${lastFailure}).`,
      /\b(429|TooManyRequests)\b/.test(lastFailure)
        ? 'The server is throttling: run the same command again later (or with a longer --step-timeout); the journal resumes where it stopped.'
        : 'The server kept failing: check its health (AKS: `az aks show`, the Azure status page), then run the same command again (a longer --step-timeout gives the retries more time); the journal resumes where it stopped.',
    );
    this.waitMs = waitMs;
    this.remainingMs = remainingMs;
  }
}

/**
 * Parses a `Retry-After` header (delta seconds or an HTTP date) into ms, or undefined when
 * absent or unreadable. `now` is injectable for tests.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value === null || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * How long to wait before retry number `retry` (1 = first retry). A server-given
 * `Retry-After` wins but is capped at `maxRetryAfterMs`; otherwise exponential backoff with
 * "equal jitter" (half fixed, half random) so concurrent callers spread out, capped at
 * `maxDelayMs`. `random` is injectable for deterministic tests.
 */
export function retryDelayMs(retry: number, opts: RetryOptions, retryAfterMs?: number, random = Math.random): number {
  if (retryAfterMs !== undefined) return Math.min(Math.max(0, retryAfterMs), opts.maxRetryAfterMs);
  const exp = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

/**
 * Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. Uses real
 * timers: the gateways talk to real endpoints, whose clocks are real.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The error an aborted signal stands for (its reason, or a generic AbortError). */
export function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  const e = new Error(typeof r === 'string' ? r : 'The operation was aborted');
  e.name = 'AbortError';
  return e;
}

/**
 * Waits `waitMs` before a retry unless the deadline forbids it: throws
 * {@link DeadlineExceededError} right away when the wait would end after `scope.deadline`
 * (no point sleeping into a certain timeout), and rejects early if `scope.signal` aborts.
 */
export async function waitBeforeRetry(what: string, waitMs: number, scope: CallScope, lastFailure: string, why?: string): Promise<void> {
  if (scope.signal?.aborted) throw abortReason(scope.signal);
  if (scope.deadline !== undefined) {
    const remaining = scope.deadline - Date.now();
    if (waitMs > remaining) throw new DeadlineExceededError(what, waitMs, remaining, lastFailure);
  }
  if (!scope.progress || waitMs < LONG_WAIT_MS) {
    await sleep(waitMs, scope.signal);
    return;
  }
  await sleepWithCountdown(waitMs, scope.signal, scope.progress, `${what}: ${lastFailure}; retrying in ${formatMs(waitMs)}${why ? ` (${why})` : ''}`, `${what}: retrying in`);
}

/**
 * Sleeps `ms` like {@link sleep}, announcing the wait with `first` and then, every
 * {@link COUNTDOWN_EVERY_MS}, `<countdown> <time left>`.
 */
export async function sleepWithCountdown(ms: number, signal: AbortSignal | undefined, progress: ProgressSink, first: string, countdown: string): Promise<void> {
  progress(first);
  const end = Date.now() + ms;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) return;
    await sleep(Math.min(left, COUNTDOWN_EVERY_MS), signal);
    const after = end - Date.now();
    if (after > 500) progress(`${countdown} ${formatMs(after)}`);
  }
}

/** `1.5 s`, `250 ms`, `20 min`: for messages. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 120_000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.round(ms / 6000) / 10} min`;
}

/** A request that got no HTTP answer, classified. */
export interface NetworkFailure {
  kind: 'refused' | 'dns' | 'unreachable' | 'timeout' | 'reset' | 'tls' | 'other';
  /** The system or TLS error code, e.g. `ECONNREFUSED`, `ENOTFOUND`, `SELF_SIGNED_CERT_IN_CHAIN`. */
  code?: string;
  /** One line for messages. */
  text: string;
}

const TLS_CODES = /^(ERR_TLS_|CERT_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|ERR_SSL_|HOSTNAME_MISMATCH|ERR_OSSL)/;

/** Classifies a fetch failure (undici wraps the system error in `cause`, sometimes twice). */
export function classifyNetworkError(e: unknown, timedOut: boolean, timeoutMs: number): NetworkFailure {
  if (timedOut) return { kind: 'timeout', text: `no answer within ${formatMs(timeoutMs)}` };
  let code: string | undefined;
  let detail: string | undefined;
  for (let cur = e as { code?: unknown; message?: string; cause?: unknown } | undefined, depth = 0; cur && depth < 4; cur = cur.cause as typeof cur, depth++) {
    if (typeof cur.code === 'string' && !code) code = cur.code;
    if (cur !== e && cur.message && !detail) detail = cur.message;
  }
  const text = `${detail ?? (e as Error)?.message ?? String(e)}${code && !(detail ?? '').includes(code) ? ` (${code})` : ''}`;
  if (code && TLS_CODES.test(code)) return { kind: 'tls', code, text };
  switch (code) {
    case 'ECONNREFUSED': return { kind: 'refused', code, text };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME': return { kind: 'dns', code, text };
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN': return { kind: 'unreachable', code, text };
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT': return { kind: 'timeout', code, text };
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED': return { kind: 'reset', code, text };
    default: return { kind: 'other', code, text };
  }
}

