/**
 * IMDS per VM: JWT claims verified with the published key, and IMDS's refusals.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { importJWK, jwtVerify } from 'jose';
import { startImds, type ImdsHandle } from '../../../src/sandbox/podidentity/index.ts';
import { APPS, BATCH, TENANT, TOKEN_PATH, buildWorld, get, type World } from './harness.ts';

const stops: ImdsHandle[] = [];
afterEach(() => {
  while (stops.length) stops.pop()!.stop();
});

function setup(o: Parameters<typeof buildWorld>[0] = {}): { w: World; imds: ImdsHandle } {
  const w = buildWorld(o);
  const imds = startImds(w.opts);
  stops.push(imds);
  return { w, imds };
}

/** A request from the node itself (the VM asks its own IMDS). */
function fromVm(w: World, set: string) {
  const node = w.nodes[set][0];
  return { ip: w.nodeIp(node), nodeName: node };
}

describe('IMDS token endpoint', () => {
  it('hands out a verifiable RS256 JWT for the only identity on the VM, with managed-identity claims', async () => {
    const { w, imds } = setup({ kubeletIdentity: false });
    w.arm.patchIdentities(APPS, { [w.ids.orders.id]: {} }, { caller: 'test' });
    const res = await get(w, `http://169.254.169.254${TOKEN_PATH}`, fromVm(w, APPS));
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body);
    expect(Object.keys(body).sort()).toEqual(['access_token', 'client_id', 'expires_in', 'expires_on', 'ext_expires_in', 'not_before', 'resource', 'token_type']);
    expect(body.client_id).toBe(w.ids.orders.clientId);
    expect(body.token_type).toBe('Bearer');
    expect(body.resource).toBe('https://management.azure.com/');
    for (const k of ['expires_in', 'expires_on', 'not_before']) expect(typeof body[k]).toBe('string');

    const key = await importJWK(imds.publicJwk, 'RS256');
    const { payload, protectedHeader } = await jwtVerify(body.access_token, key, { currentDate: new Date(w.clock.now()) });
    expect(protectedHeader.alg).toBe('RS256');
    expect(payload.aud).toBe('https://management.azure.com/');
    expect(payload.iss).toBe(`https://sts.windows.net/${TENANT}/`);
    expect(payload.tid).toBe(TENANT);
    expect(payload.oid).toBe(w.ids.orders.principalId);
    expect(payload.sub).toBe(w.ids.orders.principalId);
    expect(payload.appid).toBe(w.ids.orders.clientId);
    expect(payload.xms_mirid).toBe(`/subscriptions/${w.arm.subscriptionId}/resourcegroups/rg-shop/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-orders`);
    expect(payload.exp! - payload.iat!).toBeGreaterThan(3600);
    expect(Number(body.expires_on)).toBe(payload.exp);
    expect(payload.nbf).toBeLessThanOrEqual(w.clock.now() / 1000);
  });

  it('refuses without the Metadata header', async () => {
    const { w } = setup();
    const res = await get(w, `http://169.254.169.254${TOKEN_PATH}`, fromVm(w, APPS), {});
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toEqual({ error: 'invalid_request', error_description: 'Required metadata header not specified' });
  });

  it('asks the caller to name the identity when several are assigned, and honours client_id, object_id and msi_res_id', async () => {
    const { w, imds } = setup();
    w.arm.patchIdentities(APPS, { [w.ids.orders.id]: {} }, { caller: 'test' });
    const base = `http://169.254.169.254${TOKEN_PATH}`;
    const several = await get(w, base, fromVm(w, APPS));
    expect(several.status).toBe(400);
    expect(JSON.parse(several.body)).toEqual({
      error: 'invalid_request',
      error_description: 'Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request',
    });
    const key = await importJWK(imds.publicJwk, 'RS256');
    for (const q of [`&client_id=${w.ids.orders.clientId}`, `&object_id=${w.ids.orders.principalId}`, `&msi_res_id=${encodeURIComponent(w.ids.orders.id)}`, `&mi_res_id=${encodeURIComponent(w.ids.orders.id.toUpperCase())}`]) {
      const res = await get(w, base + q, fromVm(w, APPS));
      expect(res.status, q).toBe(200);
      const { payload } = await jwtVerify(JSON.parse(res.body).access_token, key, { currentDate: new Date(w.clock.now()) });
      expect(payload.appid).toBe(w.ids.orders.clientId);
    }
    // The identity is on the apps VMSS only: the batch VM does not have it.
    const other = await get(w, `${base}&client_id=${w.ids.orders.clientId}`, fromVm(w, BATCH));
    expect(other.status).toBe(400);
    expect(JSON.parse(other.body).error_description).toBe('Identity not found');
    // Only the kubelet identity on batch: an unnamed request silently gets it.
    const lone = await get(w, base, fromVm(w, BATCH));
    expect(lone.status).toBe(200);
    expect(JSON.parse(lone.body).client_id).toBe(w.kubelet.clientId);
  });

  it('validates the query like IMDS', async () => {
    const { w } = setup();
    const noResource = await get(w, 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01', fromVm(w, BATCH));
    expect(noResource.status).toBe(400);
    expect(JSON.parse(noResource.body).error_description).toBe("Required query variable 'resource' is missing");
    const noVersion = await get(w, 'http://169.254.169.254/metadata/identity/oauth2/token?resource=x', fromVm(w, BATCH));
    expect(noVersion.status).toBe(400);
    const none = buildWorld({ kubeletIdentity: false });
    stops.push(startImds(none.opts));
    const empty = await get(none, `http://169.254.169.254${TOKEN_PATH}`, { ip: none.nodeIp(none.nodes[APPS][0]), nodeName: none.nodes[APPS][0] });
    expect(empty.status).toBe(400);
    expect(JSON.parse(empty.body).error_description).toBe('Identity not found');
  });
});
