/** Small helpers every step and executor shares (one implementation each). */
import { sortKeys } from '../../engine/plan.ts';
import { sleep } from '../../kube/retry.ts';

export { sortKeys };

/** Poll interval of every rollout / node / pod wait: short, since the sandbox may run 20-50x faster than real time. */
export const POLL_MS = 300;

/** Remaining time before the call's deadline (at least 1 ms, so a wait still probes once). */
export function remainingMs(deadline: number): number {
  return Math.max(1, deadline - Date.now());
}

/** Signal-aware sleep: the gateways' own (SDK-free), so there is one implementation. */
export { sleep };

/** Items sorted by a string key (default: their string form). */
export function sorted<T>(items: Iterable<T>, key: (t: T) => string = (t) => String(t)): T[] {
  return [...items].sort((a, b) => key(a).localeCompare(key(b)));
}

/** Deep equality of JSON values regardless of key order. */
export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

/** The HTTP status an SDK or gateway error carries, if any. */
export function statusOf(error: unknown): number | undefined {
  const e = error as { status?: number; statusCode?: number } | undefined;
  return e?.status ?? e?.statusCode;
}
