/**
 * The crash matrix's shared parts (`bench/crash-matrix.ts` and `test/e2e/crash-matrix.test.ts`):
 * a full dump of what the migration changes, the run of the real CLI killed with SIGKILL at a
 * chosen write (right after the server applied it, or right before it is sent), the documented
 * resume (`force-unlock`, then the same `apply`), and the verdict against an uninterrupted run.
 *
 * A crash point is "write N": the Nth mutating request the CLI sends in the run (Kubernetes
 * create/update/patch/delete, evictions included; ARM PUT/PATCH/POST/DELETE), matched by one
 * sandbox fault rule (`api: 'any', mutating: true, after: N-1, times: 1`):
 * - `after`: `hold-response`, the server applies the write and never answers;
 * - `before`: `hold-request`, the server holds it unapplied and drops it once the CLI is gone.
 */
import { readFileSync } from 'node:fs';
import type { KubeObject, ResourceRef } from '../../src/kube/gateway.ts';
import { STEP_IDS } from '../../src/engine/step.ts';
import { main } from '../../src/cli/main.ts';
import { runCli, spawnCli, waitUntil, type Env } from './steps-1-4-harness.ts';
import { readJournalFile } from '../helpers/journal-file.ts';

/** Which side of write N the CLI dies on. */
export type CrashSide = 'after' | 'before';

/** What a migrated (or rolled back) cluster is compared by. */
export type StateDump = Record<string, unknown>;

