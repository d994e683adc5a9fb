/**
 * Step 3, `nmi-managed`: switches the existing NMI DaemonSet to managed mode in place (same
 * name, same namespace, so no second NMI ever fights for the host ports). Only the container
 * args and the update strategy change; everything else is kept.
 *
 * `--nmi-rollout drain` (default): the template is patched with `updateStrategy: OnDelete`
 * (nothing restarts), then node by node (`--nmi-max-unavailable` per pool, every pool at once,
 * nodes running MIC last in their pool) an `nmi-node-rollout` cordons and empties a node,
 * restarts its NMI and uncordons it, and the original strategy comes back. After the first wave
 * every node still on the old NMI is cordoned at once (`cordon-nodes`). So no service pod is on a
 * node while its NMI restarts, and from the second wave on a pod evicted (or newly created)
 * starts only on a node already in managed mode, where it waits for no MIC assignment. `--nmi-rollout in-place`: one rolling patch (`patch-container`, rollout
 * awaited until every NMI pod is Active). The check runs one token probe pod per pool (declared
 * in the plan's `checkWrites`).
 */
import pLimit from 'p-limit';
import type { Blocker, CheckResult, StepOutcome, StepPlan } from '../engine/step.ts';
import type { NmiNodeRolloutDetails } from './executors/nmi-node-rollout.ts';
import { wasCordonedBefore, type CordonNodesPreState } from './executors/cordon-nodes.ts';
import { clusterShape, DEFAULT_NMI_ROLLOUT, estimateRollout, maxUnavailableOf, rolloutNotes, rolloutWaves, stepTimeoutOf, type NmiNode, type NmiRollout } from './lib/nmi-rollout.ts';
import { sameJson } from './lib/util.ts';
import { analyseNodeDrain, drainBlockers } from './lib/drain-rules.ts';
import { KINDS } from '../kube/kinds.ts';
import { action, type MigrationAction } from './executors/index.ts';
import type { Ctx, MigrationStep } from './lib/context.ts';
import { inventoryFor, podIdentityFor } from './lib/inventory-source.ts';
import type { InventoryDocument } from './lib/inventory-model.ts';
import { isCordoned, isReady, poolOf } from './lib/nodes.ts';
import { daemonSetRolloutGap, healthBodies, helmManagedValues, managedNmiArgs, nmiPods, nmiProbePort, type PodIdentityWorkload } from './lib/pod-identity.ts';
import type { KubeObject } from '../kube/gateway.ts';
import { runTokenProbe } from './lib/probe.ts';
import { remainingMs } from './lib/util.ts';

export { nmiProbePort, withoutAddedDefaults } from './lib/pod-identity.ts';

export const NMI_ACTION_ID = 'nmi/managed-mode';
/** With `--nmi-rollout drain`: the template patch that also sets `updateStrategy: OnDelete`. */
export const NMI_ON_DELETE_ID = 'nmi/on-delete';
/** With `--nmi-rollout drain`: after the first wave, cordons every node still on the old NMI. */
export const NMI_CORDON_ID = 'nmi/cordon-old-nmi';

/** The update strategy the rollout uses: one node at a time, and never two NMIs on a node (they share host ports). */
export const NMI_UPDATE_STRATEGY = { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } } as const;

/** Describes the arg change for the plan line, e.g. `+ --operation-mode=managed, + --forceNamespaced, - --host-ip=$(HOST_IP)`. */
export function describeArgChange(before: readonly string[], after: readonly string[]): string {
  const added = after.filter((a) => !before.includes(a)).map((a) => `+ ${a}`);
  const removed = before.filter((a) => !after.includes(a)).map((a) => `- ${a}`);
  return [...removed.filter((r) => /operation-mode/.test(r)), ...added, ...removed.filter((r) => !/operation-mode/.test(r))].join(', ');
}

