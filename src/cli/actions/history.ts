import { journalRunbook } from '../../engine/journal.ts';
import { envelope } from '../documents.ts';
import { renderData, renderHistoryMarkdown, renderHistoryTable } from '../render.ts';
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';

/** `history`: the journal's event log. */
export async function run(env: CliEnv, _opts: unknown, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  const { doc, path } = await env.readJournal(globals);
  if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, envelope('history', { runbook: journalRunbook(doc), journalPath: path, events: doc.events })));
  else if (globals.output === 'markdown') env.out(renderHistoryMarkdown(doc));
  else env.out(renderHistoryTable(doc));
}
