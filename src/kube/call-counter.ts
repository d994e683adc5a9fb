/**
 * Per-gateway call counters by verb and resource (Kubernetes) or method and operation (ARM),
 * so the CLI can report what each step cost. Counters can be chained: a step-scoped counter
 * also feeds the gateway-wide one.
 */

/** Counts of calls keyed `"<verb> <resource>"`, e.g. `list pods`, `PATCH Microsoft.Compute/virtualMachineScaleSets`. */
export interface CallCounts {
  total: number;
  /** Every attempt that reached the wire, retries included. */
  byKey: Record<string, number>;
  /** How many of those attempts were retries of an earlier attempt. */
  retries: number;
  /** Writes recorded but not sent because of dry-run (client mode, or Azure in server mode). */
  suppressedWrites: number;
}

/** A mutable counter; `snapshot()` returns an independent copy. */
export class CallCounter {
  private readonly byKey = new Map<string, number>();
  private total = 0;
  private retries = 0;
  private suppressed = 0;
  private readonly parent: CallCounter | undefined;

  constructor(parent?: CallCounter) {
    this.parent = parent;
  }

  /** Counts one attempt on the wire. */
  count(verb: string, resource: string, isRetry = false): void {
    const key = `${verb} ${resource}`;
    this.byKey.set(key, (this.byKey.get(key) ?? 0) + 1);
    this.total++;
    if (isRetry) this.retries++;
    this.parent?.count(verb, resource, isRetry);
  }

  /** Counts one write that dry-run kept off the wire. */
  countSuppressed(): void {
    this.suppressed++;
    this.parent?.countSuppressed();
  }

  snapshot(): CallCounts {
    return {
      total: this.total,
      byKey: Object.fromEntries([...this.byKey.entries()].sort(([a], [b]) => a.localeCompare(b))),
      retries: this.retries,
      suppressedWrites: this.suppressed,
    };
  }
}
