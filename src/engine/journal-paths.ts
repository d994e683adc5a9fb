/**
 * Where journals live by default. Kept apart from `journal.ts` (which pulls in the input
 * validators) so that option parsing, help and completion stay light.
 */
import { join } from 'node:path';
import { DEFAULT_RUNBOOK, type RunbookId } from './step.ts';

/**
 * Default journal path for a cluster and runbook: `<cwd>/.podid-migrate/<cluster-name>.json` for
 * the default runbook (`managed-mode`, the path journals always had), and
 * `<cwd>/.podid-migrate/<cluster-name>.<runbook>.json` for another, so each runbook keeps its own
 * journal per cluster.
 */
export function defaultJournalPath(clusterName: string, cwd = process.cwd(), runbook: RunbookId = DEFAULT_RUNBOOK): string {
  const suffix = runbook === DEFAULT_RUNBOOK ? '' : `.${safeFileName(runbook)}`;
  return join(cwd, '.podid-migrate', `${safeFileName(clusterName)}${suffix}.json`);
}

/** Cluster names are DNS-ish already; this only guarantees a single path segment. */
export function safeFileName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^\.+/, '');
  return cleaned || 'cluster';
}

