/**
 * The actions of `sandbox up|down|status` (flags in ../commands/sandbox.ts): a simulated AKS cluster + Azure Resource Manager on loopback to
 * rehearse the migration against. `up` starts it detached and returns when it is ready;
 * `source <dir>/env` then points both podid-migrate and kubectl at it.
 */
import { join } from 'node:path';
import { PreconditionError, UsageError } from '../../engine/errors.ts';
import { SandboxError, sandboxDown, sandboxStatus, sandboxUp } from '../../sandbox/lifecycle.ts';
import { ScenarioError } from '../../sandbox/scenario.ts';
import type { SandboxStatus } from '../../sandbox/sandbox.ts';
import { renderData } from '../render.ts';
import { envelope } from '../documents.ts';
import type { Command } from 'commander';
import type { CliEnv } from '../main.ts';

function asCliError(e: unknown): unknown {
  if (e instanceof ScenarioError) return new UsageError(e.message, e.hint);
  if (e instanceof SandboxError) return new PreconditionError(e.message, e.hint);
  return e;
}

function parseTimeScale(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || n > 1000) {
    throw new UsageError(`--time-scale must be a number greater than 0 and at most 1000, got "${raw}".`, 'Pass e.g. --time-scale 10 (ten simulated seconds per real second; 1 is real time).');
  }
  return n;
}

function parseSeconds(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number of seconds, got "${raw}".`, `Pass e.g. ${flag} 120.`);
  return n;
}

/** Human summary of a live sandbox for `sandbox status`. */
export function renderSandboxStatus(s: SandboxStatus): string {
  const lines: string[] = [];
  lines.push(`Scenario   ${s.scenario} (time scale ${s.timeScale}x, simulated time ${s.simulatedTime})`);
  lines.push(`Kubernetes ${s.kubeUrl}`);
  lines.push(`Azure      ${s.armUrl}`);
  const objects = Object.entries(s.objects)
    .filter(([k]) => /^(nodes|pods|deployments\.apps|daemonsets\.apps|jobs\.batch|azure)/.test(k))
    .map(([k, v]) => `${k.replace(/\.aadpodidentity\.k8s\.io$/, '')} ${v}`);
  lines.push(`Objects    ${objects.join(', ')}`);
  const m = s.metrics;
  lines.push(`Requests   ${m.total} total; mutations by clients: kubernetes ${m.mutations.kube}, azure ${m.mutations.arm}; dry-run ${m.dryRunRequests}`);
  const wi = s.workloadIdentity;
  if (wi) {
    lines.push(`Workload   OIDC issuer ${wi.oidcIssuerEnabled ? `on (${wi.issuerUrl})` : 'off'}, workload identity ${wi.workloadIdentityEnabled ? 'on' : 'off'}, ${wi.federatedCredentials.length} federated credential(s); token endpoint ${wi.authorityUrl}`);
  }
  const o = s.outage;
  lines.push(`Outage     ${o.failingPodSeconds} failing pod-seconds over ${o.samples} samples since ${o.since}`);
  for (const [cause, secs] of Object.entries(o.byCause ?? {})) lines.push(`             ${secs} s  ${cause}`);
  const worst = [...(o.pods ?? [])].sort((a, b) => b.longestFailureSeconds - a.longestFailureSeconds).slice(0, 5);
  for (const p of worst) if (p.longestFailureSeconds > 0) lines.push(`             longest ${p.longestFailureSeconds} s  ${p.pod} (${p.service})`);
  if (s.faults.length) lines.push(`Faults     ${s.faults.map((f) => `${f.id} ${f.api} ${f.method ?? '*'} ${f.path ?? '*'} -> ${f.action.kind} (fired ${f.fired})`).join('; ')}`);
  return lines.join('\n') + '\n';
}

/** `sandbox up`: starts the daemon and prints the `source <dir>/env` line on stdout. */
export async function up(env: CliEnv, opts: { dir: string; scenario?: string; timeScale?: string; churn: boolean; timeout: string }): Promise<void> {
  const timeScale = parseTimeScale(opts.timeScale);
  const timeoutS = parseSeconds(opts.timeout, '--timeout')!;
  try {
    const st = await sandboxUp({ dir: opts.dir, scenario: opts.scenario, timeScale, churn: opts.churn, timeoutMs: timeoutS * 1000, onProgress: (m) => env.err(`${m}\n`) });
    env.err(`Sandbox "${st.scenario}" ready (pid ${st.pid}, ${st.timeScale}x): Kubernetes ${st.kubeUrl}, Azure ${st.armUrl}\n`);
    env.out(`source ${join(st.files!.dir, 'env')}\n`);
    env.err(`Then: kubectl get nodes; podid-migrate plan; podid-migrate sandbox status --dir ${opts.dir}\n`);
  } catch (e) {
    throw asCliError(e);
  }
}

/** `sandbox down`: stops the daemon of `--dir` and removes its credentials. */
export async function down(env: CliEnv, opts: { dir: string }): Promise<void> {
  const r = await sandboxDown(opts.dir);
  env.err(r.pid ? (r.stopped ? `Sandbox stopped (pid ${r.pid}).\n` : `Sandbox (pid ${r.pid}) was not running; cleaned up its files.\n`) : `No sandbox in ${opts.dir}.\n`);
}

/** `sandbox status`: metrics and the outage meter of the running sandbox. */
export async function status(env: CliEnv, opts: { dir: string }, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  let result;
  try {
    result = await sandboxStatus(opts.dir);
  } catch (e) {
    throw asCliError(e);
  }
  if (globals.output === 'json' || globals.output === 'yaml') {
    env.out(renderData(globals.output, envelope('sandbox-status', { state: result.state, ...(result.live ? { live: result.live } : {}) })));
    return;
  }
  if (!result.live) {
    env.out(`Sandbox in ${opts.dir}: ${result.state.status}${result.state.error ? ` (${result.state.error})` : ''}\n`);
    if (result.state.status !== 'ready') env.exitCode = 1;
    return;
  }
  env.out(renderSandboxStatus(result.live as SandboxStatus));
}
