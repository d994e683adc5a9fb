/**
 * `v1.Status` answers, the error body every Kubernetes client decodes. Handlers throw
 * {@link ApiError} (or the store's `StoreError`, which carries the same reason and code) and
 * the server turns either into a Status with the matching HTTP code.
 */
import { StoreError } from '../store.ts';
import { SelectorParseError } from '../selectors.ts';

export interface StatusCause {
  reason?: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

/** A v1.Status object as the API server writes it. */
export interface V1Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** An error answered as a v1.Status with `code`, `reason` and `message`. */
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details?: StatusDetails;
  /** Sent as the `Retry-After` header when set. */
  readonly retryAfterSeconds?: number;

  constructor(code: number, reason: string, message: string, details?: StatusDetails, retryAfterSeconds?: number) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.reason = reason;
    this.details = details;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The real server's answer for a path or type it does not serve. */
export function notFoundPath(): ApiError {
  return new ApiError(404, 'NotFound', 'the server could not find the requested resource', {});
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

export function methodNotAllowed(): ApiError {
  return new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {});
}

export function failureStatus(code: number, reason: string | undefined, message: string, details?: StatusDetails): V1Status {
  const s: V1Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, code };
  if (reason) s.reason = reason;
  if (details) s.details = details;
  return s;
}

export function successStatus(code: number, details?: StatusDetails): V1Status {
  const s: V1Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code };
  if (details) s.details = details;
  return s;
}

/** Maps any thrown value to the Status the server answers with (500 for the unexpected). */
export function toStatus(e: unknown): { status: V1Status; retryAfterSeconds?: number } {
  if (e instanceof ApiError) {
    const details = e.details ?? (e.retryAfterSeconds !== undefined ? {} : undefined);
    if (details && e.retryAfterSeconds) details.retryAfterSeconds = e.retryAfterSeconds;
    return { status: failureStatus(e.code, e.reason, e.message, details), retryAfterSeconds: e.retryAfterSeconds };
  }
  if (e instanceof StoreError) {
    // The store names the resource in details.kind for NotFound/Conflict, as the server does.
    const reason = e.reason === 'Gone' ? 'Expired' : e.reason;
    return { status: failureStatus(e.code, reason, e.message, e.details ? { ...e.details } : undefined) };
  }
  if (e instanceof SelectorParseError) return { status: failureStatus(400, 'BadRequest', e.message) };
  const message = e instanceof Error ? e.message : String(e);
  return { status: failureStatus(500, 'InternalError', `Internal error occurred: ${message}`, { causes: [{ message }] }) };
}
