/**
 * Stock kubectl (v1.32) against the API server: reads, describe, creating the upstream
 * standard-mode manifest as-is, scale, JSON patch, cordon and drain.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { type Harness, FIXTURES, runningPod, startHarness, waitFor } from './harness.ts';

const KUBECTL = '/usr/bin/kubectl';
let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

async function kubectl(args: string[], opts: { input?: string; reject?: boolean; kubeconfig?: string } = {}) {
  return execa(KUBECTL, ['--kubeconfig', opts.kubeconfig ?? h.kubeconfigPath, '--cache-dir', join(h.dir, 'cache'), ...args], {
    input: opts.input,
    reject: opts.reject ?? true,
    env: { HOME: h.dir, KUBECONFIG: '' },
    extendEnv: false,
    timeout: 30_000,
  });
}

function node(name: string, ip: string) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.azure.com/agentpool': 'pool1' } },
    spec: { providerID: `azure:///subscriptions/s/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool1-1/virtualMachines/0` },
    status: {
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }],
      addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }],
      nodeInfo: { kubeletVersion: 'v1.32.4', osImage: 'Ubuntu 22.04.5 LTS', kernelVersion: '5.15.0-1079-azure', containerRuntimeVersion: 'containerd://1.7.27-1' },
    },
  };
}

describe('kubectl', () => {
  it('refuses without a token', async () => {
    const cfg = join(h.dir, 'no-token');
    const { writeFile, readFile } = await import('node:fs/promises');
    await writeFile(cfg, (await readFile(h.kubeconfigPath, 'utf8')).replace(/token: .*/, 'token: wrong'));
    const r = await kubectl(['get', 'pods'], { reject: false, kubeconfig: cfg });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('You must be logged in to the server');
  });

  it('gets nodes and pods as server-side tables and describes a pod', async () => {
    const nodes = h.store.typeOrThrow('', 'nodes');
    h.store.create(nodes, node('aks-pool1-12345-vmss000000', '10.240.0.4'));
    h.store.create(h.store.typeOrThrow('', 'pods'), runningPod('web-1', { node: 'aks-pool1-12345-vmss000000', ip: '10.244.0.10', labels: { app: 'web' } }));
    const n = await kubectl(['get', 'nodes']);
    expect(n.stdout).toMatch(/^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\n/);
    expect(n.stdout).toMatch(/aks-pool1-12345-vmss000000\s+Ready\s+<none>\s+\S+\s+v1\.32\.4/);
    const p = await kubectl(['get', 'pods', '-A', '-o', 'wide']);
    expect(p.stdout).toMatch(/NAMESPACE\s+NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE/);
    expect(p.stdout).toMatch(/default\s+web-1\s+1\/1\s+Running\s+0\s+\S+\s+10\.244\.0\.10\s+aks-pool1-12345-vmss000000/);
    const d = await kubectl(['describe', 'pod', 'web-1']);
    expect(d.stdout).toMatch(/Name:\s+web-1/);
    expect(d.stdout).toMatch(/Node:\s+aks-pool1-12345-vmss000000\//);
    expect(d.stdout).toMatch(/Status:\s+Running/);
    const sel = await kubectl(['get', 'pods', '-A', '--field-selector', 'spec.nodeName=aks-pool1-12345-vmss000000', '-o', 'name']);
    expect(sel.stdout.trim()).toBe('pod/web-1');
  });

  it('creates the upstream standard-mode manifest as-is, then scales MIC and patches NMI', async () => {
    const c = await kubectl(['create', '-f', `${FIXTURES}/deploy/infra/deployment-rbac.yaml`]);
    expect(c.stdout).toContain('customresourcedefinition.apiextensions.k8s.io/azureassignedidentities.aadpodidentity.k8s.io created');
    expect(c.stdout).toContain('daemonset.apps/nmi created');
    expect(c.stdout).toContain('deployment.apps/mic created');
    expect(c.stdout).toContain('clusterrolebinding.rbac.authorization.k8s.io/aad-pod-id-mic-binding created');
    // The CRDs registered their kinds: kubectl can list them right away.
    const aai = await kubectl(['get', 'azureassignedidentities', '-A']);
    expect(aai.stderr).toContain('No resources found');
    const s = await kubectl(['scale', 'deploy/mic', '--replicas=0']);
    expect(s.stdout.trim()).toBe('deployment.apps/mic scaled');
    expect(h.store.peek(h.store.typeOrThrow('apps', 'deployments'), 'default', 'mic')?.spec.replicas).toBe(0);
    const patch = JSON.stringify([{ op: 'add', path: '/spec/template/spec/containers/0/args/-', value: '--operation-mode=managed' }]);
    const p = await kubectl(['patch', 'ds', 'nmi', '--type=json', '-p', patch]);
    expect(p.stdout.trim()).toBe('daemonset.apps/nmi patched');
    const args = await kubectl(['get', 'ds', 'nmi', '-o', 'jsonpath={.spec.template.spec.containers[0].args}']);
    expect(JSON.parse(args.stdout)).toEqual(['--node=$(NODE_NAME)', '--http-probe-port=8085', '--enableScaleFeatures=true', '--metadata-header-required=true', '--operation-mode=managed']);
    const ds = await kubectl(['get', 'ds', 'nmi']);
    expect(ds.stdout).toMatch(/NAME\s+DESIRED\s+CURRENT\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+NODE SELECTOR\s+AGE/);
    // Client-side apply of an already-created object computes and sends a strategic merge patch.
    const a = await kubectl(['apply', '-f', `${FIXTURES}/deploy/infra/mic-exception.yaml`]);
    expect(a.stdout).toContain('azurepodidentityexception.aadpodidentity.k8s.io/mic-exception created');
    const again = await kubectl(['apply', '-f', `${FIXTURES}/deploy/infra/mic-exception.yaml`]);
    expect(again.stdout).toContain('mic-exception unchanged');
    expect(again.stderr).toBe('');
  });

  it('reads NMI health through the pod proxy and logs', async () => {
    h.store.create(h.store.typeOrThrow('', 'pods'), runningPod('nmi-x1y2z', { node: 'aks-pool1-12345-vmss000000', ip: '10.240.0.4', containers: ['nmi'] }));
    const stop = h.network.listen('10.240.0.4', 8085, () => ({ status: 200, body: 'Active' }));
    try {
      const r = await kubectl(['get', '--raw', '/api/v1/namespaces/default/pods/nmi-x1y2z:8085/proxy/healthz']);
      expect(r.stdout).toBe('Active');
    } finally {
      stop();
    }
    h.logs.append('default', 'nmi-x1y2z', 'nmi', 'I1123 10:00:00.000000       1 main.go:92] starting nmi process');
    const logs = await kubectl(['logs', 'nmi-x1y2z']);
    expect(logs.stdout).toContain('starting nmi process');
  });

  it('cordons and drains a node through evictions, ignoring DaemonSet pods', async () => {
    const { store } = h;
    const pods = store.typeOrThrow('', 'pods');
    const target = 'aks-pool1-12345-vmss000001';
    store.create(store.typeOrThrow('', 'nodes'), node(target, '10.240.0.5'));
    const nmi = store.peek(store.typeOrThrow('apps', 'daemonsets'), 'default', 'nmi')!;
    const rsOwner = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'api-5d8f7', uid: '0b7a3f8e-1111-4c3c-9d55-7b6b7c1d0001', controller: true, blockOwnerDeletion: true }];
    store.create(pods, runningPod('api-5d8f7-aaaaa', { node: target, labels: { app: 'api' }, ownerReferences: rsOwner, volumes: [{ name: 'scratch', emptyDir: {} }] }));
    store.create(pods, runningPod('api-5d8f7-bbbbb', { node: target, labels: { app: 'api' }, ownerReferences: rsOwner }));
    store.create(pods, runningPod('nmi-drain', { node: target, labels: { component: 'nmi' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'nmi', uid: nmi.metadata.uid!, controller: true }] }));
    store.create(store.typeOrThrow('policy', 'poddisruptionbudgets'), { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'api', namespace: 'default' }, spec: { maxUnavailable: 1, selector: { matchLabels: { app: 'api' } } } });
    store.mutate(store.typeOrThrow('policy', 'poddisruptionbudgets'), 'default', 'api', (p) => {
      p.status = { observedGeneration: 1, disruptionsAllowed: 2, currentHealthy: 2, desiredHealthy: 0, expectedPods: 2 };
    }, { subresource: 'status' });
    // Stand in for the kubelet: a pod marked for graceful deletion stops and is removed.
    const unsubscribe = store.subscribe((ev) => {
      if (ev.resourceType.resource === 'pods' && ev.type === 'MODIFIED' && ev.object.metadata.deletionTimestamp) {
        const { namespace, name } = ev.object.metadata;
        setImmediate(() => store.finalizeGraceful(pods, namespace, name!));
      }
    });
    try {
      const r = await kubectl(['drain', target, '--ignore-daemonsets', '--delete-emptydir-data', '--timeout=20s']);
      expect(r.stdout).toContain(`node/${target} cordoned`);
      expect(r.stdout).toContain('pod/api-5d8f7-aaaaa evicted');
      expect(r.stdout).toContain('pod/api-5d8f7-bbbbb evicted');
      expect(r.stdout).toContain(`node/${target} drained`);
      expect(r.stderr).toContain('ignoring DaemonSet-managed Pods: default/nmi-drain');
    } finally {
      unsubscribe();
    }
    expect(store.peek(store.typeOrThrow('', 'nodes'), undefined, target)?.spec.unschedulable).toBe(true);
    expect(store.peek(pods, 'default', 'api-5d8f7-aaaaa')).toBeUndefined();
    expect(store.peek(pods, 'default', 'nmi-drain')).toBeDefined();
    expect(h.metrics.count({ verb: 'create', resource: 'pods/eviction', status: 201 })).toBe(2);
  });

  it('reports the disruption budget when a drain is blocked by a PDB', async () => {
    const { store } = h;
    const target = 'aks-pool1-12345-vmss000002';
    store.create(store.typeOrThrow('', 'nodes'), node(target, '10.240.0.6'));
    const owner = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'db-7c9', uid: '0b7a3f8e-1111-4c3c-9d55-7b6b7c1d0002', controller: true }];
    store.create(store.typeOrThrow('', 'pods'), runningPod('db-7c9-aaaaa', { node: target, labels: { app: 'db' }, ownerReferences: owner }));
    const pdbType = store.typeOrThrow('policy', 'poddisruptionbudgets');
    store.create(pdbType, { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'db', namespace: 'default' }, spec: { minAvailable: 1, selector: { matchLabels: { app: 'db' } } } });
    store.mutate(pdbType, 'default', 'db', (p) => {
      p.status = { observedGeneration: 1, disruptionsAllowed: 0, currentHealthy: 1, desiredHealthy: 1, expectedPods: 1 };
    }, { subresource: 'status' });
    // kubectl retries a 429 every 5 s until its timeout; stop it once it has reported the budget.
    const child = execa(KUBECTL, ['--kubeconfig', h.kubeconfigPath, '--cache-dir', join(h.dir, 'cache'), 'drain', target, '--ignore-daemonsets', '--timeout=60s'], {
      reject: false,
      env: { HOME: h.dir },
      extendEnv: false,
      timeout: 30_000,
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(() => stderr.includes('will retry after 5s'), 'kubectl to report the blocked eviction', 20_000);
    child.kill();
    await child;
    expect(stderr).toContain("Cannot evict pod as it would violate the pod's disruption budget.");
    expect(store.peek(store.typeOrThrow('', 'pods'), 'default', 'db-7c9-aaaaa')?.metadata.deletionTimestamp).toBeUndefined();
    expect(h.metrics.count({ verb: 'create', resource: 'pods/eviction', status: 429 })).toBeGreaterThanOrEqual(1);
  });
});
