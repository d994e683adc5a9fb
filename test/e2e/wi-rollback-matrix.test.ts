/**
 * Workload identity rollback matrix, first part: `apply --to k` and `rollback --all` for
 * k = wi-preflight to wi-test (see `wi-rollback-matrix-harness.ts`; wi-remove-pod-identity is in
 * `wi-rollback-matrix-late.test.ts`).
 */
import { WORKLOAD_IDENTITY_STEP_IDS } from '../../src/engine/step.ts';
import { wiRollbackMatrix } from './wi-rollback-matrix-harness.ts';

wiRollbackMatrix(WORKLOAD_IDENTITY_STEP_IDS.slice(0, WORKLOAD_IDENTITY_STEP_IDS.indexOf('wi-test') + 1));
