/** A runner over all seven steps for the steps 5-7 end-to-end tests (same sandbox set-up as steps 1-4). */
import type { AzureGateway } from '../../src/azure/gateway.ts';
import { Runner, type RunnerEvents } from '../../src/engine/runner.ts';
import type { KubeGateway } from '../../src/kube/gateway.ts';
import { EXECUTORS, STEPS } from '../../src/steps/registry.ts';
import type { Env } from './steps-1-4-harness.ts';

/** The runner with the real gateways; evictions retry every 0.5 s instead of kubectl's 5 s, for the fast sandbox clock. */
export function fullRunner(env: Env, options: Record<string, unknown> = {}, events?: RunnerEvents): Runner<KubeGateway, AzureGateway> {
  return new Runner<KubeGateway, AzureGateway>({
    steps: STEPS,
    executors: EXECUTORS,
    kube: env.kube,
    azure: env.azure,
    cluster: env.cluster,
    journalPath: env.journalPath,
    inventoryPath: env.inventoryPath,
    options: { aksId: env.sandbox.aksResourceId, evictionRetryMs: 500, ...options },
    stepTimeoutMs: 120_000,
    events,
  });
}
