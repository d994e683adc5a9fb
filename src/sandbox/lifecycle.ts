/**
 * Starting, stopping and querying a detached sandbox (`podid-migrate sandbox up|down|status`).
 *
 * The sandbox directory (default `.sandbox` under the current directory) holds the client
 * files (`kubeconfig`, `ca.crt`, `arm-token`, `env`), `sandbox.json` (state, pid, URLs) and
 * `sandbox.log`. Only the process recorded there, which `up` started, is ever signalled.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_SCENARIO_PATH, loadScenarioFile } from './scenario.ts';

export const DEFAULT_SANDBOX_DIR = '.sandbox';

export interface SandboxState {
  status: 'starting' | 'ready' | 'failed' | 'stopped';
  pid: number;
  startedAt: string;
  readyAt?: string;
  /** While starting: what keeps the cluster from its steady state (as `/_sandbox/ready` reports it). */
  notReady?: string[];
  stoppedAt?: string;
  scenario?: string;
  scenarioFile?: string;
  timeScale?: number;
  kubeUrl?: string;
  armUrl?: string;
  aksResourceId?: string;
  files?: { dir: string; kubeconfig: string; caFile: string; armTokenFile: string; envFile: string };
  error?: string;
  hint?: string;
}

/** A sandbox operation that failed in a way the user can act on. */
export class SandboxError extends Error {
  readonly hint: string;
  constructor(message: string, hint: string) {
    super(message);
    this.name = 'SandboxError';
    this.hint = hint;
  }
}

export function statePath(dir: string): string {
  return join(resolve(dir), 'sandbox.json');
}

export function writeState(dir: string, state: SandboxState): void {
  const p = statePath(dir);
  mkdirSync(dirname(p), { recursive: true, mode: 0o700 });
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o644 });
  renameSync(tmp, p);
}

export function readState(dir: string): SandboxState | undefined {
  try {
    return JSON.parse(readFileSync(statePath(dir), 'utf8')) as SandboxState;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface UpOptions {
  dir?: string;
  scenario?: string;
  timeScale?: number;
  churn?: boolean;
  /** Real milliseconds to wait for the sandbox to become ready. */
  timeoutMs?: number;
  onProgress?: (message: string) => void;
}

// The daemon next to this module: daemon.ts from the sources, daemon.js from the built package.
const DAEMON = join(dirname(fileURLToPath(import.meta.url)), `daemon${extname(fileURLToPath(import.meta.url))}`);

/** Starts a detached sandbox and resolves once it is ready. */
export async function sandboxUp(opts: UpOptions = {}): Promise<SandboxState> {
  const dir = resolve(opts.dir ?? DEFAULT_SANDBOX_DIR);
  const existing = readState(dir);
  if (existing && existing.status !== 'stopped' && existing.status !== 'failed' && isAlive(existing.pid)) {
    throw new SandboxError(`a sandbox is already running from ${dir} (pid ${existing.pid}, ${existing.status})`, `Use it (source ${join(dir, 'env')}), or stop it first: podid-migrate sandbox down --dir ${dir}`);
  }
  const scenarioFile = resolve(opts.scenario ?? DEFAULT_SCENARIO_PATH);
  // Validate in the foreground so a bad file is reported here, not in a log.
  loadScenarioFile(scenarioFile);
  if (opts.timeScale !== undefined && !(opts.timeScale > 0 && opts.timeScale <= 1000)) {
    throw new SandboxError(`--time-scale must be a number in (0, 1000], got ${opts.timeScale}`, 'Pass e.g. --time-scale 10 (ten simulated seconds per real second).');
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  rmSync(statePath(dir), { force: true });
  const logFile = join(dir, 'sandbox.log');
  const fd = openSync(logFile, 'w', 0o644);
  const args = [DAEMON, '--dir', dir, '--scenario', scenarioFile];
  if (opts.timeScale !== undefined) args.push('--time-scale', String(opts.timeScale));
  if (opts.churn === false) args.push('--no-churn');
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd], env: process.env });
  closeSync(fd);
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? 1));
  child.unref();
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  let last = '';
  while (Date.now() < deadline) {
    const st = readState(dir);
    if (st?.status === 'ready') return st;
    if (st?.status === 'failed' || exited !== null) {
      throw new SandboxError(`the sandbox failed to start: ${st?.error ?? `process exited with code ${exited}`}`, st?.hint ?? `See ${logFile}.`);
    }
    if (st && st.status !== last) opts.onProgress?.(`sandbox ${st.status} (pid ${st.pid})`);
    last = st?.status ?? last;
    await new Promise((r) => setTimeout(r, 100));
  }
  const notReady = readState(dir)?.notReady ?? [];
  if (child.pid && isAlive(child.pid)) process.kill(child.pid, 'SIGTERM');
  const what = notReady.length ? `; still not ready:\n  ${notReady.join('\n  ')}` : '';
  throw new SandboxError(
    `the sandbox did not become ready within ${Math.round((opts.timeoutMs ?? 120_000) / 1000)} s${what}`,
    notReady.length ? `Fix the scenario so these can become ready (e.g. a workload pinned to a pool with no nodes), or give a slow machine more time with --timeout. See ${logFile}.` : `See ${logFile}; a slow machine may need --timeout.`,
  );
}

