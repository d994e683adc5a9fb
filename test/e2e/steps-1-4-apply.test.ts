/**
 * Steps 1-4 against the sandbox's default scenario with batch churn, through the runner with
 * the real gateways over HTTPS: `apply --to mic-scale` (outage windows, upstream managed args,
 * the ARM and Kubernetes call figures), then `rollback --all` to the starting state.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { outageViolations, scaleSetsToGrow, startEnv, stateDump, upstreamManagedArgs, type Env } from './steps-1-4-harness.ts';

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

  it('apply --to mic-scale completes with no token failure outside NMI restart windows; one ARM PATCH per scale set that grows, no pod GET', async () => {
    let micRestartFrom: number | undefined;
    let micLeaderBy: number | undefined;
    // The in-place NMI rollout (the drain rollout has no NMI restart window by design; the
    // rollback and crash tests of nmi-managed run the default drain rollout).
    const result = await env
      .runner(
        { nmiRollout: 'in-place' },
        {
          stepProgress: (step, message) => {
            if (step === 'assign' && message.startsWith('waiting for MIC')) micRestartFrom ??= env.simNow();
          },
          stepStart: (step, _title, phase) => {
            if (step === 'assign' && phase === 'check') micLeaderBy ??= env.simNow();
          },
        },
      )
      .apply({ to: 'mic-scale' });
    expect(result.steps.map((s) => [s.stepId, s.outcome])).toEqual([
      ['inventory', 'checked'],
      ['assign', 'checked'],
      ['nmi-managed', 'checked'],
      ['mic-scale', 'checked'],
    ]);

    const { latency } = env.sandbox.scenario;
    const report = env.sandbox.meter.report();
    const graceMs = (latency.micAssignmentSeconds + 5) * 1000;
    const violations = outageViolations(report, {
      nmiLimit: 10 + latency.nmiStartupSeconds + 3,
      // Pods started from a little before the MIC patch until the new leader served.
      micWindow: micRestartFrom !== undefined && micLeaderBy !== undefined ? { from: micRestartFrom - 2000, to: micLeaderBy + graceMs + latency.micAssignmentSeconds * 1000 + 2000 } : undefined,
      micWaitLimit: 9,
    });
    expect(violations, `outage windows:\n${report.windows.map((w) => `  ${w.start} +${w.seconds}s ${w.pod} ${w.cause}`).join('\n')}`).toEqual([]);
    // The NMI rollout really happened node by node: restart windows were measured.
    expect(report.windows.some((w) => w.cause.startsWith('nmi-restart:'))).toBe(true);

    // NMI args now equal the upstream managed-mode manifest's, in the same DaemonSet.
    const ds = (await env.kube.get({ apiVersion: 'apps/v1', kind: 'DaemonSet' }, 'default', 'nmi'))!;
    expect((ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args).toEqual(upstreamManagedArgs());

    // Figure 1: ARM writes = exactly one VirtualMachineScaleSets_Update PATCH per scale set whose
    // identity set the inventory says must grow (default scenario: 1, the pool reporting/exporter
    // may move to but does not run on, so MIC never assigned exporter-id there).
    const toGrow = scaleSetsToGrow(env.inventoryPath);
    expect(toGrow.length).toBeGreaterThanOrEqual(1);
    const armPatches = env.sandbox.metrics.count({ api: 'arm', caller: 'client', verb: 'PATCH', resource: 'VirtualMachineScaleSets_Update' });
    expect(armPatches).toBe(toGrow.length);
    expect(env.sandbox.metrics.count({ api: 'arm', caller: 'client', mutating: true })).toBe(toGrow.length);
    // Figure 2: Kubernetes reads of pods are list calls: 0 per-pod GETs.
    const podGets = env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'get', resource: 'pods' });
    expect(podGets).toBe(0);
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'list', resource: 'pods' })).toBeGreaterThan(0);
    console.log(
      `figures: ${armPatches} ARM PATCH for ${toGrow.length} scale set(s) to grow (${toGrow.join(', ')}); ${podGets} pod GETs; ` +
        `outage windows ${report.windows.length} (${report.windows.filter((w) => !w.cause.startsWith('nmi-restart:')).length} MIC hand-over), failing pod-seconds ${report.failingPodSeconds}`,
    );
  }, 120_000);

  it('rollback --all returns the cluster and the VMSS identities to the starting state', async () => {
    await env.runner().rollback({ all: true });
    expect(await stateDump(env)).toEqual(before);
  }, 120_000);
});
