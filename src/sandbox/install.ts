/**
 * Builds the objects a scenario's cluster starts with: AAD Pod Identity installed from the
 * upstream manifests (raw `kubectl apply`, or as the Helm chart renders it), identities and
 * bindings, workloads with their PodDisruptionBudgets and Services.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import type { Scenario, ScenarioIdentity } from './scenario.ts';
import { compareVersion } from './scenario.ts';
import type { KObject } from './store.ts';

const MANIFESTS = join(dirname(fileURLToPath(import.meta.url)), 'manifests');

/** Parses a multi-document YAML manifest, skipping empty documents. */
export function parseManifest(text: string): KObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJSON())
    .filter((o): o is KObject => !!o && typeof o === 'object' && 'kind' in o);
}

export function readManifest(file: string): KObject[] {
  return parseManifest(readFileSync(join(MANIFESTS, file), 'utf8'));
}

/** The upstream standard-mode manifest closest to (not newer than) the wanted version. */
function standardManifestFor(version: string): string {
  if (compareVersion(version, 'v1.6.3') < 0) return 'standard-v1.6.0.yaml';
  if (compareVersion(version, 'v1.8.0') < 0) return 'standard-v1.6.3.yaml';
  return 'standard-v1.8.17.yaml';
}

/** Image references as each release published them (`k8s/...:1.6.0` up to 1.6.x, `oss/azure/...:v1.x` later). */
export function podIdentityImage(component: 'nmi' | 'mic', version: string): string {
  if (compareVersion(version, 'v1.7.0') < 0) return `mcr.microsoft.com/k8s/aad-pod-identity/${component}:${version.replace(/^v/, '')}`;
  return `mcr.microsoft.com/oss/azure/aad-pod-identity/${component}:${version}`;
}

const HELM_CHART_VERSION = '4.1.18';

/**
 * The Pod Identity objects of a standard-mode install. CRDs always come from the newest
 * manifest (`apiextensions.k8s.io/v1`): Kubernetes 1.22+ no longer serves v1beta1, so any
 * cluster that still runs an older Pod Identity has had its CRDs upgraded.
 */
export function podIdentityObjects(s: Scenario): KObject[] {
  const { version, namespace, install } = s.podIdentity;
  const crds = readManifest('standard-v1.8.17.yaml').filter((o) => o.kind === 'CustomResourceDefinition');
  const rest = readManifest(standardManifestFor(version)).filter((o) => o.kind !== 'CustomResourceDefinition');
  const exceptions = readManifest('mic-exception.yaml');
  const out: KObject[] = [];
  for (const o of [...crds, ...rest, ...exceptions]) {
    const obj = structuredClone(o);
    // NMI's objects may live apart from MIC's (e.g. NMI in kube-system, MIC in its own namespace).
    const target = /nmi/.test(obj.metadata.name ?? '') || obj.kind === 'DaemonSet' ? s.podIdentity.nmiNamespace : /mic/.test(obj.metadata.name ?? '') || obj.kind === 'Deployment' ? s.podIdentity.micNamespace : namespace;
    if (obj.metadata.namespace === 'default') obj.metadata.namespace = target;
    if (obj.kind === 'ClusterRoleBinding') {
      for (const subj of obj.subjects ?? []) if (subj.namespace === 'default') subj.namespace = /nmi/.test(subj.name ?? '') ? s.podIdentity.nmiNamespace : /mic/.test(subj.name ?? '') ? s.podIdentity.micNamespace : namespace;
    }
    if (obj.kind === 'DaemonSet' || obj.kind === 'Deployment') {
      const c = obj.spec.template.spec.containers[0];
      c.image = podIdentityImage(obj.kind === 'DaemonSet' ? 'nmi' : 'mic', version);
      if (obj.kind === 'Deployment') {
        obj.spec.replicas = s.podIdentity.micReplicas;
        const extra = [...s.podIdentity.micExtraArgs];
        if (s.podIdentity.immutableUserMsis.length) extra.push(`--immutable-user-msis=${s.podIdentity.immutableUserMsis.join(',')}`);
        c.args = [...(c.args ?? []), ...extra];
      }
    }
    out.push(obj);
  }
  return install === 'helm' ? out.map((o) => helmify(o, s)) : out;
}

