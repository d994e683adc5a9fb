/**
 * The inventory's analysis: pure functions over a {@link ClusterReading}. Services (a pod's top
 * controller), identity resolution as standard mode does it, the copies managed mode needs
 * (pod, binding and identity in one namespace), pools and their scale sets, and the inventory
 * document. Facts that block the migration are recorded here as data; `blockers.ts` words them.
 */
import type { AssignPermission, ScaleSet } from '../../../azure/gateway.ts';
import type { KubeObject } from '../../../kube/gateway.ts';
import { defaultTestCases, identityKey, type InventoryDocument, type InventoryIdentity, type InventoryPool, type InventoryService } from '../inventory-model.ts';
import { controllerOf, poolOf, scaleSetFromProviderId } from '../nodes.ts';
import { COPIED_FROM_LABEL, findMicDeployments, findNmiDaemonSets, type PodIdentityWorkload } from '../pod-identity.ts';
import { PROBE_LABEL } from '../probe.ts';
import { sorted } from '../util.ts';
import { placementUnconstrained, podTemplateOf, poolsAdmitting } from './placement.ts';
import { BINDING_LABEL, type ClusterReading } from './reading.ts';

/** VMSS tag AKS puts on each pool's scale set. */
export const POOL_TAG = 'aks-managed-poolName';

/** A planned copy of a binding or identity into a pod's namespace. */
export interface CopyDetails {
  kind: 'AzureIdentity' | 'AzureIdentityBinding';
  from: { namespace: string; name: string };
  /** The object to create (spec as in the source, labelled with {@link COPIED_FROM_LABEL}). */
  object: KubeObject;
}

/** A pod's top controller: `Deployment payments/api`, `CronJob batch/nightly`, … */
export interface ServiceRef {
  kind: string;
  namespace: string;
  name: string;
}

/** A service's use of one `aadpodidbinding` selector. */
export interface Usage {
  service: ServiceRef;
  selector: string;
  /** Pools its pods run on now, united with every pool its pod template may be scheduled on. */
  pools: Set<string>;
  pods: number;
}

/** Who uses one identity, where. */
export interface IdentityUse {
  object: KubeObject;
  services: Map<string, { usage: Usage; pools: Set<string> }>;
  namespaces: Set<string>;
  pools: Set<string>;
  bindings: Map<string, { name: string; namespace: string; selector: string }>;
}

/** A copy managed mode needs but cannot get: the name is taken in the pod's namespace. */
export interface CopyClash {
  kind: 'AzureIdentityBinding' | 'AzureIdentity';
  namespace: string;
  name: string;
  /** The binding the pods use today (`ns/name`). */
  binding: string;
  service: string;
  selector: string;
}

/** A pool that is not backed by one VMSS, and whether a pod identity runs there. */
export interface PoolProblem {
  pool: string;
  problem: string;
  needed: boolean;
}

/** Everything the analysis found. */
export interface Analysis {
  nmis: PodIdentityWorkload[];
  mics: PodIdentityWorkload[];
  nmi?: PodIdentityWorkload;
  mic?: PodIdentityWorkload;
  poolNodes: Map<string, KubeObject[]>;
  uses: Map<string, IdentityUse>;
  copies: CopyDetails[];
  clashes: CopyClash[];
  pools: InventoryPool[];
  poolProblems: PoolProblem[];
  /** User-assigned identities in use by some pool (not copies): each must have a resource id and be assignable. */
  assignable: { object: KubeObject; resourceId?: string }[];
  notes: string[];
  livePods: number;
}

export interface IdentitySpec {
  type?: number;
  resourceID?: string;
  clientID?: string;
}
export interface BindingSpec {
  azureIdentity?: string;
  selector?: string;
}

export function specOf<T>(o: KubeObject): T {
  return (o.spec ?? {}) as T;
}

