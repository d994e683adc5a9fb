/**
 * Validates a command's document against the JSON Schema the package ships for it
 * (`schemas/<command>.schema.json`), with ajv in strict mode. Fails listing every error by
 * the field's path.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { schemaPath, type DocumentCommand } from '../../src/cli/documents.ts';

const compiled = new Map<DocumentCommand, ValidateFunction>();

/** The compiled schema of `command`; throws when the file is missing or not a valid schema. */
export function schemaValidator(command: DocumentCommand): ValidateFunction {
  let v = compiled.get(command);
  if (!v) {
    const ajv = new Ajv({ strict: true, allErrors: true });
    const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;
    addFormats(ajv);
    v = ajv.compile(JSON.parse(readFileSync(schemaPath(command), 'utf8')));
    compiled.set(command, v);
  }
  return v;
}

/** Throws (a readable list of violations) unless `doc` is a valid `command` document. */
export function expectValidDocument(command: DocumentCommand, doc: unknown): void {
  const validate = schemaValidator(command);
  if (!validate(doc)) {
    const errors = (validate.errors ?? []).map((e) => `  ${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`);
    throw new Error(`not a valid ${command} document (schemas/${command}.schema.json):\n${errors.join('\n')}`);
  }
}
