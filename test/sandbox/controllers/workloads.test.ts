import { afterEach, describe, expect, it } from 'vitest';
import type { KObject } from '../../../src/sandbox/store.ts';
import { deployment, isReady, startCluster, type TestCluster } from './helpers.ts';

let c: TestCluster | undefined;
afterEach(async () => {
  await c?.stop();
  c = undefined;
});

const FOUR = ['n0', 'n1', 'n2', 'n3'].map((name) => ({ name, pool: 'pool1' }));

function getDeploy(name: string): any {
  return c!.store.get(c!.t('apps', 'deployments'), 'default', name)!;
}

function setImage(group: string, resource: string, name: string, image: string): void {
  c!.store.mutate(c!.t(group, resource), 'default', name, (o) => void (o.spec.template.spec.containers[0].image = image));
}

/** Calls `check` after every pod change in the store, so invariants hold at every instant, not just at sample points. */
function watchPods(check: () => void): () => void {
  return c!.store.subscribe((ev) => {
    if (ev.resourceType.resource === 'pods') check();
  });
}

describe('deployments and replica sets', () => {
  it('scales up and down, owning pods through a ReplicaSet named by the template hash', async () => {
    c = await startCluster({ nodes: FOUR });
    c.create(deployment('web', 3));
    await c.until('3 available', () => getDeploy('web').status?.availableReplicas === 3);
    const rsList = c.list(c.t('apps', 'replicasets'));
    expect(rsList).toHaveLength(1);
    const rs = rsList[0];
    const hash = rs.metadata.labels['pod-template-hash'];
    expect(rs.metadata.name).toBe(`web-${hash}`);
    expect(hash).toMatch(/^[bcdfghjklmnpqrstvwxz2456789]{6,10}$/);
    expect(rs.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'Deployment', name: 'web', controller: true, blockOwnerDeletion: true })]);
    expect(rs.metadata.annotations['deployment.kubernetes.io/revision']).toBe('1');
    for (const p of c.pods()) {
      expect(p.metadata.name.startsWith(`web-${hash}-`)).toBe(true);
      expect(p.metadata.labels['pod-template-hash']).toBe(hash);
      expect(p.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'ReplicaSet', uid: rs.metadata.uid, controller: true })]);
    }
    let status = getDeploy('web').status;
    expect(status).toMatchObject({ observedGeneration: 1, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3 });
    expect(status.unavailableReplicas).toBeUndefined();
    expect(status.conditions.map((x: any) => [x.type, x.status, x.reason])).toEqual([
      ['Available', 'True', 'MinimumReplicasAvailable'],
      ['Progressing', 'True', 'NewReplicaSetAvailable'],
    ]);

    c.store.mutate(c.t('apps', 'deployments'), 'default', 'web', (o) => void (o.spec.replicas = 8));
    await c.run(500);
    expect(getDeploy('web').status.unavailableReplicas).toBe(5);
    await c.until('8 available', () => getDeploy('web').status?.availableReplicas === 8);
    expect(getDeploy('web').status.observedGeneration).toBe(2);
    expect(c.pods()).toHaveLength(8);

    c.store.mutate(c.t('apps', 'deployments'), 'default', 'web', (o) => void (o.spec.replicas = 0));
    await c.run(500);
    // Scale-down is graceful: the pods terminate first, then go.
    expect(c.pods().every((p) => p.metadata.deletionTimestamp)).toBe(true);
    await c.until('no pods', () => c!.pods().length === 0);
    status = getDeploy('web').status;
    expect(status).toMatchObject({ observedGeneration: 3 });
    expect(status.replicas).toBeUndefined();
  });

  it('rolls out a new template with maxSurge 1 / maxUnavailable 0 without ever dropping below the desired count', async () => {
    c = await startCluster({ nodes: FOUR });
    c.create(deployment('api', 6, { strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } }));
    await c.until('6 available', () => getDeploy('api').status?.availableReplicas === 6);
    let minReady = Infinity;
    let maxPods = 0;
    const stop = watchPods(() => {
      const pods = c!.list(c!.t('', 'pods')).filter((p) => !p.metadata.deletionTimestamp);
      maxPods = Math.max(maxPods, pods.length);
      minReady = Math.min(minReady, pods.filter(isReady).length);
    });
    setImage('apps', 'deployments', 'api', 'contoso.azurecr.io/api:2.0');
    await c.until('rolled out', () => {
      const d = getDeploy('api');
      return d.status?.observedGeneration === 2 && d.status.updatedReplicas === 6 && d.status.availableReplicas === 6 && d.status.replicas === 6;
    }, 300_000);
    stop();
    expect(minReady).toBeGreaterThanOrEqual(6);
    expect(maxPods).toBe(7);
    const rsList = c.list(c.t('apps', 'replicasets'));
    expect(rsList).toHaveLength(2);
    const newRs = rsList.find((r) => r.spec.template.spec.containers[0].image.endsWith(':2.0'))!;
    const oldRs = rsList.find((r) => r !== newRs)!;
    expect(newRs.metadata.annotations['deployment.kubernetes.io/revision']).toBe('2');
    expect(oldRs.spec.replicas).toBe(0);
    expect(getDeploy('api').metadata.annotations['deployment.kubernetes.io/revision']).toBe('2');
    expect(c.pods().every((p) => p.spec.containers[0].image.endsWith(':2.0'))).toBe(true);
  });

  it('rolls out with the default 25% surge / 25% unavailable budget', async () => {
    c = await startCluster({ nodes: FOUR });
    c.create(deployment('svc', 8));
    await c.until('8 available', () => getDeploy('svc').status?.availableReplicas === 8);
    let minAvailable = Infinity;
    let maxPods = 0;
    const stop = watchPods(() => {
      const pods = c!.list(c!.t('', 'pods')).filter((p) => !p.metadata.deletionTimestamp);
      maxPods = Math.max(maxPods, pods.length);
      minAvailable = Math.min(minAvailable, pods.filter(isReady).length);
    });
    setImage('apps', 'deployments', 'svc', 'contoso.azurecr.io/svc:2.0');
    await c.until('rolled out', () => getDeploy('svc').status?.updatedReplicas === 8 && getDeploy('svc').status?.availableReplicas === 8 && getDeploy('svc').status?.replicas === 8, 300_000);
    stop();
    expect(minAvailable).toBeGreaterThanOrEqual(6);
    expect(maxPods).toBeLessThanOrEqual(10);
  });
});

