/**
 * Step 7, `cleanup`: removes what only standard mode needed, once the test cases proved that
 * the identities work without it (DOMAIN.md section 7, last point).
 *
 * Deleted, each after a full copy went into the journal (the action's pre-state): the MIC
 * Deployment, its ServiceAccount, the ClusterRoleBinding(s) binding only that account and the
 * ClusterRole(s) nothing else binds, MIC's PodDisruptionBudget (Helm `mic-pdb`), MIC's
 * AzurePodIdentityException (`mic-exception` raw, `aad-pod-identity-mic` Helm), the
 * leader-election Endpoints, the `aad-pod-identity-config` ConfigMap, and every
 * AzureAssignedIdentity (finalizer cleared first: with MIC gone nothing else would clear it).
 * The AzureAssignedIdentity CRD only with `deleteCrd`. AzureIdentity and AzureIdentityBinding
 * are never touched: managed NMI still reads them.
 *
 * Refused while MIC still has replicas or pods (deleting AzureAssignedIdentities under a
 * running MIC makes it un-assign identities) and unless every test case passed.
 *
 * Rollback re-creates the saved objects without their server-set fields, exactly as they were
 * before this step (the MIC Deployment at the replica count it then had, 0); MIC's original
 * replica count is restored by the `mic-scale` rollback, which runs next in `rollback --to` /
 * `--all`.
 */
import type { Blocker, CheckResult, StepOutcome, StepPlan } from '../engine/step.ts';
import type { KubeObject, ResourceRef } from '../kube/gateway.ts';
import { KINDS } from '../kube/kinds.ts';
import { AAI_CRD, type DeleteObjectDetails, type SavedObject } from './executors/delete.ts';
import { action, type MigrationAction } from './executors/index.ts';
import type { Ctx, MigrationStep } from './lib/context.ts';
import { inventoryFor, micRefOf, type MicRef } from './lib/inventory-source.ts';
import type { InventoryDocument } from './lib/inventory-model.ts';
import type { TestResult } from './lib/junit.ts';
import { isCordoned, isReady, poolOf } from './lib/nodes.ts';
import { runTokenProbe } from './lib/probe.ts';

export { stripServerFields } from './executors/delete.ts';
export type { MicRef };

const LEADER_ELECTION_DEFAULT = { namespace: 'default', name: 'aad-pod-identity-mic' };
const CONFIG_MAP = 'aad-pod-identity-config';

