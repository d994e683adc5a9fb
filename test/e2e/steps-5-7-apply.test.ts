/**
 * Steps 5-7 end to end on the sandbox's default scenario with batch churn, through the runner
 * with the real gateways over HTTPS (client-node and the Azure SDKs; nothing mocked): a full
 * `apply` ends with MIC gone, no AzureAssignedIdentity left, every test case passed and no
 * token failure outside NMI restart windows; `rollback --all` then returns the starting state.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STEPS } from '../../src/steps/registry.ts';
import type { TestResult } from '../../src/steps/lib/junit.ts';
import { startEnv, stateDump, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';

const AAI = { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity' };
const MIC_OBJECTS: [string, string, string | undefined, string][] = [
  ['apps/v1', 'Deployment', 'default', 'mic'],
  ['v1', 'ServiceAccount', 'default', 'aad-pod-id-mic-service-account'],
  ['rbac.authorization.k8s.io/v1', 'ClusterRole', undefined, 'aad-pod-id-mic-role'],
  ['rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', undefined, 'aad-pod-id-mic-binding'],
  ['aadpodidentity.k8s.io/v1', 'AzurePodIdentityException', 'default', 'mic-exception'],
  ['v1', 'Endpoints', 'default', 'aad-pod-identity-mic'],
];

/** The starting state plus what steps 5-7 touch: MIC's objects and node schedulability. */
async function dump(env: Env): Promise<Record<string, unknown>> {
  const out = await stateDump(env);
  for (const [apiVersion, kind, ns, name] of MIC_OBJECTS) {
    const o = await env.kube.get({ apiVersion, kind }, ns, name);
    out[`present/${kind}/${ns ?? ''}/${name}`] = Boolean(o);
  }
  for (const n of await env.kube.list({ apiVersion: 'v1', kind: 'Node' })) out[`node/${n.metadata?.name}/unschedulable`] = Boolean((n.spec as { unschedulable?: boolean }).unschedulable);
  return out;
}

describe('steps 5-7 on the default scenario with churn', () => {
  let env: Env;
  let before: Record<string, unknown>;

  beforeAll(async () => {
    env = await startEnv({ timeScale: 25 });
    before = await dump(env);
    env.sandbox.metrics.reset();
    env.sandbox.meter.reset();
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('a full apply drains, tests and cleans up: MIC gone, no AzureAssignedIdentity, every test case passed, no failure outside NMI restart windows', async () => {
    const junit = join(env.dir, 'junit.xml');
    const started = Date.now();
    // Simulated times of step boundaries, to place each outage window in the runbook.
    const at: Record<string, number> = {};
    const result = await fullRunner(env, { junitPath: junit }, {
      stepStart: (id, _title, phase) => void (at[`${id}:${phase}`] ??= env.sandbox.clock.now()),
      stepEnd: (r) => void (at[`${r.stepId}:end`] = env.sandbox.clock.now()),
    }).apply();
    const seconds = (Date.now() - started) / 1000;
    expect(result.steps.map((s) => [s.stepId, s.outcome])).toEqual(STEPS.map((s) => [s.id, 'checked']));

    for (const [apiVersion, kind, ns, name] of MIC_OBJECTS) expect(await env.kube.get({ apiVersion, kind }, ns, name), `${kind} ${name}`).toBeUndefined();
    expect(await env.kube.list(AAI)).toEqual([]);
    // AzureIdentity and AzureIdentityBinding stay: managed NMI reads them.
    expect((await env.kube.list({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity' })).length).toBeGreaterThanOrEqual(8);

    const results = result.journal.steps.test.data?.results as TestResult[];
    expect(results.length).toBeGreaterThanOrEqual(12);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    const fresh = result.journal.steps.drain.data?.freshNodes as Record<string, string>;
    expect(Object.keys(fresh).sort()).toEqual(['batch', 'pay', 'platform', 'reports', 'system']);
    for (const r of results) expect(r.node).toBe(fresh[r.pool]);
    expect(readFileSync(junit, 'utf8')).toContain(`tests="${results.length}" failures="0"`);

    const report = env.sandbox.meter.report();
    // From the drain on (MIC gone, NMI managed everywhere) no service pod may fail at all.
    const afterDrainStart = report.windows.filter((w) => Date.parse(w.start) >= at['drain:apply']);
    expect(afterDrainStart).toEqual([]);
    // Before it, only NMI restart gaps, and standard mode's own wait for MIC while MIC still ran.
    const outside = report.windows.filter((w) => !w.cause.startsWith('nmi-restart'));
    for (const w of outside) {
      expect(w.cause, `${w.pod}: ${w.cause}`).toBe('waiting-for-mic-assignment');
      expect(Date.parse(w.start)).toBeLessThan(at['mic-scale:end']);
    }
    const arm = env.sandbox.metrics.count({ api: 'arm', caller: 'client', verb: 'POST' });
    console.log(`figures: full apply ${seconds.toFixed(1)} s at 25x; ${results.length} test cases passed; ARM POSTs (reimage) ${arm}; outage windows ${report.windows.length} (${outside.length} standard-mode MIC waits before mic-scale, none after drain began), failing pod-seconds ${report.failingPodSeconds}`);
  }, 240_000);

  it('rollback --all returns the starting state', async () => {
    await fullRunner(env).rollback({ all: true });
    expect(await dump(env)).toEqual(before);
  }, 180_000);
});
