/**
 * What AKS itself does to node pools and identities, so a rehearsal can show what breaks
 * managed mode after the cutover (DOMAIN.md section 9):
 *
 * - `add-pool`: a new pool gets a new VMSS and nodes carrying only the kubelet identity
 *   (upstream #1196: none of the pod identities);
 * - `upgrade-pool`: nodes reimaged one at a time; with `rewriteIdentities` the VMSS identity
 *   list is rewritten to what AKS knows (kubelet and add-on identities), as seen in
 *   Azure/AKS#1650 and aad-pod-identity #633/#639;
 * - `scale-pool`: the VMSS capacity changes, nodes register or go away;
 * - `recreate-identity`: a user-assigned identity deleted and created again under the same
 *   name: same resource id, new client and principal ids; scale sets keep the stale entry;
 * - `reinstall-standard`: a `helm upgrade` with old values: NMI's DaemonSet back to the
 *   standard-mode spec and (unless `mic: false`) MIC's objects re-created.
 *
 * Reachable from a scenario (`aksOperations`, each after a delay in simulated seconds) and
 * from the control API (`POST /_sandbox/aks/<op>` with the operation as JSON body).
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from './clock.ts';
import type { ArmState } from './arm/state.ts';
import { addNode } from './controllers/index.ts';
import { podIdentityObjects } from './install.ts';
import { applyDefaults, validate } from './kube-api/defaults.ts';
import type { Scenario } from './scenario.ts';
import type { KObject, ObjectStore } from './store.ts';

/** What an operation needs of the sandbox. `Sandbox` satisfies it. */
export interface AksOperationTarget {
  readonly scenario: Scenario;
  readonly store: ObjectStore;
  readonly arm: ArmState;
  readonly clock: Clock;
}

/** `az aks nodepool add`. */
export interface AddPoolOperation {
  op: 'add-pool';
  name: string;
  count: number;
  vmSize?: string;
  mode?: 'System' | 'User';
  /** Node labels (`--labels`). */
  labels?: Record<string, string>;
  /** Node taints `key=value:Effect` (`--node-taints`). */
  taints?: string[];
  maxPods?: number;
}

/** `az aks nodepool upgrade` / `upgrade --node-image-only`: node by node. */
export interface UpgradePoolOperation {
  op: 'upgrade-pool';
  pool: string;
  /** Rewrite the VMSS identity list to the kubelet and add-on identities (Azure/AKS#1650). */
  rewriteIdentities?: boolean;
}

/** `az aks nodepool scale`. */
export interface ScalePoolOperation {
  op: 'scale-pool';
  pool: string;
  count: number;
}

/** `az identity delete` then `az identity create` with the same name. */
export interface RecreateIdentityOperation {
  op: 'recreate-identity';
  /** Identity name (or resource id). */
  identity: string;
}

/** `helm upgrade` with the standard-mode values of the scenario's install. */
export interface ReinstallStandardOperation {
  op: 'reinstall-standard';
  /** Put NMI's DaemonSet back to the standard-mode spec (default true). */
  nmi?: boolean;
  /** Re-create MIC's objects and scale it back to the scenario's replicas (default true). */
  mic?: boolean;
}

export type AksOperation = AddPoolOperation | UpgradePoolOperation | ScalePoolOperation | RecreateIdentityOperation | ReinstallStandardOperation;

/** Operation names, as the control API path and the CLI sub-commands spell them. */
export const AKS_OPERATIONS = ['add-pool', 'upgrade-pool', 'scale-pool', 'recreate-identity', 'reinstall-standard'] as const;

/** A scenario entry: the operation and when it runs (simulated seconds after start). */
export type ScheduledAksOperation = AksOperation & { afterSeconds: number };

/** A request the sandbox refuses (bad name, unknown pool); the control API answers 400 with it. */
export class AksOperationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AksOperationError';
  }
}

