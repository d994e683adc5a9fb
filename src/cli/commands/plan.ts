import { writeFileAtomic } from '../../engine/atomic-file.ts';
import { EXIT } from '../../engine/errors.ts';
import { hasChanges } from '../../engine/plan.ts';
import { pathsFor } from '../context.ts';
import type { CommandModule } from './index.ts';
import { nmiRolloutOptions } from './apply.ts';
import { renderData, renderPlanMarkdown, renderPlanTable } from '../render.ts';
import { resolve } from 'node:path';

/** `plan`: every step's actions and blockers, read-only. */
export const planCommand: CommandModule = {
  name: 'plan',
  register(program, env) {
    program
      .command('plan')
      .description('show what every step would change, and every blocker, without changing anything')
      .option('--out <file>', 'save the plan (JSON) for `apply --plan <file>`')
      .option('--nmi-rollout <strategy>', 'nmi-managed: plan the in-place or the drain rollout (as apply --nmi-rollout)')
      .option('--nmi-max-unavailable <n|p%>', 'nmi-managed: nodes whose NMI restarts at once (as apply --nmi-max-unavailable)')
      .option('--drain-force', 'plan as apply --drain-force would run')
      .option('--delete-emptydir-data', 'plan as apply --delete-emptydir-data would run')
      .option('--detailed-exitcode', 'exit 0 when there is nothing to do, 2 when changes are pending, 4 on blockers')
      .action(async (opts: { out?: string; detailedExitcode?: boolean; nmiRollout?: string; nmiMaxUnavailable?: string; drainForce?: boolean; deleteEmptydirData?: boolean }, cmd) => {
        const globals = env.globals(cmd);
        if (opts.out !== undefined && opts.out.trim() === '') env.usage('--out: the path is empty.', 'Give a file to write the plan to, e.g. --out plan.json.');
        const stepOptions = { ...nmiRolloutOptions(opts, globals.stepTimeoutMs), ...(opts.drainForce ? { drainForce: true } : {}), ...(opts.deleteEmptydirData ? { deleteEmptyDirData: true } : {}) };
        await env.withRuntime(globals, 'none', async (runtime, signal) => {
          const runner = env.runner(runtime, globals, { dryRun: 'none', signal, stepOptions });
          const plan = await runner.plan();
          const { journalPath } = pathsFor(globals, runtime.cluster);
          if (opts.out) {
            await writeFileAtomic(resolve(globals.cwd, opts.out), `${JSON.stringify(plan, null, 2)}\n`, { mode: 0o600 });
            env.err(`Saved the plan to ${opts.out}. Apply exactly it with: podid-migrate apply --plan ${opts.out}\n`);
          }
          if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, plan));
          else if (globals.output === 'markdown') env.out(renderPlanMarkdown(plan));
          else env.out(renderPlanTable(plan, env.paint(globals), journalPath));
          if (opts.detailedExitcode) {
            env.exitCode = plan.totals.blockers > 0 ? EXIT.blockers : hasChanges(plan) ? EXIT.changes : EXIT.ok;
          }
        });
      });
  },
};
