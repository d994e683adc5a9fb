/**
 * Step 1, `inventory`: reads what the migration will touch (identities, bindings, the pods
 * that use them and their services, node pools and their scale sets, the NMI and MIC
 * workloads), reports every blocker at once, copies bindings/identities into the namespaces
 * of the pods that use them from elsewhere (managed mode matches only within a namespace), and
 * writes the inventory file the later steps work from.
 *
 * Reads are list calls only (paged by the gateway), joined in memory: never one GET per pod.
 */
import type { AzureGateway, ManagedClusterInfo, ScaleSet } from '../azure/gateway.ts';
import type { KubeGateway, KubeObject } from '../kube/gateway.ts';
import type { Blocker, CheckResult, PlannedAction, Step, StepContext, StepOutcome, StepPlan } from '../engine/step.ts';
import { PreconditionError } from '../engine/errors.ts';
import {
  asInventory,
  defaultTestCases,
  identityKey,
  inventoryChanges,
  keepOperatorEdits,
  loadInventory,
  validateInventory,
  writeInventory,
  type InventoryDocument,
  type InventoryIdentity,
  type InventoryPool,
  type InventoryService,
} from './inventory-model.ts';
import {
  COPIED_FROM_LABEL,
  MIN_MANAGED_VERSION,
  findMicDeployments,
  findNmiDaemonSets,
  formatVersion,
  versionAtLeast,
  type PodIdentityWorkload,
} from './pod-identity.ts';
import { PROBE_LABEL } from './probe.ts';
import { KINDS } from '../kube/kinds.ts';

/** The context every step of this package runs with. */
export type Ctx = StepContext<KubeGateway, AzureGateway>;

/**
 * Wraps a step so each call gets gateways scoped to that call's signal and deadline: every
 * request and wait then stops when the step is interrupted or runs out of time.
 */
export function withScopedGateways(step: Step<KubeGateway, AzureGateway>): Step<KubeGateway, AzureGateway> {
  const scope = (ctx: Ctx): Ctx => {
    const s = { signal: ctx.signal, deadline: ctx.deadline };
    return { ...ctx, kube: ctx.kube.scoped(s), azure: ctx.azure.scoped(s) };
  };
  return {
    ...step,
    plan: (ctx) => step.plan(scope(ctx)),
    apply: (ctx, plan) => step.apply(scope(ctx), plan),
    check: (ctx) => step.check(scope(ctx)),
    rollback: (ctx) => step.rollback(scope(ctx)),
    ...(step.verifyRollback ? { verifyRollback: (ctx: Ctx) => step.verifyRollback!(scope(ctx)) } : {}),
  };
}

/** Pod label that ties a pod to its AzureIdentityBinding (`spec.selector`). */
export const BINDING_LABEL = 'aadpodidbinding';
/** VMSS tag AKS puts on each pool's scale set. */
export const POOL_TAG = 'aks-managed-poolName';

/** What `setData('podIdentity', …)` records for later steps. */
export interface PodIdentityData {
  nmi: { namespace: string; name: string; install: 'raw' | 'helm'; version?: string };
  mic?: { namespace: string; name: string; replicas: number };
}

/** A planned copy of a binding or identity into a pod's namespace. */
export interface CopyDetails {
  kind: 'AzureIdentity' | 'AzureIdentityBinding';
  from: { namespace: string; name: string };
  /** The object to create (spec as in the source, labelled with {@link COPIED_FROM_LABEL}). */
  object: KubeObject;
}

/** Everything discovery found, with the inventory document it implies. */
export interface Discovery {
  document: InventoryDocument;
  copies: CopyDetails[];
  blockers: Blocker[];
  notes: string[];
  nmi?: PodIdentityWorkload;
  mic?: PodIdentityWorkload;
  /** Volatile counts for summaries (never in plan details). */
  counts: { pods: number; services: number; nodes: number; assigned: number; exceptions: number };
}

/** A pod's top controller: `Deployment payments/api`, `CronJob batch/nightly`, … */
interface ServiceRef {
  kind: string;
  namespace: string;
  name: string;
}

type Owner = NonNullable<NonNullable<KubeObject['metadata']>['ownerReferences']>[number];

function controllerOf(obj: KubeObject): Owner | undefined {
  const refs = obj.metadata?.ownerReferences ?? [];
  return refs.find((r) => r.controller) ?? refs[0];
}

function nsName(o: KubeObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

/**
 * A stable name for a controller with a generated name (bare Jobs from a batch system, bare
 * pods): its `generateName` stem or `app` label, so services do not change with every job.
 */
function stableName(o: KubeObject): string {
  const labels = o.metadata?.labels ?? {};
  const gen = typeof o.metadata?.generateName === 'string' ? (o.metadata.generateName as string).replace(/-+$/, '') : undefined;
  return labels['app.kubernetes.io/name'] ?? labels.app ?? gen ?? o.metadata?.name ?? '';
}

/**
 * Walks owner references up to the top controller using objects listed once (no GET per pod).
 * `object` is the top controller as listed (the pod itself for a bare pod; undefined when an
 * owner is not listed).
 */
function topController(pod: KubeObject, byUid: Map<string, KubeObject>): { ref: ServiceRef; object?: KubeObject } {
  const ns = pod.metadata?.namespace ?? 'default';
  let current: KubeObject = pod;
  for (let depth = 0; depth < 5; depth++) {
    const owner = controllerOf(current);
    if (!owner) break;
    const next = byUid.get(owner.uid);
    if (!next) {
      // Owner not listed (a kind we do not list, or gone): it is still the best name we have.
      return { ref: { kind: owner.kind, namespace: ns, name: owner.kind === 'Job' ? owner.name.replace(/-[a-z0-9]{5,}$/, '') : owner.name } };
    }
    current = next;
  }
  if (current === pod) return { ref: { kind: 'Pod', namespace: ns, name: stableName(pod) }, object: pod };
  const kind = current.kind ?? 'Unknown';
  return { ref: { kind, namespace: ns, name: kind === 'Job' ? stableName(current) : (current.metadata?.name ?? '') }, object: current };
}

// --- Where a pod template may be scheduled ---------------------------------------------------

/** The scheduling-relevant part of a pod spec. */
export interface PlacementSpec {
  nodeSelector?: Record<string, string>;
  affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: NodeSelectorTerm[] } } };
  tolerations?: Toleration[];
}
interface NodeSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Gt' | 'Lt' | string;
  values?: string[];
}
interface NodeSelectorTerm {
  matchExpressions?: NodeSelectorRequirement[];
  matchFields?: NodeSelectorRequirement[];
}
interface Toleration {
  key?: string;
  operator?: 'Equal' | 'Exists';
  value?: string;
  effect?: string;
}
interface Taint {
  key: string;
  value?: string;
  effect: string;
}

