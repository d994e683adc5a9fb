/**
 * Reads a journal as the tool does (snapshot plus its action log), synchronously, for tests
 * that look at it right after a killed run: the last records may be in the action log only.
 */
import { existsSync, readFileSync } from 'node:fs';
import { actionLogPathFor, parseJournal, replayLog, type JournalDocument } from '../../src/engine/journal.ts';

/** The journal at `path` with its action log replayed; undefined when there is none. */
export function readJournalFile(path: string): JournalDocument | undefined {
  if (!existsSync(path)) return undefined;
  const doc = parseJournal(readFileSync(path, 'utf8'), path);
  const log = actionLogPathFor(path);
  if (existsSync(log)) replayLog(doc, readFileSync(log, 'utf8'), log);
  return doc;
}
