/**
 * `demo -o json`: the whole migration on the embedded sandbox, its report as a document on
 * stdout (nothing else there: the plan and progress go to stderr) that validates against
 * `schemas/demo.schema.json`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { expectValidDocument } from '../helpers/schemas.ts';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'podid-migrate');
const cwd = mkdtempSync(join(tmpdir(), 'podid-demo-json-'));
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

describe('demo -o json', () => {
  it('prints only the report document, valid against its schema, every step checked', async () => {
    const r = await run(process.execPath, [BIN, 'demo', '-o', 'json', '--time-scale', '40', '--dir', join(cwd, 'demo')], { cwd, env: { ...process.env, CI: 'true' }, timeout: 240_000, maxBuffer: 64 << 20 });
    const doc = JSON.parse(r.stdout) as { kind: string; schemaVersion: number; steps: { stepId: string; outcome: string; checks: string[] }[]; kept: boolean };
    expect(doc.kind).toBe('podid-migrate/demo');
    expect(doc.schemaVersion).toBe(1);
    expectValidDocument('demo', doc);
    expect(doc.steps.map((s) => [s.stepId, s.outcome])).toEqual(['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup'].map((id) => [id, 'checked']));
    expect(doc.steps.every((s) => s.checks.length > 0)).toBe(true);
    expect(doc.kept).toBe(false);
    expect(r.stderr).toMatch(/^Plan: /m);
  }, 250_000);
});
