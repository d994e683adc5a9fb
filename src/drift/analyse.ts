/**
 * Drift analysis: a pure function of the inventory and the live state ({@link readDriftState})
 * that names every difference that breaks, or will break, managed mode, with its fix and the
 * typed actions that repair the safe ones.
 *
 * Desired state:
 * - each inventory identity (type 0) on the scale set of each pool it lists;
 * - each identity bound (in managed mode: in the pod's own namespace) to pods that run, or may
 *   be scheduled, on a pool, including pools the inventory never saw;
 * - NMI in managed mode with `--forceNamespaced` on every node; no MIC running; no
 *   AzureAssignedIdentity; every AzureIdentity and binding known to the inventory.
 */
import type { ManagedIdentity, ScaleSet } from '../azure/gateway.ts';
import type { KubeObject } from '../kube/gateway.ts';
import { BINDING_LABEL } from '../steps/lib/inventory/reading.ts';
import { POOL_TAG } from '../steps/lib/inventory/analysis.ts';
import { podTemplateOf, poolsAdmitting, type PlacementSpec } from '../steps/lib/inventory/placement.ts';
import { poolOf as poolOfNode, scaleSetFromProviderId } from '../steps/lib/nodes.ts';
import { identityKey, type InventoryDocument } from '../steps/lib/inventory-model.ts';
import { findMicDeployments, findNmiDaemonSets, helmManagedValues, managedNmiArgs, nmiArgsAreManaged } from '../steps/lib/pod-identity.ts';
import { PROBE_LABEL } from '../steps/lib/probe.ts';
import type { DriftAction, DriftFinding, InventoryUpdateDetails } from './model.ts';
import type { DriftLiveState } from './read.ts';

/** ARM accepts at most this many identities per VMSS PATCH (the gateway chunks). */
const PER_PATCH = 150;

/** What {@link analyseDrift} returns. */
export interface DriftAnalysis {
  findings: DriftFinding[];
  /** `vmss-add-identities`, `nmi-managed-args`, `mic-scale-zero` (run by `--fix`) and `inventory-update` (run by `--update-inventory`). */
  actions: DriftAction[];
  ok: string[];
  notes: string[];
}

interface Need {
  id: string;
  name: string;
  reasons: Set<string>;
}

interface Workload {
  kind: string;
  namespace: string;
  name: string;
  selector: string;
  spec: PlacementSpec & { hostNetwork?: boolean };
}

const lc = (s: string) => s.toLowerCase();
const nsName = (o: KubeObject) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
const sorted = <T>(xs: Iterable<T>, key: (t: T) => string = (t) => String(t)) => [...xs].sort((a, b) => key(a).localeCompare(key(b)));
const list = (xs: readonly string[], max = 3, sep = ', ') => (xs.length <= max ? xs.join(sep) : `${xs.slice(0, max).join(sep)}${sep}… (${xs.length} in all)`);
const nameOfId = (id: string) => id.split('/').pop() ?? id;

function specOf<T>(o: KubeObject): T {
  return (o.spec ?? {}) as T;
}

/** Pod Identity's own pods (MIC, NMI) are matched by exceptions on purpose. */
function isPodIdentityComponent(p: KubeObject): boolean {
  const l = p.metadata?.labels ?? {};
  return ['mic', 'nmi'].includes(l.component ?? l['app.kubernetes.io/component'] ?? '');
}

