/**
 * Typed errors of the Azure gateway: the HTTP status, the ARM error code and message, and
 * (for a missing `assign/action`) the identities concerned. Never a request header, never a token.
 */
import { PreconditionError } from '../engine/errors.ts';

/**
 * No Azure credential could get a token: says which sources `DefaultAzureCredential` tried
 * and how to sign in. An environmental failure (exit 1), never reported as unexpected.
 */
export class AzureLoginError extends PreconditionError {}

/** The sandbox/endpoint settings in the environment are incomplete or unsafe. */
export class AzureConfigError extends PreconditionError {}

/** An ARM request that failed (or a long-running operation that ended `Failed`). */
export class AzureApiError extends Error {
  override readonly name = 'AzureApiError';
  /** HTTP status (0 when the request never got an answer; 200 for an LRO that ended `Failed`). */
  readonly status: number;
  /** ARM error code, e.g. `LinkedAuthorizationFailed`, `ResourceNotFound`, `TooManyRequests`. */
  readonly code: string;
  /** The server's message. */
  readonly serverMessage: string;
  /** What was being done, e.g. `PATCH vmss aks-pay-123-vmss`. */
  readonly operation: string;
  /** Identity resource ids the error is about (LinkedAuthorizationFailed). */
  readonly identityIds: string[];
  readonly retryable: boolean;

  /** True when the request was accepted and its long-running operation ended `Failed` (`code`/`message` are the operation's error). */
  readonly operationFailed: boolean;

  constructor(init: { status: number; code: string; message: string; operation: string; identityIds?: string[]; retryable?: boolean; operationFailed?: boolean }) {
    const ids = init.identityIds ?? [];
    const prefix =
      init.code === 'LinkedAuthorizationFailed' && ids.length
        ? `missing Microsoft.ManagedIdentity/userAssignedIdentities/assign/action on ${ids.join(', ')}: `
        : '';
    // The HTTP status of an operation that ended Failed is the poll's 200, which says nothing.
    const status = init.operationFailed ? 'the long-running operation ended Failed: ' : init.status ? `${init.status} ` : '';
    super(`${init.operation}: ${prefix}${status}${init.code}: ${init.message}`);
    this.operationFailed = init.operationFailed ?? false;
    this.status = init.status;
    this.code = init.code;
    this.serverMessage = init.message;
    this.operation = init.operation;
    this.identityIds = ids;
    this.retryable = init.retryable ?? (init.status === 429 || init.status >= 500);
  }
}

/** True when `e` is an ARM 404 (`ResourceNotFound`, `NotFound`, ...). */
export function isAzureNotFound(e: unknown): boolean {
  return e instanceof AzureApiError && e.status === 404;
}

/**
 * The user-assigned identity ids a `LinkedAuthorizationFailed` message names. ARM says
 * `... does not have permission to perform action(s) '.../assign/action' on the linked
 * scope(s) '<id1>,<id2>' (respectively) or the linked scope(s) are invalid.`
 */
export function linkedScopesOf(message: string): string[] {
  const ids = message.match(/\/subscriptions\/[^\s',;]+\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/[^\s',;]+/gi) ?? [];
  return [...new Set(ids)];
}
