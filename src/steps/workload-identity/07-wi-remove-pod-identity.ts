/**
 * Step `wi-remove-pod-identity` (workload identity runbook, 7): takes AAD Pod Identity away once
 * every service proved its token through workload identity (`wi-test`).
 *
 * In this order, each a journalled action:
 * 1. the `aadpodidbinding` label off every service's pod template (`patch-pod-template`), one
 *    service at a time, each rollout awaited (as `wi-workloads` put the workload identity label on);
 * 2. every AzureIdentityBinding, then every AzureIdentity (`delete-objects`: full copies in the
 *    journal, re-created from them on rollback);
 * 3. with `uninstallPodIdentity` (`--uninstall-pod-identity`): every AzurePodIdentityException and
 *    AzureAssignedIdentity, the NMI DaemonSet and the MIC Deployment (when still there), their
 *    service accounts, the ClusterRoleBindings binding only those and the ClusterRoles nothing
 *    else binds, MIC's PodDisruptionBudget, leader-election Endpoints and config map, and the
 *    `aadpodidentity.k8s.io` CRDs (`delete-object`, each with its copy);
 * 4. per scale set, the identities AAD Pod Identity needed there (`vmss-remove-identities`): user-assigned
 *    identities of the inventory's AzureIdentities (put there by MIC or by the managed-mode
 *    `assign` step). Never the kubelet identity, never an identity no AzureIdentity names (add-ons,
 *    anything assigned for another purpose).
 *
 * Refused (blockers, before anything is written) while a running pod depends on pod identity
 * alone and no template this step patches creates it (an `aadpodidbinding` label, no workload
 * identity label: bare Jobs or Pods of another system), and unless every `wi-test` case of this
 * cycle passed and every service's template carries `azure.workload.identity/use: "true"`.
 * Before `wi-test` has run, the step depends on it (its plan says so instead of listing blockers).
 *
 * Rollback (newest first) puts the identities back on the scale sets, re-creates the CRDs and
 * every object from its saved copy, and the `aadpodidbinding` labels with a rollout per service.
 */
import { PreconditionError } from '../../engine/errors.ts';
import { commandPrefix, type Blocker, type CheckResult, type StepOutcome, type StepPlan } from '../../engine/step.ts';
import type { KubeObject, ResourceRef } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import type { DeleteObjectDetails } from '../executors/delete.ts';
import { action, type MigrationAction } from '../executors/index.ts';
import { templateLabel, type PatchPodTemplateDetails } from '../executors/patch-pod-template.ts';
import type { WiTestResult } from '../executors/run-wi-probes.ts';
import type { Ctx, MigrationStep } from '../lib/context.ts';
import { findPodIdentityLive, inventoryFor } from '../lib/inventory-source.ts';
import type { InventoryDocument } from '../lib/inventory-model.ts';
import { controllerOf } from '../lib/nodes.ts';
import { micLeaseLock } from '../lib/pod-identity.ts';
import { PROBE_LABEL } from '../lib/probe.ts';
import { BINDING_LABEL, WI_USE_LABEL, patchableKind, refOfKind, servicesOf, templateLabels } from '../lib/workload-identity/workloads.ts';

/** The AAD Pod Identity API group: its CRDs are `<plural>.aadpodidentity.k8s.io`. */
const POD_IDENTITY_GROUP = 'aadpodidentity.k8s.io';
const CONFIG_MAP = 'aad-pod-identity-config';
const WI_TEST_ACTION = 'wi-token-cases';

/** Custom resources of AAD Pod Identity, deleted in this order (bindings before the identities they name). */
const CUSTOM_KINDS: { ref: ResourceRef; crd: string; uninstallOnly: boolean }[] = [
  { ref: KINDS.AzureIdentityBinding, crd: `azureidentitybindings.${POD_IDENTITY_GROUP}`, uninstallOnly: false },
  { ref: KINDS.AzureIdentity, crd: `azureidentities.${POD_IDENTITY_GROUP}`, uninstallOnly: false },
  { ref: KINDS.AzurePodIdentityException, crd: `azurepodidentityexceptions.${POD_IDENTITY_GROUP}`, uninstallOnly: true },
  { ref: KINDS.AzureAssignedIdentity, crd: `azureassignedidentities.${POD_IDENTITY_GROUP}`, uninstallOnly: true },
];

