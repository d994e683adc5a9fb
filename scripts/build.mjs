#!/usr/bin/env node
/**
 * Builds the shipped package: `src/` compiled to `dist/` (same layout, relative `.ts` imports
 * rewritten to `.js`), plus the non-TypeScript files that modules read next to themselves at
 * run time (the sandbox's Pod Identity manifests). Plain JavaScript so that any Node the
 * package supports can run it (`npm ci` runs it through `prepare`). Transpile only: types are
 * checked by `npm run typecheck` and before `npm pack` (`prepack`).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

/** Directories under src/ whose non-TypeScript files are read at run time, copied as they are. */
const ASSET_DIRS = ['sandbox/manifests'];

const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
rmSync(dist, { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (result.status !== 0) {
  process.stderr.write(`build: tsc failed (exit ${result.status ?? result.signal}); dist/ is incomplete.\n`);
  process.exit(1);
}
for (const dir of ASSET_DIRS) {
  const from = join(root, 'src', dir);
  for (const name of readdirSync(from)) {
    if (!name.endsWith('.ts')) cpSync(join(from, name), join(dist, dir, name));
  }
}
if (!existsSync(join(dist, 'cli', 'main.js'))) {
  process.stderr.write('build: dist/cli/main.js is missing after tsc.\n');
  process.exit(1);
}
