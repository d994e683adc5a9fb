/**
 * The README's Kubernetes permission list is exact, proven on the sandbox: `plan` under the
 * `readonly` context exits 4 naming every write permission the planned steps lack; under
 * `operator` (which holds exactly the README list) it exits 2, and a full apply of all seven
 * steps succeeds with no request ever denied.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKubeGateway } from '../../src/kube/index.ts';
import { STEPS } from '../../src/steps/registry.ts';
import { STEP_PERMISSIONS } from '../../src/steps/lib/permission-preflight.ts';
import { runMain, startEnv, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';

describe('Kubernetes permissions: readonly is blocked, operator runs the whole migration', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
  }, 90_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('plan --context readonly exits 4 and names each missing permission with its step', async () => {
    const r = await runMain(env, ['plan', '--context', 'readonly', '--detailed-exitcode']);
    expect(r.code, r.all).toBe(4);
    // Steps test and cleanup are planned only once drain has run; the others are checked now.
    for (const step of ['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain']) {
      const writes = STEP_PERMISSIONS[step].filter((p) => !['get', 'list', 'watch'].includes(p.verb));
      expect(writes.length).toBeGreaterThan(0);
      for (const p of writes) {
        const [resource, sub] = p.resource.split('/');
        const qualified = `${resource}${p.group ? `.${p.group}` : ''}${sub ? `/${sub}` : ''}`;
        expect(r.stdout, `${step}: ${p.verb} ${qualified}`).toMatch(new RegExp(`\\[${step}\\] ${p.verb} ${qualified.replace(/[./]/g, '\\$&')} (namespace default|\\(cluster\\)|\\(all namespaces\\))`));
      }
    }
    expect(r.stdout).not.toMatch(/\] (get|list|watch) /);
  }, 60_000);

  it('plan --context operator has no blocker (exit 2: changes pending)', async () => {
    const r = await runMain(env, ['plan', '--context', 'operator', '--detailed-exitcode']);
    expect(r.code, r.all).toBe(2);
    expect(r.stdout).not.toContain('kube-permission-missing');
    expect(r.stdout).not.toContain('Blockers');
  }, 60_000);

  it('a full apply as operator succeeds without a single 403', async () => {
    env.sandbox.metrics.reset();
    const operator = createKubeGateway({ kubeconfig: env.kubeconfig, context: 'operator', rateLimit: { qps: 200, burst: 400 } });
    const result = await fullRunner({ ...env, kube: operator }).apply();
    expect(result.steps.map((s) => [s.stepId, s.outcome])).toEqual(STEPS.map((s) => [s.id, 'checked']));
    const denied = Object.entries(env.sandbox.metrics.snapshot().kube).filter(([label]) => / 403( |$)/.test(label));
    expect(denied).toEqual([]);
  }, 240_000);

  it('rollback --all as operator re-creates what cleanup removed (escalate/bind let it pass the escalation check)', async () => {
    env.sandbox.metrics.reset();
    const operator = createKubeGateway({ kubeconfig: env.kubeconfig, context: 'operator', rateLimit: { qps: 200, burst: 400 } });
    await fullRunner({ ...env, kube: operator }).rollback({ all: true });
    expect(await env.kube.get({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding' }, undefined, 'aad-pod-id-mic-binding')).toBeDefined();
    expect(await env.kube.get({ apiVersion: 'apps/v1', kind: 'Deployment' }, 'default', 'mic')).toBeDefined();
    const denied = Object.entries(env.sandbox.metrics.snapshot().kube).filter(([label]) => / 403( |$)/.test(label));
    expect(denied).toEqual([]);
  }, 240_000);
});
