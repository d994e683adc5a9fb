/**
 * Day two end to end: a full migration of the default scenario (with churn) through the runner
 * and the real gateways, then the CLI (`main()` in-process with the production runtime and the env
 * of `source <dir>/env`; a child process where it is killed) against what AKS does afterwards,
 * each done through `sandbox aks …`:
 * for each of {new pool, identity removed by an upgrade, identity re-created, NMI reverted by a
 * reinstall, MIC back}, `drift` exits 3 naming the object and the fix, `drift --fix --yes`
 * repairs what it can, and `drift` then exits 0 (or keeps reporting the manual fix). One
 * migrated sandbox is shared by the cases, in order; the last one rolls the fixes back.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DriftReport } from '../../src/drift/model.ts';
import { KINDS } from '../../src/kube/kinds.ts';
import { STEPS } from '../../src/steps/registry.ts';
import { runMain, spawnCli, startEnv, waitUntil, type Env } from './steps-1-4-harness.ts';
import { fullRunner } from './steps-5-7-harness.ts';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;
const ajv = addFormats(new Ajv({ allErrors: true, strict: false }));
const schema = (name: string) => JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'schemas', name), 'utf8'));
const validateReport = ajv.compile(schema('drift.schema.json'));
const validateRollback = ajv.compile(schema('drift-rollback.schema.json'));

async function drift(env: Env, args: string[] = []): Promise<{ code: number; report: DriftReport; all: string }> {
  const r = await runMain(env, ['drift', ...args, '-o', 'json'], { timeoutMs: 180_000 });
  let report: DriftReport;
  try {
    report = JSON.parse(r.stdout) as DriftReport;
  } catch {
    throw new Error(`drift ${args.join(' ')} printed no JSON (exit ${r.code}):\n${r.all}`);
  }
  if (!validateReport(report)) throw new Error(`drift -o json does not match schemas/drift.schema.json: ${JSON.stringify(validateReport.errors)}`);
  return { code: r.code, report, all: r.all };
}

async function sandboxAks(env: Env, args: string[]): Promise<void> {
  const r = await runMain(env, ['sandbox', 'aks', ...args, '--dir', join(env.dir, 'sandbox')], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`sandbox aks ${args.join(' ')} failed:\n${r.all}`);
}

const codes = (r: DriftReport) => r.findings.filter((f) => f.severity === 'drift').map((f) => f.code).sort();
const driftOnly = (r: DriftReport) => r.findings.filter((f) => f.severity === 'drift').map((f) => `${f.code} ${f.subject}: ${f.message}`);

async function vmssIdentities(env: Env, name: string): Promise<string[]> {
  const set = await env.azure.getScaleSet(env.sandbox.scenario.cluster.nodeResourceGroup, name);
  return Object.keys(set?.userAssignedIdentities ?? {}).map((id) => id.split('/').pop()!).sort();
}

describe('drift after a full migration', () => {
  let env: Env;
  let kubelet: string;
  let stepsAfterMigration: string;

  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
    const result = await fullRunner(env).apply();
    expect(result.steps.map((s) => [s.stepId, s.outcome])).toEqual(STEPS.map((s) => [s.id, 'checked']));
    kubelet = `${env.sandbox.scenario.cluster.name}-agentpool`;
    stepsAfterMigration = JSON.stringify(JSON.parse(readFileSync(env.journalPath, 'utf8')).steps);
  }, 300_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('right after the migration there is no drift (exit 0), in a few calls', async () => {
    const r = await drift(env);
    expect(driftOnly(r.report), r.all).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.report.kind).toBe('DriftReport');
    expect(r.report.context.journal).toMatch(/^migration complete/);
    // One list of scale sets, the cluster, one list of identities per resource group.
    expect(r.report.calls.arm.total).toBeLessThanOrEqual(4);
    const md = await runMain(env, ['drift', '-o', 'markdown']);
    expect(md.code).toBe(0);
    expect(md.stdout).toContain('**No drift');
  }, 120_000);

  it('a new pool where identity pods may be scheduled: named with its fix; --fix --update-inventory repairs it and keeps the operator edits', async () => {
    // The operator's own edits to the inventory: a comment and a test case.
    const edited = readFileSync(env.inventoryPath, 'utf8').replace('identities:\n', '# reviewed by the platform team\nidentities:\n').replace(/(- name: reporting\/exporter\n(?:.*\n)*?\s+testCases:\n)/, '$1          - kind: nmi-health\n');
    expect(edited).toContain('- kind: nmi-health');
    writeFileSync(env.inventoryPath, edited);
    await sandboxAks(env, ['add-pool', 'gpu', '--count', '1']);
    await env.kube.patch(KINDS.Deployment, 'reporting', 'exporter', [{ op: 'add', path: '/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/values/-', value: 'gpu' }], 'json');
    const r = await drift(env);
    expect(r.code, r.all).toBe(3);
    const f = r.report.findings.find((x) => x.code === 'new-pool-missing-identities');
    expect(f?.subject).toBe('pool gpu (new since the inventory)');
    expect(f?.message).toContain('exporter-id');
    expect(f?.fix).toMatch(/^podid-migrate drift --fix --update-inventory/);

    const fixed = await drift(env, ['--fix', '--update-inventory', '--yes']);
    expect(fixed.report.totals.drift, fixed.all).toBe(0);
    expect(fixed.code).toBe(0);
    expect(await vmssIdentities(env, 'aks-gpu-12345678-vmss')).toEqual(['exporter-id', kubelet].sort());
    const inv = readFileSync(env.inventoryPath, 'utf8');
    expect(inv).toContain('# reviewed by the platform team');
    expect(inv).toContain('kind: nmi-health');
    expect(inv).toMatch(/- name: gpu\n/);
    expect((await drift(env)).code).toBe(0);
  }, 180_000);

  it('an AKS upgrade that rewrites the scale set identities: missing identities named, --fix puts them back with one PATCH, the kubelet identity kept', async () => {
    await sandboxAks(env, ['upgrade-pool', 'batch', '--rewrite-identities']);
    expect(await vmssIdentities(env, 'aks-batch-12345678-vmss')).toEqual([kubelet]);
    const r = await drift(env);
    expect(r.code, r.all).toBe(3);
    const f = r.report.findings.find((x) => x.code === 'identity-missing-on-vmss');
    expect(f?.subject).toBe('vmss aks-batch-12345678-vmss');
    expect(f?.message).toMatch(/worker-id/);
    expect(f?.fix).toMatch(/^podid-migrate drift --fix {3}\(1 PATCH: /);
    const patchesBefore = env.sandbox.metrics.count({ api: 'arm', caller: 'client', verb: 'PATCH' });
    const fixed = await drift(env, ['--fix', '--yes']);
    expect(fixed.code, fixed.all).toBe(0);
    expect(env.sandbox.metrics.count({ api: 'arm', caller: 'client', verb: 'PATCH' }) - patchesBefore).toBe(1);
    expect(await vmssIdentities(env, 'aks-batch-12345678-vmss')).toEqual(expect.arrayContaining([kubelet, 'worker-id', 'shared-storage-id']));
  }, 180_000);

  it('an identity deleted and re-created with a new client id: the stale scale set entry and AzureIdentity named with the manual fix; not auto-fixed', async () => {
    await sandboxAks(env, ['recreate-identity', 'api-id']);
    const r = await drift(env);
    expect(r.code, r.all).toBe(3);
    expect(codes(r.report)).toEqual(['azureidentity-client-id-mismatch', 'stale-vmss-identity']);
    const stale = r.report.findings.find((x) => x.code === 'stale-vmss-identity')!;
    expect(stale.subject).toBe('vmss aks-pay-12345678-vmss');
    expect(stale.fix).toContain('az vmss identity remove');
    expect(r.report.findings.find((x) => x.code === 'azureidentity-client-id-mismatch')?.subject).toBe('azureidentity payments/api-id');
    const fixed = await drift(env, ['--fix', '--yes']);
    expect(fixed.code).toBe(3);
    expect(fixed.all).toContain('Nothing to repair automatically');
    // The manual fix, as the findings say it.
    const id = env.sandbox.arm.identity('api-id')!;
    const rg = env.sandbox.scenario.cluster.nodeResourceGroup;
    await env.azure.unassignIdentities(rg, 'aks-pay-12345678-vmss', [id.id]);
    await env.azure.assignIdentities(rg, 'aks-pay-12345678-vmss', [id.id]);
    await env.kube.patch(KINDS.AzureIdentity, 'payments', 'api-id', { spec: { clientID: id.clientId } }, 'merge');
    const after = await drift(env);
    expect(driftOnly(after.report)).toEqual([]);
    expect(after.code).toBe(0);
  }, 180_000);

  it('NMI reverted to standard mode by a Helm-style reinstall: named with the fix; --fix re-patches it to managed mode', async () => {
    await sandboxAks(env, ['reinstall-standard', '--no-mic']);
    const r = await drift(env);
    expect(r.code, r.all).toBe(3);
    const f = r.report.findings.find((x) => x.code === 'nmi-not-managed');
    expect(f?.subject).toBe('daemonset default/nmi');
    expect(f?.fix).toContain('+ --operation-mode=managed');
    const fixed = await drift(env, ['--fix', '--yes']);
    expect(driftOnly(fixed.report), fixed.all).toEqual([]);
    expect(fixed.code).toBe(0);
  }, 240_000);

  it('MIC back from a reinstall: --fix scales it to 0; the AzureAssignedIdentities it made are reported with their manual fix until removed', async () => {
    await sandboxAks(env, ['reinstall-standard', '--no-nmi']);
    const r = await drift(env);
    expect(r.code, r.all).toBe(3);
    const f = r.report.findings.find((x) => x.code === 'mic-running');
    expect(f?.subject).toBe('deployment default/mic');
    expect(f?.fix).toContain('replicas: 2 -> 0');
    const fixed = await drift(env, ['--fix', '--yes']);
    expect((await env.kube.get(KINDS.Deployment, 'default', 'mic'))?.spec).toMatchObject({ replicas: 0 });
    expect(fixed.report.findings.find((x) => x.code === 'mic-present')?.severity).toBe('notice');
    for (const left of fixed.report.findings.filter((x) => x.severity === 'drift')) expect(['assigned-identities-present', 'identity-missing-on-vmss'], left.message).toContain(left.code);
    // The manual part: clear MIC's leftovers as the finding says; then fix what MIC's garbage collection may have removed.
    for (const a of await env.kube.list(KINDS.AzureAssignedIdentity)) {
      await env.kube.patch(KINDS.AzureAssignedIdentity, a.metadata!.namespace, a.metadata!.name!, { metadata: { finalizers: null } }, 'merge');
      await env.kube.delete(KINDS.AzureAssignedIdentity, a.metadata!.namespace, a.metadata!.name!);
    }
    const again = await drift(env, ['--fix', '--yes']);
    expect(driftOnly(again.report), again.all).toEqual([]);
    expect((await drift(env)).code).toBe(0);
  }, 240_000);

  it('the migration steps\' records are untouched; drift --rollback undoes exactly the fixes and never removes an identity a scale set carried before', async () => {
    const journal = JSON.parse(readFileSync(env.journalPath, 'utf8'));
    expect(JSON.stringify(journal.steps)).toBe(stepsAfterMigration);
    expect(journal.extensions['drift-fix'].actions.length).toBeGreaterThan(0);
    const before = await vmssIdentities(env, 'aks-system-12345678-vmss');
    const r = await runMain(env, ['drift', '--rollback', '--yes', '-o', 'json'], { timeoutMs: 240_000 });
    expect(r.code, r.all).toBe(0);
    const rolled = JSON.parse(r.stdout) as { undone: string[] };
    expect(validateRollback(rolled), JSON.stringify(validateRollback.errors)).toBe(true);
    const undone = rolled.undone;
    expect((rolled as unknown as { verified: string[] }).verified).toEqual(expect.arrayContaining([expect.stringMatching(/^vmss aks-gpu-12345678-vmss: the 1 identities it carried before(, none the fix added|; assigned again since \(by MIC\?\): exporter-id)$/)]));
    // Newest first; each scale set loses only what a fix added, and keeps what it carried before.
    expect(undone.filter((l) => l.startsWith('vmss '))).toEqual(
      expect.arrayContaining([
        'vmss aks-gpu-12345678-vmss: 1 identity removed; the 1 it carried before kept',
        expect.stringMatching(/^vmss aks-batch-12345678-vmss: [12] identit(y|ies) removed; the [12] it carried before kept$/),
      ]),
    );
    expect(undone).toEqual(expect.arrayContaining(['deployment default/mic: back to 2', 'daemonset default/nmi: args restored']));
    // (MIC, back at 2 replicas in standard mode, may assign identities again itself; the kubelet and add-on identities are never gone.)
    expect(await vmssIdentities(env, 'aks-system-12345678-vmss')).toEqual(expect.arrayContaining(before));
    expect(before).toEqual(expect.arrayContaining([kubelet, 'omsagent-prod-weu']));
    for (const set of await env.azure.listScaleSets(env.sandbox.scenario.cluster.nodeResourceGroup)) expect(Object.keys(set.userAssignedIdentities).map((i) => i.split('/').pop())).toContain(kubelet);
    expect(readFileSync(env.inventoryPath, 'utf8')).not.toMatch(/- name: gpu\n/);
    const after = JSON.parse(readFileSync(env.journalPath, 'utf8'));
    expect(after.extensions['drift-fix'].actions).toEqual([]);
    expect(JSON.stringify(after.steps)).toBe(stepsAfterMigration);
    // Undone, the drift is back: the check says so.
    expect((await drift(env)).code).toBe(3);
  }, 300_000);

  it('a fix killed while its scale set PATCH is held: the intent record is enough for --rollback to remove exactly what it added (after force-unlock)', async () => {
    // Managed mode again, so that nothing but the fix touches the scale sets.
    await env.kube.scale('default', 'mic', 0);
    await sandboxAks(env, ['upgrade-pool', 'reports', '--rewrite-identities']);
    expect(await vmssIdentities(env, 'aks-reports-12345678-vmss')).toEqual([kubelet]);
    const ruleId = env.sandbox.faults.add({ api: 'arm', method: 'PATCH', path: 'virtualMachineScaleSets/aks-reports-12345678-vmss', times: 1, action: { kind: 'hold-response' } });
    let held = false;
    const onHeld = (e: { ruleId: string }) => void (e.ruleId === ruleId && (held = true));
    env.sandbox.faults.on('held', onHeld);
    const child = spawnCli(env, ['drift', '--fix', '--yes']);
    try {
      await waitUntil('the sandbox to hold the reports scale set PATCH', () => held);
    } finally {
      env.sandbox.faults.off('held', onHeld);
      child.kill('SIGKILL');
      await child;
      env.sandbox.faults.remove(ruleId);
    }
    // The PATCH was applied; the journal has only its intent.
    expect(await vmssIdentities(env, 'aks-reports-12345678-vmss')).toEqual(expect.arrayContaining([kubelet, 'reports-id']));
    const records = JSON.parse(readFileSync(env.journalPath, 'utf8')).extensions['drift-fix'].actions as { actionId: string; status: string }[];
    expect(records.filter((r) => r.actionId.endsWith('vmss/aks-reports-12345678-vmss/add-identities')).map((r) => r.status)).toEqual(['intent']);
    const blocked = await runMain(env, ['drift', '--rollback', '--yes']);
    const lockId = /force-unlock (\S+)/.exec(blocked.all)?.[1];
    expect(blocked.code, blocked.all).toBe(1);
    expect(lockId).toBeDefined();
    expect((await runMain(env, ['force-unlock', lockId!])).code).toBe(0);
    const rolled = await runMain(env, ['drift', '--rollback', '--yes'], { timeoutMs: 240_000 });
    expect(rolled.code, rolled.all).toBe(0);
    expect(rolled.stdout).toContain('vmss aks-reports-12345678-vmss: ');
    expect(await vmssIdentities(env, 'aks-reports-12345678-vmss')).toEqual([kubelet]);
  }, 240_000);
});
