/**
 * `podid-migrate demo`: the whole migration against the embedded sandbox, in one command.
 *
 * Starts the sandbox (default scenario, batch churn on), runs the `inventory` step, prints the
 * plan of the remaining steps, applies every step through the same runner and listr2 progress
 * view as `apply` (progress on stderr), then prints a report: per step what changed, the checks
 * that passed, Kubernetes and ARM calls and time, and the sandbox's outage meter. The sandbox
 * runs in this process and stops at the end, deleting its `kubeconfig` and `arm-token`; with `--keep` it runs as the detached daemon of
 * `sandbox up` instead (so it outlives this command) and the report says how to look at it.
 *
 * Exit code: 0 when every step was applied and checked, otherwise the failing step's code.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError, PreconditionError } from '../../engine/errors.ts';
import { parseJournal, type ClusterIdentity, type JournalDocument, type StepEntry } from '../../engine/journal.ts';
import { Runner, formatDuration, type RunnerEvents, type StepRunResult } from '../../engine/runner.ts';
import type { ExecutorRegistry, RunbookId, StepId, StepRegistry } from '../../engine/step.ts';
import type { CallCounts } from '../../kube/call-counter.ts';
import type { OutageReport } from '../../sandbox/podidentity/outage-meter.ts';
import type { SandboxWorkerData, SandboxWorkerInfo } from '../../sandbox/worker.ts';
import type { Paint } from '../io.ts';
import { runWithProgress } from '../progress.ts';
import { renderData, renderPlanTable, table } from '../render.ts';
import { envelope } from '../documents.ts';
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';
import { DEMO_KEEP_DIR } from '../commands/demo.ts';

interface DemoFlags {
  scenario?: string;
  timeScale?: string;
  keep?: boolean;
  dir?: string;
  churn: boolean;
  procedure?: string;
  observe?: string;
  operatorPause?: string;
  from?: string;
  uninstallPodIdentity?: boolean;
}

/** With `--runbook workload-identity`: where workload identity starts from (`--from`). */
export const WORKLOAD_IDENTITY_STARTS = ['managed', 'standard'] as const;
export type WorkloadIdentityStart = (typeof WORKLOAD_IDENTITY_STARTS)[number];

/** The runbooks the demo runs back to back, and how. */
export interface DemoRunbooks {
  runbook: RunbookId;
  /** `workload-identity` only: `managed` runs the managed-mode runbook first, `standard` only its inventory step. */
  from?: WorkloadIdentityStart;
  uninstallPodIdentity: boolean;
}

/** Validates `--from` and `--uninstall-pod-identity` against the runbook. */
export function parseRunbooks(runbook: RunbookId, flags: Pick<DemoFlags, 'from' | 'uninstallPodIdentity' | 'procedure'>): DemoRunbooks {
  if (runbook !== 'workload-identity') {
    if (flags.from !== undefined || flags.uninstallPodIdentity) throw new UsageError('--from and --uninstall-pod-identity apply to --runbook workload-identity only.', 'Add --runbook workload-identity, or drop them.');
    return { runbook, uninstallPodIdentity: false };
  }
  const from = flags.from ?? 'managed';
  if (!(WORKLOAD_IDENTITY_STARTS as readonly string[]).includes(from)) throw new UsageError(`--from: "${flags.from}" is not a starting mode.`, `Use one of: ${WORKLOAD_IDENTITY_STARTS.join(', ')}.`);
  if (flags.procedure === 'upstream') throw new UsageError('--procedure upstream replays the documented managed-mode procedure; it does not go on to workload identity.', 'Drop --procedure, or drop --runbook workload-identity.');
  return { runbook, from: from as WorkloadIdentityStart, uninstallPodIdentity: flags.uninstallPodIdentity === true };
}

