import { forceUnlock } from '../../engine/lock.ts';
import type { CommandModule } from './index.ts';

/** `force-unlock <id>`: remove a lock left by a run that is gone, only if the id matches. */
export const forceUnlockCommand: CommandModule = {
  name: 'force-unlock',
  register(program, env) {
    program
      .command('force-unlock')
      .description('remove the journal lock left by a run that is gone (only if <id> matches)')
      .argument('<id>', 'the lock id printed by the error message')
      .action(async (id: string, _opts, cmd) => {
        const globals = env.globals(cmd);
        const path = await env.journalPath(globals);
        const removed = await forceUnlock(path, id);
        env.err(`Removed lock ${removed.id} (${removed.operation} by ${removed.owner}, pid ${removed.pid}, since ${removed.createdAt}).\nThe journal ${path} records how far that run got: podid-migrate status\n`);
      });
  },
};
