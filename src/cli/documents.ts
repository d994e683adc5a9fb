/**
 * The machine-readable documents the commands print with `-o json|yaml`. Every document starts
 * with `kind` (`podid-migrate/<command>`) and `schemaVersion`, and has a JSON Schema shipped in
 * the package at `schemas/<command>.schema.json` (tests validate real outputs against it).
 *
 * A command adding a document: add its name to {@link DOCUMENT_COMMANDS}, write
 * `schemas/<name>.schema.json`, print `renderData(globals.output, envelope('<name>', body))`,
 * and validate a real output in a test with `test/helpers/schemas.ts`.
 *
 * Compatibility: within one `schemaVersion` fields are only added, never renamed, removed or
 * retyped; a breaking change bumps the version of that document.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Commands that print a document, and the schema version each one is at. */
export const DOCUMENT_COMMANDS = {
  plan: 1,
  apply: 1,
  rollback: 1,
  status: 1,
  history: 1,
  demo: 1,
  drift: 1,
  'sandbox-status': 1,
} as const;

/** A command that prints a document. */
export type DocumentCommand = keyof typeof DOCUMENT_COMMANDS;

/** The header every document starts with. */
export interface DocumentHeader<C extends DocumentCommand = DocumentCommand> {
  kind: `podid-migrate/${C}`;
  schemaVersion: (typeof DOCUMENT_COMMANDS)[C];
}

/** `podid-migrate/<command>` */
export function documentKind<C extends DocumentCommand>(command: C): `podid-migrate/${C}` {
  return `podid-migrate/${command}`;
}

/**
 * `body` under the document header: `kind` and `schemaVersion` first (they win over any field
 * of the same name in `body`), then the body's own fields.
 */
export function envelope<C extends DocumentCommand, B extends object>(command: C, body: B): DocumentHeader<C> & Omit<B, 'kind' | 'schemaVersion'> {
  const { kind: _kind, schemaVersion: _version, ...rest } = body as B & { kind?: unknown; schemaVersion?: unknown };
  return { kind: documentKind(command), schemaVersion: DOCUMENT_COMMANDS[command], ...rest } as DocumentHeader<C> & Omit<B, 'kind' | 'schemaVersion'>;
}

/** The package's `schemas/` directory (same place relative to this file in src/ and in dist/). */
export const SCHEMAS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'schemas');

/** `schemas/<command>.schema.json` */
export function schemaPath(command: DocumentCommand): string {
  return join(SCHEMAS_DIR, `${command}.schema.json`);
}
