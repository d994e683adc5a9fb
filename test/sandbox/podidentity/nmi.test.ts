/**
 * NMI driven directly as a container program: health body, standard and managed token flows,
 * the termination gap, and the start-up crashes of misconfigured versions.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { nmiProgram, startImds, type ImdsHandle } from '../../../src/sandbox/podidentity/index.ts';
import type { KObject } from '../../../src/sandbox/store.ts';
import { APPS, addBinding, addPod, advanceUntil, buildWorld, get, startNmi, tokenRequest, track, type World } from './harness.ts';

const stops: ImdsHandle[] = [];
afterEach(() => {
  while (stops.length) stops.pop()!.stop();
});

function setup(o: Parameters<typeof buildWorld>[0] = {}): World {
  const w = buildWorld(o);
  stops.push(startImds(w.opts));
  return w;
}

function health(w: World, node: string) {
  return get(w, `http://${w.nodeIp(node)}:8085/healthz`, { ip: '10.0.0.1', nodeName: '' }, {});
}

/** Creates the pod's AzureAssignedIdentity the way MIC would, in a given state. */
function assigned(w: World, pod: KObject, identityName: string, status: 'Created' | 'Assigned'): void {
  const t = w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureassignedidentities');
  const id = w.store.get(w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureidentities'), pod.metadata.namespace, identityName)!;
  const b = w.store.get(w.store.typeOrThrow('aadpodidentity.k8s.io', 'azureidentitybindings'), pod.metadata.namespace, `${identityName}-binding`)!;
  const name = `${pod.metadata.name}-${pod.metadata.namespace}-${identityName}`;
  const existing = w.store.get(t, 'default', name);
  if (existing) {
    existing.status = { ...existing.status, status };
    w.store.update(t, existing);
    return;
  }
  w.store.create(t, {
    apiVersion: 'aadpodidentity.k8s.io/v1',
    kind: 'AzureAssignedIdentity',
    metadata: { name, namespace: 'default', labels: { nodename: pod.spec.nodeName } },
    spec: { azureIdentityRef: id, azureBindingRef: b, pod: pod.metadata.name, podNamespace: pod.metadata.namespace, nodename: pod.spec.nodeName },
    status: { availableReplicas: 1, status },
  });
}

describe('NMI health and start-up', () => {
  it('serves /healthz with 200 and body Not Active until the chain is installed, then Active', async () => {
    const w = setup();
    const node = w.nodes[APPS][0];
    const nmi = startNmi(w, nmiProgram(w.opts), node);
    expect((await health(w, node)).error).toMatch(/Connection refused/);
    expect(nmi.proc.isReady!()).toBe(false);
    await w.clock.advance(1000);
    const before = await health(w, node);
    expect([before.status, before.body]).toEqual([200, 'Not Active']);
    expect(nmi.proc.isReady!()).toBe(true);
    expect(w.network.isIntercepted(node)).toBe(false);
    await w.clock.advance(1000);
    const after = await health(w, node);
    expect([after.status, after.body]).toEqual([200, 'Active']);
    expect(w.network.isIntercepted(node)).toBe(true);
    expect(nmi.logs.join('\n')).toMatch(/Starting nmi process\. Version: v1\.8\.17/);
  });

  it('NMI >= v1.6.2 given --host-ip exits 2 with the pflag error; v1.6.1 accepts it', async () => {
    const w = setup();
    const [n0, n1] = w.nodes[APPS];
    const args = (n: string) => ['--host-ip=10.224.0.4', `--node=${n}`, '--http-probe-port=8085'];
    const bad = startNmi(w, nmiProgram(w.opts), n0, { version: 'v1.6.2', args: args(n0) });
    await w.clock.advance(10);
    expect(bad.code()).toBe(2);
    expect(bad.logs[0]).toBe('unknown flag: --host-ip');
    const ok = startNmi(w, nmiProgram(w.opts), n1, { version: '1.6.1', args: args(n1) });
    await w.clock.advance(3000);
    expect(ok.code()).toBeUndefined();
    expect(w.network.isIntercepted(n1)).toBe(true);
  });

  it('managed mode without --forceNamespaced is fatal; env FORCENAMESPACED=true is enough; < v1.6.0 has no --operation-mode', async () => {
    const w = setup();
    const [n0, n1] = w.nodes[APPS];
    const noNs = startNmi(w, nmiProgram(w.opts), n0, { args: [`--node=${n0}`, '--http-probe-port=8085', '--operation-mode=managed'] });
    await w.clock.advance(3000);
    expect(noNs.code()).toBe(255);
    expect(noNs.logs.at(-1)).toMatch(/^F\d{4} .*\] failed to initialize token client, err: managed mode not intialized in force namespaced mode$/);
    expect(w.network.isIntercepted(n0)).toBe(false);
    const env = startNmi(w, nmiProgram(w.opts), n1, { args: [`--node=${n1}`, '--http-probe-port=8085', '--operation-mode=managed'], env: { FORCENAMESPACED: 'true' } });
    await w.clock.advance(3000);
    expect(env.code()).toBeUndefined();
    expect(w.network.isIntercepted(n1)).toBe(true);
    const old = startNmi(w, nmiProgram(w.opts), w.nodes['aks-batch-12345678-vmss'][0], { version: '1.5.5', args: ['--operation-mode=managed', '--forceNamespaced'] });
    await w.clock.advance(10);
    expect(old.code()).toBe(2);
    expect(old.logs[0]).toBe('unknown flag: --operation-mode');
  });
});