function strategyIsWanted(s: unknown, maxUnavailable: number | string = 1): boolean {
  const u = s as { type?: string; rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string } } | undefined;
  return u?.type === 'RollingUpdate' && String(u.rollingUpdate?.maxUnavailable ?? 1) === String(maxUnavailable) && String(u.rollingUpdate?.maxSurge ?? 0) === '0';
}

/** The API server's default DaemonSet strategy (restored when none was set). */
const DEFAULT_DS_STRATEGY = { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } };

/** One node per pool and, for each, an identity that pool needs with a service (namespace, selector) that uses it there. */
export function probeTargets(inv: InventoryDocument, nodesByPool: Map<string, string[]>): { pool: string; node: string; namespace: string; selector: string; identity: { name: string; resourceId: string; clientId: string; principalId?: string } }[] {
  const out = [];
  for (const p of inv.pools) {
    const node = nodesByPool.get(p.name)?.[0];
    if (!node) continue;
    for (const i of inv.identities) {
      if (i.type !== 0 || !i.resourceId || !i.clientId || !(i.pools ?? []).includes(p.name)) continue;
      const svc = i.services.find((s) => (s.pools ?? []).includes(p.name) && s.selector);
      if (!svc) continue;
      out.push({ pool: p.name, node, namespace: svc.name.split('/')[0], selector: svc.selector!, identity: { name: i.name, resourceId: i.resourceId, clientId: i.clientId, ...(i.principalId ? { principalId: i.principalId } : {}) } });
      break;
    }
  }
  return out;
}

/** The rollout this step runs: the one an earlier, unfinished run started, else `--nmi-rollout`, else the default. */
export function nmiRolloutOf(ctx: Ctx): NmiRollout {
  const live = ctx.journal.records().filter((r) => !r.rolledBack);
  if (live.some((r) => r.kind === 'nmi-node-rollout' || r.actionId === NMI_ON_DELETE_ID)) return 'drain';
  if (live.some((r) => r.actionId === NMI_ACTION_ID)) return 'in-place';
  const opt = ctx.options.nmiRollout;
  return opt === 'in-place' || opt === 'drain' ? opt : DEFAULT_NMI_ROLLOUT;
}

function inPlaceActions(nmi: PodIdentityWorkload, args: string[], strategy: unknown, maxUnavailable: number | string): MigrationAction[] {
  const wanted = { type: 'RollingUpdate', rollingUpdate: { maxUnavailable, maxSurge: 0 } };
  const argsChange = JSON.stringify(args) !== JSON.stringify(nmi.args);
  const strategyChange = !strategyIsWanted(strategy, maxUnavailable);
  if (!argsChange && !strategyChange) return [];
  const parts = [];
  if (argsChange) parts.push(`args: ${describeArgChange(nmi.args, args)}`);
  if (strategyChange) parts.push(`updateStrategy: RollingUpdate maxUnavailable ${maxUnavailable}`);
  return [
    action({
      id: NMI_ACTION_ID,
      kind: 'patch-container',
      op: '~',
      target: `daemonset ${nmi.namespace}/${nmi.name}`,
      summary: `${parts.join('; ')} (NMI ${nmi.version}, ${maxUnavailable === 1 ? 'one node' : `${maxUnavailable} nodes`} at a time)`,
      api: 'kube',
      writes: { kube: 1, arm: 0 },
      details: { workload: 'DaemonSet', namespace: nmi.namespace, name: nmi.name, container: nmi.container, containerIndex: nmi.containerIndex, args, updateStrategy: wanted, rollout: 'nmi-active' },
    }),
  ];
}

/**
 * `--nmi-rollout drain`: the template is patched with `updateStrategy: OnDelete` (nothing
 * restarts), then node by node (waves of `maxUnavailable` per pool, pools concurrently) an
 * `nmi-node-rollout` empties the node and restarts its NMI, and the original strategy comes back.
 */