/** Kinds dumped in full: Pod Identity objects, MIC/NMI and their objects, RBAC. */
export const DUMPED: ResourceRef[] = [
  { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity' },
  { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding' },
  { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzurePodIdentityException' },
  { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition' },
  { apiVersion: 'apps/v1', kind: 'DaemonSet' },
  { apiVersion: 'apps/v1', kind: 'Deployment' },
  { apiVersion: 'v1', kind: 'ServiceAccount' },
  { apiVersion: 'v1', kind: 'ConfigMap' },
  { apiVersion: 'v1', kind: 'Endpoints' },
  { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget' },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole' },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding' },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role' },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding' },
];

/** Metadata Kubernetes itself sets or changes on every write. */
const SERVER_METADATA = ['uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'generation', 'selfLink'];
/** Annotations Kubernetes (or a leader election) writes: revisions, and the MIC lease (pod names, timestamps). */
const SERVER_ANNOTATIONS = ['deployment.kubernetes.io/revision', 'deprecated.daemonset.template.generation', 'control-plane.alpha.kubernetes.io/leader'];

/**
 * One object as compared: without uid, resourceVersion, timestamps, managedFields, generation,
 * revision and leader-lease annotations; a workload's or CRD's `status` is Kubernetes' own and
 * left out, a Pod Identity object's is data and kept. Endpoints keep only their annotations
 * that are not the lease (their addresses are pod IPs).
 */
export function normalised(o: KubeObject): unknown {
  const c = structuredClone(o) as Record<string, any>;
  const meta = (c.metadata ?? {}) as Record<string, any>;
  for (const k of SERVER_METADATA) delete meta[k];
  if (meta.annotations) {
    for (const k of SERVER_ANNOTATIONS) delete meta.annotations[k];
    if (!Object.keys(meta.annotations).length) delete meta.annotations;
  }
  if (!String(c.apiVersion ?? '').startsWith('aadpodidentity.k8s.io/')) delete c.status;
  if (c.kind === 'Endpoints') delete c.subsets;
  // A ServiceAccount's token secrets are generated names.
  if (c.kind === 'ServiceAccount') delete c.secrets;
  return c;
}

/**
 * The full dump: every object of {@link DUMPED} (normalised), every AzureAssignedIdentity when
 * `assignedIdentities` (by its identity and node: the object is named after a pod, whose name is
 * generated), and every scale set's user-assigned identities.
 */
export async function fullDump(env: Env, opts: { assignedIdentities?: boolean } = {}): Promise<StateDump> {
  const out: StateDump = {};
  for (const ref of DUMPED) {
    for (const o of await env.kube.list(ref)) out[`${ref.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`] = normalised(o);
  }
  if (opts.assignedIdentities !== false) {
    const aais = await env.kube.list({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity' }).catch(() => []);
    const byIdentity = new Map<string, number>();
    for (const a of aais) {
      const spec = (a.spec ?? {}) as { azureIdentityRef?: { metadata?: { name?: string; namespace?: string } }; nodename?: string };
      const k = `AzureAssignedIdentity/${spec.azureIdentityRef?.metadata?.namespace}/${spec.azureIdentityRef?.metadata?.name} on ${spec.nodename}`;
      byIdentity.set(k, (byIdentity.get(k) ?? 0) + 1);
    }
    for (const [k, n] of byIdentity) out[k] = n;
  }
  const rg = (await env.azure.getManagedCluster(env.sandbox.aksResourceId)).nodeResourceGroup;
  for (const s of await env.azure.listScaleSets(rg)) out[`vmss/${s.name}`] = Object.keys(s.userAssignedIdentities).map((k) => k.toLowerCase()).sort();
  return out;
}

/** Every key whose value differs, as `key: expected X, got Y`. */
export function dumpDifferences(expected: StateDump, actual: StateDump): string[] {
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort()) {
    const a = JSON.stringify(expected[k]);
    const b = JSON.stringify(actual[k]);
    if (a !== b) out.push(`${k}: expected ${a ?? 'absent'}, got ${b ?? 'absent'}`);
  }
  return out;
}

/** Requests the server accepted (2xx). */
function accepted(env: Env, filter: { api: 'kube' | 'arm'; verb?: string; resource?: string; mutating?: boolean }): number {
  return [200, 201, 202, 204].reduce((n, status) => n + env.sandbox.metrics.count({ caller: 'client', ...filter, status }), 0);
}

/** The ARM writes that must never be repeated, as the server accepted them. */
export interface NonIdempotentWrites {
  reimages: number;
  scaleSetPatches: number;
}

export function nonIdempotentWrites(env: Env): NonIdempotentWrites {
  return {
    reimages: accepted(env, { api: 'arm', verb: 'POST', resource: 'VirtualMachineScaleSets_Reimage' }),
    scaleSetPatches: accepted(env, { api: 'arm', verb: 'PATCH', resource: 'VirtualMachineScaleSets_Update' }),
  };
}

/** Mutating requests sent by the CLI so far (any answer): the crash points of a run. */
export function mutatingRequests(env: Env): number {
  return env.sandbox.metrics.count({ caller: 'client', mutating: true, dryRun: false });
}

/** What an uninterrupted run left. */
export interface Baseline {
  writes: number;
  dump: StateDump;
  arm: NonIdempotentWrites;
  /**
   * Per step, the number of the first write sent after the step started (from the run's
   * `[STARTED] <step>` progress line); a step that sent nothing has the next step's number.
   */
  stepFirstWrite: Record<string, number>;
}

/** The step whose writes include write `write` of the uninterrupted run. */
export function stepOfWrite(baseline: Baseline, write: number): string {
  let found = STEP_IDS[0] as string;
  for (const id of STEP_IDS) if ((baseline.stepFirstWrite[id] ?? Infinity) <= write) found = id;
  return found;
}

/** `podid-migrate apply --yes` (or `args`) to the end, uninterrupted; counts its writes (per step too) and dumps the result. */
export async function uninterruptedRun(env: Env, args: string[] = ['apply', '--yes'], timeoutMs = 300_000): Promise<Baseline> {
  env.sandbox.metrics.reset();
  const stepFirstWrite: Record<string, number> = {};
  const child = spawnCli(env, args, { timeoutMs });
  let pending = '';
  // A step's progress line comes before its plan is read, so before its first write.
  child.stderr!.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
      const started = /^\[STARTED\] \[[^\]]*\] (\S+)/.exec(pending.slice(0, i));
      if (started && (STEP_IDS as readonly string[]).includes(started[1])) stepFirstWrite[started[1]] = mutatingRequests(env) + 1;
      pending = pending.slice(i + 1);
    }
  });
  const r = await child;
  if (r.exitCode !== 0) throw new Error(`the uninterrupted run failed (exit ${r.exitCode}):\n${String(r.all).slice(-3000)}`);
  return { writes: mutatingRequests(env), dump: await fullDump(env), arm: nonIdempotentWrites(env), stepFirstWrite };
}

/** How a crash point's follow-up commands (the run meeting the stale lock, `force-unlock`, the resume) are run. */
export type FollowUp = 'spawn' | 'in-process';

/** Serialises in-process runs: the CLI reads its Azure endpoint and kubeconfig from `process.env`. */
let inProcessQueue: Promise<unknown> = Promise.resolve();

/**
 * `podid-migrate <args>` run in this process through `main()` (the same entry point as the
 * executable, with the environment of `source <dir>/env`), for commands nothing kills: it saves
 * a Node start-up and module loading per command. One at a time per process, because the Azure
 * gateway reads its endpoint from `process.env`, which is set for the run and put back after it.
 */
export function runCliInProcess(env: Env, args: string[]): Promise<{ code: number; stdout: string; stderr: string; all: string }> {
  const run = async () => {
    let stdout = '';
    let stderr = '';
    let all = '';
    const saved = new Map<string, string | undefined>();
    for (const [k, v] of Object.entries(env.cliEnv)) {
      saved.set(k, process.env[k]);
      process.env[k] = v;
    }
    try {
      const code = await main(['node', 'podid-migrate', '--journal', env.journalPath, '--inventory', env.inventoryPath, ...args], {
        stdout: { write: (t: string) => ((stdout += t), (all += t), true), isTTY: false },
        stderr: { write: (t: string) => ((stderr += t), (all += t), true), isTTY: false },
        env: { ...process.env, ...env.cliEnv },
        interactive: false,
        cwd: env.dir,
        confirm: async () => false,
        onInterrupt: () => () => {},
      });
      return { code, stdout, stderr, all };
    } finally {
      for (const [k, v] of saved) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  };
  const p = inProcessQueue.then(run, run);
  inProcessQueue = p.catch(() => undefined);
  return p;
}

/** The outcome of one crash point. */
export interface CrashOutcome {
  /** False when the run ended before sending write N (the CLI exited by itself). */
  reached: boolean;
  /** The resumed run's exit code and output (when reached). */
  resumed?: { code: number; all: string };
}

/**
 * Runs the CLI with `args` as a child process and kills it with SIGKILL at its write `write`
 * (`side` of it: the server applied it and holds the answer, or holds the request unapplied and
 * drops it once the process is gone). Resolves false when the run ended by itself, with exit 0,
 * before sending write `write`.
 */
export async function crashAt(env: Env, write: number, side: CrashSide, args: string[], timeoutMs = 300_000): Promise<boolean> {
  const faults = env.sandbox.faults;
  const ruleId = faults.add({ api: 'any', mutating: true, after: write - 1, times: 1, action: { kind: side === 'after' ? 'hold-response' : 'hold-request' } });
  let held = false;
  let dropped = false;
  const onHeld = (e: { ruleId: string }) => {
    if (e.ruleId === ruleId) held = true;
  };
  const onDropped = (e: { ruleId: string }) => {
    if (e.ruleId === ruleId) dropped = true;
  };
  faults.on('held', onHeld);
  faults.on('dropped', onDropped);
  const child = spawnCli(env, args, { timeoutMs });
  let exited = false;
  void child.then(() => (exited = true));
  try {
    await waitUntil(`write ${write} to be held`, () => held || exited, timeoutMs);
    if (!held) {
      const r = await child;
      if (r.exitCode !== 0) throw new Error(`the run ended before write ${write} with exit ${r.exitCode}:\n${String(r.all).slice(-3000)}`);
      return false;
    }
    child.kill('SIGKILL');
    const r = await child;
    if (r.signal !== 'SIGKILL') throw new Error(`the CLI was not killed at write ${write} (exit ${r.exitCode}):\n${String(r.all).slice(-3000)}`);
    if (side === 'before') await waitUntil('the sandbox to drop the held request', () => dropped);
    return true;
  } finally {
    faults.off('held', onHeld);
    faults.off('dropped', onDropped);
    faults.remove(ruleId);
    if (!exited) child.kill('SIGKILL');
  }
}

/**
 * After a kill, what the CLI tells the operator: the same command meets the stale lock and names
 * it, then `force-unlock <id>`. Resolves undefined when both went so, else the command that did not.
 */
export async function clearStaleLock(env: Env, args: string[], followUp: FollowUp = 'spawn', timeoutMs = 300_000): Promise<{ code: number; all: string } | undefined> {
  const follow = (a: string[]) => (followUp === 'in-process' ? runCliInProcess(env, a) : runCli(env, a, { timeoutMs }));
  const blocked = await follow(args);
  const lockId = /force-unlock (\S+)/.exec(blocked.all)?.[1];
  if (blocked.code === 0 || !lockId) return { code: blocked.code || -1, all: `expected the stale lock to be named, got:\n${blocked.all}` };
  const unlocked = await follow(['force-unlock', lockId]);
  if (unlocked.code !== 0) return { code: unlocked.code, all: `force-unlock failed:\n${unlocked.all}` };
  return undefined;
}

/**
 * Runs the CLI with `args`, kills it with SIGKILL at write `write` (`side` of it), then resumes
 * as the CLI tells the operator to: the same command meets the stale lock and names it,
 * `force-unlock <id>`, the same command again. `followUp` says how those three commands run
 * (the killed run is always a child process).
 */
export async function crashAndResumeAt(env: Env, write: number, side: CrashSide, args: string[] = ['apply', '--yes'], timeoutMs = 300_000, followUp: FollowUp = 'spawn'): Promise<CrashOutcome> {
  if (!(await crashAt(env, write, side, args, timeoutMs))) return { reached: false };
  const stuck = await clearStaleLock(env, args, followUp, timeoutMs);
  if (stuck) return { reached: true, resumed: stuck };
  const resumed = followUp === 'in-process' ? await runCliInProcess(env, args) : await runCli(env, args, { timeoutMs });
  return { reached: true, resumed: { code: resumed.code, all: resumed.all } };
}

interface JournalFile {
  steps: Record<string, { state: string; actions: { actionId: string; status: string; rolledBack?: boolean }[] }>;
}

/** Steps not `checked` (among `steps`) and actions left in `intent`, from the journal file. */
export function journalProblems(env: Env, steps: readonly string[] = STEP_IDS): string[] {
  const j = readJournalFile(env.journalPath) as unknown as JournalFile;
  const out: string[] = [];
  for (const id of steps) if (j.steps[id]?.state !== 'checked') out.push(`step ${id} is ${j.steps[id]?.state ?? 'absent'}, not checked`);
  for (const [id, s] of Object.entries(j.steps)) for (const a of s.actions) if (a.status === 'intent' && !a.rolledBack) out.push(`${id}/${a.actionId} left in intent`);
  return out;
}

/**
 * Why a crashed-and-resumed run did not converge (empty when it did): the resumed run's exit
 * code, steps not checked or actions left in intent, differences from the uninterrupted run's
 * dump, and non-idempotent ARM writes beyond the uninterrupted run's.
 */
export async function convergenceFailures(env: Env, baseline: Baseline, outcome: CrashOutcome): Promise<{ failures: string[]; duplicateWrites: number }> {
  const failures: string[] = [];
  if (outcome.resumed && outcome.resumed.code !== 0) failures.push(`resumed run exited ${outcome.resumed.code}: ${outcome.resumed.all.slice(-1500)}`);
  failures.push(...journalProblems(env));
  failures.push(...dumpDifferences(baseline.dump, await fullDump(env)));
  const arm = nonIdempotentWrites(env);
  const duplicateWrites = Math.max(0, arm.reimages - baseline.arm.reimages) + Math.max(0, arm.scaleSetPatches - baseline.arm.scaleSetPatches);
  if (arm.reimages !== baseline.arm.reimages) failures.push(`${arm.reimages} reimage POSTs accepted, ${baseline.arm.reimages} in an uninterrupted run`);
  if (arm.scaleSetPatches !== baseline.arm.scaleSetPatches) failures.push(`${arm.scaleSetPatches} VMSS PATCHes accepted, ${baseline.arm.scaleSetPatches} in an uninterrupted run`);
  return { failures, duplicateWrites };
}
