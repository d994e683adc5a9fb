/**
 * Shared set-up of the steps 1-4 end-to-end tests: an in-process sandbox, the real gateways
 * over HTTPS (client-node and the Azure SDKs, nothing mocked), and a runner over steps 1-4.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAzureGateway, resolveAzureConnection } from '../../src/azure/index.ts';
import type { AzureGateway } from '../../src/azure/gateway.ts';
import { execa, type ResultPromise } from 'execa';
import { Runner, type RunnerEvents } from '../../src/engine/runner.ts';
import { Journal, type ClusterIdentity } from '../../src/engine/journal.ts';
import type { StepId } from '../../src/engine/step.ts';
import { createKubeGateway } from '../../src/kube/index.ts';
import type { KubeGateway, KubeObject } from '../../src/kube/gateway.ts';
import { Sandbox } from '../../src/sandbox/sandbox.ts';
import { loadScenarioFile, parseScenario } from '../../src/sandbox/scenario.ts';
import { EXECUTORS, STEPS } from '../../src/steps/registry.ts';
import { withoutAddedDefaults } from '../../src/steps/03-nmi-managed.ts';
import type { InventoryDocument } from '../../src/steps/lib/inventory-model.ts';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import type { OutageReport } from '../../src/sandbox/podidentity/outage-meter.ts';

export const SCENARIO = join(import.meta.dirname, '..', '..', 'scenarios', 'default.yaml');

export interface Env {
  sandbox: Sandbox;
  dir: string;
  kubeconfig: string;
  /** Environment for the CLI child process, as `source <dir>/env` would set it. */
  cliEnv: Record<string, string>;
  kube: KubeGateway;
  azure: AzureGateway;
  cluster: ClusterIdentity;
  journalPath: string;
  inventoryPath: string;
  runner(options?: Record<string, unknown>, events?: RunnerEvents): Runner<KubeGateway, AzureGateway>;
  /** Simulated time now (epoch ms): the outage meter's windows are in simulated time. */
  simNow(): number;
  stop(): Promise<void>;
}

/** Starts the sandbox (default scenario unless `scenarioText` is given) and connects the real gateways. */
export async function startEnv(opts: { timeScale?: number; scenarioText?: string; churn?: boolean } = {}): Promise<Env> {
  const scenario = opts.scenarioText ? parseScenario(opts.scenarioText) : loadScenarioFile(SCENARIO);
  const sandbox = await Sandbox.start({ scenario, timeScale: opts.timeScale ?? 25, churn: opts.churn });
  try {
    await sandbox.waitReady(60_000);
  } catch (e) {
    await sandbox.stop();
    throw e;
  }
  const dir = mkdtempSync(join(tmpdir(), 'podid-e2e-'));
  const files = sandbox.writeClientFiles(join(dir, 'sandbox'));
  const kube = createKubeGateway({ kubeconfig: files.kubeconfig, rateLimit: { qps: 200, burst: 400 } });
  const armEnv = { PODID_MIGRATE_ARM_ENDPOINT: sandbox.armUrl, PODID_MIGRATE_ARM_TOKEN_FILE: files.armTokenFile, PODID_MIGRATE_CA_FILE: files.caFile };
  const azure = createAzureGateway({ subscriptionId: scenario.subscriptionId, connection: resolveAzureConnection(armEnv), pollIntervalMs: 100 });
  const info = await kube.clusterInfo();
  const cluster: ClusterIdentity = { name: scenario.cluster.name, apiServer: info.apiServer, kubeSystemUid: info.kubeSystemUid, subscriptionId: scenario.subscriptionId, aksResourceId: sandbox.aksResourceId };
  const journalPath = join(dir, 'journal.json');
  const inventoryPath = join(dir, 'inventory.yaml');
  return {
    sandbox,
    dir,
    kubeconfig: files.kubeconfig,
    cliEnv: {
      ...armEnv,
      KUBECONFIG: files.kubeconfig,
      NODE_EXTRA_CA_CERTS: files.caFile,
      PODID_MIGRATE_AKS_ID: sandbox.aksResourceId,
      CI: 'true',
    },
    kube,
    azure,
    cluster,
    journalPath,
    inventoryPath,
    simNow: () => sandbox.clock.now(),
    runner: (options = {}, events) =>
      new Runner<KubeGateway, AzureGateway>({
        events,
        steps: STEPS.slice(0, 4),
        executors: EXECUTORS,
        kube,
        azure,
        cluster,
        journalPath,
        inventoryPath,
        options: { aksId: sandbox.aksResourceId, ...options },
        stepTimeoutMs: 90_000,
      }),
    stop: () => sandbox.stop(),
  };
}

