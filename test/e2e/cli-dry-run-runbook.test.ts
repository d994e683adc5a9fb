/**
 * The whole runbook as a dry run, through the real CLI against a fresh default sandbox:
 * `apply --dry-run=server --yes` and `--dry-run=client --yes` with no --step/--to run all seven
 * steps (the inventory the inventory step would write flows to the later steps), exit 0, make no
 * mutation (the sandbox's request metrics), write no journal or inventory, say per step what
 * they would do (which nodes drain would replace, which test cases would run where), and leave
 * DaemonSets, Deployments, Pod Identity objects and VMSS identities byte-identical.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMain, startEnv, type Env } from './steps-1-4-harness.ts';

const KINDS = [
  { apiVersion: 'apps/v1', kind: 'DaemonSet' },
  { apiVersion: 'apps/v1', kind: 'Deployment' },
  { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity' },
  { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding' },
  { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity' },
  { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzurePodIdentityException' },
];

/** Every object as served (metadata with resourceVersion and generation, spec; workload status is the controllers'), and each scale set's identities. */
async function snapshot(env: Env): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const ref of KINDS) {
    for (const o of await env.kube.list(ref)) {
      const { status, ...rest } = o;
      out[`${ref.kind}/${o.metadata?.namespace}/${o.metadata?.name}`] = JSON.stringify(ref.kind === 'DaemonSet' || ref.kind === 'Deployment' ? rest : { ...rest, status });
    }
  }
  const rg = (await env.azure.getManagedCluster(env.sandbox.aksResourceId)).nodeResourceGroup;
  for (const s of await env.azure.listScaleSets(rg)) out[`vmss/${s.name}`] = JSON.stringify(s.userAssignedIdentities);
  return out;
}

function differences(a: Record<string, string>, b: Record<string, string>): string[] {
  return Object.keys({ ...a, ...b }).filter((k) => a[k] !== b[k]).map((k) => `${k}:\n  before ${a[k]}\n  after  ${b[k]}`);
}

describe('apply --dry-run over the whole runbook on a fresh sandbox', () => {
  let env: Env;
  beforeAll(async () => {
    // No batch churn: MIC would create and delete AzureAssignedIdentities for churn pods on its own.
    env = await startEnv({ timeScale: 100, churn: false });
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
  });

  for (const mode of ['server', 'client'] as const) {
    it(`--dry-run=${mode} --yes runs all seven steps, exits 0, mutates nothing and says what each step would do`, async () => {
      const before = await snapshot(env);
      // Persisted mutations by clients (server-side dry runs excluded, as the sandbox counts them).
      const mutations = () => ({ kube: env.sandbox.metrics.count({ api: 'kube', caller: 'client', mutating: true, dryRun: false }), arm: env.sandbox.metrics.count({ api: 'arm', caller: 'client', mutating: true, dryRun: false }) });
      const m0 = mutations();
      const r = await runMain(env, ['apply', `--dry-run=${mode}`, '--yes'], { timeoutMs: 120_000 });
      expect(r.code, r.all).toBe(0);
      expect(r.all).not.toMatch(/unexpected/i);
      expect(mutations()).toEqual(m0);
      expect(existsSync(env.journalPath)).toBe(false);
      expect(existsSync(env.inventoryPath)).toBe(false);
      // The run summary is the command's result: stdout (progress goes to stderr).
      for (const id of ['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup']) expect(r.stdout, id).toMatch(new RegExp(`○ ${id} .*dry-run=${mode}:`));
      // drain names the node it would replace in each pool, test the cases and where they would run.
      expect(r.stdout).toMatch(/drain .*would drain and reimage aks-[a-z]+-12345678-vmss\d+/);
      // After its first wave the NMI rollout cordons every node still on the old NMI, then empties them one by one.
      expect(r.stdout).toMatch(/~ 8 nodes: after the first wave, cordon every node still on the old NMI/);
      expect(r.stdout).toMatch(/~ node aks-[a-z]+-12345678-vmss\d+: evict \d+ pods?, restart NMI/);
      expect(r.stdout).toMatch(/test .*would run \d+ test cases on aks-/);
      expect(r.stdout).toMatch(/on aks-[a-z]+-12345678-vmss\d+ \(pool [a-z]+\): (token|nmi-health)/);
      expect(r.stdout).toMatch(/cleanup .*would delete \d+ MIC objects/);
      expect(r.stdout).toMatch(new RegExp(`^Dry run \\(${mode}\\): \\d+ Kubernetes and \\d+ Azure write\\(s\\)\\.$`, 'm'));
      expect(differences(before, await snapshot(env))).toEqual([]);
    }, 150_000);
  }
});
