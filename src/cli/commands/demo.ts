import { lazyAction, type CommandModule } from './index.ts';

/** Where `demo --keep` leaves the sandbox's client files, journal and inventory. */
export const DEMO_KEEP_DIR = '.sandbox-demo';

/** `demo`: the full migration on the embedded sandbox. */
export const demoCommand: CommandModule = {
  name: 'demo',
  register(program, env) {
    program
      .command('demo')
      .description('run the whole migration against the embedded sandbox (start, inventory, plan, apply every step, report)')
      .option('--scenario <file>', 'sandbox scenario YAML (default: the bundled scenarios/default.yaml)')
      .option('--time-scale <x>', 'simulated seconds per real second (default: the scenario, 10)')
      .option('--no-churn', 'do not run the scenario batch churn')
      .option('--keep', `leave the sandbox running afterwards (as the background daemon of \`sandbox up\`, in --dir, default ${DEMO_KEEP_DIR})`)
      .option('--dir <dir>', 'where the sandbox client files, journal, inventory and JUnit report go (default: a temporary directory; with --keep .sandbox-demo)')
      .option('--observe <seconds>', 'simulated seconds the outage meter keeps measuring after the migration (default 0)')
      .option('--operator-pause <seconds>', 'with --procedure upstream: simulated seconds between two steps of the documented procedure, as an operator reading it (default 0: run as a script)')
      .option('--from <mode>', 'with --runbook workload-identity: the mode workload identity starts from: managed (run the managed-mode runbook first, default) or standard (straight from standard mode)')
      .option('--uninstall-pod-identity', 'with --runbook workload-identity: also delete NMI, MIC and the Pod Identity CRDs in wi-remove-pod-identity')
      .option('--procedure <name>', `how to migrate: drain (the runbook, NMI restarted on drained nodes; default), in-place (the runbook, rolling NMI patch), upstream (the documented procedure)`)
      .action(lazyAction(env, () => import('../actions/demo.ts')));
  },
};
