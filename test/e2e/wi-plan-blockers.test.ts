/**
 * `podid-migrate --runbook workload-identity plan` finds every blocker of the move off pod
 * identity before anything is written (real CLI process, sandbox over HTTPS): an identity at
 * its limit of 20 federated credentials, a hostNetwork workload, and a service whose SDK the
 * operator marked as too old without the proxy sidecar. Plan exits 4; no journal, no credential,
 * no annotation, no cluster setting and no inventory byte changes. `apply` refuses the same way.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { Journal } from '../../src/engine/journal.ts';
import { KINDS } from '../../src/kube/kinds.ts';
import { expectValidDocument } from '../helpers/schemas.ts';
import type { InventoryDocument } from '../../src/steps/lib/inventory-model.ts';
import { BIN, SCENARIO, startEnv, type Env } from './steps-1-4-harness.ts';

let env: Env;

/** The default scenario with 20 credentials on reports-id (issuer on, workload identity off) and external-dns on the host network. */
function scenarioText(): string {
  const base = readFileSync(SCENARIO, 'utf8').replace(
    '- { name: external-dns, namespace: platform, pool: system, replicas: 1, binding: dns-updater }',
    '- { name: external-dns, namespace: platform, pool: system, replicas: 1, binding: dns-updater, hostNetwork: true }',
  );
  expect(base).toContain('hostNetwork: true');
  const fics = Array.from({ length: 20 }, (_, i) => `    - { identity: reports-id, name: other-${i}, namespace: other, serviceAccount: sa-${i} }`).join('\n');
  return `${base}\nworkloadIdentity:\n  oidcIssuerEnabled: true\n  federatedCredentials:\n${fics}\n`;
}

/** `podid-migrate --runbook workload-identity <args>` with the default journal path (under the test's directory). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; all: string }> {
  const r = await execa(process.execPath, [BIN, '--runbook', 'workload-identity', '--inventory', env.inventoryPath, ...args], { cwd: env.dir, env: env.cliEnv, extendEnv: false, reject: false, all: true, timeout: 90_000 });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), all: String(r.all) };
}

/** What a write by the runbook's first steps would change. */
async function state(): Promise<unknown> {
  const inv = parseYaml(readFileSync(env.inventoryPath, 'utf8')) as InventoryDocument;
  const fics: Record<string, number> = {};
  for (const i of inv.identities) if (i.resourceId) fics[i.name] = (await env.azure.listFederatedCredentials(i.resourceId)).length;
  const accounts = (await env.kube.list(KINDS.ServiceAccount)).map((sa) => `${sa.metadata?.namespace}/${sa.metadata?.name} ${JSON.stringify(sa.metadata?.annotations ?? {})}`).sort();
  const c = await env.azure.getManagedCluster(env.sandbox.aksResourceId);
  return { fics, accounts, oidc: c.oidcIssuer?.enabled, wi: c.workloadIdentityEnabled, inventory: readFileSync(env.inventoryPath, 'utf8'), journals: existsSync(join(env.dir, '.podid-migrate')) };
}

beforeAll(async () => {
  env = await startEnv({ timeScale: 100, scenarioText: scenarioText(), churn: false });
  // The shared inventory, written by the managed-mode inventory step; the operator then marks SDKs.
  await env.runner().apply({ step: 'inventory' });
  const inv = parseYaml(readFileSync(env.inventoryPath, 'utf8')) as InventoryDocument;
  const service = (name: string) => inv.identities.flatMap((i) => i.services).find((s) => s.name === name)!;
  service('payments/checkout').workloadIdentity = { sdk: { language: 'node', version: '3.1.0' } };
  // Too old too, but marked for the proxy sidecar: no blocker.
  service('reporting/exporter').workloadIdentity = { sdk: { language: 'python', version: '1.12.0' }, proxySidecar: true };
  service('payments/api').workloadIdentity = { sdk: { language: 'go', version: '1.3.0' } };
  writeFileSync(env.inventoryPath, toYaml(inv));
}, 120_000);

afterAll(async () => {
  await env?.stop();
});

