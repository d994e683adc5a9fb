/**
 * Why `assign` protects identities in MIC first: with MIC still running after the identities
 * were assigned, a service scaled to zero makes MIC garbage-collect its identity from the scale
 * set (a PATCH with `null` by MIC) although the inventory says the pool needs it. With the
 * protection (`--immutable-user-msis`) MIC drops its AzureAssignedIdentities and leaves the
 * scale set alone. Real gateways over HTTPS, the default scenario with churn.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/kube/gateway.ts';
import { until } from '../helpers/sandbox.ts';
import { startEnv, type Env } from './steps-1-4-harness.ts';

const AAI = { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity' };

async function identitiesOn(env: Env, pool: string): Promise<string[]> {
  const rg = (await env.azure.getManagedCluster(env.sandbox.aksResourceId)).nodeResourceGroup;
  const set = (await env.azure.listScaleSets(rg)).find((s) => s.tags['aks-managed-poolName'] === pool)!;
  return Object.keys(set.userAssignedIdentities).map((id) => id.split('/').pop()!.toLowerCase());
}

async function checkoutAssignments(env: Env): Promise<KubeObject[]> {
  return (await env.kube.list(AAI)).filter((a) => (a.spec as { podNamespace?: string; azureIdentityRef?: { metadata?: { name?: string } } }).podNamespace === 'payments' && (a.spec as { azureIdentityRef?: { metadata?: { name?: string } } }).azureIdentityRef?.metadata?.name === 'checkout-id');
}

/** Applies inventory and assign, scales payments/checkout to 0, and waits until MIC has processed the pods' removal. */
async function scaleDownBetweenAssignAndMicScale(env: Env, options: Record<string, unknown>): Promise<{ micPatches: number }> {
  await env.runner(options).apply({ to: 'assign' });
  expect(await identitiesOn(env, 'pay')).toContain('checkout-id');
  expect((await checkoutAssignments(env)).length).toBeGreaterThan(0);
  const micPatchesBefore = env.sandbox.metrics.count({ api: 'arm', caller: 'mic', verb: 'PATCH' });
  await env.kube.scale('payments', 'checkout', 0);
  // MIC's garbage collection ends with the pods' AzureAssignedIdentities deleted, whatever it did to the scale set.
  await until('MIC to delete the AzureAssignedIdentities of payments/checkout', async () => (await checkoutAssignments(env)).length === 0, 40_000);
  await env.runner(options).apply({ to: 'mic-scale' });
  return { micPatches: env.sandbox.metrics.count({ api: 'arm', caller: 'mic', verb: 'PATCH' }) - micPatchesBefore };
}

describe('MIC protection during the cutover', () => {
  let env: Env | undefined;
  afterEach(async () => {
    await env?.stop();
    env = undefined;
  });

  it('without the protect action (test switch) MIC removes checkout-id from the pay scale set when checkout scales to 0', async () => {
    env = await startEnv({ timeScale: 100 });
    const { micPatches } = await scaleDownBetweenAssignAndMicScale(env, { skipProtect: true });
    expect(micPatches).toBeGreaterThanOrEqual(1);
    expect(await identitiesOn(env, 'pay')).not.toContain('checkout-id');
    const mic = (await env.kube.get({ apiVersion: 'apps/v1', kind: 'Deployment' }, 'default', 'mic'))!;
    expect(JSON.stringify(mic.spec)).not.toContain('immutable-user-msis');
  }, 60_000);

  it('with the protect action MIC drops the AzureAssignedIdentities but checkout-id stays on the pay scale set', async () => {
    env = await startEnv({ timeScale: 100 });
    const { micPatches } = await scaleDownBetweenAssignAndMicScale(env, {});
    expect(await identitiesOn(env, 'pay')).toContain('checkout-id');
    // MIC made no scale set change for the scale-down at all.
    expect(micPatches).toBe(0);
    const mic = (await env.kube.get({ apiVersion: 'apps/v1', kind: 'Deployment' }, 'default', 'mic'))!;
    expect(JSON.stringify(mic.spec)).toContain('--immutable-user-msis=');
  }, 60_000);
});