describe('NMI token flows', () => {
  it('standard mode holds the request until the AzureAssignedIdentity is Assigned, then returns the identity token', async () => {
    const w = setup();
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    const pod = addPod(w, { namespace: 'shop', name: 'orders-7d9f-abcde', node, labels: { aadpodidbinding: 'orders' } });
    startNmi(w, nmiProgram(w.opts), node);
    await w.clock.advance(2000);
    const pending = track(tokenRequest(w, pod));
    await w.clock.advance(12_000);
    expect(pending.settled()).toBe(false);
    assigned(w, pod, 'orders', 'Created');
    await w.clock.advance(10_000);
    expect(pending.settled()).toBe(false);
    w.arm.patchIdentities(APPS, { [w.ids.orders.id]: {} }, { caller: 'mic' });
    assigned(w, pod, 'orders', 'Assigned');
    await advanceUntil(w.clock, () => pending.settled(), 6000);
    const res = pending.value()!;
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body);
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'expires_on', 'not_before', 'refresh_token', 'resource', 'token_type']);
    const claims = decodeJwt(body.access_token);
    expect(claims.appid).toBe(w.ids.orders.clientId);
    expect(claims.xms_mirid).toBe(w.ids.orders.id);
  });

  it('standard mode answers 404 after 16 x 5 s when MIC never creates the object', async () => {
    const w = setup();
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    const pod = addPod(w, { namespace: 'shop', name: 'orders-1', node, labels: { aadpodidbinding: 'orders' } });
    startNmi(w, nmiProgram(w.opts), node);
    await w.clock.advance(2000);
    const t0 = w.clock.now();
    const pending = track(tokenRequest(w, pod));
    const waited = await advanceUntil(w.clock, () => pending.settled(), 120_000, 1000);
    expect(w.clock.now() - t0).toBe(80_000);
    expect(waited).toBe(80_000);
    expect(pending.value()!.status).toBe(404);
    expect(pending.value()!.body).toBe('getting assigned identities for pod shop/orders-1 in CREATED state failed after 16 attempts, retry duration [5]s, error: <nil>. Check MIC pod logs for identity assignment errors\n');
  });

  it('managed mode matches only bindings and identities in the pod namespace; IMDS refusal becomes 403', async () => {
    const w = setup();
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    addBinding(w, { namespace: 'shop', identity: w.ids.payments, name: 'payments', selector: 'payments' });
    const inNs = addPod(w, { namespace: 'shop', name: 'orders-1', node, labels: { aadpodidbinding: 'orders' } });
    const otherNs = addPod(w, { namespace: 'pay', name: 'payments-1', node, labels: { aadpodidbinding: 'payments' } });
    const notAssigned = addPod(w, { namespace: 'shop', name: 'payments-2', node, labels: { aadpodidbinding: 'payments' } });
    w.arm.patchIdentities(APPS, { [w.ids.orders.id]: {} }, { caller: 'test' });
    startNmi(w, nmiProgram(w.opts), node, { args: [`--node=${node}`, '--http-probe-port=8085', '--operation-mode=managed', '--forceNamespaced', '--metadata-header-required=true'] });
    await w.clock.advance(2000);

    const ok = await tokenRequest(w, inNs);
    expect(ok.status).toBe(200);
    expect(decodeJwt(JSON.parse(ok.body).access_token).appid).toBe(w.ids.orders.clientId);

    const nf = await tokenRequest(w, otherNs);
    expect(nf.status).toBe(404);
    expect(nf.body).toBe('no azure identity found for request clientID \n');
    const named = await tokenRequest(w, otherNs, `&client_id=${w.ids.payments.clientId}`);
    expect(named.status).toBe(404);
    expect(named.body).toBe('no azure identity found for request clientID 2222##### REDACTED #####0001\n');

    const forbidden = await tokenRequest(w, notAssigned);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toMatch(/^adal: Refresh request failed\. Status Code = '400'\. Response body: \{"error":"invalid_request","error_description":"Identity not found"\}/);

    const noHeader = await get(w, `http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x`, { ip: inNs.status.podIP, nodeName: node }, {});
    expect(noHeader.status).toBe(400);
    expect(JSON.parse(noHeader.body)).toEqual({ error: 'invalid_request', error_description: 'Required metadata header not specified' });
  });

  it('passes AzurePodIdentityException pods straight to IMDS', async () => {
    const w = setup();
    const node = w.nodes[APPS][0];
    const et = w.store.typeOrThrow('aadpodidentity.k8s.io', 'azurepodidentityexceptions');
    w.store.create(et, { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzurePodIdentityException', metadata: { name: 'addon', namespace: 'kube-system' }, spec: { podLabels: { 'kubernetes.azure.com/managedby': 'aks' } } });
    const pod = addPod(w, { namespace: 'kube-system', name: 'addon-1', node, labels: { 'kubernetes.azure.com/managedby': 'aks', aadpodidbinding: 'none' } });
    startNmi(w, nmiProgram(w.opts), node);
    await w.clock.advance(2000);
    const res = await tokenRequest(w, pod, `&client_id=${w.kubelet.clientId}`);
    expect(res.status).toBe(200);
    expect(decodeJwt(JSON.parse(res.body).access_token).appid).toBe(w.kubelet.clientId);
  });
});

