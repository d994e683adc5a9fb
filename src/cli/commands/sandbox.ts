import { lazyAction, type CommandModule } from './index.ts';
import { registerSandboxAks } from './sandbox-aks.ts';

/**
 * Where `sandbox up|down|status` keep their files by default; the same value as
 * `DEFAULT_SANDBOX_DIR` in src/sandbox/lifecycle.ts (a test keeps them equal), repeated here so
 * that help does not load the sandbox.
 */
export const SANDBOX_DIR = '.sandbox';

/** `sandbox up|down|status`: a simulated AKS cluster + Azure Resource Manager on loopback. */
export const sandboxCommand: CommandModule = {
  name: 'sandbox',
  register(program, env) {
    const sandbox = program.command('sandbox').description(`a simulated AKS cluster + Azure Resource Manager on loopback, for rehearsals (default dir ${SANDBOX_DIR})`);
    const load = () => import('../actions/sandbox.ts');

    sandbox
      .command('up')
      .description('start a sandbox in the background and wait until it is ready')
      .option('--dir <dir>', 'where to write kubeconfig, ca.crt, env, sandbox.json and sandbox.log', SANDBOX_DIR)
      .option('--scenario <file>', 'scenario YAML (default: the bundled scenarios/default.yaml)')
      .option('--time-scale <x>', 'simulated seconds per real second (default: from the scenario; 15 for the default one)')
      .option('--no-churn', 'do not start the scenario batch churn')
      .option('--timeout <seconds>', 'how long to wait for the sandbox to become ready', '120')
      .action(lazyAction(env, async () => ({ run: (await load()).up })));

    sandbox
      .command('down')
      .description('stop the sandbox started from --dir and remove its credentials')
      .option('--dir <dir>', 'the sandbox directory', SANDBOX_DIR)
      .action(lazyAction(env, async () => ({ run: (await load()).down })));

    sandbox
      .command('status')
      .description('metrics and the outage meter of a running sandbox')
      .option('--dir <dir>', 'the sandbox directory', SANDBOX_DIR)
      .action(lazyAction(env, async () => ({ run: (await load()).status })));

    registerSandboxAks(sandbox, env, SANDBOX_DIR);
  },
};
