import { lazyAction, type CommandModule } from './index.ts';

/** `rollback`: undo what the journal recorded, newest step first. */
export const rollbackCommand: CommandModule = {
  name: 'rollback',
  register(program, env) {
    program
      .command('rollback')
      .description('undo what the journal recorded, newest step first, and verify the pre-state is back')
      .option('--step <id>', 'roll back only this step (later steps must already be rolled back or never applied)')
      .option('--to <id>', 'roll back this step and every later one')
      .option('--all', 'roll back every step')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(lazyAction(env, () => import('../actions/rollback.ts')));
  },
};
