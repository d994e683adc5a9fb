import { PreconditionError, UsageError } from '../../engine/errors.ts';
import { stepFlag } from '../options.ts';
import { runWithProgress } from '../progress.ts';
import { renderData } from '../render.ts';
import { envelope } from '../documents.ts';
import { renderRunResult, runResultBody } from '../run-result.ts';
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';

/** `rollback`: undo what the journal recorded, newest step first. */
export async function run(env: CliEnv, flags: { step?: string; to?: string; all?: boolean; yes?: boolean }, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  const step = stepFlag('--step', flags.step, globals.runbook);
  const to = stepFlag('--to', flags.to, globals.runbook);
  if ([step, to, flags.all].filter(Boolean).length !== 1) {
    throw new UsageError('rollback needs exactly one of --step ID, --to ID or --all.', 'e.g. `podid-migrate rollback --step drain`, `--to assign` (assign and every later step), or `--all`.');
  }
  await env.withRuntime(globals, 'none', async (runtime, signal) => {
    const from = flags.all ? 0 : runtime.steps.findIndex((s) => s.id === (step ?? to));
    const range = (step ? runtime.steps.filter((s) => s.id === step) : runtime.steps.slice(from)).slice().reverse();
    if (!(flags.yes || env.ci)) {
      if (!env.interactive) throw new PreconditionError('rollback changes the cluster and needs confirmation, but there is no terminal to ask on.', 'Pass --yes (or set CI=true), or run it from a terminal.');
      if (!(await env.confirm(`Roll back ${range.map((s) => s.id).join(', ')} on cluster ${runtime.cluster.name}?`))) {
        env.err('Rollback cancelled; nothing was changed.\n');
        return;
      }
    }
    const result = await runWithProgress(range, { stderr: env.deps.stderr, animated: env.animated, verbose: globals.verbose, verb: 'rollback' }, (events) =>
      env.runner(runtime, globals, { dryRun: 'none', signal, events }).rollback({ step, to, all: flags.all }),
    );
    if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, envelope('rollback', runResultBody(result, 'none'))));
    else env.out(renderRunResult(result, env.paint(globals), 'rollback', 'none'));
  });
}
