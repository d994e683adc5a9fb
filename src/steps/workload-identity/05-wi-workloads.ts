/**
 * Step `wi-workloads` (workload identity runbook, 5): puts every service's pods on the workload
 * identity path. Per service, one `patch-pod-template` action: the pod template label
 * `azure.workload.identity/use: "true"`, the proxy sidecar annotation
 * `azure.workload.identity/inject-proxy-sidecar: "true"` only for services the inventory marks
 * (`workloadIdentity.proxySidecar`), and the dedicated service account when `wi-serviceaccounts`
 * created one. The actions run one after another, each awaiting its own rollout (new pods
 * updated and available, no old one left) before the next service starts, so a bad template
 * stops the step after one service. Before the first rollout onto a service account, a gate
 * (`run-wi-probes` with `gate`) proves the exchange as that account returns the service's
 * identity: Entra refuses a credential for a while after it is written (AADSTS70021), and a pod
 * started meanwhile with the injected env would fail its token requests.
 *
 * The pods keep their `aadpodidbinding` label: during the transition both paths answer (the
 * SDK reads the injected env first; NMI still serves IMDS requests). A template already as
 * planned is not planned again, so a resumed run never rolls a service out twice.
 *
 * Services whose pods no controller template describes (bare Jobs or Pods created by another
 * system, CronJobs) are not patched: the plan names them, and `wi-remove-pod-identity` refuses
 * while such pods still depend on pod identity.
 */
import type { Blocker, CheckResult, StepOutcome, StepPlan } from '../../engine/step.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import { action, type MigrationAction } from '../executors/index.ts';
import { rolloutGap, templateInEffect, templateLabel, type PatchPodTemplateDetails } from '../executors/patch-pod-template.ts';
import type { Ctx, MigrationStep } from '../lib/context.ts';
import { inventoryFor } from '../lib/inventory-source.ts';
import { BINDING_LABEL, WI_PROXY_ANNOTATION, WI_USE_LABEL, patchableKind, refOfKind, serviceAccountFor, servicesOf, templateServiceAccount, type WiService } from '../lib/workload-identity/workloads.ts';

/** Action id of a service's template change (stable: one per workload). */
export function workloadActionId(s: Pick<WiService, 'kind' | 'namespace' | 'name'>): string {
  return `template/${s.kind.toLowerCase()}/${s.namespace}/${s.name}/workload-identity`;
}

/** The template change a service needs (labels, annotations, service account). */
function detailsFor(ctx: Ctx, s: WiService, live: KubeObject): PatchPodTemplateDetails {
  const sa = serviceAccountFor(ctx, s, live);
  return {
    workload: s.kind as PatchPodTemplateDetails['workload'],
    namespace: s.namespace,
    name: s.name,
    labels: { [WI_USE_LABEL]: 'true' },
    annotations: s.proxySidecar ? { [WI_PROXY_ANNOTATION]: 'true' } : {},
    ...(sa !== templateServiceAccount(live) ? { serviceAccountName: sa } : {}),
  };
}

/**
 * The gate before the first rollout onto a service account: one token exchange as that account
 * (a probe pod, created and deleted) must return the service's identity. Right after
 * `wi-federate` wrote a credential, Entra answers AADSTS70021 until it has propagated; a pod
 * started meanwhile with the workload identity env would fail its token requests (its SDK does
 * not fall back to IMDS on an Entra error). Absent when the identity lacks its client id.
 */
function gateFor(s: WiService, serviceAccount: string): MigrationAction | undefined {
  const id = s.identity;
  if (!id.clientId || (id.type === 0 && !id.resourceId)) return undefined;
  return action({
    id: `gate/${s.namespace}/${serviceAccount}`,
    kind: 'run-wi-probes',
    op: '~',
    target: `serviceaccount ${s.namespace}/${serviceAccount}`,
    summary: `token exchange as ${s.namespace}/${serviceAccount} must return identity ${id.name} (its credential has propagated) before the first rollout onto it (1 short-lived probe pod)`,
    api: 'kube',
    writes: { kube: 2, arm: 0 },
    details: {
      gate: true,
      cases: [
        {
          id: `gate/${s.namespace}/${serviceAccount}`,
          service: s.service,
          namespace: s.namespace,
          serviceAccount,
          identity: { ref: `${id.namespace}/${id.name}`, name: id.name, ...(id.type === 0 ? { resourceId: id.resourceId } : {}), clientId: id.clientId, ...(id.principalId ? { principalId: id.principalId } : {}) },
        },
      ],
    },
  });
}

