/**
 * The inventory's blockers: one check function per rule, each returning every blocker it finds
 * (a plan reports them all at once). Pure: they read the reading, the analysis and the
 * permission answers. A new rule is one more function in {@link INVENTORY_CHECKS}.
 */
import type { AssignPermission } from '../../../azure/gateway.ts';
import type { Blocker } from '../../../engine/step.ts';
import type { KubeObject } from '../../../kube/gateway.ts';
import { MIN_MANAGED_VERSION, formatVersion, versionAtLeast, type PodIdentityWorkload } from '../pod-identity.ts';
import { nsName, type Analysis } from './analysis.ts';
import type { ClusterReading } from './reading.ts';

/** What a check reads. */
export interface InventoryFacts {
  reading: ClusterReading;
  analysis: Analysis;
  /** Assign permission by identity resource id. */
  permissions: ReadonlyMap<string, AssignPermission>;
}

/** One rule. */
export type InventoryCheck = (facts: InventoryFacts) => Blocker[];

const LEGACY_SPEC_KEYS = /^[A-Z]/;

/** Spec keys written by Pod Identity before v1.6.0 (`ClientID`, `ResourceID`, `AzureIdentity`, `Selector`, …). */
function legacyKeys(obj: KubeObject): string[] {
  const spec = obj.spec;
  if (!spec || typeof spec !== 'object') return [];
  return Object.keys(spec as object).filter((k) => LEGACY_SPEC_KEYS.test(k));
}

export const podIdentityInstalled: InventoryCheck = ({ reading }) =>
  !reading.identities || !reading.bindings
    ? [
        {
          code: 'pod-identity-not-installed',
          subject: 'crd azureidentities.aadpodidentity.k8s.io',
          message: 'the cluster does not serve the AAD Pod Identity CRDs, so there is nothing to migrate from standard mode',
          fix: 'Check the kubeconfig context (--context) points at the cluster that runs AAD Pod Identity.',
        },
      ]
    : [];

export const exactlyOneNmi: InventoryCheck = ({ analysis: { nmis } }) => {
  if (nmis.length === 0) return [{ code: 'nmi-not-found', subject: 'daemonset nmi', message: 'no DaemonSet runs the AAD Pod Identity NMI image', fix: 'Check --context; this tool migrates an existing standard-mode install in place.' }];
  if (nmis.length > 1) {
    return [
      {
        code: 'nmi-ambiguous',
        subject: nmis.map((n) => `daemonset ${n.namespace}/${n.name}`).join(', '),
        message: 'more than one DaemonSet runs NMI; two NMIs cannot share a node (host ports 2579, 8085, 9090)',
        fix: 'Remove the extra NMI DaemonSet so exactly one remains, then plan again.',
      },
    ];
  }
  return [];
};

export const nmiSupportsManagedMode: InventoryCheck = ({ analysis: { nmi } }) => {
  if (!nmi) return [];
  if (!nmi.version) {
    return [{ code: 'nmi-version-unknown', subject: `daemonset ${nmi.namespace}/${nmi.name}`, message: `cannot tell the NMI version from image ${nmi.image}; managed mode needs v1.6.0 or newer and the --host-ip rule depends on it`, fix: 'Run an NMI image tagged with its release (e.g. nmi:v1.8.17).' }];
  }
  if (!versionAtLeast(nmi.version, MIN_MANAGED_VERSION)) {
    return [
      {
        code: 'nmi-too-old',
        subject: `daemonset ${nmi.namespace}/${nmi.name}`,
        message: `NMI ${nmi.version} has no managed mode (needs ${formatVersion(MIN_MANAGED_VERSION)} or newer)`,
        fix: nmi.install === 'helm' ? helmUpgradeFix(nmi) : 'Upgrade AAD Pod Identity (NMI and MIC) to v1.8.17 in standard mode first, let MIC rewrite its objects, then plan again.',
      },
    ];
  }
  return [];
};

/** The chart release that ships NMI and MIC v1.8.17 (`Chart.yaml` appVersion 1.8.17). */
export const CHART_FOR_V1_8_17 = '4.1.18';

/** The chart's name from its `helm.sh/chart` label (`aad-pod-identity-4.0.0` -> `aad-pod-identity`). */
function chartNameOf(obj: KubeObject): string {
  const label = obj.metadata?.labels?.['helm.sh/chart'];
  return label?.replace(/-v?\d+\.\d+\.\d+.*$/, '') || 'aad-pod-identity';
}