function requirementHolds(r: NodeSelectorRequirement, values: Record<string, string>): boolean {
  const has = Object.hasOwn(values, r.key);
  const v = values[r.key];
  switch (r.operator) {
    case 'In':
      return has && (r.values ?? []).includes(v);
    case 'NotIn':
      return !has || !(r.values ?? []).includes(v);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
    case 'Lt': {
      const n = Number(v);
      const bound = Number(r.values?.[0]);
      if (!has || !Number.isInteger(n) || !Number.isInteger(bound)) return false;
      return r.operator === 'Gt' ? n > bound : n < bound;
    }
    default:
      return false;
  }
}

function tolerates(tolerations: readonly Toleration[], taint: Taint): boolean {
  return tolerations.some((t) => {
    if (t.effect && t.effect !== taint.effect) return false;
    // An empty key with Exists tolerates every taint.
    if (!t.key) return t.operator === 'Exists';
    if (t.key !== taint.key) return false;
    return t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '');
  });
}

/**
 * Whether the scheduler may place a pod with `spec` on `node`: every `nodeSelector` label,
 * one of the required node-affinity terms (expressions `In`/`NotIn`/`Exists`/`DoesNotExist`/
 * `Gt`/`Lt` on labels, `matchFields` on `metadata.name`), and every `NoSchedule`/`NoExecute`
 * taint tolerated. A cordon is temporary and ignored.
 */
export function nodeAdmits(spec: PlacementSpec, node: KubeObject): boolean {
  const labels = node.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) if (labels[k] !== v) return false;
  const terms = spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms && terms.length) {
    const fields = { 'metadata.name': node.metadata?.name ?? '' };
    // Terms are ORed, requirements within a term ANDed; a term with no requirement matches nothing.
    const ok = terms.some((t) => {
      const reqs = [...(t.matchExpressions ?? []).map((r) => [r, labels] as const), ...(t.matchFields ?? []).map((r) => [r, fields] as const)];
      return reqs.length > 0 && reqs.every(([r, values]) => requirementHolds(r, values));
    });
    if (!ok) return false;
  }
  const taints = ((node.spec as { taints?: Taint[] } | undefined)?.taints ?? []).filter((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
  return taints.every((t) => tolerates(spec.tolerations ?? [], t));
}

/** True when the spec names no node at all (no `nodeSelector`, no required node affinity): only taints limit it. */
export function placementUnconstrained(spec: PlacementSpec): boolean {
  return Object.keys(spec.nodeSelector ?? {}).length === 0 && !(spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.length);
}

/** Pools (sorted) with at least one node that admits `spec`. Pools with no node cannot be judged and are left out. */
export function poolsAdmitting(spec: PlacementSpec, poolNodes: ReadonlyMap<string, readonly KubeObject[]>): string[] {
  return sorted([...poolNodes.entries()].filter(([, ns]) => ns.some((n) => nodeAdmits(spec, n))).map(([p]) => p));
}

/** The pod template of a controller (CronJob through its job template), or a bare pod's own spec. */
export function podTemplateOf(obj: KubeObject): { metadata?: { labels?: Record<string, string> }; spec?: PlacementSpec } | undefined {
  const spec = obj.spec as { template?: unknown; jobTemplate?: { spec?: { template?: unknown } } } | undefined;
  if (obj.kind === 'Pod') return { metadata: obj.metadata, spec: obj.spec as PlacementSpec };
  if (obj.kind === 'CronJob') return spec?.jobTemplate?.spec?.template as ReturnType<typeof podTemplateOf>;
  return spec?.template as ReturnType<typeof podTemplateOf>;
}

const LEGACY_SPEC_KEYS = /^[A-Z]/;

/** Spec keys written by Pod Identity before v1.6.0 (`ClientID`, `ResourceID`, `AzureIdentity`, `Selector`, …). */
function legacyKeys(obj: KubeObject): string[] {
  const spec = obj.spec;
  if (!spec || typeof spec !== 'object') return [];
  return Object.keys(spec as object).filter((k) => LEGACY_SPEC_KEYS.test(k));
}

interface IdentitySpec {
  type?: number;
  resourceID?: string;
  clientID?: string;
}
interface BindingSpec {
  azureIdentity?: string;
  selector?: string;
}

function specOf<T>(o: KubeObject): T {
  return (o.spec ?? {}) as T;
}

function isCopy(o: KubeObject): boolean {
  return o.metadata?.labels?.[COPIED_FROM_LABEL] !== undefined;
}

/** `azure:///subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachineScaleSets/<vmss>/virtualMachines/<n>` → rg, vmss. */
export function scaleSetFromProviderId(providerId: string | undefined): { resourceGroup: string; name: string } | undefined {
  if (!providerId) return undefined;
  const m = /\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)\/virtualMachines\/[^/]+$/i.exec(providerId);
  return m ? { resourceGroup: m[1], name: m[2] } : undefined;
}

/** The node's pool: `kubernetes.azure.com/agentpool`, else the older `agentpool` label. */
export function poolOfNode(node: KubeObject): string | undefined {
  const l = node.metadata?.labels ?? {};
  return l['kubernetes.azure.com/agentpool'] ?? l.agentpool;
}

function sorted<T>(items: Iterable<T>, key: (t: T) => string = (t) => String(t)): T[] {
  return [...items].sort((a, b) => key(a).localeCompare(key(b)));
}

