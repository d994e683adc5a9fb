import { afterEach, describe, expect, it } from 'vitest';
import type { KObject } from '../../../src/sandbox/store.ts';
import { isReady, startCluster, type TestCluster } from './helpers.ts';

let c: TestCluster | undefined;
afterEach(async () => {
  await c?.stop();
  c = undefined;
});

function pod(name: string, spec: Record<string, any>, extra: Partial<KObject['metadata']> = {}): KObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', ...extra }, spec };
}

describe('kubelet', () => {
  it('resolves env from values, fieldRefs and $(VAR) references, and expands $(VAR) in args', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(
      pod('envy', {
        serviceAccountName: 'worker',
        containers: [
          {
            name: 'main',
            image: 'busybox:1.36',
            command: ['sh', '-c'],
            args: [`echo "host=$HOST_IP pod=$POD_IP node=$NODE ns=$NS name=$NAME sa=$SA greet=$GREETING arg=$(NODE)" 'esc=$$(NODE)'`],
            env: [
              { name: 'HOST_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.hostIP' } } },
              { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
              { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
              { name: 'NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
              { name: 'NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'SA', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } },
              { name: 'GREETING', value: 'hello-$(NODE)-$(UNDEFINED)' },
            ],
          },
        ],
        restartPolicy: 'Never',
      }),
    );
    await c.until('pod succeeded', () => c!.pod('default', 'envy')?.status?.phase === 'Succeeded');
    const p = c.pod('default', 'envy')!;
    expect(c.logs.read('default', 'envy', 'main')).toBe(
      `host=10.224.0.4 pod=${p.status.podIP} node=n1 ns=default name=envy sa=worker greet=hello-n1-$(UNDEFINED) arg=n1 esc=$(NODE)\n`,
    );
    expect(p.status.podIP).toMatch(/^10\.244\.0\.\d+$/);
    const cs = p.status.containerStatuses[0];
    expect(cs.state.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(cs.containerID).toMatch(/^containerd:\/\/[0-9a-f]{64}$/);
    expect(p.status.conditions.find((x: any) => x.type === 'Ready')).toMatchObject({ status: 'False', reason: 'PodCompleted' });
  });

  it('gives hostNetwork pods the node IP', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(pod('hn', { hostNetwork: true, containers: [{ name: 'c', image: 'nmi' }] }));
    await c.until('running', () => c!.pod('default', 'hn')?.status?.phase === 'Running');
    expect(c.pod('default', 'hn')!.status.podIP).toBe('10.224.0.4');
  });

  it('runs init containers in order before the containers, reporting Initialized', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    let healthy = false;
    c.network.listen('10.224.0.4', 8085, () => ({ status: 200, body: healthy ? 'Active' : 'Not Active' }));
    c.create(
      pod('init', {
        initContainers: [
          { name: 'first', image: 'busybox', command: ['sh', '-c', 'echo first'] },
          {
            name: 'wait-nmi',
            image: 'busybox:1.28',
            env: [{ name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } }],
            command: ['sh', '-c', 'until wget -qO- $HOST_IP:8085/healthz | grep -q ^Active$; do echo waiting for NMI probe startup; sleep 2; done'],
          },
        ],
        containers: [{ name: 'app', image: 'contoso/app:1' }],
      }),
    );
    await c.run(10_000);
    let p = c.pod('default', 'init')!;
    expect(p.status.phase).toBe('Pending');
    expect(p.status.conditions.find((x: any) => x.type === 'Initialized')).toMatchObject({ status: 'False', reason: 'ContainersNotInitialized', message: 'containers with incomplete status: [wait-nmi]' });
    expect(p.status.initContainerStatuses[0].state.terminated.reason).toBe('Completed');
    expect(p.status.initContainerStatuses[1].state.running).toBeDefined();
    expect(p.status.containerStatuses[0].state.waiting.reason).toBe('PodInitializing');
    healthy = true;
    await c.until('ready', () => isReady(c!.pod('default', 'init')!));
    p = c.pod('default', 'init')!;
    expect(p.status.phase).toBe('Running');
    expect(c.logs.read('default', 'init', 'wait-nmi')).toMatch(/^(waiting for NMI probe startup\n)+$/);
  });

  it('restarts crashing containers with back-off and reports CrashLoopBackOff', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(pod('crash', { containers: [{ name: 'c', image: 'busybox', command: ['sh', '-c', 'echo dying; exit 3'] }] }));
    await c.until('restarted twice', () => (c!.pod('default', 'crash')?.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 2, 60_000, 250);
    const cs = c.pod('default', 'crash')!.status.containerStatuses[0];
    expect(cs.lastState.terminated).toMatchObject({ exitCode: 3, reason: 'Error' });
    await c.until('back-off', () => c!.pod('default', 'crash')!.status.containerStatuses[0].state.waiting?.reason === 'CrashLoopBackOff', 60_000, 250);
    expect(c.pod('default', 'crash')!.status.phase).toBe('Running');
    expect(isReady(c.pod('default', 'crash')!)).toBe(false);
  });

  it('fails a restartPolicy Never pod whose container exits non-zero', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(pod('once', { restartPolicy: 'Never', containers: [{ name: 'c', image: 'curlimages/curl', command: ['curl', '-sSf', 'http://10.9.9.9/'] }] }));
    await c.until('failed', () => c!.pod('default', 'once')?.status?.phase === 'Failed');
    expect(c.pod('default', 'once')!.status.containerStatuses[0].state.terminated.exitCode).toBe(7);
    expect(c.logs.read('default', 'once', 'c')).toBe("curl: (7) Failed to connect to 10.9.9.9 port 80 after 0 ms: Couldn't connect to server\n");
  });

  it('follows exec readiness probes at periodSeconds', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    let body = 'Not Active';
    c.network.listen('10.224.0.4', 8085, () => ({ status: 200, body }));
    c.create(
      pod('probed', {
        containers: [
          {
            name: 'app',
            image: 'contoso/app:1',
            env: [{ name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } }],
            readinessProbe: { exec: { command: ['sh', '-c', 'wget -qO- $HOST_IP:8085/healthz | grep -q ^Active$'] }, periodSeconds: 5, failureThreshold: 1 },
          },
        ],
      }),
    );
    await c.run(20_000);
    expect(c.pod('default', 'probed')!.status.phase).toBe('Running');
    expect(isReady(c.pod('default', 'probed')!)).toBe(false);
    body = 'Active';
    const took = await c.until('ready', () => isReady(c!.pod('default', 'probed')!), 20_000, 250);
    expect(took).toBeLessThanOrEqual(5000);
    body = 'Not Active';
    await c.until('unready again', () => !isReady(c!.pod('default', 'probed')!), 20_000, 250);
  });

  it('graceful deletion: SIGTERM, waits up to the grace period, then removes the pod', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    // A shell script as PID 1 ignores SIGTERM: it is killed when the grace period ends.
    c.create(pod('stubborn', { terminationGracePeriodSeconds: 20, containers: [{ name: 'c', image: 'busybox', command: ['sh', '-c', 'echo up; sleep 3600'] }] }));
    // The default program (a service) exits on SIGTERM right away.
    c.create(pod('polite', { terminationGracePeriodSeconds: 20, containers: [{ name: 'c', image: 'contoso/app:1' }] }));
    await c.until('both running', () => ['stubborn', 'polite'].every((n) => c!.pod('default', n)?.status?.phase === 'Running'));
    const pods = c.t('', 'pods');
    const t0 = c.clock.now();
    c.store.delete(pods, 'default', 'stubborn', { gracePeriodSeconds: 20 });
    c.store.delete(pods, 'default', 'polite', { gracePeriodSeconds: 20 });
    await c.until('polite gone', () => !c!.pod('default', 'polite'), 5_000, 250);
    expect(c.clock.now() - t0).toBeLessThan(2000);
    await c.run(15_000);
    expect(c.pod('default', 'stubborn')?.metadata.deletionTimestamp).toBeDefined();
    expect(isReady(c.pod('default', 'stubborn')!)).toBe(false);
    await c.until('stubborn gone', () => !c!.pod('default', 'stubborn'), 10_000, 250);
    const took = c.clock.now() - t0;
    expect(took).toBeGreaterThanOrEqual(20_000);
    expect(took).toBeLessThanOrEqual(21_000);
    expect(c.logs.read('default', 'stubborn', 'c')).toBeUndefined();
  });

  it('a shorter grace period on a second delete ends the wait sooner', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    c.create(pod('s', { containers: [{ name: 'c', image: 'busybox', command: ['sleep', '3600'] }] }));
    await c.until('running', () => c!.pod('default', 's')?.status?.phase === 'Running');
    const pods = c.t('', 'pods');
    const t0 = c.clock.now();
    c.store.delete(pods, 'default', 's', { gracePeriodSeconds: 300 });
    await c.run(2000);
    c.store.delete(pods, 'default', 's', { gracePeriodSeconds: 3 });
    await c.until('gone', () => !c!.pod('default', 's'), 20_000, 250);
    expect(c.clock.now() - t0).toBeLessThan(7000);
  });

  it('reports readiness the container process itself reports', async () => {
    c = await startCluster({ nodes: [{ name: 'n1', pool: 'a' }] });
    let ready = false;
    c.programs.register('toggler', (image) => image.startsWith('toggler'), (ctx) => ({
      exited: new Promise<number>((r) => ctx.signal.addEventListener('abort', () => r(137))),
      isReady: () => ready,
      terminate() {},
    }));
    c.create(pod('t', { containers: [{ name: 'c', image: 'toggler:1' }] }));
    await c.until('running', () => c!.pod('default', 't')?.status?.phase === 'Running');
    expect(isReady(c.pod('default', 't')!)).toBe(false);
    ready = true;
    await c.until('ready', () => isReady(c!.pod('default', 't')!), 5000, 250);
  });
});
