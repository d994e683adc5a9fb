/**
 * `podid-migrate sandbox up|status|down` as an operator runs them: a detached sandbox that
 * stock kubectl reaches through `source <dir>/env`, run-time faults through the control API,
 * and a clean stop that leaves no credentials behind.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { controlRequest, isAlive, readState } from '../../src/sandbox/lifecycle.ts';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/podid-migrate', import.meta.url));

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { env: { ...process.env, CI: 'true', ...env }, timeout: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** The variables `source <dir>/env` would export. */
function sourced(envFile: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(envFile, 'utf8').split('\n')) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

const root = mkdtempSync(join(tmpdir(), 'podid-sandbox-cli-'));
const dir = join(root, 'sbx');
afterAll(async () => {
  const st = readState(dir);
  if (st && isAlive(st.pid)) await cli(['sandbox', 'down', '--dir', dir]);
  rmSync(root, { recursive: true, force: true });
});

describe('podid-migrate sandbox', () => {
  it('refuses a bad scenario naming the field, before starting anything', async () => {
    const bad = join(root, 'bad.yaml');
    writeFileSync(bad, 'apiVersion: podid-migrate.io/v1\nkind: SandboxScenario\nname: x\ncluster: {name: c, resourceGroup: g}\npools: [{name: system, count: -1}]\nidentities: []\n');
    const r = await cli(['sandbox', 'up', '--dir', join(root, 'never'), '--scenario', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('pools[0].count: must be >= 1 (got -1)');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(root, 'never', 'sandbox.json'))).toBe(false);
    const scale = await cli(['sandbox', 'up', '--dir', join(root, 'never'), '--time-scale', 'fast']);
    expect(scale.code).toBe(1);
    expect(scale.stderr).toContain('--time-scale must be a number');
  });

  it('up starts it detached; kubectl and status reach it; faults apply at run time; down stops it', async () => {
    const up = await cli(['sandbox', 'up', '--dir', dir, '--no-churn', '--time-scale', '20']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout.trim()).toBe(`source ${join(dir, 'env')}`);
    const st = readState(dir)!;
    expect(st.status).toBe('ready');
    expect(isAlive(st.pid)).toBe(true);
    // Credentials are private; no private key is ever written.
    expect((await import('node:fs')).statSync(join(dir, 'kubeconfig')).mode & 0o777).toBe(0o600);
    expect((await import('node:fs')).statSync(join(dir, 'arm-token')).mode & 0o777).toBe(0o600);
    for (const f of ['kubeconfig', 'ca.crt', 'env', 'sandbox.json']) expect(readFileSync(join(dir, f), 'utf8')).not.toMatch(/PRIVATE KEY/);

    const env = sourced(join(dir, 'env'));
    const nodes = await run('kubectl', ['get', 'nodes', '-o', 'name'], { env: { ...process.env, ...env } });
    expect(nodes.stdout.trim().split('\n')).toHaveLength(13);

    const again = await cli(['sandbox', 'up', '--dir', dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already running .* \(pid \d+, ready\)/);

    // A run-time fault: the next pod list answers 429 with Retry-After, through the control API.
    const { id } = (await controlRequest(st, 'POST', '/_sandbox/faults', { api: 'kube', method: 'GET', path: '^/api/v1/pods$', times: 1, action: { kind: 'status', status: 429, retryAfterSeconds: 1 } })) as { id: string };
    const throttled = await run('kubectl', ['get', 'pods', '-A', '-v=6'], { env: { ...process.env, ...env } }).catch((e) => e);
    expect(String(throttled.stderr ?? '')).toMatch(/429/);

    const status = await cli(['sandbox', 'status', '--dir', dir, '-o', 'json']);
    expect(status.code, status.stderr).toBe(0);
    const live = JSON.parse(status.stdout).live;
    expect(live.scenario).toBe('default');
    expect(live.faults.find((f: { id: string }) => f.id === id).fired).toBe(1);
    expect(live.metrics.kube['list pods 429']).toBe(1);
    expect(live.outage).toHaveProperty('failingPodSeconds');
    const human = await cli(['sandbox', 'status', '--dir', dir]);
    expect(human.stdout).toMatch(/^Outage {5}\d+ failing pod-seconds/m);

    const down = await cli(['sandbox', 'down', '--dir', dir]);
    expect(down.code).toBe(0);
    expect(down.stderr).toContain(`Sandbox stopped (pid ${st.pid})`);
    expect(isAlive(st.pid)).toBe(false);
    for (const f of ['kubeconfig', 'arm-token', 'env', 'sandbox.json']) expect(existsSync(join(dir, f))).toBe(false);
  }, 120_000);
});
