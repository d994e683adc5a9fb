import { resolve } from 'node:path';
import { PreconditionError, UsageError } from '../../engine/errors.ts';
import type { RunbookPlan } from '../../engine/plan.ts';
import { readValidatedSavedPlan } from '../../engine/inputs.ts';
import type { DryRunMode, StepId } from '../../engine/step.ts';
import { pathsFor, validateInputsBeforeConnecting } from '../context.ts';
import { durationFlag, stepFlag } from '../options.ts';
import { runWithProgress } from '../progress.ts';
import { renderData } from '../render.ts';
import { envelope } from '../documents.ts';
import { renderRunResult, runResultBody } from '../run-result.ts';
import { formatDryRunEntry, type DryRunEntry } from '../../kube/dry-run.ts';
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';
import { DRAIN_STRATEGIES } from '../commands/apply.ts';
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
  uninstallPodIdentity?: boolean;
  junit?: string;
  upgradeInstances?: boolean;
  nmiRollout?: string;
  nmiMaxUnavailable?: string;
  parallelPools?: string;
  deleteEmptydirData?: boolean;
}


/** `apply`: run pending steps in order, each followed by its check. */
export async function run(env: CliEnv, flags: ApplyFlags, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  const step = stepFlag('--step', flags.step, globals.runbook);
  const to = stepFlag('--to', flags.to, globals.runbook);
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
  if (flags.uninstallPodIdentity) {
    if (globals.runbook !== 'workload-identity') throw new UsageError('--uninstall-pod-identity is a flag of the workload identity runbook.', 'Add --runbook workload-identity, or drop it.');
    stepOptions.uninstallPodIdentity = true;
  }
  if (flags.upgradeInstances) stepOptions.upgradeInstances = true;
  if (flags.junit) stepOptions.junitPath = resolve(globals.cwd, flags.junit);
  let savedPlan: RunbookPlan | undefined;
  if (flags.plan) savedPlan = await readSavedPlan(resolve(globals.cwd, flags.plan), flags.plan);

  await validateInputsBeforeConnecting(globals);
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
    if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, envelope('apply', runResultBody(result, dryRun, writes))));
    else {
      env.out(renderRunResult(result, env.paint(globals), 'apply', dryRun));
      if (writes) env.out(renderDryRunWrites(writes, dryRun));
    }
  });
}

/** Reads and validates a saved plan before anything connects. @throws InvalidInputError naming every bad field */
async function readSavedPlan(path: string, flagValue: string): Promise<RunbookPlan> {
  return (await readValidatedSavedPlan(path, flagValue)) as RunbookPlan;
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