/** Compares the inventory with the live state. Pure: same input, same output (sorted). */
export function analyseDrift(inventory: InventoryDocument, live: DriftLiveState, opts: { inventoryPath: string }): DriftAnalysis {
  const findings: DriftFinding[] = [];
  const actions: DriftAction[] = [];
  const ok: string[] = [];
  const notes = [...live.notes];

  // --- Pools, their nodes and scale sets ----------------------------------------------------
  const poolNodes = new Map<string, KubeObject[]>();
  const nodePool = new Map<string, string>();
  for (const n of live.nodes) {
    const pool = poolOfNode(n);
    if (!pool) continue;
    nodePool.set(n.metadata?.name ?? '', pool);
    poolNodes.set(pool, [...(poolNodes.get(pool) ?? []), n]);
  }
  const setByName = new Map(live.scaleSets.map((s) => [lc(s.name), s]));
  const poolSet = (pool: string): ScaleSet | undefined => {
    for (const n of poolNodes.get(pool) ?? []) {
      const ref = scaleSetFromProviderId((n.spec as { providerID?: string } | undefined)?.providerID);
      const s = ref ? setByName.get(lc(ref.name)) : undefined;
      if (s) return s;
    }
    return live.scaleSets.find((s) => s.tags[POOL_TAG] === pool);
  };
  const poolNames = sorted(new Set([...poolNodes.keys(), ...(live.managedCluster?.agentPools.map((p) => p.name) ?? []), ...live.scaleSets.map((s) => s.tags[POOL_TAG]).filter(Boolean)]));
  const inventoryPools = new Map(inventory.pools.map((p) => [p.name, p]));
  for (const p of poolNames) if (!poolNodes.has(p)) notes.push(`pool ${p} has no node right now: where pods may be scheduled there cannot be judged (only the inventory's identities are checked on its scale set)`);

  // --- ARM identities ---------------------------------------------------------------------------
  const armById = new Map<string, ManagedIdentity>(live.armIdentities.map((i) => [lc(i.id), i]));
  const groupListed = (id: string) => {
    const m = /\/resourcegroups\/([^/]+)\//i.exec(id);
    return m ? live.listedGroups.includes(lc(m[1])) : false;
  };
  const inArm = (id: string): 'yes' | 'no' | 'unknown' => (armById.has(lc(id)) ? 'yes' : groupListed(id) ? 'no' : 'unknown');

  // --- Who needs which identity where ------------------------------------------------------------
  const required = new Map<string, Map<string, Need>>();
  const need = (pool: string, id: string, name: string, reason: string) => {
    let m = required.get(pool);
    if (!m) required.set(pool, (m = new Map()));
    let n = m.get(lc(id));
    if (!n) m.set(lc(id), (n = { id, name, reasons: new Set() }));
    n.reasons.add(reason);
  };
  for (const i of inventory.identities) {
    if (i.type !== 0 || !i.resourceId) continue;
    for (const p of i.pools ?? []) need(p, i.resourceId, i.name, 'inventory');
  }

  const workloads: Workload[] = [];
  for (const c of live.controllers) {
    if ((c.metadata?.ownerReferences ?? []).length) continue;
    const t = podTemplateOf(c);
    const selector = t?.metadata?.labels?.[BINDING_LABEL];
    if (selector) workloads.push({ kind: c.kind ?? 'Unknown', namespace: c.metadata?.namespace ?? 'default', name: c.metadata?.name ?? '', selector, spec: (t?.spec ?? {}) as Workload['spec'] });
  }
  const livePods = live.pods.filter((p) => {
    const phase = (p.status as { phase?: string } | undefined)?.phase;
    return !p.metadata?.deletionTimestamp && phase !== 'Succeeded' && phase !== 'Failed' && p.metadata?.labels?.[PROBE_LABEL] !== 'true' && p.metadata?.labels?.[BINDING_LABEL];
  });
  for (const p of livePods) {
    if ((p.metadata?.ownerReferences ?? []).length) continue;
    workloads.push({ kind: 'Pod', namespace: p.metadata?.namespace ?? 'default', name: p.metadata?.name ?? '', selector: p.metadata!.labels![BINDING_LABEL], spec: (p.spec ?? {}) as Workload['spec'] });
  }

  const identityObj = new Map(live.identities.map((i) => [nsName(i), i]));
  /** Identities a pod in `ns` with `selector` gets in managed mode (bindings and identities of its own namespace). */
  const boundIdentities = (ns: string, selector: string): { obj: KubeObject; binding: KubeObject }[] =>
    live.bindings
      .filter((b) => b.metadata?.namespace === ns && specOf<{ selector?: string }>(b).selector === selector)
      .map((b) => ({ binding: b, obj: identityObj.get(`${ns}/${specOf<{ azureIdentity?: string }>(b).azureIdentity ?? ''}`) }))
      .filter((x): x is { obj: KubeObject; binding: KubeObject } => x.obj !== undefined);

  const crossNs = new Map<string, { ns: string; selector: string; who: string[]; elsewhere: KubeObject[] }>();
  /** Live requirement per identity key: pools and namespaces, for the inventory update. */
  const liveUse = new Map<string, { pools: Set<string>; namespaces: Set<string>; services: Map<string, { kind: string; selector: string; pools: Set<string> }> }>();
  const useOf = (key: string) => {
    let u = liveUse.get(key);
    if (!u) liveUse.set(key, (u = { pools: new Set(), namespaces: new Set(), services: new Map() }));
    return u;
  };
  const onIdentities = (w: { namespace: string; selector: string; kind: string; name: string }, pools: string[], why: string) => {
    const bound = boundIdentities(w.namespace, w.selector);
    if (!bound.length) {
      const elsewhere = live.bindings.filter((b) => b.metadata?.namespace !== w.namespace && specOf<{ selector?: string }>(b).selector === w.selector);
      if (elsewhere.length) {
        const k = `${w.namespace}\u0000${w.selector}`;
        const entry = crossNs.get(k) ?? { ns: w.namespace, selector: w.selector, who: [], elsewhere };
        const who = `${w.kind.toLowerCase()} ${w.namespace}/${w.name}`;
        if (!entry.who.includes(who)) entry.who.push(who);
        crossNs.set(k, entry);
      }
      return;
    }
    for (const { obj } of bound) {
      const s = specOf<{ type?: number; resourceID?: string; clientID?: string }>(obj);
      const key = identityKey({ resourceId: s.resourceID, clientId: s.clientID, namespace: obj.metadata?.namespace ?? '', name: obj.metadata?.name ?? '' });
      const u = useOf(key);
      u.namespaces.add(w.namespace);
      const svcKey = `${w.namespace}/${w.name}`;
      const svc = u.services.get(svcKey) ?? { kind: w.kind, selector: w.selector, pools: new Set<string>() };
      u.services.set(svcKey, svc);
      for (const p of pools) {
        u.pools.add(p);
        svc.pools.add(p);
        if ((s.type ?? 0) === 0 && s.resourceID) need(p, s.resourceID, obj.metadata?.name ?? '', why);
      }
    }
  };
  for (const w of workloads) onIdentities(w, poolsAdmitting(w.spec, poolNodes), `${w.kind.toLowerCase()} ${w.namespace}/${w.name} may be scheduled here`);
  for (const p of livePods) {
    const pool = nodePool.get(String((p.spec as { nodeName?: string } | undefined)?.nodeName ?? ''));
    if (!pool) continue;
    const owner = p.metadata?.ownerReferences?.[0];
    onIdentities({ namespace: p.metadata?.namespace ?? 'default', selector: p.metadata!.labels![BINDING_LABEL], kind: owner?.kind ?? 'Pod', name: owner?.name ?? p.metadata?.name ?? '' }, [pool], `pod ${nsName(p)} runs here`);
  }

  // --- Scale sets: missing, stale and unknown identities ---------------------------------------
  const newPools: string[] = [];
  let complete = 0;
  const reportedNotInArm = new Set<string>();
  for (const pool of poolNames) {
    const needs = sorted((required.get(pool) ?? new Map<string, Need>()).values(), (n) => lc(n.id));
    const known = inventoryPools.has(pool);
    const set = poolSet(pool);
    if (!known) newPools.push(pool);
    if (!needs.length) {
      if (!known) {
        findings.push({
          code: 'pool-not-in-inventory',
          severity: 'notice',
          subject: `pool ${pool}`,
          message: 'new since the inventory; no pod with aadpodidbinding runs or may be scheduled there, so it needs no identity',
          fix: 'podid-migrate drift --update-inventory   (adds the pool to the inventory file)',
          fixKind: 'inventory',
          actionIds: ['inventory/update'],
        });
      }
      continue;
    }
    if (!set) {
      findings.push({
        code: 'pool-not-vmss',
        severity: 'drift',
        subject: `pool ${pool}`,
        message: `pods with pod identities run or may run here (${list(needs.map((n) => n.name))}), but no VMSS backs the pool, so no identity can be assigned to it`,
        fix: 'Move those workloads to a VMSS pool (nodeSelector kubernetes.azure.com/agentpool=<pool>), or replace the pool with a VMSS pool.',
        fixKind: 'manual',
        actionIds: [],
      });
      continue;
    }
    const have = new Set(Object.keys(set.userAssignedIdentities).map(lc));
    const missing: Need[] = [];
    for (const n of needs) {
      if (have.has(lc(n.id))) continue;
      if (inArm(n.id) === 'no') {
        if (!reportedNotInArm.has(lc(n.id))) {
          reportedNotInArm.add(lc(n.id));
          findings.push({
            code: 'identity-not-in-arm',
            severity: 'drift',
            subject: `identity ${n.name}`,
            message: `${n.id} is needed (pool ${pool}: ${list(sorted(n.reasons), 2)}) but does not exist in Azure; pods using it get no token`,
            fix: `Re-create it (az identity create -g ${/\/resourcegroups\/([^/]+)\//i.exec(n.id)?.[1]} -n ${n.name}), then update the AzureIdentity's clientID and run podid-migrate drift --fix.`,
            fixKind: 'manual',
            actionIds: [],
          });
        }
        continue;
      }
      missing.push(n);
    }
    if (!missing.length) {
      complete++;
      continue;
    }
    const actionId = `vmss/${set.name}/add-identities`;
    const names = missing.map((n) => n.name);
    actions.push({
      id: actionId,
      kind: 'vmss-add-identities',
      op: '~',
      target: `vmss ${set.name}`,
      summary: `identities: ${names.map((n) => `+ ${n}`).join(', ')} (keeps ${have.size} existing)`,
      api: 'arm',
      writes: { kube: 0, arm: Math.ceil(missing.length / PER_PATCH) },
      details: { resourceGroup: set.resourceGroup, scaleSet: set.name, pool, identities: missing.map((n) => ({ id: n.id, name: n.name })) },
    });
    // The inventory first, then what the live pods and templates say.
    const reasons = sorted(new Set(missing.flatMap((n) => [...n.reasons])), (r) => (r === 'inventory' ? '' : r)).map((r) => (r === 'inventory' ? 'the inventory' : r));
    const patches = Math.ceil(missing.length / PER_PATCH);
    if (known) {
      findings.push({
        code: 'identity-missing-on-vmss',
        severity: 'drift',
        subject: `vmss ${set.name}`,
        message: `missing identit${missing.length === 1 ? 'y' : 'ies'} ${list(names, 5)} (pool ${pool}; needed by ${list(reasons, 2, '; ')}): pods there get no token for ${missing.length === 1 ? 'it' : 'them'}`,
        fix: `podid-migrate drift --fix   (${patches} PATCH: ${names.map((n) => `+ ${n}`).join(', ')})`,
        fixKind: 'auto',
        actionIds: [actionId],
      });
    } else {
      findings.push({
        code: 'new-pool-missing-identities',
        severity: 'drift',
        subject: `pool ${pool} (new since the inventory)`,
        message: `the inventory never saw it, but pods with aadpodidbinding need it: ${list(reasons, 2, '; ')}; vmss ${set.name} carries ${needs.length - missing.length} of the ${needs.length} identities they use (missing ${list(names, 5)})`,
        fix: `podid-migrate drift --fix --update-inventory   (${patches} PATCH: ${names.map((n) => `+ ${n}`).join(', ')}; the pool added to the inventory)`,
        fixKind: 'auto',
        actionIds: [actionId, 'inventory/update'],
      });
    }
  }
  const withNeeds = poolNames.filter((p) => (required.get(p)?.size ?? 0) > 0).length;
  if (complete) ok.push(`${complete} of ${withNeeds} scale set(s) that need pod identities carry all of them`);

  // Stale entries: the VMSS shows the ids the identity had when it was assigned.
  const desiredIds = new Set<string>([...inventory.identities.map((i) => lc(i.resourceId ?? '')), ...live.identities.map((i) => lc(specOf<{ resourceID?: string }>(i).resourceID ?? ''))].filter(Boolean));
  let stale = 0;
  for (const set of sorted(live.scaleSets, (s) => s.name)) {
    for (const [id, v] of sorted(Object.entries(set.userAssignedIdentities), ([k]) => lc(k))) {
      const arm = armById.get(lc(id));
      if (arm) {
        const clientStale = v.clientId && arm.clientId && lc(v.clientId) !== lc(arm.clientId);
        const principalStale = v.principalId && arm.principalId && lc(v.principalId) !== lc(arm.principalId);
        if (!clientStale && !principalStale) continue;
        stale++;
        findings.push({
          code: 'stale-vmss-identity',
          severity: 'drift',
          subject: `vmss ${set.name}`,
          message: `carries ${arm.name} with client id ${v.clientId ?? '?'} / principal id ${v.principalId ?? '?'}, but the identity in Azure now has client id ${arm.clientId} / principal id ${arm.principalId} (deleted and re-created under the same name?); IMDS answers "Identity not found" for it on these nodes`,
          fix: `Remove and assign it again (the identity is unusable on pool ${set.tags[POOL_TAG] ?? set.name} until the assign completes): az vmss identity remove -g ${set.resourceGroup} -n ${set.name} --identities ${id} && az vmss identity assign -g ${set.resourceGroup} -n ${set.name} --identities ${id}`,
          fixKind: 'manual',
          actionIds: [],
        });
      } else if (desiredIds.has(lc(id)) && groupListed(id) && !reportedNotInArm.has(lc(id))) {
        reportedNotInArm.add(lc(id));
        findings.push({
          code: 'identity-not-in-arm',
          severity: 'drift',
          subject: `identity ${nameOfId(id)}`,
          message: `vmss ${set.name} carries ${id}, which no longer exists in Azure; pods using it get no token`,
          fix: `Re-create the identity (or point the AzureIdentity at another), then: az vmss identity remove -g ${set.resourceGroup} -n ${set.name} --identities ${id} && podid-migrate drift --fix`,
          fixKind: 'manual',
          actionIds: [],
        });
      }
    }
  }
  if (!stale && live.armIdentities.length) ok.push('no scale set carries a stale client id');

  // AzureIdentity objects whose clientID no longer matches the identity in ARM.
  for (const i of sorted(live.identities, nsName)) {
    const s = specOf<{ type?: number; resourceID?: string; clientID?: string }>(i);
    const arm = s.resourceID ? armById.get(lc(s.resourceID)) : undefined;
    if (!arm || !s.clientID || !arm.clientId || lc(s.clientID) === lc(arm.clientId)) continue;
    findings.push({
      code: 'azureidentity-client-id-mismatch',
      severity: 'drift',
      subject: `azureidentity ${nsName(i)}`,
      message: `spec.clientID ${s.clientID} is not the client id of ${arm.name} in Azure (${arm.clientId}); NMI asks IMDS for the old one and gets no token`,
      fix: `kubectl patch azureidentity -n ${i.metadata?.namespace} ${i.metadata?.name} --type merge -p '{"spec":{"clientID":"${arm.clientId}"}}'`,
      fixKind: 'manual',
      actionIds: [],
    });
  }

  // --- Objects the inventory does not know ---------------------------------------------------------
  const inventoryKeys = new Set(inventory.identities.map((i) => identityKey(i)));
  const inventoryBindings = new Set(inventory.identities.flatMap((i) => (i.bindings ?? []).map((b) => `${b.namespace}/${b.name}`)));
  const newIdentities: InventoryUpdateDetails['identities'] = [];
  const keyOfObj = (o: KubeObject) => {
    const s = specOf<{ resourceID?: string; clientID?: string }>(o);
    return identityKey({ resourceId: s.resourceID, clientId: s.clientID, namespace: o.metadata?.namespace ?? '', name: o.metadata?.name ?? '' });
  };
  const bindingsOf = (o: KubeObject) =>
    sorted(
      live.bindings.filter((b) => b.metadata?.namespace === o.metadata?.namespace && specOf<{ azureIdentity?: string }>(b).azureIdentity === o.metadata?.name && specOf<{ selector?: string }>(b).selector),
      nsName,
    ).map((b) => ({ name: b.metadata?.name ?? '', namespace: b.metadata?.namespace ?? '', selector: specOf<{ selector: string }>(b).selector }));
  const addedKeys = new Set<string>();
  for (const i of sorted(live.identities, nsName)) {
    const key = keyOfObj(i);
    if (inventoryKeys.has(key) || addedKeys.has(key)) continue;
    addedKeys.add(key);
    const s = specOf<{ type?: number; resourceID?: string; clientID?: string }>(i);
    const use = liveUse.get(key);
    const type = ([0, 1, 2].includes(s.type ?? 0) ? (s.type ?? 0) : 0) as 0 | 1 | 2;
    newIdentities.push({
      name: i.metadata?.name ?? '',
      namespace: i.metadata?.namespace ?? '',
      type,
      ...(s.resourceID ? { resourceId: s.resourceID } : {}),
      ...(s.clientID ? { clientId: s.clientID } : {}),
      pools: sorted(use?.pools ?? []),
      namespaces: sorted(use?.namespaces ?? []),
      bindings: bindingsOf(i),
      services: sorted(use?.services.entries() ?? [], ([k]) => k).map(([name, svc]) => ({ name, kind: svc.kind, selector: svc.selector, pools: sorted(svc.pools) })),
    });
    findings.push({
      code: 'identity-not-in-inventory',
      severity: 'drift',
      subject: `azureidentity ${nsName(i)}`,
      message: `not in the inventory${use?.pools.size ? `; pods using it run or may run on ${list(sorted(use.pools))}` : '; no pod uses it yet'}: no test case covers it and a fix cannot know where it must be assigned from the inventory`,
      fix: 'podid-migrate drift --update-inventory   (adds it with a token test case per service; edit them)',
      fixKind: 'inventory',
      actionIds: ['inventory/update'],
    });
  }
  const identityBindings = new Map<string, InventoryUpdateDetails['identityBindings'][number]>();
  for (const b of sorted(live.bindings, nsName)) {
    if (inventoryBindings.has(nsName(b))) continue;
    const bs = specOf<{ azureIdentity?: string; selector?: string }>(b);
    const idObj = identityObj.get(`${b.metadata?.namespace}/${bs.azureIdentity ?? ''}`);
    const key = idObj ? keyOfObj(idObj) : undefined;
    if (key && addedKeys.has(key)) continue; // reported with its new identity
    if (key && inventoryKeys.has(key) && bs.selector) {
      const entry = identityBindings.get(key) ?? { identity: key, bindings: [] };
      entry.bindings.push({ name: b.metadata?.name ?? '', namespace: b.metadata?.namespace ?? '', selector: bs.selector });
      identityBindings.set(key, entry);
    }
    findings.push({
      code: 'binding-not-in-inventory',
      severity: 'drift',
      subject: `azureidentitybinding ${nsName(b)}`,
      message: `selector ${bs.selector ?? '(none)'} -> identity ${bs.azureIdentity ?? '(none)'}${idObj ? '' : ' (no such AzureIdentity in its namespace: managed mode finds none)'}; not in the inventory`,
      fix: idObj ? 'podid-migrate drift --update-inventory' : `Create AzureIdentity ${b.metadata?.namespace}/${bs.azureIdentity} (managed mode needs it in the binding's namespace), then podid-migrate drift --update-inventory`,
      fixKind: idObj ? 'inventory' : 'manual',
      actionIds: idObj ? ['inventory/update'] : [],
    });
  }

  for (const c of sorted(crossNs.values(), (x) => `${x.ns}/${x.selector}`)) {
    const src = c.elsewhere[0];
    const srcId = specOf<{ azureIdentity?: string }>(src).azureIdentity ?? '<identity>';
    findings.push({
      code: 'cross-namespace-binding',
      severity: 'drift',
      subject: list(sorted(c.who), 2),
      message: `pods carry aadpodidbinding=${c.selector}, but the only bindings with that selector are in ${list(sorted(new Set(c.elsewhere.map((b) => b.metadata?.namespace ?? ''))))}; managed mode matches bindings in the pod's own namespace only, so these pods get 404 from NMI`,
      fix: `Copy the binding and its identity into ${c.ns}: kubectl get azureidentity -n ${src.metadata?.namespace} ${srcId} -o json | jq '{apiVersion,kind,metadata:{name:.metadata.name,namespace:"${c.ns}"},spec}' | kubectl apply -f - ; the same for azureidentitybinding -n ${src.metadata?.namespace} ${src.metadata?.name}`,
      fixKind: 'manual',
      actionIds: [],
    });
  }

  // --- NMI ------------------------------------------------------------------------------------------
  const nmis = findNmiDaemonSets(live.daemonSets);
  const nmi = nmis[0];
  if (!nmi) {
    findings.push({
      code: 'nmi-missing',
      severity: 'drift',
      subject: 'daemonset nmi',
      message: 'no DaemonSet runs the AAD Pod Identity NMI: no node intercepts IMDS, pods get whatever IMDS hands out (or 400 with several identities)',
      fix: 'Install NMI in managed mode: kubectl apply -f https://raw.githubusercontent.com/Azure/aad-pod-identity/v1.8.17/deploy/infra/managed-mode-deployment.yaml (or helm upgrade ... --set operationMode=managed)',
      fixKind: 'manual',
      actionIds: [],
    });
  } else {
    const subject = `daemonset ${nmi.namespace}/${nmi.name}`;
    const helm = nmi.install === 'helm' ? `; to keep it across Helm upgrades: ${helmManagedValues(nmi.helmRelease)}` : '';
    if (!nmiArgsAreManaged(nmi.args)) {
      let args: string[] | undefined;
      try {
        args = managedNmiArgs(nmi.args, nmi.version);
      } catch {
        args = undefined;
      }
      const mode = nmi.args.find((a) => /^--?operation-mode/.test(a)) ?? 'no --operation-mode (standard)';
      if (args) {
        const added = args.filter((a) => !nmi.args.includes(a)).map((a) => `+ ${a}`);
        const removed = nmi.args.filter((a) => !args.includes(a)).map((a) => `- ${a}`);
        actions.push({
          id: 'nmi/managed-args',
          kind: 'nmi-managed-args',
          op: '~',
          target: subject,
          summary: `args: ${[...removed, ...added].join(', ')}`,
          api: 'kube',
          writes: { kube: 1, arm: 0 },
          details: { namespace: nmi.namespace, name: nmi.name, container: nmi.container, containerIndex: nmi.containerIndex, argsBefore: nmi.args, args },
        });
      }
      findings.push({
        code: 'nmi-not-managed',
        severity: 'drift',
        subject,
        message: `${mode}${nmi.args.some((a) => /forceNamespaced/.test(a)) ? '' : ', no --forceNamespaced'}: NMI is back in standard mode (a Helm upgrade or re-apply with old values?) and waits for AzureAssignedIdentities that no MIC creates; new pods get no token`,
        fix: args ? `podid-migrate drift --fix   (~ args: ${[...nmi.args.filter((a) => !args.includes(a)).map((a) => `- ${a}`), ...args.filter((a) => !nmi.args.includes(a)).map((a) => `+ ${a}`)].join(', ')})${helm}` : `Set --operation-mode=managed and --forceNamespaced on the NMI container${helm}`,
        fixKind: args ? 'auto' : 'manual',
        actionIds: args ? ['nmi/managed-args'] : [],
      });
    } else {
      const stalePods: string[] = [];
      const onNode = new Set<string>();
      for (const p of live.nmiPods) {
        if (p.metadata?.deletionTimestamp) continue;
        const node = (p.spec as { nodeName?: string } | undefined)?.nodeName;
        const c = ((p.spec as { containers?: { name: string; args?: string[] }[] } | undefined)?.containers ?? []).find((x) => x.name === nmi.container);
        if (c && !nmiArgsAreManaged(c.args ?? [])) stalePods.push(`${p.metadata?.name}${node ? ` on ${node}` : ''}`);
        if (node && (p.status as { phase?: string } | undefined)?.phase === 'Running') onNode.add(node);
      }
      if (stalePods.length) {
        findings.push({
          code: 'nmi-pod-not-managed',
          severity: 'drift',
          subject,
          message: `the DaemonSet says managed mode, but ${stalePods.length} NMI pod(s) still run the standard-mode args: ${list(sorted(stalePods), 4)} (a rollout that did not finish)`,
          fix: `kubectl -n ${nmi.namespace} rollout status ds/${nmi.name}; if it is stuck, delete those pods one at a time (kubectl -n ${nmi.namespace} delete pod <pod>)`,
          fixKind: 'manual',
          actionIds: [],
        });
      } else ok.push(`NMI ${subject} in managed mode with --forceNamespaced on ${onNode.size} node(s)`);
      const bare = sorted(live.nodes.map((n) => n.metadata?.name ?? '').filter((n) => n && !onNode.has(n)));
      if (bare.length) {
        findings.push({
          code: 'nmi-not-on-node',
          severity: 'drift',
          subject,
          message: `no running NMI pod on ${bare.length} node(s): ${list(bare, 4)}; pods there call IMDS directly`,
          fix: `kubectl -n ${nmi.namespace} get pods -o wide -l ${Object.entries((nmi.object.spec as { selector?: { matchLabels?: Record<string, string> } }).selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',')}; check the DaemonSet's tolerations and nodeSelector against those nodes' taints and labels`,
          fixKind: 'manual',
          actionIds: [],
        });
      }
    }
  }

  // --- MIC and its objects ------------------------------------------------------------------------
  const mics = findMicDeployments(live.deployments);
  for (const m of mics) {
    const subject = `deployment ${m.namespace}/${m.name}`;
    const helm = m.install === 'helm' ? `; Helm brings it back on the next upgrade unless: ${helmManagedValues(m.helmRelease)}` : '';
    if ((m.replicas ?? 1) > 0) {
      const id = `mic/${m.namespace}/${m.name}/scale-zero`;
      actions.push({ id, kind: 'mic-scale-zero', op: '~', target: subject, summary: `replicas: ${m.replicas} -> 0`, api: 'kube', writes: { kube: 1, arm: 0 }, details: { namespace: m.namespace, name: m.name, replicasBefore: m.replicas ?? 1 } });
      findings.push({
        code: 'mic-running',
        severity: 'drift',
        subject,
        message: `MIC runs again (${m.replicas} replica(s); a Helm upgrade with old values?): it creates AzureAssignedIdentities, and its garbage collection removes identities from scale sets when pods go away`,
        fix: `podid-migrate drift --fix   (~ replicas: ${m.replicas} -> 0)${helm}`,
        fixKind: 'auto',
        actionIds: [id],
      });
    } else {
      findings.push({
        code: 'mic-present',
        severity: 'notice',
        subject,
        message: 'MIC is scaled to 0 but still installed; a scale-up or Helm upgrade starts it again',
        fix: `kubectl -n ${m.namespace} delete deployment ${m.name}${helm}`,
        fixKind: 'manual',
        actionIds: [],
      });
    }
  }
  if (!mics.length) ok.push('MIC absent');
  if (live.assigned.length) {
    findings.push({
      code: 'assigned-identities-present',
      severity: 'drift',
      subject: `${live.assigned.length} azureassignedidentities`,
      message: `${live.assigned.length} AzureAssignedIdentit${live.assigned.length === 1 ? 'y' : 'ies'} exist (e.g. ${list(sorted(live.assigned.map(nsName)), 2)}): MIC ran since the cutover; a MIC that starts again acts on them`,
      fix: `If the migration is not finished, that is its cleanup step (podid-migrate apply --step cleanup). Otherwise, once MIC is at 0 replicas: kubectl get azureassignedidentities -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name}{"\\n"}{end}' | while read ns n; do kubectl -n $ns patch azureassignedidentity $n --type merge -p '{"metadata":{"finalizers":null}}'; kubectl -n $ns delete azureassignedidentity $n; done`,
      fixKind: 'manual',
      actionIds: [],
    });
  } else ok.push('0 AzureAssignedIdentities');

  // --- Pods that bypass NMI on scale sets with several identities -------------------------------------
  const multi = new Map<string, number>();
  for (const pool of poolNames) {
    const set = poolSet(pool);
    const n = set ? Object.keys(set.userAssignedIdentities).length : 0;
    if (n > 1) multi.set(pool, n);
  }
  const bypass = new Map<string, { why: string; pool: string; ns: string; pods: string[] }>();
  const addBypass = (p: KubeObject, why: string) => {
    const pool = nodePool.get(String((p.spec as { nodeName?: string } | undefined)?.nodeName ?? ''));
    if (!pool || !multi.has(pool) || isPodIdentityComponent(p)) return;
    const k = `${why}\u0000${pool}\u0000${p.metadata?.namespace}`;
    const e = bypass.get(k) ?? { why, pool, ns: p.metadata?.namespace ?? '', pods: [] };
    e.pods.push(p.metadata?.name ?? '');
    bypass.set(k, e);
  };
  for (const p of livePods) if ((p.spec as { hostNetwork?: boolean } | undefined)?.hostNetwork) addBypass(p, 'run with hostNetwork');
  for (const p of live.exceptionPods) {
    if (p.metadata?.deletionTimestamp) continue;
    const x = live.exceptions.find((e) => e.metadata?.namespace === p.metadata?.namespace && Object.entries(specOf<{ podLabels?: Record<string, string> }>(e).podLabels ?? {}).some(([k, v]) => p.metadata?.labels?.[k] === v));
    addBypass(p, `are matched by AzurePodIdentityException ${x ? nsName(x) : '?'}`);
  }
  for (const b of sorted(bypass.values(), (x) => `${x.pool}/${x.ns}/${x.why}`)) {
    findings.push({
      code: 'nmi-bypass',
      severity: 'drift',
      subject: `pods ${b.ns}/${list(sorted(b.pods), 2)}`,
      message: `${b.pods.length} pod(s) ${b.why} on pool ${b.pool}, whose scale set carries ${multi.get(b.pool)} user-assigned identities: they reach IMDS directly, and a token request without client_id gets 400 "Multiple user assigned identities exist"`,
      fix: 'Have them ask for a token with the client_id (or msi_res_id) of the identity they need, or drop hostNetwork / the exception.',
      fixKind: 'manual',
      actionIds: [],
    });
  }

  // --- The inventory update -------------------------------------------------------------------------
  const poolAdds: InventoryUpdateDetails['pools'] = newPools.map((name) => {
    const set = poolSet(name);
    return { name, ...(set ? { scaleSet: set.id } : {}), nodes: (poolNodes.get(name) ?? []).length, identitiesBefore: set ? sorted(Object.keys(set.userAssignedIdentities), lc) : [] };
  });
  const identityPools: InventoryUpdateDetails['identityPools'] = [];
  for (const i of inventory.identities) {
    const use = liveUse.get(identityKey(i));
    const extra = sorted([...(use?.pools ?? [])].filter((p) => !(i.pools ?? []).includes(p)));
    if (extra.length) identityPools.push({ identity: identityKey(i), name: i.name, namespace: i.namespace, pools: extra });
  }
  if (poolAdds.length || identityPools.length || newIdentities.length || identityBindings.size) {
    const parts = [
      ...poolAdds.map((p) => `+ pool ${p.name}`),
      ...identityPools.map((p) => `~ identity ${p.name} pools: ${p.pools.map((x) => `+ ${x}`).join(', ')}`),
      ...newIdentities.map((i) => `+ identity ${i.namespace}/${i.name}`),
      ...[...identityBindings.values()].flatMap((e) => e.bindings.map((b) => `+ binding ${b.namespace}/${b.name}`)),
    ];
    actions.push({
      id: 'inventory/update',
      kind: 'inventory-update',
      op: '~',
      target: `file ${opts.inventoryPath}`,
      summary: parts.join(', '),
      api: 'none',
      writes: { kube: 0, arm: 0 },
      details: { path: opts.inventoryPath, pools: poolAdds, identityPools, identityBindings: sorted(identityBindings.values(), (e) => e.identity), identities: newIdentities },
    });
    // Identities needed on known pools that the inventory does not list there.
    for (const p of identityPools) {
      if (findings.some((f) => f.actionIds.includes('inventory/update') && f.subject.includes(p.name))) continue;
      findings.push({
        code: 'identity-pools-not-in-inventory',
        severity: 'notice',
        subject: `identity ${p.namespace}/${p.name}`,
        message: `pods using it run or may be scheduled on ${list(p.pools)}, which the inventory does not list for it`,
        fix: 'podid-migrate drift --update-inventory',
        fixKind: 'inventory',
        actionIds: ['inventory/update'],
      });
    }
  }
  return { findings, actions, ok, notes };
}