function drainRolloutActions(ctx: Ctx, nmi: PodIdentityWorkload, args: string[], strategy: unknown, cluster: Map<string, NmiNode[]>, maxUnavailable: number | string): MigrationAction[] {
  const liveType = (strategy as { type?: string } | undefined)?.type;
  const stale = [...cluster.values()].flat().filter((n) => n.nmiArgs !== undefined && !sameJson(n.nmiArgs, args));
  const argsChange = !sameJson(args, nmi.args);
  const actions: MigrationAction[] = [];
  const base = { workload: 'DaemonSet' as const, namespace: nmi.namespace, name: nmi.name, container: nmi.container, containerIndex: nmi.containerIndex, args };
  if ((argsChange || stale.length) && !(liveType === 'OnDelete' && !argsChange)) {
    actions.push(
      action({
        id: NMI_ON_DELETE_ID,
        kind: 'patch-container',
        op: '~',
        target: `daemonset ${nmi.namespace}/${nmi.name}`,
        summary: `${argsChange ? `args: ${describeArgChange(nmi.args, args)}; ` : ''}updateStrategy: OnDelete (NMI ${nmi.version}; nothing restarts yet)`,
        api: 'kube',
        writes: { kube: 1, arm: 0 },
        details: { ...base, updateStrategy: { type: 'OnDelete' }, rollout: 'on-delete' },
      }),
    );
  }
  const restart = new Set((argsChange ? [...cluster.values()].flat().filter((n) => n.nmiArgs !== undefined) : stale).map((n) => n.name));
  const waves = rolloutWaves(cluster, maxUnavailable, restart);
  const force = ctx.options.drainForce === true;
  // Once the first wave has switched a node in every pool, every node still on the old NMI is
  // cordoned, so a pod evicted from a later node (or a new one) only starts on a node already in
  // managed mode, where nothing waits for MIC; each node is uncordoned when its own turn ends.
  // Measured: without it, pods moved onto standard-mode nodes of their pool waited for MIC's
  // assignment (up to 24 s on the default scenario, longer when the MIC leader was among the
  // evicted pods). The first wave has no managed node to send its pods to: they start on the
  // pool's other nodes, where MIC (not evicted yet: its nodes come last) assigns them as before
  // the migration; cordoning those too would leave them Pending and a budget covering two pods of
  // one node waiting for a replacement that can start nowhere.
  const cordonPre = ctx.journal.firstPreState<CordonNodesPreState>(NMI_CORDON_ID);
  const later = waves.slice(1).flat();
  const preCordon = later.length > 0;
  const cordonAction = (): MigrationAction => {
    const names = later.map((n) => n.name).sort();
    const open = later.filter((n) => !n.cordoned).length;
    return action({
      id: NMI_CORDON_ID,
      kind: 'cordon-nodes',
      op: '~',
      target: `${names.length} node${names.length === 1 ? '' : 's'}`,
      summary: `after the first wave, cordon every node still on the old NMI (${open} to cordon), so evicted and new pods start only on nodes already in managed mode; each is uncordoned after its NMI restart`,
      api: 'kube',
      writes: { kube: open, arm: 0 },
      details: { nodes: names, reason: 'still on the old NMI' },
    });
  };
  const waveOf = new Map<string, number>();
  waves.forEach((wave, w) => wave.forEach((n) => waveOf.set(n.name, w)));
  let before = 0;
  waves.forEach((wave, w) => {
    if (w === 1 && preCordon) actions.push(cordonAction());
    const cordonedAhead = preCordon && w > 0;
    const waveStable = wave.reduce((n, x) => n + x.stablePods, 0);
    for (const n of wave) {
      const pre = ctx.journal.firstPreState<{ wasUnschedulable?: boolean }>(`nmi/node/${n.name}`);
      const wasCordoned = wasCordonedBefore(cordonPre, n.name) ?? pre?.wasUnschedulable ?? n.cordoned;
      const laterInPool = cordonedAhead ? (cluster.get(n.pool) ?? []).filter((x) => (waveOf.get(x.name) ?? -1) > w).map((x) => x.name).sort() : [];
      // The node's own cordon is the cordon action's when there is one.
      const ownCordon = cordonedAhead || n.cordoned ? 0 : 1;
      const least = ownCordon + n.stablePods + 1 + (wasCordoned ? 0 : 1);
      // Pods evicted from nodes of this or an earlier wave may be scheduled here before the cordon
      // (or before this wave starts): the scheduler decides, so those evictions are a range. So
      // are the deadlock fallback's uncordons of the pool's later nodes and, after an earlier
      // node's fallback, this node's own cordon again.
      const others = before + waveStable - n.stablePods;
      const fallback = laterInPool.length + (cordonedAhead && w > 1 && !wasCordoned ? 1 : 0);
      actions.push(
        action({
          id: `nmi/node/${n.name}`,
          kind: 'nmi-node-rollout',
          op: '~',
          target: `node ${n.name}`,
          summary: `${cordonedAhead ? '' : 'cordon, '}evict ${n.stablePods} pod${n.stablePods === 1 ? '' : 's'}, restart NMI, await Active, uncordon; pool ${n.pool}${n.micPods ? ' (runs MIC: last in its pool)' : ''}${others ? ` (up to ${others} more evictions if pods moved off other nodes land here first)` : ''}`,
          api: 'kube',
          writes: { kube: least, arm: 0 },
          ...(others || fallback ? { writesUpTo: { kube: least + others + fallback, arm: 0 } } : {}),
          // --nmi-max-unavailable per pool, every pool at once.
          ...(wave.length > 1 ? { parallelGroup: `nmi-wave-${w}`, parallelLimit: wave.length } : {}),
          details: {
            pool: n.pool,
            node: n.name,
            namespace: nmi.namespace,
            name: nmi.name,
            container: nmi.container,
            force,
            ...(ctx.options.deleteEmptyDirData === true ? { deleteEmptyDirData: true } : {}),
            ...(cordonedAhead ? { cordonedWith: NMI_CORDON_ID, laterInPool } : {}),
          },
        }),
      );
    }
    before += waveStable;
  });
  const first = ctx.journal.firstPreState<{ updateStrategy?: unknown }>(NMI_ON_DELETE_ID)?.updateStrategy;
  const original = first !== undefined && first !== null ? first : liveType !== 'OnDelete' && strategy ? strategy : DEFAULT_DS_STRATEGY;
  if ((actions.length || liveType === 'OnDelete') && (original as { type?: string }).type !== 'OnDelete') {
    actions.push(
      action({
        id: 'nmi/restore-update-strategy',
        kind: 'patch-container',
        op: '~',
        target: `daemonset ${nmi.namespace}/${nmi.name}`,
        summary: `updateStrategy back to ${describeStrategy(original)} (every NMI pod already on the new template), await every NMI Active`,
        api: 'kube',
        writes: { kube: 1, arm: 0 },
        details: { ...base, updateStrategy: original, rollout: 'nmi-active', undoneWith: NMI_ON_DELETE_ID },
      }),
    );
  }
  return actions;
}

