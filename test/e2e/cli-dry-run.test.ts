/**
 * The CLI surface end to end (`main()` in-process with the production runtime, the env of
 * `source <dir>/env`) against a fresh default sandbox with churn:
 * `plan -o json` shows the runbook with every step's actions and no blocker,
 * `apply --dry-run=server` sends every write as a dry run (zero persisted mutations in the
 * sandbox's metrics, Kubernetes dry-run requests seen), and after a real `apply --step
 * inventory`, `status -o json` shows the journal.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookPlan } from '../../src/engine/plan.ts';
import { runMain, startEnv, type Env } from './steps-1-4-harness.ts';

describe('CLI plan, apply --dry-run=server and status against the sandbox', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    env.sandbox.metrics.reset();
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('plan -o json lists the actions of every step it can plan before anything is applied, with no blocker', async () => {
    const r = await runMain(env, ['plan', '-o', 'json']);
    expect(r.code, r.all).toBe(0);
    const plan = JSON.parse(r.stdout) as RunbookPlan;
    const byStep = Object.fromEntries(plan.steps.map((s) => [s.stepId, s]));
    // Steps 2-5 are planned against the inventory step 1 would write (no file exists yet).
    expect(existsSync(env.inventoryPath)).toBe(false);
    for (const id of ['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain'] as const) {
      expect(byStep[id].status, `${id}: ${byStep[id].reason ?? ''}`).toBe(id === 'inventory' ? 'planned' : 'tentative');
      expect(byStep[id].plan!.blockers, id).toEqual([]);
      expect(byStep[id].plan!.actions.length, id).toBeGreaterThan(0);
    }
    expect(byStep.inventory.plan!.actions.map((a) => `${a.op} ${a.target}`)).toEqual([
      '+ copy azureidentity platform/shared-storage-id -> batch/shared-storage-id',
      '+ copy azureidentitybinding platform/shared-storage-id-binding -> batch/shared-storage-id-binding',
      `+ file ${env.inventoryPath}`,
    ]);
    expect(byStep.assign.plan!.actions.map((a) => a.target)).toEqual(['deployment default/mic', expect.stringMatching(/^vmss aks-(platform|reports)-12345678-vmss$/)]);
    // The drain rollout: the template with OnDelete, one restart per node, the strategy put back.
    const nmiActions = byStep['nmi-managed'].plan!.actions;
    expect(nmiActions[0].summary).toContain('+ --operation-mode=managed, + --forceNamespaced; updateStrategy: OnDelete');
    expect(nmiActions.filter((a) => a.kind === 'nmi-node-rollout').length).toBe(13); // every node of the 5 pools (3+3+3+2+2)
    // After the first wave (one node of each of the 5 pools), the 8 nodes still on the old NMI are cordoned.
    expect(nmiActions[6]).toMatchObject({ id: 'nmi/cordon-old-nmi', kind: 'cordon-nodes', writes: { kube: 8, arm: 0 } });
    expect(nmiActions.at(-1)!.summary).toMatch(/^updateStrategy back to RollingUpdate/);
    expect(byStep['mic-scale'].plan!.actions.map((a) => a.summary)).toEqual(['replicas: 2 -> 0 (count recorded for rollback)']);
    // test and cleanup work from what drain and test record when they run.
    expect(byStep.test.status).toBe('unavailable');
    expect(byStep.test.reason).toMatch(/^depends on step drain/);
    expect(byStep.cleanup.status).toBe('unavailable');
    expect(plan.totals.blockers).toBe(0);
    expect(JSON.stringify(plan)).not.toContain('inventoryPreview');
    expect(env.sandbox.status().metrics.mutations).toEqual({ kube: 0, arm: 0 });
    // One read snapshot for the command: every kind is listed once however many steps plan from it,
    // and each identity's permission is read once.
    const kubeCalls = Object.entries(env.sandbox.status().metrics.kube).filter(([label]) => !label.includes(':'));
    const lists = kubeCalls.filter(([label]) => label.startsWith('list '));
    expect(lists.length).toBeGreaterThan(5);
    expect(lists.filter(([, n]) => n !== 1)).toEqual([]);
    const permissionReads = env.sandbox.metrics.count({ api: 'arm', caller: 'client', verb: 'GET', resource: 'Permissions_ListForResource' });
    const document = byStep.inventory.plan!.actions.at(-1)!.details as { document: { identities: unknown[] } };
    expect(permissionReads).toBeGreaterThan(0);
    expect(permissionReads).toBeLessThanOrEqual(document.document.identities.length);
  }, 60_000);

  it('apply --dry-run=server makes every read, sends Kubernetes writes as dry runs, and persists nothing', async () => {
    const r = await runMain(env, ['apply', '--dry-run=server', '--to', 'mic-scale']);
    expect(r.code, r.all).toBe(0);
    const status = env.sandbox.status();
    expect(status.metrics.mutations).toEqual({ kube: 0, arm: 0 });
    // The writes reached the API server as dryRun=All (the copies, MIC's args, NMI's args, MIC's scale).
    expect(status.metrics.dryRunRequests).toBeGreaterThanOrEqual(4);
    expect(existsSync(env.journalPath)).toBe(false);
    expect(existsSync(env.inventoryPath)).toBe(false);
    // The Azure write is printed on stdout (for CI to review), not sent; Kubernetes ones as sent with dryRun=All.
    expect(r.stdout).toMatch(/^Dry run \(server\): \d+ Kubernetes and 1 Azure write\(s\)\.$/m);
    expect(r.stdout).toMatch(/^ {2}azure {7}add 1 identity to vmss aks-(platform|reports)-12345678-vmss: would PATCH https:\/\/127\.0\.0\.1:\d+\/subscriptions\/.*"userAssignedIdentities":\{"[^"]+exporter-id":\{\}\}/m);
    expect(r.stdout).toMatch(/^ {2}kubernetes {2}json patch DaemonSet default\/nmi: sent with dryRun=All: PATCH /m);
  }, 60_000);

  it('apply --dry-run=client sends no write at all, not even as a dry run', async () => {
    const before = { kube: env.sandbox.metrics.count({ api: 'kube', caller: 'client', mutating: true }), arm: env.sandbox.metrics.count({ api: 'arm', caller: 'client', mutating: true }) };
    const r = await runMain(env, ['apply', '--dry-run=client', '--to', 'mic-scale']);
    expect(r.code, r.all).toBe(0);
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', mutating: true })).toBe(before.kube);
    expect(env.sandbox.metrics.count({ api: 'arm', caller: 'client', mutating: true })).toBe(before.arm);
    expect(r.stdout).toMatch(/^Dry run \(client\): [1-9]\d* Kubernetes and 1 Azure write\(s\)\.$/m);
    expect(existsSync(env.journalPath)).toBe(false);
  }, 60_000);

  it('apply --step inventory then status -o json shows the journal', async () => {
    const lists = (resource: string) => env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'list', resource });
    const before = { pods: lists('pods'), nodes: lists('nodes'), bindings: lists('azureidentitybindings.aadpodidentity.k8s.io') };
    const applied = await runMain(env, ['apply', '--step', 'inventory', '--yes']);
    expect(applied.code, applied.all).toBe(0);
    expect(env.sandbox.status().metrics.mutations).toEqual({ kube: 2, arm: 0 });
    // Plan, plan again, apply and check share one read: the check re-lists only what the two
    // copies may have changed (bindings, identities, MIC's assignments), not pods or nodes.
    expect({ pods: lists('pods') - before.pods, nodes: lists('nodes') - before.nodes, bindings: lists('azureidentitybindings.aadpodidentity.k8s.io') - before.bindings }).toEqual({ pods: 1, nodes: 1, bindings: 2 });
    const r = await runMain(env, ['status', '-o', 'json']);
    expect(r.code, r.all).toBe(0);
    const status = JSON.parse(r.stdout) as { cluster: { aksResourceId: string }; steps: { stepId?: string; id?: string; state: string }[] | Record<string, { state: string }> };
    const states = Array.isArray(status.steps) ? Object.fromEntries(status.steps.map((s) => [s.stepId ?? s.id, s.state])) : Object.fromEntries(Object.entries(status.steps).map(([k, v]) => [k, v.state]));
    expect(states).toMatchObject({ inventory: 'checked', assign: 'pending' });
    expect(status.cluster.aksResourceId).toBe(env.sandbox.aksResourceId);
  }, 60_000);
});
