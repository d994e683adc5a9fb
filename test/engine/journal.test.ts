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

describe('journal action log', () => {
  const logOf = (p: string) => `${p}.wal`;
  const action = (i: number) => ({ id: `aai/default/pod-${i}/delete`, op: '-' as const, target: `azureassignedidentity default/pod-${i}`, summary: 'delete', api: 'kube' as const, writes: 1 });

  it('appends actions to a 0600 log without rewriting the snapshot; a snapshot write folds the log in', async () => {
    const journal = await seeded();
    const snapshotBefore = await readFile(path, 'utf8');
    const sj = journal.forStep('cleanup');
    for (let i = 0; i < 3; i++) await sj.runAction(action(i), { name: `pod-${i}` }, async () => ({ deleted: true }));
    await sj.setData('saved', { count: 3 });
    await sj.markRolledBack(action(0).id);
    expect(await readFile(path, 'utf8')).toBe(snapshotBefore);
    expect((await stat(logOf(path))).mode & 0o777).toBe(0o600);
    const lines = (await readFile(logOf(path), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ kind: 'podid-migrate/journal-log', schemaVersion: 1, baseSeq: 0 });
    expect(lines.slice(1).map((l) => l.op)).toEqual(['intent', 'done', 'intent', 'done', 'intent', 'done', 'data', 'rolled-back']);
    expect(lines.slice(1).map((l) => l.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

    const replayed = (await Journal.read(path))!;
    expect(replayed.steps.cleanup.actions.map((r) => [r.actionId, r.status, r.rolledBack ?? false])).toEqual([
      [action(0).id, 'done', true],
      [action(1).id, 'done', false],
      [action(2).id, 'done', false],
    ]);
    expect(replayed.steps.cleanup.actions[1]).toMatchObject({ preState: { name: 'pod-1' }, result: { deleted: true } });
    expect(replayed.steps.cleanup.data.saved).toEqual({ count: 3 });
    expect(replayed.events.filter((e) => e.event.startsWith('action-')).length).toBe(6);
    expect(replayed).toEqual(journal.snapshot());

    await journal.setState('cleanup', 'applied');
    const compacted = JSON.parse(await readFile(path, 'utf8'));
    expect(compacted.logSeq).toBe(8);
    expect(compacted.steps.cleanup.actions).toHaveLength(3);
    const log = (await readFile(logOf(path), 'utf8')).trimEnd().split('\n');
    expect(log).toHaveLength(1);
    expect(JSON.parse(log[0]).baseSeq).toBe(8);
    expect(await Journal.read(path)).toEqual(journal.snapshot());
  });

  it('drops a line torn by a killed writer, and the next append continues after the last whole line', async () => {
    const journal = await seeded();
    await journal.forStep('cleanup').runAction(action(0), { name: 'pod-0' }, async () => 'deleted');
    const whole = await readFile(logOf(path), 'utf8');
    const torn = JSON.stringify({ seq: 3, at: new Date().toISOString(), op: 'intent', step: 'cleanup', record: { actionId: action(1).id, status: 'intent' } });
    await writeFile(logOf(path), whole + torn.slice(0, 40));
    const reopened = await Journal.open(path, CLUSTER);
    expect(reopened.step('cleanup').actions.map((r) => r.status)).toEqual(['done']);
    await reopened.forStep('cleanup').runAction(action(1), { name: 'pod-1' }, async () => 'deleted');
    const text = await readFile(logOf(path), 'utf8');
    expect(text.startsWith(whole)).toBe(true);
    expect(text.endsWith('\n')).toBe(true);
    expect(() => text.trimEnd().split('\n').map((l) => JSON.parse(l))).not.toThrow();
    expect((await Journal.read(path))!.steps.cleanup.actions.map((r) => [r.actionId, r.status])).toEqual([
      [action(0).id, 'done'],
      [action(1).id, 'done'],
    ]);
  });

  it('refuses a log with a corrupt line that is not the torn last one, and changes neither file', async () => {
    const journal = await seeded();
    for (let i = 0; i < 2; i++) await journal.forStep('cleanup').runAction(action(i), undefined, async () => 'deleted');
    const lines = (await readFile(logOf(path), 'utf8')).split('\n');
    lines[2] = lines[2].slice(0, 30);
    const broken = lines.join('\n');
    await writeFile(logOf(path), broken);
    const snapshot = await readFile(path, 'utf8');
    const error = await Journal.open(path, CLUSTER).catch((e) => e);
    expect(error).toBeInstanceOf(JournalCorruptError);
    expect(error.message).toBe(`journal action log ${logOf(path)} line 3: is not a JSON object.`);
    expect(error.hint).toMatch(/Neither file was changed.*--journal/s);
    await expect(Journal.read(path)).rejects.toThrow(JournalCorruptError);
    expect(await readFile(logOf(path), 'utf8')).toBe(broken);
    expect(await readFile(path, 'utf8')).toBe(snapshot);
  });

  it('refuses a log of an unknown version, of another journal, or with missing entries', async () => {
    const journal = await seeded();
    for (let i = 0; i < 3; i++) await journal.forStep('cleanup').runAction(action(i), undefined, async () => 'deleted');
    const good = await readFile(logOf(path), 'utf8');
    const lines = good.trimEnd().split('\n');
    const header = JSON.parse(lines[0]);

    await writeFile(logOf(path), [JSON.stringify({ ...header, schemaVersion: 2 }), ...lines.slice(1)].join('\n') + '\n');
    const newer = await Journal.open(path, CLUSTER).catch((e) => e);
    expect(newer).toBeInstanceOf(JournalCorruptError);
    expect(newer.message).toMatch(/has schemaVersion 2; this podid-migrate reads version 1 only/);
    expect(newer.hint).toMatch(/newer podid-migrate/);

    await writeFile(logOf(path), [JSON.stringify({ ...header, journal: '2020-01-01T00:00:00.000Z|other' }), ...lines.slice(1)].join('\n') + '\n');
    await expect(Journal.open(path, CLUSTER)).rejects.toThrow(/line 1: it belongs to another journal/);

    await writeFile(logOf(path), [lines[0], lines[1], lines[3], lines[4]].join('\n') + '\n');
    await expect(Journal.open(path, CLUSTER)).rejects.toThrow(/line 3: sequence number 3 follows 1: entries are missing/);

    await writeFile(logOf(path), [lines[0], lines[1], JSON.stringify({ ...JSON.parse(lines[2]), index: 7 })].join('\n') + '\n');
    await expect(Journal.open(path, CLUSTER)).rejects.toThrow(/line 3: it completes action #7, which step "cleanup" does not have/);

    await writeFile(logOf(path), good);
    expect((await Journal.open(path, CLUSTER)).step('cleanup').actions).toHaveLength(3);
  });

  it('skips entries a snapshot already holds (killed between the snapshot write and the log reset)', async () => {
    const journal = await seeded();
    for (let i = 0; i < 2; i++) await journal.forStep('cleanup').runAction(action(i), { i }, async () => 'deleted');
    const logBefore = await readFile(logOf(path), 'utf8');
    await journal.setState('cleanup', 'applied');
    // As if the writer died right after renaming the snapshot: the old log is still there.
    await writeFile(logOf(path), logBefore);
    const reopened = await Journal.open(path, CLUSTER);
    expect(reopened.step('cleanup').actions.map((r) => r.actionId)).toEqual([action(0).id, action(1).id]);
    await reopened.forStep('cleanup').runAction(action(2), { i: 2 }, async () => 'deleted');
    expect((await Journal.read(path))!.steps.cleanup.actions.map((r) => r.actionId)).toEqual([action(0).id, action(1).id, action(2).id]);
  });

  it('a reader that got a snapshot older than the log retries; a log that really starts past its snapshot is refused', async () => {
    const journal = await seeded();
    await journal.forStep('cleanup').runAction(action(0), undefined, async () => 'deleted');
    const oldSnapshot = await readFile(path, 'utf8');
    await journal.setState('cleanup', 'applied');
    await journal.forStep('cleanup').runAction(action(1), undefined, async () => 'deleted');
    await writeFile(path, oldSnapshot);
    const error = await Journal.read(path).catch((e) => e);
    expect(error).toBeInstanceOf(JournalCorruptError);
    expect(error.message).toMatch(/starts after its snapshot/);
  });

  it('refuses a token-shaped result or pre-state without writing a line', async () => {
    const journal = await seeded();
    const sj = journal.forStep('test');
    await sj.runAction(action(0), undefined, async () => 'ok');
    const before = await readFile(logOf(path), 'utf8');
    const token = 'eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL3ZhdWx0LmF6dXJlLm5ldCJ9.c2lnbmF0dXJl';
    let mutated = false;
    await expect(sj.runAction(action(1), { header: token }, async () => { mutated = true; })).rejects.toThrow(SecretLeakError);
    expect(mutated).toBe(false);
    await expect(sj.setData('body', [`x ${token}`])).rejects.toThrow(/\$\.steps\.test\.data\.body\[0\]/);
    expect(await readFile(logOf(path), 'utf8')).toBe(before);
  });

  it('keeps the intent and the first pre-state when the writer is SIGKILLed between intent and done', async () => {
    await seeded();
    const child = spawn(NODE24, [join(import.meta.dirname, 'fixtures/intent-and-hang.ts'), path, JSON.stringify(CLUSTER), '5'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('READY')) resolve();
      });
      child.once('exit', () => reject(new Error('child exited before its mutation')));
    });
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const reopened = await Journal.open(path, CLUSTER);
    const records = reopened.forStep('cleanup').records();
    expect(records.map((r) => r.status)).toEqual(['done', 'done', 'done', 'done', 'done', 'intent']);
    expect(records[5]).toMatchObject({ actionId: 'deploy/kube-system/mic/delete', preState: { replicas: 2, saved: { name: 'mic' } } });
    // The resumed run sees a half-changed object: its pre-state must not replace the first one.
    const resumed = reopened.forStep('cleanup');
    await resumed.runAction({ id: 'deploy/kube-system/mic/delete', op: '-', target: 'deploy kube-system/mic', summary: 'delete MIC', api: 'kube', writes: 1 }, { replicas: 0 }, async () => 'deleted');
    await reopened.setState('cleanup', 'applied');
    const reread = await Journal.open(path, CLUSTER);
    expect(reread.forStep('cleanup').firstPreState('deploy/kube-system/mic/delete')).toEqual({ replicas: 2, saved: { name: 'mic' } });
    expect(reread.forStep('cleanup').records().map((r) => r.status).slice(-2)).toEqual(['intent', 'done']);
  });
});

