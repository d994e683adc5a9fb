import { writeFileAtomic } from '../../engine/atomic-file.ts';
import { EXIT } from '../../engine/errors.ts';
import { hasChanges } from '../../engine/plan.ts';
import { pathsFor, validateInputsBeforeConnecting } from '../context.ts';
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';
import { envelope } from '../documents.ts';
import { renderData, renderPlanMarkdown, renderPlanTable } from '../render.ts';
import { resolve } from 'node:path';
import { nmiRolloutOptions } from './apply.ts';

/** `plan`: every step's actions and blockers, read-only. */
export async function run(env: CliEnv, opts: { out?: string; detailedExitcode?: boolean; nmiRollout?: string; nmiMaxUnavailable?: string; drainForce?: boolean; deleteEmptydirData?: boolean; uninstallPodIdentity?: boolean }, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  if (opts.out !== undefined && opts.out.trim() === '') env.usage('--out: the path is empty.', 'Give a file to write the plan to, e.g. --out plan.json.');
  const stepOptions = { ...nmiRolloutOptions(opts, globals.stepTimeoutMs), ...(opts.drainForce ? { drainForce: true } : {}), ...(opts.deleteEmptydirData ? { deleteEmptyDirData: true } : {}), ...(opts.uninstallPodIdentity ? { uninstallPodIdentity: true } : {}) };
  await validateInputsBeforeConnecting(globals);
  await env.withRuntime(globals, 'none', async (runtime, signal) => {
    const runner = env.runner(runtime, globals, { dryRun: 'none', signal, stepOptions });
    const plan = await runner.plan();
    const { journalPath } = pathsFor(globals, runtime.cluster);
    if (opts.out) {
      await writeFileAtomic(resolve(globals.cwd, opts.out), `${JSON.stringify(plan, null, 2)}\n`, { mode: 0o600 });
      env.err(`Saved the plan to ${opts.out}. Apply exactly it with: podid-migrate apply --plan ${opts.out}\n`);
    }
    if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, envelope('plan', plan)));
    else if (globals.output === 'markdown') env.out(renderPlanMarkdown(plan));
    else env.out(renderPlanTable(plan, env.paint(globals), journalPath));
    // Blockers fail the command whatever the flags: a CI gate on `plan` must not pass a
    // cluster that cannot be migrated.
    if (plan.totals.blockers > 0) env.exitCode = EXIT.blockers;
    else if (opts.detailedExitcode) env.exitCode = hasChanges(plan) ? EXIT.changes : EXIT.ok;
  });
}
