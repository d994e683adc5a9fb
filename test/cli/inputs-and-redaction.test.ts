/**
 * Every file the CLI reads is validated before anything connects, a tampered journal never
 * leaks a token-shaped value to any output, and exit codes / streams hold: `plan` exits 4 on
 * blockers without flags, the run summary goes to stdout.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLUSTER, fakeCluster, type FakeCluster } from '../engine/fake-steps.ts';
import { main } from '../../src/cli/main.ts';
import { KubeApiError } from '../../src/kube/errors.ts';
import { runCli } from './cli-harness.ts';

let cwd: string;
let cluster: FakeCluster;
beforeEach(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'podid-inputs-'));
  cluster = fakeCluster();
});
afterEach(async () => {
  await rm(cwd, { recursive: true, force: true });
});
const run = (...args: string[]) => runCli(args, { cluster, cwd });
const journalFile = () => join(cwd, '.podid-migrate', 'prod-weu.json');

const VALID = {
  apiVersion: 'podid-migrate/v1',
  kind: 'Inventory',
  cluster: { name: 'prod-weu', kubeSystemUid: 'uid-1' },
  identities: [{ name: 'api-id', namespace: 'payments', type: 0, services: [{ name: 'payments/api', testCases: [{ kind: 'token' }] }] }],
  pools: [{ name: 'pay', nodes: 3 }],
};

/** Forged, never issued: a JWT-shaped value (header.payload.signature). */
const TOKEN = 'eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLXRoYXQtaXMtbm90LXJlYWw';