/** Simulated seconds from a flag value; `undefined` when absent. */
function parseSimSeconds(flag: string, raw: string | undefined): number {
  if (raw === undefined) return 0;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || n > 86_400) throw new UsageError(`${flag}: "${raw}" is not a number of seconds in [0, 86400].`, `Pass simulated seconds, e.g. ${flag} 600.`);
  return n;
}

/** How long the demo keeps measuring after the migration, and how fast the documented procedure's operator types. */
interface DemoPacing {
  /** Simulated seconds the outage meter keeps sampling after the last step (pods still failing keep counting). */
  observeSeconds: number;
  /** `upstream` only: simulated seconds between two of the doc's steps (0: run as a script). */
  operatorPauseSeconds: number;
}

/** Waits `simSeconds` of sandbox time. */
async function waitSimulated(sb: { timeScale: number }, simSeconds: number, say: (m: string) => void, what: string): Promise<void> {
  if (simSeconds <= 0) return;
  say(`${what}: ${simSeconds} simulated s (${(simSeconds / sb.timeScale).toFixed(1)} s real)`);
  await new Promise((r) => setTimeout(r, (simSeconds * 1000) / sb.timeScale));
}

/**
 * How the demo migrates: `upstream` follows the documented procedure (src/procedures/upstream.ts),
 * `in-place` is the runbook with today's rolling NMI patch, `drain` the runbook with step
 * `nmi-managed` run as `nmiRollout: 'drain'` (no service pod on a node while its NMI restarts).
 */
export const DEMO_PROCEDURES = ['upstream', 'in-place', 'drain'] as const;
export type DemoProcedure = (typeof DEMO_PROCEDURES)[number];

/** The procedure `demo` runs without `--procedure`: the runbook with its default NMI rollout (`drain`). */
export const DEFAULT_DEMO_PROCEDURE: DemoProcedure = 'drain';

/** Validates `--procedure`. */
export function parseProcedure(raw: string | undefined): DemoProcedure {
  const p = raw ?? DEFAULT_DEMO_PROCEDURE;
  if (!(DEMO_PROCEDURES as readonly string[]).includes(p)) throw new UsageError(`--procedure: "${raw}" is not a procedure.`, `Use one of: ${DEMO_PROCEDURES.join(', ')}.`);
  return p as DemoProcedure;
}

/** Per-step cost, from the gateways' call counters around each step. */
export interface StepCost {
  kube: number;
  arm: number;
  armWrites: number;
}

/** What the demo reports at the end (also what tests read). */
export interface DemoReport {
  procedure: DemoProcedure;
  /** The runbooks run (`managed-mode`, or `workload-identity` after managed mode or straight from standard mode). */
  runbooks?: DemoRunbooks;
  scenario: string;
  timeScale: number;
  pacing: DemoPacing;
  /** `state` overrides the runner's outcome (the documented procedure's phases are `done`, not checked). */
  steps: (StepRunResult & { cost: StepCost; state?: string })[];
  totalMs: number;
  outage: OutageReport;
  /** Per pool: the node the drain step replaced and how long the pool took (real seconds), from the journal. */
  drainPools: DrainPoolTiming[];
  /** Pods evicted by the runbook's steps (the journal's `evicted` results). */
  podsEvicted: number;
  dir: string;
  kept: boolean;
}

/** One pool of the drain step. */
export interface DrainPoolTiming {
  pool: string;
  node: string;
  /** Real seconds from the pool's first action intent to its last action done. */
  seconds: number;
  evicted: number;
}


/**
 * The drain step's per-pool timing from its journal entry: the step's own `poolTimings` data
 * (`[{ pool, node, seconds, evicted? }]`) when it records it, else computed from the intent and
 * done timestamps of its `pool/<pool>/...` actions, with the node from `freshNodes`.
 */