export function nsName(o: KubeObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

/** True when the object is a copy this tool made. */
export function isCopy(o: KubeObject): boolean {
  return o.metadata?.labels?.[COPIED_FROM_LABEL] !== undefined;
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
export function topController(pod: KubeObject, byUid: Map<string, KubeObject>): { ref: ServiceRef; object?: KubeObject } {
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

/** Services that use pod identities: pod -> top controller, with every pool each may run in. */
function findUsages(r: ClusterReading, poolNodes: Map<string, KubeObject[]>, notes: string[]): { usages: Map<string, Usage>; livePods: number } {
  const nodePool = new Map<string, string>();
  for (const [pool, nodes] of poolNodes) for (const n of nodes) nodePool.set(n.metadata?.name ?? '', pool);
  const byUid = new Map<string, KubeObject>();
  for (const o of [...r.replicaSets, ...r.deployments, ...r.jobs, ...r.cronJobs, ...r.statefulSets, ...r.daemonSets]) if (o.metadata?.uid) byUid.set(o.metadata.uid, o);
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
  for (const p of r.pods) {
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
  for (const c of [...r.deployments, ...r.statefulSets, ...r.daemonSets, ...r.cronJobs, ...r.jobs]) {
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
  return { usages, livePods };
}

/** Identity resolution as standard mode does it, and the copies managed mode needs. */
function resolveIdentities(r: ClusterReading, usages: Map<string, Usage>, notes: string[]): { uses: Map<string, IdentityUse>; copies: CopyDetails[]; clashes: CopyClash[] } {
  const identities = r.identities ?? [];
  const bindings = r.bindings ?? [];
  const idsByNsName = new Map<string, KubeObject>();
  for (const i of identities) idsByNsName.set(nsName(i), i);
  const identityNamed = (name: string, preferNs: string): KubeObject | undefined => {
    const local = idsByNsName.get(`${preferNs}/${name}`);
    if (local) return local;
    // Standard mode without --forceNamespaced finds the identity by name in any namespace.
    return sorted(identities.filter((i) => i.metadata?.name === name && !isCopy(i)), nsName)[0] ?? sorted(identities.filter((i) => i.metadata?.name === name), nsName)[0];
  };
  const keyOfIdentityObject = (i: KubeObject): string => {
    const s = specOf<IdentitySpec>(i);
    return identityKey({ resourceId: s.resourceID, clientId: s.clientID, namespace: i.metadata?.namespace ?? '', name: i.metadata?.name ?? '' });
  };

  const copies: CopyDetails[] = [];
  const clashes: CopyClash[] = [];
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
  for (const i of identities) useOf(i);
  for (const b of bindings) {
    const bs = specOf<BindingSpec>(b);
    const idObj = bs.azureIdentity ? identityNamed(bs.azureIdentity, b.metadata?.namespace ?? '') : undefined;
    if (idObj && bs.selector) useOf(idObj).bindings.set(nsName(b), { name: b.metadata?.name ?? '', namespace: b.metadata?.namespace ?? '', selector: bs.selector });
  }

  const unmatched = new Set<string>();
  const legacyMatched = new Set<string>();
  for (const u of usages.values()) {
    const podNs = u.service.namespace;
    const matching = bindings.filter((b) => specOf<BindingSpec>(b).selector === u.selector);
    if (!matching.length) {
      // A binding written before v1.6.0 spells it `Selector`: it does match (MIC reads it), only
      // managed-mode NMI would not; the legacy-field-names blocker names it.
      const legacy = bindings.filter((b) => (b.spec as { Selector?: unknown } | undefined)?.Selector === u.selector);
      if (legacy.length) legacyMatched.add(`${podNs}/${u.service.name} (aadpodidbinding=${u.selector}, binding ${legacy.map(nsName).join(', ')})`);
      else unmatched.add(`${podNs}/${u.service.name} (aadpodidbinding=${u.selector})`);
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
        const clash = bindings.find((x) => x.metadata?.namespace === podNs && x.metadata?.name === b.metadata?.name);
        if (clash) clashes.push({ kind: 'AzureIdentityBinding', namespace: podNs, name: b.metadata?.name ?? '', binding: nsName(b), service: svcKey, selector: u.selector });
        else {
          planCopy('AzureIdentityBinding', b, podNs);
          use.bindings.set(`${podNs}/${b.metadata?.name}`, { name: b.metadata?.name ?? '', namespace: podNs, selector: u.selector });
        }
      }
      if (idObj.metadata?.namespace !== podNs) {
        const there = idsByNsName.get(`${podNs}/${idName}`);
        if (!there) planCopy('AzureIdentity', idObj, podNs);
        else if (keyOfIdentityObject(there) !== keyOfIdentityObject(idObj)) clashes.push({ kind: 'AzureIdentity', namespace: podNs, name: idName, binding: nsName(b), service: svcKey, selector: u.selector });
      }
    }
  }
  if (legacyMatched.size) notes.push(`${legacyMatched.size} service(s) match only a binding with field names from before v1.6.0 (see the legacy-field-names blocker): ${sorted(legacyMatched).slice(0, 5).join(', ')}${legacyMatched.size > 5 ? ', …' : ''}`);
  if (unmatched.size) notes.push(`${unmatched.size} service(s) carry an aadpodidbinding label no binding matches (no identity today either): ${sorted(unmatched).slice(0, 5).join(', ')}${unmatched.size > 5 ? ', …' : ''}`);
  return { uses, copies: sorted(copies, (c) => `${c.kind}/${c.object.metadata?.namespace}/${c.object.metadata?.name}`), clashes };
}

/** Pools (every node pool and AKS agent pool) with the one scale set behind each, or why there is none. */
function poolsOf(r: ClusterReading, poolNodes: Map<string, KubeObject[]>, neededPools: Set<string>, notes: string[]): { pools: InventoryPool[]; problems: PoolProblem[] } {
  const setByName = new Map(r.scaleSets.map((s) => [s.name.toLowerCase(), s]));
  const setByPoolTag = new Map(r.scaleSets.filter((s) => s.tags[POOL_TAG]).map((s) => [s.tags[POOL_TAG], s]));
  const mc = r.managedCluster;
  const poolNames = sorted(new Set([...poolNodes.keys(), ...(mc?.agentPools.map((p) => p.name) ?? [])]));
  const pools: InventoryPool[] = [];
  const problems: PoolProblem[] = [];
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
      if (!set) problem = `no scale set tagged ${POOL_TAG}=${name} in ${r.nodeResourceGroup ?? 'the node resource group'}`;
      else if (byTag && byTag !== set) notes.push(`pool ${name}: nodes run on ${set.name} but ${byTag.name} carries the pool tag; using ${set.name}`);
    }
    if (problem) {
      problems.push({ pool: name, problem, needed: neededPools.has(name) });
      if (!neededPools.has(name)) notes.push(`pool ${name} is not backed by a VMSS (${problem}); no pod identity runs there`);
    }
    const entry: InventoryPool = { name, nodes: ns.length };
    if (set) {
      entry.scaleSet = set.id;
      entry.identitiesBefore = sorted(Object.keys(set.userAssignedIdentities), (s) => s.toLowerCase());
    }
    pools.push(entry);
  }
  return { pools, problems };
}

/** Analyses a reading. Pure: same reading, same analysis. */
export function analyse(r: ClusterReading): Analysis {
  const notes: string[] = [];
  const nmis = findNmiDaemonSets(r.daemonSets);
  const mics = findMicDeployments(r.deployments);
  const nmi = nmis[0];
  const mic = mics[0];
  if (mics.length > 1) notes.push(`more than one MIC Deployment (${mics.map((m) => `${m.namespace}/${m.name}`).join(', ')}); the first is used`);
  if (!mic) notes.push('no MIC Deployment found: nothing to protect or scale down');
  if (nmi?.install === 'helm') notes.push(`Pod Identity is a Helm install (release ${nmi.helmRelease?.name ?? 'unknown'}): later steps print the helm values that keep their changes`);

  const poolNodes = new Map<string, KubeObject[]>();
  for (const n of r.nodes) {
    const pool = poolOf(n);
    if (pool) poolNodes.set(pool, [...(poolNodes.get(pool) ?? []), n]);
  }
  const { usages, livePods } = findUsages(r, poolNodes, notes);
  const { uses, copies, clashes } = resolveIdentities(r, usages, notes);
  if (!r.aksId) notes.push('no --aks-id: the node resource group was taken from the nodes\' providerID');
  const neededPools = new Set<string>();
  for (const u of uses.values()) if ((specOf<IdentitySpec>(u.object).type ?? 0) === 0) for (const p of u.pools) neededPools.add(p);
  const { pools, problems } = poolsOf(r, poolNodes, neededPools, notes);
  const assignable = [...uses.values()]
    .filter((u) => (specOf<IdentitySpec>(u.object).type ?? 0) === 0 && u.pools.size > 0 && !isCopy(u.object))
    .map((u) => ({ object: u.object, resourceId: specOf<IdentitySpec>(u.object).resourceID }));
  return { nmis, mics, nmi, mic, poolNodes, uses, copies, clashes, pools, poolProblems: problems, assignable, notes, livePods };
}

/** The inventory document an analysis implies (identities with their services and pools, pools with their scale sets). */
export function inventoryDocument(r: ClusterReading, a: Analysis, notes: string[]): InventoryDocument {
  const idEntries: InventoryIdentity[] = [];
  for (const u of sorted(a.uses.values(), (x) => nsName(x.object))) {
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
    const principal = s.resourceID ? r.scaleSets.flatMap((ss) => Object.entries(ss.userAssignedIdentities)).find(([k]) => k.toLowerCase() === s.resourceID!.toLowerCase())?.[1].principalId : undefined;
    if (principal) entry.principalId = principal;
    if (type !== 0 && u.services.size) notes.push(`identity ${entry.namespace}/${entry.name} is a service principal (type ${type}): no VMSS assignment needed, test cases still run`);
    idEntries.push(entry);
  }
  const { nmi, mic } = a;
  return {
    apiVersion: 'podid-migrate/v1',
    kind: 'Inventory',
    cluster: {
      name: r.managedCluster?.name ?? r.cluster.clusterName,
      apiServer: r.cluster.server,
      kubeSystemUid: r.cluster.kubeSystemUid,
      ...(r.aksId ? { resourceId: r.aksId } : {}),
      ...(r.nodeResourceGroup ? { nodeResourceGroup: r.nodeResourceGroup } : {}),
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
    pools: a.pools,
  };
}

/** Permission answers that are neither yes nor no, as notes. */
export function permissionNotes(a: Analysis, permissions: ReadonlyMap<string, AssignPermission>): string[] {
  return a.assignable.flatMap((x) => {
    const perm = x.resourceId ? permissions.get(x.resourceId) : undefined;
    return perm?.allowed === 'unknown' ? [`cannot tell whether ${x.object.metadata?.name} may be assigned (${perm.reason})`] : [];
  });
}