/** Reads the cluster and Azure and computes the inventory, blockers and copies. Read-only. */
export async function discover(ctx: Ctx): Promise<Discovery> {
  const { kube, azure } = ctx;
  const blockers: Blocker[] = [];
  const notes: string[] = [];
  ctx.progress('listing pod identity objects, pods, controllers and nodes');

  const crdList = async (ref: (typeof KINDS)[keyof typeof KINDS]): Promise<KubeObject[] | undefined> => {
    try {
      return await kube.list(ref);
    } catch (e) {
      // A kind the API server does not serve (CRDs absent, an older cluster without CronJobs) has no objects.
      if (/does not serve|Unrecognized API version and kind|404/.test((e as Error).message)) return undefined;
      throw e;
    }
  };
  const [identities, bindings, assigned, exceptions] = await Promise.all([
    crdList(KINDS.AzureIdentity),
    crdList(KINDS.AzureIdentityBinding),
    crdList(KINDS.AzureAssignedIdentity),
    crdList(KINDS.AzurePodIdentityException),
  ]);
  if (!identities || !bindings) {
    blockers.push({
      code: 'pod-identity-not-installed',
      subject: 'crd azureidentities.aadpodidentity.k8s.io',
      message: 'the cluster does not serve the AAD Pod Identity CRDs, so there is nothing to migrate from standard mode',
      fix: 'Check the kubeconfig context (--context) points at the cluster that runs AAD Pod Identity.',
    });
  }
  const [pods, replicaSets, deployments, jobs, cronJobs, statefulSets, daemonSets, nodes] = await Promise.all([
    kube.list(KINDS.Pod, { labelSelector: BINDING_LABEL }),
    kube.list(KINDS.ReplicaSet),
    kube.list(KINDS.Deployment),
    crdList(KINDS.Job).then((x) => x ?? []),
    crdList(KINDS.CronJob).then((x) => x ?? []),
    crdList(KINDS.StatefulSet).then((x) => x ?? []),
    kube.list(KINDS.DaemonSet),
    kube.list(KINDS.Node),
  ]);
  const cluster = await kube.clusterIdentity();

  // --- NMI and MIC -----------------------------------------------------------------------
  const nmis = findNmiDaemonSets(daemonSets);
  const mics = findMicDeployments(deployments);
  const nmi = nmis[0];
  const mic = mics[0];
  if (nmis.length === 0) {
    blockers.push({ code: 'nmi-not-found', subject: 'daemonset nmi', message: 'no DaemonSet runs the AAD Pod Identity NMI image', fix: 'Check --context; this tool migrates an existing standard-mode install in place.' });
  } else if (nmis.length > 1) {
    blockers.push({
      code: 'nmi-ambiguous',
      subject: nmis.map((n) => `daemonset ${n.namespace}/${n.name}`).join(', '),
      message: 'more than one DaemonSet runs NMI; two NMIs cannot share a node (host ports 2579, 8085, 9090)',
      fix: 'Remove the extra NMI DaemonSet so exactly one remains, then plan again.',
    });
  }
  if (nmi && !nmi.version) {
    blockers.push({ code: 'nmi-version-unknown', subject: `daemonset ${nmi.namespace}/${nmi.name}`, message: `cannot tell the NMI version from image ${nmi.image}; managed mode needs v1.6.0 or newer and the --host-ip rule depends on it`, fix: 'Run an NMI image tagged with its release (e.g. nmi:v1.8.17).' });
  } else if (nmi && !versionAtLeast(nmi.version, MIN_MANAGED_VERSION)) {
    blockers.push({
      code: 'nmi-too-old',
      subject: `daemonset ${nmi.namespace}/${nmi.name}`,
      message: `NMI ${nmi.version} has no managed mode (needs ${formatVersion(MIN_MANAGED_VERSION)} or newer)`,
      fix: 'Upgrade AAD Pod Identity (NMI and MIC) to v1.8.17 in standard mode first, let MIC rewrite its objects, then plan again.',
    });
  }
  if (mics.length > 1) notes.push(`more than one MIC Deployment (${mics.map((m) => `${m.namespace}/${m.name}`).join(', ')}); the first is used`);
  if (!mic) notes.push('no MIC Deployment found: nothing to protect or scale down');
  if (nmi?.install === 'helm') notes.push(`Pod Identity is a Helm install (release ${nmi.helmRelease?.name ?? 'unknown'}): later steps print the helm values that keep their changes`);

  // --- Legacy field names ------------------------------------------------------------------
  for (const o of [...(identities ?? []), ...(bindings ?? [])]) {
    const keys = legacyKeys(o);
    if (!keys.length) continue;
    blockers.push({
      code: 'legacy-field-names',
      subject: `${o.kind?.toLowerCase()} ${nsName(o)}`,
      message: `spec uses field names from before v1.6.0 (${keys.join(', ')}); managed-mode NMI does not read them`,
      fix: `Let MIC v1.6.0+ rewrite it once (restart MIC), or edit it: kubectl edit ${o.kind?.toLowerCase()} -n ${o.metadata?.namespace} ${o.metadata?.name} (e.g. ClientID -> clientID, ResourceID -> resourceID, AzureIdentity -> azureIdentity, Selector -> selector).`,
    });
  }

  // --- Pools and nodes ---------------------------------------------------------------------
  const nodePool = new Map<string, string>();
  const poolNodes = new Map<string, KubeObject[]>();
  for (const n of nodes) {
    const pool = poolOfNode(n);
    if (!pool) continue;
    nodePool.set(n.metadata?.name ?? '', pool);
    poolNodes.set(pool, [...(poolNodes.get(pool) ?? []), n]);
  }

  // --- Services: pod -> top controller, pools ---------------------------------------------
  const byUid = new Map<string, KubeObject>();
  for (const o of [...replicaSets, ...deployments, ...jobs, ...cronJobs, ...statefulSets, ...daemonSets]) if (o.metadata?.uid) byUid.set(o.metadata.uid, o);
  interface Usage {
    service: ServiceRef;
    selector: string;
    /** Pools its pods run on now, united with every pool its pod template may be scheduled on. */
    pools: Set<string>;
    pods: number;
  }
  const usages = new Map<string, Usage>();
  const unconstrained = new Map<string, string[]>();
  // Placement is judged once per controller (uid), not once per pod.
  const placed = new Set<string>();
  const addTemplatePools = (u: Usage, controller: KubeObject | undefined): void => {
    const uid = controller?.metadata?.uid;
    if (!controller || (uid && placed.has(`${uid}\u0000${u.selector}`))) return;
    if (uid) placed.add(`${uid}\u0000${u.selector}`);
    const spec = podTemplateOf(controller)?.spec ?? {};
    const admitting = poolsAdmitting(spec, poolNodes);
    for (const pool of admitting) u.pools.add(pool);
    if (placementUnconstrained(spec) && admitting.length > 1) unconstrained.set(`${u.service.namespace}/${u.service.name}`, admitting);
  };
  const usageOf = (service: ServiceRef, selector: string): Usage => {
    const key = `${service.namespace}\u0000${service.kind}\u0000${service.name}\u0000${selector}`;
    let u = usages.get(key);
    if (!u) usages.set(key, (u = { service, selector, pools: new Set<string>(), pods: 0 }));
    return u;
  };
  let livePods = 0;
  for (const p of pods) {
    if (p.metadata?.deletionTimestamp) continue;
    const phase = (p.status as { phase?: string } | undefined)?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    const selector = p.metadata?.labels?.[BINDING_LABEL];
    // The migration's own probe pods carry a service's label but are no service.
    if (!selector || p.metadata?.labels?.[PROBE_LABEL] === 'true') continue;
    livePods++;
    const top = topController(p, byUid);
    const u = usageOf(top.ref, selector);
    u.pods++;
    const spec = (p.spec ?? {}) as { nodeName?: string };
    const pool = spec.nodeName ? nodePool.get(spec.nodeName) : undefined;
    if (pool) u.pools.add(pool);
    addTemplatePools(u, top.object ?? p);
  }
  // Services with no pod right now (a CronJob between runs, a Deployment scaled to 0) still need their identity where they may run.
  for (const c of [...deployments, ...statefulSets, ...daemonSets, ...cronJobs, ...jobs]) {
    if (controllerOf(c)) continue;
    const selector = podTemplateOf(c)?.metadata?.labels?.[BINDING_LABEL];
    if (!selector) continue;
    const kind = c.kind ?? 'Unknown';
    const u = usageOf({ kind, namespace: c.metadata?.namespace ?? 'default', name: kind === 'Job' ? stableName(c) : (c.metadata?.name ?? '') }, selector);
    addTemplatePools(u, c);
  }
  for (const [svc, ps] of sorted(unconstrained.entries(), ([k]) => k)) {
    notes.push(`service ${svc} has no nodeSelector or required node affinity: it may run on every pool whose taints it tolerates (${ps.join(', ')}), so its identity is planned for all of them`);
  }

  // --- Identity resolution as standard mode does it, and what managed mode will need ---------
  const idsByNsName = new Map<string, KubeObject>();
  for (const i of identities ?? []) idsByNsName.set(nsName(i), i);
  const identityNamed = (name: string, preferNs: string): KubeObject | undefined => {
    const local = idsByNsName.get(`${preferNs}/${name}`);
    if (local) return local;
    // Standard mode without --forceNamespaced finds the identity by name in any namespace.
    return sorted((identities ?? []).filter((i) => i.metadata?.name === name && !isCopy(i)), nsName)[0] ?? sorted((identities ?? []).filter((i) => i.metadata?.name === name), nsName)[0];
  };
  const keyOfIdentityObject = (i: KubeObject): string => {
    const s = specOf<IdentitySpec>(i);
    return identityKey({ resourceId: s.resourceID, clientId: s.clientID, namespace: i.metadata?.namespace ?? '', name: i.metadata?.name ?? '' });
  };

  const copies: CopyDetails[] = [];
  const plannedCopy = new Set<string>();
  const planCopy = (kind: CopyDetails['kind'], src: KubeObject, toNs: string): void => {
    const key = `${kind}/${toNs}/${src.metadata?.name}`;
    if (plannedCopy.has(key)) return;
    plannedCopy.add(key);
    const labels = { ...(src.metadata?.labels ?? {}) };
    // A copy of a copy still points at the original.
    labels[COPIED_FROM_LABEL] = src.metadata?.labels?.[COPIED_FROM_LABEL] ?? `${src.metadata?.namespace}.${src.metadata?.name}`;
    copies.push({
      kind,
      from: { namespace: src.metadata?.namespace ?? '', name: src.metadata?.name ?? '' },
      object: { apiVersion: src.apiVersion ?? 'aadpodidentity.k8s.io/v1', kind, metadata: { name: src.metadata?.name, namespace: toNs, labels }, spec: structuredClone(src.spec) },
    });
  };

  interface IdentityUse {
    object: KubeObject;
    services: Map<string, { usage: Usage; pools: Set<string> }>;
    namespaces: Set<string>;
    pools: Set<string>;
    bindings: Map<string, { name: string; namespace: string; selector: string }>;
  }
  const uses = new Map<string, IdentityUse>();
  const useOf = (obj: KubeObject): IdentityUse => {
    const k = keyOfIdentityObject(obj);
    let u = uses.get(k);
    if (!u) {
      u = { object: obj, services: new Map(), namespaces: new Set(), pools: new Set(), bindings: new Map() };
      uses.set(k, u);
    }
    // The entry is named after an original, not after a copy the migration made.
    if (isCopy(u.object) && !isCopy(obj)) u.object = obj;
    return u;
  };
  for (const i of identities ?? []) useOf(i);
  for (const b of bindings ?? []) {
    const bs = specOf<BindingSpec>(b);
    const idObj = bs.azureIdentity ? identityNamed(bs.azureIdentity, b.metadata?.namespace ?? '') : undefined;
    if (idObj && bs.selector) useOf(idObj).bindings.set(nsName(b), { name: b.metadata?.name ?? '', namespace: b.metadata?.namespace ?? '', selector: bs.selector });
  }

  const unmatched = new Set<string>();
  for (const u of usages.values()) {
    const podNs = u.service.namespace;
    const matching = (bindings ?? []).filter((b) => specOf<BindingSpec>(b).selector === u.selector);
    if (!matching.length) {
      unmatched.add(`${podNs}/${u.service.name} (aadpodidbinding=${u.selector})`);
      continue;
    }
    const local = matching.filter((b) => b.metadata?.namespace === podNs);
    // Managed mode: pod, binding and identity must share a namespace. Local bindings win; else copy the remote ones.
    const effective = local.length ? local : matching;
    for (const b of effective) {
      const bs = specOf<BindingSpec>(b);
      const idName = bs.azureIdentity ?? '';
      const idObj = identityNamed(idName, b.metadata?.namespace ?? '');
      if (!idObj) {
        notes.push(`binding ${nsName(b)} names identity ${idName}, which does not exist; pods of ${podNs}/${u.service.name} get no token from it today either`);
        continue;
      }
      const use = useOf(idObj);
      const svcKey = `${podNs}/${u.service.name}`;
      const svc = use.services.get(svcKey) ?? { usage: u, pools: new Set<string>() };
      for (const p of u.pools) svc.pools.add(p);
      use.services.set(svcKey, svc);
      use.namespaces.add(podNs);
      for (const p of u.pools) use.pools.add(p);

      if (b.metadata?.namespace !== podNs) {
        const clash = (bindings ?? []).find((x) => x.metadata?.namespace === podNs && x.metadata?.name === b.metadata?.name);
        if (clash) {
          blockers.push({
            code: 'copy-name-clash',
            subject: `azureidentitybinding ${podNs}/${b.metadata?.name}`,
            message: `pods of ${svcKey} use binding ${nsName(b)} from another namespace, and ${podNs} already has a different binding of that name, so it cannot be copied`,
            fix: `Create a binding for selector ${u.selector} in ${podNs} by hand (kubectl -n ${podNs} apply -f ...), then plan again.`,
          });
        } else {
          planCopy('AzureIdentityBinding', b, podNs);
          use.bindings.set(`${podNs}/${b.metadata?.name}`, { name: b.metadata?.name ?? '', namespace: podNs, selector: u.selector });
        }
      }
      if (idObj.metadata?.namespace !== podNs) {
        const there = idsByNsName.get(`${podNs}/${idName}`);
        if (!there) planCopy('AzureIdentity', idObj, podNs);
        else if (keyOfIdentityObject(there) !== keyOfIdentityObject(idObj)) {
          blockers.push({
            code: 'copy-name-clash',
            subject: `azureidentity ${podNs}/${idName}`,
            message: `binding ${nsName(b)} needs identity ${idName} in ${podNs}, where an AzureIdentity of that name points at a different identity`,
            fix: `Rename one of them, or point the binding at the right identity, then plan again.`,
          });
        }
      }
    }
  }
  if (unmatched.size) notes.push(`${unmatched.size} service(s) carry an aadpodidbinding label no binding matches (no identity today either): ${sorted(unmatched).slice(0, 5).join(', ')}${unmatched.size > 5 ? ', …' : ''}`);

  // --- Azure: managed cluster, scale sets, identities on them, permissions -------------------
  const aksId = typeof ctx.options.aksId === 'string' ? ctx.options.aksId : undefined;
  let mc: ManagedClusterInfo | undefined;
  let nodeResourceGroup: string | undefined;
  if (aksId) {
    ctx.progress('reading the managed cluster and its scale sets');
    mc = await azure.getManagedCluster(aksId);
    nodeResourceGroup = mc.nodeResourceGroup;
  } else {
    nodeResourceGroup = nodes.map((n) => scaleSetFromProviderId((n.spec as { providerID?: string } | undefined)?.providerID)?.resourceGroup).find(Boolean);
    notes.push('no --aks-id: the node resource group was taken from the nodes\' providerID');
  }
  const scaleSets = nodeResourceGroup ? await azure.listScaleSets(nodeResourceGroup) : [];
  const setByName = new Map(scaleSets.map((s) => [s.name.toLowerCase(), s]));
  const setByPoolTag = new Map(scaleSets.filter((s) => s.tags[POOL_TAG]).map((s) => [s.tags[POOL_TAG], s]));

  const neededPools = new Set<string>();
  for (const u of uses.values()) if ((specOf<IdentitySpec>(u.object).type ?? 0) === 0) for (const p of u.pools) neededPools.add(p);

  const poolNames = sorted(new Set([...poolNodes.keys(), ...(mc?.agentPools.map((p) => p.name) ?? [])]));
  const pools: InventoryPool[] = [];
  const poolSet = new Map<string, ScaleSet>();
  for (const name of poolNames) {
    const ns = poolNodes.get(name) ?? [];
    const fromProvider = new Set(ns.map((n) => scaleSetFromProviderId((n.spec as { providerID?: string } | undefined)?.providerID)?.name.toLowerCase() ?? '(not a scale set)'));
    const apType = mc?.agentPools.find((p) => p.name === name)?.type;
    const byTag = setByPoolTag.get(name);
    let set: ScaleSet | undefined;
    let problem: string | undefined;
    if (apType && apType !== 'VirtualMachineScaleSets') problem = `AKS reports the pool as ${apType}`;
    else if (fromProvider.has('(not a scale set)')) problem = 'its nodes\' providerID is not a VMSS instance';
    else if (fromProvider.size > 1) problem = `its nodes belong to several scale sets (${sorted(fromProvider).join(', ')})`;
    else {
      const fromNodes = [...fromProvider][0];
      set = fromNodes ? setByName.get(fromNodes) : byTag;
      if (!set) set = byTag;
      if (!set) problem = `no scale set tagged ${POOL_TAG}=${name} in ${nodeResourceGroup ?? 'the node resource group'}`;
      else if (byTag && byTag !== set) notes.push(`pool ${name}: nodes run on ${set.name} but ${byTag.name} carries the pool tag; using ${set.name}`);
    }
    if (problem) {
      if (neededPools.has(name)) {
        blockers.push({
          code: 'pool-not-vmss',
          subject: `pool ${name}`,
          message: `pods with pod identities run in pool ${name}, but it is not backed by a VMSS (${problem}); identities cannot be assigned to it`,
          fix: `Move those workloads to a VMSS pool (nodeSelector kubernetes.azure.com/agentpool=<pool>), or replace the pool with a VMSS pool, then plan again.`,
        });
      } else notes.push(`pool ${name} is not backed by a VMSS (${problem}); no pod identity runs there`);
    }
    const entry: InventoryPool = { name, nodes: ns.length };
    if (set) {
      poolSet.set(name, set);
      entry.scaleSet = set.id;
      entry.identitiesBefore = sorted(Object.keys(set.userAssignedIdentities), (s) => s.toLowerCase());
    }
    pools.push(entry);
  }

  const canAssignChecks: Promise<void>[] = [];
  for (const u of uses.values()) {
    const s = specOf<IdentitySpec>(u.object);
    if ((s.type ?? 0) !== 0 || u.pools.size === 0 || isCopy(u.object)) continue;
    const subject = `azureidentity ${nsName(u.object)}`;
    if (!s.resourceID) {
      blockers.push({ code: 'identity-without-resource-id', subject, message: 'a user-assigned identity (type 0) without spec.resourceID cannot be assigned to a VMSS', fix: `Set spec.resourceID: kubectl edit azureidentity -n ${u.object.metadata?.namespace} ${u.object.metadata?.name}` });
      continue;
    }
    canAssignChecks.push(
      azure.canAssign(s.resourceID).then((perm) => {
        if (perm.allowed === false) {
          blockers.push({
            code: 'cannot-assign-identity',
            subject,
            message: `the caller may not assign ${s.resourceID} to a scale set (${perm.reason}); ARM would answer LinkedAuthorizationFailed`,
            fix: `Grant "Managed Identity Operator" on it: az role assignment create --role "Managed Identity Operator" --assignee <your principal> --scope ${s.resourceID}`,
          });
        } else if (perm.allowed === 'unknown') notes.push(`cannot tell whether ${u.object.metadata?.name} may be assigned (${perm.reason})`);
      }),
    );
  }
  await Promise.all(canAssignChecks);

  // --- The document ----------------------------------------------------------------------------
  const idEntries: InventoryIdentity[] = [];
  for (const u of sorted(uses.values(), (x) => nsName(x.object))) {
    const s = specOf<IdentitySpec>(u.object);
    const type = (s.type ?? 0) as 0 | 1 | 2;
    const services: InventoryService[] = sorted(u.services.entries(), ([k]) => k).map(([name, { usage, pools: svcPools }]) => ({
      name,
      kind: usage.service.kind,
      selector: usage.selector,
      pools: sorted(svcPools),
      testCases: defaultTestCases(),
    }));
    const entry: InventoryIdentity = {
      name: u.object.metadata?.name ?? '',
      namespace: u.object.metadata?.namespace ?? '',
      type: [0, 1, 2].includes(type) ? type : 0,
      ...(s.resourceID ? { resourceId: s.resourceID } : {}),
      ...(s.clientID ? { clientId: s.clientID } : {}),
      pools: sorted(u.pools),
      namespaces: sorted(u.namespaces),
      bindings: sorted(u.bindings.values(), (b) => `${b.namespace}/${b.name}`),
      services,
    };
    // A principal id is only known from a scale set that already carries the identity.
    const principal = s.resourceID ? scaleSets.flatMap((ss) => Object.entries(ss.userAssignedIdentities)).find(([k]) => k.toLowerCase() === s.resourceID!.toLowerCase())?.[1].principalId : undefined;
    if (principal) entry.principalId = principal;
    if (type !== 0 && u.services.size) notes.push(`identity ${entry.namespace}/${entry.name} is a service principal (type ${type}): no VMSS assignment needed, test cases still run`);
    idEntries.push(entry);
  }
  const document: InventoryDocument = {
    apiVersion: 'podid-migrate/v1',
    kind: 'Inventory',
    cluster: {
      name: mc?.name ?? cluster.clusterName,
      apiServer: cluster.server,
      kubeSystemUid: cluster.kubeSystemUid,
      ...(aksId ? { resourceId: aksId } : {}),
      ...(nodeResourceGroup ? { nodeResourceGroup } : {}),
    },
    ...(nmi
      ? {
          podIdentity: {
            install: nmi.install,
            ...(nmi.version ? { version: nmi.version } : {}),
            nmi: { kind: 'DaemonSet', name: nmi.name, namespace: nmi.namespace, image: nmi.image, args: nmi.args },
            ...(mic ? { mic: { kind: 'Deployment', name: mic.name, namespace: mic.namespace, image: mic.image, replicas: mic.replicas, args: mic.args } } : {}),
          },
        }
      : {}),
    identities: idEntries,
    pools,
  };
  const services = new Set(idEntries.flatMap((i) => i.services.map((s) => s.name))).size;
  return {
    document,
    copies: sorted(copies, (c) => `${c.kind}/${c.object.metadata?.namespace}/${c.object.metadata?.name}`),
    blockers,
    notes,
    nmi,
    mic,
    counts: { pods: livePods, services, nodes: nodes.length, assigned: assigned?.length ?? 0, exceptions: exceptions?.length ?? 0 },
  };
}

