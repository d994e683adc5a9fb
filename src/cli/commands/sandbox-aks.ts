/**
 * `sandbox aks add-pool|upgrade-pool|scale-pool|recreate-identity|reinstall-standard`: what
 * AKS does to node pools and identities, on a running sandbox, to rehearse day two (what
 * `podid-migrate drift` finds). Registration only; the work is in `src/cli/actions/sandbox-aks.ts`.
 */
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];

type AksOp = 'add-pool' | 'upgrade-pool' | 'scale-pool' | 'recreate-identity' | 'reinstall-standard';

/** Loads the action when the sub-command runs: with a positional argument, or without one. */
function lazy(env: CliEnv, op: AksOp, positional: boolean) {
  return async (...args: unknown[]) => {
    const { run } = await import('../actions/sandbox-aks.ts');
    const [arg, flags, cmd] = positional ? args : [undefined, ...args];
    await run(env, op, arg as string | undefined, flags as Parameters<typeof run>[3], cmd as Command);
  };
}

/** Registers `sandbox aks …` under the `sandbox` command. */
export function registerSandboxAks(sandbox: Command, env: CliEnv, sandboxDir: string): void {
  const aks = sandbox.command('aks').description('what AKS does to node pools and identities, on a running sandbox (to rehearse `podid-migrate drift`)');
  const dirDefault = env.deps.env.PODID_MIGRATE_SANDBOX_DIR || sandboxDir;

  aks
    .command('add-pool <name>')
    .description('add a node pool: a new VMSS and nodes carrying only the kubelet identity (az aks nodepool add)')
    .option('--count <n>', 'nodes', '2')
    .option('--vm-size <size>', 'VM size', 'Standard_D4s_v5')
    .option('--mode <mode>', 'System or User', 'User')
    .option('--labels <k=v,...>', 'node labels (repeatable)', collect)
    .option('--node-taints <key=value:Effect>', 'node taint (repeatable)', collect)
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(lazy(env, 'add-pool', true));

  aks
    .command('upgrade-pool <pool>')
    .description('upgrade a pool node by node (az aks nodepool upgrade); --rewrite-identities drops the pod identities from its VMSS as seen in Azure/AKS#1650')
    .option('--rewrite-identities', 'leave only the kubelet and add-on identities on the VMSS')
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(lazy(env, 'upgrade-pool', true));

  aks
    .command('scale-pool <pool>')
    .description('scale a pool (az aks nodepool scale)')
    .requiredOption('--count <n>', 'nodes')
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(lazy(env, 'scale-pool', true));

  aks
    .command('recreate-identity <name>')
    .description('delete a user-assigned identity and create it again under the same name: new client and principal ids, same resource id')
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(lazy(env, 'recreate-identity', true));

  aks
    .command('reinstall-standard')
    .description('a helm upgrade with the old standard-mode values: NMI back to standard mode and MIC back')
    .option('--no-mic', 'leave MIC out (only NMI is reverted)')
    .option('--no-nmi', 'leave NMI as it is (only MIC comes back)')
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(lazy(env, 'reinstall-standard', false));
}