it('plan exits 4 with every blocker at once and writes nothing; apply refuses too', async () => {
  const before = await state();
  const plan = await cli(['plan', '-o', 'json']);
  expect(plan.code, plan.all).toBe(4);
  const doc = JSON.parse(plan.stdout) as { runbook: string; steps: { stepId: string; plan?: { blockers: { code: string; subject: string; message: string }[] } }[] };
  expect(doc.runbook).toBe('workload-identity');
  expectValidDocument('plan', doc);
  // Every blocker of the whole runbook, at once: later steps that need an earlier one's result wait for it instead.
  const blockers = doc.steps.flatMap((s) => (s.plan?.blockers ?? []).map((b) => ({ step: s.stepId, ...b })));
  expect(blockers.map((b) => [b.step, b.code, b.subject]).sort()).toEqual([
    ['wi-preflight', 'wi-federated-credential-limit', 'identity reporting/reports-id'],
    ['wi-preflight', 'wi-host-network', 'deployment platform/external-dns'],
    ['wi-preflight', 'wi-sdk-too-old', 'service payments/checkout'],
  ]);
  expect(blockers.find((b) => b.code === 'wi-federated-credential-limit')!.message).toMatch(/has 20 federated identity credential\(s\) and the migration needs 1 more \(reporting\/reports\): 21/);
  expect(blockers.find((b) => b.code === 'wi-sdk-too-old')!.message).toMatch(/@azure\/identity 3\.1\.0.*3\.2\.0 or newer/);
  expect(await state()).toEqual(before);

  const apply = await cli(['apply', '--yes']);
  expect(apply.code, apply.all).toBe(4);
  expect(apply.all).toMatch(/blockers? found; nothing was changed/);
  // The refusal is journaled with every blocker (the journal of this runbook, never the managed-mode one).
  const journal = await Journal.read(join(env.dir, '.podid-migrate', 'prod-weu.workload-identity.json'));
  expect(journal?.runbook).toBe('workload-identity');
  const refused = journal!.events.find((e) => e.event === 'blockers')!.detail as { stepId: string; code: string }[];
  expect(refused.map((b) => b.code).sort()).toEqual(['wi-federated-credential-limit', 'wi-host-network', 'wi-sdk-too-old']);
  const after = (await state()) as Record<string, unknown>;
  // apply records the refusal in its journal (.podid-migrate/<cluster>.workload-identity.json); the cluster is untouched.
  expect({ ...after, journals: false }).toEqual({ ...(before as Record<string, unknown>), journals: false });
  expect(existsSync(join(env.dir, '.podid-migrate', 'prod-weu.json'))).toBe(false);

  // status and history read this runbook's journal; the managed-mode runbook has none here.
  const status = await cli(['status', '-o', 'json']);
  expect(status.code, status.all).toBe(0);
  const statusDoc = JSON.parse(status.stdout) as { runbook: string; steps: Record<string, { state: string }> };
  expectValidDocument('status', statusDoc);
  expect(statusDoc.runbook).toBe('workload-identity');
  expect(Object.keys(statusDoc.steps)).toEqual(['wi-preflight', 'wi-enable', 'wi-federate', 'wi-serviceaccounts', 'wi-workloads', 'wi-test', 'wi-remove-pod-identity']);
  const history = await cli(['history', '-o', 'json']);
  expectValidDocument('history', JSON.parse(history.stdout));
  const managed = await execa(process.execPath, [BIN, 'status'], { cwd: env.dir, env: env.cliEnv, extendEnv: false, reject: false, all: true });
  expect(managed.exitCode).toBe(1);
  expect(String(managed.all)).toMatch(/no journal at .*prod-weu\.json/);
  // A journal of the other runbook given by path is refused by name.
  const mixed = await execa(process.execPath, [BIN, '--journal', join(env.dir, '.podid-migrate', 'prod-weu.workload-identity.json'), 'status'], { cwd: env.dir, env: env.cliEnv, extendEnv: false, reject: false, all: true });
  expect(mixed.exitCode).toBe(1);
  expect(String(mixed.all)).toMatch(/records the workload-identity runbook, not managed-mode/);
}, 180_000);