describe('NMI termination gap', () => {
  async function gap(w: World) {
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    const pod = addPod(w, { namespace: 'shop', name: 'orders-1', node, labels: { aadpodidbinding: 'orders' } });
    w.arm.patchIdentities(APPS, { [w.ids.orders.id]: {} }, { caller: 'test' });
    const nmi = startNmi(w, nmiProgram(w.opts), node, { args: [`--node=${node}`, '--http-probe-port=8085', '--operation-mode=managed', '--forceNamespaced'] });
    await w.clock.advance(2000);
    expect((await tokenRequest(w, pod)).status).toBe(200);
    nmi.proc.terminate();
    expect(w.network.isIntercepted(node)).toBe(false);
    const during = await tokenRequest(w, pod);
    await w.clock.advance(9_900);
    expect(nmi.code()).toBeUndefined();
    // Upstream never resets Initialized: the health body still says Active while the chain is gone.
    expect((await health(w, node)).body).toBe('Active');
    await w.clock.advance(100);
    expect(nmi.code()).toBe(0);
    expect((await health(w, node)).error).toMatch(/Connection refused/);
    expect(nmi.logs.some((l) => l.endsWith('received SIGTERM, shutting down'))).toBe(true);
    return during;
  }

  it('with one identity on the VMSS the pod silently gets it straight from IMDS', async () => {
    const during = await gap(setup({ kubeletIdentity: false }));
    expect(during.status).toBe(200);
    expect(JSON.parse(during.body).client_id).toBe('22222222-0000-4000-8000-000000000000');
  });

  it('with several identities on the VMSS IMDS answers 400', async () => {
    const during = await gap(setup());
    expect(during.status).toBe(400);
    expect(JSON.parse(during.body).error_description).toMatch(/^Multiple user assigned identities exist/);
  });

  it('a request waiting in standard mode is cut when NMI exits', async () => {
    const w = setup();
    const node = w.nodes[APPS][0];
    addBinding(w, { namespace: 'shop', identity: w.ids.orders, name: 'orders', selector: 'orders' });
    const pod = addPod(w, { namespace: 'shop', name: 'orders-1', node, labels: { aadpodidbinding: 'orders' } });
    const nmi = startNmi(w, nmiProgram(w.opts), node);
    await w.clock.advance(2000);
    const pending = track(tokenRequest(w, pod));
    await w.clock.advance(3000);
    nmi.proc.terminate();
    await w.clock.advance(10_000);
    expect(nmi.code()).toBe(0);
    expect(pending.settled()).toBe(true);
    expect(pending.value()!.error).toMatch(/Connection reset by peer/);
  });
});