const POOL_NAME = /^[a-z][a-z0-9]{0,11}$/;
const TAINT = /^([^=:\s]+)(?:=([^:\s]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$/;

function kubeletIdentityId(t: AksOperationTarget): string {
  const mc = t.arm.managedCluster();
  if (!mc) throw new AksOperationError('the sandbox has no managed cluster');
  return mc.kubeletIdentity.resourceId;
}

function scaleSetOfPool(t: AksOperationTarget, pool: string) {
  const set = t.arm.scaleSets().find((s) => s.poolName === pool);
  if (!set) throw new AksOperationError(`no node pool "${pool}" (pools: ${t.arm.scaleSets().map((s) => s.poolName).join(', ')})`);
  return set;
}

function freeNodeIp(store: ObjectStore): string {
  const nodes = store.typeOrThrow('', 'nodes');
  const used = new Set<string>();
  for (const n of store.scan(nodes)) for (const a of (n.status?.addresses ?? []) as { type: string; address: string }[]) if (a.type === 'InternalIP') used.add(a.address);
  for (let i = 0; ; i++) {
    const ip = `10.224.${Math.floor(i / 250)}.${(i % 250) + 4}`;
    if (!used.has(ip)) return ip;
  }
}

/** Adds a pool: a VMSS with the kubelet identity only, and its Ready nodes. */
export function addPool(t: AksOperationTarget, req: AddPoolOperation): { pool: string; scaleSet: string; nodes: string[] } {
  if (!POOL_NAME.test(req.name ?? '')) throw new AksOperationError(`name: "${req.name}" is not a pool name (lower-case letters and digits, starting with a letter, at most 12)`);
  if (!Number.isInteger(req.count) || req.count < 0 || req.count > 100) throw new AksOperationError(`count: ${req.count} is not a node count between 0 and 100`);
  if (t.arm.scaleSets().some((s) => s.poolName === req.name)) throw new AksOperationError(`pool "${req.name}" already exists`);
  const taints = (req.taints ?? []).map((raw) => {
    const m = TAINT.exec(raw);
    if (!m) throw new AksOperationError(`taints: "${raw}" is not key=value:NoSchedule|PreferNoSchedule|NoExecute`);
    return { key: m[1], ...(m[2] !== undefined ? { value: m[2] } : {}), effect: m[3] };
  });
  const mc = t.arm.managedCluster()!;
  const vmSize = req.vmSize ?? 'Standard_D4s_v5';
  const mode = req.mode ?? 'User';
  const set = t.arm.addScaleSet({ name: '', poolName: req.name, capacity: req.count, vmSize, identities: [kubeletIdentityId(t)] });
  // The managed cluster's agent pool list is what `az aks nodepool list` reads.
  mc.agentPools.push({ name: req.name, count: req.count, vmSize, mode, type: 'VirtualMachineScaleSets' });
  const nodeType = t.store.typeOrThrow('', 'nodes');
  const nodes: string[] = [];
  for (const inst of set.instances.values()) {
    addNode(t.store, {
      name: inst.computerName,
      pool: req.name,
      providerID: `azure:///subscriptions/${t.arm.subscriptionId}/resourceGroups/${set.resourceGroup.toLowerCase()}/providers/Microsoft.Compute/virtualMachineScaleSets/${set.name}/virtualMachines/${inst.instanceId}`,
      ip: freeNodeIp(t.store),
      capacityPods: req.maxPods ?? 110,
      labels: { 'kubernetes.azure.com/mode': mode.toLowerCase(), 'node.kubernetes.io/instance-type': vmSize, ...(req.labels ?? {}) },
    });
    if (taints.length) t.store.mutate(nodeType, undefined, inst.computerName, (n) => void (n.spec = { ...n.spec, taints }));
    nodes.push(inst.computerName);
  }
  return { pool: req.name, scaleSet: set.name, nodes };
}

/**
 * Upgrades a pool node by node (each instance reimaged and back before the next). With
 * `rewriteIdentities` the model first loses every user-assigned identity AKS does not manage.
 */
export async function upgradePool(t: AksOperationTarget, req: UpgradePoolOperation): Promise<{ pool: string; scaleSet: string; nodes: string[]; identitiesRemoved: string[] }> {
  const set = scaleSetOfPool(t, req.pool);
  let identitiesRemoved: string[] = [];
  if (req.rewriteIdentities) {
    const keep = new Set([kubeletIdentityId(t).toLowerCase()]);
    for (const name of t.scenario.pools.find((p) => p.name === req.pool)?.preassigned ?? []) {
      const id = t.arm.identity(name)?.id;
      if (id) keep.add(id.toLowerCase());
    }
    const delta: Record<string, null> = {};
    for (const [key, entry] of set.userAssignedIdentities) if (!keep.has(key)) delta[entry.id] = null;
    if (Object.keys(delta).length) identitiesRemoved = t.arm.patchIdentities(set.name, delta, { caller: 'aks' }).removed;
  }
  const nodes: string[] = [];
  const ids = [...set.instances.values()].filter((i) => i.provisioningState !== 'Deleting').sort((a, b) => Number(a.instanceId) - Number(b.instanceId));
  for (const inst of ids) {
    await t.arm.reimageInstances(set.name, [inst.instanceId]);
    await nodeReady(t, inst.computerName);
    nodes.push(inst.computerName);
  }
  return { pool: req.pool, scaleSet: set.name, nodes, identitiesRemoved };
}

/** Resolves once the node reports Ready again (the node controller follows the reimage). */
async function nodeReady(t: AksOperationTarget, name: string): Promise<void> {
  const nodes = t.store.typeOrThrow('', 'nodes');
  for (let i = 0; i < 600; i++) {
    const n = t.store.peek(nodes, undefined, name);
    const ready = ((n?.status?.conditions ?? []) as { type: string; status: string }[]).find((c) => c.type === 'Ready');
    if (!n || ready?.status === 'True') return;
    await t.clock.sleep(1000);
  }
}

/** Scales a pool's VMSS; resolves once the new instances run (their nodes register) or the removed ones are gone. */
export async function scalePool(t: AksOperationTarget, req: ScalePoolOperation): Promise<{ pool: string; scaleSet: string; count: number }> {
  const set = scaleSetOfPool(t, req.pool);
  if (!Number.isInteger(req.count) || req.count < 0 || req.count > 1000) throw new AksOperationError(`count: ${req.count} is not a node count between 0 and 1000`);
  await t.arm.setCapacity(set.name, req.count);
  const ap = t.arm.managedCluster()?.agentPools.find((p) => p.name === req.pool);
  if (ap) ap.count = req.count;
  return { pool: req.pool, scaleSet: set.name, count: req.count };
}

/** Deletes and re-creates an identity under the same resource id with new client and principal ids. */
export function recreateIdentity(t: AksOperationTarget, req: RecreateIdentityOperation): { id: string; before: { clientId: string; principalId: string }; after: { clientId: string; principalId: string } } {
  const old = t.arm.removeIdentity(req.identity ?? '');
  if (!old) throw new AksOperationError(`identity: no user-assigned identity "${req.identity}"`);
  const fresh = t.arm.addIdentity({ id: old.id, name: old.name, resourceGroup: old.resourceGroup, location: old.location, clientId: randomUUID(), principalId: randomUUID() });
  return { id: fresh.id, before: { clientId: old.clientId, principalId: old.principalId }, after: { clientId: fresh.clientId, principalId: fresh.principalId } };
}

function componentOf(o: KObject): 'nmi' | 'mic' | 'shared' {
  if (o.kind === 'DaemonSet') return 'nmi';
  if (o.kind === 'Deployment') return 'mic';
  if (/(^|-)mic(-|$)/.test(o.metadata.name ?? '')) return 'mic';
  if (/(^|-)nmi(-|$)/.test(o.metadata.name ?? '')) return 'nmi';
  return 'shared';
}

/**
 * A Helm-style reinstall of the standard-mode release: objects of the install that are gone are
 * created again; the NMI DaemonSet and the MIC Deployment get the chart's spec back (standard
 * mode, MIC's replicas), as `helm upgrade` with the old values renders them.
 */
export function reinstallStandard(t: AksOperationTarget, req: ReinstallStandardOperation): { created: string[]; updated: string[] } {
  const want = { nmi: req.nmi ?? true, mic: req.mic ?? true, shared: true };
  const created: string[] = [];
  const updated: string[] = [];
  for (const o of podIdentityObjects(t.scenario)) {
    if (!want[componentOf(o)]) continue;
    const type = t.store.typeForKind(o.apiVersion, o.kind);
    if (!type) continue;
    const name = `${o.kind.toLowerCase()} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
    const current = t.store.peek(type, o.metadata.namespace, o.metadata.name!);
    if (!current) {
      t.store.create(type, o, {
        prepare: (x) => {
          applyDefaults(type, x);
          validate(t.store, type, x);
        },
      });
      created.push(name);
    } else if (o.kind === 'DaemonSet' || o.kind === 'Deployment') {
      const rendered = structuredClone(o);
      applyDefaults(type, rendered);
      t.store.mutate(type, o.metadata.namespace, o.metadata.name!, (cur) => {
        cur.spec = rendered.spec;
        cur.metadata.labels = { ...cur.metadata.labels, ...rendered.metadata.labels };
        cur.metadata.annotations = { ...cur.metadata.annotations, ...rendered.metadata.annotations };
      });
      updated.push(name);
    }
  }
  return { created, updated };
}

/** Runs one operation (validated here: the control API and the scenario hand in untyped JSON). */
export async function runAksOperation(t: AksOperationTarget, op: AksOperation): Promise<unknown> {
  switch (op?.op) {
    case 'add-pool':
      return addPool(t, op);
    case 'upgrade-pool':
      return upgradePool(t, op);
    case 'scale-pool':
      return scalePool(t, op);
    case 'recreate-identity':
      return recreateIdentity(t, op);
    case 'reinstall-standard':
      return reinstallStandard(t, op);
    default:
      throw new AksOperationError(`op: "${(op as { op?: unknown })?.op}" is not one of ${AKS_OPERATIONS.join(', ')}`);
  }
}

/**
 * The control API part: `POST /_sandbox/aks/<op>` with the operation's fields as JSON. Answers
 * 200 with the result once the operation finished (an upgrade waits for every node), 400 for a
 * bad request. Returns undefined for any other path.
 */
export async function handleAksControl(t: AksOperationTarget, method: string | undefined, path: string, body: Buffer): Promise<{ status: number; payload: unknown } | undefined> {
  const m = /^\/aks\/([a-z-]+)$/.exec(path);
  if (!m || method !== 'POST') return undefined;
  let fields: Record<string, unknown>;
  try {
    fields = JSON.parse(body.toString('utf8') || '{}');
  } catch (e) {
    return { status: 400, payload: { error: `the body is not JSON: ${(e as Error).message}` } };
  }
  try {
    const result = await runAksOperation(t, { ...fields, op: m[1] } as AksOperation);
    return { status: 200, payload: { op: m[1], result } };
  } catch (e) {
    return { status: e instanceof AksOperationError ? 400 : 500, payload: { error: (e as Error).message } };
  }
}

/** Schedules a scenario's operations in simulated time; returns a stop function. Failures are kept for `status`. */
export function scheduleAksOperations(t: AksOperationTarget, ops: readonly ScheduledAksOperation[], onDone: (op: ScheduledAksOperation, outcome: { result?: unknown; error?: string }) => void = () => {}): () => void {
  let stopped = false;
  const timers = ops.map((op) =>
    t.clock.setTimeout(() => {
      if (stopped) return;
      const { afterSeconds: _after, ...rest } = op;
      runAksOperation(t, rest as AksOperation).then(
        (result) => onDone(op, { result }),
        (e: Error) => onDone(op, { error: e.message }),
      );
    }, op.afterSeconds * 1000),
  );
  return () => {
    stopped = true;
    for (const timer of timers) t.clock.clearTimeout(timer);
  };
}
