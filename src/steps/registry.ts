/**
 * Each runbook's steps in order (`STEP_IDS` / `WORKLOAD_IDENTITY_STEP_IDS` in
 * `src/engine/step.ts`). The CLI loads the list of `--runbook` ({@link stepsFor}); the runner
 * refuses a list that is out of order or mixes runbooks.
 */
import type { AzureGateway } from '../azure/gateway.ts';
import type { RunbookId, StepRegistry } from '../engine/step.ts';
import type { KubeGateway } from '../kube/gateway.ts';
import { inventoryStep } from './01-inventory.ts';
import { assignStep } from './02-assign.ts';
import { nmiManagedStep } from './03-nmi-managed.ts';
import { micScaleStep } from './04-mic-scale.ts';
import { drainStep } from './05-drain.ts';
import { testStep } from './06-test.ts';
import { cleanupStep } from './07-cleanup.ts';
import { wiPreflightStep } from './workload-identity/01-wi-preflight.ts';
import { wiEnableStep } from './workload-identity/02-wi-enable.ts';
import { wiFederateStep } from './workload-identity/03-wi-federate.ts';
import { wiServiceAccountsStep } from './workload-identity/04-wi-serviceaccounts.ts';
import { wiWorkloadsStep } from './workload-identity/05-wi-workloads.ts';
import { wiTestStep } from './workload-identity/06-wi-test.ts';
import { wiRemovePodIdentityStep } from './workload-identity/07-wi-remove-pod-identity.ts';

export { EXECUTORS } from './executors/index.ts';

/** Every step of the `managed-mode` runbook, in order. */
export const STEPS: StepRegistry<KubeGateway, AzureGateway> = [
  inventoryStep,
  assignStep,
  nmiManagedStep,
  micScaleStep,
  drainStep,
  testStep,
  cleanupStep,
];

/** Every step of the `workload-identity` runbook (off pod identity to Microsoft Entra Workload ID), in order. */
export const WORKLOAD_IDENTITY_STEPS: StepRegistry<KubeGateway, AzureGateway> = [
  wiPreflightStep,
  wiEnableStep,
  wiFederateStep,
  wiServiceAccountsStep,
  wiWorkloadsStep,
  wiTestStep,
  wiRemovePodIdentityStep,
];

/** The steps of `runbook`, in order. */
export function stepsFor(runbook: RunbookId): StepRegistry<KubeGateway, AzureGateway> {
  return runbook === 'workload-identity' ? WORKLOAD_IDENTITY_STEPS : STEPS;
}

export default STEPS;
