import { lazyAction, type CommandModule } from './index.ts';

/** `history`: the journal's event log. */
export const historyCommand: CommandModule = {
  name: 'history',
  register(program, env) {
    program
      .command('history')
      .description("show the journal's event log, oldest first")
      .action(lazyAction(env, () => import('../actions/history.ts')));
  },
};
