/**
 * Kubernetes label and field selectors, parsed the way the API server parses them.
 *
 * Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-joined.
 * Field selectors: `path=value`, `path==value`, `path!=value`, comma-joined; the path is a
 * dotted JSON path (`metadata.name`, `spec.nodeName`, `status.phase`, ...).
 */

export type LabelRequirement =
  | { key: string; op: 'eq' | 'neq'; value: string }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'notexists' };

export type FieldRequirement = { path: string; op: 'eq' | 'neq'; value: string };

/** Raised for a selector the API server would reject with 400 BadRequest. */
export class SelectorParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SelectorParseError';
  }
}

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((p) => p.trim()).filter((p) => p.length > 0);
}

const LABEL_KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;

function checkKey(key: string, whole: string): string {
  if (!LABEL_KEY.test(key)) throw new SelectorParseError(`unable to parse requirement: invalid label key "${key}" in "${whole}"`);
  return key;
}

export function parseLabelSelector(selector: string | undefined | null): LabelRequirement[] {
  if (!selector) return [];
  return splitTopLevel(selector).map((part) => {
    let m = /^(.+?)\s+(in|notin)\s+\((.*)\)$/.exec(part);
    if (m) {
      const values = m[3].split(',').map((v) => v.trim()).filter((v) => v !== '');
      return { key: checkKey(m[1].trim(), part), op: m[2] as 'in' | 'notin', values };
    }
    m = /^(.+?)\s*(==|!=|=)\s*(.*)$/.exec(part);
    if (m) {
      return { key: checkKey(m[1].trim(), part), op: m[2] === '!=' ? 'neq' : 'eq', value: m[3].trim() };
    }
    if (part.startsWith('!')) return { key: checkKey(part.slice(1).trim(), part), op: 'notexists' };
    return { key: checkKey(part, part), op: 'exists' };
  });
}

export function matchLabels(reqs: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  for (const r of reqs) {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    switch (r.op) {
      case 'eq':
        if (!has || l[r.key] !== r.value) return false;
        break;
      case 'neq':
        if (has && l[r.key] === r.value) return false;
        break;
      case 'in':
        if (!has || !r.values.includes(l[r.key])) return false;
        break;
      case 'notin':
        if (has && r.values.includes(l[r.key])) return false;
        break;
      case 'exists':
        if (!has) return false;
        break;
      case 'notexists':
        if (has) return false;
        break;
    }
  }
  return true;
}

export function parseFieldSelector(selector: string | undefined | null): FieldRequirement[] {
  if (!selector) return [];
  return splitTopLevel(selector).map((part) => {
    const m = /^([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)$/.exec(part);
    if (!m) throw new SelectorParseError(`invalid field selector "${part}": expected <field>=<value> or <field>!=<value>`);
    return { path: m[1], op: m[2] === '!=' ? 'neq' : 'eq', value: m[3].trim() };
  });
}

/** Reads a dotted path; missing values compare as the empty string, like the API server. */
export function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[k];
  }
  if (cur === undefined || cur === null) return '';
  return String(cur);
}

export function matchFields(reqs: FieldRequirement[], obj: unknown): boolean {
  for (const r of reqs) {
    const v = fieldValue(obj, r.path);
    if (r.op === 'eq' ? v !== r.value : v === r.value) return false;
  }
  return true;
}

/** Converts a `metav1.LabelSelector` (matchLabels + matchExpressions) into requirements. */
export function labelSelectorFromObject(sel: {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
} | undefined): LabelRequirement[] {
  if (!sel) return [];
  const reqs: LabelRequirement[] = [];
  for (const [key, value] of Object.entries(sel.matchLabels ?? {})) reqs.push({ key, op: 'eq', value });
  for (const e of sel.matchExpressions ?? []) {
    switch (e.operator) {
      case 'In':
        reqs.push({ key: e.key, op: 'in', values: e.values ?? [] });
        break;
      case 'NotIn':
        reqs.push({ key: e.key, op: 'notin', values: e.values ?? [] });
        break;
      case 'Exists':
        reqs.push({ key: e.key, op: 'exists' });
        break;
      case 'DoesNotExist':
        reqs.push({ key: e.key, op: 'notexists' });
        break;
      default:
        throw new SelectorParseError(`unknown label selector operator "${e.operator}"`);
    }
  }
  return reqs;
}
