/**
 * Upstream's documented migration, `docs/Configure/standard_to_managed_mode.md` of
 * Azure/aad-pod-identity, performed exactly as an operator following it would, through the
 * project's gateways (so the same clients, retries and call counters as the runbook):
 *
 * 1. Assign the pod identities to the VMSS: `az vmss identity assign -g <rg> -n <vmss>
 *    --identities <id>`, one command (one GET + one PATCH) per identity per scale set, every
 *    user-assigned `AzureIdentity` on every scale set of the cluster, no `manualupgrade`.
 * 2. Delete the MIC Deployment and the NMI DaemonSet (`kubectl delete deploy|daemonset`), then
 *    MIC's ServiceAccount, ClusterRole and ClusterRoleBinding.
 * 3. Delete the `AzureAssignedIdentity` CRD, after clearing the finalizers MIC can no longer
 *    clear (the troubleshooting guide's `kubectl patch ... finalizers: null`).
 * 4. Install managed mode from the upstream manifest (`kubectl apply -f
 *    managed-mode-deployment.yaml`: objects that exist are patched, the others created), and
 *    wait until the new NMI DaemonSet is rolled out and every NMI pod's `/healthz` body reads
 *    `Active`.
 *
 * It exists to measure what the documented procedure costs (DOMAIN.md section 6), side by side
 * with the runbook on the same simulated cluster; it keeps no journal and has no rollback.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import type { AzureGateway } from '../azure/gateway.ts';
import { KINDS, type CallCounts, type KubeGateway, type KubeObject, type ResourceRef } from '../kube/gateway.ts';
import { isNotFound } from '../kube/errors.ts';

/** The upstream managed-mode manifest bundled with the sandbox (byte-for-byte copy of `deploy/infra/managed-mode-deployment.yaml`, v1.8.17). */
export const UPSTREAM_MANAGED_MANIFEST = join(dirname(fileURLToPath(import.meta.url)), '..', 'sandbox', 'manifests', 'managed-v1.8.17.yaml');

/** The CRD upstream says to delete. */
export const ASSIGNED_IDENTITY_CRD = 'azureassignedidentities.aadpodidentity.k8s.io';

/** MIC's RBAC objects as the raw manifest names them (the doc's `kubectl delete sa|clusterrole|clusterrolebinding`). */
const MIC_SERVICE_ACCOUNT = 'aad-pod-id-mic-service-account';
const MIC_CLUSTER_ROLE = 'aad-pod-id-mic-role';
const MIC_CLUSTER_ROLE_BINDING = 'aad-pod-id-mic-binding';

/** NMI's health probe port (`--http-probe-port=8085` in every upstream manifest). */
const NMI_PROBE_PORT = 8085;

/** Ids of the procedure's phases, in the doc's order. */
export const UPSTREAM_PHASES = ['assign-identities', 'delete-mic-nmi', 'delete-assigned-identity-crd', 'install-managed-nmi'] as const;
export type UpstreamPhaseId = (typeof UPSTREAM_PHASES)[number];

/** What one phase did and cost. */
export interface UpstreamPhaseResult {
  id: UpstreamPhaseId;
  title: string;
  state: 'done' | 'failed';
  summary: string;
  /** Real time, ms. */
  durationMs: number;
  kubeCalls: number;
  armCalls: number;
  armWrites: number;
}

/** Options of {@link runUpstreamProcedure}. */
export interface UpstreamProcedureOptions {
  kube: KubeGateway;
  azure: AzureGateway;
  /** The AKS cluster's resource id (its node resource group holds the scale sets). */
  aksId: string;
  /** The managed-mode manifest's objects; default {@link UPSTREAM_MANAGED_MANIFEST}. */
  manifest?: KubeObject[];
  /**
   * Real ms to wait between two of the doc's steps, as an operator reading it would (default 0:
   * the commands run back to back, the shortest gap the procedure can have).
   */
  pauseBetweenPhasesMs?: number;
  /** How long the new NMI may take to be Active everywhere (real ms, default 10 min). */
  nmiTimeoutMs?: number;
  signal?: AbortSignal;
  progress?: (message: string) => void;
  /** Called as each phase starts and ends (the demo's progress view). */
  onPhase?: (event: { id: UpstreamPhaseId; title: string; result?: UpstreamPhaseResult }) => void;
}