export function drainPoolsFromJournal(entry: Pick<StepEntry, 'actions' | 'data'> | undefined): DrainPoolTiming[] {
  if (!entry) return [];
  const recorded = entry.data?.poolTimings;
  if (Array.isArray(recorded)) {
    return recorded
      .filter((t): t is DrainPoolTiming => !!t && typeof t.pool === 'string' && typeof t.seconds === 'number')
      .map((t) => ({ pool: t.pool, node: String(t.node ?? ''), seconds: t.seconds, evicted: typeof t.evicted === 'number' ? t.evicted : 0 }))
      .sort((a, b) => a.pool.localeCompare(b.pool));
  }
  const fresh = (entry.data?.freshNodes ?? {}) as Record<string, string>;
  const byPool = new Map<string, { start: number; end: number; node?: string; evicted: number }>();
  for (const r of entry.actions) {
    const m = /^pool\/([^/]+)\//.exec(r.actionId);
    if (!m || r.rolledBack) continue;
    const t = byPool.get(m[1]) ?? { start: Infinity, end: -Infinity, evicted: 0 };
    t.start = Math.min(t.start, Date.parse(r.intentAt));
    if (r.doneAt) t.end = Math.max(t.end, Date.parse(r.doneAt));
    const pre = r.preState as { node?: string } | undefined;
    t.node ??= pre?.node;
    const evicted = (r.result as { evicted?: unknown } | undefined)?.evicted;
    if (r.status === 'done' && typeof evicted === 'number') t.evicted += evicted;
    byPool.set(m[1], t);
  }
  return [...byPool]
    .filter(([, t]) => Number.isFinite(t.start) && Number.isFinite(t.end))
    .map(([pool, t]) => ({ pool, node: fresh[pool] ?? t.node ?? '', seconds: Math.round(t.end - t.start) / 1000, evicted: t.evicted }))
    .sort((a, b) => a.pool.localeCompare(b.pool));
}

/** Pods evicted according to a journal: the sum of every done action's numeric `evicted` result. */
export function podsEvictedFromJournal(doc: Pick<JournalDocument, 'steps'>): number {
  let n = 0;
  for (const entry of Object.values(doc.steps)) {
    for (const r of entry?.actions ?? []) {
      const evicted = (r.result as { evicted?: unknown } | undefined)?.evicted;
      if (r.status === 'done' && !r.rolledBack && typeof evicted === 'number') n += evicted;
    }
  }
  return n;
}

/** The body of the `-o json|yaml` document (schemas/demo.schema.json; the caller adds the envelope). */
export function demoDocument(r: DemoReport, sb?: Pick<DemoSandbox, 'clusterName' | 'aksResourceId' | 'subscriptionId' | 'envFile'>, kept = false): Record<string, unknown> {
  return {
    ...(sb ? { cluster: { name: sb.clusterName, aksResourceId: sb.aksResourceId, subscriptionId: sb.subscriptionId } } : {}),
    dir: r.dir,
    kept,
    ...(kept && sb ? { envFile: sb.envFile } : {}),
    procedure: r.procedure,
    ...(r.runbooks && r.runbooks.runbook !== 'managed-mode' ? { runbook: r.runbooks.runbook, from: r.runbooks.from, uninstallPodIdentity: r.runbooks.uninstallPodIdentity } : {}),
    scenario: r.scenario,
    timeScale: r.timeScale,
    observeSeconds: r.pacing.observeSeconds,
    ...(r.procedure === 'upstream' ? { operatorPauseSeconds: r.pacing.operatorPauseSeconds } : {}),
    realSeconds: Math.round(r.totalMs) / 1000,
    steps: r.steps.map((s) => ({ id: s.stepId, title: s.title, state: s.state ?? s.outcome, summary: s.summary, checks: [...s.evidence], seconds: Math.round(s.durationMs) / 1000, kubeCalls: s.cost.kube, armCalls: s.cost.arm, armWrites: s.cost.armWrites })),
    drain: { pools: r.drainPools.map((p) => ({ pool: p.pool, node: p.node, seconds: p.seconds, evicted: p.evicted })) },
    podsEvicted: r.podsEvicted,
    outage: r.outage,
  };
}