describe('journal readers', () => {
  it('a reader in another process never sees a torn or older state while a writer appends and compacts', async () => {
    await seeded();
    const child = spawn(NODE24, [join(import.meta.dirname, 'fixtures/record-and-compact.ts'), path, JSON.stringify(CLUSTER), '150'], { stdio: ['ignore', 'ignore', 'inherit'] });
    let exited = false;
    const done = new Promise<number | null>((resolve) => child.once('exit', (code) => {
      exited = true;
      resolve(code);
    }));
    const seen: number[] = [];
    while (!exited) {
      const doc = await Journal.read(path);
      const actions = doc!.steps.cleanup.actions;
      // Every record read is whole: an intent with its pre-state, or done with its result.
      for (const r of actions) expect(r.status === 'intent' || (r.status === 'done' && r.result === 'deleted')).toBe(true);
      seen.push(actions.filter((r) => r.status === 'done').length);
    }
    expect(await done).toBe(0);
    expect(seen.length).toBeGreaterThan(3);
    // Never backwards: a read after a compaction is never missing what an earlier read saw.
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    const final = (await Journal.read(path))!;
    expect(final.steps.cleanup.state).toBe('applied');
    expect(final.steps.cleanup.actions.map((r) => r.status)).toEqual(Array(150).fill('done'));
  }, 60_000);
});
