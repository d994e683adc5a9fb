/**
 * Workload identity rollback matrix, last part: `apply --to wi-remove-pod-identity` (a full
 * workload identity migration) and `rollback --all`, on a sandbox of its own (see
 * `wi-rollback-matrix-harness.ts`).
 */
import { WORKLOAD_IDENTITY_STEP_IDS } from '../../src/engine/step.ts';
import { wiRollbackMatrix } from './wi-rollback-matrix-harness.ts';

wiRollbackMatrix(WORKLOAD_IDENTITY_STEP_IDS.slice(WORKLOAD_IDENTITY_STEP_IDS.indexOf('wi-test') + 1));
