import { lazyAction, type CommandModule } from './index.ts';

/** `plan`: every step's actions and blockers, read-only. */
export const planCommand: CommandModule = {
  name: 'plan',
  register(program, env) {
    program
      .command('plan')
      .description('show what every step would change, and every blocker, without changing anything')
      .option('--out <file>', 'save the plan (JSON) for `apply --plan <file>`')
      .option('--nmi-rollout <strategy>', 'nmi-managed: plan the drain or the in-place rollout (as apply --nmi-rollout)')
      .option('--nmi-max-unavailable <n|p%>', 'nmi-managed: nodes whose NMI restarts at once (as apply --nmi-max-unavailable)')
      .option('--drain-force', 'plan as apply --drain-force would run')
      .option('--delete-emptydir-data', 'plan as apply --delete-emptydir-data would run')
      .option('--uninstall-pod-identity', 'plan as apply --uninstall-pod-identity would run (--runbook workload-identity)')
      .option('--detailed-exitcode', 'exit 2 when changes are pending (0 when there is nothing to do); blockers always exit 4')
      .action(lazyAction(env, () => import('../actions/plan.ts')));
  },
};