describe('daemon sets', () => {
  function ds(name: string, extra: Record<string, any> = {}): KObject {
    return {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name, namespace: 'default' },
      spec: {
        selector: { matchLabels: { component: name } },
        ...extra,
        template: { metadata: { labels: { component: name } }, spec: { hostNetwork: true, containers: [{ name, image: `mcr.microsoft.com/oss/azure/aad-pod-identity/${name}:v1.8.17` }], nodeSelector: { 'kubernetes.io/os': 'linux' } } },
      },
    };
  }
  const getDs = (name: string): any => c!.store.get(c!.t('apps', 'daemonsets'), 'default', name)!;

  it('runs one pod per node, cordoned nodes included, with the status fields the real controller reports', async () => {
    c = await startCluster({ nodes: FOUR });
    c.store.mutate(c.t('', 'nodes'), undefined, 'n2', (o) => void (o.spec.unschedulable = true));
    c.create(ds('nmi'));
    await c.until('4 ready', () => getDs('nmi').status?.numberReady === 4);
    const pods = c.pods();
    expect(pods.map((p) => p.spec.nodeName).sort()).toEqual(['n0', 'n1', 'n2', 'n3']);
    const p = pods[0];
    expect(p.metadata.labels['controller-revision-hash']).toMatch(/^[bcdfghjklmnpqrstvwxz2456789]+$/);
    expect(p.spec.tolerations).toEqual(expect.arrayContaining([{ key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' }]));
    expect(p.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0]).toEqual({ key: 'metadata.name', operator: 'In', values: [p.spec.nodeName] });
    expect(getDs('nmi').status).toEqual({ currentNumberScheduled: 4, numberMisscheduled: 0, desiredNumberScheduled: 4, numberReady: 4, observedGeneration: 1, updatedNumberScheduled: 4, numberAvailable: 4 });
  });

  it('RollingUpdate with maxUnavailable 1 never leaves more than one node without a ready pod', async () => {
    c = await startCluster({ nodes: FOUR });
    c.create(ds('nmi', { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } } }));
    await c.until('4 ready', () => getDs('nmi').status?.numberReady === 4);
    let worst = 0;
    let maxPerNode = 0;
    const stop = watchPods(() => {
      const pods = c!.list(c!.t('', 'pods'));
      const readyNodes = new Set(pods.filter((p) => isReady(p) && !p.metadata.deletionTimestamp).map((p) => p.spec.nodeName));
      worst = Math.max(worst, 4 - readyNodes.size);
      const perNode: Record<string, number> = {};
      for (const p of pods) perNode[p.spec.nodeName] = (perNode[p.spec.nodeName] ?? 0) + 1;
      maxPerNode = Math.max(maxPerNode, ...Object.values(perNode));
    });
    c.store.mutate(c.t('apps', 'daemonsets'), 'default', 'nmi', (o) => void (o.spec.template.spec.containers[0].args = ['--operation-mode=managed', '--forceNamespaced']));
    await c.until('updated', () => {
      const s = getDs('nmi').status;
      return s.observedGeneration === 2 && s.updatedNumberScheduled === 4 && s.numberAvailable === 4;
    }, 300_000);
    stop();
    expect(worst).toBe(1);
    // The replacement is created only once the old pod is gone (host ports cannot be shared).
    expect(maxPerNode).toBe(1);
    expect(c.pods().every((p) => p.spec.containers[0].args?.includes('--forceNamespaced'))).toBe(true);
  });

  it('OnDelete leaves old pods until someone deletes them', async () => {
    c = await startCluster({ nodes: FOUR.slice(0, 2) });
    c.create(ds('agent', { updateStrategy: { type: 'OnDelete' } }));
    await c.until('2 ready', () => getDs('agent').status?.numberReady === 2);
    const oldHash = c.pods()[0].metadata.labels['controller-revision-hash'];
    setImage('apps', 'daemonsets', 'agent', 'agent:v2');
    await c.run(30_000);
    expect(c.pods().every((p) => p.metadata.labels['controller-revision-hash'] === oldHash)).toBe(true);
    expect(getDs('agent').status.updatedNumberScheduled).toBeUndefined();
    const victim = c.pods().find((p) => p.spec.nodeName === 'n0')!;
    c.store.delete(c.t('', 'pods'), 'default', victim.metadata.name, { gracePeriodSeconds: 30 });
    await c.until('n0 updated', () => getDs('agent').status?.updatedNumberScheduled === 1 && getDs('agent').status?.numberReady === 2);
    const fresh = c.pods().find((p) => p.spec.nodeName === 'n0')!;
    expect(fresh.metadata.labels['controller-revision-hash']).not.toBe(oldHash);
    expect(fresh.spec.containers[0].image).toBe('agent:v2');
  });

  it('a daemon that takes 10 s to exit on SIGTERM leaves its node uncovered until it is gone, then the replacement starts', async () => {
    c = await startCluster({ nodes: FOUR.slice(0, 2) });
    c.programs.register('slow-exit', (image) => image.startsWith('slow-exit'), (ctx) => {
      let done!: (code: number) => void;
      const exited = new Promise<number>((r) => (done = r));
      ctx.signal.addEventListener('abort', () => done(137));
      return { exited, terminate: () => void ctx.clock.sleep(10_000).then(() => done(0)) };
    });
    const d = ds('nmi');
    d.spec.template.spec.containers[0].image = 'slow-exit:1';
    c.create(d);
    await c.until('2 ready', () => getDs('nmi').status?.numberReady === 2);
    const events: string[] = [];
    const unsub = c.store.subscribe((ev) => {
      const target = ev.object.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0]?.matchFields?.[0]?.values?.[0];
      if (ev.resourceType.resource !== 'pods' || target !== 'n0') return;
      if (ev.type === 'ADDED' || ev.type === 'DELETED') events.push(`${ev.type} ${ev.object.metadata.labels?.['controller-revision-hash']}`);
    });
    const oldHash = c.pods()[0].metadata.labels['controller-revision-hash'];
    c.store.mutate(c.t('apps', 'daemonsets'), 'default', 'nmi', (o) => void (o.spec.template.spec.containers[0].image = 'slow-exit:2'));
    await c.until('old pod on n0 terminating', () => c!.pods().some((p) => p.spec.nodeName === 'n0' && p.metadata.deletionTimestamp), 10_000, 250);
    const t0 = c.clock.now();
    await c.until('n0 covered again', () => c!.pods().some((p) => p.spec.nodeName === 'n0' && !p.metadata.deletionTimestamp && isReady(p)), 60_000, 250);
    const gap = c.clock.now() - t0;
    unsub();
    expect(gap).toBeGreaterThanOrEqual(10_000);
    expect(gap).toBeLessThan(15_000);
    const newHash = c.pods().find((p) => p.spec.nodeName === 'n0').metadata.labels['controller-revision-hash'];
    expect(events.slice(0, 2)).toEqual([`DELETED ${oldHash}`, `ADDED ${newHash}`]);
  });
});

