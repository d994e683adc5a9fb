/**
 * The context every step and executor of this package runs with: the engine's `StepContext`
 * over our own Kubernetes and Azure gateways (already scoped by the runner to the call's signal
 * and deadline, so every request and wait honours `--step-timeout` and Ctrl-C).
 */
import type { AzureGateway } from '../../azure/gateway.ts';
import type { ActionExecutor, Step, StepContext } from '../../engine/step.ts';
import type { KubeGateway } from '../../kube/gateway.ts';

/** A step or executor call's context. */
export type Ctx = StepContext<KubeGateway, AzureGateway>;

/** A step of this runbook. */
export type MigrationStep = Step<KubeGateway, AzureGateway>;

/** An executor of this package (details `D`, pre-state `P`, result `R`). */
export type Executor<D, P, R> = ActionExecutor<KubeGateway, AzureGateway, D, P, R>;
