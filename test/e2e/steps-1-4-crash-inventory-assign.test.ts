/**
 * Crash safety of `inventory` and `assign` through the real CLI (`bin/podid-migrate`, SIGKILL):
 * the sandbox applies a write and never answers, the CLI is killed while it waits (the journal
 * holds the intent, not the done record), and `apply` run again converges with no write repeated.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crashAndResume, startEnv, type Env } from './steps-1-4-harness.ts';

describe('SIGKILL between a write and its record: inventory and assign', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    env.sandbox.metrics.reset();
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('inventory: the copy of an AzureIdentity is created once; the re-run creates only the binding copy', async () => {
    const { afterKill, resumed } = await crashAndResume(env, 'inventory', { api: 'kube', method: 'POST', path: '/namespaces/batch/azureidentities$' });
    expect(afterKill).toEqual([{ actionId: 'copy/azureidentity/batch/shared-storage-id', status: 'intent' }]);
    expect(resumed.code, resumed.all).toBe(0);
    const creates = (resource: string) => env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'create', resource });
    expect(creates('azureidentities.aadpodidentity.k8s.io')).toBe(1);
    expect(creates('azureidentitybindings.aadpodidentity.k8s.io')).toBe(1);
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', status: 409 })).toBe(0);
    const journal = JSON.parse(readFileSync(env.journalPath, 'utf8'));
    expect(journal.steps.inventory.state).toBe('checked');
  }, 60_000);

  it('assign: the scale set PATCH is sent once; the re-run finds exporter-id there and adds nothing', async () => {
    const before = env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'patch', resource: 'deployments.apps' });
    const { afterKill, resumed } = await crashAndResume(env, 'assign', { api: 'arm', method: 'PATCH', path: '/virtualMachineScaleSets/[^/]+$' });
    expect(afterKill.map((a) => a.status)).toEqual(['done', 'intent']);
    expect(afterKill[1].actionId).toMatch(/^vmss\/aks-(platform|reports)-12345678-vmss\/add-identities$/);
    expect(resumed.code, resumed.all).toBe(0);
    // One ARM write in all, and MIC's args patched once (the protect action was done before the kill).
    expect(env.sandbox.metrics.count({ api: 'arm', caller: 'client', mutating: true })).toBe(1);
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'patch', resource: 'deployments.apps' }) - before).toBe(1);
    const journal = JSON.parse(readFileSync(env.journalPath, 'utf8'));
    expect(journal.steps.assign.state).toBe('checked');
    // The open intent was resolved by re-reading the scale set (the PATCH had taken effect), not re-planned:
    // its record is done and carries the ids the killed attempt added, which the rollback removes.
    const vmss = (journal.steps.assign.actions as { actionId: string; status: string; details?: { add: string[] } }[]).filter((a) => a.actionId.startsWith('vmss/'));
    expect(vmss.map((a) => a.status)).toEqual(['done']);
    expect(vmss[0].details!.add.map((id) => id.split('/').pop())).toEqual(['exporter-id']);
  }, 60_000);
});
