/**
 * The inventory's reads: list calls only (paged by the gateway), never one GET per pod, plus the
 * managed cluster, its scale sets and the assign-permission checks. Everything else about the
 * inventory is computed from what these return (`analysis.ts`, `blockers.ts`).
 */
import type { AssignPermission, ManagedClusterInfo, ScaleSet } from '../../../azure/gateway.ts';
import type { ClusterIdentity, KubeObject } from '../../../kube/gateway.ts';
import { KINDS } from '../../../kube/kinds.ts';
import type { Ctx } from '../context.ts';
import { scaleSetFromProviderId } from '../nodes.ts';

/** Pod label that ties a pod to its AzureIdentityBinding (`spec.selector`). */
export const BINDING_LABEL = 'aadpodidbinding';

/** Everything the inventory reads from the cluster and Azure. `undefined` lists: the kind is not served. */
export interface ClusterReading {
  identities?: KubeObject[];
  bindings?: KubeObject[];
  assigned?: KubeObject[];
  exceptions?: KubeObject[];
  /** Pods carrying {@link BINDING_LABEL}. */
  pods: KubeObject[];
  replicaSets: KubeObject[];
  deployments: KubeObject[];
  jobs: KubeObject[];
  cronJobs: KubeObject[];
  statefulSets: KubeObject[];
  daemonSets: KubeObject[];
  nodes: KubeObject[];
  cluster: ClusterIdentity;
  /** `--aks-id`, when given. */
  aksId?: string;
  managedCluster?: ManagedClusterInfo;
  /** From the managed cluster, else from the nodes' providerID. */
  nodeResourceGroup?: string;
  scaleSets: ScaleSet[];
}

/** A list of a kind the API server may not serve (CRDs absent, an older cluster without CronJobs): undefined then. */
export async function listIfServed(ctx: Ctx, ref: (typeof KINDS)[keyof typeof KINDS], opts?: { labelSelector?: string }): Promise<KubeObject[] | undefined> {
  try {
    return await ctx.kube.list(ref, opts);
  } catch (e) {
    if (/does not serve|Unrecognized API version and kind|404/.test((e as Error).message)) return undefined;
    throw e;
  }
}

/** Lists everything the inventory needs, each kind once. Read-only. */
export async function readCluster(ctx: Ctx): Promise<ClusterReading> {
  const { kube, azure } = ctx;
  ctx.progress('listing pod identity objects, pods, controllers and nodes');
  const [identities, bindings, assigned, exceptions] = await Promise.all([
    listIfServed(ctx, KINDS.AzureIdentity),
    listIfServed(ctx, KINDS.AzureIdentityBinding),
    listIfServed(ctx, KINDS.AzureAssignedIdentity),
    listIfServed(ctx, KINDS.AzurePodIdentityException),
  ]);
  const [pods, replicaSets, deployments, jobs, cronJobs, statefulSets, daemonSets, nodes] = await Promise.all([
    kube.list(KINDS.Pod, { labelSelector: BINDING_LABEL }),
    kube.list(KINDS.ReplicaSet),
    kube.list(KINDS.Deployment),
    listIfServed(ctx, KINDS.Job).then((x) => x ?? []),
    listIfServed(ctx, KINDS.CronJob).then((x) => x ?? []),
    listIfServed(ctx, KINDS.StatefulSet).then((x) => x ?? []),
    kube.list(KINDS.DaemonSet),
    kube.list(KINDS.Node),
  ]);
  const cluster = await kube.clusterIdentity();
  const aksId = typeof ctx.options.aksId === 'string' ? ctx.options.aksId : undefined;
  let managedCluster: ManagedClusterInfo | undefined;
  let nodeResourceGroup: string | undefined;
  if (aksId) {
    ctx.progress('reading the managed cluster and its scale sets');
    managedCluster = await azure.getManagedCluster(aksId);
    nodeResourceGroup = managedCluster.nodeResourceGroup;
  } else {
    nodeResourceGroup = nodes.map((n) => scaleSetFromProviderId((n.spec as { providerID?: string } | undefined)?.providerID)?.resourceGroup).find(Boolean);
  }
  const scaleSets = nodeResourceGroup ? await azure.listScaleSets(nodeResourceGroup) : [];
  return { identities, bindings, assigned, exceptions, pods, replicaSets, deployments, jobs, cronJobs, statefulSets, daemonSets, nodes, cluster, aksId, managedCluster, nodeResourceGroup, scaleSets };
}

/** Whether the caller may assign each identity (by resource id) to a scale set. */
export async function readAssignPermissions(ctx: Ctx, resourceIds: readonly string[]): Promise<Map<string, AssignPermission>> {
  const unique = [...new Set(resourceIds)];
  const answers = await Promise.all(unique.map((id) => ctx.azure.canAssign(id)));
  return new Map(unique.map((id, i) => [id, answers[i]]));
}