/** Stops the sandbox recorded in `dir` (SIGTERM, then SIGKILL after 10 s) and removes its credentials. */
export async function sandboxDown(dirOpt?: string): Promise<{ stopped: boolean; pid?: number }> {
  const dir = resolve(dirOpt ?? DEFAULT_SANDBOX_DIR);
  const st = readState(dir);
  if (!st) return { stopped: false };
  let stopped = false;
  if (isAlive(st.pid) && st.status !== 'stopped') {
    process.kill(st.pid, 'SIGTERM');
    const deadline = Date.now() + 10_000;
    while (isAlive(st.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (isAlive(st.pid)) process.kill(st.pid, 'SIGKILL');
    stopped = true;
  }
  // The tokens die with the process; remove the files that carried them.
  for (const f of ['kubeconfig', 'arm-token', 'env']) rmSync(join(dir, f), { force: true });
  rmSync(statePath(dir), { force: true });
  return { stopped, pid: st.pid };
}

/** Reads a running sandbox's status through its control API. */
export async function sandboxStatus(dirOpt?: string): Promise<{ state: SandboxState; live?: unknown }> {
  const dir = resolve(dirOpt ?? DEFAULT_SANDBOX_DIR);
  const st = readState(dir);
  if (!st) throw new SandboxError(`no sandbox in ${dir}`, 'Start one: podid-migrate sandbox up' + (dirOpt ? ` --dir ${dirOpt}` : ''));
  if (st.status !== 'ready' || !isAlive(st.pid) || !st.files) return { state: { ...st, status: isAlive(st.pid) ? st.status : 'stopped' } };
  const live = await controlRequest(st, 'GET', '/_sandbox/status');
  return { state: st, live };
}

/** Calls the sandbox's `/_sandbox/*` control API with the credentials from its files. */
export async function controlRequest(st: SandboxState, method: string, path: string, body?: unknown): Promise<unknown> {
  if (!st.files || !st.kubeUrl) throw new SandboxError('the sandbox is not ready', 'Wait for `sandbox up` to finish.');
  const kc = parseYaml(readFileSync(st.files.kubeconfig, 'utf8'));
  const token: string = kc.users[0].user.token;
  const ca = readFileSync(st.files.caFile, 'utf8');
  const url = new URL(path, st.kubeUrl);
  return new Promise((resolvePromise, reject) => {
    const req = https.request(url, { method, ca, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 500) >= 400) return reject(new SandboxError(`sandbox control ${method} ${path} answered ${res.statusCode}: ${text.slice(0, 200)}`, 'Check that the sandbox is running: podid-migrate sandbox status'));
        try {
          resolvePromise(text ? JSON.parse(text) : {});
        } catch {
          resolvePromise(text);
        }
      });
    });
    req.on('error', (e) => reject(new SandboxError(`cannot reach the sandbox at ${st.kubeUrl}: ${e.message}`, 'Is it running? podid-migrate sandbox status')));
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}

