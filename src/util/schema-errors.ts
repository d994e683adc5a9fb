/**
 * JSON-schema (ajv) errors as an operator reads them: `pools[1].count: must be integer (got
 * "three")`, one line per field, naming the field by its path in the document.
 */
import type { ErrorObject } from 'ajv';

/** `/pools/1/count` -> `pools[1].count` */
export function fieldPath(instancePath: string): string {
  return instancePath
    .split('/')
    .filter(Boolean)
    .map((seg) => (/^\d+$/.test(seg) ? `[${seg}]` : `.${seg}`))
    .join('')
    .replace(/^\./, '');
}

function valueAt(doc: unknown, pointer: string): unknown {
  let cur: any = doc;
  for (const seg of pointer.split('/').filter(Boolean)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = cur[seg];
  }
  return cur;
}

/** One line for one ajv error; with `doc`, the offending value is quoted. */
export function describeSchemaError(e: ErrorObject, doc?: unknown): string {
  const field = fieldPath(e.instancePath);
  const prefix = field || '(top level)';
  const got = doc !== undefined && e.instancePath ? valueAt(doc, e.instancePath) : undefined;
  const shown = got === undefined ? '' : ` (got ${JSON.stringify(got)})`;
  const params = e.params as Record<string, any>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `${field ? field + '.' : ''}${String(params.additionalProperty)}: unknown field; remove it or check its spelling`;
    case 'required':
      return `${field ? field + '.' : ''}${String(params.missingProperty)}: required field is missing`;
    case 'enum':
      return `${prefix}: must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}${shown}`;
    case 'const':
      return `${prefix}: must be ${JSON.stringify(params.allowedValue)}${shown}`;
    case 'pattern':
      return `${prefix}: ${JSON.stringify(got)} does not have the expected form (${params.pattern})`;
    default:
      return `${prefix}: ${e.message ?? e.keyword}${shown}`;
  }
}
