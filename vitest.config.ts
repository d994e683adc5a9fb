import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest (each runs migrations on its own sandbox), longest first, as
 * measured on a 2-core machine. They start first so that the last file to finish is not one
 * of them: on a clean clone vitest has no durations of a previous run and would start the
 * largest files first, which are unit tests, and these small files last.
 */
const LONGEST_FIRST = [
  'test/e2e/crash-matrix.test.ts',
  'test/e2e/rollback-matrix.test.ts',
  'test/e2e/rollback-matrix-late.test.ts',
  'test/e2e/faults-arm.test.ts',
  'test/e2e/drift.test.ts',
  'test/e2e/demo-json.test.ts',
  'test/e2e/write-contract.test.ts',
  'test/e2e/write-contract-helm.test.ts',
  'test/e2e/faults-waits.test.ts',
  'test/e2e/crash-resume-runbook.test.ts',
  'test/e2e/demo.test.ts',
  'test/e2e/faults-kube.test.ts',
  'test/e2e/steps-5-7-crash.test.ts',
  'test/e2e/demo-helm.test.ts',
  'test/e2e/operator-permissions.test.ts',
  'test/e2e/cli-dry-run-runbook.test.ts',
];

/**
 * Vitest's own order (failed first, then longest first) when it has the durations of a previous
 * run for every file; otherwise {@link LONGEST_FIRST}, then the other end-to-end files, then the rest.
 */
class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    if (files.every((f) => this.ctx.cache.getTestSpecificationResult(f))) return base;
    const rank = (f: TestSpecification): number => {
      const path = relative(f.project.config.root, f.moduleId).split('\\').join('/');
      const listed = LONGEST_FIRST.indexOf(path);
      if (listed >= 0) return listed;
      return path.startsWith('test/e2e/') ? LONGEST_FIRST.length : LONGEST_FIRST.length + 1;
    };
    // Array.prototype.sort is stable: within a rank, vitest's order stays.
    return [...base].sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores on the build machines: end-to-end files start their own sandbox each.
    maxWorkers: 2,
    sequence: { sequencer: LongestFirstSequencer },
    reporters: ['default'],
  },
});