const SHORT: Record<string, string> = { Deployment: 'deploy', DaemonSet: 'ds', ServiceAccount: 'sa', ClusterRole: 'clusterrole', ClusterRoleBinding: 'clusterrolebinding', PodDisruptionBudget: 'pdb', Endpoints: 'endpoints', ConfigMap: 'configmap', CustomResourceDefinition: 'crd' };

function deleteOne(ref: ResourceRef, namespace: string | undefined, name: string, why: string): MigrationAction {
  return action({
    id: `delete/${ref.kind.toLowerCase()}/${namespace ? `${namespace}/` : ''}${name}`,
    kind: 'delete-object',
    op: '-',
    target: `${SHORT[ref.kind] ?? ref.kind.toLowerCase()} ${namespace ? `${namespace}/` : ''}${name}`,
    summary: `${why}; full copy kept in the journal`,
    api: 'kube',
    writes: { kube: 1, arm: 0 },
    details: { ref: { apiVersion: ref.apiVersion, kind: ref.kind }, ...(namespace ? { namespace } : {}), name },
  });
}

/** True when this cycle's `wi-test` ran (records not rolled back); its results then. */
function testResults(ctx: Ctx): { ran: boolean; wouldRun: boolean; results: WiTestResult[] } {
  const records = ctx.journal.of('wi-test').records().filter((r) => r.actionId === WI_TEST_ACTION && r.status === 'done');
  const ran = records.some((r) => !r.rolledBack);
  return { ran, wouldRun: ctx.dryRun !== 'none' && ran, results: ran ? (ctx.journal.of('wi-test').getData<WiTestResult[]>('results') ?? []) : [] };
}

/** The top controller a pod belongs to, as `Kind/namespace/name` (a ReplicaSet's Deployment). */
function topController(pod: KubeObject, replicaSets: Map<string, KubeObject>): string | undefined {
  const owner = controllerOf(pod);
  if (!owner) return undefined;
  const ns = pod.metadata?.namespace;
  if (owner.kind === 'ReplicaSet') {
    const rs = replicaSets.get(`${ns}/${owner.name}`);
    const dep = rs ? controllerOf(rs) : undefined;
    return dep ? `${dep.kind}/${ns}/${dep.name}` : `ReplicaSet/${ns}/${owner.name}`;
  }
  return `${owner.kind}/${ns}/${owner.name}`;
}

/** Resource ids (lower-case) of the user-assigned identities the inventory's AzureIdentities name. */
function podIdentityIds(inv: InventoryDocument): Set<string> {
  return new Set(inv.identities.filter((i) => i.type === 0 && i.resourceId).map((i) => i.resourceId!.toLowerCase()));
}

/**
 * Whether NMI, MIC and the CRDs go too: `--uninstall-pod-identity`, or an earlier run of this
 * cycle that was given it (its records name the objects), so a resumed run without the flag
 * finishes what the interrupted one set out to do and its rollback restores all of it.
 */
