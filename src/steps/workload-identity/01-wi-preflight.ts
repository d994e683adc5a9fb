/**
 * Step `wi-preflight` (workload identity runbook, 1): finds, before anything is written, every
 * reason the move off pod identity cannot go through, all at once:
 *
 * - the managed cluster: `--aks-id` known, not in a `Failed` state (AKS turns the OIDC issuer
 *   and workload identity on with an update, which needs a healthy cluster);
 * - per identity: a user-assigned managed identity with a resource id that ARM knows (federated
 *   credentials live on it), and its existing federated credentials plus the ones this runbook
 *   adds within Entra's limit of 20;
 * - per service account the runbook annotates and federates: no other workload runs as it
 *   (its pods would get the identity's tokens too);
 * - per service: no `hostNetwork` pods (the webhook's proxy sidecar cannot serve them), and an
 *   Azure Identity SDK the operator marked in the inventory (`workloadIdentity.sdk`) at least at
 *   the workload identity minimum unless the service is marked for the proxy sidecar
 *   (`workloadIdentity.proxySidecar`).
 *
 * Its only action: when there is no inventory file yet, writing the one the managed-mode
 * inventory step would write (same reading and analysis), which the later steps read.
 */
import { MAX_FEDERATED_CREDENTIALS_PER_IDENTITY, type ManagedClusterInfo, type ManagedIdentity } from '../../azure/gateway.ts';
import type { Blocker, CheckResult, StepOutcome, StepPlan } from '../../engine/step.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import { action, NO_WRITES, type MigrationAction } from '../executors/index.ts';
import type { Ctx, MigrationStep } from '../lib/context.ts';
import { loadInventory, type InventoryDocument } from '../lib/inventory-model.ts';
import { credentialSatisfies, identityLabel, readWorkloadIdentityTargets, type CredentialTarget, type WorkloadIdentityTargets } from '../lib/workload-identity/federation.ts';
import { workloadIdentityInventory } from '../lib/workload-identity/inventory.ts';
import { listIfServed } from '../lib/inventory/reading.ts';
import { MIN_SDK_VERSIONS, sdkSupportsWorkloadIdentity } from '../lib/workload-identity/sdk.ts';
import { templateServiceAccount } from '../lib/workload-identity/workloads.ts';

/** What the preflight found: blockers, notes, and evidence lines for the check. */
export interface PreflightFindings {
  blockers: Blocker[];
  notes: string[];
  evidence: string[];
  targets: WorkloadIdentityTargets;
  cluster?: ManagedClusterInfo;
}

/** The document as written: no timestamp, so an unchanged cluster gives an unchanged file and plan. */
function stableDocument(doc: InventoryDocument): InventoryDocument {
  const { generatedAt: _ignored, ...rest } = doc;
  return rest;
}

/** Pure: the federated credential limit per identity, given what exists and what the runbook needs. */
export function credentialLimitBlockers(needed: readonly CredentialTarget[], existing: ReadonlyMap<string, { count: number; satisfied: ReadonlySet<string> }>): { blockers: Blocker[]; evidence: string[] } {
  const blockers: Blocker[] = [];
  const evidence: string[] = [];
  const byIdentity = new Map<string, CredentialTarget[]>();
  for (const t of needed) byIdentity.set(t.identityId.toLowerCase(), [...(byIdentity.get(t.identityId.toLowerCase()) ?? []), t]);
  for (const [key, targets] of byIdentity) {
    const have = existing.get(key) ?? { count: 0, satisfied: new Set<string>() };
    const toAdd = targets.filter((t) => !have.satisfied.has(t.subject));
    const total = have.count + toAdd.length;
    const who = identityLabel(targets[0].identity);
    evidence.push(`identity ${who}: ${have.count} federated credential(s), ${toAdd.length} to add (limit ${MAX_FEDERATED_CREDENTIALS_PER_IDENTITY})`);
    if (total > MAX_FEDERATED_CREDENTIALS_PER_IDENTITY) {
      blockers.push({
        code: 'wi-federated-credential-limit',
        subject: `identity ${who}`,
        message: `identity ${who} has ${have.count} federated identity credential(s) and the migration needs ${toAdd.length} more (${toAdd.map((t) => `${t.namespace}/${t.serviceAccount}`).join(', ')}): ${total} is over Entra's limit of ${MAX_FEDERATED_CREDENTIALS_PER_IDENTITY} per identity.`,
        fix: `Delete unused credentials (az identity federated-credential list --identity-name ${targets[0].identityId.split('/').pop()} --resource-group <group>), or let several services share one service account per namespace, then plan again.`,
      });
    }
  }
  return { blockers, evidence };
}

