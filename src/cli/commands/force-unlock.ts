import { lazyAction, type CommandModule } from './index.ts';

/** `force-unlock <id>`: remove a lock left by a run that is gone, only if the id matches. */
export const forceUnlockCommand: CommandModule = {
  name: 'force-unlock',
  register(program, env) {
    program
      .command('force-unlock')
      .description('remove the journal lock left by a run that is gone (only if <id> matches)')
      .argument('<id>', 'the lock id printed by the error message')
      .action(lazyAction(env, () => import('../actions/force-unlock.ts')));
  },
};
