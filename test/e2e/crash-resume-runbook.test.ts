/**
 * Crashes met by the documented re-run of the whole runbook (`podid-migrate apply --yes`, not
 * `--to <step>`), through the real CLI killed with SIGKILL, then `force-unlock` and
 * `apply --yes`:
 * - drain killed while the reimage of its second pool (`pay`) is in flight: the re-run must not
 *   stop at "blockers found" because the later `test` step cannot be planned before drain
 *   recorded its fresh nodes; it resumes drain and finishes every step;
 * - cleanup killed right before the DELETE of MIC's ClusterRole reached the server (the
 *   ClusterRoleBindings that lead to it are already gone): the re-run must find the ClusterRole
 *   from the journal, delete it, and leave no action in `intent`;
 * - cleanup killed right after the server deleted MIC's ClusterRoleBinding (the ClusterRole not
 *   yet planned in the journal): the re-run finds the role through the binding's saved copy.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KINDS } from '../../src/kube/kinds.ts';
import { STEP_IDS } from '../../src/engine/step.ts';
import { crashAndResume, startEnv, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';

interface JournalDoc {
  steps: Record<string, { state: string; actions: { actionId: string; status: string; rolledBack?: boolean }[] }>;
}
const readJournal = (env: Env) => JSON.parse(readFileSync(env.journalPath, 'utf8')) as JournalDoc;

function expectAllChecked(env: Env): void {
  const j = readJournal(env);
  expect(STEP_IDS.map((id) => [id, j.steps[id].state])).toEqual(STEP_IDS.map((id) => [id, 'checked']));
  const open = Object.entries(j.steps).flatMap(([id, s]) => s.actions.filter((a) => a.status === 'intent' && !a.rolledBack).map((a) => `${id}/${a.actionId}`));
  expect(open).toEqual([]);
}

describe('SIGKILL, force-unlock, apply --yes: the whole runbook converges', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    await fullRunner(env).apply({ to: 'mic-scale' });
  }, 120_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('a crash during the reimage of pool pay: the re-run resumes drain instead of exiting 4 on the test step\'s plan, and finishes', async () => {
    const { afterKill, resumed } = await crashAndResume(env, 'drain', { api: 'arm', method: 'POST', path: '/virtualMachineScaleSets/aks-pay-[^/]+/reimage$' }, { args: ['apply', '--yes'], timeoutMs: 240_000 });
    // Pools are replaced at once: another pool's replace may be the newest record, pay's is in flight.
    expect(afterKill.filter((a) => a.actionId === 'pool/pay/replace').at(-1)).toEqual({ actionId: 'pool/pay/replace', status: 'intent' });
    expect(resumed.all).not.toMatch(/blockers? found/);
    expect(resumed.code, resumed.all.slice(-3000)).toBe(0);
    expectAllChecked(env);
  }, 400_000);

  it('a crash right before the DELETE of MIC\'s ClusterRole: the re-run finds it from the journal and deletes it; nothing left in intent', async () => {
    await fullRunner(env).rollback({ step: 'cleanup' });
    const role = 'aad-pod-id-mic-role';
    expect(await env.kube.get(KINDS.ClusterRole, undefined, role)).toBeDefined();
    const { afterKill, resumed } = await crashAndResume(env, 'cleanup', { api: 'kube', method: 'DELETE', path: `/clusterroles/${role}$`, action: 'hold-request' }, { args: ['apply', '--yes'] });
    // The rollback's records stay (marked rolled back); this cycle's last record is the unconfirmed delete.
    expect(afterKill.at(-1)).toEqual({ actionId: `delete/clusterrole/${role}`, status: 'intent' });
    expect(resumed.code, resumed.all.slice(-3000)).toBe(0);
    expect(await env.kube.get(KINDS.ClusterRole, undefined, role)).toBeUndefined();
    expect(await env.kube.get(KINDS.ClusterRoleBinding, undefined, 'aad-pod-id-mic-binding')).toBeUndefined();
    expectAllChecked(env);
    const records = readJournal(env).steps.cleanup.actions.filter((a) => a.actionId === `delete/clusterrole/${role}` && !a.rolledBack);
    expect(records.map((r) => r.status)).toEqual(['failed', 'done']);
  }, 300_000);

  it('a crash right after the DELETE of MIC\'s ClusterRoleBinding: the re-run finds the ClusterRole through the binding\'s saved copy and deletes it', async () => {
    await fullRunner(env).rollback({ step: 'cleanup' });
    const role = 'aad-pod-id-mic-role';
    expect(await env.kube.get(KINDS.ClusterRole, undefined, role)).toBeDefined();
    const { afterKill, resumed } = await crashAndResume(env, 'cleanup', { api: 'kube', method: 'DELETE', path: '/clusterrolebindings/aad-pod-id-mic-binding$' }, { args: ['apply', '--yes'] });
    expect(afterKill.at(-1)).toEqual({ actionId: 'delete/clusterrolebinding/aad-pod-id-mic-binding', status: 'intent' });
    expect(resumed.code, resumed.all.slice(-3000)).toBe(0);
    expect(await env.kube.get(KINDS.ClusterRole, undefined, role)).toBeUndefined();
    expectAllChecked(env);
  }, 300_000);
});
