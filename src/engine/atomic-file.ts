/**
 * Crash-safe file replacement: a reader sees either the old content or the new one, never a
 * torn write, even if the process is killed at any instruction.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Eight hex digits for a temp file name. WebCrypto's global, not `node:crypto`: importing that
 * module costs every process (even `--help`) several milliseconds of start-up.
 */
function randomSuffix(): string {
  return Array.from(globalThis.crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Test seams: called at the named point of {@link writeFileAtomic}. */
export interface AtomicWriteHooks {
  /** After the temp file is written and fsynced, before it replaces the target. */
  beforeRename?(tempPath: string): Promise<void> | void;
}

/** Temp files live next to the target (same filesystem, so `rename` is atomic) and are recognisable by this prefix/suffix. */
export function tempPrefix(target: string): string {
  return `.${basename(target)}.`;
}
const TEMP_SUFFIX = '.tmp';

/**
 * Replaces `target` with `data`: write a temp file in the same directory, fsync it, rename it
 * over the target, fsync the directory (so the rename itself survives a power loss).
 * The file gets `mode` (default 0600) whatever the umask. On failure the temp file is removed
 * and the target is untouched.
 */
export async function writeFileAtomic(target: string, data: string, options: { mode?: number; hooks?: AtomicWriteHooks } = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const dir = dirname(target);
  const temp = join(dir, `${tempPrefix(target)}${process.pid}.${randomSuffix()}${TEMP_SUFFIX}`);
  const handle = await fs.open(temp, 'wx', mode);
  try {
    await handle.writeFile(data, 'utf8');
    // The umask may have narrowed or widened nothing, but an explicit chmod makes 0600 certain.
    await handle.chmod(mode);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => {});
    await fs.rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await options.hooks?.beforeRename?.(temp);
    await fs.rename(temp, target);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(dir);
}

async function fsyncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch (error) {
    // Some filesystems refuse fsync on a directory (EINVAL/EISDIR); the rename is still atomic there.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw error;
  } finally {
    await handle?.close();
  }
}

/**
 * Removes temp files a killed writer left next to `target`. Call only while holding the lock
 * that serialises writers of `target` (otherwise a live writer's temp file could be removed).
 * Returns the removed paths.
 */
export async function removeStaleTempFiles(target: string): Promise<string[]> {
  const dir = dirname(target);
  const prefix = tempPrefix(target);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (name.startsWith(prefix) && name.endsWith(TEMP_SUFFIX)) {
      await fs.rm(join(dir, name), { force: true });
      removed.push(join(dir, name));
    }
  }
  return removed;
}
