/**
 * The write contract of the workload identity runbook, end to end on the sandbox with the real
 * clients: on a cluster migrated to managed mode first, for every workload identity step (with
 * `uninstallPodIdentity`), the Kubernetes and ARM mutations the sandbox counted while the step
 * was applied (its actions and its check) equal the `writes` its plan declared just before.
 * Churn is off (its Jobs are not the runbook's writes). Refused requests (a 409 or 429 the
 * gateways retry) are not writes.
 */
import { describe, expect, it } from 'vitest';
import { WORKLOAD_IDENTITY_STEP_IDS } from '../../src/engine/step.ts';
import { startEnv, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';
import { wiRunner } from './wi-harness.ts';

/** Successful mutating requests of external clients, by API (dry runs excluded). */
function writesSoFar(env: Env): { kube: number; arm: number } {
  const ok = (api: 'kube' | 'arm') => [200, 201, 202, 204].reduce((n, status) => n + env.sandbox.metrics.count({ api, caller: 'client', mutating: true, dryRun: false, status }), 0);
  return { kube: ok('kube'), arm: ok('arm') };
}

describe('every write a workload identity step sends is declared by its plan', () => {
  it('after managed mode, step by step with --uninstall-pod-identity: exactly the declared writes', async () => {
    const env = await startEnv({ timeScale: 100, churn: false });
    const figures: string[] = [];
    const mismatches: string[] = [];
    try {
      const managed = await fullRunner(env).apply();
      expect(managed.steps.every((s) => s.outcome === 'checked')).toBe(true);
      for (const id of WORKLOAD_IDENTITY_STEP_IDS) {
        const runner = () => wiRunner(env, { uninstallPodIdentity: true });
        const step = (await runner().plan()).steps.find((s) => s.stepId === id)!;
        if (step.status !== 'planned' || !step.writes) throw new Error(`step ${id} is ${step.status} before its apply: ${step.reason ?? ''}`);
        const before = writesSoFar(env);
        const applied = await runner().apply({ step: id });
        expect(applied.steps.at(-1), JSON.stringify(applied.steps.at(-1))).toMatchObject({ stepId: id, outcome: 'checked' });
        const after = writesSoFar(env);
        const sent = { kube: after.kube - before.kube, arm: after.arm - before.arm };
        figures.push(`${id}: declared kube ${step.writes.kube} arm ${step.writes.arm}, sent kube ${sent.kube} arm ${sent.arm}`);
        if (sent.kube !== step.writes.kube || sent.arm !== step.writes.arm) mismatches.push(figures.at(-1)!);
      }
    } finally {
      await env.stop();
    }
    console.log(`write contract (workload identity): ${figures.join('; ')}`);
    expect(mismatches).toEqual([]);
  }, 600_000);
});
