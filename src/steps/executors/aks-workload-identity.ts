/**
 * `aks-workload-identity`: turns on the managed cluster's OIDC issuer and/or workload identity
 * (one ARM update, a long-running operation), then awaits AKS's workload identity webhook in
 * `kube-system` (pods labelled for workload identity are refused while no webhook pod is ready).
 * The result carries the issuer URL AKS publishes once the update is done.
 *
 * Undo turns workload identity off again only when this action turned it on. The OIDC issuer
 * stays on: AKS cannot turn it off once enabled, and nothing trusts it once the federated
 * credentials are gone (`wi-federate`'s rollback deletes them).
 */
import type { ManagedClusterInfo } from '../../azure/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import type { KubeObject } from '../../kube/gateway.ts';
import type { Ctx, Executor } from '../lib/context.ts';
import { POLL_MS, remainingMs } from '../lib/util.ts';

/** Namespace and name of the webhook Deployment AKS runs once workload identity is on. */
export const WI_WEBHOOK_DEPLOYMENT = { namespace: 'kube-system', name: 'azure-wi-webhook-controller-manager' } as const;

/** Details of an `aks-workload-identity` action: what it turns on. */
export interface AksWorkloadIdentityDetails {
  aksId: string;
  /** Cluster name, for messages. */
  cluster: string;
  oidcIssuer: boolean;
  workloadIdentity: boolean;
}

/** Pre-state: the two settings before the first attempt. */
export interface AksWorkloadIdentityPreState {
  oidcIssuerEnabled: boolean;
  workloadIdentityEnabled: boolean;
}

/** Result: the issuer URL after the update (absent in a dry run before the issuer exists). */
export interface AksWorkloadIdentityResult {
  issuerUrl?: string;
}

function settingsOf(c: ManagedClusterInfo): AksWorkloadIdentityPreState {
  return { oidcIssuerEnabled: c.oidcIssuer?.enabled === true, workloadIdentityEnabled: c.workloadIdentityEnabled === true };
}

/** Waits until no update runs on the cluster (AKS answers 409 to another one meanwhile); returns the cluster then. */
export async function clusterSettled(ctx: Ctx, aksId: string, what: string): Promise<ManagedClusterInfo> {
  return ctx.kube.waitFor(
    async (note) => {
      const c = await ctx.azure.getManagedCluster(aksId);
      note(`provisioningState ${c.provisioningState ?? 'unknown'}`);
      return c.provisioningState === 'Updating' ? undefined : c;
    },
    { describe: `the running update of managed cluster ${what} to finish`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS * 3, signal: ctx.signal },
  );
}

/** Waits until AKS's workload identity webhook has a ready pod. */
export async function webhookReady(ctx: Ctx): Promise<void> {
  await ctx.kube.waitFor(
    async (note) => {
      const d = await ctx.kube.get<KubeObject & { status?: { readyReplicas?: number } }>(KINDS.Deployment, WI_WEBHOOK_DEPLOYMENT.namespace, WI_WEBHOOK_DEPLOYMENT.name);
      note(d ? `${d.status?.readyReplicas ?? 0} ready replica(s)` : 'not deployed yet');
      return (d?.status?.readyReplicas ?? 0) >= 1;
    },
    { describe: `deployment ${WI_WEBHOOK_DEPLOYMENT.namespace}/${WI_WEBHOOK_DEPLOYMENT.name} (the workload identity webhook) ready`, timeoutMs: remainingMs(ctx.deadline), intervalMs: POLL_MS, signal: ctx.signal },
  );
}

function wanted(d: AksWorkloadIdentityDetails): { oidcIssuerEnabled?: boolean; workloadIdentityEnabled?: boolean } {
  return { ...(d.oidcIssuer ? { oidcIssuerEnabled: true } : {}), ...(d.workloadIdentity ? { workloadIdentityEnabled: true } : {}) };
}

function inEffect(c: ManagedClusterInfo, d: AksWorkloadIdentityDetails): boolean {
  const s = settingsOf(c);
  return (!d.oidcIssuer || s.oidcIssuerEnabled) && (!d.workloadIdentity || s.workloadIdentityEnabled);
}

