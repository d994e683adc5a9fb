/**
 * The outage meter against running NMI and MIC programs: quiet in steady state, and the
 * windows and causes of the failures a careless cutover produces.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { OutageMeter, micProgram, nmiProgram, startImds, type ImdsHandle } from '../../../src/sandbox/podidentity/index.ts';
import { APPS, addBinding, addPod, advanceUntil, buildWorld, startMic, startNmi, tokenRequest, type World } from './harness.ts';

const stops: (ImdsHandle | OutageMeter)[] = [];
afterEach(() => {
  while (stops.length) stops.pop()!.stop();
});

const MANAGED = (node: string) => [`--node=${node}`, '--http-probe-port=8085', '--operation-mode=managed', '--forceNamespaced', '--metadata-header-required=true'];

function setup(o: Parameters<typeof buildWorld>[0] = {}): { w: World; meter: OutageMeter } {
  const w = buildWorld(o);
  stops.push(startImds(w.opts));
  const meter = new OutageMeter(w.opts);
  stops.push(meter);
  return { w, meter };
}

describe('outage meter', () => {
  it('counts nothing in steady state and ignores probe pods and pods that are not running', async () => {
    const { w, meter } = setup();
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    const pod = addPod(w, { namespace: 'shop', name: 'orders-a', node, labels: { aadpodidbinding: 'orders', app: 'orders' } });
    addPod(w, { namespace: 'pay', name: 'probe', node, labels: { aadpodidbinding: 'nothing', 'podid-migrate.io/probe': 'true' } });
    startNmi(w, nmiProgram(w.opts), node);
    startMic(w, micProgram(w.opts));
    await w.clock.advance(3000);
    meter.start();
    await w.clock.advance(60_000);
    const r = meter.report();
    expect(r.samples).toBe(60);
    expect(r.failingPodSeconds).toBe(0);
    expect(r.windows).toEqual([]);
    // The meter's verdict matches what the pod really gets.
    expect((await tokenRequest(w, pod)).status).toBe(200);
  });

  it('an NMI restart with several identities on the VMSS: one window per pod, cause IMDS 400, closed when the new NMI is Active', async () => {
    const { w, meter } = setup();
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    addPod(w, { namespace: 'shop', name: 'orders-a', node, labels: { aadpodidbinding: 'orders', app: 'orders' } });
    addPod(w, { namespace: 'shop', name: 'orders-b', node: w.nodes[APPS][1], labels: { aadpodidbinding: 'orders', app: 'orders' } });
    w.arm.patchIdentities(APPS, { [w.ids.orders.id]: {} }, { caller: 'test' });
    const old = startNmi(w, nmiProgram(w.opts), node, { args: MANAGED(node) });
    startNmi(w, nmiProgram(w.opts), w.nodes[APPS][1], { args: MANAGED(w.nodes[APPS][1]) });
    await w.clock.advance(2000);
    meter.start();
    await w.clock.advance(5000);

    old.proc.terminate();
    await w.clock.advance(10_000);
    expect(old.code()).toBe(0);
    // The DaemonSet controller starts the replacement once the old pod is gone.
    startNmi(w, nmiProgram(w.opts), node, { args: MANAGED(node) });
    await w.clock.advance(2000);
    await w.clock.advance(10_000);
    const r = meter.report();
    expect(r.windows).toHaveLength(1);
    const win = r.windows[0];
    expect(win).toMatchObject({ pod: 'shop/orders-a', node, cause: 'nmi-restart: IMDS answered 400 (several identities on the VMSS)' });
    // 10 s termination sleep + 2 s start-up of the new NMI, sampled once a second.
    expect(win.seconds).toBe(12);
    expect(Date.parse(win.end!) - Date.parse(win.start)).toBe(12_000);
    expect(r.failingPodSeconds).toBe(12);
    expect(r.pods).toEqual([{ pod: 'shop/orders-a', service: 'shop/orders', failingSeconds: 12, longestFailureSeconds: 12 }]);
    expect(r.byCause).toEqual({ 'nmi-restart: IMDS answered 400 (several identities on the VMSS)': 12 });
  });

  it('with the only identity on the VMSS being the pod own, the restart gap is invisible', async () => {
    const { w, meter } = setup({ kubeletIdentity: false });
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    addPod(w, { namespace: 'shop', name: 'orders-a', node, labels: { aadpodidbinding: 'orders' } });
    w.arm.patchIdentities(APPS, { [w.ids.orders.id]: {} }, { caller: 'test' });
    const nmi = startNmi(w, nmiProgram(w.opts), node, { args: MANAGED(node) });
    await w.clock.advance(2000);
    meter.start();
    await w.clock.advance(1000);
    nmi.proc.terminate();
    await w.clock.advance(20_000);
    expect(meter.report().failingPodSeconds).toBe(0);
    // Without any NMI for long, and a second identity arriving, it shows as no-nmi.
    w.arm.patchIdentities(APPS, { [w.ids.payments.id]: {} }, { caller: 'test' });
    await w.clock.advance(60_000);
    const windows = meter.report().windows;
    expect(windows.map((x) => x.cause)).toEqual(['nmi-restart: IMDS answered 400 (several identities on the VMSS)', 'no-nmi: IMDS answered 400 (several identities on the VMSS)']);
    // The cause switches once the chain has been gone longer than a restart takes (10 + 2 + 30 s).
    expect(Date.parse(windows[1].start) - Date.parse(windows[0].start)).toBe(42_000 - 20_000);
    expect(windows[0].seconds + windows[1].seconds).toBe(60);
  });

  it('managed mode: a binding in another namespace fails with no-binding-in-namespace; an identity missing from the VMSS with identity-not-on-vmss', async () => {
    const { w, meter } = setup();
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    addBinding(w, { namespace: 'pay', identity: w.ids.payments, name: 'payments', selector: 'payments' });
    addPod(w, { namespace: 'pay', name: 'orders-in-pay', node, labels: { aadpodidbinding: 'orders' } });
    addPod(w, { namespace: 'pay', name: 'payments-a', node, labels: { aadpodidbinding: 'payments' } });
    startNmi(w, nmiProgram(w.opts), node, { args: MANAGED(node) });
    await w.clock.advance(2000);
    meter.start();
    await w.clock.advance(5000);
    w.arm.patchIdentities(APPS, { [w.ids.payments.id]: {} }, { caller: 'test' });
    await w.clock.advance(5000);
    const r = meter.report();
    expect(r.byCause).toEqual({ 'no-binding-in-namespace (managed mode)': 10, 'identity-not-on-vmss': 5 });
    const pay = r.windows.find((x) => x.pod === 'pay/payments-a')!;
    expect([pay.seconds, pay.end !== null]).toEqual([5, true]);
    const open = r.windows.find((x) => x.pod === 'pay/orders-in-pay')!;
    expect([open.seconds, open.end]).toEqual([10, null]);
  });

  it('standard mode without MIC: a new pod is pending during the grace, then waiting-for-mic-assignment', async () => {
    const { w, meter } = setup();
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    startNmi(w, nmiProgram(w.opts), node);
    await w.clock.advance(2000);
    meter.start();
    const pod = addPod(w, { namespace: 'shop', name: 'orders-new', node, labels: { aadpodidbinding: 'orders' } });
    expect(meter.evaluate(pod)).toEqual({ ok: 'pending' });
    await w.clock.advance(20_000);
    const r = meter.report();
    // Grace = MIC assignment latency (4 s) + one NMI retry interval (5 s).
    expect(r.windows).toEqual([expect.objectContaining({ pod: 'shop/orders-new', cause: 'waiting-for-mic-assignment', seconds: 12, end: null })]);

    // MIC comes back: the window closes once the identity is assigned.
    startMic(w, micProgram(w.opts));
    await advanceUntil(w.clock, () => meter.report().windows[0].end !== null, 30_000, 1000);
    expect((await tokenRequest(w, pod)).status).toBe(200);
  });

  it('reset starts a fresh report', async () => {
    const { w, meter } = setup();
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    addPod(w, { namespace: 'shop', name: 'orders-a', node: w.nodes[APPS][0], labels: { aadpodidbinding: 'orders' } });
    meter.start();
    await w.clock.advance(5000);
    expect(meter.report().failingPodSeconds).toBe(5);
    expect(meter.report().byCause).toEqual({ 'no-nmi: IMDS handed out another identity': 5 });
    meter.reset();
    expect(meter.report()).toEqual({ since: new Date(w.clock.now()).toISOString().replace('.000Z', 'Z'), samples: 0, failingPodSeconds: 0, pods: [], windows: [], byCause: {} });
  });
});
