import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { PreconditionError, UsageError } from '../../engine/errors.ts';
import { invalidSavedPlan, type RunbookPlan } from '../../engine/plan.ts';
import type { DryRunMode, StepId } from '../../engine/step.ts';
import { pathsFor } from '../context.ts';
import { durationFlag, stepFlag } from '../options.ts';
import { runWithProgress } from '../progress.ts';
import { renderData, renderRunSummary } from '../render.ts';
import { formatDryRunEntry, type DryRunEntry } from '../../kube/dry-run.ts';
import type { CommandModule } from './index.ts';
import { parseMaxUnavailable, parseNmiRollout } from '../../steps/lib/nmi-rollout.ts';

interface ApplyFlags {
  step?: string;
  to?: string;
  plan?: string;
  yes?: boolean;
  dryRun?: string;
  drainTimeout?: string;
  drainStrategy?: string;
  drainForce?: boolean;
  testTimeout?: string;
  deleteCrd?: boolean;
  junit?: string;
  upgradeInstances?: boolean;
  nmiRollout?: string;
  nmiMaxUnavailable?: string;
  parallelPools?: string;
  deleteEmptydirData?: boolean;
}

const DRAIN_STRATEGIES = ['reimage', 'delete', 'none'];

/** `apply`: run pending steps in order, each followed by its check. */
export const applyCommand: CommandModule = {
  name: 'apply',
  register(program, env) {
    program
      .command('apply')
      .description('apply pending steps in order (each one checked before the next starts)')
      .option('--step <id>', 'apply only this step (every earlier step must be checked)')
      .option('--to <id>', 'apply every pending step up to and including this one')
      .option('--plan <file>', 'apply exactly a plan saved by `plan --out`; refused if the cluster has changed since')
      .option('-y, --yes', 'do not ask for confirmation')
      .option('--dry-run <mode>', 'client: no write call at all; server: Kubernetes writes with dryRun=All, Azure writes printed. No journal, no lock')
      .option('--drain-timeout <duration>', 'drain: how long evictions may be retried per node (e.g. 15m)')
      .option('--drain-strategy <strategy>', 'drain: how the drained node is replaced: reimage, delete or none')
      .option('--delete-emptydir-data', 'drain and the NMI drain rollout: also evict pods with emptyDir volumes, whose data is lost (like kubectl drain)')
      .option('--parallel-pools <n>', 'drain: how many pools are drained at once, one node each (default: all)')
      .option('--drain-force', 'drain: also delete pods no controller will re-create (like kubectl drain --force)')
      .option('--nmi-rollout <strategy>', 'nmi-managed: in-place (rolling update of the DaemonSet) or drain (each node emptied of service pods before its NMI restarts)')
      .option('--nmi-max-unavailable <n|p%>', 'nmi-managed: nodes whose NMI restarts at once (in-place: in the cluster; drain: per pool), like a DaemonSet\'s maxUnavailable (default 1)')
      .option('--test-timeout <duration>', 'test: how long each test case may retry (default 80s, NMI\'s own wait)')
      .option('--delete-crd', 'cleanup: also delete the AzureAssignedIdentity CRD')
      .option('--upgrade-instances', 'assign: also manualupgrade scale set instances not on the latest model (off: an added identity needs no instance update, and an upgrade rolls out other pending model changes too)')
      .option('--junit <file>', 'test: write the test case results as JUnit XML')
      .action(async (flags: ApplyFlags, cmd) => {
        const globals = env.globals(cmd);
        const step = stepFlag('--step', flags.step);
        const to = stepFlag('--to', flags.to);
        if (step && to) throw new UsageError('--step and --to cannot be combined.', 'Use --step ID for one step, or --to ID for every pending step up to it.');
        let dryRun: DryRunMode = 'none';
        if (flags.dryRun !== undefined) {
          if (flags.dryRun !== 'client' && flags.dryRun !== 'server') throw new UsageError(`--dry-run: "${flags.dryRun}" is not a mode.`, 'Use --dry-run=client (no write call at all) or --dry-run=server (Kubernetes writes with dryRun=All).');
          dryRun = flags.dryRun;
        }
        if (dryRun !== 'none' && flags.plan) throw new UsageError('--plan and --dry-run cannot be combined.', 'A dry run plans afresh; drop one of them.');
        if (flags.drainStrategy !== undefined && !DRAIN_STRATEGIES.includes(flags.drainStrategy)) {
          throw new UsageError(`--drain-strategy: "${flags.drainStrategy}" is not a strategy.`, `Use one of: ${DRAIN_STRATEGIES.join(', ')}.`);
        }
        const stepOptions: Record<string, unknown> = {};
        const drainTimeoutMs = durationFlag('--drain-timeout', flags.drainTimeout);
        if (drainTimeoutMs !== undefined) stepOptions.drainTimeoutMs = drainTimeoutMs;
        if (flags.drainStrategy) stepOptions.drainStrategy = flags.drainStrategy;
        if (flags.drainForce) stepOptions.drainForce = true;
        if (flags.deleteEmptydirData) stepOptions.deleteEmptyDirData = true;
        Object.assign(stepOptions, nmiRolloutOptions(flags, globals.stepTimeoutMs));
        if (flags.parallelPools !== undefined) {
          if (!/^[1-9]\d*$/.test(flags.parallelPools)) throw new UsageError(`--parallel-pools: "${flags.parallelPools}" is not a positive number.`, 'Give how many pools may be drained at once, e.g. --parallel-pools 2 (default: all).');
          stepOptions.parallelPools = Number(flags.parallelPools);
        }
        const testTimeoutMs = durationFlag('--test-timeout', flags.testTimeout);
        if (testTimeoutMs !== undefined) stepOptions.testTimeoutMs = testTimeoutMs;
        if (flags.deleteCrd) stepOptions.deleteCrd = true;
        if (flags.upgradeInstances) stepOptions.upgradeInstances = true;
        if (flags.junit) stepOptions.junitPath = resolve(globals.cwd, flags.junit);
        let savedPlan: RunbookPlan | undefined;
        if (flags.plan) savedPlan = await readSavedPlan(resolve(globals.cwd, flags.plan), flags.plan);

        await env.withRuntime(globals, dryRun, async (runtime, signal) => {
          const targetIndex = runtime.steps.findIndex((s) => s.id === (step ?? to));
          const range = step ? runtime.steps.filter((s) => s.id === step) : runtime.steps.slice(0, to ? targetIndex + 1 : undefined);
          if (dryRun === 'none' && !(flags.yes || env.ci)) {
            if (!env.interactive) {
              throw new PreconditionError('apply changes the cluster and needs confirmation, but there is no terminal to ask on.', 'Pass --yes (or set CI=true) to apply without a prompt, or run it from a terminal.');
            }
            const { journalPath } = pathsFor(globals, runtime.cluster);
            const ok = await env.confirm(`Apply ${range.map((s) => s.id).join(', ')} to cluster ${runtime.cluster.name} (journal ${journalPath})?`);
            if (!ok) {
              env.err('Apply cancelled; nothing was changed.\n');
              return;
            }
          }
          const result = await runWithProgress(range, { stderr: env.deps.stderr, animated: env.animated, verbose: globals.verbose, verb: 'apply' }, (events) =>
            env.runner(runtime, globals, { dryRun, signal, stepOptions, events }).apply({ step: step as StepId | undefined, to: to as StepId | undefined, savedPlan }),
          );
          const writes = dryRun === 'none' ? undefined : (runtime.recordedWrites?.() ?? []);
          if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, { dryRun, ...result, journal: dryRun === 'none' ? result.journal : undefined, ...(writes ? { writes } : {}) }));
          else {
            env.err(renderRunSummary(result, env.paint(globals), 'apply', dryRun));
            if (writes) env.out(renderDryRunWrites(writes, dryRun));
          }
        });
      });
  },
};

