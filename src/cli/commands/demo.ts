/**
 * `podid-migrate demo`: the whole migration against the embedded sandbox, in one command.
 *
 * Starts the sandbox (default scenario, batch churn on), runs the `inventory` step, prints the
 * plan of the remaining steps, applies every step through the same runner and listr2 progress
 * view as `apply` (progress on stderr), then prints a report: per step what changed, the checks
 * that passed, Kubernetes and ARM calls and time, and the sandbox's outage meter. The sandbox
 * runs in this process and stops at the end; with `--keep` it runs as the detached daemon of
 * `sandbox up` instead (so it outlives this command) and the report says how to look at it.
 *
 * Exit code: 0 when every step was applied and checked, otherwise the failing step's code.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { UsageError, PreconditionError } from '../../engine/errors.ts';
import type { ClusterIdentity } from '../../engine/journal.ts';
import { Runner, formatDuration, type RunnerEvents, type StepRunResult } from '../../engine/runner.ts';
import type { StepId, StepRegistry } from '../../engine/step.ts';
import type { CallCounts } from '../../kube/call-counter.ts';
import type { OutageReport } from '../../sandbox/podidentity/outage-meter.ts';
import type { Paint } from '../io.ts';
import { runWithProgress } from '../progress.ts';
import { renderPlanTable, table } from '../render.ts';
import type { CommandModule } from './index.ts';

interface DemoFlags {
  scenario?: string;
  timeScale?: string;
  keep?: boolean;
  dir?: string;
  churn: boolean;
}

/** Where `--keep` leaves the sandbox's client files, journal and inventory. */
export const DEMO_KEEP_DIR = '.sandbox-demo';

/** Per-step cost, from the gateways' call counters around each step. */
export interface StepCost {
  kube: number;
  arm: number;
  armWrites: number;
}

/** What the demo reports at the end (also what tests read). */
export interface DemoReport {
  steps: (StepRunResult & { cost: StepCost })[];
  totalMs: number;
  outage: OutageReport;
  dir: string;
  kept: boolean;
}

/** The sandbox the demo runs against: in this process, or the detached daemon (`--keep`). */
interface DemoSandbox {
  kubeconfig: string;
  armEnv: Record<string, string>;
  aksResourceId: string;
  subscriptionId: string;
  clusterName: string;
  timeScale: number;
  envFile: string;
  outage(): Promise<OutageReport>;
  stop(): Promise<void>;
}

function parseTimeScale(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || n > 1000) throw new UsageError(`--time-scale: "${raw}" is not a number in (0, 1000].`, 'Pass e.g. --time-scale 10 (ten simulated seconds per real second).');
  return n;
}

async function startInProcess(flags: DemoFlags, dir: string, progress: (m: string) => void): Promise<DemoSandbox> {
  const { Sandbox } = await import('../../sandbox/sandbox.ts');
  const { loadScenarioFile, DEFAULT_SCENARIO_PATH, ScenarioError } = await import('../../sandbox/scenario.ts');
  let scenario;
  try {
    scenario = loadScenarioFile(resolve(flags.scenario ?? DEFAULT_SCENARIO_PATH));
  } catch (e) {
    if (e instanceof ScenarioError) throw new UsageError(e.message, e.hint);
    throw e;
  }
  const sb = await Sandbox.start({ scenario, timeScale: parseTimeScale(flags.timeScale), churn: flags.churn });
  try {
    progress(`sandbox "${scenario.name}" starting (${sb.clock.timeScale}x)`);
    await sb.waitReady(120_000);
  } catch (e) {
    await sb.stop();
    throw e;
  }
  const files = sb.writeClientFiles(join(dir, 'sandbox'));
  return {
    kubeconfig: files.kubeconfig,
    armEnv: { PODID_MIGRATE_ARM_ENDPOINT: sb.armUrl, PODID_MIGRATE_ARM_TOKEN_FILE: files.armTokenFile, PODID_MIGRATE_CA_FILE: files.caFile },
    aksResourceId: sb.aksResourceId,
    subscriptionId: scenario.subscriptionId,
    clusterName: scenario.cluster.name,
    timeScale: sb.clock.timeScale,
    envFile: files.envFile,
    outage: async () => sb.meter.report(),
    stop: () => sb.stop(),
  };
}

