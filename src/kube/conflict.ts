/**
 * Preconditions of a Kubernetes write, re-checked after a 409 Conflict: the gateway reads the
 * object again and asks the precondition whether it still looks like what the write was
 * planned on. SDK-free, so steps and tests can build preconditions without the client.
 */

/**
 * Given the object as it is now, says what no longer holds: nothing (`undefined`, `true`, an
 * empty list) when the write may be retried, otherwise one line per difference (or `false`
 * for "changed", without detail).
 */
export type Precondition = (current: Record<string, unknown>) => readonly string[] | string | boolean | undefined | void;

/** Normalises what a {@link Precondition} returned to a list of differences. */
export function preconditionDiff(precondition: Precondition, current: Record<string, unknown>): string[] {
  const r = precondition(current);
  if (r === undefined || r === true) return [];
  if (r === false) return ['the object no longer matches what the write was planned on'];
  if (typeof r === 'string') return r ? [r] : [];
  return [...r];
}

/**
 * A precondition from expected values at JSON pointers (RFC 6901), e.g.
 * `expectFields({'/spec/template/spec/containers/0/args': plannedArgs})`. `undefined` expects the
 * field to be absent. Values compare as JSON with object keys sorted.
 */
export function expectFields(expected: Record<string, unknown>): Precondition {
  return (current) => {
    const diff: string[] = [];
    for (const [pointer, want] of Object.entries(expected)) {
      const have = valueAt(current, pointer);
      if (canonical(have) !== canonical(want)) diff.push(`${pointer}: planned ${show(want)}, now ${show(have)}`);
    }
    return diff;
  };
}

/** The value at a JSON pointer, or `undefined` when a segment is missing. */
export function valueAt(obj: unknown, pointer: string): unknown {
  if (pointer === '' || pointer === '/') return obj;
  let cur: unknown = obj;
  for (const raw of pointer.replace(/^\//, '').split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object') return undefined;
    if (!Object.prototype.hasOwnProperty.call(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function canonical(v: unknown): string {
  return JSON.stringify(sortKeys(v)) ?? 'undefined';
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
  return v;
}

/** A value for a one-line message, at most 200 characters. */
export function show(v: unknown): string {
  if (v === undefined) return '(absent)';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 200 ? `${s.slice(0, 197)}...` : s;
}