async function readSavedPlan(path: string, flagValue: string): Promise<RunbookPlan> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--plan: cannot read ${flagValue} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).`, 'Give a file written by `podid-migrate plan --out <file>`.');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--plan: ${flagValue} is not JSON (${(error as Error).message}).`, 'Give a file written by `podid-migrate plan --out <file>`.');
  }
  const problem = invalidSavedPlan(value);
  if (problem) throw new UsageError(`--plan: ${flagValue} is not a saved plan: ${problem}.`, 'Give a file written by `podid-migrate plan --out <file>`.');
  return value as RunbookPlan;
}

/**
 * The writes a dry run held back or sent with `dryRun=All`, one per line, on stdout: what CI
 * reviews. Bodies are JSON and never carry credentials (the gateways record no headers).
 */
export function renderDryRunWrites(writes: readonly DryRunEntry[], mode: DryRunMode): string {
  if (writes.length === 0) return `Dry run (${mode}): no write would be made.\n`;
  const kube = writes.filter((w) => w.api === 'kube');
  const arm = writes.filter((w) => w.api === 'arm');
  const lines = [`Dry run (${mode}): ${kube.length} Kubernetes and ${arm.length} Azure write(s).`];
  for (const w of [...kube, ...arm]) lines.push(`  ${w.api === 'kube' ? 'kubernetes' : 'azure     '}  ${w.description ? `${w.description}: ` : ''}${formatDryRunEntry(w)}`);
  return lines.join('\n') + '\n';
}

/** The step options of `--nmi-rollout` / `--nmi-max-unavailable` (validated) and `--step-timeout` (for the plan's duration warning). */
export function nmiRolloutOptions(flags: { nmiRollout?: string; nmiMaxUnavailable?: string }, stepTimeoutMs: number | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const rollout = parseNmiRollout(flags.nmiRollout);
  if (rollout) out.nmiRollout = rollout;
  const max = parseMaxUnavailable(flags.nmiMaxUnavailable);
  if (max !== undefined) out.nmiMaxUnavailable = max;
  if (stepTimeoutMs !== undefined) out.stepTimeoutMs = stepTimeoutMs;
  return out;
}
