/**
 * Shared parts of the workload identity runbook's end-to-end tests: its runner over a test
 * sandbox (its own journal beside the managed-mode one, the same inventory), a full dump that
 * adds what this runbook changes (service accounts and their annotations, every identity's
 * federated credentials, the workload identity flag of the cluster) to the crash matrix's dump,
 * and the scale sets' identities compared with their state before any migration.
 */
import { join } from 'node:path';
import type { AzureGateway } from '../../src/azure/gateway.ts';
import { Runner, type RunnerEvents } from '../../src/engine/runner.ts';
import type { KubeGateway } from '../../src/kube/gateway.ts';
import { EXECUTORS, stepsFor } from '../../src/steps/registry.ts';
import { DUMPED, normalised, type StateDump } from './crash-matrix-harness.ts';
import type { Env } from './steps-1-4-harness.ts';

/** Where the workload identity runbook's journal of a test env lives. */
export function wiJournalPath(env: Pick<Env, 'dir'>): string {
  return join(env.dir, 'journal.workload-identity.json');
}

/** The workload identity runbook's runner, as the CLI builds it (`--runbook workload-identity`). */
export function wiRunner(env: Env, options: Record<string, unknown> = {}, events?: RunnerEvents): Runner<KubeGateway, AzureGateway> {
  return new Runner<KubeGateway, AzureGateway>({
    runbook: 'workload-identity',
    steps: stepsFor('workload-identity'),
    executors: EXECUTORS,
    kube: env.kube,
    azure: env.azure,
    cluster: env.cluster,
    journalPath: wiJournalPath(env),
    inventoryPath: env.inventoryPath,
    options: { aksId: env.sandbox.aksResourceId, managedJournalPath: env.journalPath, ...options },
    stepTimeoutMs: 180_000,
    events,
  });
}

/** The CLI's view of the same env with the workload identity journal (for `spawnCli` / `runCli`). */
export function wiCliEnv(env: Env): Env {
  return { ...env, journalPath: wiJournalPath(env) };
}

/** Every identity of the scenario: its ARM id and name. */
export function scenarioIdentities(env: Env): { id: string; name: string }[] {
  return env.sandbox.scenario.identities.map((i) => ({ id: env.sandbox.arm.identity(i.name)!.id, name: i.name })).sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The crash matrix's full dump (Pod Identity objects and CRDs, workloads, service accounts with
 * their annotations, config maps, RBAC, every scale set's identities) plus every identity's
 * federated credentials (name, issuer, subject, audiences) and whether workload identity is on.
 */
export async function wiDump(env: Env): Promise<StateDump> {
  const out: StateDump = {};
  for (const ref of DUMPED) {
    // Pod Identity kinds are not served while their CRDs are uninstalled: none of them then.
    const items = await env.kube.list(ref).catch((e: { status?: number }) => {
      if (e.status === 404 && ref.apiVersion.startsWith('aadpodidentity.k8s.io/')) return [];
      throw e;
    });
    for (const o of items) out[`${ref.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`] = normalised(o);
  }
  const rg = (await env.azure.getManagedCluster(env.sandbox.aksResourceId)).nodeResourceGroup;
  for (const s of await env.azure.listScaleSets(rg)) out[`vmss/${s.name}`] = Object.keys(s.userAssignedIdentities).map((k) => k.toLowerCase()).sort();
  for (const i of scenarioIdentities(env)) {
    const creds = await env.azure.listFederatedCredentials(i.id);
    out[`fic/${i.name}`] = creds.map((c) => ({ name: c.name, issuer: c.issuer, subject: c.subject, audiences: [...c.audiences].sort() })).sort((a, b) => a.name.localeCompare(b.name));
  }
  const cluster = await env.azure.getManagedCluster(env.sandbox.aksResourceId);
  out['cluster/workloadIdentityEnabled'] = cluster.workloadIdentityEnabled ?? false;
  return out;
}

/** Each scale set's identities as they were before any migration: the kubelet identity and the pool's preassigned (add-on) identities. */
export async function preMigrationScaleSetIdentities(env: Env): Promise<Record<string, string[]>> {
  const cluster = await env.azure.getManagedCluster(env.sandbox.aksResourceId);
  const kubelet = cluster.kubeletIdentity?.resourceId?.toLowerCase();
  const out: Record<string, string[]> = {};
  for (const set of await env.azure.listScaleSets(cluster.nodeResourceGroup)) {
    const pool = set.tags?.['aks-managed-poolName'] ?? '';
    const pre = env.sandbox.scenario.pools.find((p) => p.name === pool)?.preassigned ?? [];
    out[set.name] = [kubelet!, ...pre.map((n) => env.sandbox.arm.identity(n)!.id.toLowerCase())].sort();
  }
  return out;
}

/** Each scale set's identities now (lower case, sorted). */
export async function scaleSetIdentities(env: Env): Promise<Record<string, string[]>> {
  const cluster = await env.azure.getManagedCluster(env.sandbox.aksResourceId);
  const out: Record<string, string[]> = {};
  for (const set of await env.azure.listScaleSets(cluster.nodeResourceGroup)) out[set.name] = Object.keys(set.userAssignedIdentities).map((k) => k.toLowerCase()).sort();
  return out;
}