const HELM_NAMES: Record<string, string> = {
  'DaemonSet/nmi': 'aad-pod-identity-nmi',
  'Deployment/mic': 'aad-pod-identity-mic',
  'ServiceAccount/aad-pod-id-nmi-service-account': 'aad-pod-identity-nmi',
  'ServiceAccount/aad-pod-id-mic-service-account': 'aad-pod-identity-mic',
  'ClusterRole/aad-pod-id-nmi-role': 'aad-pod-identity-nmi',
  'ClusterRole/aad-pod-id-mic-role': 'aad-pod-identity-mic',
  'ClusterRoleBinding/aad-pod-id-nmi-binding': 'aad-pod-identity-nmi',
  'ClusterRoleBinding/aad-pod-id-mic-binding': 'aad-pod-identity-mic',
  'AzurePodIdentityException/mic-exception': 'aad-pod-identity-mic',
};

/**
 * Rewrites a raw-manifest object the way `helm install aad-pod-identity` of chart 4.1.18
 * renders it: chart names, Helm ownership labels and annotations, NMI's explicit
 * `--operation-mode=standard` and `--kubelet-config` args.
 */
function helmify(o: KObject, s: Scenario): KObject {
  if (o.kind === 'CustomResourceDefinition') {
    // Helm installs crds/ once with the chart's labels and never manages them afterwards.
    o.metadata.labels = { ...o.metadata.labels, 'app.kubernetes.io/managed-by': 'Helm', 'helm.sh/chart': 'aad-pod-identity' };
    return o;
  }
  const key = `${o.kind}/${o.metadata.name}`;
  const renamed = HELM_NAMES[key];
  if (renamed) o.metadata.name = renamed;
  o.metadata.labels = {
    ...o.metadata.labels,
    'app.kubernetes.io/name': 'aad-pod-identity',
    'app.kubernetes.io/instance': 'aad-pod-identity',
    'app.kubernetes.io/managed-by': 'Helm',
    'helm.sh/chart': `aad-pod-identity-${HELM_CHART_VERSION}`,
  };
  o.metadata.annotations = { ...o.metadata.annotations, 'meta.helm.sh/release-name': 'aad-pod-identity', 'meta.helm.sh/release-namespace': s.podIdentity.namespace };
  if (o.kind === 'ClusterRoleBinding') {
    o.roleRef.name = HELM_NAMES[`ClusterRole/${o.roleRef.name}`] ?? o.roleRef.name;
    for (const subj of o.subjects ?? []) subj.name = HELM_NAMES[`ServiceAccount/${subj.name}`] ?? subj.name;
  }
  if (o.kind === 'DaemonSet' || o.kind === 'Deployment') {
    const pod = o.spec.template.spec;
    pod.serviceAccountName = HELM_NAMES[`ServiceAccount/${pod.serviceAccountName}`] ?? pod.serviceAccountName;
    const c = pod.containers[0];
    if (o.kind === 'DaemonSet' && compareVersion(s.podIdentity.version, 'v1.6.0') >= 0) {
      c.args = [...c.args, '--operation-mode=standard', '--kubelet-config=/etc/default/kubelet'];
    }
    // What the chart's templates make of its values.
    const v = s.podIdentity.helmValues;
    const part = o.kind === 'DaemonSet' ? v.nmi : v.mic;
    if (v.forceNamespaced) c.args = [...c.args, '--forceNamespaced=true'];
    if (o.kind === 'DaemonSet' && v.nmi?.allowNetworkPluginKubenet) c.args = [...c.args, '--allow-network-plugin-kubenet=true'];
    if (o.kind === 'DaemonSet' && v.nmi?.probePort) c.args = [...c.args.filter((a: string) => !a.startsWith('--http-probe-port')), `--http-probe-port=${v.nmi.probePort}`];
    if (o.kind === 'Deployment' && v.mic?.syncRetryDuration) c.args = [...c.args, `--sync-retry-duration=${v.mic.syncRetryDuration}`];
    if (o.kind === 'Deployment' && v.mic?.logVerbosity !== undefined) c.args = [...c.args.filter((a: string) => !/^--v=/.test(a)), `--v=${v.mic.logVerbosity}`];
    if (part?.nodeSelector) pod.nodeSelector = { ...(pod.nodeSelector ?? {}), ...part.nodeSelector };
    if (part?.tolerations) pod.tolerations = [...(pod.tolerations ?? []), ...part.tolerations];
  }
  return o;
}