function summaryOf(d: PatchPodTemplateDetails): string {
  const parts = [`+ label ${WI_USE_LABEL}=true`];
  if (Object.keys(d.annotations).length) parts.push(`+ annotation ${WI_PROXY_ANNOTATION}=true (proxy sidecar)`);
  if (d.serviceAccountName) parts.push(`serviceAccountName ${d.serviceAccountName}`);
  return `pod template: ${parts.join(', ')}; keeps ${BINDING_LABEL}; rollout awaited before the next service`;
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = await inventoryFor(ctx);
  const actions: MigrationAction[] = [];
  const blockers: Blocker[] = [];
  const notes: string[] = [];
  const already: string[] = [];
  // Service accounts whose exchange is proven before the first rollout onto them.
  const gated = new Set<string>();
  for (const s of servicesOf(inv)) {
    if (!patchableKind(s.kind)) {
      notes.push(`${s.kind} ${s.service} is not patched: no controller template describes its pods; add the label ${WI_USE_LABEL}=true (and its service account) where they are created`);
      continue;
    }
    const live = await ctx.kube.get(refOfKind(s.kind), s.namespace, s.name);
    if (!live) {
      blockers.push({
        code: 'service-missing',
        subject: `${s.kind.toLowerCase()} ${s.service}`,
        message: `the inventory lists ${s.service} (identity ${s.identity.namespace}/${s.identity.name}), but no ${s.kind} of that name exists.`,
        fix: 'Re-run the managed-mode inventory step (podid-migrate apply --step inventory) so the inventory matches the cluster.',
      });
      continue;
    }
    const d = detailsFor(ctx, s, live);
    if (templateInEffect(live, d)) {
      already.push(s.service);
      continue;
    }
    const sa = d.serviceAccountName ?? templateServiceAccount(live);
    const gate = gateFor(s, sa);
    if (gate && !gated.has(`${s.namespace}/${sa}`)) {
      gated.add(`${s.namespace}/${sa}`);
      actions.push(gate);
    }
    actions.push(
      action({
        id: workloadActionId(s),
        kind: 'patch-pod-template',
        op: '~',
        target: templateLabel(d),
        summary: summaryOf(d),
        api: 'kube',
        writes: { kube: 1, arm: 0 },
        details: d,
      }),
    );
  }
  if (already.length) notes.push(`already on workload identity: ${already.join(', ')}`);
  const rollouts = actions.filter((a) => a.kind === 'patch-pod-template').length;
  if (rollouts) notes.push(`${rollouts} service${rollouts === 1 ? '' : 's'} rolled out one at a time, each awaited, each service account's token exchange proven before its first rollout`);
  return { stepId: 'wi-workloads', actions, blockers, notes };
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const n = p.actions.filter((a) => a.kind === 'patch-pod-template').length;
  return { summary: `${ctx.dryRun !== 'none' ? 'would roll out' : 'rolled out'} ${n} service${n === 1 ? '' : 's'} with ${WI_USE_LABEL}=true (${BINDING_LABEL} kept)` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const inv = await inventoryFor(ctx);
  const evidence: string[] = [];
  const failures: string[] = [];
  for (const s of servicesOf(inv)) {
    if (!patchableKind(s.kind)) continue;
    const live = await ctx.kube.get(refOfKind(s.kind), s.namespace, s.name);
    if (!live) {
      failures.push(`${s.kind} ${s.service} not found`);
      continue;
    }
    const d = detailsFor(ctx, s, live);
    if (!templateInEffect(live, d)) failures.push(`${templateLabel(d)}: pod template lacks ${WI_USE_LABEL}=true${d.serviceAccountName ? ` or service account ${d.serviceAccountName}` : ''}; run apply --step wi-workloads`);
    else if (rolloutGap(live)) failures.push(`${templateLabel(d)}: rollout not complete (${rolloutGap(live)})`);
    else evidence.push(`${templateLabel(d)}: ${WI_USE_LABEL}=true, service account ${templateServiceAccount(live)}${s.proxySidecar ? ', proxy sidecar' : ''}, rolled out`);
  }
  return { ok: failures.length === 0, evidence, failures };
}

/** The `wi-workloads` step. */
export const wiWorkloadsStep: MigrationStep = {
  id: 'wi-workloads',
  title: 'Label the workloads for workload identity, one rollout at a time',
  plan,
  afterActions,
  check,
};

export default wiWorkloadsStep;
