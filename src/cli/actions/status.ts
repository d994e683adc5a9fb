import { journalRunbook } from '../../engine/journal.ts';
import { envelope } from '../documents.ts';
import { renderData, renderStatusMarkdown, renderStatusTable } from '../render.ts';
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';

/** `status`: each step's state from the journal. */
export async function run(env: CliEnv, _opts: unknown, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  const { doc, path } = await env.readJournal(globals);
  if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, envelope('status', { runbook: journalRunbook(doc), journalPath: path, cluster: doc.cluster, inventory: doc.inventory, steps: doc.steps })));
  else if (globals.output === 'markdown') env.out(renderStatusMarkdown(doc));
  else env.out(renderStatusTable(doc, path, env.paint(globals)));
}
