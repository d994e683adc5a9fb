/**
 * Rollback matrix, second half: `apply --to k` and `rollback --all` for every k after drain
 * (test, cleanup), on a sandbox of its own (see `rollback-matrix-harness.ts`).
 */
import { STEP_IDS } from '../../src/engine/step.ts';
import { rollbackMatrix } from './rollback-matrix-harness.ts';

rollbackMatrix(STEP_IDS.slice(STEP_IDS.indexOf('drain') + 1));
