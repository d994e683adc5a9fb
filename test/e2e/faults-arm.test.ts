/**
 * Fault matrix, Azure Resource Manager side: the real CLI against the sandbox with ARM fault
 * rules. Each case asserts the message and exit code, a journal with no action left in
 * `intent`, and a plain `apply --yes` that succeeds once the fault is gone. The cases share one
 * sandbox and walk the runbook forward: each resume takes the migration one step further.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { addFault, expectCleanFailure, expectResume, firedOf, readJournal, removeFault, runCli, runMain, startEnv, STEPS_1_4, type Env } from './faults-harness.ts';

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const VMSS_LIST = '/providers/Microsoft\\.Compute/virtualMachineScaleSets$';
const VMSS_ONE = '/providers/Microsoft\\.Compute/virtualMachineScaleSets/[^/]+$';

/** Undoes assign so the next case meets its VMSS PATCH again. */
async function rollbackAssign(env: Env): Promise<void> {
  const r = await runMain(env, ['rollback', '--step', 'assign', '--yes'], { timeoutMs: 150_000 });
  expect(r.code, r.all.slice(-3000)).toBe(0);
}

describe('ARM faults against the real CLI', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 25 });
  }, 90_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('a refused ARM token (401) and an unreachable ARM endpoint get their own errors with the fix, within seconds; exit 1, nothing written', async () => {
    const tokenFile = join(env.dir, 'expired-arm-token');
    writeFileSync(tokenFile, 'expired-token\n', { mode: 0o600 });
    const refused = await runMain({ ...env, cliEnv: { ...env.cliEnv, PODID_MIGRATE_ARM_TOKEN_FILE: tokenFile } }, ['apply', '--to', 'inventory', '--yes']);
    expectCleanFailure(env, refused, 1, /^Error: Azure Resource Manager at https:\/\/127\.0\.0\.1:\d+ refused the credential \(401 /m);
    expect(refused.stderr).toContain('az login');
    expect(refused.all).not.toContain('expired-token');

    const port = await closedPort();
    const t0 = Date.now();
    // A child process: the figure includes the CLI's start, as an operator meets it.
    const gone = await runCli({ ...env, cliEnv: { ...env.cliEnv, PODID_MIGRATE_ARM_ENDPOINT: `https://127.0.0.1:${port}` } }, ['apply', '--to', 'inventory', '--yes']);
    const seconds = (Date.now() - t0) / 1000;
    expectCleanFailure(env, gone, 1, new RegExp(`^Error: Azure Resource Manager at https://127\\.0\\.0\\.1:${port} refuses connections: GET managed cluster`, 'm'));
    expect(seconds).toBeLessThan(20);
    expect(readJournal(env)?.steps.inventory.actions ?? []).toEqual([]);
    console.log(`figures: unreachable ARM endpoint reported after ${seconds.toFixed(1)} s (CLI start included)`);
  }, 120_000);

  it('ARM 500 on every VMSS list: the step deadline ends the retries naming the last failure; exit 1, nothing recorded; resume', async () => {
    const id = await addFault(env, { api: 'arm', method: 'GET', path: VMSS_LIST, action: { kind: 'status', status: 500 } });
    const r = await runMain(env, ['apply', '--to', 'inventory', '--yes', '--step-timeout', '8s']);
    expect(await firedOf(env, id)).toBeGreaterThan(1);
    await removeFault(env, id);
    expectCleanFailure(env, r, 1, /giving up, the next retry would wait .* but the deadline is .* \(last failure: HTTP 500 InternalServerError\)/);
    await expectResume(env, 'inventory', STEPS_1_4);
  }, 200_000);

  it('ARM 429 without Retry-After on every VMSS PATCH: backoff until the step deadline, named; the record is failed, not intent; resume', async () => {
    const id = await addFault(env, { api: 'arm', method: 'PATCH', path: VMSS_ONE, action: { kind: 'status', status: 429 } });
    const r = await runMain(env, ['apply', '--to', 'assign', '--yes', '--step-timeout', '12s']);
    const fired = await firedOf(env, id);
    await removeFault(env, id);
    expect(fired).toBeGreaterThan(2);
    expectCleanFailure(env, r, 1, /PATCH Microsoft\.Compute\/virtualMachineScaleSets: giving up, the next retry would wait .* \(last failure: HTTP 429 TooManyRequests\)/);
    await expectResume(env, 'assign', STEPS_1_4);
    await rollbackAssign(env);
  }, 300_000);

  it('an absurd Retry-After is capped: a wait that cannot fit the deadline fails at once naming the cap; one that fits is announced and waited', async () => {
    const absurd = await addFault(env, { api: 'arm', method: 'PATCH', path: VMSS_ONE, action: { kind: 'status', status: 429, retryAfterSeconds: 86_400 } });
    const r = await runMain(env, ['apply', '--to', 'assign', '--yes', '--step-timeout', '40s']);
    await removeFault(env, absurd);
    expectCleanFailure(env, r, 1, /PATCH Microsoft\.Compute\/virtualMachineScaleSets: giving up, the next retry would wait 60 s but the deadline is in \d+(\.\d)? s \(last failure: HTTP 429 TooManyRequests\)/);

    const fits = await addFault(env, { api: 'arm', method: 'PATCH', path: VMSS_ONE, times: 1, action: { kind: 'status', status: 429, retryAfterSeconds: 4 } });
    const ok = await expectResume(env, 'assign', STEPS_1_4);
    expect(await firedOf(env, fits)).toBe(1);
    await removeFault(env, fits);
    expect(ok.stderr).toMatch(/waiting: PATCH Microsoft\.Compute\/virtualMachineScaleSets: HTTP 429 TooManyRequests; retrying in 4 s \(ARM asked for Retry-After 4 s\)/);
    await rollbackAssign(env);
  }, 300_000);

  it('ARM 403 AuthorizationFailed names the refused action and scope and how to check; exit 1; resume', async () => {
    const id = await addFault(env, {
      api: 'arm',
      method: 'PATCH',
      path: VMSS_ONE,
      action: {
        kind: 'status',
        status: 403,
        code: 'AuthorizationFailed',
        message: "The client 'ops@contoso.com' with object id '0000' does not have authorization to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' over scope '/subscriptions/x/resourceGroups/MC_rg/providers/Microsoft.Compute/virtualMachineScaleSets/y' or the scope is invalid.",
      },
    });
    const r = await runMain(env, ['apply', '--to', 'assign', '--yes']);
    await removeFault(env, id);
    expectCleanFailure(env, r, 1, /^Error: Azure refused PATCH vmss \S+ \(403 AuthorizationFailed\): The client/m);
    expect(r.stderr).toContain('The signed-in identity lacks `Microsoft.Compute/virtualMachineScaleSets/write` on /subscriptions/x/resourceGroups/MC_rg/');
    expect(r.stderr).toContain('az role assignment list');
    await expectResume(env, 'assign', STEPS_1_4);
    await rollbackAssign(env);
  }, 300_000);

  it('an ARM answer slower than the step deadline stops the step at its deadline; exit 1; resume converges', async () => {
    // Twice the deadline: the answer cannot come before the step gives up.
    const id = await addFault(env, { api: 'arm', method: 'PATCH', path: VMSS_ONE, times: 1, action: { kind: 'latency', ms: 20_000 } });
    const r = await runMain(env, ['apply', '--to', 'assign', '--yes', '--step-timeout', '10s']);
    expectCleanFailure(env, r, 1, /step "assign" apply exceeded its deadline of 0m10s\./);
    await removeFault(env, id);
    await expectResume(env, 'assign', STEPS_1_4);
    await rollbackAssign(env);
  }, 300_000);

  it('an LRO that ends Failed names the operation error code and message; exit 1; the resume patches again and succeeds', async () => {
    const id = await addFault(env, { api: 'arm', method: 'PATCH', path: VMSS_ONE, times: 1, action: { kind: 'lro-fail', code: 'InternalOperationError', message: 'An internal execution error occurred. Please retry later.' } });
    const r = await runMain(env, ['apply', '--to', 'assign', '--yes']);
    await removeFault(env, id);
    expectCleanFailure(env, r, 1, /PATCH vmss \S+: the long-running operation ended Failed: InternalOperationError: An internal execution error occurred\. Please retry later\./);
    expect(r.stderr).not.toMatch(/\b200 InternalOperationError/);
    await expectResume(env, 'assign', STEPS_1_4);
  }, 300_000);
});
