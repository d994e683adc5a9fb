/**
 * The live side of a drift check, read in a bounded number of calls whatever the cluster size:
 * Kubernetes: one (paged) list per kind (nodes, labelled pods, workload controllers, the Pod
 * Identity CRDs, NMI's pods) plus one per AzurePodIdentityException label; Azure: the managed
 * cluster, one list of the node resource group's scale sets (each carries its identities with
 * their client and principal ids), and one list of identities per resource group the
 * identities live in. Read-only.
 */
import type { AzureGateway, ManagedClusterInfo, ManagedIdentity, ScaleSet } from '../azure/gateway.ts';
import type { KubeGateway, KubeObject } from '../kube/gateway.ts';
import { KINDS } from '../kube/kinds.ts';
import { BINDING_LABEL } from '../steps/lib/inventory/reading.ts';
import { scaleSetFromProviderId } from '../steps/lib/nodes.ts';
import type { InventoryDocument } from '../steps/lib/inventory-model.ts';
import { findNmiDaemonSets, podSelectorOf } from '../steps/lib/pod-identity.ts';

/** Everything the analysis compares, as plain JSON. */
export interface DriftLiveState {
  nodes: KubeObject[];
  /** Pods carrying `aadpodidbinding`. */
  pods: KubeObject[];
  /** Deployments, StatefulSets, DaemonSets, Jobs and CronJobs (their pod templates say where pods may go). */
  controllers: KubeObject[];
  daemonSets: KubeObject[];
  deployments: KubeObject[];
  identities: KubeObject[];
  bindings: KubeObject[];
  assigned: KubeObject[];
  exceptions: KubeObject[];
  /** Pods matched by an exception (one list per label), keyed `namespace/name`. */
  exceptionPods: KubeObject[];
  nmiPods: KubeObject[];
  managedCluster?: ManagedClusterInfo;
  nodeResourceGroup?: string;
  scaleSets: ScaleSet[];
  /** User-assigned identities in ARM, from the resource groups the desired identities live in. */
  armIdentities: ManagedIdentity[];
  /** Resource groups (lower-case) whose identities were listed: an identity of such a group not listed does not exist. */
  listedGroups: string[];
  notes: string[];
}

function isMissingKind(e: unknown): boolean {
  return /does not serve|Unrecognized API version and kind|404|not found/i.test((e as Error)?.message ?? '');
}

async function listOrEmpty(kube: KubeGateway, ref: (typeof KINDS)[keyof typeof KINDS], opts?: Parameters<KubeGateway['list']>[1]): Promise<KubeObject[]> {
  try {
    return await kube.list(ref, opts);
  } catch (e) {
    if (isMissingKind(e)) return [];
    throw e;
  }
}

const RESOURCE_GROUP = /\/resourcegroups\/([^/]+)\//i;

/** Reads the live state for {@link analyseDrift}. */
export async function readDriftState(kube: KubeGateway, azure: AzureGateway, opts: { aksId?: string; inventory: InventoryDocument }): Promise<DriftLiveState> {
  const notes: string[] = [];
  const [nodes, pods, deployments, statefulSets, daemonSets, jobs, cronJobs, identities, bindings, assigned, exceptions] = await Promise.all([
    kube.list(KINDS.Node),
    kube.list(KINDS.Pod, { labelSelector: BINDING_LABEL }),
    kube.list(KINDS.Deployment),
    listOrEmpty(kube, KINDS.StatefulSet),
    kube.list(KINDS.DaemonSet),
    listOrEmpty(kube, KINDS.Job),
    listOrEmpty(kube, KINDS.CronJob),
    listOrEmpty(kube, KINDS.AzureIdentity),
    listOrEmpty(kube, KINDS.AzureIdentityBinding),
    listOrEmpty(kube, KINDS.AzureAssignedIdentity),
    listOrEmpty(kube, KINDS.AzurePodIdentityException),
  ]);
  const nmi = findNmiDaemonSets(daemonSets)[0];
  const exceptionLists = exceptions.flatMap((x) =>
    Object.entries(((x.spec ?? {}) as { podLabels?: Record<string, string> }).podLabels ?? {}).map(([k, v]) => listOrEmpty(kube, KINDS.Pod, { namespace: x.metadata?.namespace, labelSelector: `${k}=${v}` })),
  );
  const [nmiPods, ...exceptionPodLists] = await Promise.all([nmi ? kube.list(KINDS.Pod, { namespace: nmi.namespace, labelSelector: podSelectorOf(nmi.object) }) : Promise.resolve([]), ...exceptionLists]);
  const seen = new Set<string>();
  const exceptionPods = exceptionPodLists.flat().filter((p) => {
    const k = `${p.metadata?.namespace}/${p.metadata?.name}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });

  let managedCluster: ManagedClusterInfo | undefined;
  let nodeResourceGroup = opts.inventory.cluster.nodeResourceGroup;
  if (opts.aksId) {
    managedCluster = await azure.getManagedCluster(opts.aksId);
    nodeResourceGroup = managedCluster.nodeResourceGroup;
  } else {
    nodeResourceGroup ??= nodes.map((n) => scaleSetFromProviderId((n.spec as { providerID?: string } | undefined)?.providerID)?.resourceGroup).find(Boolean);
    notes.push('no --aks-id: the node resource group was taken from the inventory or the nodes\' providerID');
  }
  const scaleSets = nodeResourceGroup ? await azure.listScaleSets(nodeResourceGroup) : [];

  // Identities in ARM: one list per resource group the desired identities live in.
  const groups = new Map<string, string>();
  const addGroup = (id: string | undefined) => {
    const m = id ? RESOURCE_GROUP.exec(id) : undefined;
    if (m && !groups.has(m[1].toLowerCase())) groups.set(m[1].toLowerCase(), m[1]);
  };
  for (const i of opts.inventory.identities) if (i.type === 0) addGroup(i.resourceId);
  for (const i of identities) if (((i.spec ?? {}) as { type?: number }).type === 0 || ((i.spec ?? {}) as { type?: number }).type === undefined) addGroup(((i.spec ?? {}) as { resourceID?: string }).resourceID);
  const listed: string[] = [];
  const armIdentities = (
    await Promise.all(
      [...groups.values()].map(async (rg) => {
        try {
          const list = await azure.listIdentities(rg);
          listed.push(rg.toLowerCase());
          return list;
        } catch (e) {
          notes.push(`cannot list the identities in resource group ${rg} (${(e as Error).message.split('\n')[0]}): their client ids were not compared`);
          return [];
        }
      }),
    )
  ).flat();
  return {
    nodes,
    pods,
    controllers: [...deployments, ...statefulSets, ...daemonSets, ...jobs, ...cronJobs],
    daemonSets,
    deployments,
    identities,
    bindings,
    assigned,
    exceptions,
    exceptionPods,
    nmiPods,
    managedCluster,
    nodeResourceGroup,
    scaleSets,
    armIdentities,
    listedGroups: listed.sort(),
    notes,
  };
}