async function startDetached(flags: DemoFlags, dir: string, progress: (m: string) => void): Promise<DemoSandbox> {
  const { sandboxUp, controlRequest, sandboxDown } = await import('../../sandbox/lifecycle.ts');
  const st = await sandboxUp({ dir, scenario: flags.scenario, timeScale: parseTimeScale(flags.timeScale), churn: flags.churn, onProgress: progress });
  const files = st.files!;
  const sub = /^\/subscriptions\/([^/]+)\//.exec(st.aksResourceId ?? '')?.[1];
  if (!st.aksResourceId || !sub) {
    await sandboxDown(dir);
    throw new PreconditionError('the sandbox daemon did not report its AKS resource id.', `See ${join(dir, 'sandbox.log')}.`);
  }
  return {
    kubeconfig: files.kubeconfig,
    armEnv: { PODID_MIGRATE_ARM_ENDPOINT: st.armUrl ?? '', PODID_MIGRATE_ARM_TOKEN_FILE: files.armTokenFile, PODID_MIGRATE_CA_FILE: files.caFile },
    aksResourceId: st.aksResourceId,
    subscriptionId: sub,
    clusterName: st.aksResourceId.split('/').pop()!,
    timeScale: st.timeScale ?? 10,
    envFile: join(files.dir, 'env'),
    outage: async () => ((await controlRequest(st, 'GET', '/_sandbox/status')) as { outage: OutageReport }).outage,
    // --keep: the daemon outlives the demo on purpose.
    stop: async () => {},
  };
}

function diff(after: CallCounts, before: CallCounts): { total: number; writes: number } {
  let writes = 0;
  for (const [k, n] of Object.entries(after.byKey)) {
    const d = n - (before.byKey[k] ?? 0);
    if (d > 0 && /^(PATCH|PUT|POST|DELETE|create|update|patch|delete|deletecollection)\b/i.test(k)) writes += d;
  }
  return { total: after.total - before.total, writes };
}

/** The final report as text. */
export function renderDemoReport(r: DemoReport, p: Paint, sandbox: { timeScale: number }): string {
  const lines: string[] = [];
  lines.push('');
  lines.push(p.bold(`Migration report (sandbox at ${sandbox.timeScale}x; ${formatDuration(r.totalMs)} real time)`));
  const rows = [['STEP', 'RESULT', 'TIME', 'K8S CALLS', 'ARM CALLS', 'CHECKS', 'WHAT CHANGED']];
  for (const s of r.steps) {
    rows.push([s.stepId, s.outcome, formatDuration(s.durationMs), String(s.cost.kube), `${s.cost.arm}${s.cost.armWrites ? ` (${s.cost.armWrites} writes)` : ''}`, `${s.evidence.length} passed`, s.summary]);
  }
  lines.push(table(rows).trimEnd());
  const o = r.outage;
  const nmi = o.windows.filter((w) => w.cause.startsWith('nmi-restart'));
  const other = o.windows.filter((w) => !w.cause.startsWith('nmi-restart'));
  lines.push('');
  lines.push(p.bold('Outage meter') + ` (every service pod, every simulated second, since ${o.since})`);
  lines.push(`  failing pod-seconds ${o.failingPodSeconds} over ${o.samples} samples; ${o.windows.length} failure window(s)`);
  for (const [cause, secs] of Object.entries(o.byCause).sort((a, b) => b[1] - a[1])) lines.push(`  ${String(secs).padStart(5)} pod-s  ${cause}`);
  const longest = Math.max(0, ...nmi.map((w) => w.seconds));
  if (nmi.length) lines.push(`  ${nmi.length} window(s) inside NMI restarts (the 10 s termination gap plus start-up), longest ${longest} s`);
  // In standard mode every new pod waits for MIC to assign its identity: the cluster's own
  // behaviour before the cutover, not an outage the migration caused.
  const micWaits = other.filter((w) => w.cause === 'waiting-for-mic-assignment');
  const unexpected = other.filter((w) => w.cause !== 'waiting-for-mic-assignment');
  if (micWaits.length) lines.push(`  ${micWaits.length} window(s) of new pods waiting for MIC's assignment while standard mode still ran (standard mode's usual start-up wait), longest ${Math.max(...micWaits.map((w) => w.seconds))} s`);
  if (unexpected.length) {
    lines.push(p.red(`  ${unexpected.length} window(s) with another cause:`));
    for (const w of unexpected.slice(0, 8)) lines.push(`    ${w.start} ${w.seconds} s  ${w.pod} on ${w.node}: ${w.cause}`);
  } else lines.push(p.green('  no failure caused by the migration outside NMI restart windows'));
  return lines.join('\n') + '\n';
}