function uninstallAsked(ctx: Ctx): boolean {
  if (ctx.options.uninstallPodIdentity === true) return true;
  return ctx.journal.records().some((r) => !r.rolledBack && (r.actionId.startsWith('delete/customresourcedefinition/') || r.actionId === 'delete/azurepodidentityexceptions' || r.actionId.startsWith('delete/daemonset/')));
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = await inventoryFor(ctx);
  const uninstall = uninstallAsked(ctx);
  const actions: MigrationAction[] = [];
  const blockers: Blocker[] = [];
  const notes: string[] = [];

  // 1. The aadpodidbinding label off every service's template, one rollout at a time.
  const patched = new Set<string>();
  // Only a blocker once wi-test has run (before, wi-workloads has simply not labelled them yet).
  const notOnWorkloadIdentity: Blocker[] = [];
  // In a dry run wi-workloads only pretended: the templates it would have labelled count as labelled.
  const wouldLabel = new Set(
    ctx.dryRun === 'none'
      ? []
      : ctx.journal
          .of('wi-workloads')
          .records()
          .filter((r) => r.kind === 'patch-pod-template' && r.status === 'done' && !r.rolledBack)
          .map((r) => `${(r.details as PatchPodTemplateDetails).namespace}/${(r.details as PatchPodTemplateDetails).name}`),
  );
  for (const s of servicesOf(inv)) {
    if (!patchableKind(s.kind)) continue;
    const live = await ctx.kube.get(refOfKind(s.kind), s.namespace, s.name);
    if (!live) continue;
    patched.add(`${s.kind}/${s.namespace}/${s.name}`);
    const labels = templateLabels(live);
    if (labels[WI_USE_LABEL] !== 'true' && !wouldLabel.has(s.service)) {
      notOnWorkloadIdentity.push({
        code: 'not-on-workload-identity',
        subject: `${s.kind.toLowerCase()} ${s.service}`,
        message: `the pod template of ${s.service} does not carry ${WI_USE_LABEL}=true; without ${BINDING_LABEL} its pods would have no identity.`,
        fix: 'Run podid-migrate --runbook workload-identity apply --step wi-workloads first.',
      });
      continue;
    }
    if (!(BINDING_LABEL in labels)) continue;
    const d: PatchPodTemplateDetails = { workload: s.kind, namespace: s.namespace, name: s.name, labels: { [BINDING_LABEL]: null }, annotations: {} };
    actions.push(
      action({
        id: `template/${s.kind.toLowerCase()}/${s.namespace}/${s.name}/remove-binding-label`,
        kind: 'patch-pod-template',
        op: '~',
        target: templateLabel(d),
        summary: `pod template: - label ${BINDING_LABEL}=${labels[BINDING_LABEL]}; rollout awaited before the next service`,
        api: 'kube',
        writes: { kube: 1, arm: 0 },
        details: d,
      }),
    );
  }

  // Pods that depend on pod identity alone and that no patched template will replace.
  const [pods, replicaSets] = await Promise.all([ctx.kube.list(KINDS.Pod), ctx.kube.list(KINDS.ReplicaSet)]);
  const rsByName = new Map(replicaSets.map((r) => [`${r.metadata?.namespace}/${r.metadata?.name}`, r]));
  const stranded = new Map<string, string[]>();
  for (const p of pods) {
    const labels = p.metadata?.labels ?? {};
    if (!(BINDING_LABEL in labels) || labels[WI_USE_LABEL] === 'true' || labels[PROBE_LABEL] === 'true' || p.metadata?.deletionTimestamp) continue;
    const phase = (p.status as { phase?: string } | undefined)?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    const top = topController(p, rsByName);
    if (top && patched.has(top)) continue;
    // Bare Jobs of one batch system carry generated names: one blocker for all of them (the inventory's service name).
    const key = top ? top.replace(/^(Job\/[^/]+\/.+?)-[a-z0-9]{5,}$/, '$1') : `Pod/${p.metadata?.namespace}/${p.metadata?.name}`;
    stranded.set(key, [...(stranded.get(key) ?? []), p.metadata!.name!]);
  }
  for (const [owner, names] of [...stranded].sort((a, b) => a[0].localeCompare(b[0]))) {
    const [kind, ns, name] = owner.split('/');
    blockers.push({
      code: 'pods-on-pod-identity',
      subject: `${kind.toLowerCase()} ${ns}/${name}`,
      message: `${names.length} running pod(s) (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''}) carry ${BINDING_LABEL} without ${WI_USE_LABEL}=true, and no pod template this runbook patches creates them: they would lose their identity.`,
      fix: `Apply up to ${commandPrefix('workload-identity')} apply --to wi-test, then have what creates these pods (the Job or batch system) create them with the label ${WI_USE_LABEL}=true as a service account with the azure.workload.identity/client-id annotation and a federated credential, wait until no pod of the old template runs, then plan again.`,
    });
  }

  // What must hold first: every token case of this cycle passed. Before wi-test ran there is
  // nothing to judge by: the step depends on it (the plan shows it so), unless pods that no step
  // of this runbook will move already block it (the operator can act on those at once).
  const tests = testResults(ctx);
  const failed = tests.results.filter((r) => !r.ok);
  if (tests.wouldRun) notes.push('dry run: wi-test would run its cases first; this step is refused unless every one passes');
  else if (!tests.ran || !tests.results.length) {
    if (!stranded.size) throw new PreconditionError('no workload identity token case has run in this cycle yet: this step needs every wi-test case passed.', `Apply the earlier steps first: ${commandPrefix('workload-identity')} apply --to wi-test`);
    blockers.push({
      code: 'wi-tests-not-passed',
      subject: 'step wi-test',
      message: 'no workload identity token case ran in this cycle, so nothing proves the services get their tokens without pod identity.',
      fix: `Run ${commandPrefix('workload-identity')} apply --to wi-test first.`,
    });
  } else if (failed.length) {
    blockers.push({
      code: 'wi-tests-not-passed',
      subject: 'step wi-test',
      message: `${failed.length} workload identity token case(s) failed: ${failed.map((r) => `${r.service} (identity ${r.identity})`).join('; ')}. Removing pod identity now would leave those services without a token.`,
      fix: `Fix what fails (${commandPrefix('workload-identity')} status shows it), then ${commandPrefix('workload-identity')} apply --step wi-test.`,
    });
  }
  if (tests.ran || tests.wouldRun) blockers.push(...notOnWorkloadIdentity);

  // 2./3. Pod Identity objects, with full copies.
  for (const k of CUSTOM_KINDS) {
    if (k.uninstallOnly && !uninstall) continue;
    const crd = await ctx.kube.get(KINDS.CustomResourceDefinition, undefined, k.crd);
    if (!crd) continue;
    const objs = await ctx.kube.list(k.ref);
    if (!objs.length) continue;
    const objects = objs.map((o) => ({ namespace: o.metadata!.namespace!, name: o.metadata!.name! })).sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
    const withFinalizer = objs.filter((o) => o.metadata?.finalizers?.length).length;
    actions.push(
      action({
        id: `delete/${k.crd.split('.')[0]}`,
        kind: 'delete-objects',
        op: '-',
        target: `${objs.length} ${objs.length === 1 ? k.ref.kind.toLowerCase() : k.crd.split('.')[0]}`,
        summary: `${withFinalizer ? `finalizers cleared first on ${withFinalizer}, ` : ''}full copies kept in the journal`,
        api: 'kube',
        writes: { kube: objs.length + withFinalizer, arm: 0 },
        details: { ref: { apiVersion: k.ref.apiVersion, kind: k.ref.kind }, objects, clearFinalizers: true, crd: k.crd },
      }),
    );
  }
  if (!uninstall) notes.push('NMI, MIC, the AzurePodIdentityExceptions and the CRDs are kept (--uninstall-pod-identity removes them)');
  else {
    notes.push(`uninstall: NMI, MIC, the AzurePodIdentityExceptions and the Pod Identity CRDs are deleted too${ctx.options.uninstallPodIdentity === true ? ' (--uninstall-pod-identity)' : ' (asked by the interrupted run)'}`);
    actions.push(...(await uninstallActions(ctx)));
  }

  // 4. Identities AAD Pod Identity needed on the scale sets.
  actions.push(...(await vmssActions(ctx, inv, notes)));
  return { stepId: 'wi-remove-pod-identity', actions, blockers, notes };
}

