/**
 * Pod Identity under the real controllers and kubelet: the upstream standard-mode manifest
 * loaded as-is runs NMI on every node and a MIC leader, a Deployment's pods get their token
 * through NMI, and deleting the NMI DaemonSet (a step of the documented cutover) shows in the
 * outage meter as IMDS 400s.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { ClusterControllers } from '../../../src/sandbox/controllers/index.ts';
import { readManifest } from '../../../src/sandbox/install.ts';
import { PodLogs } from '../../../src/sandbox/pod-logs.ts';
import { ProgramRegistry } from '../../../src/sandbox/runtime.ts';
import type { KObject } from '../../../src/sandbox/store.ts';
import { OutageMeter, registerPodIdentityPrograms, startImds } from '../../../src/sandbox/podidentity/index.ts';
import { addBinding, advanceUntil, buildWorld, tokenRequest, type World } from './harness.ts';

const stops: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

function create(w: World, o: KObject): void {
  const [group] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : [''];
  const t = w.store.types().find((x) => x.group === group && x.kind === o.kind)!;
  w.store.create(t, o);
}

function pods(w: World, selector: string): KObject[] {
  return w.store.list(w.store.typeOrThrow('', 'pods'), { labelSelector: selector }).items;
}

describe('Pod Identity under the kubelet', () => {
  it('upstream manifest: NMI Active on every node, MIC assigns, pods get tokens; deleting the NMI DaemonSet opens an outage', async () => {
    const w = buildWorld({ realNodes: true });
    const programs = new ProgramRegistry();
    registerPodIdentityPrograms(programs, w.opts);
    const imds = startImds(w.opts);
    stops.push(() => imds.stop());
    const controllers = new ClusterControllers({ store: w.store, clock: w.clock, network: w.network, logs: new PodLogs(), programs });
    controllers.start();
    stops.push(() => controllers.stop());
    const meter = new OutageMeter(w.opts);
    meter.start();
    stops.push(() => meter.stop());

    for (const o of [...readManifest('standard-v1.8.17.yaml'), ...readManifest('mic-exception.yaml')]) if (o.kind !== 'CustomResourceDefinition') create(w, o);
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    create(w, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'orders', namespace: 'shop' },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'orders' } },
        template: {
          metadata: { labels: { app: 'orders', aadpodidbinding: 'orders' } },
          spec: { nodeSelector: { 'kubernetes.azure.com/agentpool': 'apps' }, containers: [{ name: 'orders', image: 'contoso.azurecr.io/shop/orders:1.4.2' }] },
        },
      },
    });

    const nodeCount = Object.values(w.nodes).flat().length;
    const assigned = () => w.store.list(w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureassignedidentities')).items.filter((a) => a.status?.status === 'Assigned').length;
    await advanceUntil(w.clock, () => Object.values(w.nodes).flat().every((n) => w.network.isIntercepted(n)) && assigned() === 2, 120_000, 1000);
    expect(pods(w, 'component=nmi').filter((p) => p.status?.phase === 'Running')).toHaveLength(nodeCount);
    expect([...w.arm.scaleSet('aks-apps-12345678-vmss')!.userAssignedIdentities.values()].map((v) => v.id)).toContain(w.ids.orders.id);

    const orders = pods(w, 'app=orders').filter((p) => p.status?.phase === 'Running');
    expect(orders).toHaveLength(2);
    const res = await tokenRequest(w, orders[0]);
    expect(res.status).toBe(200);
    expect(decodeJwt(JSON.parse(res.body).access_token).appid).toBe(w.ids.orders.clientId);

    meter.reset();
    await w.clock.advance(30_000);
    expect(meter.report().failingPodSeconds).toBe(0);

    w.store.delete(w.store.typeOrThrow('apps', 'daemonsets'), 'default', 'nmi');
    await advanceUntil(w.clock, () => pods(w, 'component=nmi').length === 0, 120_000, 1000);
    await w.clock.advance(10_000);
    const r = meter.report();
    expect(r.pods.map((p) => p.pod).sort()).toEqual(orders.map((p) => `shop/${p.metadata.name}`).sort());
    expect(Object.keys(r.byCause).every((c) => c.endsWith('IMDS answered 400 (several identities on the VMSS)'))).toBe(true);
    expect(r.windows.every((x) => x.end === null)).toBe(true);
    expect((await tokenRequest(w, orders[0])).status).toBe(400);
  });
});