function argValue(args: readonly string[], flag: string): string | undefined {
  for (const a of args) if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

function templateOf(deploy: KubeObject): { labels: Record<string, string>; serviceAccount: string; args: string[] } {
  const tpl = (deploy.spec as { template?: { metadata?: { labels?: Record<string, string> }; spec?: { serviceAccountName?: string; containers?: { args?: string[] }[] } } } | undefined)?.template;
  return {
    labels: tpl?.metadata?.labels ?? {},
    serviceAccount: tpl?.spec?.serviceAccountName ?? 'default',
    args: (tpl?.spec?.containers ?? []).flatMap((c) => c.args ?? []),
  };
}

function labelsMatch(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (!selector || !Object.keys(selector).length) return false;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function deleteAction(ref: ResourceRef, namespace: string | undefined, name: string, why: string): MigrationAction {
  return action({
    id: key(ref, namespace, name),
    kind: 'delete-object',
    op: '-',
    target: `${SHORT[ref.kind] ?? ref.kind.toLowerCase()} ${namespace ? `${namespace}/` : ''}${name}`,
    summary: why,
    api: 'kube',
    writes: { kube: 1, arm: 0 },
    details: { ref: { apiVersion: ref.apiVersion, kind: ref.kind }, ...(namespace ? { namespace } : {}), name },
  });
}

function key(ref: ResourceRef, namespace: string | undefined, name: string): string {
  return `delete/${ref.kind.toLowerCase()}/${namespace ? `${namespace}/` : ''}${name}`;
}

const SHORT: Record<string, string> = {
  Deployment: 'deploy',
  ServiceAccount: 'sa',
  ClusterRole: 'clusterrole',
  ClusterRoleBinding: 'clusterrolebinding',
  PodDisruptionBudget: 'pdb',
  AzurePodIdentityException: 'azurepodidentityexception',
  Endpoints: 'endpoints',
  ConfigMap: 'configmap',
  CustomResourceDefinition: 'crd',
};

/** Names of the ClusterRoleBindings that bind ClusterRole `role` now. */
async function crbsBinding(ctx: Ctx, role: string): Promise<string[]> {
  return (await ctx.kube.list(KINDS.ClusterRoleBinding))
    .filter((b) => (b.roleRef as { kind?: string; name?: string } | undefined)?.kind === 'ClusterRole' && (b.roleRef as { name?: string }).name === role)
    .map((b) => b.metadata!.name!);
}

/**
 * Every object this step's journal (this apply cycle: records not rolled back) planned to
 * delete, not in `planned`, that still exists: planned again under the same id, so its first
 * pre-state (the full copy) still holds the original. A ClusterRole something else binds by now
 * is kept, with a warning.
 */
async function stillThereFromJournal(ctx: Ctx, planned: readonly MigrationAction[], bindersOf: (ctx: Ctx, role: string) => Promise<string[]>): Promise<MigrationAction[]> {
  const ids = new Set(planned.map((a) => a.id));
  const out: MigrationAction[] = [];
  for (const record of ctx.journal.records()) {
    if (record.rolledBack || record.kind !== 'delete-object' || ids.has(record.actionId)) continue;
    ids.add(record.actionId);
    const d = record.details as DeleteObjectDetails | undefined;
    if (!d?.ref || !d.name) continue;
    const live = await ctx.kube.get(d.ref, d.namespace, d.name);
    if (!live || live.metadata?.deletionTimestamp) continue;
    if (d.ref.kind === 'ClusterRole') {
      const others = (await bindersOf(ctx, d.name)).filter((b) => !planned.some((a) => a.id === key(KINDS.ClusterRoleBinding, undefined, b)));
      if (others.length) {
        ctx.log.warn(`clusterrole ${d.name} was planned for deletion by an earlier run but is now also bound by ${others.join(', ')}: kept`);
        continue;
      }
    }
    out.push(deleteAction(d.ref, d.namespace, d.name, `${record.summary} (planned by the interrupted run, still there)`));
  }
  return out;
}

/** The saved copy of an object this step deleted earlier (for a resumed run whose Deployment is already gone). */
function savedCopy(ctx: Ctx, actionId: string): KubeObject | undefined {
  return ctx.journal.firstPreState<SavedObject>(actionId)?.object;
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  // In a dry run the earlier steps only pretended: what they would have done counts as done.
  const dry = ctx.dryRun !== 'none';
  const testsWouldRun = dry && ctx.journal.of('test').records().some((r) => r.actionId === 'test-cases' && r.status === 'done');
  const micWouldScale = dry && ctx.journal.of('mic-scale').records().some((r) => r.actionId === 'mic/scale-to-zero' && r.status === 'done');
  // Results of this cycle only: after a rollback the journal still holds the earlier cycle's,
  // which say nothing about the cluster as it is now (and would turn today's running MIC into blockers).
  const testsRan = ctx.journal.of('test').records().some((r) => r.actionId === 'test-cases' && r.status === 'done' && !r.rolledBack);
  const results = testsRan ? ctx.journal.of('test').getData<TestResult[]>('results') : undefined;
  if (!results && !testsWouldRun) throw new Error('no test results recorded yet: the test step must pass before cleanup');
  const mic = micRefOf(ctx);
  const inventory = await inventoryFor(ctx);
  const kube = ctx.kube;
  const blockers: Blocker[] = [];
  const notes: string[] = [];
  const actions: MigrationAction[] = [];
  if (testsWouldRun) notes.push('dry run: the test step would run its cases first; cleanup is refused unless every one passes');
  if (micWouldScale) notes.push('dry run: mic-scale would scale MIC to zero first; cleanup is refused while MIC runs');

  const failed = (results ?? []).filter((r) => !r.ok);
  if (!testsWouldRun && (failed.length || !results?.length)) {
    blockers.push({
      code: 'tests-not-passed',
      subject: 'step test',
      message: results?.length
        ? `${failed.length} test case(s) failed: ${failed.map((r) => `${r.kind} ${r.service} in pool ${r.pool} (identity ${r.identity})`).join('; ')}. Deleting MIC now would remove the only thing that still assigns those identities.`
        : 'no test case ran, so nothing proves the identities work without MIC.',
      fix: 'Fix the failing identities (podid-migrate status shows the details), then podid-migrate apply --step test.',
    });
  }

  const deployId = key(KINDS.Deployment, mic.namespace, mic.name);
  const live = await kube.get(KINDS.Deployment, mic.namespace, mic.name);
  const deploy = live ?? savedCopy(ctx, deployId);
  if (live) {
    const replicas = (live.spec as { replicas?: number } | undefined)?.replicas ?? 1;
    if (replicas > 0 && !micWouldScale) {
      blockers.push({
        code: 'mic-running',
        subject: `deploy ${mic.namespace}/${mic.name}`,
        message: `MIC has ${replicas} replica(s). Deleting AzureAssignedIdentities while MIC runs makes it un-assign identities from the scale sets.`,
        fix: 'Scale it to zero first: podid-migrate apply --step mic-scale (or rollback and re-apply it if it was scaled back up).',
      });
    }
  }
  const tpl = deploy ? templateOf(deploy) : undefined;
  if (live && tpl && Object.keys(tpl.labels).length && !micWouldScale) {
    const selector = Object.entries(tpl.labels).map(([k, v]) => `${k}=${v}`).join(',');
    const pods = (await kube.list(KINDS.Pod, { namespace: mic.namespace, labelSelector: selector })).filter((p) => !p.metadata?.deletionTimestamp);
    if (pods.length) {
      blockers.push({
        code: 'mic-pods-running',
        subject: `deploy ${mic.namespace}/${mic.name}`,
        message: `${pods.length} MIC pod(s) still run (${pods.map((p) => p.metadata?.name).join(', ')}).`,
        fix: 'Wait until they are gone (kubectl get pods -n ' + mic.namespace + '), then plan again.',
      });
    }
  }
  if (live) actions.push(deleteAction(KINDS.Deployment, mic.namespace, mic.name, 'MIC; full copy kept in the journal'));

  // PodDisruptionBudget and exception selecting MIC's pods.
  if (tpl) {
    for (const pdb of await kube.list(KINDS.PodDisruptionBudget, { namespace: mic.namespace })) {
      const sel = (pdb.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector?.matchLabels;
      if (labelsMatch(sel, tpl.labels)) actions.push(deleteAction(KINDS.PodDisruptionBudget, mic.namespace, pdb.metadata!.name!, 'protects MIC pods'));
    }
    for (const ex of await kube.list(KINDS.AzurePodIdentityException, { namespace: mic.namespace })) {
      const podLabels = (ex.spec as { podLabels?: Record<string, string> } | undefined)?.podLabels;
      if (labelsMatch(podLabels, tpl.labels)) actions.push(deleteAction(KINDS.AzurePodIdentityException, mic.namespace, ex.metadata!.name!, 'lets MIC reach IMDS directly'));
    }
  }

  // RBAC: bindings whose only subject is MIC's service account, and roles nothing else binds.
  const sa = tpl?.serviceAccount;
  if (sa && sa !== 'default') {
    const crbs = await kube.list(KINDS.ClusterRoleBinding);
    const isMicSa = (s: { kind?: string; name?: string; namespace?: string }) => s.kind === 'ServiceAccount' && s.name === sa && s.namespace === mic.namespace;
    const micBindings = crbs.filter((b) => {
      const subjects = (b.subjects as { kind?: string; name?: string; namespace?: string }[] | undefined) ?? [];
      return subjects.length > 0 && subjects.every(isMicSa);
    });
    const roleOf = (b: KubeObject) => (b.roleRef as { kind?: string; name?: string } | undefined);
    for (const b of micBindings) {
      actions.push(deleteAction(KINDS.ClusterRoleBinding, undefined, b.metadata!.name!, `binds ${sa} to ${roleOf(b)?.name}`));
    }
    const roles = new Set(micBindings.map(roleOf).filter((r) => r?.kind === 'ClusterRole').map((r) => r!.name!));
    // A binding an interrupted run of this cycle already deleted still names its role in the saved copy.
    for (const r of ctx.journal.records()) {
      if (r.rolledBack || r.kind !== 'delete-object' || (r.details as DeleteObjectDetails | undefined)?.ref?.kind !== 'ClusterRoleBinding') continue;
      const saved = ctx.journal.firstPreState<SavedObject>(r.actionId)?.object;
      const ref = saved ? roleOf(saved) : undefined;
      if (ref?.kind === 'ClusterRole' && ref.name) roles.add(ref.name);
    }
    for (const role of [...roles].sort()) {
      const others = crbs.filter((b) => !micBindings.includes(b) && roleOf(b)?.kind === 'ClusterRole' && roleOf(b)?.name === role);
      if (others.length) {
        notes.push(`clusterrole ${role} is kept: also bound by ${others.map((b) => b.metadata?.name).join(', ')}`);
        continue;
      }
      if (await kube.get(KINDS.ClusterRole, undefined, role)) actions.push(deleteAction(KINDS.ClusterRole, undefined, role, 'MIC\'s permissions'));
    }
    const users = [...(await kube.list(KINDS.Deployment)), ...(await kube.list(KINDS.DaemonSet))].filter(
      (w) => !(w.kind === 'Deployment' && w.metadata?.namespace === mic.namespace && w.metadata?.name === mic.name) && w.metadata?.namespace === mic.namespace && templateOf(w).serviceAccount === sa,
    );
    if (users.length) notes.push(`serviceaccount ${mic.namespace}/${sa} is kept: also used by ${users.map((u) => `${u.kind} ${u.metadata?.name}`).join(', ')}`);
    else if (await kube.get(KINDS.ServiceAccount, mic.namespace, sa)) actions.push(deleteAction(KINDS.ServiceAccount, mic.namespace, sa, 'MIC\'s identity in the cluster'));
  }

  // Leader election Endpoints (MIC's --leader-election-namespace/-name, default default/aad-pod-identity-mic) and the config map.
  const le = {
    namespace: (tpl && argValue(tpl.args, '--leader-election-namespace')) || LEADER_ELECTION_DEFAULT.namespace,
    name: (tpl && argValue(tpl.args, '--leader-election-name')) || LEADER_ELECTION_DEFAULT.name,
  };
  if (await kube.get(KINDS.Endpoints, le.namespace, le.name)) actions.push(deleteAction(KINDS.Endpoints, le.namespace, le.name, 'MIC leader election record'));
  if (await kube.get(KINDS.ConfigMap, mic.namespace, CONFIG_MAP)) actions.push(deleteAction(KINDS.ConfigMap, mic.namespace, CONFIG_MAP, 'MIC\'s one-time migration marker'));

  // What an earlier, interrupted run of this step planned to delete and is still there. Live
  // references cannot find all of it again: once MIC's ClusterRoleBindings are gone, nothing
  // live leads to its ClusterRole any more. The journal remembers every object it planned.
  for (const again of await stillThereFromJournal(ctx, actions, crbsBinding)) actions.push(again);

  // Every AzureAssignedIdentity (none is created once MIC is gone, so the list is stable).
  const crd = await kube.get(KINDS.CustomResourceDefinition, undefined, AAI_CRD);
  if (crd) {
    const aais = await kube.list(KINDS.AzureAssignedIdentity);
    if (aais.length) {
      const objects = aais.map((a) => ({ namespace: a.metadata!.namespace!, name: a.metadata!.name! })).sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
      const withFinalizer = aais.filter((a) => a.metadata?.finalizers?.length).length;
      actions.push(
        action({
          id: 'delete/azureassignedidentities',
          kind: 'delete-objects',
          op: '-',
          target: `${aais.length} azureassignedidentities`,
          summary: `${withFinalizer ? `finalizers cleared first on ${withFinalizer}, ` : ''}full copies kept in the journal`,
          api: 'kube',
          writes: { kube: aais.length + withFinalizer, arm: 0 },
          details: { ref: { apiVersion: KINDS.AzureAssignedIdentity.apiVersion, kind: KINDS.AzureAssignedIdentity.kind }, objects, clearFinalizers: true, crd: AAI_CRD },
        }),
      );
    }
    if (ctx.options.deleteCrd === true) actions.push(deleteAction(KINDS.CustomResourceDefinition, undefined, AAI_CRD, 'requested with --delete-crd'));
    else notes.push(`the ${AAI_CRD} CRD is kept (--delete-crd removes it)`);
  }
  notes.push('AzureIdentity and AzureIdentityBinding objects are kept: managed NMI reads them');
  // The check's token round trips: one probe pod per pool with a user-assigned identity, created and deleted.
  const roundTripPools = inventory.pools.filter((pool) => roundTripSubject(inventory, pool.name)).length;
  return { stepId: 'cleanup', actions, blockers, notes, checkWrites: { kube: roundTripPools * 2, arm: 0 } };
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const deleted = p.actions.filter((a) => a.kind === 'delete-object').length;
  const aais = p.actions.filter((a) => a.kind === 'delete-objects').reduce((n, a) => n + (a.details as { objects: unknown[] }).objects.length, 0);
  const dry = ctx.dryRun !== 'none';
  return { summary: `${dry ? 'would delete' : 'deleted'} ${deleted} MIC object${deleted === 1 ? '' : 's'} and ${aais} AzureAssignedIdentit${aais === 1 ? 'y' : 'ies'}${dry ? ' (dry run)' : ''}; copies in the journal` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const kube = ctx.kube;
  const evidence: string[] = [];
  const failures: string[] = [];
  let objects = 0;
  // Every object any record of this cycle planned to delete (done, failed or left in intent) must be gone.
  const seen = new Set<string>();
  for (const r of ctx.journal.records()) {
    if (r.rolledBack || r.kind !== 'delete-object' || seen.has(r.actionId)) continue;
    seen.add(r.actionId);
    const d = r.details as DeleteObjectDetails | undefined;
    if (!d?.ref || !d.name) continue;
    const still = await kube.get(d.ref, d.namespace, d.name);
    if (still && !still.metadata?.deletionTimestamp) failures.push(`${r.target} still exists; run podid-migrate apply --step cleanup`);
    else objects++;
  }
  evidence.push(`${objects} MIC object(s) deleted and gone`);
  const crd = await kube.get(KINDS.CustomResourceDefinition, undefined, AAI_CRD);
  if (crd) {
    const left = await kube.list(KINDS.AzureAssignedIdentity);
    if (left.length) failures.push(`${left.length} AzureAssignedIdentities remain (e.g. ${left[0].metadata?.namespace}/${left[0].metadata?.name}); run podid-migrate apply --step cleanup`);
    else evidence.push('no AzureAssignedIdentity remains');
  } else evidence.push(`CRD ${AAI_CRD} deleted; no AzureAssignedIdentity can remain`);
  const mic = micRefOf(ctx);
  if (await kube.get(KINDS.Deployment, mic.namespace, mic.name)) failures.push(`deploy ${mic.namespace}/${mic.name} still exists`);

  // Token round trips on one node per pool still pass without MIC and its objects.
  if (ctx.dryRun === 'none') {
    const round = await roundTrips(ctx);
    evidence.push(...round.evidence);
    failures.push(...round.failures);
  }
  return { ok: failures.length === 0, evidence, failures };
}

/** The service whose token a pool's round trip asks for: the first user-assigned identity used there. */
function roundTripSubject(inv: InventoryDocument, pool: string): { service: string; namespace: string; selector: string; identity: InventoryDocument['identities'][number] } | undefined {
  for (const identity of inv.identities) {
    if (identity.type !== 0 || !identity.clientId || !identity.resourceId) continue;
    for (const s of identity.services) {
      const pools = s.pools ?? identity.pools ?? [];
      if (pools.includes(pool) && s.selector) return { service: s.name, namespace: s.name.split('/')[0], selector: s.selector, identity };
    }
  }
  return undefined;
}

/** One token probe per pool, on its fresh node (else any Ready schedulable node), for an identity that pool needs. */
async function roundTrips(ctx: Ctx): Promise<{ evidence: string[]; failures: string[] }> {
  const inv = await inventoryFor(ctx);
  const fresh = ctx.journal.of('drain').getData<Record<string, string>>('freshNodes') ?? {};
  const nodes = await ctx.kube.list(KINDS.Node);
  const evidence: string[] = [];
  const failures: string[] = [];
  for (const pool of [...inv.pools].sort((a, b) => a.name.localeCompare(b.name))) {
    const subject = roundTripSubject(inv, pool.name);
    if (!subject) {
      evidence.push(`pool ${pool.name}: no user-assigned identity used there, no round trip needed`);
      continue;
    }
    const node =
      (fresh[pool.name] && nodes.find((n) => n.metadata?.name === fresh[pool.name] && isReady(n))?.metadata?.name) ??
      nodes.filter((n) => poolOf(n) === pool.name && isReady(n) && !isCordoned(n)).map((n) => n.metadata!.name!).sort()[0];
    if (!node) {
      failures.push(`pool ${pool.name}: no Ready node to run a token round trip on`);
      continue;
    }
    const r = await runTokenProbe(ctx.kube, {
      namespace: subject.namespace,
      nodeName: node,
      selector: subject.selector,
      identity: { name: `${subject.identity.namespace}/${subject.identity.name}`, resourceId: subject.identity.resourceId!, clientId: subject.identity.clientId!, principalId: subject.identity.principalId },
      timeoutMs: typeof ctx.options.testTimeoutMs === 'number' ? ctx.options.testTimeoutMs : undefined,
      signal: ctx.signal,
    });
    if (r.ok) evidence.push(`pool ${pool.name}: ${r.message} (service ${subject.service})`);
    else failures.push(`pool ${pool.name}: token round trip for service ${subject.service} failed: ${r.message}`);
  }
  return { evidence, failures };
}

/** The `cleanup` step. */
export const cleanupStep: MigrationStep = {
  id: 'cleanup',
  title: 'Delete MIC and the AzureAssignedIdentities',
  plan,
  afterActions,
  check,
};

export default cleanupStep;
