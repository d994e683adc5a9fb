import { lazyAction, type CommandModule } from './index.ts';

/** `status`: each step's state from the journal. */
export const statusCommand: CommandModule = {
  name: 'status',
  register(program, env) {
    program
      .command('status')
      .description("show each step's state from the journal")
      .action(lazyAction(env, () => import('../actions/status.ts')));
  },
};