/**
 * The inventory later steps work from: the file the inventory step wrote (validated). In a dry
 * run, where the inventory step wrote nothing, it is computed from the live cluster instead.
 * @throws PreconditionError when there is none yet (the engine shows "depends on inventory")
 */
export async function inventoryFor(ctx: Ctx): Promise<InventoryDocument> {
  if (ctx.inventory !== undefined && ctx.inventory !== null) return asInventory(ctx.inventory, ctx.inventoryPath);
  if (ctx.dryRun !== 'none') return (await discover(ctx)).document;
  throw new PreconditionError(`there is no inventory at ${ctx.inventoryPath} yet.`, 'Apply the inventory step first: podid-migrate apply --step inventory');
}

/** What the inventory step recorded about NMI and MIC, falling back to live discovery (dry run, or an older journal). */
export async function podIdentityFor(ctx: Ctx): Promise<{ nmi?: PodIdentityWorkload; mic?: PodIdentityWorkload }> {
  const data = ctx.journal.of('inventory').getData<PodIdentityData>('podIdentity');
  if (data) {
    const [ds, dep] = await Promise.all([
      ctx.kube.get(KINDS.DaemonSet, data.nmi.namespace, data.nmi.name),
      data.mic ? ctx.kube.get(KINDS.Deployment, data.mic.namespace, data.mic.name) : Promise.resolve(undefined),
    ]);
    return { nmi: ds ? findNmiDaemonSets([ds])[0] : undefined, mic: dep ? findMicDeployments([dep])[0] : undefined };
  }
  if (ctx.dryRun === 'none' && ctx.inventory === undefined) {
    throw new PreconditionError('the inventory step has not recorded the NMI and MIC workloads yet.', 'Apply the inventory step first: podid-migrate apply --step inventory');
  }
  return findPodIdentityLive(ctx.kube);
}