/** What {@link runUpstreamProcedure} returns. */
export interface UpstreamProcedureResult {
  phases: UpstreamPhaseResult[];
  /** Set when a phase failed (the later phases did not run). */
  error?: Error;
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Parses a multi-document manifest, skipping empty documents. */
export function parseManifestText(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as unknown)
    .filter((o): o is KubeObject => !!o && typeof o === 'object' && 'kind' in (o as object));
}

/** The bundled upstream managed-mode manifest. */
export function upstreamManagedManifest(): KubeObject[] {
  return parseManifestText(readFileSync(UPSTREAM_MANAGED_MANIFEST, 'utf8'));
}

/** Writes among calls: Kubernetes verbs and ARM methods that change something. */
export function writesBetween(after: CallCounts, before: CallCounts): number {
  let writes = 0;
  for (const [k, n] of Object.entries(after.byKey)) {
    const d = n - (before.byKey[k] ?? 0);
    if (d > 0 && /^(PATCH|PUT|POST|DELETE|create|update|patch|delete|deletecollection)\b/i.test(k)) writes += d;
  }
  return writes;
}

function containerImages(obj: KubeObject): string[] {
  const spec = (obj.spec as { template?: { spec?: { containers?: { image?: string }[] } } } | undefined)?.template?.spec;
  return (spec?.containers ?? []).map((c) => String(c.image ?? ''));
}

/** The Pod Identity component an object runs, from its images (raw and Helm installs name them differently). */
function runs(obj: KubeObject, component: 'mic' | 'nmi'): boolean {
  return containerImages(obj).some((i) => new RegExp(`/aad-pod-identity/${component}:`).test(i));
}

function refOf(obj: KubeObject): ResourceRef {
  return { apiVersion: obj.apiVersion!, kind: obj.kind! };
}

function describe(obj: KubeObject): string {
  return `${obj.kind?.toLowerCase()} ${obj.metadata?.namespace ? `${obj.metadata.namespace}/` : ''}${obj.metadata?.name}`;
}

/**
 * Runs the documented procedure. Resolves with every phase's result; a failing phase ends the
 * run with `error` set (as an operator stops at the first command that fails).
 */