/** Values the API server fills in on write (apps/v1 workload and pod template defaults). */
const SPEC_DEFAULTS: Record<string, unknown> = {
  revisionHistoryLimit: 10,
  progressDeadlineSeconds: 600,
  strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } },
};
const POD_SPEC_DEFAULTS: Record<string, unknown> = { restartPolicy: 'Always', terminationGracePeriodSeconds: 30, dnsPolicy: 'ClusterFirst', schedulerName: 'default-scheduler', securityContext: {} };

function dropDefaults(obj: unknown, defaults: Record<string, unknown>): void {
  if (!obj || typeof obj !== 'object') return;
  const o = obj as Record<string, unknown>;
  for (const [k, v] of Object.entries(defaults)) if (JSON.stringify(o[k]) === JSON.stringify(v)) delete o[k];
}

const VOLATILE_META = ['resourceVersion', 'creationTimestamp', 'uid', 'managedFields', 'generation', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'annotations'];

/**
 * An object without server-set and volatile fields, for before/after comparison. Container and
 * update-strategy defaults are dropped too: the sandbox stores its initial objects undefaulted,
 * while anything written back through the API server is defaulted, as on a real cluster.
 */
export function comparable(o: KubeObject): unknown {
  const c = structuredClone(o) as Record<string, unknown> & { metadata: Record<string, unknown> };
  delete c.status;
  for (const k of VOLATILE_META) delete c.metadata[k];
  const spec = c.spec as { updateStrategy?: Record<string, unknown>; template?: { spec?: { containers?: Record<string, unknown>[] } } } | undefined;
  dropDefaults(c.spec, SPEC_DEFAULTS);
  dropDefaults((c.spec as { template?: { spec?: unknown } } | undefined)?.template?.spec, POD_SPEC_DEFAULTS);
  if (spec?.updateStrategy) spec.updateStrategy = withoutAddedDefaults(spec.updateStrategy, {}) as Record<string, unknown>;
  if (spec?.template?.spec?.containers) spec.template.spec.containers = spec.template.spec.containers.map((x) => withoutAddedDefaults(x, {}) as Record<string, unknown>);
  return c;
}

/**
 * The cluster state steps 1-4 may touch: Pod Identity objects, NMI/MIC workloads (spec), and
 * every VMSS's identities. Pods and AzureAssignedIdentities churn by design and are left out.
 */
export async function stateDump(env: Env): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const ref of [
    { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity' },
    { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding' },
    { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzurePodIdentityException' },
    { apiVersion: 'apps/v1', kind: 'DaemonSet' },
    { apiVersion: 'apps/v1', kind: 'Deployment' },
  ]) {
    const items = await env.kube.list(ref);
    for (const i of items) out[`${ref.kind}/${i.metadata?.namespace}/${i.metadata?.name}`] = comparable(i);
  }
  const rg = (await env.azure.getManagedCluster(env.sandbox.aksResourceId)).nodeResourceGroup;
  for (const s of await env.azure.listScaleSets(rg)) out[`vmss/${s.name}`] = Object.keys(s.userAssignedIdentities).map((k) => k.toLowerCase()).sort();
  return out;
}

/** The real entry point, run by this Node (24) as an operator would run it. */
export const BIN = join(import.meta.dirname, '..', '..', 'bin', 'podid-migrate');

/** Starts `podid-migrate <args>` as a child process against the sandbox, with the env of `source <dir>/env` and the test's journal/inventory. */
export function spawnCli(env: Env, args: string[], opts: { timeoutMs?: number } = {}): ResultPromise<{ reject: false; all: true }> {
  return execa(process.execPath, [BIN, '--journal', env.journalPath, '--inventory', env.inventoryPath, ...args], {
    cwd: env.dir,
    env: env.cliEnv,
    extendEnv: false,
    reject: false,
    all: true,
    timeout: opts.timeoutMs ?? 90_000,
  }) as ResultPromise<{ reject: false; all: true }>;
}

/** Runs the CLI to completion; `all` is stdout and stderr interleaved (for failure messages). */
export async function runCli(env: Env, args: string[], opts: { timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string; all: string }> {
  const r = await spawnCli(env, args, opts);
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), all: String(r.all) };
}

