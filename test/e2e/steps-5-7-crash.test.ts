/**
 * Crash safety of `drain` and `cleanup` through the real CLI (`bin/podid-migrate`, SIGKILL):
 * the sandbox applies a write and never answers, the CLI is killed while it waits (the journal
 * holds the intent, not the done record), and `apply` run again converges with no
 * non-idempotent write repeated:
 * - drain: the first VMSS `reimage` POST (pools are replaced concurrently) is held; the re-run sees the instance
 *   already reimaging (or the node already rebooted) and waits instead of reimaging it again;
 * - cleanup: the DELETE of the MIC Deployment is held; the re-run finds it gone and deletes the
 *   rest; after `rollback --step cleanup`, a DELETE of one AzureAssignedIdentity is held and
 *   the re-run deletes only the ones still there.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/kube/gateway.ts';
import type { InventoryDocument } from '../../src/steps/lib/inventory-model.ts';
import { STEPS } from '../../src/steps/registry.ts';
import { parse as parseYaml } from 'yaml';
import { crashAndResume, startEnv, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';
import { readJournalFile } from '../helpers/journal-file.ts';

const AAI = { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity' };
const AAI_RESOURCE = 'azureassignedidentities.aadpodidentity.k8s.io';

interface JournalRecord {
  actionId: string;
  status: string;
  preState?: Record<string, unknown>;
  result?: Record<string, unknown>;
}
interface JournalDoc {
  steps: Record<string, { state: string; actions: JournalRecord[]; data: Record<string, unknown> }>;
}

const readJournal = (env: Env) => readJournalFile(env.journalPath) as unknown as JournalDoc;

/** Every step up to and including `last` is `checked`. */
function expectCheckedThrough(env: Env, last: string): void {
  const journal = readJournal(env);
  const ids: string[] = STEPS.map((s) => s.id);
  const upTo = ids.slice(0, ids.indexOf(last) + 1);
  expect(upTo.map((id) => [id, journal.steps[id].state])).toEqual(upTo.map((id) => [id, 'checked']));
}

