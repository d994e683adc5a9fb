/**
 * The runbook's steps in order (`STEP_IDS` in `src/engine/step.ts`). The CLI loads this list;
 * the runner refuses a list that is out of order.
 */
import type { AzureGateway } from '../azure/gateway.ts';
import type { StepRegistry } from '../engine/step.ts';
import type { KubeGateway } from '../kube/gateway.ts';
import { inventoryStep } from './01-inventory.ts';
import { assignStep } from './02-assign.ts';
import { nmiManagedStep } from './03-nmi-managed.ts';
import { micScaleStep } from './04-mic-scale.ts';
import { drainStep } from './05-drain.ts';
import { testStep } from './06-test.ts';
import { cleanupStep } from './07-cleanup.ts';

export { EXECUTORS } from './executors/index.ts';

/** Every step, in runbook order. */
export const STEPS: StepRegistry<KubeGateway, AzureGateway> = [
  inventoryStep,
  assignStep,
  nmiManagedStep,
  micScaleStep,
  drainStep,
  testStep,
  cleanupStep,
];

export default STEPS;