function identityObject(i: ScenarioIdentity, resourceId: string): KObject {
  const spec: Record<string, unknown> = i.legacyFieldNames
    ? { type: i.type, ResourceID: resourceId, ClientID: i.clientId }
    : { type: i.type, resourceID: resourceId, clientID: i.clientId };
  return {
    apiVersion: 'aadpodidentity.k8s.io/v1',
    kind: 'AzureIdentity',
    metadata: { name: i.name, namespace: i.namespace },
    spec,
  };
}

function bindingObject(i: ScenarioIdentity): KObject {
  const spec: Record<string, unknown> = i.legacyFieldNames
    ? { AzureIdentity: i.name, Selector: i.selector }
    : { azureIdentity: i.name, selector: i.selector };
  return {
    apiVersion: 'aadpodidentity.k8s.io/v1',
    kind: 'AzureIdentityBinding',
    metadata: { name: i.bindingName, namespace: i.namespace },
    spec,
  };
}

/** Resource id of a scenario identity (user-assigned identities live in their resource group). */
export function identityResourceId(s: Scenario, i: Pick<ScenarioIdentity, 'name' | 'resourceGroup'>): string {
  return `/subscriptions/${s.subscriptionId}/resourcegroups/${i.resourceGroup}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${i.name}`;
}

/** AzureIdentity + AzureIdentityBinding objects for every identity with a binding. */
export function identityObjects(s: Scenario): KObject[] {
  const out: KObject[] = [];
  for (const i of s.identities) {
    if (i.azureOnly) continue;
    out.push(identityObject(i, identityResourceId(s, i)));
    if (i.selector) out.push(bindingObject(i));
  }
  return out;
}

/** Deployments, PodDisruptionBudgets and Services of the scenario's workloads. */
export function workloadObjects(s: Scenario): KObject[] {
  const out: KObject[] = [];
  for (const w of s.workloads) {
    const labels: Record<string, string> = { app: w.name };
    if (w.binding) labels.aadpodidbinding = w.binding;
    const podSpec = {
      ...(w.pools.length === 1
        ? { nodeSelector: { 'kubernetes.azure.com/agentpool': w.pools[0] } }
        : { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.azure.com/agentpool', operator: 'In', values: w.pools }] }] } } } }),
      ...(w.hostNetwork ? { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' } : {}),
      terminationGracePeriodSeconds: 10,
      ...(w.volumes.length ? { volumes: w.volumes.map((v) => ({ name: v.name, ...(v.emptyDir ? { emptyDir: v.emptyDir } : { hostPath: v.hostPath }) })) } : {}),
      containers: [
        {
          name: w.name,
          image: `contoso.azurecr.io/${w.namespace}/${w.name}:1.4.2`,
          ports: w.port ? [{ containerPort: w.port, name: 'http' }] : undefined,
          env: [{ name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } }],
          ...(w.volumes.length ? { volumeMounts: w.volumes.map((v) => ({ name: v.name, mountPath: `/mnt/${v.name}` })) } : {}),
        },
      ],
    };
    if (w.kind === 'Pod') {
      // Bare pods: nobody re-creates them after an eviction or a reimage.
      for (let i = 0; i < w.replicas; i++) {
        out.push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: w.replicas === 1 ? w.name : `${w.name}-${i}`, namespace: w.namespace, labels }, spec: structuredClone(podSpec) });
      }
    } else {
      out.push({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: w.name, namespace: w.namespace, labels: { app: w.name } },
        spec: { replicas: w.replicas, selector: { matchLabels: { app: w.name } }, template: { metadata: { labels }, spec: podSpec } },
      });
    }
    if (w.pdb) {
      out.push({
        apiVersion: 'policy/v1',
        kind: 'PodDisruptionBudget',
        metadata: { name: `${w.name}-pdb`, namespace: w.namespace },
        spec: { ...w.pdb, selector: { matchLabels: { app: w.name } } },
      });
    }
    if (w.port) {
      out.push({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: w.name, namespace: w.namespace },
        spec: { selector: { app: w.name }, ports: [{ port: 80, targetPort: w.port, protocol: 'TCP', name: 'http' }] },
      });
    }
  }
  return out;
}
