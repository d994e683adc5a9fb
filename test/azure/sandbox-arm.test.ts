/**
 * The Azure gateway against the sandbox's own ARM endpoint (src/sandbox/arm) over HTTPS,
 * configured the way `source <sandbox dir>/env` configures it: endpoint, 0600 token file, CA file.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ScaledClock } from '../../src/sandbox/clock.ts';
import { FaultInjector } from '../../src/sandbox/faults.ts';
import { generateSandboxTls } from '../../src/sandbox/tls.ts';
import { startArmServer } from '../../src/sandbox/arm/server.ts';
import type { ArmServer } from '../../src/sandbox/arm/server.ts';
import { buildState, SUB, RG, NODE_RG } from '../sandbox/arm/harness.ts';
import { createAzureGateway } from '../../src/azure/gateway.ts';
import { resolveAzureConnection } from '../../src/azure/client.ts';
import { AzureApiError } from '../../src/azure/errors.ts';

let server: ArmServer;
let world: ReturnType<typeof buildState>;
let faults: FaultInjector;
let env: Record<string, string>;

beforeAll(async () => {
  const clock = new ScaledClock({ timeScale: 1000 });
  world = buildState({ clock });
  faults = new FaultInjector();
  const tls = await generateSandboxTls();
  const token = randomBytes(24).toString('hex');
  server = await startArmServer({ state: world.state, tls, token, metrics: world.metrics, faults, clock });
  const dir = mkdtempSync(join(tmpdir(), 'podid-sandbox-arm-'));
  writeFileSync(join(dir, 'token'), token, { mode: 0o600 });
  writeFileSync(join(dir, 'ca.pem'), tls.caPem);
  env = { PODID_MIGRATE_ARM_ENDPOINT: server.url, PODID_MIGRATE_ARM_TOKEN_FILE: join(dir, 'token'), PODID_MIGRATE_CA_FILE: join(dir, 'ca.pem') };
});
afterAll(async () => {
  await server?.close();
});

const gateway = (dryRun: 'none' | 'server' = 'none') =>
  createAzureGateway({ subscriptionId: SUB, connection: resolveAzureConnection(env), dryRun, pollIntervalMs: 20, retry: { baseDelayMs: 10, maxRetryAfterMs: 250 } });

describe('AzureGateway against the sandbox ARM endpoint', () => {
  it('reads the cluster, then adds identities with one PATCH per VMSS keeping the kubelet identity', async () => {
    const az = gateway();
    const mc = await az.getManagedCluster(`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.ContainerService/managedClusters/shop-aks`);
    expect(mc.nodeResourceGroup).toBe(NODE_RG);
    expect(mc.kubeletIdentity?.resourceId?.toLowerCase()).toBe(world.kubelet.id.toLowerCase());
    const sets = await az.listScaleSets(NODE_RG);
    expect(sets.length).toBe(2);
    const target = sets[1];
    const before = world.metrics.count({ api: 'arm', verb: 'PATCH' });
    const r = await az.assignIdentities(NODE_RG, target.name, [world.ids.orders.id, world.ids.payments.id, world.kubelet.id.toUpperCase()]);
    expect(r.added).toEqual([world.ids.orders.id, world.ids.payments.id]);
    expect(r.patches).toBe(1);
    expect(world.metrics.count({ api: 'arm', verb: 'PATCH' }) - before).toBe(1);
    const after = await az.getScaleSet(NODE_RG, target.name);
    const ids = Object.keys(after!.userAssignedIdentities).map((k) => k.toLowerCase());
    expect(ids).toEqual(expect.arrayContaining([world.kubelet.id, world.ids.orders.id, world.ids.payments.id].map((k) => k.toLowerCase())));
    expect(Object.values(after!.userAssignedIdentities).every((v) => !!v.clientId)).toBe(true);
    const removed = await az.unassignIdentities(NODE_RG, target.name, [world.ids.payments.id]);
    expect(removed.removed).toEqual([world.ids.payments.id]);
    expect(Object.keys((await az.getScaleSet(NODE_RG, target.name))!.userAssignedIdentities).map((k) => k.toLowerCase())).toEqual(
      expect.arrayContaining([world.kubelet.id.toLowerCase(), world.ids.orders.id.toLowerCase()]),
    );
  });

  it('names the identity the caller may not assign, before and on the PATCH', async () => {
    const az = gateway();
    const [vmss] = await az.listScaleSets(NODE_RG);
    expect((await az.canAssign(world.ids.secret.id)).allowed).toBe(false);
    expect((await az.canAssign(world.ids.catalog.id)).allowed).toBe(true);
    const err = await az.assignIdentities(NODE_RG, vmss.name, [world.ids.catalog.id, world.ids.secret.id]).catch((e) => e);
    expect(err).toBeInstanceOf(AzureApiError);
    expect(err.code).toBe('LinkedAuthorizationFailed');
    expect(err.identityIds.map((i: string) => i.toLowerCase())).toContain(world.ids.secret.id.toLowerCase());
  });

  it('retries a sandbox 429 with Retry-After 1200 after the capped wait', async () => {
    const az = gateway();
    const [vmss] = await az.listScaleSets(NODE_RG);
    faults.add({ api: 'arm', method: 'GET', path: 'virtualMachineScaleSets/[^/]+$', times: 1, action: { kind: 'status', status: 429, retryAfterSeconds: 1200 } });
    const t0 = Date.now();
    expect((await az.getScaleSet(NODE_RG, vmss.name))?.name).toBe(vmss.name);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(az.calls().retries).toBe(1);
  });

  it('server dry-run sends no ARM write: the sandbox counts zero mutations', async () => {
    world.metrics.reset();
    const az = gateway('server');
    const sets = await az.listScaleSets(NODE_RG);
    for (const s of sets) await az.assignIdentities(NODE_RG, s.name, [world.ids.catalog.id]);
    expect(world.metrics.snapshot().mutations.arm).toBe(0);
    expect(az.dryRunLog().filter((e) => e.method === 'PATCH')).toHaveLength(sets.length);
  });
});