/** `demo`: the full migration on the embedded sandbox. */
export const demoCommand: CommandModule = {
  name: 'demo',
  register(program, env) {
    program
      .command('demo')
      .description('run the whole migration against the embedded sandbox (start, inventory, plan, apply every step, report)')
      .option('--scenario <file>', 'sandbox scenario YAML (default: the bundled scenarios/default.yaml)')
      .option('--time-scale <x>', 'simulated seconds per real second (default: the scenario, 10)')
      .option('--no-churn', 'do not run the scenario batch churn')
      .option('--keep', `leave the sandbox running afterwards (as the background daemon of \`sandbox up\`, in --dir, default ${DEMO_KEEP_DIR})`)
      .option('--dir <dir>', 'where the sandbox client files, journal, inventory and JUnit report go (default: a temporary directory; with --keep .sandbox-demo)')
      .action(async (flags: DemoFlags, cmd) => {
        const globals = env.globals(cmd);
        parseTimeScale(flags.timeScale);
        const dir = resolve(globals.cwd, flags.dir ?? (flags.keep ? DEMO_KEEP_DIR : mkdtempSync(join(tmpdir(), 'podid-demo-'))));
        const p = env.paint(globals);
        const say = (m: string) => env.err(`${m}\n`);
        const started = Date.now();
        const sb = flags.keep ? await startDetached(flags, dir, say) : await startInProcess(flags, dir, say);
        try {
          say(`Sandbox ready: ${sb.clusterName} at ${sb.timeScale}x (files in ${dir})`);
          const report = await migrate(env, globals, sb, dir, p, started);
          env.out(renderDemoReport(report, p, sb));
          if (flags.keep) {
            env.out(
              [
                '',
                `The sandbox keeps running. To look at it:`,
                `  source ${sb.envFile}`,
                `  kubectl get nodes; kubectl get pods -A; kubectl get azureassignedidentities -A`,
                `  podid-migrate status --journal ${join(dir, 'journal.json')}`,
                `  podid-migrate sandbox status --dir ${dir}`,
                `Stop it with: podid-migrate sandbox down --dir ${dir}`,
                '',
              ].join('\n'),
            );
          }
        } finally {
          await sb.stop();
        }
      });
  },
};

async function migrate(env: Parameters<CommandModule['register']>[1], globals: ReturnType<Parameters<CommandModule['register']>[1]['globals']>, sb: DemoSandbox, dir: string, p: Paint, started: number): Promise<DemoReport> {
  const kubeModule = await import('../../kube/index.ts');
  const azureModule = await import('../../azure/index.ts');
  const { STEPS } = await import('../../steps/registry.ts');
  const cliKube = kubeModule.createKubeGateway({ kubeconfig: sb.kubeconfig });
  const info = await cliKube.clusterInfo();
  // The same read snapshot wiring as every other command (src/cli/context.ts).
  const reads = new kubeModule.ReadSnapshot();
  const kube = kubeModule.snapshotKubeGateway(cliKube, reads);
  const azure = azureModule.snapshotAzureGateway(azureModule.createAzureGateway({ subscriptionId: sb.subscriptionId, connection: azureModule.resolveAzureConnection(sb.armEnv) }), reads);
  const cluster: ClusterIdentity = { name: sb.clusterName, apiServer: info.apiServer, kubeSystemUid: info.kubeSystemUid, subscriptionId: sb.subscriptionId, aksResourceId: sb.aksResourceId };
  const journalPath = join(dir, 'journal.json');
  const inventoryPath = join(dir, 'inventory.yaml');
  const costs = new Map<StepId, StepCost>();
  const marks = new Map<StepId, { kube: CallCounts; arm: CallCounts }>();
  const meter = (inner: RunnerEvents): RunnerEvents => ({
    ...inner,
    stepStart: (id, title, phase) => {
      if (!marks.has(id)) marks.set(id, { kube: kube.calls(), arm: azure.calls() });
      inner.stepStart?.(id, title, phase);
    },
    stepEnd: (result) => {
      const m = marks.get(result.stepId);
      if (m) {
        const k = diff(kube.calls(), m.kube);
        const a = diff(azure.calls(), m.arm);
        costs.set(result.stepId, { kube: k.total, arm: a.total, armWrites: a.writes });
      }
      inner.stepEnd?.(result);
    },
  });
  const runner = (events?: RunnerEvents) =>
    new Runner({
      steps: STEPS as StepRegistry,
      kube,
      azure,
      cluster,
      journalPath,
      inventoryPath,
      options: { aksId: sb.aksResourceId, junitPath: join(dir, 'junit.xml'), kubeconfig: sb.kubeconfig },
      stepTimeoutMs: globals.stepTimeoutMs,
      events,
      verbose: globals.verbose,
      readScope: (phase, call) => reads.during(phase, call),
    });
  const progress = { stderr: env.deps.stderr, animated: env.animated, verbose: globals.verbose, verb: 'apply' as const };
  const all: StepRunResult[] = [];

  const first = STEPS.slice(0, 1);
  const inv = await runWithProgress(first, progress, (events) => runner(meter(events)).apply({ step: 'inventory' }));
  all.push(...inv.steps);

  const plan = await runner().plan();
  env.out(`${renderPlanTable(plan, p, journalPath)}\n`);

  const rest = STEPS.slice(1);
  const run = await runWithProgress(rest, progress, (events) => runner(meter(events)).apply());
  all.push(...run.steps.filter((s) => s.stepId !== 'inventory'));
  return {
    steps: all.map((s) => ({ ...s, cost: costs.get(s.stepId) ?? { kube: 0, arm: 0, armWrites: 0 } })),
    totalMs: Date.now() - started,
    outage: await sb.outage(),
    dir,
    kept: false,
  };
}
