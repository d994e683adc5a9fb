/**
 * Command modules. Each registers one sub-command on the program. Other modules (sandbox, demo)
 * add theirs by appending to {@link EXTRA_COMMANDS} or through `main(argv, { extraCommands })`.
 */
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';
import { applyCommand } from './apply.ts';
import { forceUnlockCommand } from './force-unlock.ts';
import { historyCommand } from './history.ts';
import { planCommand } from './plan.ts';
import { rollbackCommand } from './rollback.ts';
import { sandboxCommand } from './sandbox.ts';
import { statusCommand } from './status.ts';
import { demoCommand } from './demo.ts';

/** A sub-command: registers itself; its action sets `env.exitCode` or throws a typed error. */
export interface CommandModule {
  name: string;
  register(program: Command, env: CliEnv): void;
}

/** The runbook commands, in help order. */
export const CORE_COMMANDS: CommandModule[] = [planCommand, applyCommand, rollbackCommand, statusCommand, historyCommand, forceUnlockCommand];

/** Commands contributed by other parts of the package (e.g. `sandbox`, `demo`); registered after the core ones. */
export const EXTRA_COMMANDS: CommandModule[] = [sandboxCommand, demoCommand];