/** The sandbox the demo runs against: in this process, or the detached daemon (`--keep`). */
interface DemoSandbox {
  kubeconfig: string;
  armEnv: Record<string, string>;
  aksResourceId: string;
  subscriptionId: string;
  clusterName: string;
  scenarioName: string;
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

/**
 * The sandbox in a worker thread of this process (see src/sandbox/worker.ts for why not on this
 * thread): it stops with the demo, and nothing outlives the process.
 */
async function startInProcess(flags: DemoFlags, dir: string, progress: (m: string) => void): Promise<DemoSandbox> {
  const { loadScenarioFile, DEFAULT_SCENARIO_PATH, ScenarioError } = await import('../../sandbox/scenario.ts');
  const { Worker } = await import('node:worker_threads');
  const scenarioFile = resolve(flags.scenario ?? DEFAULT_SCENARIO_PATH);
  let scenario;
  try {
    // Validated here, so a bad file is a usage error naming its fields before anything starts.
    scenario = loadScenarioFile(scenarioFile);
  } catch (e) {
    if (e instanceof ScenarioError) throw new UsageError(e.message, e.hint);
    throw e;
  }
  const timeScale = parseTimeScale(flags.timeScale);
  progress(`sandbox "${scenario.name}" starting (${timeScale ?? scenario.timeScale ?? 10}x)`);
  // The worker next to the sandbox modules: worker.ts from the sources, worker.js from the build.
  const here = fileURLToPath(import.meta.url);
  const entry = join(dirname(here), '..', '..', 'sandbox', `worker${extname(here)}`);
  const data: SandboxWorkerData = { scenarioFile, ...(timeScale !== undefined ? { timeScale } : {}), churn: flags.churn, dir: join(dir, 'sandbox'), readyTimeoutMs: 120_000 };
  const worker = new Worker(entry, { workerData: data });
  const waiting = new Map<number, (r: OutageReport) => void>();
  let nextId = 1;
  let stopped: (() => void) | undefined;
  const gone = new Promise<void>((r) => worker.once('exit', () => r()));
  const info = await new Promise<SandboxWorkerInfo>((ok, fail) => {
    worker.on('message', (m: { type: string; info?: SandboxWorkerInfo; message?: string; hint?: string; id?: number; report?: OutageReport }) => {
      if (m.type === 'ready') ok(m.info!);
      else if (m.type === 'failed') fail(new PreconditionError(`the sandbox failed to start: ${m.message}`, m.hint ?? 'Run it with --keep to keep its log (sandbox.log in --dir).'));
      else if (m.type === 'outage') waiting.get(m.id!)?.(m.report!);
      else if (m.type === 'stopped') stopped?.();
    });
    worker.once('error', fail);
    worker.once('exit', (code) => fail(new PreconditionError(`the sandbox stopped while starting (exit ${code}).`, 'Run it with --keep to keep its log (sandbox.log in --dir).')));
  });
  return {
    kubeconfig: info.kubeconfig,
    armEnv: { PODID_MIGRATE_ARM_ENDPOINT: info.armUrl, PODID_MIGRATE_ARM_TOKEN_FILE: info.armTokenFile, PODID_MIGRATE_CA_FILE: info.caFile },
    aksResourceId: info.aksResourceId,
    subscriptionId: info.subscriptionId,
    clusterName: info.clusterName,
    scenarioName: info.scenarioName,
    timeScale: info.timeScale,
    envFile: info.envFile,
    outage: () =>
      new Promise<OutageReport>((ok) => {
        const id = nextId++;
        waiting.set(id, (r) => {
          waiting.delete(id);
          ok(r);
        });
        worker.postMessage({ type: 'outage', id });
      }),
    // The sandbox's credentials are worthless once it stops, but a bearer token left on disk is
    // still one too many: remove them with it (the CA certificate and env file are not secret).
    stop: async () => {
      const done = new Promise<void>((r) => (stopped = r));
      worker.postMessage({ type: 'stop' });
      await Promise.race([done, gone, new Promise((r) => setTimeout(r, 15_000).unref())]);
      await worker.terminate();
      for (const secret of [info.kubeconfig, info.armTokenFile]) rmSync(secret, { force: true });
    },
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
    scenarioName: (await import('../../sandbox/scenario.ts')).loadScenarioFile(resolve(flags.scenario ?? (await import('../../sandbox/scenario.ts')).DEFAULT_SCENARIO_PATH)).name,
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
  const via = r.runbooks?.runbook === 'workload-identity' ? `, ${r.runbooks.from === 'standard' ? 'standard mode' : 'standard -> managed mode'} -> workload identity` : '';
  lines.push(p.bold(`Migration report, procedure ${r.procedure}${via} (scenario ${r.scenario}, sandbox at ${sandbox.timeScale}x; ${formatDuration(r.totalMs)} real time)`));
  const rows = [['STEP', 'RESULT', 'TIME', 'K8S CALLS', 'ARM CALLS', 'CHECKS', 'WHAT CHANGED']];
  for (const s of r.steps) {
    rows.push([s.stepId, s.state ?? s.outcome, formatDuration(s.durationMs), String(s.cost.kube), `${s.cost.arm}${s.cost.armWrites ? ` (${s.cost.armWrites} writes)` : ''}`, `${s.evidence.length} passed`, s.summary]);
  }
  lines.push(table(rows).trimEnd());
  if (r.drainPools.length) {
    const slowest = Math.max(...r.drainPools.map((d) => d.seconds));
    lines.push(`  drain per pool (real s): ${r.drainPools.map((d) => `${d.pool} ${d.seconds.toFixed(1)}`).join(', ')}; slowest ${slowest.toFixed(1)}, sum ${r.drainPools.reduce((a, d) => a + d.seconds, 0).toFixed(1)}`);
  }
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
export async function run(env: CliEnv, flags: DemoFlags, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  parseTimeScale(flags.timeScale);
  const procedure = parseProcedure(flags.procedure);
  const runbooks = parseRunbooks(globals.runbook, flags);
  const pacing: DemoPacing = { observeSeconds: parseSimSeconds('--observe', flags.observe), operatorPauseSeconds: parseSimSeconds('--operator-pause', flags.operatorPause) };
  if (pacing.operatorPauseSeconds && procedure !== 'upstream') throw new UsageError('--operator-pause applies to --procedure upstream only.', 'Drop --operator-pause, or add --procedure upstream.');
  const json = globals.output === 'json' || globals.output === 'yaml';
  if (globals.output === 'markdown') throw new UsageError('-o/--output: demo prints a table, or a document with -o json|yaml, not markdown.', 'Use -o table (default), -o json or -o yaml.');
  const dir = resolve(globals.cwd, flags.dir ?? (flags.keep ? DEMO_KEEP_DIR : mkdtempSync(join(tmpdir(), 'podid-demo-'))));
  const p = env.paint(globals);
  const say = (m: string) => env.err(`${m}\n`);
  const started = Date.now();
  const sb = flags.keep ? await startDetached(flags, dir, say) : await startInProcess(flags, dir, say);
  try {
    say(`Sandbox ready: ${sb.clusterName} at ${sb.timeScale}x (files in ${dir})`);
    const report = procedure === 'upstream' ? await migrateUpstream(env, sb, dir, started, pacing) : await migrate(env, globals, sb, dir, p, started, procedure, json, pacing, runbooks);
    if (json) env.out(renderData(globals.output, envelope('demo', demoDocument(report, sb, Boolean(flags.keep)))));
    else env.out(renderDemoReport(report, p, sb));
    if (flags.keep && !json) {
      env.out(
        [
          '',
          `The sandbox keeps running. To look at it:`,
          `  source ${sb.envFile}`,
          `  kubectl get nodes; kubectl get pods -A; kubectl get azureassignedidentities -A`,
          `  podid-migrate status --journal ${join(dir, 'journal.json')}`,
          ...(runbooks.runbook === 'workload-identity' ? [`  podid-migrate --runbook workload-identity status --journal ${join(dir, 'journal.workload-identity.json')}`] : []),
          `  podid-migrate sandbox status --dir ${dir}`,
          `Stop it with: podid-migrate sandbox down --dir ${dir}`,
          '',
        ].join('\n'),
      );
    }
  } finally {
    await sb.stop();
  }
}

type Env = CliEnv;

/** The gateways of the demo's run, wired as every other command's (`src/cli/context.ts`): one read snapshot shared by both. */
async function gatewaysFor(sb: DemoSandbox) {
  const kubeModule = await import('../../kube/index.ts');
  const azureModule = await import('../../azure/index.ts');
  const reads = new kubeModule.ReadSnapshot();
  const kube = kubeModule.snapshotKubeGateway(kubeModule.createKubeGateway({ kubeconfig: sb.kubeconfig }), reads);
  // The demo's cluster runs timeScale times faster than the clock on the wall: long-running
  // operations are polled every 2 s of its time, as the tool polls Azure every 2 s (else a
  // 45 s identity update at 60x, 0.75 s, would still wait a whole 2 s poll).
  const pollIntervalMs = Math.max(50, Math.round(2000 / sb.timeScale));
  const azure = azureModule.snapshotAzureGateway(azureModule.createAzureGateway({ subscriptionId: sb.subscriptionId, connection: azureModule.resolveAzureConnection(sb.armEnv), pollIntervalMs }), reads);
  return { kube, azure, readScope: <T>(phase: 'plan' | 'apply' | 'check' | 'rollback', call: () => Promise<T>) => reads.during(phase, call) };
}

/** `--procedure upstream`: the documented procedure instead of the runbook; each of its phases is a row of the report. */
async function migrateUpstream(env: Env, sb: DemoSandbox, dir: string, started: number, pacing: DemoPacing): Promise<DemoReport> {
  const { runUpstreamProcedure } = await import('../../procedures/upstream.ts');
  const { kube, azure } = await gatewaysFor(sb);
  const say = (m: string) => env.err(`${m}\n`);
  const run = await runUpstreamProcedure({
    kube,
    azure,
    aksId: sb.aksResourceId,
    pauseBetweenPhasesMs: (pacing.operatorPauseSeconds * 1000) / sb.timeScale,
    progress: (m) => say(`  ${m}`),
    onPhase: ({ title, result }) => say(result ? `[${result.state === 'done' ? 'COMPLETED' : 'FAILED'}] ${title} (${formatDuration(result.durationMs)}): ${result.summary}` : `[STARTED] ${title}`),
  });
  if (run.error) throw new PreconditionError(`the documented procedure stopped: ${run.error.message}`, `The sandbox state is in ${dir}; run with --keep to look at it.`);
  const totalMs = Date.now() - started;
  await waitSimulated(sb, pacing.observeSeconds, say, 'observing the workloads after the procedure');
  return {
    procedure: 'upstream',
    scenario: sb.scenarioName,
    timeScale: sb.timeScale,
    pacing,
    steps: run.phases.map((ph) => ({
      stepId: ph.id as StepId,
      title: ph.title,
      outcome: 'checked' as const,
      state: ph.state,
      summary: ph.summary,
      durationMs: ph.durationMs,
      actions: 0,
      evidence: [],
      cost: { kube: ph.kubeCalls, arm: ph.armCalls, armWrites: ph.armWrites },
    })),
    totalMs,
    outage: await sb.outage(),
    drainPools: [],
    podsEvicted: 0,
    dir,
    kept: false,
  };
}

async function migrate(env: Env, globals: ReturnType<Env['globals']>, sb: DemoSandbox, dir: string, p: Paint, started: number, procedure: DemoProcedure, json: boolean, pacing: DemoPacing, runbooks: DemoRunbooks): Promise<DemoReport> {
  const { STEPS, EXECUTORS, stepsFor } = await import('../../steps/registry.ts');
  const { kube, azure, readScope } = await gatewaysFor(sb);
  const { kubePermissionBlockers } = await import('../../steps/lib/permission-preflight.ts');
  const identity = await kube.clusterIdentity();
  const info = { apiServer: identity.server, kubeSystemUid: identity.kubeSystemUid };
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
      executors: EXECUTORS as ExecutorRegistry,
      kube,
      azure,
      cluster,
      journalPath,
      inventoryPath,
      options: { aksId: sb.aksResourceId, junitPath: join(dir, 'junit.xml'), kubeconfig: sb.kubeconfig, nmiRollout: procedure === 'drain' ? 'drain' : 'in-place', clusterTimeScale: sb.timeScale },
      stepTimeoutMs: globals.stepTimeoutMs,
      events,
      verbose: globals.verbose,
      readScope,
      preflight: (stepId, gateway, inventoryDocument) => kubePermissionBlockers(stepId, gateway, inventoryDocument),
    });
  const progress = { stderr: env.deps.stderr, animated: env.animated, verbose: globals.verbose, verb: 'apply' as const };
  const all: StepRunResult[] = [];

  const first = STEPS.slice(0, 1);
  const inv = await runWithProgress(first, progress, (events) => runner(meter(events)).apply({ step: 'inventory' }));
  all.push(...inv.steps);

  // With -o json stdout carries the report document alone.
  const print = (json ? env.err.bind(env) : env.out.bind(env));
  if (runbooks.from !== 'standard') {
    const plan = await runner().plan();
    print(`${renderPlanTable(plan, p, journalPath)}\n`);
    const rest = STEPS.slice(1);
    const run = await runWithProgress(rest, progress, (events) => runner(meter(events)).apply());
    all.push(...run.steps.filter((s) => s.stepId !== 'inventory'));
  }

  let wiJournalPath: string | undefined;
  if (runbooks.runbook === 'workload-identity' && all.every((s) => s.outcome === 'checked')) {
    // The second runbook, on the same cluster and inventory, with its own journal.
    const wiSteps = stepsFor('workload-identity');
    const wiJournal = join(dir, 'journal.workload-identity.json');
    wiJournalPath = wiJournal;
    const wiRunner = (events?: RunnerEvents) =>
      new Runner({
        runbook: 'workload-identity',
        steps: wiSteps as StepRegistry,
        executors: EXECUTORS as ExecutorRegistry,
        kube,
        azure,
        cluster,
        journalPath: wiJournal,
        inventoryPath,
        options: { aksId: sb.aksResourceId, kubeconfig: sb.kubeconfig, managedJournalPath: journalPath, uninstallPodIdentity: runbooks.uninstallPodIdentity },
        stepTimeoutMs: globals.stepTimeoutMs,
        events,
        verbose: globals.verbose,
        readScope,
        preflight: (stepId, gateway, inventoryDocument) => kubePermissionBlockers(stepId, gateway, inventoryDocument),
      });
    print(`${renderPlanTable(await wiRunner().plan(), p, wiJournal)}\n`);
    const upToTest = wiSteps.filter((s) => s.id !== 'wi-remove-pod-identity');
    const first = await runWithProgress(upToTest, progress, (events) => wiRunner(meter(events)).apply({ to: 'wi-test' }));
    all.push(...first.steps);
    if (first.steps.every((s) => s.outcome === 'checked')) {
      await moveBatchSystems(kube, inventoryPath, wiJournal, (m) => env.err(`${m}\n`));
      const last = wiSteps.filter((s) => s.id === 'wi-remove-pod-identity');
      const removal = await runWithProgress(last, progress, (events) => wiRunner(meter(events)).apply());
      all.push(...removal.steps.filter((s) => s.stepId === 'wi-remove-pod-identity'));
    }
  }
  const totalMs = Date.now() - started;
  await waitSimulated(sb, pacing.observeSeconds, (m) => env.err(`${m}\n`), 'observing the workloads after the migration');
  const outage = await sb.outage();
  const journal = parseJournal(readFileSync(journalPath, 'utf8'), journalPath);
  const wiDoc = wiJournalPath ? parseJournal(readFileSync(wiJournalPath, 'utf8'), wiJournalPath) : undefined;
  return {
    procedure,
    runbooks,
    scenario: sb.scenarioName,
    timeScale: sb.timeScale,
    pacing,
    steps: all.map((s) => ({ ...s, cost: costs.get(s.stepId) ?? { kube: 0, arm: 0, armWrites: 0 } })),
    totalMs,
    outage,
    drainPools: drainPoolsFromJournal(journal.steps.drain),
    podsEvicted: podsEvictedFromJournal(journal) + (wiDoc ? podsEvictedFromJournal(wiDoc) : 0),
    dir,
    kept: false,
  };
}

/**
 * The sandbox's batch system (its churn) creates bare Jobs that no controller template
 * describes, so no runbook step can move them: as its operator would, the demo edits the batch
 * system's own pod template (ConfigMap `<job prefix>-pod-template`: the workload identity label on,
 * `aadpodidbinding` off, the service account `wi-serviceaccounts` recorded) once `wi-test` has
 * proven the identities, then waits until no pod of the old template still runs, which
 * `wi-remove-pod-identity` requires.
 */
async function moveBatchSystems(kube: import('../../kube/gateway.ts').KubeGateway, inventoryPath: string, wiJournal: string, say: (m: string) => void): Promise<void> {
  const { loadInventory } = await import('../../steps/lib/inventory-model.ts');
  const { servicesOf, patchableKind, WI_USE_LABEL, BINDING_LABEL } = await import('../../steps/lib/workload-identity/workloads.ts');
  const { KINDS } = await import('../../kube/kinds.ts');
  const inv = await loadInventory(inventoryPath);
  const doc = parseJournal(readFileSync(wiJournal, 'utf8'), wiJournal);
  const accounts = (doc.steps['wi-serviceaccounts']?.data?.serviceAccounts ?? {}) as Record<string, { name: string }>;
  const jobs = servicesOf(inv!).filter((s) => !patchableKind(s.kind) && s.kind === 'Job');
  for (const s of jobs) {
    const name = `${s.name}-pod-template`;
    const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: s.namespace }, data: { labels: JSON.stringify({ [WI_USE_LABEL]: 'true', [BINDING_LABEL]: null }), serviceAccountName: accounts[s.service]?.name ?? 'default' } };
    if (await kube.get(KINDS.ConfigMap, s.namespace, name)) await kube.replace(body);
    else await kube.create(body);
    say(`operator: the batch system of ${s.service} now creates its pods with ${WI_USE_LABEL}=true as ${s.namespace}/${body.data.serviceAccountName} (configmap ${s.namespace}/${name})`);
  }
  if (!jobs.length) return;
  const namespaces = new Set(jobs.map((s) => s.namespace));
  await kube.waitFor(
    async (note) => {
      const old = (await kube.list(KINDS.Pod, { labelSelector: BINDING_LABEL })).filter(
        (p) => namespaces.has(p.metadata?.namespace ?? '') && p.metadata?.ownerReferences?.some((o) => o.kind === 'Job') && !['Succeeded', 'Failed'].includes((p.status as { phase?: string } | undefined)?.phase ?? '') && !p.metadata?.deletionTimestamp,
      );
      note(`${old.length} batch pod(s) of the old template still running`);
      return old.length === 0;
    },
    { describe: 'batch pods of the old template to finish', timeoutMs: 600_000, intervalMs: 500 },
  );
}
