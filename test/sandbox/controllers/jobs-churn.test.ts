import { afterEach, describe, expect, it } from 'vitest';
import { startChurn } from '../../../src/sandbox/controllers/churn.ts';
import type { KObject } from '../../../src/sandbox/store.ts';
import { startCluster, type TestCluster } from './helpers.ts';

let c: TestCluster | undefined;
afterEach(async () => {
  await c?.stop();
  c = undefined;
});

function job(name: string, spec: Record<string, any>, script: string): KObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: 'default' },
    spec: { ...spec, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'work', image: 'busybox:1.36', command: ['sh', '-c', script] }] } } },
  };
}

const getJob = (name: string): any => c!.store.get(c!.t('batch', 'jobs'), 'default', name);

describe('jobs', () => {
  it('runs completions with parallelism and reports Complete', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }, { name: 'n2', pool: 'a' }] });
    c.create(job('batch', { completions: 5, parallelism: 2 }, 'echo working; sleep 10'));
    let maxActive = 0;
    const stop = c.store.subscribe(() => (maxActive = Math.max(maxActive, getJob('batch')?.status?.active ?? 0)));
    await c.until('complete', () => getJob('batch')?.status?.conditions?.some((x: any) => x.type === 'Complete' && x.status === 'True'), 200_000);
    stop();
    const s = getJob('batch')!.status;
    expect(s.succeeded).toBe(5);
    expect(s.failed).toBeUndefined();
    expect(s.active).toBeUndefined();
    expect(s.completionTime).toBeDefined();
    expect(s.conditions.map((x: any) => x.type)).toEqual(['SuccessCriteriaMet', 'Complete']);
    expect(maxActive).toBe(2);
    const pods = c.pods();
    expect(pods).toHaveLength(5);
    for (const p of pods) {
      expect(p.status.phase).toBe('Succeeded');
      expect(p.metadata.labels['batch.kubernetes.io/job-name']).toBe('batch');
      // Counted: the tracking finalizer is gone.
      expect(p.metadata.finalizers).toBeUndefined();
      expect(c.logs.read('default', p.metadata.name, 'work')).toBe('working\n');
    }
  });

  it('retries failures with back-off and fails past backoffLimit', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(job('doomed', { backoffLimit: 2 }, 'echo no; exit 1'));
    const took = await c.until('failed', () => getJob('doomed')?.status?.conditions?.some((x: any) => x.type === 'Failed' && x.status === 'True'), 300_000, 1000);
    const s = getJob('doomed')!.status;
    expect(s.failed).toBe(3);
    expect(s.conditions.find((x: any) => x.type === 'Failed')).toMatchObject({ reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' });
    expect(c.pods()).toHaveLength(3);
    // Back-off between attempts: 10 s, then 20 s.
    expect(took).toBeGreaterThanOrEqual(30_000);
  });

  it('deletes a finished job after ttlSecondsAfterFinished, its pods with it', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(job('short', { ttlSecondsAfterFinished: 30 }, 'true'));
    await c.until('complete', () => getJob('short')?.status?.succeeded === 1);
    await c.run(20_000);
    expect(getJob('short')).toBeDefined();
    await c.until('job and pod gone', () => !getJob('short') && c!.pods().length === 0, 30_000);
  });
});

describe('churn', () => {
  it('creates a labelled job every N seconds and deletes finished ones beyond keep', async () => {
    c = await startCluster({ nodes: [{ name: 'b0', pool: 'batch' }, { name: 'b1', pool: 'batch' }, { name: 's0', pool: 'sys' }], namespaces: ['payments'] });
    const created = new Set<string>();
    const boundNodes = new Set<string>();
    const unsub = c.store.subscribe((ev) => {
      if (ev.resourceType.resource === 'jobs' && ev.type === 'ADDED') created.add(ev.object.metadata.name!);
      if (ev.resourceType.resource === 'pods' && ev.object.spec?.nodeName) boundNodes.add(ev.object.spec.nodeName);
    });
    const stop = startChurn(c.store, c.clock, { namespace: 'payments', every: 10, bindingSelector: 'payments-id', nodeSelector: { 'kubernetes.azure.com/agentpool': 'batch' }, jobDurationSeconds: 25, keep: 2 });
    await c.run(120_000, 1000);
    stop();
    unsub();
    // One at t=0 and one every 10 s after.
    expect(created.size).toBe(13);
    expect(boundNodes).toEqual(new Set(['b0', 'b1']));
    const jobs = c.list(c.t('batch', 'jobs'), { namespace: 'payments' });
    const finished = jobs.filter((j) => j.status?.conditions?.some((x: any) => x.type === 'Complete'));
    expect(finished.length).toBeLessThanOrEqual(3);
    expect(jobs.length).toBeLessThanOrEqual(6);
    const pods = c.pods({ namespace: 'payments' });
    expect(pods.every((p) => p.metadata.labels.aadpodidbinding === 'payments-id')).toBe(true);
    // Pods of deleted jobs were collected.
    const jobUids = new Set(jobs.map((j) => j.metadata.uid));
    await c.run(5000);
    expect(c.pods({ namespace: 'payments' }).every((p) => jobUids.has(p.metadata.ownerReferences[0].uid))).toBe(true);
    const running = pods.filter((p) => p.status.phase === 'Running');
    expect(running.length).toBeGreaterThanOrEqual(2);
  });

  it('takes its pod template from its operator\'s ConfigMap: labels merged (null removes one) and the service account', async () => {
    c = await startCluster({ nodes: [{ name: 'b0', pool: 'batch' }], namespaces: ['payments'] });
    const stop = startChurn(c.store, c.clock, { namespace: 'payments', every: 10, bindingSelector: 'worker', jobDurationSeconds: 5 });
    await c.run(1000);
    // The Jobs created before the edit (finished ones are collected later, so read them now).
    const beforeJobs = c.list(c.t('batch', 'jobs'), { namespace: 'payments' });
    const before = beforeJobs.map((j) => j.spec.template);
    expect(before.length).toBeGreaterThan(0);
    c.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'churn-worker-pod-template', namespace: 'payments' },
      data: { labels: JSON.stringify({ 'azure.workload.identity/use': 'true', aadpodidbinding: null }), serviceAccountName: 'churn-worker' },
    });
    await c.run(12_000, 1000);
    stop();
    // Jobs are listed by name, not by age: the ones created after the edit are those not seen before it.
    const seen = new Set(beforeJobs.map((j) => j.metadata.uid));
    const templates = c.list(c.t('batch', 'jobs'), { namespace: 'payments' }).filter((j) => !seen.has(j.metadata.uid)).map((j) => j.spec.template);
    expect(templates.length).toBeGreaterThan(0);
    // A Job created before the edit keeps the plain template; the next one follows the config.
    expect(before[0].metadata.labels.aadpodidbinding).toBe('worker');
    expect(before[0].spec.serviceAccountName).toBeUndefined();
    for (const later of templates) {
      expect(later.metadata.labels['azure.workload.identity/use']).toBe('true');
      expect(later.metadata.labels.aadpodidbinding).toBeUndefined();
      expect(later.metadata.labels['sandbox.podid-migrate.io/churn']).toBe('payments.worker');
      expect(later.spec.serviceAccountName).toBe('churn-worker');
    }
  });
});
