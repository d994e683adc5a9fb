/**
 * Typed errors of the Kubernetes gateway. They carry the HTTP status and the `v1.Status`
 * reason and message, never request headers (the bearer token lives there).
 */

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