function describeStrategy(s: unknown): string {
  const u = s as { type?: string; rollingUpdate?: { maxUnavailable?: unknown } };
  return u.type === 'RollingUpdate' ? `RollingUpdate maxUnavailable ${String(u.rollingUpdate?.maxUnavailable ?? 1)}` : String(u.type);
}

/** Whether a pod belongs to the MIC Deployment (its namespace and selector labels); never, without MIC. */
function micPodMatcher(dep: KubeObject | undefined): (pod: KubeObject) => boolean {
  const sel = (dep?.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector?.matchLabels;
  if (!dep || !sel || !Object.keys(sel).length) return () => false;
  return (pod) => pod.metadata?.namespace === dep.metadata?.namespace && Object.entries(sel).every(([k, v]) => pod.metadata?.labels?.[k] === v);
}

async function readyNodesByPool(ctx: Ctx): Promise<Map<string, string[]>> {
  const nodes = await ctx.kube.list(KINDS.Node);
  const out = new Map<string, string[]>();
  for (const n of nodes.sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))) {
    const pool = poolOf(n);
    if (!pool || !isReady(n) || isCordoned(n)) continue;
    out.set(pool, [...(out.get(pool) ?? []), n.metadata?.name ?? '']);
  }
  return out;
}

async function liveNmi(ctx: Ctx): Promise<PodIdentityWorkload> {
  const { nmi } = await podIdentityFor(ctx);
  if (!nmi) throw new Error('the NMI DaemonSet was not found; re-run the inventory step');
  return nmi;
}

