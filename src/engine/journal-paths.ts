/**
 * Where journals live by default. Kept apart from `journal.ts` (which pulls in the input
 * validators) so that option parsing, help and completion stay light.
 */
import { join } from 'node:path';

/** Default journal path for a cluster: `<cwd>/.podid-migrate/<cluster-name>.json`. */
export function defaultJournalPath(clusterName: string, cwd = process.cwd()): string {
  return join(cwd, '.podid-migrate', `${safeFileName(clusterName)}.json`);
}

/** Cluster names are DNS-ish already; this only guarantees a single path segment. */
export function safeFileName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^\.+/, '');
  return cleaned || 'cluster';
}

