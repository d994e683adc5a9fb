/**
 * The whole sandbox, driven over HTTPS by the real clients a migration uses: client-node, the
 * Azure compute/MSI/AKS SDKs and stock kubectl. No SDK is mocked.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, until, type SandboxHarness } from '../helpers/sandbox.ts';

const POD_ID = { group: 'aadpodidentity.k8s.io', version: 'v1' };

function probePod(name: string, namespace: string, nodeName: string, binding: string | undefined, script: string) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { ...(binding ? { aadpodidbinding: binding } : {}), 'podid-migrate.io/probe': 'true' } },
    spec: {
      nodeName,
      restartPolicy: 'Never',
      containers: [{ name: 'probe', image: 'curlimages/curl:8.11.1', command: ['sh', '-c', script] }],
    },
  };
}

describe('sandbox: default scenario over the wire', () => {
  let h: SandboxHarness;
  beforeAll(async () => {
    h = await startSandbox({ timeScale: 20 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('is an AKS cluster in standard mode: nodes on VMSS, MIC assignments, identities on the scale sets', async () => {
    const nodes = (await h.core.listNode()).items;
    expect(nodes).toHaveLength(13);
    for (const n of nodes) expect(n.spec?.providerID).toMatch(/^azure:\/\/\/subscriptions\/[^/]+\/resourceGroups\/mc_prod_prod-weu_westeurope\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/aks-[a-z]+-\d{8}-vmss\/virtualMachines\/\d+$/);

    const aai = (await h.custom.listClusterCustomObject({ ...POD_ID, plural: 'azureassignedidentities' })) as { items: any[] };
    const assigned = aai.items.filter((a) => a.status?.status === 'Assigned');
    // One per service pod (22 replicas in 12 Deployments), plus whatever batch churn runs now.
    expect(assigned.filter((a) => !String(a.spec.pod).startsWith('churn-')).length).toBe(22);
    for (const a of assigned) expect(a.metadata.finalizers).toContain('azureassignedidentity.finalizers.aadpodidentity.k8s.io');

    const mc = await h.arm.aks.managedClusters.get('prod', 'prod-weu');
    expect(mc.nodeResourceGroup).toBe('MC_prod_prod-weu_westeurope');
    expect(mc.agentPoolProfiles?.map((p) => p.name).sort()).toEqual(['batch', 'pay', 'platform', 'reports', 'system']);
    const kubeletId = mc.identityProfile?.kubeletidentity?.resourceId;
    expect(kubeletId).toMatch(/userAssignedIdentities\/prod-weu-agentpool$/);

    const sets = [];
    for await (const s of h.arm.compute.virtualMachineScaleSets.list('MC_prod_prod-weu_westeurope')) sets.push(s);
    expect(sets.map((s) => s.tags?.['aks-managed-poolName']).sort()).toEqual(['batch', 'pay', 'platform', 'reports', 'system']);
    const pay = sets.find((s) => s.tags?.['aks-managed-poolName'] === 'pay')!;
    const ids = Object.keys(pay.identity?.userAssignedIdentities ?? {}).map((k) => k.split('/').pop()!.toLowerCase()).sort();
    // MIC put the pool's identities there; the kubelet identity was there from the start.
    expect(ids).toEqual(['api-id', 'checkout-id', 'prod-weu-agentpool']);
    const vms = [];
    for await (const vm of h.arm.compute.virtualMachineScaleSetVMs.list('MC_prod_prod-weu_westeurope', pay.name!)) vms.push(vm);
    expect(vms).toHaveLength(3);
    expect(vms.every((vm) => vm.latestModelApplied === true)).toBe(true);

    const api = await h.arm.msi.userAssignedIdentities.get('identities', 'api-id');
    expect(api.clientId).toBe(h.sb.scenario.identities.find((i) => i.name === 'api-id')!.clientId);
  });

  it('answers NMI health through the API server pod proxy with the body Active', async () => {
    const nmi = (await h.core.listNamespacedPod({ namespace: 'default', labelSelector: 'component=nmi' })).items;
    expect(nmi).toHaveLength(13);
    const body = await h.core.connectGetNamespacedPodProxyWithPath({ name: `${nmi[0].metadata!.name}:8085`, namespace: 'default', path: 'healthz' });
    expect(String(body)).toBe('Active');
  });

  it('hands a probe pod a token for its binding identity (claims checked, token never printed)', async () => {
    const node = (await h.core.listNode({ labelSelector: 'kubernetes.azure.com/agentpool=pay' })).items[0].metadata!.name!;
    const url = 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net';
    await h.core.createNamespacedPod({ namespace: 'payments', body: probePod('token-probe', 'payments', node, 'api', `curl -sS -H Metadata:true "${url}"`) as any });
    const pod = await until('the probe pod to finish', async () => {
      const p = await h.core.readNamespacedPod({ name: 'token-probe', namespace: 'payments' });
      return ['Succeeded', 'Failed'].includes(p.status?.phase ?? '') ? p : undefined;
    });
    expect(pod.status?.phase).toBe('Succeeded');
    const log = await h.core.readNamespacedPodLog({ name: 'token-probe', namespace: 'payments' });
    const claims = decodeJwt(JSON.parse(log).access_token);
    const api = h.sb.scenario.identities.find((i) => i.name === 'api-id')!;
    expect(String(claims.xms_mirid).toLowerCase()).toBe(`/subscriptions/${h.sb.scenario.subscriptionId}/resourcegroups/identities/providers/microsoft.managedidentity/userassignedidentities/api-id`);
    expect(claims.appid).toBe(api.clientId);
    expect(claims.oid).toBe(api.principalId);
    expect(claims.aud).toBe('https://vault.azure.net');
    await h.core.deleteNamespacedPod({ name: 'token-probe', namespace: 'payments', gracePeriodSeconds: 0 });
  });

  it('reaches a workload through its Service name from a pod', async () => {
    const node = (await h.core.listNode({ labelSelector: 'kubernetes.azure.com/agentpool=pay' })).items[1].metadata!.name!;
    await h.core.createNamespacedPod({ namespace: 'payments', body: probePod('http-probe', 'payments', node, undefined, "curl -s -o /dev/null -w '%{http_code}' http://api.payments.svc/healthz") as any });
    await until('the http probe to succeed', async () => (await h.core.readNamespacedPod({ name: 'http-probe', namespace: 'payments' })).status?.phase === 'Succeeded');
    expect(await h.core.readNamespacedPodLog({ name: 'http-probe', namespace: 'payments' })).toBe('200\n');
  });

  it('works with stock kubectl: get, describe, create, scale, patch, cordon and drain', async () => {
    expect(await h.kubectl(['get', 'nodes'])).toMatch(/aks-system-\d{8}-vmss000000\s+Ready/);
    expect(await h.kubectl(['get', 'azureidentities', '-A'])).toMatch(/shared-storage-id/);
    expect(await h.kubectl(['describe', 'daemonset', 'nmi'])).toMatch(/--operation-mode|--node=\$\(NODE_NAME\)/);
    const manifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: smoke, namespace: platform}
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke}}
  template:
    metadata: {labels: {app: smoke}}
    spec:
      nodeSelector: {kubernetes.azure.com/agentpool: platform}
      containers: [{name: smoke, image: nginx:1.27, ports: [{containerPort: 80}]}]
`;
    const { writeFileSync } = await import('node:fs');
    const file = `${h.files.dir}/smoke.yaml`;
    writeFileSync(file, manifest);
    expect(await h.kubectl(['create', '-f', file])).toMatch(/deployment.apps\/smoke created/);
    expect(await h.kubectl(['scale', '-n', 'platform', 'deployment/smoke', '--replicas=3'])).toMatch(/scaled/);
    await until('smoke to have 3 ready replicas', async () => (await h.apps.readNamespacedDeployment({ name: 'smoke', namespace: 'platform' })).status?.readyReplicas === 3);
    await h.kubectl(['patch', '-n', 'platform', 'deployment/smoke', '-p', '{"spec":{"template":{"metadata":{"labels":{"tier":"web"}}}}}']);
    await until('the rollout of the patched template', async () => {
      const d = await h.apps.readNamespacedDeployment({ name: 'smoke', namespace: 'platform' });
      return d.status?.observedGeneration === d.metadata?.generation && d.status?.updatedReplicas === 3 && d.status?.availableReplicas === 3;
    });
    const node = (await h.core.listNode({ labelSelector: 'kubernetes.azure.com/agentpool=platform' })).items[0].metadata!.name!;
    expect(await h.kubectl(['cordon', node])).toMatch(/cordoned/);
    expect((await h.core.readNode({ name: node })).spec?.unschedulable).toBe(true);
    const out = await h.kubectl(['drain', node, '--ignore-daemonsets', '--delete-emptydir-data', '--timeout=60s'], { timeoutMs: 90_000 });
    expect(out).toMatch(/drained/);
    const left = (await h.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${node}` })).items.filter((p) => !p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet'));
    expect(left).toEqual([]);
    expect(await h.kubectl(['uncordon', node])).toMatch(/uncordoned/);
  });
});