/** Pure: hostNetwork pods and SDKs too old for workload identity without the proxy sidecar. */
export function serviceBlockers(targets: WorkloadIdentityTargets): { blockers: Blocker[]; notes: string[] } {
  const blockers: Blocker[] = [];
  const unknown: string[] = [];
  for (const t of targets.services) {
    const s = t.service;
    const template = (t.live?.spec as { template?: { spec?: { hostNetwork?: boolean } } } | undefined)?.template?.spec;
    if (template?.hostNetwork === true) {
      blockers.push({
        code: 'wi-host-network',
        subject: `${s.kind.toLowerCase()} ${s.service}`,
        message: `${s.service} runs its pods with hostNetwork: the workload identity proxy sidecar cannot serve host-network pods, and their IMDS requests would reach the node's own identities instead of ${identityLabel(s.identity)}.`,
        fix: `Run ${s.service} on the pod network (spec.template.spec.hostNetwork: false), or take it out of the inventory and move it separately, then plan again.`,
      });
    }
    const sdk = s.inventory.workloadIdentity?.sdk;
    if (!sdk) {
      unknown.push(s.service);
      continue;
    }
    if (!sdkSupportsWorkloadIdentity(sdk.language, sdk.version) && !s.proxySidecar) {
      const min = MIN_SDK_VERSIONS[sdk.language];
      blockers.push({
        code: 'wi-sdk-too-old',
        subject: `service ${s.service}`,
        message: `${s.service} uses ${min.package} ${sdk.version} (${sdk.language}); workload identity needs ${min.version} or newer, so its token requests would still go to IMDS, which no longer answers once pod identity is removed.`,
        fix: `Upgrade ${min.package} to ${min.version} or newer, or mark the service for the proxy sidecar in the inventory (services[].workloadIdentity.proxySidecar: true), then plan again.`,
      });
    }
  }
  const notes = unknown.length ? [`no SDK version in the inventory for ${unknown.length} service(s) (${unknown.join(', ')}): assumed to support workload identity; set services[].workloadIdentity.sdk to have it checked`] : [];
  return { blockers, notes };
}

/**
 * Pure: service accounts the runbook will annotate and federate that other workloads (not among
 * the account's services) also run as. Once trusted, their pods could get the identity's tokens.
 */
export function accountUseBlockers(targets: WorkloadIdentityTargets, workloads: readonly KubeObject[]): Blocker[] {
  const blockers: Blocker[] = [];
  for (const a of targets.accounts) {
    const own = new Set(a.services.map((t) => `${t.service.kind}/${t.service.service}`));
    const others = workloads.filter((w) => w.metadata?.namespace === a.namespace && templateServiceAccount(w) === a.name && !own.has(`${w.kind}/${a.namespace}/${w.metadata?.name}`));
    if (!others.length) continue;
    const who = a.identities.map(identityLabel).join(', ');
    blockers.push({
      code: 'wi-service-account-used-elsewhere',
      subject: `serviceaccount ${a.namespace}/${a.name}`,
      message: `${others.map((w) => `${w.kind?.toLowerCase()} ${a.namespace}/${w.metadata?.name}`).join(', ')} also run${others.length === 1 ? 's' : ''} as ${a.namespace}/${a.name}, which the migration annotates and federates for identity ${who}: those pods would get its tokens too.`,
      fix: `Give ${others.length === 1 ? 'it' : 'them'} a service account of ${others.length === 1 ? 'its' : 'their'} own (spec.template.spec.serviceAccountName), or add ${others.length === 1 ? 'it' : 'them'} to the inventory under that identity, then plan again.`,
    });
  }
  return blockers;
}

