/**
 * Rollback matrix of the workload identity runbook: on one sandbox migrated to managed mode
 * first, for each step k given, `apply --to k` (with `uninstallPodIdentity`, so the round of the
 * last step also deletes NMI, MIC's leftovers and the CRDs) then `rollback --all`, and a full
 * dump compared with the one taken before the first round: Pod Identity objects and CRDs
 * (re-created from the journal), workloads with their pod templates (labels, annotations,
 * service account), service accounts with their annotations (created ones deleted), config
 * maps, RBAC, every scale set's identities, every identity's federated credentials (deleted)
 * and the cluster's workload identity flag. The rounds run one after the other, each from the
 * state the previous rollback restored. Churn is off: its Jobs come and go.
 *
 * Every k is covered: wi-preflight to wi-test in `wi-rollback-matrix.test.ts`,
 * wi-remove-pod-identity (a full workload identity migration before its rollback) in
 * `wi-rollback-matrix-late.test.ts`, two files so that the halves run side by side.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StepId, WorkloadIdentityStepId } from '../../src/engine/step.ts';
import { dumpDifferences, type StateDump } from './crash-matrix-harness.ts';
import { startEnv, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';
import { wiDump, wiRunner } from './wi-harness.ts';

/** Declares the rounds `apply --to k`, `rollback --all` for each k of `steps`, in order, on one sandbox in managed mode. */
export function wiRollbackMatrix(steps: readonly WorkloadIdentityStepId[]): void {
  describe('workload identity rollback matrix: apply --to k, rollback --all, for every k', () => {
    let env: Env;
    let original: StateDump;
    beforeAll(async () => {
      env = await startEnv({ timeScale: 100, churn: false });
      const managed = await fullRunner(env).apply();
      expect(managed.steps.every((s) => s.outcome === 'checked')).toBe(true);
      original = await wiDump(env);
    }, 300_000);
    afterAll(async () => {
      await env?.stop();
    });

    for (const step of steps) {
      it(`apply --to ${step}, rollback --all: the cluster is as before`, async () => {
        const applied = await wiRunner(env, { uninstallPodIdentity: true }).apply({ to: step as StepId });
        expect(applied.steps.at(-1), JSON.stringify(applied.steps.at(-1))).toMatchObject({ stepId: step, outcome: 'checked' });
        // From wi-enable on, the apply changed something the comparison sees (so it can fail); wi-preflight only reads.
        if (step !== 'wi-preflight') expect(dumpDifferences(original, await wiDump(env)).length).toBeGreaterThan(0);
        const rolled = await wiRunner(env, { uninstallPodIdentity: true }).rollback({ all: true });
        expect(rolled.steps.every((s) => s.outcome === 'rolled-back' || s.outcome === 'skipped'), JSON.stringify(rolled.steps)).toBe(true);
        expect(dumpDifferences(original, await wiDump(env))).toEqual([]);
      }, 400_000);
    }
  });
}
