/**
 * Fault matrix, concurrent writers: while the CLI writes NMI's args or MIC's replica count,
 * someone else (Helm, a GitOps controller, an autoscaler, a person) changes the same field and
 * the API server answers the CLI's write with 409 Conflict. The step must not write over the
 * other change: it re-reads, sees the field is no longer what the write was planned on, and
 * stops with the diff (exit 1, the action recorded failed, no intent left). A plain re-run
 * re-plans from the new live state and finishes.
 *
 * The other writer acts inside the sandbox the moment the 409 rule fires (before the answer
 * leaves), so the re-read always sees it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KINDS } from '../../src/kube/kinds.ts';
import { addFault, expectCleanFailure, expectResume, readJournal, removeFault, runMain, startEnv, STEPS_1_4, type Env } from './faults-harness.ts';

const CONFLICT = { kind: 'status' as const, status: 409, message: 'Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again' };

/** Runs `change` on the sandbox's stored object the moment rule `ruleId` fires. */
function onFired(env: Env, ruleId: () => string | undefined, change: () => void): () => void {
  const listener = (e: { ruleId: string }) => {
    if (e.ruleId === ruleId()) change();
  };
  env.sandbox.faults.on('fired', listener);
  return () => env.sandbox.faults.off('fired', listener);
}

function mutateStored(env: Env, apiVersion: string, kind: string, namespace: string, name: string, fn: (o: Record<string, any>) => void): void {
  const type = env.sandbox.store.typeForKind(apiVersion, kind)!;
  env.sandbox.store.mutate(type, namespace, name, (o) => {
    fn(o as Record<string, any>);
  });
}

describe('a concurrent change to what a step writes stops the step with the diff', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    await env.runner().apply({ to: 'assign' });
  }, 120_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('nmi-managed: someone adds an NMI flag while the PATCH meets 409; the step stops naming the args it planned on and the ones now there', async () => {
    const ds = (await env.kube.get(KINDS.DaemonSet, 'default', 'nmi'))!;
    const before = (ds.spec as any).template.spec.containers[0].args as string[];
    const theirs = [...before, '--log-level=5'];
    let id: string | undefined;
    const stop = onFired(env, () => id, () => mutateStored(env, 'apps/v1', 'DaemonSet', 'default', 'nmi', (o) => (o.spec.template.spec.containers[0].args = [...theirs])));
    try {
      id = await addFault(env, { api: 'kube', method: 'PATCH', path: '^/apis/apps/v1/namespaces/default/daemonsets/nmi$', times: 1, action: CONFLICT });
      const r = await runMain(env, ['apply', '--nmi-rollout', 'in-place', '--to', 'nmi-managed', '--yes']);
      await removeFault(env, id);
      expectCleanFailure(env, r, 1, /changed/i);
      expect(r.stderr).toContain(`/spec/template/spec/containers/0/args: planned ${JSON.stringify(before)}, now ${JSON.stringify(theirs)}`);
      // Their change is still there: nothing was written over it.
      const now = (await env.kube.get(KINDS.DaemonSet, 'default', 'nmi'))!;
      expect((now.spec as any).template.spec.containers[0].args).toEqual(theirs);
      expect(readJournal(env)!.steps['nmi-managed'].actions.map((a) => a.status)).toEqual(['failed']);
    } finally {
      stop();
    }
    // The re-run plans from the args now there and keeps the other writer's flag.
    await expectResume(env, 'nmi-managed', STEPS_1_4);
    const done = (await env.kube.get(KINDS.DaemonSet, 'default', 'nmi'))!;
    const args = (done.spec as any).template.spec.containers[0].args as string[];
    expect(args).toContain('--log-level=5');
    expect(args.some((a) => a.includes('managed'))).toBe(true);
  }, 300_000);

  it('mic-scale: someone scales MIC while the scale PATCH meets 409; the step stops naming the replica count it planned on and the one now there', async () => {
    const mic = (await env.kube.get(KINDS.Deployment, 'default', 'mic'))!;
    const planned = (mic.spec as { replicas: number }).replicas;
    let id: string | undefined;
    const stop = onFired(env, () => id, () => mutateStored(env, 'apps/v1', 'Deployment', 'default', 'mic', (o) => (o.spec.replicas = planned + 1)));
    try {
      id = await addFault(env, { api: 'kube', method: 'PATCH', path: '^/apis/apps/v1/namespaces/default/deployments/mic/scale$', times: 1, action: CONFLICT });
      const r = await runMain(env, ['apply', '--nmi-rollout', 'in-place', '--to', 'mic-scale', '--yes']);
      await removeFault(env, id);
      expectCleanFailure(env, r, 1, /changed/i);
      expect(r.stderr).toContain(`/spec/replicas: planned ${planned}, now ${planned + 1}`);
      expect(((await env.kube.get(KINDS.Deployment, 'default', 'mic'))!.spec as { replicas: number }).replicas).toBe(planned + 1);
      expect(readJournal(env)!.steps['mic-scale'].actions.map((a) => a.status)).toEqual(['failed']);
    } finally {
      stop();
    }
    await expectResume(env, 'mic-scale', STEPS_1_4);
    expect(((await env.kube.get(KINDS.Deployment, 'default', 'mic'))!.spec as { replicas: number }).replicas).toBe(0);
  }, 300_000);
});