/**
 * Runs the CLI's `main()` in this process with the production runtime (the real gateways over
 * HTTPS, the same command line, the environment of `source <dir>/env`, the kubeconfig of
 * `cliEnv.KUBECONFIG` passed as `--kubeconfig`), as {@link runCli} does in a child process but
 * without a Node start and the SDK imports per run. For every run that needs no process of its
 * own: a SIGKILL or a stock kubectl needs {@link spawnCli}. After `timeoutMs` it is interrupted
 * as Ctrl-C would (the run stops at its next safe point).
 */
export async function runMain(env: Env, args: string[], opts: { timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string; all: string }> {
  const { main } = await import('../../src/cli/main.ts');
  let stdout = '';
  let stderr = '';
  let all = '';
  const interrupts = new Set<() => void>();
  const timer = setTimeout(() => {
    for (const h of interrupts) h();
  }, opts.timeoutMs ?? 90_000);
  const { KUBECONFIG: kubeconfig, ...vars } = env.cliEnv;
  try {
    const code = await main(['node', BIN, '--journal', env.journalPath, '--inventory', env.inventoryPath, ...(kubeconfig ? ['--kubeconfig', kubeconfig] : []), ...args], {
      stdout: { write: (s: string) => ((stdout += s), (all += s), true), isTTY: false },
      stderr: { write: (s: string) => ((stderr += s), (all += s), true), isTTY: false },
      env: { ...vars, ...(kubeconfig ? { KUBECONFIG: kubeconfig } : {}) },
      interactive: false,
      cwd: env.dir,
      confirm: async () => false,
      onInterrupt: (handler) => {
        interrupts.add(handler);
        return () => interrupts.delete(handler);
      },
    });
    return { code, stdout, stderr, all };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How many scale sets the inventory says must gain identities: a pool's user-assigned
 * identities not all among the ones its VMSS carried before (`identitiesBefore`).
 */
export function scaleSetsToGrow(inventoryPath: string): string[] {
  const doc = parseYaml(readFileSync(inventoryPath, 'utf8')) as InventoryDocument;
  const out: string[] = [];
  for (const p of doc.pools) {
    if (!p.scaleSet) continue;
    const before = new Set((p.identitiesBefore ?? []).map((i) => i.toLowerCase()));
    const wanted = doc.identities.filter((i) => i.type === 0 && i.resourceId && (i.pools ?? []).includes(p.name)).map((i) => i.resourceId!.toLowerCase());
    if (wanted.some((id) => !before.has(id))) out.push(p.scaleSet.split('/').pop()!);
  }
  return out.sort();
}

const MANAGED_MANIFEST = join(import.meta.dirname, '..', '..', 'src', 'sandbox', 'manifests', 'managed-v1.8.17.yaml');

/** NMI's args in the upstream managed-mode manifest (`deploy/infra/managed-mode-deployment.yaml`, v1.8.17). */
export function upstreamManagedArgs(path = MANAGED_MANIFEST): string[] {
  const ds = parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS() as KubeObject)
    .find((d) => d?.kind === 'DaemonSet')!;
  return (ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args;
}

/** Simulated epoch ms of a meter timestamp (whole seconds, RFC 3339). */
const at = (iso: string) => Date.parse(iso);

/**
 * The outage rule of the cutover: a token request fails only while a node's NMI restarts, each
 * window at most NMI's 10 s termination gap plus its start-up (plus 3 s of sampling tolerance).
 *
 * One other cause is tolerated, bounded and only in one place: protecting the identities
 * restarts MIC (a flag change), and standard-mode pods started while MIC changes leader wait
 * for their AzureAssignedIdentity longer than the meter's grace (MIC's assignment time + 5 s).
 * The step hands the dead leader's lease over at once, so such a wait stays under `micWaitLimit`
 * seconds instead of the 15 s lease plus retry. NMI holds those requests (standard mode waits up
 * to 80 s), so clients see a slower first token, not an error.
 */
export function outageViolations(report: OutageReport, rules: { nmiLimit: number; micWindow?: { from: number; to: number }; micWaitLimit: number }): string[] {
  const out: string[] = [];
  for (const w of report.windows) {
    const line = `${w.start} +${w.seconds}s ${w.pod} on ${w.node}: ${w.cause}`;
    if (w.cause.startsWith('nmi-restart:')) {
      if (w.seconds > rules.nmiLimit) out.push(`${line} (longer than ${rules.nmiLimit} s)`);
    } else if (w.cause === 'waiting-for-mic-assignment' && rules.micWindow && at(w.start) >= rules.micWindow.from && at(w.start) <= rules.micWindow.to) {
      if (w.seconds > rules.micWaitLimit) out.push(`${line} (MIC hand-over wait longer than ${rules.micWaitLimit} s)`);
    } else out.push(line);
  }
  return out;
}


/**
 * `apply --to <step>` then `rollback --all` on a fresh default sandbox with churn: the state
 * dump (Pod Identity objects, NMI/MIC, every VMSS's identities) must equal the one taken before,
 * and every identity a scale set carried before the migration must still be there.
 * `changed` asserts the apply really changed something, so the comparison can fail. Returns
 * every difference found (`key: before -> after`), for the caller's `expect(...).toEqual([])`.
 */
export async function rollbackRoundTrip(step: 'inventory' | 'assign' | 'nmi-managed' | 'mic-scale', changed: (before: Record<string, unknown>, after: Record<string, unknown>, env: Env) => void | Promise<void>): Promise<string[]> {
  // No outage window is measured here: the cluster runs at twice the default speed.
  const env = await startEnv({ timeScale: 50 });
  try {
    const before = await stateDump(env);
    const applied = await env.runner().apply({ to: step });
    const last = applied.steps.at(-1);
    const differences: string[] = [];
    if (last?.stepId !== step || last?.outcome !== 'checked') differences.push(`apply --to ${step} did not end checked: ${JSON.stringify(applied.steps.map((s) => [s.stepId, s.outcome]))}`);
    await changed(before, await stateDump(env), env);
    await env.runner().rollback({ all: true });
    const after = await stateDump(env);
    const inventory = parseYaml(readFileSync(env.inventoryPath, 'utf8')) as InventoryDocument;
    for (const p of inventory.pools) {
      const now = ((after[`vmss/${p.scaleSet?.split('/').pop()}`] as string[] | undefined) ?? []).map((i) => i.toLowerCase());
      for (const id of p.identitiesBefore ?? []) if (!now.includes(id.toLowerCase())) differences.push(`identity on a scale set before the migration is gone: ${p.name}: ${id}`);
    }
    for (const k of Object.keys({ ...before, ...after })) {
      if (JSON.stringify(before[k]) !== JSON.stringify(after[k])) differences.push(`${k}: before ${JSON.stringify(before[k])} after ${JSON.stringify(after[k])}`);
    }
    return differences;
  } finally {
    await env.stop();
  }
}

/** A write the sandbox holds: it is applied, then never answered, so the CLI never records it. */
export interface HeldWrite {
  api: 'kube' | 'arm';
  method: string;
  /** Regular expression on the request path. */
  path: string;
  /**
   * `hold-response` (default): the server applies the write and never answers (the CLI dies
   * right after the write). `hold-request`: the server holds it unapplied and drops it once the
   * CLI is gone (the CLI dies right before the write).
   */
  action?: 'hold-response' | 'hold-request';
}

/**
 * Runs `podid-migrate apply --to <step> --yes` as a child process, lets the sandbox apply
 * `held` and swallow its answer, SIGKILLs the CLI while it waits for that answer (the write is
 * done, the journal has only its intent), removes the rule, clears the stale lock as the CLI
 * tells the operator to (`force-unlock <id>`), and runs `apply --to <step>` again to the end
 * (these runs after the kill in-process, {@link runMain}).
 * Returns the journal records of the step after the kill and the second run's output.
 */
export async function crashAndResume(
  env: Env,
  step: string,
  held: HeldWrite,
  opts: { args?: string[]; timeoutMs?: number } = {},
): Promise<{ afterKill: { actionId: string; status: string }[]; resumed: { code: number; all: string } }> {
  const args = opts.args ?? ['apply', '--to', step, '--yes'];
  const kind = held.action ?? 'hold-response';
  const ruleId = env.sandbox.faults.add({ api: held.api, method: held.method, path: held.path, times: 1, action: { kind } });
  // `held` is emitted once the write is applied and its answer swallowed (or, for hold-request, once it is held unapplied).
  let swallowed = false;
  let dropped = false;
  const onHeld = (e: { ruleId: string }) => {
    if (e.ruleId === ruleId) swallowed = true;
  };
  const onDropped = (e: { ruleId: string }) => {
    if (e.ruleId === ruleId) dropped = true;
  };
  env.sandbox.faults.on('held', onHeld);
  env.sandbox.faults.on('dropped', onDropped);
  const child = spawnCli(env, args, { timeoutMs: opts.timeoutMs });
  let exited = false;
  void child.then(() => (exited = true));
  try {
    await waitUntil(`the sandbox to hold ${held.method} ${held.path}`, () => {
      if (exited) throw new Error(`the CLI exited before the held write: ${String((child as unknown as { all?: string }).all ?? '')}`);
      return swallowed && (env.sandbox.faults.list().find((r) => r.id === ruleId)?.fired ?? 0) >= 1;
    });
  } finally {
    env.sandbox.faults.off('held', onHeld);
    child.kill('SIGKILL');
    const r = await child;
    // A held request is dropped unserved once the server sees the connection gone.
    if (kind === 'hold-request' && swallowed) await waitUntil('the sandbox to drop the held request', () => dropped);
    env.sandbox.faults.off('dropped', onDropped);
    env.sandbox.faults.remove(ruleId);
    if (r.signal !== 'SIGKILL' && !exited) throw new Error(`the CLI was not killed: ${r.all}`);
  }
  // Read as the tool reads it: the killed run's last records are in the action log, not yet in the snapshot.
  const journal = (await Journal.read(env.journalPath))!;
  const afterKill = journal.steps[step as StepId].actions.map((a) => ({ actionId: a.actionId, status: a.status }));
  // The runs after the kill need no process of their own: in-process, without a Node start each.
  const blocked = await runMain(env, args, { timeoutMs: opts.timeoutMs });
  const lockId = /force-unlock (\S+)/.exec(blocked.all)?.[1];
  if (blocked.code === 0 || !lockId) throw new Error(`a run after SIGKILL should meet the stale lock, got exit ${blocked.code}:\n${blocked.all}`);
  const unlocked = await runMain(env, ['force-unlock', lockId]);
  if (unlocked.code !== 0) throw new Error(`force-unlock failed:\n${unlocked.all}`);
  const resumed = await runMain(env, args, { timeoutMs: opts.timeoutMs });
  return { afterKill, resumed: { code: resumed.code, all: resumed.all } };
}

/** Polls every 20 ms until `probe` is truthy (a throw ends the wait), or fails naming `what` after `timeoutMs`. */
export async function waitUntil(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