/** NMI, MIC and their objects, then the CRDs (with `--uninstall-pod-identity`). */
async function uninstallActions(ctx: Ctx): Promise<MigrationAction[]> {
  const out: MigrationAction[] = [];
  const { nmi, mic } = await findPodIdentityLive(ctx.kube);
  const accounts = new Set<string>();
  const workloads = [nmi, mic].filter((w): w is NonNullable<typeof w> => w !== undefined);
  const [crbs, pdbs] = await Promise.all([ctx.kube.list(KINDS.ClusterRoleBinding), ctx.kube.list(KINDS.PodDisruptionBudget)]);
  for (const w of workloads) {
    const tpl = (w.object.spec as { template?: { metadata?: { labels?: Record<string, string> }; spec?: { serviceAccountName?: string } } }).template;
    out.push(deleteOne(w.kind === 'DaemonSet' ? KINDS.DaemonSet : KINDS.Deployment, w.namespace, w.name, w.kind === 'DaemonSet' ? 'NMI' : 'MIC'));
    if (tpl?.spec?.serviceAccountName) accounts.add(`${w.namespace}/${tpl.spec.serviceAccountName}`);
    const podLabels = tpl?.metadata?.labels ?? {};
    for (const pdb of pdbs.filter((b) => b.metadata?.namespace === w.namespace)) {
      const sel = (pdb.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector?.matchLabels ?? {};
      if (Object.keys(sel).length && Object.entries(sel).every(([k, v]) => podLabels[k] === v)) out.push(deleteOne(KINDS.PodDisruptionBudget, w.namespace, pdb.metadata!.name!, `protects ${w.kind === 'DaemonSet' ? 'NMI' : 'MIC'} pods`));
    }
    if (w.kind === 'Deployment') {
      const lock = micLeaseLock(w.args);
      if (await ctx.kube.get(KINDS.Endpoints, lock.namespace, lock.name)) out.push(deleteOne(KINDS.Endpoints, lock.namespace, lock.name, 'MIC leader election record'));
      if (await ctx.kube.get(KINDS.ConfigMap, w.namespace, CONFIG_MAP)) out.push(deleteOne(KINDS.ConfigMap, w.namespace, CONFIG_MAP, 'MIC\'s migration marker'));
    }
  }
  // RBAC: bindings whose every subject is one of those accounts; roles nothing else binds.
  const isOurs = (s: { kind?: string; name?: string; namespace?: string }) => s.kind === 'ServiceAccount' && accounts.has(`${s.namespace}/${s.name}`);
  const ours = crbs.filter((b) => {
    const subjects = (b.subjects as { kind?: string; name?: string; namespace?: string }[] | undefined) ?? [];
    return subjects.length > 0 && subjects.every(isOurs);
  });
  for (const b of ours.sort((a, c) => a.metadata!.name!.localeCompare(c.metadata!.name!))) out.push(deleteOne(KINDS.ClusterRoleBinding, undefined, b.metadata!.name!, 'binds a Pod Identity service account'));
  const roleOf = (b: KubeObject) => b.roleRef as { kind?: string; name?: string } | undefined;
  const roles = [...new Set(ours.map(roleOf).filter((r) => r?.kind === 'ClusterRole').map((r) => r!.name!))].sort();
  for (const role of roles) {
    if (crbs.some((b) => !ours.includes(b) && roleOf(b)?.kind === 'ClusterRole' && roleOf(b)?.name === role)) continue;
    if (await ctx.kube.get(KINDS.ClusterRole, undefined, role)) out.push(deleteOne(KINDS.ClusterRole, undefined, role, 'Pod Identity permissions'));
  }
  for (const sa of [...accounts].sort()) {
    const [ns, name] = sa.split('/');
    if (await ctx.kube.get(KINDS.ServiceAccount, ns, name)) out.push(deleteOne(KINDS.ServiceAccount, ns, name, 'Pod Identity service account'));
  }
  // The CRDs last: rollback (newest first) re-creates them before the objects of their kinds.
  const crds = (await ctx.kube.list(KINDS.CustomResourceDefinition)).filter((c) => (c.spec as { group?: string } | undefined)?.group === POD_IDENTITY_GROUP || c.metadata?.name?.endsWith(`.${POD_IDENTITY_GROUP}`));
  for (const c of crds.sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!))) out.push(deleteOne(KINDS.CustomResourceDefinition, undefined, c.metadata!.name!, 'AAD Pod Identity CRD'));
  return out;
}

