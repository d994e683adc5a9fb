/**
 * The whole migration of a Helm install of Pod Identity (chart 4.1.18 names, labels and
 * `--operation-mode=standard`, in `kube-system`), through the real `bin/podid-migrate demo`:
 * every step finds the chart's objects, and the operator is told which chart values keep the
 * result (a later `helm upgrade` with the old values would bring MIC back).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'podid-migrate');

describe('podid-migrate demo on a Helm install', () => {
  it('migrates it and names the chart values that keep managed mode', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'podid-demo-helm-'));
    const scenario = readFileSync(join(ROOT, 'scenarios', 'default.yaml'), 'utf8')
      .replace(/^name: default$/m, 'name: helm')
      .replace(/^ {2}install: raw$/m, '  install: helm')
      .replace(/^ {2}namespace: default$/m, '  namespace: kube-system');
    expect(scenario).toContain('install: helm');
    writeFileSync(join(cwd, 'helm.yaml'), scenario);
    const r = await execa(process.execPath, [BIN, 'demo', '--scenario', join(cwd, 'helm.yaml'), '--time-scale', '40', '--dir', join(cwd, 'demo')], { cwd, env: { CI: 'true' }, reject: false, timeout: 170_000 });
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
    for (const step of ['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup']) expect(r.stdout).toMatch(new RegExp(`^${step} +checked +\\S+`, 'm'));
    // The demo's default procedure is the drain NMI rollout: every one of the 13 nodes drained, then its NMI restarted.
    expect(r.stdout).toMatch(/^nmi-managed +checked .*NMI kube-system\/aad-pod-identity-nmi in managed mode: restarted on 13 drained nodes/m);
    expect(r.stdout).toContain('the protection is the chart value mic.immutableUserMSIs=');
    expect(r.stdout).toContain('--set operationMode=managed');
    expect(r.stdout).toMatch(/^cleanup +checked .*deleted \d+ MIC objects/m);
    expect(r.stdout).toContain('no failure caused by the migration outside NMI restart windows');
  }, 180_000);
});
