/**
 * The executors of every action kind the runbook's steps plan, and the discriminated union of
 * those actions. A step (or any other command: `drift --fix`, a second runbook) declares what it
 * will do as {@link MigrationAction}s, built with {@link action}; the runner executes them through
 * {@link EXECUTORS}. Adding a kind: a file here exporting an `Executor`, one line in the union and
 * one in the registry.
 */
import type { ExecutorRegistry, PlannedAction } from '../../engine/step.ts';
import type { AzureGateway } from '../../azure/gateway.ts';
import type { KubeGateway } from '../../kube/gateway.ts';
import { cordonNodes, type CordonNodesDetails } from './cordon-nodes.ts';
import { createObject, type CreateObjectDetails } from './create-object.ts';
import { deleteObject, deleteObjects, type DeleteObjectDetails, type DeleteObjectsDetails } from './delete.ts';
import { drainNode, type DrainNodeDetails } from './drain-node.ts';
import { nmiNodeRollout, type NmiNodeRolloutDetails } from './nmi-node-rollout.ts';
import { patchContainer, type PatchContainerDetails } from './patch-container.ts';
import { patchPodTemplate, type PatchPodTemplateDetails } from './patch-pod-template.ts';
import { replaceNode, type ReplaceNodeDetails } from './replace-node.ts';
import { runProbes, type RunProbesDetails } from './run-probes.ts';
import { scaleDeployment, type ScaleDetails } from './scale.ts';
import { vmssAddIdentities, vmssUpgradeInstances, type VmssAddIdentitiesDetails, type VmssUpgradeDetails } from './vmss.ts';
import { vmssRemoveIdentities, type VmssRemoveIdentitiesDetails } from './vmss-remove.ts';
import { runWiProbes, type RunWiProbesDetails } from './run-wi-probes.ts';
import { writeInventoryFile, type WriteInventoryDetails } from './write-file.ts';
import { aksWorkloadIdentity, type AksWorkloadIdentityDetails } from './aks-workload-identity.ts';
import { federatedCredential, type FederatedCredentialDetails } from './federated-credential.ts';
import { annotateObject, type AnnotateObjectDetails } from './annotate-object.ts';

/** Details by action kind. */
export interface ActionDetailsByKind {
  'create-object': CreateObjectDetails;
  'write-inventory': WriteInventoryDetails;
  'patch-container': PatchContainerDetails;
  'vmss-add-identities': VmssAddIdentitiesDetails;
  'vmss-upgrade-instances': VmssUpgradeDetails;
  scale: ScaleDetails;
  'drain-node': DrainNodeDetails;
  'cordon-nodes': CordonNodesDetails;
  'nmi-node-rollout': NmiNodeRolloutDetails;
  'replace-node': ReplaceNodeDetails;
  'run-probes': RunProbesDetails;
  'delete-object': DeleteObjectDetails;
  'delete-objects': DeleteObjectsDetails;
  'patch-pod-template': PatchPodTemplateDetails;
  'vmss-remove-identities': VmssRemoveIdentitiesDetails;
  'run-wi-probes': RunWiProbesDetails;
  'aks-workload-identity': AksWorkloadIdentityDetails;
  'federated-credential': FederatedCredentialDetails;
  'annotate-object': AnnotateObjectDetails;
}

/** An action kind this package can execute. */
export type ActionKind = keyof ActionDetailsByKind;

/** A planned action of this package: `kind` decides the type of `details`. */
export type MigrationAction = { [K in ActionKind]: PlannedAction<K, ActionDetailsByKind[K]> }[ActionKind];

/** Builds a typed action (the compiler checks `details` against `kind`). */
export function action<K extends ActionKind>(a: PlannedAction<K, ActionDetailsByKind[K]>): PlannedAction<K, ActionDetailsByKind[K]> {
  return a;
}

/** Every executor, by kind (the runner's registry). */
export const EXECUTORS: ExecutorRegistry<KubeGateway, AzureGateway> = {
  'create-object': createObject,
  'write-inventory': writeInventoryFile,
  'patch-container': patchContainer,
  'vmss-add-identities': vmssAddIdentities,
  'vmss-upgrade-instances': vmssUpgradeInstances,
  scale: scaleDeployment,
  'drain-node': drainNode,
  'cordon-nodes': cordonNodes,
  'nmi-node-rollout': nmiNodeRollout,
  'replace-node': replaceNode,
  'run-probes': runProbes,
  'delete-object': deleteObject,
  'delete-objects': deleteObjects,
  'patch-pod-template': patchPodTemplate,
  'vmss-remove-identities': vmssRemoveIdentities,
  'run-wi-probes': runWiProbes,
  'aks-workload-identity': aksWorkloadIdentity,
  'federated-credential': federatedCredential,
  'annotate-object': annotateObject,
} satisfies { [K in ActionKind]: unknown };

/** No writes. */
export const NO_WRITES = { kube: 0, arm: 0 } as const;
