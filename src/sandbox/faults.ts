/**
 * Fault rules for the sandbox's HTTP endpoints, settable at start (scenario file) and at run
 * time (control API), so tests can reproduce throttling, slow or failed long-running
 * operations, and a client killed after the server applied its write.
 */
import { EventEmitter } from 'node:events';
import type { Api } from './metrics.ts';

export type FaultAction =
  /** Answer with this status (and `Retry-After` seconds, when given) instead of serving. */
  | { kind: 'status'; status: number; retryAfterSeconds?: number; code?: string; message?: string }
  /** Serve normally after this many real milliseconds. */
  | { kind: 'latency'; ms: number }
  /** ARM only: the long-running operation ends `Failed` with this error. */
  | { kind: 'lro-fail'; code?: string; message?: string }
  /** Apply the mutation, then never answer (until the rule is removed or the socket closes). */
  | { kind: 'hold-response' }
  /**
   * Hold the request before anything is applied. When the rule is removed it is served, unless
   * the client has gone meanwhile: then it is dropped unapplied, as if the client had died just
   * before sending it.
   */
  | { kind: 'hold-request' };

export interface FaultRule {
  /** Set by {@link FaultInjector.add} when absent. */
  id?: string;
  /** Which endpoint; `any` counts the requests of both (with `mutating` and `after`: "the Nth write of the run"). */
  api: Api | 'any';
  /**
   * Only requests that change state: Kubernetes create/update/patch/delete/deletecollection
   * (an eviction is a create) and ARM PUT/PATCH/POST/DELETE; `dryRun=All` requests never match.
   */
  mutating?: boolean;
  /** HTTP method to match (any when absent). */
  method?: string;
  /** Regular expression tested against the request path (without query). */
  path?: string;
  /** How many matching requests the rule affects; unlimited when absent. */
  times?: number;
  /** Let this many matching requests through before the rule starts to act. */
  after?: number;
  action: FaultAction;
}

interface ActiveRule extends FaultRule {
  id: string;
  seen: number;
  fired: number;
  re?: RegExp;
}

/**
 * Emits `fired` ({ruleId, method, path}) synchronously when a rule acts on a request (before it
 * is answered), `held` ({ruleId, method, path}) when a hold rule holds one, and `dropped` when a
 * request held by `hold-request` was given up by its client (it is never served).
 */
export class FaultInjector extends EventEmitter {
  private readonly rules = new Map<string, ActiveRule>();
  private next = 1;

  add(rule: FaultRule): string {
    const id = rule.id ?? `fault-${this.next++}`;
    let re: RegExp | undefined;
    if (rule.path) {
      try {
        re = new RegExp(rule.path);
      } catch (e) {
        throw new Error(`fault rule ${id}: path is not a valid regular expression: ${(e as Error).message}`);
      }
    }
    this.rules.set(id, { ...rule, id, seen: 0, fired: 0, re });
    return id;
  }

  remove(id: string): boolean {
    const ok = this.rules.delete(id);
    this.emit('removed', id);
    return ok;
  }

  clear(): void {
    for (const id of [...this.rules.keys()]) this.remove(id);
  }

  list(): (FaultRule & { fired: number })[] {
    return [...this.rules.values()].map(({ re: _re, seen: _seen, ...r }) => r);
  }

  /** The first rule that acts on this request, counting it as fired. `mutating`: the request changes state (not a dry run). */
  match(api: Api, method: string, path: string, request: { mutating?: boolean } = {}): (FaultRule & { id: string }) | undefined {
    for (const r of this.rules.values()) {
      if (r.api !== 'any' && r.api !== api) continue;
      if (r.mutating && !request.mutating) continue;
      if (r.method && r.method.toUpperCase() !== method.toUpperCase()) continue;
      if (r.re && !r.re.test(path)) continue;
      r.seen++;
      if (r.after && r.seen <= r.after) continue;
      if (r.times !== undefined && r.fired >= r.times) continue;
      r.fired++;
      this.emit('fired', { ruleId: r.id, method, path });
      return r;
    }
    return undefined;
  }

  /**
   * Called by a server holding a request before serving it (`hold-request`): resolves
   * `released` when the rule is removed, or `dropped` (emitting `dropped`) as soon as the client
   * went away, in which case the request must not be served.
   */
  async holdRequest(ruleId: string, info: { method: string; path: string }, clientGone: Promise<void>): Promise<'released' | 'dropped'> {
    const outcome = await Promise.race([this.hold(ruleId, info).then(() => 'released' as const), clientGone.then(() => 'dropped' as const)]);
    if (outcome === 'dropped') this.emit('dropped', { ruleId, ...info });
    return outcome;
  }

  /** Called by a server that swallowed a response; resolves when the rule is removed. */
  hold(ruleId: string, info: { method: string; path: string }): Promise<void> {
    this.emit('held', { ruleId, ...info });
    return new Promise((resolve) => {
      const onRemoved = (id: string) => {
        if (id === ruleId) {
          this.off('removed', onRemoved);
          resolve();
        }
      };
      this.on('removed', onRemoved);
    });
  }
}
