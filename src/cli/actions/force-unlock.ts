import { forceUnlock } from '../../engine/lock.ts';
import { commandPrefix } from '../../engine/step.ts';
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';

/** `force-unlock <id>`: remove a lock left by a run that is gone, only if the id matches. */
export async function run(env: CliEnv, id: string, _opts: unknown, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  const path = await env.journalPath(globals);
  const removed = await forceUnlock(path, id);
  env.err(`Removed lock ${removed.id} (${removed.operation} by ${removed.owner}, pid ${removed.pid}, since ${removed.createdAt}).\nThe journal ${path} records how far that run got: ${commandPrefix(globals.runbook)} status\n`);
}
