/**
 * Steps 1-4 against the sandbox's default scenario with batch churn, through the runner with
 * the real gateways over HTTPS: `apply --to mic-scale`, then `rollback --all`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/kube/gateway.ts';
import { startEnv, stateDump, type Env } from './steps-1-4-harness.ts';

const UPSTREAM_MANAGED = '/work/shared/fixtures/aad-pod-identity/upstream/deploy/infra/managed-mode-deployment.yaml';
const MANAGED_COPY = join(import.meta.dirname, '..', '..', 'src', 'sandbox', 'manifests', 'managed-v1.8.17.yaml');

function upstreamManagedArgs(): string[] {
  let text: string;
  try {
    text = readFileSync(UPSTREAM_MANAGED, 'utf8');
  } catch {
    text = readFileSync(MANAGED_COPY, 'utf8');
  }
  const ds = parseAllDocuments(text).map((d) => d.toJS() as KubeObject).find((d) => d?.kind === 'DaemonSet')!;
  return (ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args;
}

describe('steps 1-4 on the default scenario with churn', () => {
  let env: Env;
  let before: Record<string, unknown>;

  beforeAll(async () => {
    env = await startEnv({ timeScale: 25 });
    before = await stateDump(env);
    env.sandbox.metrics.reset();
    env.sandbox.meter.reset();
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('apply --to mic-scale completes with no token failure outside NMI restart windows', async () => {
    const result = await env.runner().apply({ to: 'mic-scale' });
    expect(result.steps.map((s) => [s.stepId, s.outcome])).toEqual([
      ['inventory', 'checked'],
      ['assign', 'checked'],
      ['nmi-managed', 'checked'],
      ['mic-scale', 'checked'],
    ]);
    const report = env.sandbox.meter.report();
    const limit = 10 + env.sandbox.scenario.latency.nmiStartupSeconds;
    const outside = report.windows.filter((w) => !w.cause.startsWith('nmi-restart'));
    expect(outside).toEqual([]);
    for (const w of report.windows) expect(w.seconds, `${w.pod} on ${w.node}: ${w.cause}`).toBeLessThanOrEqual(limit);

    // NMI args now equal the upstream managed-mode manifest's, in the same DaemonSet.
    const ds = (await env.kube.get({ apiVersion: 'apps/v1', kind: 'DaemonSet' }, 'default', 'nmi'))!;
    expect((ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args).toEqual(upstreamManagedArgs());

    // The figures: ARM writes are one PATCH per scale set that needed a change; Kubernetes reads are lists.
    const assignActions = result.journal.steps.assign.actions.filter((a) => a.api === 'arm' && a.status === 'done').length;
    const armPatches = env.sandbox.metrics.count({ api: 'arm', caller: 'client', verb: 'PATCH' });
    expect(armPatches).toBe(assignActions);
    const podGets = env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'get', resource: 'pods' });
    expect(podGets).toBe(0);
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'list', resource: 'pods' })).toBeGreaterThan(0);
    console.log(`figures: ${armPatches} ARM PATCH for ${assignActions} scale set(s) needing a change; ${podGets} pod GETs; outage windows ${report.windows.length}, failing pod-seconds ${report.failingPodSeconds}`);
  }, 120_000);

  it('rollback --all returns the cluster and the VMSS identities to the starting state', async () => {
    await env.runner().rollback({ all: true });
    expect(await stateDump(env)).toEqual(before);
  }, 120_000);
});
