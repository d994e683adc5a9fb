import { execaNode } from 'execa';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClusterMismatchError, JournalCorruptError, LockHeldError, PreconditionError, SecretLeakError, StaleLockError } from '../../src/engine/errors.ts';
import { Journal, defaultJournalPath } from '../../src/engine/journal.ts';
import { acquireLock, forceUnlock, lockPathFor } from '../../src/engine/lock.ts';
import { CLUSTER } from './fake-steps.ts';

const NODE24 = join(import.meta.dirname, '../../node_modules/.bin/node');
let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'podid-journal-'));
  path = join(dir, 'sub', 'prod-weu.json');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function seeded(): Promise<Journal> {
  const journal = await Journal.open(path, CLUSTER);
  await journal.setState('inventory', 'checked', 'inventory checked');
  return journal;
}

describe('journal file', () => {
  it('is created 0600 in a 0700 directory and round-trips', async () => {
    await seeded();
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'sub'))).mode & 0o777).toBe(0o700);
    const doc = await Journal.read(path);
    expect(doc).toMatchObject({ schemaVersion: 1, kind: 'podid-migrate/journal', cluster: CLUSTER });
    expect(doc!.steps.inventory.state).toBe('checked');
    expect(doc!.steps.inventory.checkedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(defaultJournalPath('prod-weu', '/w')).toBe('/w/.podid-migrate/prod-weu.json');
  });

  it('keeps the old journal intact when the writer is killed between write and rename', async () => {
    await seeded();
    const before = await readFile(path, 'utf8');
    const child = spawn(NODE24, [join(import.meta.dirname, 'fixtures/write-and-hang.ts'), path, JSON.stringify(CLUSTER)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const temp = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        const m = /READY (\S+)/.exec(chunk.toString());
        if (m) resolve(m[1]);
      });
      child.once('exit', () => reject(new Error('child exited before the rename point')));
    });
    expect(existsSync(temp)).toBe(true);
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(await readFile(path, 'utf8')).toBe(before);
    expect((await Journal.read(path))!.steps.inventory.state).toBe('checked');
    // The half-finished temp file is left behind and cleaned up by the next locked writer.
    const journal = await Journal.open(path, CLUSTER);
    await journal.cleanTempFiles();
    await journal.save();
    expect((await readdir(join(dir, 'sub'))).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses a corrupt journal with file, problem and next step, and never overwrites it', async () => {
    await seeded();
    const broken = (await readFile(path, 'utf8')).slice(0, 200);
    await writeFile(path, broken);
    const error = await Journal.open(path, CLUSTER).catch((e) => e);
    expect(error).toBeInstanceOf(JournalCorruptError);
    expect(error.message).toContain(path);
    expect(error.message).toMatch(/not valid JSON/);
    expect(error.hint).toMatch(/not changed.*--journal/s);
    expect(await readFile(path, 'utf8')).toBe(broken);
  });

  it('refuses an unknown schema version and says which version it reads', async () => {
    await seeded();
    const doc = JSON.parse(await readFile(path, 'utf8'));
    doc.schemaVersion = 2;
    const text = JSON.stringify(doc);
    await writeFile(path, text);
    const error = await Journal.open(path, CLUSTER).catch((e) => e);
    expect(error).toBeInstanceOf(JournalCorruptError);
    expect(error.message).toMatch(/schemaVersion 2; this podid-migrate reads version 1 only/);
    expect(error.hint).toMatch(/newer podid-migrate/);
    expect(await readFile(path, 'utf8')).toBe(text);
  });

  it('refuses a journal with an unknown step state', async () => {
    await seeded();
    const doc = JSON.parse(await readFile(path, 'utf8'));
    doc.steps.assign.state = 'half-done';
    await writeFile(path, JSON.stringify(doc));
    await expect(Journal.open(path, CLUSTER)).rejects.toThrow(/step "assign" has unknown state "half-done"/);
  });

  it('refuses another cluster by kube-system uid, naming both', async () => {
    await seeded();
    const other = { ...CLUSTER, name: 'staging-weu', kubeSystemUid: '91ab0000-0000-4000-8000-000000000009' };
    const error = await Journal.open(path, other).catch((e) => e);
    expect(error).toBeInstanceOf(ClusterMismatchError);
    expect(error.message).toMatch(/belongs to cluster prod-weu \(kube-system uid 6f1c2d3e\.\.\., but the current context points at staging-weu \(uid 91ab0000\.\.\.\)/);
    expect(error.hint).toMatch(/--context.*--journal/);
  });

  it('refuses to store anything shaped like a token and leaves the file unchanged', async () => {
    const journal = await seeded();
    const before = await readFile(path, 'utf8');
    const token = 'eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL3ZhdWx0LmF6dXJlLm5ldCJ9.c2lnbmF0dXJl';
    const error = await journal.forStep('test').setData('result', { body: `{"access_token":"${token}"}` }).catch((e) => e);
    expect(error).toBeInstanceOf(SecretLeakError);
    expect(error.message).toContain('$.steps.test.data.result.body');
    expect(error.message).not.toContain(token);
    expect(await readFile(path, 'utf8')).toBe(before);
    await expect(journal.forStep('test').runAction({ id: 'x', op: '+', target: 'pod p', summary: 's', api: 'kube', writes: 1 }, { header: `Bearer ${token}` }, async () => 1)).rejects.toThrow(SecretLeakError);
  });

  it('keeps the first pre-state of an action across resumed intents', async () => {
    const journal = await seeded();
    const sj = journal.forStep('mic-scale');
    const action = { id: 'deploy/default/mic/scale', op: '~' as const, target: 'deploy default/mic', summary: 'replicas 2 -> 0', api: 'kube' as const, writes: 1 };
    await sj.runAction(action, { replicas: 2 }, async () => ({ replicas: 0 }));
    await sj.runAction(action, { replicas: 0 }, async () => ({ replicas: 0 }));
    const reread = await Journal.open(path, CLUSTER);
    expect(reread.forStep('mic-scale').firstPreState(action.id)).toEqual({ replicas: 2 });
    expect(reread.forStep('mic-scale').records().map((r) => r.status)).toEqual(['done', 'done']);
    expect(reread.forStep('cleanup').of('mic-scale').firstPreState(action.id)).toEqual({ replicas: 2 });
  });
});

