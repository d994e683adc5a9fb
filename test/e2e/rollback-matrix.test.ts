/**
 * Rollback matrix, first half: `apply --to k` and `rollback --all` for k = inventory to drain
 * (see `rollback-matrix-harness.ts`; test and cleanup are in `rollback-matrix-late.test.ts`).
 */
import { STEP_IDS } from '../../src/engine/step.ts';
import { rollbackMatrix } from './rollback-matrix-harness.ts';

rollbackMatrix(STEP_IDS.slice(0, STEP_IDS.indexOf('drain') + 1));
