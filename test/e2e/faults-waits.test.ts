/**
 * Fault matrix, NMI: a 500 on the DaemonSet PATCH (a write is never repeated blindly), and NMI
 * pods that never report Active. The wait says what it waits for
 * and how long it may still take while it runs, the failure names the pods that were not ready
 * and why, the journal keeps the NMI PATCH as done (no intent), and a plain resume once NMI is
 * healthy finishes the step without patching again. (A PodDisruptionBudget that never allows an
 * eviction is covered in steps-5-7-failures.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addFault, expectCleanFailure, expectResume, firedOf, readJournal, removeFault, runMain, startEnv, STEPS_1_4, type Env } from './faults-harness.ts';

describe('the NMI DaemonSet write and NMI readiness', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    const r = await runMain(env, ['apply', '--to', 'assign', '--yes'], { timeoutMs: 150_000 });
    if (r.code !== 0) throw new Error(`setup apply --to assign failed:\n${r.all.slice(-3000)}`);
  }, 200_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('a 500 on the NMI DaemonSet PATCH is not repeated blindly (a write may have been applied): exit 1, the record failed, not intent; resume re-plans', async () => {
    const id = await addFault(env, { api: 'kube', method: 'PATCH', path: '^/apis/apps/v1/namespaces/[^/]+/daemonsets/nmi$', times: 1, action: { kind: 'status', status: 500, message: 'etcdserver: request timed out' } });
    const r = await runMain(env, ['apply', '--nmi-rollout', 'in-place', '--to', 'nmi-managed', '--yes']);
    expect(await firedOf(env, id)).toBe(1);
    await removeFault(env, id);
    expectCleanFailure(env, r, 1, /^Error: step "nmi-managed" apply stopped: PATCH \/apis\/apps\/v1\/namespaces\/\S+\/daemonsets\/nmi: 500 InternalError: etcdserver: request timed out$/m);
    expect(readJournal(env)!.steps['nmi-managed'].actions.map((a) => a.status)).toEqual(['failed']);
    await expectResume(env, 'nmi-managed', STEPS_1_4);
    expect(readJournal(env)!.steps['nmi-managed'].actions.map((a) => a.status)).toEqual(['failed', 'done']);
    // Rolled back so the next case meets the PATCH again.
    const rolled = await runMain(env, ['rollback', '--step', 'nmi-managed', '--yes']);
    expect(rolled.code, rolled.all.slice(-3000)).toBe(0);
  }, 200_000);

  it('the wait announces what it awaits with a countdown, the failure names the pods not Active; resume finishes without a second PATCH', async () => {
    const id = await addFault(env, {
      api: 'kube',
      method: 'GET',
      path: '/pods/nmi-[^/]+:\\d+/proxy/healthz$',
      action: { kind: 'status', status: 503, message: 'NMI is not ready: iptables rules not installed' },
    });
    const r = await runMain(env, ['apply', '--nmi-rollout', 'in-place', '--to', 'nmi-managed', '--yes', '--step-timeout', '25s'], { timeoutMs: 120_000 });
    const fired = await firedOf(env, id);
    await removeFault(env, id);
    expect(fired).toBeGreaterThan(0);
    // The wait ends just before the step deadline with its own error: what was awaited and what was seen.
    expectCleanFailure(env, r, 1, /timed out after \d+(\.\d)? s waiting for every NMI pod of \S+\/nmi reporting Active \(last seen: \d+\/\d+ NMI pods not Active \(\S*nmi-\S+: .*NMI is not ready: iptables rules not installed/);
    // While waiting: what is awaited, the state seen, and the time left.
    expect(r.stderr).toMatch(/waiting: every NMI pod of \S+\/nmi reporting Active \(now: \d+\/\d+ NMI pods not Active \(\S*nmi-\S+: .*\)\); \d+(\.\d)? s left/);
    const journal = readJournal(env)!;
    expect(journal.steps['nmi-managed'].state).toBe('failed');
    // The patch action awaits the rollout it starts: a wait that times out fails the action, and the
    // resume reconciles it from the DaemonSet (the write took effect) instead of patching again.
    expect(journal.steps['nmi-managed'].actions.map((a) => a.status)).toEqual(['failed']);

    const patches = env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'patch', resource: 'daemonsets.apps' });
    await expectResume(env, 'nmi-managed', STEPS_1_4);
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'patch', resource: 'daemonsets.apps' })).toBe(patches);
  }, 300_000);
});