describe('journal lock', () => {
  it('stops a second run with the owner, pid and the force-unlock command', async () => {
    const held = await acquireLock(path, 'apply');
    const error = await acquireLock(path, 'rollback').catch((e) => e);
    expect(error).toBeInstanceOf(LockHeldError);
    expect(error.message).toBe('another podid-migrate run holds the journal lock.');
    expect(error.hint).toContain(`Lock ID ${held.info.id}, apply by ${held.info.owner} (pid ${process.pid})`);
    expect(error.hint).toContain(`podid-migrate force-unlock ${held.info.id}`);
    expect((await stat(lockPathFor(path))).mode & 0o777).toBe(0o600);
    await held.release();
    const again = await acquireLock(path, 'rollback');
    await again.release();
    expect(existsSync(lockPathFor(path))).toBe(false);
  });

  it('reports a lock whose process is gone as stale; force-unlock needs the exact id', async () => {
    const gone = await execaNode('-e', ['process.stdout.write(String(process.pid))'], { nodePath: NODE24 });
    const deadPid = Number(gone.stdout);
    const held = await acquireLock(path, 'apply');
    const info = JSON.parse(await readFile(lockPathFor(path), 'utf8'));
    await writeFile(lockPathFor(path), JSON.stringify({ ...info, pid: deadPid }));
    const error = await acquireLock(path, 'apply').catch((e) => e);
    expect(error).toBeInstanceOf(StaleLockError);
    expect(error.message).toMatch(new RegExp(`pid ${deadPid} .* no longer running`));
    expect(error.hint).toContain(`podid-migrate force-unlock ${held.info.id}`);
    await expect(forceUnlock(path, 'not-the-id')).rejects.toThrow(PreconditionError);
    expect(existsSync(lockPathFor(path))).toBe(true);
    const removed = await forceUnlock(path, held.info.id);
    expect(removed.pid).toBe(deadPid);
    expect(existsSync(lockPathFor(path))).toBe(false);
    // The original holder's release must not remove a lock someone else took meanwhile.
    const next = await acquireLock(path, 'apply');
    await held.release();
    expect(existsSync(lockPathFor(path))).toBe(true);
    await next.release();
  });
});