export const aksWorkloadIdentity: Executor<AksWorkloadIdentityDetails, AksWorkloadIdentityPreState, AksWorkloadIdentityResult> = {
  kind: 'aks-workload-identity',
  async capture(ctx, { details: d }) {
    return settingsOf(await ctx.azure.getManagedCluster(d.aksId));
  },
  async do(ctx, { action: { details: d } }) {
    const dry = ctx.dryRun !== 'none';
    if (!dry) await clusterSettled(ctx, d.aksId, d.cluster);
    ctx.progress(`updating managed cluster ${d.cluster}: ${[d.oidcIssuer ? 'OIDC issuer' : '', d.workloadIdentity ? 'workload identity' : ''].filter(Boolean).join(' and ')} on (a long-running operation)`);
    const after = await ctx.azure.updateWorkloadIdentitySettings(d.aksId, wanted(d));
    if (dry) return after.oidcIssuer?.issuerUrl ? { issuerUrl: after.oidcIssuer.issuerUrl } : {};
    if (d.workloadIdentity || after.workloadIdentityEnabled) {
      ctx.progress('waiting for the workload identity webhook');
      await webhookReady(ctx);
    }
    return after.oidcIssuer?.issuerUrl ? { issuerUrl: after.oidcIssuer.issuerUrl } : {};
  },
  async reconcile(ctx, { action: { details: d } }) {
    const c = await clusterSettled(ctx, d.aksId, d.cluster);
    if (!inEffect(c, d)) return { applied: false, reason: `managed cluster ${d.cluster}: OIDC issuer ${settingsOf(c).oidcIssuerEnabled ? 'on' : 'off'}, workload identity ${settingsOf(c).workloadIdentityEnabled ? 'on' : 'off'}` };
    if (c.workloadIdentityEnabled) await webhookReady(ctx);
    return { applied: true, result: c.oidcIssuer?.issuerUrl ? { issuerUrl: c.oidcIssuer.issuerUrl } : {} };
  },
  async undo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (!pre) return `managed cluster ${d.cluster}: no pre-state recorded, nothing to undo`;
    const c = await clusterSettled(ctx, d.aksId, d.cluster);
    const lines: string[] = [];
    if (!pre.workloadIdentityEnabled && c.workloadIdentityEnabled) {
      ctx.progress(`updating managed cluster ${d.cluster}: workload identity off`);
      await ctx.azure.updateWorkloadIdentitySettings(d.aksId, { workloadIdentityEnabled: false });
      lines.push('workload identity turned off');
    } else {
      lines.push(`workload identity left ${c.workloadIdentityEnabled ? 'on' : 'off'}${pre.workloadIdentityEnabled ? ' (it was on before)' : ''}`);
    }
    if (!pre.oidcIssuerEnabled && settingsOf(c).oidcIssuerEnabled) lines.push('OIDC issuer stays on (AKS cannot turn it off once enabled; no credential trusts it any more)');
    return `managed cluster ${d.cluster}: ${lines.join(', ')}`;
  },
  async verifyUndo(ctx, { action: { details: d }, firstPreState: pre }) {
    if (!pre) return { ok: true, evidence: [`managed cluster ${d.cluster}: nothing recorded`], failures: [] };
    const c = await clusterSettled(ctx, d.aksId, d.cluster);
    const now = settingsOf(c);
    if (now.workloadIdentityEnabled !== pre.workloadIdentityEnabled) return { ok: false, evidence: [], failures: [`managed cluster ${d.cluster}: workload identity is ${now.workloadIdentityEnabled ? 'on' : 'off'}, was ${pre.workloadIdentityEnabled ? 'on' : 'off'}`] };
    return { ok: true, evidence: [`managed cluster ${d.cluster}: workload identity ${now.workloadIdentityEnabled ? 'on' : 'off'} as before${!pre.oidcIssuerEnabled && now.oidcIssuerEnabled ? '; OIDC issuer on (cannot be turned off)' : ''}`], failures: [] };
  },
};