describe('SIGKILL between a write and its record: drain and cleanup', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    await fullRunner(env).apply({ to: 'mic-scale' });
    env.sandbox.metrics.reset();
  }, 90_000);
  afterAll(async () => {
    await env?.stop();
  });

  const kubeWrites = (verb: string, resource: string, status?: number) => env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb, resource, ...(status === undefined ? {} : { status }) });

  it('drain: each pool\'s instance is reimaged once; the re-run waits for the reimage the killed run started', async () => {
    const poolCount = (parseYaml(readFileSync(env.inventoryPath, 'utf8')) as InventoryDocument).pools.length;
    expect(poolCount).toBeGreaterThan(1);
    const { afterKill, resumed } = await crashAndResume(env, 'drain', { api: 'arm', method: 'POST', path: '/virtualMachineScaleSets/[^/]+/reimage$' });
    // Pools are drained at once, then replaced at once: every drain was done, and the first
    // reimage the sandbox held (and any other already sent) left its replace action in intent.
    const drains = afterKill.filter((a) => a.actionId.endsWith('/drain'));
    expect(drains).toHaveLength(poolCount);
    expect(drains.every((a) => a.status === 'done')).toBe(true);
    const openReplaces = afterKill.filter((a) => a.actionId.endsWith('/replace'));
    expect(openReplaces.length).toBeGreaterThanOrEqual(1);
    expect(openReplaces.every((a) => a.status === 'intent')).toBe(true);
    expect(resumed.code, resumed.all).toBe(0);
    expectCheckedThrough(env, 'drain');

    // A reimage is not idempotent (a second one wipes the node again): exactly one per pool.
    expect(env.sandbox.metrics.count({ api: 'arm', caller: 'client', verb: 'POST', resource: 'VirtualMachineScaleSets_Reimage' })).toBe(poolCount);
    expect(env.sandbox.metrics.count({ api: 'arm', caller: 'client', mutating: true })).toBe(poolCount);
    // One cordon and one uncordon per pool: the drains were done before the kill and are not repeated.
    expect(kubeWrites('patch', 'nodes')).toBe(2 * poolCount);

    const drain = readJournal(env).steps.drain;
    // The held reimage: an open intent resolved done on re-read (one that died before its POST
    // would have been recorded failed and planned again).
    const resolved = openReplaces.filter((o) => drain.actions.filter((a) => a.actionId === o.actionId).map((a) => a.status).join() === 'done');
    expect(resolved.length).toBeGreaterThanOrEqual(1);
    const heldPool = /^pool\/([^/]+)\//.exec(resolved[0].actionId)![1];
    const batch = drain.actions.filter((a) => a.actionId === `pool/${heldPool}/replace`);
    // The open intent was resolved by re-reading the instance and node (the reimage had been sent):
    // recorded done after the wait for the node, never sent again; its pre-state is the boot id from before.
    expect(batch.map((a) => a.status)).toEqual(['done']);
    const pre = batch[0].preState as { node: string; bootId: string };
    expect(pre.bootId).toBeTruthy();
    expect(drain.actions.filter((a) => a.actionId === `pool/${heldPool}/drain`)).toHaveLength(1);
    const fresh = drain.data.freshNodes as Record<string, string>;
    expect(Object.keys(fresh)).toHaveLength(poolCount);
    expect(fresh[heldPool]).toBe(pre.node);
    // The summary data lists every pool, each with its own time and fresh node.
    const timings = drain.data.poolTimings as { pool: string; node: string; seconds: number }[];
    expect(timings.map((t) => t.pool).sort()).toEqual(Object.keys(fresh).sort());
    const node = (await env.kube.get({ apiVersion: 'v1', kind: 'Node' }, undefined, pre.node))!;
    expect((node.status as { nodeInfo: { bootID: string } }).nodeInfo.bootID).not.toBe(pre.bootId);
    expect((node.spec as { unschedulable?: boolean }).unschedulable).toBeFalsy();
  }, 90_000);

  it('cleanup: the MIC Deployment is deleted once; the re-run finds it gone and deletes everything else once', async () => {
    await fullRunner(env).apply({ to: 'test' });
    const aais = (await env.kube.list(AAI)).length;
    expect(aais).toBeGreaterThan(0);
    env.sandbox.metrics.reset();

    const { afterKill, resumed } = await crashAndResume(env, 'cleanup', { api: 'kube', method: 'DELETE', path: '/namespaces/default/deployments/mic$' });
    expect(afterKill).toEqual([{ actionId: 'delete/deployment/default/mic', status: 'intent' }]);
    expect(resumed.code, resumed.all).toBe(0);
    expectCheckedThrough(env, 'cleanup');

    expect(kubeWrites('delete', 'deployments.apps')).toBe(1);
    expect(kubeWrites('delete', AAI_RESOURCE)).toBe(aais);
    // No delete met an object already gone: nothing was deleted twice.
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'delete', status: 404 })).toBe(0);
    expect(await env.kube.get({ apiVersion: 'apps/v1', kind: 'Deployment' }, 'default', 'mic')).toBeUndefined();
    expect(await env.kube.list(AAI)).toEqual([]);

    // The Deployment's full copy (taken by the killed run) is what a rollback re-creates.
    const records = readJournal(env).steps.cleanup.actions.filter((a) => a.actionId === 'delete/deployment/default/mic');
    expect(records).toHaveLength(1);
    const saved = (records[0].preState as { object: KubeObject }).object;
    expect([saved.kind, saved.metadata?.name, (saved.spec as { replicas: number }).replicas]).toEqual(['Deployment', 'mic', 0]);
  }, 90_000);

  it('cleanup after its rollback: a held AzureAssignedIdentity DELETE is not repeated; the journal keeps every copy', async () => {
    await fullRunner(env).rollback({ step: 'cleanup' });
    const restored = await env.kube.list(AAI);
    expect(restored.length).toBeGreaterThan(0);
    expect(await env.kube.get({ apiVersion: 'apps/v1', kind: 'Deployment' }, 'default', 'mic')).toBeDefined();
    env.sandbox.metrics.reset();

    const { afterKill, resumed } = await crashAndResume(env, 'cleanup', { api: 'kube', method: 'DELETE', path: '/azureassignedidentities/[^/]+$' });
    // Every MIC object was deleted and recorded before the AzureAssignedIdentities.
    expect(afterKill.at(-1)).toEqual({ actionId: 'delete/azureassignedidentities', status: 'intent' });
    expect(afterKill.slice(0, -1).every((a) => a.status === 'done')).toBe(true);
    expect(resumed.code, resumed.all).toBe(0);
    expectCheckedThrough(env, 'cleanup');

    // Each AzureAssignedIdentity deleted exactly once, and its finalizer cleared at most once.
    expect(kubeWrites('delete', AAI_RESOURCE)).toBe(restored.length);
    expect(kubeWrites('delete', AAI_RESOURCE, 404)).toBe(0);
    expect(kubeWrites('patch', AAI_RESOURCE)).toBeLessThanOrEqual(restored.filter((a) => a.metadata?.finalizers?.length).length);
    expect(kubeWrites('delete', 'deployments.apps')).toBe(1);
    expect(await env.kube.list(AAI)).toEqual([]);

    // The first intent of this cycle holds a copy of every AzureAssignedIdentity; a resumed attempt adds none.
    const records = readJournal(env).steps.cleanup.actions.filter((a) => a.actionId === 'delete/azureassignedidentities');
    // Resolved on resume: some were still there, so the intent is recorded failed and the rest planned again.
    expect(records[0].status).toBe('failed');
    expect((records[0] as { error?: string }).error).toMatch(/not in effect when resumed/);
    const copies = (records[0].preState as { objects: KubeObject[] }).objects.map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`).sort();
    expect(copies).toEqual(restored.map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`).sort());
    for (const r of records.slice(1)) expect(r.preState).toBeUndefined();
  }, 90_000);
});