/** Reads the cluster, the identities and their credentials, and runs every rule. Read-only. */
export async function preflightFindings(ctx: Ctx, inv: InventoryDocument): Promise<PreflightFindings> {
  const blockers: Blocker[] = [];
  const notes: string[] = [];
  const evidence: string[] = [];
  const aksId = typeof ctx.options.aksId === 'string' ? ctx.options.aksId : undefined;
  let cluster: ManagedClusterInfo | undefined;
  if (!aksId) {
    blockers.push({
      code: 'aks-id-missing',
      subject: 'managed cluster',
      message: 'the AKS resource id is not known, so the OIDC issuer and workload identity cannot be read or turned on.',
      fix: 'Pass --aks-id (or set PODID_MIGRATE_AKS_ID), e.g. --aks-id "$(az aks show -g <group> -n <name> --query id -o tsv)".',
    });
  } else {
    cluster = await ctx.azure.getManagedCluster(aksId);
    if (cluster.provisioningState === 'Failed') {
      blockers.push({
        code: 'wi-cluster-failed',
        subject: `managed cluster ${cluster.name}`,
        message: `the managed cluster is in provisioning state Failed: AKS would refuse or fail the update that turns on the OIDC issuer and workload identity.`,
        fix: `Reconcile it first (az aks update -g <group> -n ${cluster.name}), then plan again.`,
      });
    }
    const issuer = cluster.oidcIssuer?.enabled ? `OIDC issuer on (${cluster.oidcIssuer.issuerUrl ?? 'URL not shown yet'})` : 'OIDC issuer off (wi-enable turns it on)';
    const wi = cluster.workloadIdentityEnabled ? 'workload identity on' : 'workload identity off (wi-enable turns it on)';
    notes.push(`managed cluster ${cluster.name}: ${issuer}, ${wi}`);
    evidence.push(`managed cluster ${cluster.name}: ${cluster.provisioningState ?? 'state not shown'}, ${issuer}, ${wi}`);
  }

  const targets = await readWorkloadIdentityTargets(ctx, inv);
  for (const s of targets.skipped) notes.push(`${s.service.service} is not moved by this runbook: ${s.reason}`);

  // Identities: user-assigned, with a resource id ARM knows.
  const usable = new Map<string, ManagedIdentity>();
  const seen = new Set<string>();
  for (const t of targets.services) {
    const identity = t.service.identity;
    const who = identityLabel(identity);
    if (seen.has(who)) continue;
    seen.add(who);
    if (identity.type !== 0) {
      blockers.push({
        code: 'wi-identity-not-user-assigned',
        subject: `azureidentity ${who}`,
        message: `identity ${who} is a service principal (type ${identity.type}): this runbook federates user-assigned managed identities only.`,
        fix: `Add a federated credential to its app registration yourself (az ad app federated-credential create), or move ${t.service.service} to a user-assigned identity, then plan again.`,
      });
      continue;
    }
    if (!identity.resourceId) {
      blockers.push({
        code: 'wi-identity-without-resource-id',
        subject: `azureidentity ${who}`,
        message: `identity ${who} has no resource id: its federated credentials cannot be created.`,
        fix: `Set spec.resourceID (kubectl edit azureidentity -n ${identity.namespace} ${identity.name}) and write the inventory again, then plan again.`,
      });
      continue;
    }
    const arm = await ctx.azure.getIdentity(identity.resourceId);
    if (!arm) {
      blockers.push({
        code: 'wi-identity-not-found',
        subject: `azureidentity ${who}`,
        message: `identity ${identity.resourceId} does not exist in Azure (or cannot be read).`,
        fix: 'Check the resource id and that the signed-in account may read it (Reader on the identity), then plan again.',
      });
      continue;
    }
    usable.set(identity.resourceId.toLowerCase(), arm);
  }

  // Federated credentials: what exists per identity, against the limit.
  const needed = targets.credentials.filter((c) => usable.has(c.identityId.toLowerCase()));
  const existing = new Map<string, { count: number; satisfied: Set<string> }>();
  const issuerUrl = cluster?.oidcIssuer?.enabled ? cluster.oidcIssuer.issuerUrl : undefined;
  for (const id of new Set(needed.map((c) => c.identityId))) {
    const list = await ctx.azure.listFederatedCredentials(id);
    const satisfied = new Set(needed.filter((t) => t.identityId === id && list.some((c) => credentialSatisfies(c, t, issuerUrl))).map((t) => t.subject));
    existing.set(id.toLowerCase(), { count: list.length, satisfied });
  }
  const limits = credentialLimitBlockers(needed, existing);
  blockers.push(...limits.blockers);
  evidence.push(...limits.evidence);

  // Not every cluster serves every workload kind (the sandbox has no StatefulSets).
  const workloads = (await Promise.all([KINDS.Deployment, KINDS.StatefulSet, KINDS.DaemonSet].map(async (k) => (await listIfServed(ctx, k)) ?? []))).flat();
  blockers.push(...accountUseBlockers(targets, workloads));

  const services = serviceBlockers(targets);
  blockers.push(...services.blockers);
  notes.push(...services.notes);
  notes.push(`${targets.services.length} service(s) on ${targets.accounts.length} service account(s); ${needed.length} federated credential(s) for ${usable.size} identit${usable.size === 1 ? 'y' : 'ies'}`);
  return { blockers, notes, evidence, targets, cluster };
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = await workloadIdentityInventory(ctx);
  const actions: MigrationAction[] = [];
  const blockers = [...inv.blockers];
  const notes = [...inv.notes];
  // With the CRDs missing there is nothing to read the services from.
  if (!blockers.length) {
    const f = await preflightFindings(ctx, inv.document);
    blockers.push(...f.blockers);
    notes.push(...f.notes);
  }
  if (inv.source === 'discovered') {
    const doc = stableDocument(inv.document);
    actions.push(
      action({
        id: 'file/inventory',
        kind: 'write-inventory',
        op: '+',
        target: `file ${ctx.inventoryPath}`,
        summary: `${doc.identities.length} identities, ${doc.identities.reduce((n, i) => n + i.services.length, 0)} services (no inventory yet; the same file the managed-mode runbook writes)`,
        api: 'none',
        writes: NO_WRITES,
        details: { document: doc },
      }),
    );
    // Later steps of the same plan (and of a dry run) are planned against this document.
    return { stepId: 'wi-preflight', actions, blockers, notes, inventoryPreview: doc };
  }
  return { stepId: 'wi-preflight', actions, blockers, notes };
}

