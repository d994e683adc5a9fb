/**
 * SIGKILL of `podid-migrate --runbook workload-identity apply --yes` during `wi-federate` and,
 * in the resumed run, during `wi-workloads`, on one sandbox migrated to managed mode first. Each
 * kill comes right after the server applied the write (`hold-response`: a federated credential
 * PUT, then a Deployment template PATCH), so the journal holds only its intent. Each resume is the
 * documented one: the stale lock names `force-unlock <id>`, then the same plain `apply --yes`.
 * Afterwards: every step checked, no identity has two credentials for one subject (nor more
 * than the runbook planned), and every service was rolled out exactly once per template change
 * (its Deployment's revision is 3: the workload identity label, then the binding label removed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Journal } from '../../src/engine/journal.ts';
import { KINDS } from '../../src/kube/kinds.ts';
import { runCli, spawnCli, startEnv, waitUntil, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';
import { scenarioIdentities, wiCliEnv, wiJournalPath } from './wi-harness.ts';

const APPLY = ['--runbook', 'workload-identity', 'apply', '--yes'];

/** Runs the CLI until the sandbox holds the answer to the matching write, then SIGKILLs it. */
async function killAtWrite(cli: Env, env: Env, rule: { api: 'arm' | 'kube'; method: string; path: string; after: number }, args: string[]): Promise<void> {
  const ruleId = env.sandbox.faults.add({ ...rule, times: 1, action: { kind: 'hold-response' } });
  let held = false;
  const onHeld = (e: { ruleId: string }) => {
    if (e.ruleId === ruleId) held = true;
  };
  env.sandbox.faults.on('held', onHeld);
  const child = spawnCli(cli, args, { timeoutMs: 400_000 });
  let exited = false;
  void child.then(() => (exited = true));
  try {
    await waitUntil(`the sandbox to hold ${rule.method} ${rule.path}`, () => {
      if (exited) throw new Error(`the CLI exited before the held write: ${String((child as unknown as { all?: string }).all ?? '')}`);
      return held;
    }, 300_000);
  } finally {
    env.sandbox.faults.off('held', onHeld);
    child.kill('SIGKILL');
    await child;
    env.sandbox.faults.remove(ruleId);
  }
}

/** The documented resume after a kill: the stale lock names its id, `force-unlock` clears it. */
async function unlock(cli: Env): Promise<void> {
  const blocked = await runCli(cli, APPLY, { timeoutMs: 60_000 });
  const lockId = /force-unlock (\S+)/.exec(blocked.all)?.[1];
  if (blocked.code === 0 || !lockId) throw new Error(`a run after SIGKILL should meet the stale lock, got exit ${blocked.code}:\n${blocked.all}`);
  const unlocked = await runCli(cli, ['--runbook', 'workload-identity', 'force-unlock', lockId]);
  if (unlocked.code !== 0) throw new Error(`force-unlock failed:\n${unlocked.all}`);
}

async function statusesOf(env: Env, step: 'wi-federate'): Promise<string[]> {
  const j = (await Journal.read(wiJournalPath(env)))!;
  return j.steps[step].actions.map((a) => a.status);
}

describe('workload identity runbook: SIGKILL during wi-federate and during wi-workloads', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100, churn: false });
    const managed = await fullRunner(env).apply();
    expect(managed.steps.every((s) => s.outcome === 'checked')).toBe(true);
  }, 300_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('resumes with a plain apply --yes: no duplicate credential, no second rollout', async () => {
    const cli = wiCliEnv(env);
    // Killed right after the third federated credential PUT was applied.
    await killAtWrite(cli, env, { api: 'arm', method: 'PUT', path: '/federatedIdentityCredentials/', after: 2 }, APPLY);
    expect(await statusesOf(env, 'wi-federate')).toContain('intent');
    await unlock(cli);
    // The resumed run settles wi-federate and is killed right after the fourth template PATCH of wi-workloads.
    await killAtWrite(cli, env, { api: 'kube', method: 'PATCH', path: '^/apis/apps/v1/namespaces/[^/]+/deployments/[^/]+$', after: 3 }, APPLY);
    const patches = (await Journal.read(wiJournalPath(env)))!.steps['wi-workloads'].actions.filter((a) => a.kind === 'patch-pod-template');
    expect(patches.map((a) => a.status)).toEqual(['done', 'done', 'done', 'intent']);
    await unlock(cli);
    const resumed = await runCli(cli, APPLY, { timeoutMs: 400_000 });
    expect(resumed.code, resumed.all.slice(-4000)).toBe(0);

    const journal = (await Journal.read(wiJournalPath(env)))!;
    for (const id of ['wi-preflight', 'wi-enable', 'wi-federate', 'wi-serviceaccounts', 'wi-workloads', 'wi-test', 'wi-remove-pod-identity'] as const) expect(`${id}: ${journal.steps[id].state}`).toBe(`${id}: checked`);
    // One credential per subject and identity, and no more than the runbook planned.
    const planned = new Set(journal.steps['wi-federate'].actions.map((a) => a.actionId));
    let total = 0;
    for (const i of scenarioIdentities(env)) {
      const creds = await env.azure.listFederatedCredentials(i.id);
      const subjects = creds.map((c) => c.subject);
      expect(new Set(subjects).size, `${i.name}: ${subjects.join(', ')}`).toBe(subjects.length);
      total += creds.length;
    }
    expect(total).toBe(planned.size);
    // Exactly one rollout per template change: revision 1 (created), 2 (workload identity label), 3 (binding label off).
    const services = (await env.kube.list(KINDS.Deployment)).filter((d) => ['payments', 'batch', 'reporting', 'platform'].includes(d.metadata?.namespace ?? ''));
    expect(services).toHaveLength(12);
    for (const d of services) expect(`${d.metadata?.namespace}/${d.metadata?.name} revision ${d.metadata?.annotations?.['deployment.kubernetes.io/revision']}`).toBe(`${d.metadata?.namespace}/${d.metadata?.name} revision 3`);
    // The interrupted patch's action: one intent settled as done by reconcile, never a second write.
    const killed = journal.steps['wi-workloads'].actions.filter((a) => a.kind === 'patch-pod-template')[3];
    expect(journal.steps['wi-workloads'].actions.filter((a) => a.actionId === killed.actionId).map((a) => a.status)).toEqual(['done']);
  }, 900_000);
});
