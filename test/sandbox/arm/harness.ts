/**
 * A small Azure world for the ARM tests: one AKS cluster with its kubelet identity, a few
 * workload identities and node-pool scale sets, served over HTTPS on 127.0.0.1, plus real SDK
 * clients aimed at it.
 */
import { randomBytes } from 'node:crypto';
import { ManualClock, ScaledClock, type Clock } from '../../../src/sandbox/clock.ts';
import { Metrics } from '../../../src/sandbox/metrics.ts';
import { FaultInjector } from '../../../src/sandbox/faults.ts';
import { generateSandboxTls, type SandboxTls } from '../../../src/sandbox/tls.ts';
import { ArmState, type ArmLatencyProfile, type ArmStateEvent, type UserAssignedIdentity } from '../../../src/sandbox/arm/state.ts';
import { startArmServer, type ArmServer } from '../../../src/sandbox/arm/server.ts';
import { createArmClients } from '../../helpers/arm-clients.ts';

export const SUB = '8c9d1b4e-3f6a-4c2d-9e1b-5a7c3d2e1f00';
export const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
export const RG = 'rg-shop';
export const NODE_RG = 'MC_rg-shop_shop-aks_westeurope';

let tlsOnce: Promise<SandboxTls> | undefined;
/** One certificate per test file is plenty. */
export function sharedTls(): Promise<SandboxTls> {
  tlsOnce ??= generateSandboxTls();
  return tlsOnce;
}

/** Builds the state only (no server). */
export function buildState(opts: { clock: Clock; latency?: ArmLatencyProfile; metrics?: Metrics; pools?: { name: string; count: number }[] }) {
  const metrics = opts.metrics ?? new Metrics();
  const state = new ArmState({ subscriptionId: SUB, tenantId: TENANT, clock: opts.clock, metrics, latency: opts.latency });
  const kubelet = state.addIdentity({ name: 'shop-aks-agentpool', resourceGroup: NODE_RG, location: 'westeurope', clientId: '11111111-0000-4000-8000-000000000001', principalId: '11111111-0000-4000-8000-000000000002' });
  const ids: Record<string, UserAssignedIdentity> = {};
  for (const [i, name] of ['orders', 'payments', 'catalog', 'secret'].entries()) {
    ids[name] = state.addIdentity({ name: `id-${name}`, resourceGroup: RG, location: 'westeurope', clientId: `22222222-0000-4000-8000-00000000000${i}`, principalId: `33333333-0000-4000-8000-00000000000${i}` });
  }
  state.denyAssign(ids.secret.id);
  const pools = opts.pools ?? [
    { name: 'system', count: 2 },
    { name: 'apps', count: 3 },
  ];
  state.setManagedCluster({
    resourceGroup: RG,
    name: 'shop-aks',
    location: 'westeurope',
    nodeResourceGroup: NODE_RG,
    kubeletIdentity: { resourceId: kubelet.id, clientId: kubelet.clientId, objectId: kubelet.principalId },
    agentPools: pools.map((p, i) => ({ name: p.name, count: p.count, vmSize: 'Standard_D4s_v5', mode: i === 0 ? 'System' : 'User' })),
    kubernetesVersion: '1.32.4',
    fqdn: 'shop-aks-dns-1a2b3c4d.hcp.westeurope.azmk8s.io',
  });
  for (const p of pools) state.addScaleSet({ name: '', poolName: p.name, capacity: p.count, identities: [kubelet.id] });
  return { state, metrics, kubelet, ids };
}

/** Starts a server over a fresh state and returns clients for it. Call `close` in afterEach/afterAll. */
export async function startHarness(opts: { clock?: Clock; latency?: ArmLatencyProfile; pageSize?: number; pools?: { name: string; count: number }[]; retryOptions?: { maxRetries?: number } } = {}) {
  const clock = opts.clock ?? new ScaledClock({ timeScale: 1000 });
  const built = buildState({ clock, latency: opts.latency, pools: opts.pools });
  const faults = new FaultInjector();
  const tls = await sharedTls();
  const token = randomBytes(24).toString('hex');
  const server: ArmServer = await startArmServer({ state: built.state, tls, token, metrics: built.metrics, faults, clock, pageSize: opts.pageSize });
  const clients = createArmClients({ endpoint: server.url, token, caPem: tls.caPem, subscriptionId: SUB, retryOptions: opts.retryOptions });
  const events: ArmStateEvent[] = [];
  built.state.on('event', (e: ArmStateEvent) => events.push(e));
  return {
    ...built,
    ...clients,
    clock,
    faults,
    tls,
    token,
    server,
    events,
    close: () => server.close(),
  };
}

/** Polls `cond` (real time) until it holds or the deadline passes. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Advances a manual clock in small steps until `cond` holds (lets HTTP pollers interleave). */
export async function advanceUntil(clock: ManualClock, cond: () => boolean, what: string, stepMs = 5000, maxSteps = 400): Promise<void> {
  for (let i = 0; i < maxSteps; i++) {
    if (cond()) return;
    await clock.advance(stepMs);
    await new Promise((r) => setTimeout(r, 2));
  }
  if (!cond()) throw new Error(`condition never held: ${what}`);
}

export { ManualClock };
