/**
 * Start-up shared by the `podid-migrate` and `kubectl-podid_migrate` executables: checks the
 * Node version, turns on Node's compile cache, and runs the CLI from the build (`dist/`), or
 * from the TypeScript sources in a checkout whose Node runs them directly (the developer loop,
 * always current with the sources). Plain JavaScript: every supported Node can load it.
 */
import { existsSync } from 'node:fs';
import module from 'node:module';

const MINIMUM = [20, 16];

/**
 * Runs the CLI with `process.argv` under `programName` (what help and hints call it).
 * @returns the exit code
 */
export async function launch(programName) {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < MINIMUM[0] || (major === MINIMUM[0] && minor < MINIMUM[1])) {
    process.stderr.write(`Error: ${programName} needs Node.js >= ${MINIMUM.join('.')}, this is ${process.version}.\n  Install a current Node.js LTS release (https://nodejs.org) and run it again.\n`);
    return 1;
  }
  // Node >= 22.1: keeps the compiled code of the modules loaded below on disk, so the next
  // start skips most parsing and compiling. Absent on Node 20, where starts are just slower.
  module.enableCompileCache?.();
  const sources = new URL('../src/cli/main.ts', import.meta.url);
  const build = new URL('../dist/cli/main.js', import.meta.url);
  const fromSources = process.features.typescript && process.env.PODID_MIGRATE_USE_BUILD !== '1' && existsSync(sources);
  if (!fromSources && !existsSync(build)) {
    process.stderr.write(
      `Error: ${programName} is not built (no dist/cli/main.js) and this Node (${process.version}) cannot run its TypeScript sources.\n` +
        '  In a checkout: npm ci (which builds it), or npm run build.\n',
    );
    return 1;
  }
  const { main } = await import((fromSources ? sources : build).href);
  return main(process.argv, {}, { programName });
}