/** NMI and MIC found by listing DaemonSets and Deployments (two list calls). */
export async function findPodIdentityLive(kube: KubeGateway): Promise<{ nmi?: PodIdentityWorkload; mic?: PodIdentityWorkload }> {
  const [daemonSets, deployments] = await Promise.all([kube.list(KINDS.DaemonSet), kube.list(KINDS.Deployment)]);
  return { nmi: findNmiDaemonSets(daemonSets)[0], mic: findMicDeployments(deployments)[0] };
}

function copyActionId(c: CopyDetails): string {
  return `copy/${c.kind.toLowerCase()}/${c.object.metadata?.namespace}/${c.object.metadata?.name}`;
}

/** The document as written: no timestamp, so unchanged clusters give an unchanged file and plan. */
function stableDocument(doc: InventoryDocument): InventoryDocument {
  const { generatedAt: _ignored, ...rest } = doc;
  return rest;
}

function sameDocument(a: InventoryDocument, b: InventoryDocument): boolean {
  return JSON.stringify(stableDocument(a)) === JSON.stringify(stableDocument(b));
}

/** Copy pre-state: the object that did not exist before (rollback deletes it only while it still carries our label). */
interface CopyPreState {
  kind: CopyDetails['kind'];
  namespace: string;
  name: string;
  copiedFrom: string;
  existedBefore: false;
}

