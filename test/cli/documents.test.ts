/**
 * Every `-o json|yaml` document of the runbook commands, produced by the CLI (`main()` in this
 * process with the production runtime) against the sandbox (Kubernetes API and ARM over HTTPS through the real clients), carries `kind` and
 * `schemaVersion` and validates against the schema shipped in `schemas/`. Also: `apply` prints
 * its result on stdout as a table by default.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { DOCUMENT_COMMANDS, schemaPath, type DocumentCommand } from '../../src/cli/documents.ts';
import { startSandbox, type SandboxHarness } from '../helpers/sandbox.ts';
import { expectValidDocument, schemaValidator } from '../helpers/schemas.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'podid-migrate');

let h: SandboxHarness;
let work: string;
let env: Record<string, string>;

beforeAll(async () => {
  h = await startSandbox({ churn: false, timeScale: 40 });
  work = mkdtempSync(join(tmpdir(), 'podid-docs-'));
  env = { ...(process.env as Record<string, string>), CI: 'true', NO_COLOR: '1' };
  // What `source <dir>/env` exports.
  for (const line of readFileSync(h.files.envFile, 'utf8').split('\n')) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
}, 90_000);

afterAll(async () => {
  await h?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The CLI's `main()` in this process with the production runtime and the env of `source <dir>/env`. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', BIN, '--journal', join(work, 'journal.json'), '--inventory', join(work, 'inventory.yaml'), '--kubeconfig', env.KUBECONFIG, ...args], {
    stdout: { write: (s: string) => ((stdout += s), true), isTTY: false },
    stderr: { write: (s: string) => ((stderr += s), true), isTTY: false },
    env,
    interactive: false,
    cwd: work,
    confirm: async () => false,
    onInterrupt: () => () => {},
  });
  return { code, stdout, stderr };
}

async function document(command: DocumentCommand, ...args: string[]): Promise<Record<string, unknown>> {
  const r = await cli(...args, '-o', 'json');
  expect(r.code, r.stderr).toBe(0);
  const doc = JSON.parse(r.stdout) as Record<string, unknown>;
  expect(doc.kind).toBe(`podid-migrate/${command}`);
  expect(doc.schemaVersion).toBe(1);
  expectValidDocument(command, doc);
  return doc;
}

describe('shipped schemas', () => {
  it('exist, compile in ajv strict mode, and reject a document of another kind', () => {
    // drift's schema comes with the drift command.
    for (const command of Object.keys(DOCUMENT_COMMANDS).filter((c) => c !== 'drift') as DocumentCommand[]) {
      expect(existsSync(schemaPath(command)), command).toBe(true);
      expect(schemaValidator(command)({ kind: 'podid-migrate/other', schemaVersion: 1 })).toBe(false);
    }
  });
});

describe('documents from the sandbox', () => {
  it('plan, apply (dry run and real), status, history, rollback: each validates against its schema', async () => {
    const plan = await document('plan', 'plan');
    expect((plan.steps as unknown[]).length).toBe(7);

    const dry = await document('apply', 'apply', '--step', 'inventory', '--dry-run=client');
    expect(dry.dryRun).toBe('client');
    expect(dry.journalPath).toBeNull();
    expect(Array.isArray(dry.writes)).toBe(true);

    const applied = await document('apply', 'apply', '--step', 'inventory', '--yes');
    const [inventory] = applied.steps as { stepId: string; outcome: string; state: string; checks: string[] }[];
    expect(inventory).toMatchObject({ stepId: 'inventory', outcome: 'checked', state: 'checked' });
    expect(inventory.checks.length).toBeGreaterThan(0);
    expect(applied.next).toBe('assign');

    const status = await document('status', 'status');
    expect((status.steps as Record<string, { state: string }>).inventory.state).toBe('checked');
    const history = await document('history', 'history');
    expect((history.events as unknown[]).length).toBeGreaterThan(0);

    // YAML carries the same document.
    const yaml = await cli('status', '-o', 'yaml');
    expect(yaml.code, yaml.stderr).toBe(0);
    expectValidDocument('status', parseYaml(yaml.stdout));

    const rolledBack = await document('rollback', 'rollback', '--step', 'inventory', '--yes');
    expect((rolledBack.steps as { outcome: string }[])[0].outcome).toBe('rolled-back');
  }, 180_000);

  it('sandbox status (a daemon started by sandbox up) validates against its schema', async () => {
    const dir = join(work, 'daemon');
    const up = await cli('sandbox', 'up', '--dir', dir, '--no-churn');
    expect(up.code, up.stderr).toBe(0);
    try {
      const doc = await document('sandbox-status', 'sandbox', 'status', '--dir', dir);
      expect((doc.state as { status: string }).status).toBe('ready');
      expect((doc.live as { scenario: string }).scenario).toBe('default');
    } finally {
      expect((await cli('sandbox', 'down', '--dir', dir)).code).toBe(0);
    }
  }, 120_000);

  it('apply prints its result on stdout as a table: each step, the journal line, and the checks it passed', async () => {
    // A journal of its own: the cluster is as the sandbox started it.
    const r = await cli('--journal', join(work, 'table.json'), '--inventory', join(work, 'table.yaml'), 'apply', '--step', 'inventory', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^✔ inventory +\([^)]+\) +\S/m);
    expect(r.stdout).toMatch(/^Journal .*table\.json +\(1\/7 steps checked; next: assign\)$/m);
    expect(r.stdout).toMatch(/^Checks\n {2}inventory\n {4}✔ \S/m);
  }, 120_000);
});
