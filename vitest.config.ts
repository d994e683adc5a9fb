import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { configDefaults, defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest (each runs migrations on its own sandbox), longest first, as
 * measured on a 2-core machine. They start first so that the last file to finish is not one
 * of them: on a clean clone vitest has no durations of a previous run and would start the
 * largest files first, which are unit tests, and these small files last.
 */
const LONGEST_FIRST = [
  'test/e2e/wi-demo.test.ts',
  'test/e2e/demo-json.test.ts',
  'test/e2e/crash-matrix.test.ts',
  'test/e2e/wi-rollback-matrix.test.ts',
  'test/e2e/faults-arm.test.ts',
  'test/e2e/wi-rollback-matrix-late.test.ts',
  'test/e2e/wi-write-contract.test.ts',
  'test/e2e/wi-crash.test.ts',
  'test/e2e/crash-resume-runbook.test.ts',
  'test/e2e/write-contract.test.ts',
  'test/e2e/write-contract-helm.test.ts',
  'test/e2e/rollback-matrix.test.ts',
  'test/e2e/cli-dry-run-runbook.test.ts',
  'test/e2e/faults-waits.test.ts',
  'test/e2e/rollback-matrix-late.test.ts',
  'test/e2e/steps-5-7-crash.test.ts',
  'test/e2e/steps-1-4-protect.test.ts',
  'test/e2e/drift.test.ts',
  'test/e2e/faults-kube.test.ts',
  'test/e2e/cli-dry-run.test.ts',
  'test/e2e/steps-1-4-crash-nmi-mic.test.ts',
  'test/e2e/operator-permissions.test.ts',
  'test/e2e/demo.test.ts',
  'test/e2e/demo-helm.test.ts',
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

/**
 * End-to-end files that measure the outage in simulated time (the sandbox's clock runs
 * timeScale times faster than the wall clock, so a CPU-starved event loop shows as a longer
 * token outage). They run with the unit tests, two at a time, never next to four sandboxes.
 */
const OUTAGE_MEASURED = ['steps-1-4-apply.test.ts', 'steps-5-7-apply.test.ts', 'demo.test.ts', 'demo-helm.test.ts'].map((f) => `test/e2e/${f}`);

/**
 * The other end-to-end files: each drives a sandbox and mostly waits on its simulated time
 * (a quarter to a third of a core each), so four of them share the two cores of a build machine.
 */
const E2E_WAITING = readdirSync(join(import.meta.dirname, 'test', 'e2e'))
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => `test/e2e/${f}`)
  .filter((f) => !OUTAGE_MEASURED.includes(f));

/** Sandbox and CLI files: no outage measured, so they can share the first group's cores. */
const BESIDE_E2E = ['test/sandbox/**/*.test.ts', 'test/cli/**/*.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    sequence: { sequencer: LongestFirstSequencer },
    reporters: ['default'],
    projects: [
      // First: the waiting end-to-end files, four at a time (the crash and rollback matrices among them),
      // with the sandbox and CLI files beside them: those use the CPU the waiting files leave idle.
      { extends: true, test: { name: 'e2e', include: [...E2E_WAITING, ...BESIDE_E2E], maxWorkers: 4, sequence: { groupOrder: 0 } } },
      // Then: unit tests and the outage-measuring end-to-end files, two at a time (one per core).
      { extends: true, test: { name: 'unit-and-outage', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...E2E_WAITING, ...BESIDE_E2E], maxWorkers: 2, sequence: { groupOrder: 1 } } },
    ],
  },
});
