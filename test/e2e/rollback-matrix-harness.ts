/**
 * Rollback matrix: for each step k given, `apply --to k` then `rollback --all` on one shared
 * sandbox (the rounds run one after the other, each from the state the previous rollback
 * restored), and a full dump compared with the one taken before the first round: Pod Identity
 * objects (AzureIdentity, AzureIdentityBinding, AzurePodIdentityException, the CRDs), MIC/NMI and
 * every other Deployment and DaemonSet, ServiceAccounts, ConfigMaps, Endpoints,
 * PodDisruptionBudgets, RBAC, and every scale set's identities. Ignored: only what Kubernetes
 * itself changes (uid, resourceVersion, timestamps, managedFields, generation, revision
 * annotations, MIC's leader lease, workload status) and AzureAssignedIdentities, which MIC
 * derives from pods whose names are generated.
 *
 * Every k is covered: steps inventory to drain in `rollback-matrix.test.ts`, test and cleanup
 * (each a full migration before its rollback) in `rollback-matrix-late.test.ts`, two files so
 * that the halves run side by side.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StepId } from '../../src/engine/step.ts';
import { dumpDifferences, fullDump, type StateDump } from './crash-matrix-harness.ts';
import { startEnv, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';

/** Declares the rounds `apply --to k`, `rollback --all` for each k of `steps`, in order, on one sandbox. */
export function rollbackMatrix(steps: readonly StepId[]): void {
  describe('rollback matrix: apply --to k, rollback --all, for every k', () => {
    let env: Env;
    let original: StateDump;
    beforeAll(async () => {
      env = await startEnv({ timeScale: 100 });
      original = await fullDump(env, { assignedIdentities: false });
    }, 120_000);
    afterAll(async () => {
      await env?.stop();
    });

    for (const step of steps) {
      it(`apply --to ${step}, rollback --all: the cluster is as before`, async () => {
        const applied = await fullRunner(env).apply({ to: step });
        expect(applied.steps.at(-1)).toMatchObject({ stepId: step, outcome: 'checked' });
        // The apply changed something the comparison sees (so it can fail).
        expect(dumpDifferences(original, await fullDump(env, { assignedIdentities: false })).length).toBeGreaterThan(0);
        const rolled = await fullRunner(env).rollback({ all: true });
        expect(rolled.steps.every((s) => s.outcome === 'rolled-back' || s.outcome === 'skipped')).toBe(true);
        const differences = dumpDifferences(original, await fullDump(env, { assignedIdentities: false }));
        expect(differences).toEqual([]);
      }, 400_000);
    }
  });
}
