/**
 * The journal lock: `<journal>.lock`, created with O_EXCL so two runs can never both hold it.
 * It names its owner so a contended or stale lock can be explained and, when the owner is
 * really gone, removed with `podid-migrate force-unlock <id>`.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { dirname } from 'node:path';
import { LockHeldError, PreconditionError, StaleLockError } from './errors.ts';

/** What the lock file holds. */
export interface LockInfo {
  id: string;
  /** `user@host` */
  owner: string;
  user: string;
  host: string;
  pid: number;
  /** The command that took it: `apply`, `rollback`, … */
  operation: string;
  createdAt: string;
}

/** A held lock. `release` is idempotent and removes the file only if it is still ours. */
export interface LockHandle {
  readonly info: LockInfo;
  readonly path: string;
  release(): Promise<void>;
}

/** Path of the lock file guarding `journalPath`. */
export function lockPathFor(journalPath: string): string {
  return `${journalPath}.lock`;
}

/** True when a process with `pid` exists on this host (EPERM means it exists but is someone else's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

/** Reads a lock file; undefined when absent, `'unreadable'` when it exists but is not a lock we understand. */
export async function readLock(journalPath: string): Promise<LockInfo | 'unreadable' | undefined> {
  let text: string;
  try {
    text = await fs.readFile(lockPathFor(journalPath), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return 'unreadable';
  }
  try {
    const info = JSON.parse(text) as LockInfo;
    if (typeof info.id !== 'string' || typeof info.pid !== 'number' || typeof info.host !== 'string') return 'unreadable';
    return info;
  } catch {
    // A lock being written right now can be empty for an instant; the caller reports it as held.
    return 'unreadable';
  }
}

function describe(info: LockInfo): string {
  return `Lock ID ${info.id}, ${info.operation} by ${info.owner} (pid ${info.pid}), since ${info.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}.`;
}

/**
 * Takes the lock for `operation`. `command` is how hints spell the program for this journal
 * (`podid-migrate --runbook workload-identity` for that runbook's journal, whose path it selects).
 * @throws LockHeldError when another live run (or a run on another host) holds it,
 *         StaleLockError when its owner pid is gone on this host.
 */
export async function acquireLock(journalPath: string, operation: string, command = 'podid-migrate'): Promise<LockHandle> {
  const path = lockPathFor(journalPath);
  await fs.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const user = currentUser();
  const host = hostname();
  const info: LockInfo = { id: randomUUID(), owner: `${user}@${host}`, user, host, pid: process.pid, operation, createdAt: new Date().toISOString() };
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const held = await readLock(journalPath);
    if (held === 'unreadable' || held === undefined) {
      throw new LockHeldError(
        `the journal lock ${path} exists but cannot be read.`,
        `Another run may be starting right now; try again. If no run is active, remove ${path} by hand.`,
        '',
      );
    }
    if (held.host === host && !processAlive(held.pid)) {
      throw new StaleLockError(
        `the journal lock is stale: its owner (pid ${held.pid} on ${held.host}) is no longer running.`,
        `${describe(held)}\nThe journal records how far that run got. Remove the lock and continue:\n  ${command} force-unlock ${held.id}`,
        held.id,
      );
    }
    throw new LockHeldError(
      'another podid-migrate run holds the journal lock.',
      `${describe(held)}\nIf that run is gone: ${command} force-unlock ${held.id}`,
      held.id,
    );
  }
  try {
    await handle.writeFile(`${JSON.stringify(info, null, 2)}\n`, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  let released = false;
  return {
    info,
    path,
    release: async () => {
      if (released) return;
      released = true;
      const current = await readLock(journalPath);
      // Never remove a lock someone force-unlocked and re-took meanwhile.
      if (current !== 'unreadable' && current?.id === info.id) await fs.rm(path, { force: true });
    },
  };
}

/**
 * Removes the lock only if its id is `id`. Returns the removed lock's details.
 * @throws PreconditionError when there is no lock or the id does not match.
 */
export async function forceUnlock(journalPath: string, id: string): Promise<LockInfo> {
  const path = lockPathFor(journalPath);
  const held = await readLock(journalPath);
  if (held === undefined) {
    throw new PreconditionError(`there is no lock on ${journalPath}.`, 'Nothing to unlock; run the command again.');
  }
  if (held === 'unreadable') {
    throw new PreconditionError(`the lock file ${path} cannot be read, so its id cannot be checked.`, `If no run is active, remove ${path} by hand.`);
  }
  if (held.id !== id) {
    throw new PreconditionError(
      `the lock id does not match: the journal is locked with ${held.id}, not ${id}.`,
      `${describe(held)}\nThe lock was probably taken again by a newer run. Check it before unlocking.`,
    );
  }
  await fs.rm(path, { force: true });
  return held;
}