/** One `vmss-remove-identities` per scale set carrying identities of the inventory's AzureIdentities. */
async function vmssActions(ctx: Ctx, inv: InventoryDocument, notes: string[]): Promise<MigrationAction[]> {
  const ids = podIdentityIds(inv);
  const aksId = typeof ctx.options.aksId === 'string' ? ctx.options.aksId : inv.cluster.resourceId;
  const kubelet = aksId ? (await ctx.azure.getManagedCluster(aksId)).kubeletIdentity?.resourceId?.toLowerCase() : undefined;
  if (kubelet) ids.delete(kubelet);
  // The inventory's pools and their scale sets.
  const sets = new Map<string, { pool: string; resourceGroup: string; name: string }>();
  for (const p of inv.pools) {
    const m = p.scaleSet ? /\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)/i.exec(p.scaleSet) : null;
    if (m) sets.set(m[2].toLowerCase(), { pool: p.name, resourceGroup: m[1], name: m[2] });
  }
  const out: MigrationAction[] = [];
  let kept = 0;
  for (const s of [...sets.values()].sort((a, b) => a.pool.localeCompare(b.pool))) {
    const set = await ctx.azure.getScaleSet(s.resourceGroup, s.name);
    if (!set) continue;
    const present = Object.keys(set.userAssignedIdentities).sort();
    const remove = present.filter((id) => ids.has(id.toLowerCase()));
    kept += present.length - remove.length;
    if (!remove.length) continue;
    const short = (id: string) => id.split('/').pop();
    out.push(
      action({
        id: `vmss/${s.name}/remove-identities`,
        kind: 'vmss-remove-identities',
        op: '~',
        target: `vmss ${s.name}`,
        summary: `identities: ${remove.map((id) => `- ${short(id)}`).join(', ')} (keeps ${present.length - remove.length})`,
        api: 'arm',
        writes: { kube: 0, arm: 1 },
        details: { pool: s.pool, resourceGroup: s.resourceGroup, vmss: s.name, remove },
      }),
    );
  }
  notes.push(`scale sets keep ${kept} identit${kept === 1 ? 'y' : 'ies'} no AzureIdentity names (kubelet, add-ons, others)`);
  return out;
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const dry = ctx.dryRun !== 'none';
  const uninstall = uninstallAsked(ctx);
  if (!dry) await ctx.journal.setData('uninstallPodIdentity', uninstall);
  const labels = p.actions.filter((a) => a.kind === 'patch-pod-template').length;
  const objects = p.actions.reduce((n, a) => n + (a.kind === 'delete-objects' ? (a.details as { objects: unknown[] }).objects.length : a.kind === 'delete-object' ? 1 : 0), 0);
  const vmss = p.actions.filter((a) => a.kind === 'vmss-remove-identities').reduce((n, a) => n + (a.details as { remove: unknown[] }).remove.length, 0);
  return { summary: `${dry ? 'would remove' : 'removed'} ${BINDING_LABEL} from ${labels} service${labels === 1 ? '' : 's'}, ${objects} Pod Identity object${objects === 1 ? '' : 's'} (copies in the journal), ${vmss} scale set identit${vmss === 1 ? 'y' : 'ies'}${uninstall ? '; NMI, MIC and the CRDs uninstalled' : ''}` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const inv = await inventoryFor(ctx);
  const evidence: string[] = [];
  const failures: string[] = [];
  for (const s of servicesOf(inv)) {
    if (!patchableKind(s.kind)) continue;
    const live = await ctx.kube.get(refOfKind(s.kind), s.namespace, s.name);
    if (live && BINDING_LABEL in templateLabels(live)) failures.push(`${s.kind.toLowerCase()} ${s.service}: pod template still carries ${BINDING_LABEL}`);
  }
  // Finished pods (a completed Job's) request no token any more; they go with their Job.
  const labelled = (await ctx.kube.list(KINDS.Pod, { labelSelector: BINDING_LABEL })).filter((p) => !p.metadata?.deletionTimestamp && !['Succeeded', 'Failed'].includes((p.status as { phase?: string } | undefined)?.phase ?? ''));
  if (labelled.length) failures.push(`${labelled.length} running pod(s) still carry ${BINDING_LABEL} (e.g. ${labelled[0].metadata?.namespace}/${labelled[0].metadata?.name})`);
  else evidence.push(`no running pod carries ${BINDING_LABEL}`);
  const uninstall = uninstallAsked(ctx);
  for (const k of CUSTOM_KINDS) {
    if (k.uninstallOnly && !uninstall) continue;
    if (!(await ctx.kube.get(KINDS.CustomResourceDefinition, undefined, k.crd))) continue;
    const left = await ctx.kube.list(k.ref);
    if (left.length) failures.push(`${left.length} ${k.ref.kind} object(s) remain (e.g. ${left[0].metadata?.namespace}/${left[0].metadata?.name})`);
  }
  evidence.push('no AzureIdentity or AzureIdentityBinding remains');
  if (uninstall) {
    const { nmi, mic } = await findPodIdentityLive(ctx.kube);
    if (nmi) failures.push(`NMI ${nmi.namespace}/${nmi.name} still exists`);
    if (mic) failures.push(`MIC ${mic.namespace}/${mic.name} still exists`);
    const crds = (await ctx.kube.list(KINDS.CustomResourceDefinition)).filter((c) => c.metadata?.name?.endsWith(`.${POD_IDENTITY_GROUP}`));
    if (crds.length) failures.push(`Pod Identity CRDs remain: ${crds.map((c) => c.metadata?.name).join(', ')}`);
    if (!nmi && !mic && !crds.length) evidence.push('NMI, MIC and the Pod Identity CRDs are gone');
  }
  // Identities: every removal this cycle recorded holds.
  for (const r of ctx.journal.records()) {
    if (r.rolledBack || r.kind !== 'vmss-remove-identities' || r.status !== 'done') continue;
    const d = r.details as { resourceGroup: string; vmss: string; remove: string[] };
    const set = await ctx.azure.getScaleSet(d.resourceGroup, d.vmss);
    const have = new Set(Object.keys(set?.userAssignedIdentities ?? {}).map((i) => i.toLowerCase()));
    const back = d.remove.filter((id) => have.has(id.toLowerCase()));
    if (back.length) failures.push(`vmss ${d.vmss} carries ${back.map((id) => id.split('/').pop()).join(', ')} again (MIC still running?)`);
    else evidence.push(`vmss ${d.vmss}: ${d.remove.length} Pod Identity identit${d.remove.length === 1 ? 'y' : 'ies'} removed, ${have.size} other kept`);
  }
  for (const r of ctx.journal.records()) {
    if (r.rolledBack || r.kind !== 'delete-object') continue;
    const d = r.details as DeleteObjectDetails | undefined;
    if (d?.ref && (await ctx.kube.get(d.ref, d.namespace, d.name))) failures.push(`${r.target} still exists`);
  }
  return { ok: failures.length === 0, evidence, failures };
}

/** The `wi-remove-pod-identity` step. */
export const wiRemovePodIdentityStep: MigrationStep = {
  id: 'wi-remove-pod-identity',
  title: 'Remove AAD Pod Identity: binding labels, Pod Identity objects, scale set identities',
  plan,
  afterActions,
  check,
};

export default wiRemovePodIdentityStep;
