/**
 * Starts a full in-process sandbox for end-to-end tests and builds the real clients that
 * reach it over HTTPS: `@kubernetes/client-node`, the `@azure/arm-*` SDKs, and stock kubectl
 * through a kubeconfig file in a private temp directory.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { loadScenarioFile, parseScenario, DEFAULT_SCENARIO_PATH, type Scenario } from '../../src/sandbox/scenario.ts';
import { Sandbox, type SandboxClientFiles } from '../../src/sandbox/sandbox.ts';
import { createArmClients } from './arm-clients.ts';

const run = promisify(execFile);

export interface SandboxHarness {
  sb: Sandbox;
  files: SandboxClientFiles;
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  arm: ReturnType<typeof createArmClients>;
  /** Runs stock kubectl against the sandbox; resolves with stdout, rejects with stderr. */
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<string>;
  close(): Promise<void>;
}

export async function startSandbox(opts: { scenario?: Scenario | string; timeScale?: number; churn?: boolean } = {}): Promise<SandboxHarness> {
  const scenario = typeof opts.scenario === 'string' ? parseScenario(opts.scenario, 'test-scenario') : (opts.scenario ?? loadScenarioFile(DEFAULT_SCENARIO_PATH));
  const sb = await Sandbox.start({ scenario, timeScale: opts.timeScale ?? 20, churn: opts.churn });
  const dir = mkdtempSync(join(tmpdir(), 'podid-sbx-'));
  try {
    await sb.waitReady(60_000);
  } catch (e) {
    await sb.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const files = sb.writeClientFiles(dir);
  const kc = new KubeConfig();
  kc.loadFromFile(files.kubeconfig);
  const arm = createArmClients({ endpoint: sb.armUrl, token: sb.armToken, caPem: sb.caPem, subscriptionId: scenario.subscriptionId });
  return {
    sb,
    files,
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    arm,
    async kubectl(args, o = {}) {
      const child = run('kubectl', ['--kubeconfig', files.kubeconfig, ...args], { timeout: o.timeoutMs ?? 60_000, maxBuffer: 16 << 20 });
      if (o.input !== undefined) {
        child.child.stdin?.end(o.input);
      }
      try {
        return (await child).stdout;
      } catch (e) {
        const err = e as Error & { stderr?: string; stdout?: string };
        throw new Error(`kubectl ${args.join(' ')} failed: ${err.stderr || err.message}`);
      }
    },
    async close() {
      await sb.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `probe` every 50 ms until it returns a truthy value, or fails naming `what`. */
export async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