/** The upgrade of a Helm install to v1.8.17 in standard mode, for the release the NMI belongs to. */
function helmUpgradeFix(nmi: PodIdentityWorkload): string {
  const release = nmi.helmRelease?.name ?? '<release>';
  const namespace = nmi.helmRelease?.namespace ?? nmi.namespace;
  const chart = chartNameOf(nmi.object);
  return (
    `Upgrade the Helm release ${release} to v1.8.17 in standard mode first: ` +
    `helm repo add aad-pod-identity https://raw.githubusercontent.com/Azure/aad-pod-identity/master/charts && ` +
    `helm upgrade ${release} aad-pod-identity/${chart} -n ${namespace} --reuse-values --version ${CHART_FOR_V1_8_17} --set operationMode=standard; ` +
    'wait until MIC has restarted (it rewrites its objects once), then plan again.'
  );
}

export const noLegacyFieldNames: InventoryCheck = ({ reading }) =>
  [...(reading.identities ?? []), ...(reading.bindings ?? [])].flatMap((o) => {
    const keys = legacyKeys(o);
    if (!keys.length) return [];
    return [
      {
        code: 'legacy-field-names',
        subject: `${o.kind?.toLowerCase()} ${nsName(o)}`,
        message: `spec uses field names from before v1.6.0 (${keys.join(', ')}); managed-mode NMI does not read them`,
        fix: `Let MIC v1.6.0+ rewrite it once (restart MIC), or edit it: kubectl edit ${o.kind?.toLowerCase()} -n ${o.metadata?.namespace} ${o.metadata?.name} (e.g. ClientID -> clientID, ResourceID -> resourceID, AzureIdentity -> azureIdentity, Selector -> selector).`,
      },
    ];
  });

export const copiesPossible: InventoryCheck = ({ analysis }) =>
  analysis.clashes.map((c) =>
    c.kind === 'AzureIdentityBinding'
      ? {
          code: 'copy-name-clash',
          subject: `azureidentitybinding ${c.namespace}/${c.name}`,
          message: `pods of ${c.service} use binding ${c.binding} from another namespace, and ${c.namespace} already has a different binding of that name, so it cannot be copied`,
          fix: `Create a binding for selector ${c.selector} in ${c.namespace} by hand (kubectl -n ${c.namespace} apply -f ...), then plan again.`,
        }
      : {
          code: 'copy-name-clash',
          subject: `azureidentity ${c.namespace}/${c.name}`,
          message: `binding ${c.binding} needs identity ${c.name} in ${c.namespace}, where an AzureIdentity of that name points at a different identity`,
          fix: `Rename one of them, or point the binding at the right identity, then plan again.`,
        },
  );

export const poolsBackedByVmss: InventoryCheck = ({ analysis }) =>
  analysis.poolProblems
    .filter((p) => p.needed)
    .map((p) => ({
      code: 'pool-not-vmss',
      subject: `pool ${p.pool}`,
      message: `pods with pod identities run in pool ${p.pool}, but it is not backed by a VMSS (${p.problem}); identities cannot be assigned to it`,
      fix: `Move those workloads to a VMSS pool (nodeSelector kubernetes.azure.com/agentpool=<pool>), or replace the pool with a VMSS pool, then plan again.`,
    }));

export const identitiesHaveResourceId: InventoryCheck = ({ analysis }) =>
  analysis.assignable
    .filter((x) => !x.resourceId)
    .map((x) => ({
      code: 'identity-without-resource-id',
      subject: `azureidentity ${nsName(x.object)}`,
      message: 'a user-assigned identity (type 0) without spec.resourceID cannot be assigned to a VMSS',
      fix: `Set spec.resourceID: kubectl edit azureidentity -n ${x.object.metadata?.namespace} ${x.object.metadata?.name}`,
    }));

export const identitiesAssignable: InventoryCheck = ({ analysis, permissions }) =>
  analysis.assignable.flatMap((x) => {
    const perm = x.resourceId ? permissions.get(x.resourceId) : undefined;
    if (perm?.allowed !== false) return [];
    return [
      {
        code: 'cannot-assign-identity',
        subject: `azureidentity ${nsName(x.object)}`,
        message: `the caller may not assign ${x.resourceId} to a scale set (${perm.reason}); ARM would answer LinkedAuthorizationFailed`,
        fix: `Grant "Managed Identity Operator" on it: az role assignment create --role "Managed Identity Operator" --assignee <your principal> --scope ${x.resourceId}`,
      },
    ];
  });

/** Every rule, in the order their blockers are listed. */
export const INVENTORY_CHECKS: readonly InventoryCheck[] = [
  podIdentityInstalled,
  exactlyOneNmi,
  nmiSupportsManagedMode,
  noLegacyFieldNames,
  copiesPossible,
  poolsBackedByVmss,
  identitiesHaveResourceId,
  identitiesAssignable,
];

/** Runs every rule. */
export function inventoryBlockers(facts: InventoryFacts): Blocker[] {
  return INVENTORY_CHECKS.flatMap((check) => check(facts));
}