/** Step 3 of the runbook. */
export const nmiManagedStep: MigrationStep = {
  id: 'nmi-managed',
  title: 'Switch NMI to managed mode in place',

  async plan(ctx): Promise<StepPlan> {
    const inv = await inventoryFor(ctx);
    const { nmi: found, mic } = await podIdentityFor(ctx);
    if (!found) throw new Error('the NMI DaemonSet was not found; re-run the inventory step');
    const nmi = found;
    const args = managedNmiArgs(nmi.args, nmi.version);
    const strategy = (nmi.object.spec as { updateStrategy?: unknown } | undefined)?.updateStrategy;
    const rollout = nmiRolloutOf(ctx);
    const maxUnavailable = maxUnavailableOf(ctx.options);
    const [nodes, pods] = await Promise.all([ctx.kube.list(KINDS.Node), ctx.kube.list(KINDS.Pod)]);
    const cluster = clusterShape(nodes, pods, nmi, micPodMatcher(mic?.object));
    const actions: MigrationAction[] = rollout === 'drain' ? drainRolloutActions(ctx, nmi, args, strategy, cluster, maxUnavailable) : inPlaceActions(nmi, args, strategy, maxUnavailable);
    const blockers: Blocker[] = [];
    const restarting = new Set(actions.filter((a) => a.kind === 'nmi-node-rollout').map((a) => (a.details as NmiNodeRolloutDetails).node));
    if (rollout === 'drain' && restarting.size) {
      // The same rules as the drain step: every pod that blocks an emptying, with its flag, and
      // every budget that can never allow the eviction, before anything is written.
      const pdbs = await ctx.kube.list(KINDS.PodDisruptionBudget).catch(() => []);
      const rules = { force: ctx.options.drainForce === true, deleteEmptyDirData: ctx.options.deleteEmptyDirData === true };
      for (const n of [...cluster.values()].flat()) {
        if (!restarting.has(n.name)) continue;
        for (const b of drainBlockers(analyseNodeDrain({ node: n.name, pool: n.pool, pods, pdbs, options: rules }))) {
          blockers.push({ ...b, fix: `${b.fix} Or use --nmi-rollout in-place (no eviction).` });
        }
      }
    }
    const rolled = [...cluster.values()].flat().filter((n) => rollout === 'in-place' ? n.nmiArgs !== undefined : restarting.has(n.name));
    const estimate = estimateRollout(rollout, rollout === 'drain' ? rolloutWaves(cluster, maxUnavailable, restarting) : [rolled], maxUnavailable, { clusterTimeScale: typeof ctx.options.clusterTimeScale === 'number' ? ctx.options.clusterTimeScale : undefined });
    const notes: string[] = [];
    if (nmi.install === 'helm') {
      notes.push(`NMI is a Helm install: keep this with \`${helmManagedValues(nmi.helmRelease)}\`; a later helm upgrade with operationMode=standard reverts NMI and brings MIC back`);
    }
    if (actions.length) notes.push(...rolloutNotes(rollout, maxUnavailable, estimate, stepTimeoutOf(ctx.options)));
    // The check's token round trip: one probe pod per pool, created and deleted.
    const probes = probeTargets(inv, await readyNodesByPool(ctx)).length;
    return { stepId: 'nmi-managed', actions, blockers, notes, checkWrites: { kube: probes * 2, arm: 0 } };
  },

  async afterActions(ctx, plan): Promise<StepOutcome> {
    const a = plan.actions.find((x) => x.id === NMI_ACTION_ID || x.id === NMI_ON_DELETE_ID || x.id === 'nmi/restore-update-strategy');
    if (!a) return { summary: 'NMI already in managed mode' };
    const restarted = plan.actions.filter((x) => x.kind === 'nmi-node-rollout');
    if (restarted.length && ctx.dryRun === 'none') {
      const evicted = ctx.journal.records().filter((r) => r.status === 'done' && !r.rolledBack && r.kind === 'nmi-node-rollout').reduce((n, r) => n + ((r.result as { evicted?: number } | undefined)?.evicted ?? 0), 0);
      const d = a.details as { namespace: string; name: string };
      return { summary: `NMI ${d.namespace}/${d.name} in managed mode: restarted on ${restarted.length} drained node${restarted.length === 1 ? '' : 's'} (${evicted} pods evicted), update strategy restored` };
    }
    const d = a.details as { namespace: string; name: string };
    if (ctx.dryRun !== 'none') return { summary: `daemonset ${d.namespace}/${d.name} would switch to managed mode` };
    const ds = await ctx.kube.get(KINDS.DaemonSet, d.namespace, d.name);
    const pods = ds ? (await nmiPods(ctx.kube, ds)).length : 0;
    return { summary: `NMI ${d.namespace}/${d.name} in managed mode on ${pods} nodes` };
  },

  async check(ctx): Promise<CheckResult> {
    const inv = await inventoryFor(ctx);
    const nmi = await liveNmi(ctx);
    const evidence: string[] = [];
    const failures: string[] = [];
    const want = managedNmiArgs(nmi.args, nmi.version);
    if (JSON.stringify(want) !== JSON.stringify(nmi.args)) failures.push(`daemonset ${nmi.namespace}/${nmi.name} args are not managed mode: ${nmi.args.join(' ')}`);
    else evidence.push(`daemonset ${nmi.namespace}/${nmi.name} args: ${nmi.args.join(' ')}`);
    const gap = daemonSetRolloutGap(nmi.object);
    if (gap) failures.push(`daemonset ${nmi.namespace}/${nmi.name} rollout not complete: ${gap}`);
    else {
      const st = nmi.object.status as { desiredNumberScheduled?: number; observedGeneration?: number };
      evidence.push(`rollout complete: generation ${st.observedGeneration} observed, ${st.desiredNumberScheduled}/${st.desiredNumberScheduled} updated and available`);
    }
    const pods = await nmiPods(ctx.kube, nmi.object);
    const bodies = await healthBodies(ctx.kube, pods, nmiProbePort(nmi.args));
    const inactive = bodies.filter((b) => b.status !== 200 || b.body !== 'Active');
    if (!bodies.length) failures.push('no NMI pods found');
    else if (inactive.length) failures.push(...inactive.map((b) => `NMI ${b.pod} on ${b.node}: /healthz says ${JSON.stringify(b.body)} (HTTP ${b.status})`));
    else evidence.push(`${bodies.length}/${bodies.length} NMI pods report Active on /healthz`);

    const targets = probeTargets(inv, await readyNodesByPool(ctx));
    const limit = pLimit(5);
    const results = await Promise.all(
      targets.map((t) =>
        limit(async () => ({ t, r: await runTokenProbe(ctx.kube, { namespace: t.namespace, nodeName: t.node, selector: t.selector, identity: t.identity, timeoutMs: Math.min(80_000, remainingMs(ctx.deadline)), signal: ctx.signal }) })),
      ),
    );
    for (const { t, r } of results) {
      if (r.ok) evidence.push(`pool ${t.pool}: token for ${t.identity.name} on ${t.node} (${t.namespace}, aadpodidbinding=${t.selector}) — ${r.message}`);
      else failures.push(`pool ${t.pool}: token round trip for ${t.identity.name} on ${t.node} failed: ${r.message}${r.mismatches.length ? ` (${r.mismatches.join('; ')})` : ''}`);
    }
    return { ok: failures.length === 0, evidence, failures };
  },

};

export default nmiManagedStep;
