/**
 * Timestamps as clients see them. The sandbox's controllers live in simulated time, which
 * runs `timeScale` times faster than the wall clock from the moment the sandbox started; a
 * client computing an age against its own clock would see objects "created in the future"
 * (`<invalid>` ages in kubectl). So every timestamp the API server sends is mapped onto the
 * wall clock through the clock's anchor (`toWall`), and timestamps clients send are mapped
 * back (`fromWall`). Ages and the order of events stay consistent for clients, while the
 * durations the controllers wait still run at the time scale.
 */
import type { Clock } from '../clock.ts';

/** Fields holding a metav1.Time / MicroTime, wherever they appear in an object. */
const TIME_KEYS = new Set([
  'creationTimestamp', 'deletionTimestamp', 'lastTransitionTime', 'lastHeartbeatTime', 'lastProbeTime', 'lastUpdateTime',
  'lastScheduleTime', 'lastSuccessfulTime', 'startTime', 'completionTime', 'startedAt', 'finishedAt', 'firstTimestamp',
  'lastTimestamp', 'eventTime', 'lastObservedTime', 'renewTime', 'acquireTime', 'time', 'deprecatedFirstTimestamp', 'deprecatedLastTimestamp',
]);
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

function reformat(original: string, ms: number): string {
  const frac = /\.(\d+)Z$/.exec(original)?.[1];
  const iso = new Date(Math.floor(ms)).toISOString();
  if (!frac) return iso.replace(/\.\d{3}Z$/, 'Z');
  return iso.replace(/\.(\d{3})Z$/, (_, m: string) => `.${(m + '000000').slice(0, frac.length)}Z`);
}

/** Converts timestamps between simulated time and what clients see. */
export class ClientTime {
  private readonly clock: Clock;
  /** False when simulated time is the wall clock (nothing to convert). */
  readonly active: boolean;

  constructor(clock: Clock) {
    this.clock = clock;
    this.active = typeof clock.toWall === 'function' && typeof clock.fromWall === 'function' && !(clock.timeScale === 1 && Math.abs(clock.toWall(clock.now()) - Date.now()) < 1000);
  }

  /** "Now" as clients see it. */
  now(): number {
    return this.active ? this.clock.toWall!(this.clock.now()) : this.clock.now();
  }

  /** A JSON.stringify replacer mapping simulated timestamps to client ones. */
  readonly replacer = (key: string, value: unknown): unknown => {
    if (typeof value === 'string' && TIME_KEYS.has(key) && RFC3339.test(value)) return reformat(value, this.clock.toWall!(Date.parse(value)));
    return value;
  };

  /** JSON text of a response body, timestamps converted. */
  stringify(body: unknown): string {
    return this.active ? JSON.stringify(body, this.replacer) : JSON.stringify(body);
  }

  /** A converted deep copy (for server-side tables, whose ages are computed here). */
  copyOut<T>(obj: T): T {
    return this.active ? (JSON.parse(JSON.stringify(obj, this.replacer)) as T) : obj;
  }

  /** Maps the timestamps of a decoded request body back to simulated time, in place. */
  fromClient(obj: unknown): void {
    if (!this.active || !obj || typeof obj !== 'object') return;
    const walk = (v: any) => {
      if (Array.isArray(v)) {
        v.forEach(walk);
        return;
      }
      if (!v || typeof v !== 'object') return;
      for (const [k, x] of Object.entries(v)) {
        if (typeof x === 'string' && TIME_KEYS.has(k) && RFC3339.test(x)) v[k] = reformat(x, this.clock.fromWall!(Date.parse(x)));
        else if (x && typeof x === 'object') walk(x);
      }
    };
    walk(obj);
  }
}