async function afterActions(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const wrote = p.actions.some((a) => a.kind === 'write-inventory');
  const dry = ctx.dryRun !== 'none';
  return { summary: `no blockers${wrote ? `; inventory ${dry ? 'would be ' : ''}written to ${ctx.inventoryPath}` : `; inventory ${ctx.inventoryPath}`}` };
}

async function check(ctx: Ctx): Promise<CheckResult> {
  const failures: string[] = [];
  const evidence: string[] = [];
  let file: InventoryDocument | undefined;
  try {
    file = await loadInventory(ctx.inventoryPath);
  } catch (e) {
    failures.push((e as Error).message);
  }
  if (!file) {
    if (!failures.length) failures.push(`no inventory file at ${ctx.inventoryPath}; run podid-migrate --runbook workload-identity apply --step wi-preflight`);
    return { ok: false, evidence, failures };
  }
  evidence.push(`${ctx.inventoryPath} validates against the inventory schema`);
  const f = await preflightFindings(ctx, file);
  evidence.push(...f.evidence);
  for (const b of f.blockers) failures.push(`${b.subject}: ${b.message} ${b.fix}`);
  if (!f.blockers.length) evidence.push(`no blockers: ${f.targets.services.length} service(s), ${f.targets.credentials.length} federated credential(s) to have`);
  return { ok: failures.length === 0, evidence, failures };
}

/** The `wi-preflight` step. */
export const wiPreflightStep: MigrationStep = {
  id: 'wi-preflight',
  title: 'Preflight: OIDC issuer, federated credential limits, hostNetwork pods, SDK versions; inventory',
  plan,
  afterActions,
  check,
};
