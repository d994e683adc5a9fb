import { renderData, renderStatusMarkdown, renderStatusTable } from '../render.ts';
import type { CommandModule } from './index.ts';

/** `status`: each step's state from the journal. */
export const statusCommand: CommandModule = {
  name: 'status',
  register(program, env) {
    program
      .command('status')
      .description("show each step's state from the journal")
      .action(async (_opts, cmd) => {
        const globals = env.globals(cmd);
        const { doc, path } = await env.readJournal(globals);
        if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, { journalPath: path, cluster: doc.cluster, inventory: doc.inventory, steps: doc.steps }));
        else if (globals.output === 'markdown') env.out(renderStatusMarkdown(doc));
        else env.out(renderStatusTable(doc, path, env.paint(globals)));
      });
  },
};
