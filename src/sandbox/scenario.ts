/**
 * Sandbox scenario files: what simulated cluster to build.
 *
 * A scenario is YAML validated against `scenarios/scenario.schema.json`, then checked for
 * references (a workload's pool exists, a binding's selector is declared, ...). Every error
 * names the file and the field and says what is expected; nothing throws a stack trace at
 * the user. Ids the scenario leaves out (client ids, principal ids) are derived from names,
 * so the same scenario always yields the same cluster.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { describeSchemaError } from '../util/schema-errors.ts';
import type { ScheduledAksOperation } from './aks-operations.ts';

const here = dirname(fileURLToPath(import.meta.url));
/** Folder of the scenario files shipped with the tool. */
export const SCENARIOS_DIR = join(here, '..', '..', 'scenarios');
export const DEFAULT_SCENARIO_PATH = join(SCENARIOS_DIR, 'default.yaml');

export interface ScenarioPool {
  name: string;
  mode: 'System' | 'User';
  count: number;
  vmSize: string;
  maxPodsPerNode: number;
  type: 'VirtualMachineScaleSets' | 'AvailabilitySet';
  preassigned: string[];
}

export interface ScenarioIdentity {
  name: string;
  resourceGroup: string;
  type: 0 | 1 | 2;
  clientId: string;
  principalId: string;
  namespace: string;
  selector?: string;
  bindingName: string;
  legacyFieldNames: boolean;
  denyAssign: boolean;
  azureOnly: boolean;
}

export interface ScenarioWorkload {
  name: string;
  namespace: string;
  /** Pools the pods may run on: one (nodeSelector) or several (required node affinity). */
  pools: string[];
  replicas: number;
  binding?: string;
  pdb?: { minAvailable?: number | string; maxUnavailable?: number | string };
  port?: number;
  /** `Pod`: bare pods without a controller. */
  kind: 'Deployment' | 'Pod';
  hostNetwork: boolean;
  volumes: { name: string; emptyDir?: { medium?: string; sizeLimit?: string }; hostPath?: { path: string; type?: string } }[];
}

export interface ScenarioChurn {
  namespace: string;
  pool?: string;
  binding: string;
  everySeconds: number;
  durationSeconds: number;
}

/** A federated identity credential present when the sandbox starts. */
export interface ScenarioFederatedCredential {
  identity: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  /** Undefined: the cluster's issuer URL. */
  issuer?: string;
  audience: string;
}

/** Microsoft Entra Workload ID settings of the managed cluster. */
export interface ScenarioWorkloadIdentity {
  oidcIssuerEnabled: boolean;
  enabled: boolean;
  propagationSeconds: number;
  enableSeconds: number;
  credentialWriteSeconds: number;
  federatedCredentials: ScenarioFederatedCredential[];
}

export interface ScenarioLatency {
  vmssIdentityUpdateSeconds: number;
  reimageSeconds: number;
  deleteInstanceSeconds: number;
  micAssignmentSeconds: number;
  nmiStartupSeconds: number;
}

/** The aad-pod-identity chart values a scenario can set. */
export interface HelmValues {
  forceNamespaced?: boolean;
  nmi?: { allowNetworkPluginKubenet?: boolean; probePort?: number; nodeSelector?: Record<string, string>; tolerations?: Record<string, unknown>[] };
  mic?: { logVerbosity?: number; syncRetryDuration?: string; nodeSelector?: Record<string, string>; tolerations?: Record<string, unknown>[] };
}

/** A validated scenario with every default filled in. */
export interface Scenario {
  name: string;
  description?: string;
  source: string;
  timeScale: number;
  subscriptionId: string;
  tenantId: string;
  cluster: { name: string; resourceGroup: string; location: string; kubernetesVersion: string; nodeResourceGroup: string };
  podIdentity: {
    install: 'raw' | 'helm';
    version: string;
    /** Default namespace of NMI and MIC. */
    namespace: string;
    nmiNamespace: string;
    micNamespace: string;
    micReplicas: number;
    immutableUserMsis: string[];
    micExtraArgs: string[];
    /** Chart values (install: helm). */
    helmValues: HelmValues;
  };
  pools: ScenarioPool[];
  namespaces: string[];
  identities: ScenarioIdentity[];
  workloads: ScenarioWorkload[];
  churn: ScenarioChurn[];
  latency: ScenarioLatency;
  legacyInstanceModel: boolean;
  faults: Record<string, unknown>[];
  /** AKS operations run during the rehearsal (see `aks-operations.ts`). */
  aksOperations: ScheduledAksOperation[];
  workloadIdentity: ScenarioWorkloadIdentity;
  /** Extra Kubernetes users (the admin, `readonly` and `operator` users always exist). */
  users: ScenarioUser[];
}

