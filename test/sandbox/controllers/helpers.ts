/**
 * Test harness for the controllers: a store with the built-in API types, a ManualClock, the
 * pod network / logs / program registry, and helpers that advance simulated time until a
 * condition holds.
 */
import { ManualClock } from '../../../src/sandbox/clock.ts';
import { ClusterControllers, addNode, type KubeletTiming } from '../../../src/sandbox/controllers/index.ts';
import { registerBuiltinTypes } from '../../../src/sandbox/kube-api/types.ts';
import { PodNetwork } from '../../../src/sandbox/netsim.ts';
import { PodLogs } from '../../../src/sandbox/pod-logs.ts';
import { ProgramRegistry } from '../../../src/sandbox/runtime.ts';
import { type KObject, ObjectStore, type ResourceType } from '../../../src/sandbox/store.ts';
import type { NodeInfraEvents } from '../../../src/sandbox/controllers/node-lifecycle.ts';

export interface TestCluster {
  clock: ManualClock;
  store: ObjectStore;
  network: PodNetwork;
  logs: PodLogs;
  programs: ProgramRegistry;
  controllers: ClusterControllers;
  t: (group: string, resource: string) => ResourceType;
  /** Advances simulated time in steps until `pred` holds; throws with `what` after `maxMs`. */
  until(what: string, pred: () => boolean, maxMs?: number, stepMs?: number): Promise<number>;
  /** Advances simulated time by `ms` in steps, settling the controllers after each. */
  run(ms: number, stepMs?: number): Promise<void>;
  // Tests read pods as plain JSON, as clients do.
  pods(selector?: { namespace?: string; labelSelector?: string }): any[];
  pod(namespace: string, name: string): any;
  list(type: ResourceType, selector?: { namespace?: string; labelSelector?: string }): any[];
  create(obj: KObject): KObject;
  stop(): Promise<void>;
}

/** Fixed, short latencies so tests are deterministic and quick to advance. */
export const TEST_TIMING: Partial<KubeletTiming> = { sandboxSeconds: 0.5, imagePullMinSeconds: 1, imagePullMaxSeconds: 1, containerStartSeconds: 0.5 };

export async function startCluster(opts: { nodes?: { name: string; pool: string; labels?: Record<string, string>; capacityPods?: number }[]; infra?: NodeInfraEvents; timing?: Partial<KubeletTiming>; namespaces?: string[] } = {}): Promise<TestCluster> {
  const clock = new ManualClock();
  const store = new ObjectStore(clock, { historyLimit: 200_000 });
  registerBuiltinTypes(store);
  const t = (group: string, resource: string) => store.typeOrThrow(group, resource);
  for (const ns of ['default', 'kube-system', ...(opts.namespaces ?? [])]) store.create(t('', 'namespaces'), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  (opts.nodes ?? []).forEach((n, i) =>
    addNode(store, {
      name: n.name,
      pool: n.pool,
      providerID: `azure:///subscriptions/sub/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-${n.pool}-vmss/virtualMachines/${i}`,
      ip: `10.224.0.${i + 4}`,
      labels: n.labels,
      capacityPods: n.capacityPods,
    }),
  );
  const network = new PodNetwork();
  const logs = new PodLogs();
  const programs = new ProgramRegistry();
  const controllers = new ClusterControllers({ store, clock, network, logs, programs, infra: opts.infra, timing: { ...TEST_TIMING, ...opts.timing } });
  controllers.start();
  await controllers.idle();
  const settle = async (ms: number) => {
    await clock.advance(ms);
    await controllers.idle();
  };
  return {
    clock,
    store,
    network,
    logs,
    programs,
    controllers,
    t,
    async until(what, pred, maxMs = 120_000, stepMs = 500) {
      const start = clock.now();
      for (;;) {
        if (pred()) return clock.now() - start;
        if (clock.now() - start >= maxMs) throw new Error(`timed out after ${maxMs / 1000} simulated s waiting for: ${what}`);
        await settle(stepMs);
      }
    },
    async run(ms, stepMs = 500) {
      for (let done = 0; done < ms; done += stepMs) await settle(Math.min(stepMs, ms - done));
    },
    pods(sel = {}) {
      return store.list(t('', 'pods'), sel).items;
    },
    list(type, sel = {}) {
      return store.list(type, sel).items;
    },
    pod(namespace, name) {
      return store.get(t('', 'pods'), namespace, name);
    },
    create(obj) {
      const [group] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : [''];
      const type = store.types().find((x) => x.group === group && x.kind === obj.kind)!;
      return store.create(type, obj);
    },
    stop: () => controllers.stop(),
  };
}

export function deployment(name: string, replicas: number, extra: { namespace?: string; labels?: Record<string, string>; image?: string; strategy?: any; nodeSelector?: Record<string, string>; podSpec?: Record<string, any> } = {}): KObject {
  const labels = extra.labels ?? { app: name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: extra.namespace ?? 'default', labels },
    spec: {
      replicas,
      selector: { matchLabels: labels },
      ...(extra.strategy ? { strategy: extra.strategy } : {}),
      template: {
        metadata: { labels },
        spec: { ...(extra.nodeSelector ? { nodeSelector: extra.nodeSelector } : {}), containers: [{ name: 'app', image: extra.image ?? `contoso.azurecr.io/${name}:1.0` }], ...(extra.podSpec ?? {}) },
      },
    },
  };
}

export function isReady(p: KObject): boolean {
  return p.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') ?? false;
}