describe('inventory validation before anything connects', () => {
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['a wrong type', JSON.stringify({ ...VALID, pools: [{ name: 'pay', nodes: 'three' }] }), /pools\[0\]\.nodes: must be integer \(got "three"\)/],
    ['an enum out of range', JSON.stringify({ ...VALID, identities: [{ ...VALID.identities[0], type: 7 }] }), /identities\[0\]\.type: must be one of 0, 1, 2 \(got 7\)/],
    ['an unknown field', JSON.stringify({ ...VALID, pools: [{ name: 'pay', nodez: 3 }] }), /pools\[0\]\.nodez: unknown field; remove it or check its spelling/],
    ['a missing field', JSON.stringify({ ...VALID, cluster: { name: 'prod-weu' } }), /cluster\.kubeSystemUid: required field is missing/],
    ['a binary file', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d]), /\(file\): not a text file \(a NUL byte at offset 8: binary data\); it must be YAML or JSON text/],
    ['a top-level list', '- apiVersion: podid-migrate/v1\n- kind: Inventory\n', /\(top level\): a list, but it must be an Inventory mapping/],
    ['an empty file', '', /\(top level\): the file is empty/],
    ['a __proto__ key', `{"apiVersion":"podid-migrate/v1","kind":"Inventory","cluster":{"name":"x","kubeSystemUid":"u","__proto__":{"polluted":true}},"identities":[],"pools":[]}`, /cluster\.__proto__: a key named "__proto__" is not allowed/],
    ['a constructor key in YAML', 'apiVersion: podid-migrate/v1\nkind: Inventory\ncluster: {name: x, kubeSystemUid: u}\nidentities: []\npools:\n  - name: pay\n    constructor: {prototype: 1}\n', /pools\[0\]\.constructor: a key named "constructor" is not allowed/],
    ['YAML that does not parse', 'apiVersion: [\n', /\(file\): not valid YAML or JSON/],
  ];
  for (const [what, content, message] of cases) {
    it(`${what}: plan and apply exit 1 naming the field and what to do; nothing connected or written`, async () => {
      const file = join(cwd, 'inventory.yaml');
      await writeFile(file, content);
      for (const args of [['plan'], ['apply', '--yes']]) {
        const r = await run(...args, '--inventory', file);
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toMatch(new RegExp(`^Error: inventory ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not valid:\\n`));
        expect(r.stderr).toMatch(message);
        expect(r.stderr).toContain('podid-migrate apply --step inventory');
        expect(r.stderr).not.toContain('unexpected');
        expect(r.connects).toBe(0);
        expect(existsSync(journalFile())).toBe(false);
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });
  }

  it('a valid inventory is accepted', async () => {
    const file = join(cwd, 'inventory.yaml');
    await writeFile(file, JSON.stringify(VALID));
    const r = await run('plan', '--inventory', file);
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('saved plan validation (apply --plan)', () => {
  it('a saved plan with a wrong field is refused naming it, before connecting', async () => {
    await run('plan', '--out', 'plan.json');
    const plan = JSON.parse(await readFile(join(cwd, 'plan.json'), 'utf8'));
    plan.steps[0].plan.actions[0].op = 'x';
    plan.steps[1].fingerprint = 'md5:abc';
    plan.extra = true;
    await writeFile(join(cwd, 'plan.json'), JSON.stringify(plan));
    const r = await run('apply', '--plan', 'plan.json', '--yes');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Error: --plan: saved plan plan.json is not valid:');
    expect(r.stderr).toContain('extra: unknown field; remove it or check its spelling');
    expect(r.stderr).toContain('steps[0].plan.actions[0].op: must be one of "+", "~", "-" (got "x")');
    expect(r.stderr).toMatch(/steps\[1\]\.fingerprint: .*sha256/);
    expect(r.connects).toBe(0);
  });

  it('a binary or a list is refused as such', async () => {
    await writeFile(join(cwd, 'plan.json'), Buffer.from([0x00, 0x01, 0x02]));
    expect((await run('apply', '--plan', 'plan.json', '--yes')).stderr).toContain('(file): not a text file');
    await writeFile(join(cwd, 'plan.json'), '[1,2]');
    expect((await run('apply', '--plan', 'plan.json', '--yes')).stderr).toContain('(top level): a list, but it must be a plan object');
  });
});

describe('journal structure', () => {
  it('a journal with a wrong type inside an action record is refused naming the field; the file is kept', async () => {
    await run('apply', '--to', 'inventory', '--yes');
    const doc = JSON.parse(await readFile(journalFile(), 'utf8'));
    doc.steps.inventory.actions[0].status = 'maybe';
    doc.steps.assign.attempts = -1;
    const text = JSON.stringify(doc);
    await writeFile(journalFile(), text);
    const r = await run('status');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is not a valid podid-migrate journal');
    expect(r.stderr).toContain('steps.inventory.actions[0].status: must be one of "intent", "done", "failed" (got "maybe")');
    expect(r.stderr).toContain('steps.assign.attempts: must be >= 0');
    expect(await readFile(journalFile(), 'utf8')).toBe(text);
  });
});

describe('a journal tampered with a token-shaped value', () => {
  beforeEach(async () => {
    await run('apply', '--to', 'inventory', '--yes');
    const doc = JSON.parse(await readFile(journalFile(), 'utf8'));
    doc.steps.inventory.summary = `token ${TOKEN}`;
    doc.steps.assign.failures = [`Authorization: Bearer ${TOKEN}`];
    doc.steps.inventory.data.note = TOKEN;
    doc.events.push({ at: doc.updatedAt, event: 'info', message: `leaked ${TOKEN}` });
    await writeFile(journalFile(), JSON.stringify(doc));
  });

  const outputs: string[][] = [['status'], ['status', '-o', 'json'], ['status', '-o', 'yaml'], ['status', '-o', 'markdown'], ['history'], ['history', '-o', 'json'], ['history', '-o', 'yaml'], ['history', '-o', 'markdown'], ['status', '--verbose']];
  for (const args of outputs) {
    it(`${args.join(' ')} prints [redacted], never the value`, async () => {
      const r = await run(...args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).not.toContain(TOKEN);
      expect(r.stdout + r.stderr).not.toContain('eyJ');
      expect(r.stdout).toContain('[redacted]');
      if (args.includes('json')) expect(() => JSON.parse(r.stdout)).not.toThrow();
    });
  }

  it('apply refuses the journal as edited (not as a bug in a step), names where, prints no token and leaves it unchanged', async () => {
    const before = await readFile(journalFile(), 'utf8');
    for (const args of [['apply', '--yes'], ['apply', '--yes', '--verbose'], ['apply', '--dry-run=client', '-o', 'json'], ['plan']]) {
      const r = await run(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(/contains 4 values shaped like an access token \(JWT\) at .*; podid-migrate never stores tokens, so the file was edited by hand or by another tool\./);
      for (const where of ['$.steps.inventory.summary', '$.steps.inventory.data.note', '$.steps.assign.failures[0]', '$.events[']) expect(r.stderr).toContain(where);
      expect(r.stderr).not.toContain('bug in the step');
      expect(r.stderr).not.toContain('unexpected');
      expect(r.stdout + r.stderr).not.toContain(TOKEN);
    }
    expect(await readFile(journalFile(), 'utf8')).toBe(before);
  });
});

describe('a token-shaped value coming from the cluster (a blocker message)', () => {
  for (const args of [['plan'], ['plan', '-o', 'json'], ['plan', '-o', 'yaml'], ['plan', '-o', 'markdown'], ['apply', '--yes'], ['apply', '--yes', '--verbose', '-o', 'json']]) {
    it(`${args.join(' ')} prints it as [redacted]`, async () => {
      cluster.blockers.inventory = [{ code: 'leaky', subject: 'secret default/token', message: `the annotation holds ${TOKEN} in the clear`, fix: `remove ${TOKEN}` }];
      const r = await run(...args);
      expect(r.code).toBe(4);
      expect(r.stdout + r.stderr).not.toContain('eyJ');
      if (args[0] === 'plan') {
        expect(r.stdout).toContain('the annotation holds [redacted] in the clear');
        if (args.includes('json')) expect(() => JSON.parse(r.stdout)).not.toThrow();
      } else {
        // apply logs the blockers in the journal: redacted there too, so the journal stays writable.
        expect(r.stderr).toContain('Error: 1 blocker found; nothing was changed.');
        const journal = await readFile(journalFile(), 'utf8');
        expect(journal).not.toContain('eyJ');
        expect(journal).toContain('the annotation holds [redacted] in the clear');
      }
    });
  }
});

describe('exit codes and streams', () => {
  it('an API server that kept failing while connecting is reported as such, not as unexpected', async () => {
    let stderr = '';
    const code = await main(['node', 'podid-migrate', 'plan', '--aks-id', CLUSTER.aksResourceId], {
      stdout: { write: () => true },
      stderr: { write: (s: string) => ((stderr += s), true) },
      env: { CI: 'true' },
      interactive: false,
      cwd,
      createRuntime: async () => {
        throw new KubeApiError({ status: 503, reason: 'ServiceUnavailable', message: 'the server is currently unable to handle the request', method: 'GET', path: '/api/v1/namespaces/kube-system' });
      },
      onInterrupt: () => () => {},
    });
    expect(code).toBe(1);
    expect(stderr).toBe('Error: GET /api/v1/namespaces/kube-system: 503 ServiceUnavailable: the server is currently unable to handle the request\n  The Kubernetes API server kept failing after retries. Run the same command again later; the journal resumes where it stopped.\n');
  });

  it('plan exits 4 when it finds blockers, with or without --detailed-exitcode', async () => {
    cluster.blockers.inventory = [{ code: 'nmi-too-old', subject: 'ds default/nmi', message: 'NMI v1.5.2 has no managed mode', fix: 'upgrade NMI first' }];
    expect((await run('plan')).code).toBe(4);
    expect((await run('plan', '-o', 'json')).code).toBe(4);
    expect((await run('plan', '--detailed-exitcode')).code).toBe(4);
  });

  it('the apply and rollback summaries go to stdout', async () => {
    const applied = await run('apply', '--to', 'assign', '--yes');
    expect(applied.code).toBe(0);
    expect(applied.stdout).toMatch(/Journal .*prod-weu\.json {2}\(2\/7 steps checked; next: nmi-managed\)/);
    expect(applied.stderr).not.toContain('steps checked');
    const rolled = await run('rollback', '--all', '--yes');
    expect(rolled.code).toBe(0);
    expect(rolled.stdout).toMatch(/Journal .*\(0\/7 steps checked; next: inventory\)/);
  });
});
