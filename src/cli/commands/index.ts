/**
 * Command registration. Each module here declares one sub-command (name, description, flags)
 * and nothing else: its work lives in `src/cli/actions/<name>.ts`, loaded by {@link lazyAction}
 * only when that command runs, so `--help`, completion and every other command start without
 * importing the SDKs, the sandbox, listr2, ajv or yaml.
 *
 * Rule for a registration module: import only `commander` types, `../options.ts`,
 * `../../engine/step.ts` (step ids) and this file. `test/cli/lazy-loading.test.ts` checks it.
 */
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';
import { applyCommand } from './apply.ts';
import { completionCommand } from './completion.ts';
import { demoCommand } from './demo.ts';
import { driftCommand } from './drift.ts';
import { forceUnlockCommand } from './force-unlock.ts';
import { historyCommand } from './history.ts';
import { planCommand } from './plan.ts';
import { rollbackCommand } from './rollback.ts';
import { sandboxCommand } from './sandbox.ts';
import { statusCommand } from './status.ts';

/** A sub-command: registers itself; its action sets `env.exitCode` or throws a typed error. */
export interface CommandModule {
  name: string;
  register(program: Command, env: CliEnv): void;
}

/** An action module: `run` gets the environment, then commander's action arguments. */
export interface ActionModule {
  // Commander passes the positional arguments, the flags and the Command, in that order.
  run(env: CliEnv, ...args: any[]): Promise<void>;
}

/**
 * A commander action that imports its implementation when the command runs, e.g.
 * `.action(lazyAction(env, () => import('../actions/plan.ts')))`.
 */
export function lazyAction(env: CliEnv, load: () => Promise<ActionModule>): (...args: unknown[]) => Promise<void> {
  return async (...args) => (await load()).run(env, ...args);
}

/** The runbook commands, in help order. */
export const CORE_COMMANDS: CommandModule[] = [planCommand, applyCommand, rollbackCommand, statusCommand, historyCommand, forceUnlockCommand, driftCommand];

/** Commands contributed by other parts of the package (e.g. `sandbox`, `demo`); registered after the core ones. */
export const EXTRA_COMMANDS: CommandModule[] = [sandboxCommand, demoCommand, completionCommand];
