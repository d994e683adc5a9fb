import { lazyAction, type CommandModule } from './index.ts';

/**
 * `drift`: day two. Compares the inventory with the live cluster and Azure and reports what
 * breaks managed mode, with the fix for each finding; `--fix` repairs what is safe to repair
 * automatically (journalled, undone by `--rollback`). The work is in `src/cli/actions/drift.ts`.
 */
export const driftCommand: CommandModule = {
  name: 'drift',
  register(program, env) {
    program
      .command('drift')
      .description('day two: compare the inventory with the live cluster and Azure, report what breaks managed mode and how to fix it (exit 0 no drift, 3 drift)')
      .option('--fix', 'repair what is safe automatically (missing identities on scale sets, NMI args, MIC replicas), plan first; journalled')
      .option('--update-inventory', 'add new pools and identities to the inventory file (comments and test cases kept)')
      .option('--rollback', 'undo exactly what earlier drift fixes did (from the journal)')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(lazyAction(env, () => import('../actions/drift.ts')));
  },
};
