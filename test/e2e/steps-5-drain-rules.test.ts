/**
 * kubectl drain's rules end to end (real CLI, sandbox over HTTPS): a pool whose nodes hold a pod
 * without a controller and a pod with an `emptyDir` volume. `plan` names both pods and the flags
 * that allow them (`--drain-force`, `--delete-emptydir-data`); `apply --step drain` without the
 * flags exits 4 and writes nothing; with both flags the plan has no blocker for that pool.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookPlan } from '../../src/engine/plan.ts';
import type { KubeObject } from '../../src/kube/gateway.ts';
import { runMain, startEnv, waitUntil, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';

const POD = { apiVersion: 'v1', kind: 'Pod' };
const NODE = { apiVersion: 'v1', kind: 'Node' };

function barePod(name: string, node: string, emptyDir: boolean): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'reporting', labels: { app: name } },
    spec: {
      nodeName: node,
      containers: [{ name: 'main', image: 'busybox:1.36', command: ['sleep', '3600'], ...(emptyDir ? { volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }] } : {}) }],
      ...(emptyDir ? { volumes: [{ name: 'scratch', emptyDir: {} }] } : {}),
    },
  } as KubeObject;
}

describe('drain plan and apply follow kubectl drain\'s rules', () => {
  let env: Env;
  let reportsNodes: string[];
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100, churn: false });
    await fullRunner(env).apply({ to: 'mic-scale' });
    const nodes = await env.kube.list(NODE);
    reportsNodes = nodes.map((n) => n.metadata!.name!).filter((n) => n.includes('-reports-')).sort();
    // On every node of the pool, so whichever node the drain picks holds both kinds of pod.
    for (const [i, node] of reportsNodes.entries()) {
      await env.kube.create(barePod(`debug-${i}`, node, false));
      await env.kube.create(barePod(`scratch-${i}`, node, true));
    }
    await waitUntil('the bare pods to run', async () => {
      const pods = await env.kube.list(POD, { namespace: 'reporting' });
      return pods.filter((p) => /^(debug|scratch)-/.test(p.metadata!.name!) && (p.status as { phase?: string }).phase === 'Running').length === 2 * reportsNodes.length;
    });
    env.sandbox.metrics.reset();
  }, 120_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('plan names the bare pod and the emptyDir pod with their flags; apply without them writes nothing', async () => {
    expect(reportsNodes.length).toBeGreaterThanOrEqual(2);
    const planned = await runMain(env, ['plan', '-o', 'json']);
    // The pods that block a drain are blockers: plan exits 4 (nothing can be applied as it is).
    expect(planned.code, planned.all).toBe(4);
    const drain = (JSON.parse(planned.stdout) as RunbookPlan).steps.find((s) => s.stepId === "drain")!.plan!;
    const onReports = drain.blockers.filter((b) => /pool reports/.test(b.subject));
    const byCode = Object.fromEntries(onReports.map((b) => [b.code, b]));
    expect(Object.keys(byCode).sort()).toEqual(['drain-local-storage', 'drain-unreplicated']);
    expect(byCode['drain-local-storage'].message).toMatch(/reporting\/scratch-\d/);
    expect(byCode['drain-local-storage'].message).not.toMatch(/debug-/);
    expect(byCode['drain-local-storage'].fix).toContain('--delete-emptydir-data');
    expect(byCode['drain-unreplicated'].message).toMatch(/reporting\/debug-\d/);
    expect(byCode['drain-unreplicated'].message).toMatch(/reporting\/scratch-\d/);
    expect(byCode['drain-unreplicated'].fix).toContain('--drain-force');
    // No drain is planned for that pool while it is blocked.
    expect(drain.actions.some((a) => a.id.startsWith('pool/reports/'))).toBe(false);

    const applied = await runMain(env, ['apply', '--step', 'drain', '--yes']);
    expect(applied.code, applied.all).toBe(4);
    expect(applied.all).toMatch(/2 blockers found; nothing was changed/);
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', mutating: true, dryRun: false })).toBe(0);
    expect(env.sandbox.metrics.count({ api: 'arm', caller: 'client', mutating: true })).toBe(0);
    for (const n of reportsNodes) expect(((await env.kube.get(NODE, undefined, n))!.spec as { unschedulable?: boolean }).unschedulable).toBeFalsy();
    const pods = await env.kube.list(POD, { namespace: 'reporting' });
    expect(pods.filter((p) => /^(debug|scratch)-/.test(p.metadata!.name!)).length).toBe(2 * reportsNodes.length);

    const allowed = await runMain(env, ['plan', '-o', 'json', '--drain-force', '--delete-emptydir-data']);
    expect(allowed.code, allowed.all).toBe(0);
    const drainAllowed = (JSON.parse(allowed.stdout) as RunbookPlan).steps.find((s) => s.stepId === "drain")!.plan!;
    expect(drainAllowed.blockers.filter((b) => /pool reports/.test(b.subject))).toEqual([]);
    expect(drainAllowed.actions.some((a) => a.id === 'pool/reports/drain')).toBe(true);
  }, 120_000);
});
