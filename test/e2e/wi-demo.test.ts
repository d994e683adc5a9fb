/**
 * `podid-migrate --runbook workload-identity demo --uninstall-pod-identity` through the real
 * entry point on the default scenario (batch churn on): standard -> managed mode -> workload
 * identity, back to back on one sandbox, kept running (`--keep`) so the end state can be read
 * with the real clients afterwards. Done when (issue 13): every service's token case passed
 * through workload identity, no running pod or template carries `aadpodidbinding`, no Pod
 * Identity object, CRD, NMI or MIC is left, every scale set is back to its identities from
 * before the migration (kubelet, add-ons), and the outage meter saw no failing pod-second other
 * than inside NMI's own restarts during the managed-mode rollout.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { createAzureGateway, resolveAzureConnection } from '../../src/azure/index.ts';
import { createKubeGateway } from '../../src/kube/index.ts';
import { KINDS } from '../../src/kube/kinds.ts';
import { findPodIdentityLive } from '../../src/steps/lib/inventory-source.ts';
import { expectValidDocument } from '../helpers/schemas.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'podid-migrate');

/** `export NAME='value'` lines of a sandbox env file. */
function readEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(line);
    if (m) out[m[1]] = m[2].replace(/'\\''/g, "'");
  }
  return out;
}

interface Doc {
  runbook?: string;
  from?: string;
  uninstallPodIdentity?: boolean;
  envFile?: string;
  steps: { id: string; state: string; checks: string[] }[];
  outage: { failingPodSeconds: number; windows: { cause: string; pod: string; seconds: number }[] };
}

describe('demo --runbook workload-identity --uninstall-pod-identity', () => {
  it('ends with every token through workload identity, no Pod Identity left, scale sets as before the migration, and no outage outside NMI restarts', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'podid-wi-demo-'));
    const dir = join(cwd, 'demo');
    const run = await execa(process.execPath, [BIN, '--runbook', 'workload-identity', 'demo', '--uninstall-pod-identity', '--keep', '--dir', dir, '-o', 'json', '--time-scale', '25'], { cwd, env: { CI: 'true' }, reject: false, timeout: 600_000 });
    try {
      expect(run.exitCode, String(run.stderr).slice(-4000)).toBe(0);
      const doc = JSON.parse(String(run.stdout)) as Doc;
      expectValidDocument('demo', doc);
      expect(doc).toMatchObject({ runbook: 'workload-identity', from: 'managed', uninstallPodIdentity: true });
      expect(doc.steps.map((s) => [s.id, s.state])).toEqual(
        ['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup', 'wi-preflight', 'wi-enable', 'wi-federate', 'wi-serviceaccounts', 'wi-workloads', 'wi-test', 'wi-remove-pod-identity'].map((id) => [id, 'checked']),
      );
      // Every token case of the inventory (the churn's batch service included), through workload identity.
      const wiTest = doc.steps.find((s) => s.id === 'wi-test')!;
      expect(wiTest.checks.length).toBeGreaterThanOrEqual(13);
      for (const line of wiTest.checks) expect(line).toMatch(/workload identity token for .* as serviceaccount \S+: xms_mirid, appid, oid match/);

      // Outage: only NMI's own restart windows of the managed-mode rollout (and standard mode's usual wait for MIC).
      const other = doc.outage.windows.filter((w) => !w.cause.startsWith('nmi-restart') && w.cause !== 'waiting-for-mic-assignment');
      expect(other).toEqual([]);
      expect(doc.outage.windows.filter((w) => w.cause.startsWith('wi-'))).toEqual([]);

      // The end state, read with the real clients from the kept sandbox.
      const vars = readEnvFile(doc.envFile!);
      const kube = createKubeGateway({ kubeconfig: vars.KUBECONFIG });
      const azure = createAzureGateway({ subscriptionId: vars.AZURE_SUBSCRIPTION_ID, connection: resolveAzureConnection(vars) });
      const running = (await kube.list(KINDS.Pod, { labelSelector: 'aadpodidbinding' })).filter((p) => !p.metadata?.deletionTimestamp && !['Succeeded', 'Failed'].includes((p.status as { phase?: string }).phase ?? ''));
      expect(running.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`)).toEqual([]);
      const templates = (await kube.list(KINDS.Deployment)).filter((d) => 'aadpodidbinding' in ((d.spec as any).template?.metadata?.labels ?? {}));
      expect(templates.map((d) => d.metadata?.name)).toEqual([]);
      const crds = (await kube.list(KINDS.CustomResourceDefinition)).filter((c) => c.metadata?.name?.endsWith('.aadpodidentity.k8s.io'));
      expect(crds.map((c) => c.metadata?.name)).toEqual([]);
      expect(await findPodIdentityLive(kube)).toEqual({ nmi: undefined, mic: undefined });
      // Workload pods run with the webhook's env now.
      const api = (await kube.list(KINDS.Pod, { namespace: 'payments', labelSelector: 'app=api' })).filter((p) => !p.metadata?.deletionTimestamp);
      expect(api.length).toBeGreaterThan(0);
      for (const p of api) expect(((p.spec as any).containers[0].env ?? []).map((e: { name: string }) => e.name)).toEqual(expect.arrayContaining(['AZURE_CLIENT_ID', 'AZURE_FEDERATED_TOKEN_FILE']));

      // Scale sets: back to the kubelet identity and the add-on identity the scenario preassigned.
      const cluster = await azure.getManagedCluster(vars.PODID_MIGRATE_AKS_ID);
      const sets = await azure.listScaleSets(cluster.nodeResourceGroup);
      const kubelet = cluster.kubeletIdentity!.resourceId!.toLowerCase();
      for (const set of sets) {
        const ids = Object.keys(set.userAssignedIdentities).map((k) => k.split('/').pop()!.toLowerCase()).sort();
        const expected = [kubelet.split('/').pop()!, ...(set.tags?.['aks-managed-poolName'] === 'system' ? ['omsagent-prod-weu'] : [])].sort();
        expect(`${set.name}: ${ids.join(', ')}`).toBe(`${set.name}: ${expected.join(', ')}`);
      }
    } finally {
      await execa(process.execPath, [BIN, 'sandbox', 'down', '--dir', dir], { cwd, env: { CI: 'true' }, reject: false, timeout: 60_000 });
    }
  }, 660_000);
});
