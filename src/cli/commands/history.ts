import { renderData, renderHistoryMarkdown, renderHistoryTable } from '../render.ts';
import type { CommandModule } from './index.ts';

/** `history`: the journal's event log. */
export const historyCommand: CommandModule = {
  name: 'history',
  register(program, env) {
    program
      .command('history')
      .description("show the journal's event log, oldest first")
      .action(async (_opts, cmd) => {
        const globals = env.globals(cmd);
        const { doc, path } = await env.readJournal(globals);
        if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, { journalPath: path, events: doc.events }));
        else if (globals.output === 'markdown') env.out(renderHistoryMarkdown(doc));
        else env.out(renderHistoryTable(doc));
      });
  },
};