const inventory: Step<KubeGateway, AzureGateway> = {
  id: 'inventory',
  title: 'Inventory identities, bindings, pools and scale sets',

  async plan(ctx): Promise<StepPlan> {
    const d = await discover(ctx);
    const actions: PlannedAction[] = [];
    for (const c of d.copies) {
      const from = `${c.from.namespace}/${c.from.name}`;
      const to = `${c.object.metadata?.namespace}/${c.object.metadata?.name}`;
      actions.push({
        id: copyActionId(c),
        op: '+',
        target: `copy ${c.kind.toLowerCase()} ${from} -> ${to}`,
        summary: `managed mode only matches within a namespace; original kept, copy labelled ${COPIED_FROM_LABEL}=${c.object.metadata?.labels?.[COPIED_FROM_LABEL]}`,
        api: 'kube',
        writes: 1,
        details: c,
      });
    }
    const notes = [...d.notes];
    let previous: InventoryDocument | undefined;
    try {
      previous = await loadInventory(ctx.inventoryPath);
    } catch (e) {
      d.blockers.push({
        code: 'inventory-file-invalid',
        subject: `file ${ctx.inventoryPath}`,
        message: (e as Error).message,
        fix: 'Fix the fields named above (it may hold your test cases), or move the file aside to have a fresh one written.',
      });
    }
    const doc = keepOperatorEdits(previous, d.document);
    if (previous) {
      const changes = inventoryChanges(previous, doc);
      notes.push(changes.length ? `changed in the cluster since the inventory was written: ${changes.join('; ')}` : 'the cluster matches the existing inventory file');
    }
    if (!previous || !sameDocument(previous, doc)) {
      actions.push({
        id: 'file/inventory',
        op: previous ? '~' : '+',
        target: `file ${ctx.inventoryPath}`,
        summary: `${doc.identities.length} identities, ${doc.pools.length} pools, ${d.counts.services} services${previous ? ' (test cases kept)' : ''}`,
        api: 'none',
        writes: 0,
        details: { document: stableDocument(doc) },
      });
    }
    notes.unshift(`${d.counts.pods} pods with ${BINDING_LABEL} in ${d.counts.services} services on ${d.counts.nodes} nodes; ${d.counts.assigned} AzureAssignedIdentities`);
    const writesFile = actions.some((a) => a.id === 'file/inventory');
    // The later steps of the same plan run are planned against the document this apply would write.
    return { stepId: 'inventory', actions, blockers: d.blockers, notes, ...(writesFile && !d.blockers.length ? { inventoryPreview: stableDocument(doc) } : {}) };
  },

  async apply(ctx, plan): Promise<StepOutcome> {
    let copied = 0;
    let wrote = false;
    for (const action of plan.actions) {
      if (action.id.startsWith('copy/')) {
        const c = action.details as CopyDetails;
        const pre: CopyPreState = {
          kind: c.kind,
          namespace: c.object.metadata?.namespace ?? '',
          name: c.object.metadata?.name ?? '',
          copiedFrom: c.object.metadata?.labels?.[COPIED_FROM_LABEL] ?? '',
          existedBefore: false,
        };
        ctx.progress(`copying ${c.kind.toLowerCase()} ${c.from.namespace}/${c.from.name} to ${pre.namespace}`);
        await ctx.journal.runAction(action, pre, async () => {
          try {
            const created = await ctx.kube.create(c.object);
            return { uid: created.metadata?.uid };
          } catch (e) {
            // Created by an earlier attempt whose answer was lost: the re-plan saw no copy yet only if the create raced it.
            if ((e as { status?: number }).status === 409) return { alreadyExists: true };
            throw e;
          }
        });
        copied++;
      } else if (action.id === 'file/inventory') {
        const { document } = action.details as { document: InventoryDocument };
        await ctx.journal.runAction(action, { path: ctx.inventoryPath }, async () => {
          // Dry run: the file is a local write; it is shown, not written.
          if (ctx.dryRun !== 'none') return { path: ctx.inventoryPath, written: false };
          await writeInventory(ctx.inventoryPath, { ...document, generatedAt: new Date().toISOString() });
          return { path: ctx.inventoryPath, written: true };
        });
        wrote = true;
      }
    }
    const pi = await findPodIdentityLive(ctx.kube);
    if (pi.nmi) {
      const data: PodIdentityData = {
        nmi: { namespace: pi.nmi.namespace, name: pi.nmi.name, install: pi.nmi.install, version: pi.nmi.version },
        ...(pi.mic ? { mic: { namespace: pi.mic.namespace, name: pi.mic.name, replicas: pi.mic.replicas ?? 1 } } : {}),
      };
      await ctx.journal.setData('podIdentity', data);
    }
    const dry = ctx.dryRun !== 'none';
    const parts = [`${copied} object(s) ${dry ? 'would be ' : ''}copied`, wrote ? `inventory ${dry ? 'would be ' : ''}written to ${ctx.inventoryPath}` : 'inventory unchanged'];
    return { summary: parts.join(', ') };
  },

  async check(ctx): Promise<CheckResult> {
    const evidence: string[] = [];
    const failures: string[] = [];
    let file: InventoryDocument | undefined;
    try {
      file = await loadInventory(ctx.inventoryPath);
      if (!file) failures.push(`no inventory file at ${ctx.inventoryPath}; run podid-migrate apply --step inventory`);
    } catch (e) {
      failures.push((e as Error).message);
    }
    const d = await discover(ctx);
    if (file) {
      evidence.push(`${ctx.inventoryPath} validates against the inventory schema`);
      const fileIds = new Map(file.identities.map((i) => [identityKey(i), i]));
      const liveIds = new Map(d.document.identities.map((i) => [identityKey(i), i]));
      for (const [k, i] of liveIds) {
        const f = fileIds.get(k);
        if (!f) failures.push(`identity ${i.namespace}/${i.name} is in the cluster but not in the inventory; re-run the inventory step`);
        else if ((f.pools ?? []).join(',') !== (i.pools ?? []).join(',')) failures.push(`identity ${i.name}: inventory pools [${(f.pools ?? []).join(', ')}] but the cluster runs it in [${(i.pools ?? []).join(', ')}]`);
      }
      for (const [k, f] of fileIds) if (!liveIds.has(k)) failures.push(`identity ${f.namespace}/${f.name} is in the inventory but not in the cluster`);
      const livePools = new Map(d.document.pools.map((p) => [p.name, p]));
      for (const p of file.pools) {
        const live = livePools.get(p.name);
        if (!live) failures.push(`pool ${p.name} is in the inventory but not in the cluster`);
        else if ((live.scaleSet ?? '').toLowerCase() !== (p.scaleSet ?? '').toLowerCase()) failures.push(`pool ${p.name}: inventory scale set ${p.scaleSet ?? '(none)'} but the cluster uses ${live.scaleSet ?? '(none)'}`);
      }
      for (const p of d.document.pools) if (!file.pools.some((q) => q.name === p.name)) failures.push(`pool ${p.name} is in the cluster but not in the inventory`);
      if (!failures.length) evidence.push(`inventory matches the cluster: ${liveIds.size} identities, ${livePools.size} pools (${d.document.pools.map((p) => p.name).join(', ')})`);
    }
    if (d.copies.length) failures.push(`still missing in pod namespaces: ${d.copies.map((c) => `${c.kind.toLowerCase()} ${c.object.metadata?.namespace}/${c.object.metadata?.name}`).join(', ')}`);
    else evidence.push('every pod namespace has its bindings and identities (managed mode can match them)');
    const schemaProblems = file ? validateInventory(file) : [];
    failures.push(...schemaProblems);
    return { ok: failures.length === 0, evidence, failures };
  },

  async rollback(ctx): Promise<StepOutcome> {
    const records = ctx.journal.records().filter((r) => r.actionId.startsWith('copy/') && !r.rolledBack);
    const seen = new Set<string>();
    let removed = 0;
    for (const r of [...records].reverse()) {
      if (seen.has(r.actionId)) continue;
      seen.add(r.actionId);
      const pre = ctx.journal.firstPreState<CopyPreState>(r.actionId);
      if (!pre) continue;
      const ref = pre.kind === 'AzureIdentity' ? KINDS.AzureIdentity : KINDS.AzureIdentityBinding;
      const live = await ctx.kube.get(ref, pre.namespace, pre.name);
      // Only an object that still says it is our copy is removed; anything else is the operator's.
      if (live && live.metadata?.labels?.[COPIED_FROM_LABEL] === pre.copiedFrom) {
        ctx.progress(`removing the copy ${pre.kind.toLowerCase()} ${pre.namespace}/${pre.name}`);
        await ctx.kube.delete(ref, pre.namespace, pre.name, { preconditions: { uid: live.metadata?.uid } });
        removed++;
      } else if (live) ctx.log.warn(`${pre.kind} ${pre.namespace}/${pre.name} no longer carries ${COPIED_FROM_LABEL}=${pre.copiedFrom}; left in place`);
      await ctx.journal.markRolledBack(r.actionId);
    }
    return { summary: `${removed} copied object(s) removed; originals untouched` };
  },

  async verifyRollback(ctx): Promise<CheckResult> {
    const evidence: string[] = [];
    const failures: string[] = [];
    const ids = new Set(ctx.journal.records().filter((r) => r.actionId.startsWith('copy/')).map((r) => r.actionId));
    for (const id of ids) {
      const pre = ctx.journal.firstPreState<CopyPreState>(id);
      if (!pre) continue;
      const live = await ctx.kube.get(pre.kind === 'AzureIdentity' ? KINDS.AzureIdentity : KINDS.AzureIdentityBinding, pre.namespace, pre.name);
      if (live && live.metadata?.labels?.[COPIED_FROM_LABEL] === pre.copiedFrom && !live.metadata?.deletionTimestamp) failures.push(`${pre.kind} ${pre.namespace}/${pre.name} (our copy) still exists`);
      else evidence.push(`${pre.kind.toLowerCase()} ${pre.namespace}/${pre.name} (copy) is gone`);
    }
    return { ok: failures.length === 0, evidence, failures };
  },
};

/** Step 1 of the runbook. */
export const inventoryStep = withScopedGateways(inventory);
export default inventoryStep;