describe('start-up', () => {
  it('reconciles objects that existed before the controllers started', async () => {
    const { ManualClock } = await import('../../../src/sandbox/clock.ts');
    const { ObjectStore } = await import('../../../src/sandbox/store.ts');
    const { registerBuiltinTypes } = await import('../../../src/sandbox/kube-api/types.ts');
    const { ClusterControllers, addNode } = await import('../../../src/sandbox/controllers/index.ts');
    const { PodNetwork } = await import('../../../src/sandbox/netsim.ts');
    const { PodLogs } = await import('../../../src/sandbox/pod-logs.ts');
    const { ProgramRegistry } = await import('../../../src/sandbox/runtime.ts');
    const clock = new ManualClock();
    const store = new ObjectStore(clock);
    registerBuiltinTypes(store);
    store.create(store.typeOrThrow('', 'namespaces'), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
    addNode(store, { name: 'n0', pool: 'p', providerID: 'azure:///x/virtualMachineScaleSets/s/virtualMachines/0', ip: '10.224.0.4' });
    store.create(store.typeOrThrow('apps', 'deployments'), deployment('early', 2));
    const ctl = new ClusterControllers({ store, clock, network: new PodNetwork(), logs: new PodLogs(), programs: new ProgramRegistry() });
    ctl.start();
    for (let i = 0; i < 20; i++) {
      await clock.advance(1000);
      await ctl.idle();
    }
    expect(store.get(store.typeOrThrow('apps', 'deployments'), 'default', 'early')!.status).toMatchObject({ availableReplicas: 2, readyReplicas: 2 });
    await ctl.stop();
    expect(clock.pendingTimers()).toBe(0);
  });
});
