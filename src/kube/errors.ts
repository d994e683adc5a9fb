/**
 * Typed errors of the Kubernetes gateway. They carry the HTTP status and the `v1.Status`
 * reason and message, never request headers (the bearer token lives there).
 */
import { PodidError, RetryableError } from '../engine/errors.ts';

/** A Kubernetes API request that failed with a `v1.Status` (or another non-2xx answer). */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  /** HTTP status code, e.g. 404, 409, 422, 429. */
  readonly status: number;
  /** `v1.Status.reason`, e.g. `NotFound`, `Conflict`, `AlreadyExists`, `Invalid`, `TooManyRequests`. */
  readonly reason: string;
  /** `v1.Status.details` when the server gave them. */
  readonly details: unknown;
  /** Method and path of the request (no host, no headers). */
  readonly request: string;
  /** True when retrying later may succeed (429, 5xx). */
  readonly retryable: boolean;

  constructor(init: { status: number; reason?: string; message: string; details?: unknown; method: string; path: string }) {
    super(`${init.method} ${init.path}: ${init.status} ${init.reason ?? ''}${init.reason ? ': ' : ''}${init.message}`);
    this.status = init.status;
    this.reason = init.reason ?? defaultReason(init.status);
    this.details = init.details;
    this.request = `${init.method} ${init.path}`;
    this.retryable = init.status === 429 || init.status >= 500;
    /** The server's own message, without the request prefix. */
    this.serverMessage = init.message;
  }
  readonly serverMessage: string;
}

/** True when `e` is a Kubernetes 404. */
export function isNotFound(e: unknown): boolean {
  return e instanceof KubeApiError && e.status === 404;
}

/** True when `e` is a Kubernetes 409 (stale resourceVersion or AlreadyExists). */
export function isConflict(e: unknown): boolean {
  return e instanceof KubeApiError && e.status === 409;
}

/** Thrown by `waitFor` when the awaited condition did not hold in time; names what was awaited. */
export class WaitTimeoutError extends Error {
  override readonly name = 'WaitTimeoutError';
  readonly what: string;
  readonly lastState: string | undefined;
  constructor(what: string, timeoutMs: number, lastState?: string) {
    super(`timed out after ${Math.round(timeoutMs / 100) / 10} s waiting for ${what}${lastState ? ` (last seen: ${lastState})` : ''}`);
    this.what = what;
    this.lastState = lastState;
  }
}

/** Thrown when dry-run forbids a write and something tried to send it anyway. */
export class DryRunViolationError extends Error {
  override readonly name = 'DryRunViolationError';
  constructor(api: 'kube' | 'arm', method: string, path: string) {
    super(`${api === 'kube' ? 'Kubernetes' : 'Azure'} write ${method} ${path} refused: dry-run is on`);
  }
}

function defaultReason(status: number): string {
  switch (status) {
    case 400: return 'BadRequest';
    case 401: return 'Unauthorized';
    case 403: return 'Forbidden';
    case 404: return 'NotFound';
    case 405: return 'MethodNotAllowed';
    case 409: return 'Conflict';
    case 410: return 'Expired';
    case 422: return 'Invalid';
    case 429: return 'TooManyRequests';
    case 500: return 'InternalError';
    case 503: return 'ServiceUnavailable';
    case 504: return 'Timeout';
    default: return status >= 500 ? 'InternalError' : 'Unknown';
  }
}

/**
 * Thrown when a write met 409 Conflict, the object was read again, and it no longer matches
 * what the write was planned on (or it is gone): someone else (Helm, a GitOps controller, a
 * person) changed it. Nothing was written by this call. `diff` lists what changed, one line each.
 */
export class ConcurrentChangeError extends PodidError {
  /** e.g. `daemonset default/nmi`. */
  readonly target: string;
  /** One line per difference: `<json pointer>: planned <value>, now <value>`. */
  readonly diff: string[];
  /** The HTTP status the write met (409 Conflict, or 422 for a JSON patch whose `test` failed), for callers that classify by status. */
  readonly status: number;
  constructor(target: string, diff: string[], hint?: string, status = 409) {
    super(
      `${target} was changed by someone else while this step was writing it:\n  ${diff.join('\n  ')}`,
      hint ??
        `Nothing was written by this request. Find who changes ${target} (a Helm upgrade, a GitOps controller such as Flux or Argo CD, a person): ` +
          `\`kubectl get ${kubectlName(target)} -o yaml --show-managed-fields\` names the field managers. Pause it, then run the same command again: ` +
          'the step is planned again against the live object.',
    );
    this.target = target;
    this.diff = diff;
    this.status = status;
  }
}

/** Thrown when a write kept meeting 409 Conflict after every bounded retry (the object is written continuously). */
export class ConflictRetriesExhaustedError extends RetryableError {
  readonly target: string;
  /** Always 409, for callers that classify by status. */
  readonly status = 409;
  constructor(target: string, attempts: number) {
    super(
      `${target} kept changing: ${attempts} writes in a row met 409 Conflict (each after a fresh read).`,
      `Something rewrites ${target} continuously (a controller reconciling it?). Pause it, then run the same command again; the journal resumes where it stopped.`,
    );
    this.target = target;
  }
}

/** `daemonset default/nmi` -> `daemonset nmi -n default`, for a kubectl line in a hint. */
function kubectlName(target: string): string {
  const m = /^(\S+) (?:([^/\s]+)\/)?(\S+)$/.exec(target);
  if (!m) return target;
  return `${m[1]} ${m[3]}${m[2] ? ` -n ${m[2]}` : ''}`;
}
