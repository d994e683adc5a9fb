/** Nodes, their pools and VMSS instances, and owner references: one implementation each. */
import type { KubeGateway, KubeObject } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';

/** Pool labels AKS puts on nodes (the older one first seen on clusters created before 2021). */
const POOL_LABELS = ['kubernetes.azure.com/agentpool', 'agentpool'];

/** The node's pool: `kubernetes.azure.com/agentpool`, else the older `agentpool` label. */
export function poolOf(node: KubeObject): string | undefined {
  const labels = node.metadata?.labels ?? {};
  for (const l of POOL_LABELS) if (labels[l]) return labels[l];
  return undefined;
}

/** True when the node's `Ready` condition is `True`. */
export function isReady(node: KubeObject): boolean {
  const conds = (node.status as { conditions?: { type?: string; status?: string }[] } | undefined)?.conditions ?? [];
  return conds.some((c) => c.type === 'Ready' && c.status === 'True');
}

/** True when the node is cordoned. */
export function isCordoned(node: KubeObject): boolean {
  return Boolean((node.spec as { unschedulable?: boolean } | undefined)?.unschedulable);
}

/** The node's boot id (changes when a reimage reboots it). */
export function bootIdOf(node: KubeObject): string | undefined {
  return (node.status as { nodeInfo?: { bootID?: string } } | undefined)?.nodeInfo?.bootID;
}

/** The VMSS instance behind a node, from its `spec.providerID`. */
export interface VmssRef {
  resourceGroup: string;
  name: string;
  instanceId: string;
}

/** Parses `azure:///subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachineScaleSets/<vmss>/virtualMachines/<id>`. */
export function vmssOfNode(node: KubeObject): VmssRef | undefined {
  const id = String((node.spec as { providerID?: string } | undefined)?.providerID ?? '');
  const m = /\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)\/virtualMachines\/(\d+)$/i.exec(id);
  return m ? { resourceGroup: m[1], name: m[2], instanceId: m[3] } : undefined;
}

/** The resource group and scale set of a providerID (any instance id form). */
export function scaleSetFromProviderId(providerId: string | undefined): { resourceGroup: string; name: string } | undefined {
  if (!providerId) return undefined;
  const m = /\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)\/virtualMachines\/[^/]+$/i.exec(providerId);
  return m ? { resourceGroup: m[1], name: m[2] } : undefined;
}

/** An owner reference as the API server serves it. */
export type OwnerRef = NonNullable<NonNullable<KubeObject['metadata']>['ownerReferences']>[number];

/** The object's controller: the owner reference marked `controller: true`, as `metav1.GetControllerOf` (and so `kubectl drain`) reads it. */
export function controllerOf(obj: KubeObject): OwnerRef | undefined {
  return obj.metadata?.ownerReferences?.find((r) => r.controller);
}

/** Uncordons a node with a merge patch whose null removes the field, leaving the Node as it was before the cordon. */
export async function uncordon(kube: KubeGateway, node: string): Promise<void> {
  await kube.patch(KINDS.Node, undefined, node, { spec: { unschedulable: null } }, 'merge');
}

/** Cordons a node. */
export async function cordon(kube: KubeGateway, node: string): Promise<void> {
  await kube.patch(KINDS.Node, undefined, node, { spec: { unschedulable: true } }, 'merge');
}