export async function runUpstreamProcedure(opts: UpstreamProcedureOptions): Promise<UpstreamProcedureResult> {
  const { kube, azure } = opts;
  const say = opts.progress ?? (() => {});
  const phases: UpstreamPhaseResult[] = [];
  const phase = async (id: UpstreamPhaseId, title: string, body: () => Promise<string>): Promise<boolean> => {
    if (phases.length && opts.pauseBetweenPhasesMs) {
      say(`pausing ${(opts.pauseBetweenPhasesMs / 1000).toFixed(1)} s before the next step of the doc`);
      await pause(opts.pauseBetweenPhasesMs, opts.signal);
    }
    opts.onPhase?.({ id, title });
    const k0 = kube.calls();
    const a0 = azure.calls();
    const t0 = Date.now();
    let state: 'done' | 'failed' = 'done';
    let summary: string;
    let error: Error | undefined;
    try {
      summary = await body();
    } catch (e) {
      state = 'failed';
      error = e instanceof Error ? e : new Error(String(e));
      summary = error.message;
    }
    const k1 = kube.calls();
    const a1 = azure.calls();
    const result: UpstreamPhaseResult = { id, title, state, summary, durationMs: Date.now() - t0, kubeCalls: k1.total - k0.total, armCalls: a1.total - a0.total, armWrites: writesBetween(a1, a0) };
    phases.push(result);
    opts.onPhase?.({ id, title, result });
    if (error) throw error;
    return true;
  };

  try {
    await phase('assign-identities', 'Assign the pod identities to the VMSS (az vmss identity assign)', async () => {
      const cluster = await azure.getManagedCluster(opts.aksId);
      const scaleSets = (await azure.listScaleSets(cluster.nodeResourceGroup)).sort((a, b) => a.name.localeCompare(b.name));
      const identities = await kube.list(KINDS.AzureIdentity);
      const ids = [
        ...new Set(
          identities
            .filter((i) => Number((i.spec as { type?: number } | undefined)?.type ?? 0) === 0)
            .map((i) => String((i.spec as { resourceID?: string } | undefined)?.resourceID ?? ''))
            .filter(Boolean),
        ),
      ].sort();
      let added = 0;
      let patches = 0;
      for (const vmss of scaleSets) {
        for (const id of ids) {
          opts.signal?.throwIfAborted();
          say(`az vmss identity assign -g ${cluster.nodeResourceGroup} -n ${vmss.name} --identities ${id.split('/').pop()}`);
          // One command per identity, as the doc shows it: each is a GET and a PATCH of the scale set.
          const r = await azure.assignIdentities(cluster.nodeResourceGroup, vmss.name, [id]);
          added += r.added.length;
          patches += r.patches;
        }
      }
      return `${ids.length} identit${ids.length === 1 ? 'y' : 'ies'} on ${scaleSets.length} scale sets: ${added} added in ${patches} PATCH${patches === 1 ? '' : 'es'}`;
    });

    await phase('delete-mic-nmi', 'Delete the MIC Deployment, the NMI DaemonSet and MIC\'s RBAC', async () => {
      const mics = (await kube.list(KINDS.Deployment)).filter((d) => runs(d, 'mic'));
      const nmis = (await kube.list(KINDS.DaemonSet)).filter((d) => runs(d, 'nmi'));
      if (!nmis.length) throw new Error('no NMI DaemonSet found (no DaemonSet runs an .../aad-pod-identity/nmi image)');
      const deleted: string[] = [];
      for (const obj of [...mics, ...nmis]) {
        say(`kubectl delete ${obj.kind === 'Deployment' ? 'deploy' : 'daemonset'} ${obj.metadata!.name} -n ${obj.metadata!.namespace}`);
        // kubectl's default: background propagation, the pods go after the owner.
        await kube.delete(refOf(obj), obj.metadata!.namespace, obj.metadata!.name!, { propagationPolicy: 'Background' });
        deleted.push(describe(obj));
      }
      const micNamespaces = [...new Set(mics.map((m) => m.metadata!.namespace!))];
      for (const ns of micNamespaces) {
        say(`kubectl delete sa ${MIC_SERVICE_ACCOUNT} -n ${ns}`);
        if ((await kube.delete(KINDS.ServiceAccount, ns, MIC_SERVICE_ACCOUNT)) === 'deleted') deleted.push(`serviceaccount ${ns}/${MIC_SERVICE_ACCOUNT}`);
      }
      say(`kubectl delete clusterrole ${MIC_CLUSTER_ROLE}; kubectl delete clusterrolebinding ${MIC_CLUSTER_ROLE_BINDING}`);
      if ((await kube.delete(KINDS.ClusterRole, undefined, MIC_CLUSTER_ROLE)) === 'deleted') deleted.push(`clusterrole ${MIC_CLUSTER_ROLE}`);
      if ((await kube.delete(KINDS.ClusterRoleBinding, undefined, MIC_CLUSTER_ROLE_BINDING)) === 'deleted') deleted.push(`clusterrolebinding ${MIC_CLUSTER_ROLE_BINDING}`);
      return `deleted ${deleted.join(', ')}`;
    });

    await phase('delete-assigned-identity-crd', 'Delete the AzureAssignedIdentity CRD', async () => {
      const assigned = await kube.list(KINDS.AzureAssignedIdentity);
      say(`clearing the finalizers of ${assigned.length} AzureAssignedIdentit${assigned.length === 1 ? 'y' : 'ies'} (MIC is gone and cannot)`);
      for (const a of assigned) {
        if (a.metadata?.finalizers?.length) {
          await kube.patch(KINDS.AzureAssignedIdentity, a.metadata.namespace, a.metadata.name!, { metadata: { finalizers: null } }, 'merge').catch((e: unknown) => {
            // Already gone: nothing to clear.
            if (!isNotFound(e)) throw e;
          });
        }
      }
      say(`kubectl delete crd ${ASSIGNED_IDENTITY_CRD}`);
      await kube.delete(KINDS.CustomResourceDefinition, undefined, ASSIGNED_IDENTITY_CRD);
      await kube.waitFor(async (note) => {
        const crd = await kube.get(KINDS.CustomResourceDefinition, undefined, ASSIGNED_IDENTITY_CRD);
        if (crd) note('CRD still terminating');
        return !crd;
      }, { describe: `CRD ${ASSIGNED_IDENTITY_CRD} to be deleted`, timeoutMs: 120_000, intervalMs: 200, signal: opts.signal });
      return `deleted CRD ${ASSIGNED_IDENTITY_CRD} and its ${assigned.length} object${assigned.length === 1 ? '' : 's'}`;
    });

    await phase('install-managed-nmi', 'Install AAD Pod Identity in managed mode (upstream manifest) and wait for NMI', async () => {
      const manifest = opts.manifest ?? upstreamManagedManifest();
      const created: string[] = [];
      const patched: string[] = [];
      say(`kubectl apply -f managed-mode-deployment.yaml (${manifest.length} objects)`);
      for (const obj of manifest) {
        const live = await kube.get(refOf(obj), obj.metadata?.namespace, obj.metadata!.name!);
        if (live) {
          // kubectl apply of an object it did not create: the manifest's fields win.
          const { status: _status, ...body } = obj as KubeObject & { status?: unknown };
          await kube.patch(refOf(obj), obj.metadata?.namespace, obj.metadata!.name!, body, 'merge');
          patched.push(describe(obj));
        } else {
          await kube.create(structuredClone(obj));
          created.push(describe(obj));
        }
      }
      const ds = manifest.find((o) => o.kind === 'DaemonSet' && runs(o, 'nmi'));
      if (!ds) throw new Error('the managed-mode manifest holds no NMI DaemonSet');
      const ns = ds.metadata!.namespace ?? 'default';
      const name = ds.metadata!.name!;
      say(`waiting for daemonset ${ns}/${name} to roll out and every NMI to report Active`);
      const active = await kube.waitFor(
        async (note) => {
          const live = await kube.get(KINDS.DaemonSet, ns, name);
          const st = (live?.status ?? {}) as { desiredNumberScheduled?: number; numberReady?: number; updatedNumberScheduled?: number; observedGeneration?: number };
          if (!live || !st.desiredNumberScheduled || (st.observedGeneration ?? 0) < (live.metadata?.generation ?? 1)) {
            note('not observed yet');
            return false;
          }
          if ((st.numberReady ?? 0) < st.desiredNumberScheduled || (st.updatedNumberScheduled ?? 0) < st.desiredNumberScheduled) {
            note(`${st.numberReady ?? 0}/${st.desiredNumberScheduled} ready`);
            return false;
          }
          const selector = (live.spec as { selector?: { matchLabels?: Record<string, string> } }).selector?.matchLabels ?? {};
          const labelSelector = Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(',');
          const pods = (await kube.list(KINDS.Pod, { namespace: ns, labelSelector })).filter((p) => !p.metadata?.deletionTimestamp && (p.status as { phase?: string } | undefined)?.phase === 'Running');
          // The probe answers 200 either way: only the body tells whether the iptables chain is in place.
          const bodies = await Promise.all(pods.map((p) => kube.proxyGet(ns, p.metadata!.name!, NMI_PROBE_PORT, 'healthz').then((r) => r.body.trim(), () => '')));
          const notActive = bodies.filter((b) => b !== 'Active').length;
          note(`${pods.length - notActive}/${st.desiredNumberScheduled} NMI pods Active`);
          return pods.length >= st.desiredNumberScheduled && notActive === 0 ? pods.length : false;
        },
        { describe: `daemonset ${ns}/${name} rolled out with every NMI Active`, timeoutMs: opts.nmiTimeoutMs ?? 10 * 60_000, intervalMs: 300, signal: opts.signal },
      );
      return `created ${created.length} object(s), updated ${patched.length} (${patched.join(', ')}); ${active} NMI pods Active in managed mode`;
    });
  } catch (e) {
    return { phases, error: e instanceof Error ? e : new Error(String(e)) };
  }
  return { phases };
}
