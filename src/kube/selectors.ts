/**
 * Client-side label and field selector matching, so a read snapshot can answer a filtered list
 * from one unfiltered list of the kind. Parses what the API server accepts; anything else returns
 * `undefined` from the parser and the caller sends the query to the server instead.
 *
 * Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-joined.
 * Field selectors: `path=value`, `path==value`, `path!=value`, comma-joined, where the path is a
 * dotted JSON path (`metadata.name`, `spec.nodeName`, `status.phase`); a missing field is `""`,
 * as the API server treats an unscheduled pod's `spec.nodeName`.
 */
import type { KubeObject } from './gateway.ts';

/** A parsed selector: true when an object matches. */
export type ObjectMatcher = (obj: KubeObject) => boolean;

function splitTopLevel(s: string): string[] | undefined {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0 || depth > 1) return undefined;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) return undefined;
  out.push(cur.trim());
  return out.filter((p) => p.length > 0);
}

const LABEL_KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Parses a label selector into a matcher on `metadata.labels`; `undefined` when it is not one this code understands. */
export function parseLabelSelector(selector: string | undefined): ObjectMatcher | undefined {
  if (!selector) return () => true;
  const parts = splitTopLevel(selector);
  if (!parts) return undefined;
  const tests: ((labels: Record<string, string>) => boolean)[] = [];
  for (const part of parts) {
    let m = /^(\S+)\s+(in|notin)\s+\(([^()]*)\)$/.exec(part);
    if (m) {
      const [, key, op, list] = m;
      const values = list.split(',').map((v) => v.trim()).filter((v) => v !== '');
      if (!LABEL_KEY.test(key) || !values.every((v) => LABEL_VALUE.test(v))) return undefined;
      tests.push(op === 'in' ? (l) => key in l && values.includes(l[key]) : (l) => !(key in l) || !values.includes(l[key]));
      continue;
    }
    m = /^([^=!\s]+)\s*(==|!=|=)\s*(\S*)$/.exec(part);
    if (m) {
      const [, key, op, value] = m;
      if (!LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) return undefined;
      // `a!=b` also matches objects without the label, as the API server does.
      tests.push(op === '!=' ? (l) => l[key] !== value : (l) => key in l && l[key] === value);
      continue;
    }
    m = /^(!?)\s*(\S+)$/.exec(part);
    if (m && LABEL_KEY.test(m[2])) {
      const [, not, key] = m;
      tests.push(not ? (l) => !(key in l) : (l) => key in l);
      continue;
    }
    return undefined;
  }
  return (obj) => {
    const labels = obj.metadata?.labels ?? {};
    return tests.every((t) => t(labels));
  };
}

/** Parses a field selector into a matcher; `undefined` when it is not one this code understands. */
export function parseFieldSelector(selector: string | undefined): ObjectMatcher | undefined {
  if (!selector) return () => true;
  const tests: ObjectMatcher[] = [];
  for (const part of selector.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)+)\s*(==|!=|=)\s*([^,=!\s]*)$/.exec(part);
    if (!m) return undefined;
    const [, path, op, value] = m;
    const keys = path.split('.');
    const read = (obj: KubeObject): string => {
      let cur: unknown = obj;
      for (const k of keys) cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[k] : undefined;
      return cur === undefined || cur === null ? '' : String(cur);
    };
    tests.push(op === '!=' ? (o) => read(o) !== value : (o) => read(o) === value);
  }
  return (obj) => tests.every((t) => t(obj));
}
