/**
 * Typed errors for expected failures. Each carries a `hint` (what to do next) and the process
 * `exitCode` the CLI returns; the CLI prints `Error: <message>` and the hint, never a stack.
 * Nothing below the CLI calls `process.exit`: code throws one of these instead.
 *
 * Exit codes: 0 success, 1 error (the journal knows about anything half-done), 2 plan with
 * `--detailed-exitcode` and changes pending, 3 a check or test case failed, 4 blockers found and
 * nothing was changed.
 */

/** Exit codes shared by the engine and the CLI. */
export const EXIT = { ok: 0, error: 1, changes: 2, checkFailed: 3, blockers: 4 } as const;

/** Base class: an expected failure with a next step for the operator. */
export class PodidError extends Error {
  /** What to do next (may span several lines, indented by the CLI). */
  readonly hint: string;
  readonly exitCode: number;
  constructor(message: string, hint = '', exitCode: number = EXIT.error, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.hint = hint;
    this.exitCode = exitCode;
  }
}

/** A bad flag, argument or combination of them. Nothing has been read or written. */
export class UsageError extends PodidError {}

/** The cluster or environment is not in a state the command can start from (e.g. a step not yet checked). */
export class PreconditionError extends PodidError {}

/** The journal shows a step in a state the command cannot continue from without a decision (e.g. `rolling-back`). */
export class DirtyJournalError extends PodidError {}

/** Another run holds the journal lock. */
export class LockHeldError extends PodidError {
  readonly lockId: string;
  constructor(message: string, hint: string, lockId: string) {
    super(message, hint);
    this.lockId = lockId;
  }
}

/** The journal lock belongs to a process that no longer exists on this host. */
export class StaleLockError extends PodidError {
  readonly lockId: string;
  constructor(message: string, hint: string, lockId: string) {
    super(message, hint);
    this.lockId = lockId;
  }
}

/** A transient failure (throttling, timeout, conflict): running the same command again is safe. */
export class RetryableError extends PodidError {
  constructor(message: string, hint = 'Run the same command again; the journal resumes where it stopped.', options?: { cause?: unknown }) {
    super(message, hint, EXIT.error, options);
  }
}

/** The journal belongs to a different cluster than the current context points at. */
export class ClusterMismatchError extends PodidError {}

/** The journal (or saved plan) was written by another runbook than the one the command runs. */
export class RunbookMismatchError extends PodidError {}

/** A plan found blockers; nothing was changed. */
export class BlockersFoundError extends PodidError {
  /** `[stepId, blocker]` pairs for rendering. */
  readonly blockers: ReadonlyArray<{ stepId: string; code: string; subject: string; message: string; fix: string }>;
  constructor(message: string, hint: string, blockers: BlockersFoundError['blockers']) {
    super(message, hint, EXIT.blockers);
    this.blockers = blockers;
  }
}

/** A step's check (or a test case) failed; the journal marks the step `failed`. */
export class CheckFailedError extends PodidError {
  readonly stepId: string;
  readonly failures: readonly string[];
  constructor(message: string, hint: string, stepId: string, failures: readonly string[]) {
    super(message, hint, EXIT.checkFailed);
    this.stepId = stepId;
    this.failures = failures;
  }
}

/** The journal file is unreadable, not ours, of an unknown schema version, or fails validation. It is never overwritten. */
export class JournalCorruptError extends PodidError {
  readonly path: string;
  constructor(message: string, hint: string, path: string) {
    super(message, hint);
    this.path = path;
  }
}

/** A saved plan no longer matches what a fresh plan says. */
export class StalePlanError extends PodidError {}

/** A step's `apply` or `rollback` threw; the journal marks the step `failed` and keeps its records. */
export class StepFailedError extends PodidError {
  readonly stepId: string;
  constructor(message: string, hint: string, stepId: string, options?: { cause?: unknown }) {
    super(message, hint, EXIT.error, options);
    this.stepId = stepId;
  }
}

/** The run was interrupted (SIGINT) or a step exceeded its deadline. */
export class AbortedError extends PodidError {}

/** Attempt to persist a value that looks like a bearer token (JWT). */
export class SecretLeakError extends PodidError {}

/** True for errors whose message + hint are enough (no stack trace for the operator). */
export function isExpected(error: unknown): error is PodidError {
  return error instanceof PodidError;
}

/**
 * After a step's actions ran, its journal's done records do not match the plan one to one (an
 * action the plan named was not recorded done, or a done record names an action the plan did
 * not have). Nothing more is written for the step; it stays `failed`.
 */
export class ActionMismatchError extends PodidError {
  readonly stepId: string;
  /** Planned action ids with no done record in this run. */
  readonly missing: string[];
  /** Done records in this run of action ids the plan did not name. */
  readonly unplanned: string[];
  constructor(message: string, hint: string, stepId: string, missing: string[], unplanned: string[]) {
    super(message, hint);
    this.stepId = stepId;
    this.missing = missing;
    this.unplanned = unplanned;
  }
}

/** A planned action names an executor kind this build does not have. */
export class UnknownActionKindError extends PodidError {}

/**
 * The environment failed, not the tool or the cluster's migration state: an endpoint that does
 * not answer, a certificate that is not trusted, a credential refused, a permission missing.
 * Nothing was changed by the request that failed; the hint says what to fix.
 */
export class EnvironmentError extends PodidError {
  /** Which API: `kubernetes` or `azure`. */
  readonly api: 'kubernetes' | 'azure';
  constructor(api: 'kubernetes' | 'azure', message: string, hint: string, options?: { cause?: unknown }) {
    super(message, hint, EXIT.error, options);
    this.api = api;
  }
}

/** Connection refused, name not resolved, network unreachable, or no answer in time. */
export class EndpointUnreachableError extends EnvironmentError {
  /** The URL that did not answer. */
  readonly endpoint: string;
  constructor(api: 'kubernetes' | 'azure', endpoint: string, message: string, hint: string, options?: { cause?: unknown }) {
    super(api, message, hint, options);
    this.endpoint = endpoint;
  }
}

/** The server's certificate is not trusted (unknown CA, wrong host name, expired). */
export class TlsTrustError extends EnvironmentError {}

/** The credential was refused (HTTP 401), has expired, or could not be obtained. */
export class AuthenticationError extends EnvironmentError {}

/** The credential is valid but lacks a permission (HTTP 403). */
export class PermissionDeniedError extends EnvironmentError {
  /** What was refused, e.g. `patch daemonsets.apps in namespace default` or `Microsoft.Compute/virtualMachineScaleSets/write`. */
  readonly refused: string;
  constructor(api: 'kubernetes' | 'azure', refused: string, message: string, hint: string, options?: { cause?: unknown }) {
    super(api, message, hint, options);
    this.refused = refused;
  }
}
