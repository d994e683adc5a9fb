import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores on the build machines: end-to-end files start their own sandbox each.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