/** A Kubernetes user of the scenario: a bearer token, a kubeconfig context, RBAC bindings. */
export interface ScenarioUser {
  name: string;
  groups: string[];
  clusterRoles: string[];
  rules: { verbs: string[]; apiGroups?: string[]; resources?: string[]; resourceNames?: string[]; nonResourceURLs?: string[] }[];
  namespace?: string;
}

/** A scenario file that cannot be used; `problems` lists every field at fault. */
export class ScenarioError extends Error {
  readonly problems: string[];
  readonly hint: string;
  constructor(source: string, problems: string[]) {
    super(`scenario ${source} is not valid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ScenarioError';
    this.problems = problems;
    this.hint = `Fix the fields above; the format is described by ${join(SCENARIOS_DIR, 'scenario.schema.json')}.`;
  }
}

/** A GUID derived from a string, stable across runs (name-based, like a v5 UUID). */
export function stableGuid(seed: string): string {
  const h = createHash('sha1').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16], 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

let validator: ReturnType<Ajv['compile']> | undefined;
function schemaValidator(): ReturnType<Ajv['compile']> {
  if (!validator) {
    const schema = JSON.parse(readFileSync(join(SCENARIOS_DIR, 'scenario.schema.json'), 'utf8'));
    validator = new Ajv({ allErrors: true, strict: false }).compile(schema);
  }
  return validator;
}

/** Reads, validates and normalises a scenario file. Throws {@link ScenarioError} on any problem. */
export function loadScenarioFile(path: string): Scenario {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ScenarioError(path, [code === 'ENOENT' ? 'file not found; pass an existing file to --scenario' : `cannot read the file: ${(e as Error).message}`]);
  }
  return parseScenario(text, path);
}

/** Validates and normalises scenario YAML text. */
export function parseScenario(text: string, source = '<scenario>'): Scenario {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (e) {
    if (e instanceof YAMLParseError) {
      const pos = e.linePos?.[0];
      throw new ScenarioError(source, [`YAML syntax error${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}: ${e.message.split('\n')[0]}`]);
    }
    throw e;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ScenarioError(source, ['the file must hold a YAML mapping with apiVersion: podid-migrate.io/v1 and kind: SandboxScenario']);
  }
  const validate = schemaValidator();
  if (!validate(doc)) {
    const seen = new Set<string>();
    const problems: string[] = [];
    for (const e of validate.errors ?? []) {
      const msg = describeSchemaError(e, doc);
      if (!seen.has(msg)) problems.push(msg);
      seen.add(msg);
    }
    throw new ScenarioError(source, problems);
  }
  return normalise(doc as any, source);
}

function normalise(raw: any, source: string): Scenario {
  const problems: string[] = [];
  const subscriptionId = raw.subscriptionId ?? stableGuid(`subscription:${raw.name}`);
  const tenantId = raw.tenantId ?? stableGuid(`tenant:${raw.name}`);
  const location = raw.cluster.location ?? 'westeurope';
  const cluster = {
    name: raw.cluster.name,
    resourceGroup: raw.cluster.resourceGroup,
    location,
    kubernetesVersion: raw.cluster.kubernetesVersion ?? '1.32.4',
    nodeResourceGroup: `MC_${raw.cluster.resourceGroup}_${raw.cluster.name}_${location}`,
  };
  const pi = raw.podIdentity ?? {};
  const podIdentity = {
    install: pi.install ?? 'raw',
    version: pi.version ?? 'v1.8.17',
    namespace: pi.namespace ?? 'default',
    nmiNamespace: pi.nmiNamespace ?? pi.namespace ?? 'default',
    micNamespace: pi.micNamespace ?? pi.namespace ?? 'default',
    micReplicas: pi.micReplicas ?? 2,
    immutableUserMsis: pi.immutableUserMsis ?? [],
    micExtraArgs: pi.micExtraArgs ?? [],
    helmValues: pi.helmValues ?? {},
  };
  if (pi.helmValues && (pi.install ?? 'raw') !== 'helm') problems.push('podIdentity.helmValues: only used with install: helm (set podIdentity.install: helm, or drop helmValues)');
  if (compareVersion(podIdentity.version, 'v1.6.0') < 0 && podIdentity.version) {
    // Still loadable: the migration's inventory is what must refuse it (NMI < v1.6.0 blocker).
  }
  const pools: ScenarioPool[] = raw.pools.map((p: any) => ({
    name: p.name,
    mode: p.mode ?? 'User',
    count: p.count,
    vmSize: p.vmSize ?? 'Standard_D4s_v5',
    maxPodsPerNode: p.maxPodsPerNode ?? 110,
    type: p.type ?? 'VirtualMachineScaleSets',
    preassigned: p.preassigned ?? [],
  }));
  dupes(pools.map((p) => p.name), 'pools', problems);
  if (!pools.some((p) => p.mode === 'System')) pools[0].mode = 'System';

  const declaredNs = new Set<string>(raw.namespaces ?? []);
  const identities: ScenarioIdentity[] = raw.identities.map((i: any) => ({
    name: i.name,
    resourceGroup: i.resourceGroup ?? cluster.resourceGroup,
    type: i.type ?? 0,
    clientId: i.clientId ?? stableGuid(`client:${subscriptionId}:${i.name}`),
    principalId: i.principalId ?? stableGuid(`principal:${subscriptionId}:${i.name}`),
    namespace: i.namespace ?? 'default',
    selector: i.selector,
    bindingName: i.bindingName ?? (i.selector ? `${i.name}-binding` : ''),
    legacyFieldNames: i.legacyFieldNames ?? false,
    denyAssign: i.denyAssign ?? false,
    azureOnly: i.azureOnly ?? false,
  }));
  dupes(identities.map((i) => i.name.toLowerCase()), 'identities', problems);
  const identityNames = new Set(identities.map((i) => i.name));
  const selectors = new Set(identities.filter((i) => i.selector).map((i) => i.selector!));
  const poolNames = new Set(pools.map((p) => p.name));
  pools.forEach((p, idx) =>
    p.preassigned.forEach((name, j) => {
      if (!identityNames.has(name) && !/^omsagent-|^azurepolicy-|^azurekeyvaultsecretsprovider-/.test(name)) {
        problems.push(`pools[${idx}].preassigned[${j}]: identity "${name}" is not declared under identities (declare it with azureOnly: true for an add-on identity)`);
      }
    }),
  );
  identities.forEach((i) => {
    if (i.namespace) declaredNs.add(i.namespace);
  });

  const workloads: ScenarioWorkload[] = (raw.workloads ?? []).map((w: any, idx: number) => {
    const wanted: string[] = w.pools ?? [w.pool];
    wanted.forEach((pool, j) => {
      const field = w.pools ? `workloads[${idx}].pools[${j}]` : `workloads[${idx}].pool`;
      if (!poolNames.has(pool)) problems.push(`${field}: no pool named "${pool}" (pools: ${[...poolNames].join(', ')})`);
    });
    if (w.binding && !selectors.has(w.binding)) problems.push(`workloads[${idx}].binding: no identity declares selector "${w.binding}"`);
    declaredNs.add(w.namespace);
    if (w.kind === 'Pod' && w.pdb) problems.push(`workloads[${idx}].pdb: a PodDisruptionBudget needs pods with a controller; drop pdb or use kind: Deployment`);
    return { name: w.name, namespace: w.namespace, pools: wanted, replicas: w.replicas ?? 1, binding: w.binding, pdb: w.pdb, port: w.port, kind: w.kind ?? 'Deployment', hostNetwork: w.hostNetwork ?? false, volumes: w.volumes ?? [] };
  });
  dupes(workloads.map((w) => `${w.namespace}/${w.name}`), 'workloads', problems);
  const churn: ScenarioChurn[] = (raw.churn ?? []).map((c: any, idx: number) => {
    if (c.pool && !poolNames.has(c.pool)) problems.push(`churn[${idx}].pool: no pool named "${c.pool}"`);
    if (!selectors.has(c.binding)) problems.push(`churn[${idx}].binding: no identity declares selector "${c.binding}"`);
    declaredNs.add(c.namespace);
    return { namespace: c.namespace, pool: c.pool, binding: c.binding, everySeconds: c.everySeconds, durationSeconds: c.durationSeconds ?? 30 };
  });
  const workloadIdentity = normaliseWorkloadIdentity(raw.workloadIdentity ?? {}, identityNames, problems);
  const users: ScenarioUser[] = (raw.users ?? []).map((u: any, idx: number) => {
    if (u.namespace) declaredNs.add(u.namespace);
    if (['admin', 'readonly', 'operator'].includes(u.name)) problems.push(`users[${idx}].name: "${u.name}" is a built-in sandbox user; pick another name`);
    return { name: u.name, groups: u.groups ?? [], clusterRoles: u.clusterRoles ?? [], rules: u.rules ?? [], namespace: u.namespace };
  });
  dupes(users.map((u) => u.name), 'users', problems);
  if (problems.length) throw new ScenarioError(source, problems);
  declaredNs.add(podIdentity.namespace);
  declaredNs.add(podIdentity.nmiNamespace);
  declaredNs.add(podIdentity.micNamespace);
  for (const c of workloadIdentity.federatedCredentials) declaredNs.add(c.namespace);
  const lat = raw.latency ?? {};
  return {
    name: raw.name,
    description: raw.description,
    source,
    timeScale: raw.timeScale ?? 10,
    subscriptionId,
    tenantId,
    cluster,
    podIdentity,
    pools,
    namespaces: [...declaredNs].filter((n) => !['default', 'kube-system', 'kube-public', 'kube-node-lease'].includes(n)),
    identities,
    workloads,
    churn,
    latency: {
      vmssIdentityUpdateSeconds: lat.vmssIdentityUpdateSeconds ?? 45,
      reimageSeconds: lat.reimageSeconds ?? 90,
      deleteInstanceSeconds: lat.deleteInstanceSeconds ?? 30,
      micAssignmentSeconds: lat.micAssignmentSeconds ?? 4,
      nmiStartupSeconds: lat.nmiStartupSeconds ?? 3,
    },
    legacyInstanceModel: raw.legacyInstanceModel ?? false,
    faults: raw.faults ?? [],
    aksOperations: raw.aksOperations ?? [],
    workloadIdentity,
    users,
  };
}

function normaliseWorkloadIdentity(raw: any, identityNames: Set<string>, problems: string[]): ScenarioWorkloadIdentity {
  const out: ScenarioWorkloadIdentity = {
    oidcIssuerEnabled: raw.oidcIssuerEnabled ?? false,
    enabled: raw.enabled ?? false,
    propagationSeconds: raw.propagationSeconds ?? 60,
    enableSeconds: raw.enableSeconds ?? 90,
    credentialWriteSeconds: raw.credentialWriteSeconds ?? 2,
    federatedCredentials: [],
  };
  if (out.enabled && !out.oidcIssuerEnabled) problems.push('workloadIdentity.enabled: workload identity needs the OIDC issuer; set workloadIdentity.oidcIssuerEnabled: true');
  const perIdentity = new Map<string, Set<string>>();
  (raw.federatedCredentials ?? []).forEach((c: any, i: number) => {
    const field = `workloadIdentity.federatedCredentials[${i}]`;
    if (!identityNames.has(c.identity)) problems.push(`${field}.identity: no identity named "${c.identity}" is declared under identities`);
    const seen = perIdentity.get(c.identity) ?? new Set<string>();
    perIdentity.set(c.identity, seen);
    const key = `${c.issuer ?? ''}|${c.namespace}/${c.serviceAccount}`;
    if (seen.has(key)) problems.push(`${field}: identity "${c.identity}" already has a credential for issuer and subject system:serviceaccount:${c.namespace}:${c.serviceAccount}`);
    if (seen.size >= 20) problems.push(`${field}: identity "${c.identity}" would have more than 20 federated identity credentials (Azure's limit)`);
    seen.add(key);
    out.federatedCredentials.push({ identity: c.identity, name: c.name, namespace: c.namespace, serviceAccount: c.serviceAccount, issuer: c.issuer, audience: c.audience ?? 'api://AzureADTokenExchange' });
  });
  return out;
}

function dupes(names: string[], field: string, problems: string[]): void {
  const seen = new Set<string>();
  names.forEach((n, i) => {
    if (seen.has(n)) problems.push(`${field}[${i}]: "${n}" is declared twice`);
    seen.add(n);
  });
}

/** Compares `v1.2.3`-style versions; returns <0, 0, >0. */
export function compareVersion(a: string, b: string): number {
  const pa = a.replace(/^v/, '').split('.').map(Number);
  const pb = b.replace(/^v/, '').split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}
