/**
 * Crash safety of `nmi-managed` and `mic-scale` through the real CLI (`bin/podid-migrate`,
 * SIGKILL): the sandbox applies the patch and never answers, the CLI is killed while it waits,
 * and `apply` run again waits for what the killed attempt started (the NMI rollout, MIC's pods
 * going) instead of patching again.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crashAndResume, startEnv, upstreamManagedArgs, type Env } from './steps-1-4-harness.ts';

describe('SIGKILL between a write and its record: nmi-managed and mic-scale', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    await env.runner().apply({ to: 'assign' });
    env.sandbox.metrics.reset();
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
  });

  const patches = (resource: string) => env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'patch', resource });

  it('nmi-managed (drain rollout): the OnDelete patch is sent once; the re-run restarts NMI node by node, restores the strategy, every node schedulable', async () => {
    const { afterKill, resumed } = await crashAndResume(env, 'nmi-managed', { api: 'kube', method: 'PATCH', path: '/daemonsets/nmi$' });
    expect(afterKill).toEqual([{ actionId: 'nmi/on-delete', status: 'intent' }]);
    expect(resumed.code, resumed.all).toBe(0);
    // The template + OnDelete patch once (never repeated), then the strategy put back once.
    expect(patches('daemonsets.apps')).toBe(2);
    for (const n of await env.kube.list({ apiVersion: 'v1', kind: 'Node' })) expect((n.spec as { unschedulable?: boolean }).unschedulable).toBeFalsy();
    const nmiPods = await env.kube.list({ apiVersion: 'v1', kind: 'Pod' }, { namespace: 'default', labelSelector: 'component=nmi' });
    for (const p of nmiPods) expect((p.spec as { containers: { args: string[] }[] }).containers[0].args).toEqual(upstreamManagedArgs());
    const ds = (await env.kube.get({ apiVersion: 'apps/v1', kind: 'DaemonSet' }, 'default', 'nmi'))!;
    expect((ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args).toEqual(upstreamManagedArgs());
    const journal = JSON.parse(readFileSync(env.journalPath, 'utf8'));
    expect(journal.steps['nmi-managed'].state).toBe('checked');
    // The pre-state for rollback is the original standard-mode container, from the killed attempt.
    expect(JSON.stringify(journal.steps['nmi-managed'].actions[0].preState)).not.toContain('--operation-mode=managed');
    expect((ds.spec as { updateStrategy: { type: string } }).updateStrategy.type).toBe('RollingUpdate');
  }, 60_000);

  it('mic-scale: MIC is scaled once; the re-run waits for no MIC pod and the recorded count stays 2', async () => {
    const { afterKill, resumed } = await crashAndResume(env, 'mic-scale', { api: 'kube', method: 'PATCH', path: '/deployments/mic/scale$' });
    expect(afterKill).toEqual([{ actionId: 'mic/scale-to-zero', status: 'intent' }]);
    expect(resumed.code, resumed.all).toBe(0);
    expect(patches('deployments.apps/scale')).toBe(1);
    const journal = JSON.parse(readFileSync(env.journalPath, 'utf8'));
    expect(journal.steps['mic-scale'].state).toBe('checked');
    expect(journal.steps['mic-scale'].data.mic).toEqual({ namespace: 'default', name: 'mic', replicas: 2 });
    expect(await env.kube.list({ apiVersion: 'v1', kind: 'Pod' }, { namespace: 'default', labelSelector: 'component=mic' })).toEqual([]);
  }, 60_000);
});
