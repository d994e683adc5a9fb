import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SCENARIO_PATH, loadScenarioFile, parseScenario, ScenarioError, stableGuid } from '../../src/sandbox/scenario.ts';
import { identityObjects, podIdentityObjects, workloadObjects } from '../../src/sandbox/install.ts';

const MINIMAL = `
apiVersion: podid-migrate.io/v1
kind: SandboxScenario
name: tiny
cluster: { name: c1, resourceGroup: rg1 }
pools: [{ name: system, count: 1 }]
identities: [{ name: app-id, namespace: apps, selector: app }]
workloads: [{ name: app, namespace: apps, pool: system, binding: app }]
`;

function problemsOf(text: string): string[] {
  try {
    parseScenario(text, 'bad.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    return (e as ScenarioError).problems;
  }
  throw new Error('expected a ScenarioError');
}

describe('scenario files', () => {
  it('loads the default scenario with the first seed shape', () => {
    const s = loadScenarioFile(DEFAULT_SCENARIO_PATH);
    expect(s.identities).toHaveLength(8);
    expect(s.workloads).toHaveLength(12);
    expect(s.pools).toHaveLength(5);
    expect(s.namespaces.sort()).toEqual(['batch', 'payments', 'platform', 'reporting']);
    expect(s.churn.length).toBeGreaterThan(0);
    expect(s.cluster.nodeResourceGroup).toBe('MC_prod_prod-weu_westeurope');
  });

  it('fills defaults and derives stable ids from names', () => {
    const a = parseScenario(MINIMAL);
    const b = parseScenario(MINIMAL);
    expect(a.identities[0].clientId).toBe(b.identities[0].clientId);
    expect(a.identities[0].clientId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a.podIdentity).toMatchObject({ install: 'raw', version: 'v1.8.17', namespace: 'default', micReplicas: 2 });
    expect(a.timeScale).toBe(10);
    expect(stableGuid('x')).not.toBe(stableGuid('y'));
  });

  it('names every bad field at once, never a stack trace', () => {
    const problems = problemsOf(`
apiVersion: podid-migrate.io/v1
kind: SandboxScenario
name: Bad_Name
cluster: { name: c1 }
pools: [{ name: system, count: 0 }, { name: Pay, count: "three" }]
identities: [{ name: a, type: 7 }]
color: blue
`);
    expect(problems).toEqual(
      expect.arrayContaining([
        'color: unknown field; remove it or check its spelling',
        'cluster.resourceGroup: required field is missing',
        'pools[0].count: must be >= 1 (got 0)',
        'pools[1].count: must be integer (got "three")',
        'identities[0].type: must be one of 0, 1, 2 (got 7)',
      ]),
    );
    expect(problems.some((p) => p.startsWith('name:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('pools[1].name:'))).toBe(true);
  });

  it('checks references between sections', () => {
    const problems = problemsOf(MINIMAL.replace('pool: system, binding: app', 'pool: gpu, binding: nope'));
    expect(problems).toEqual([
      'workloads[0].pool: no pool named "gpu" (pools: system)',
      'workloads[0].binding: no identity declares selector "nope"',
    ]);
  });

  it('reports YAML syntax errors with their position, and missing files', () => {
    expect(problemsOf('name: [unclosed')[0]).toMatch(/^YAML syntax error at line 1/);
    expect(problemsOf('- just\n- a list')[0]).toMatch(/must hold a YAML mapping/);
    const dir = mkdtempSync(join(tmpdir(), 'scn-'));
    expect(() => loadScenarioFile(join(dir, 'missing.yaml'))).toThrow(/file not found; pass an existing file to --scenario/);
    writeFileSync(join(dir, 'ok.yaml'), MINIMAL);
    expect(loadScenarioFile(join(dir, 'ok.yaml')).name).toBe('tiny');
  });
});

describe('initial objects', () => {
  it('installs Pod Identity from the upstream raw manifest as-is', () => {
    const s = parseScenario(MINIMAL);
    const objs = podIdentityObjects(s);
    const nmi = objs.find((o) => o.kind === 'DaemonSet')!;
    expect(nmi.metadata).toMatchObject({ name: 'nmi', namespace: 'default' });
    expect(nmi.spec.template.spec.containers[0].args).toEqual(['--node=$(NODE_NAME)', '--http-probe-port=8085', '--enableScaleFeatures=true', '--metadata-header-required=true']);
    expect(nmi.spec.template.spec.containers[0].image).toBe('mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17');
    expect(objs.filter((o) => o.kind === 'CustomResourceDefinition').map((o) => o.metadata.name).sort()).toEqual([
      'azureassignedidentities.aadpodidentity.k8s.io',
      'azureidentities.aadpodidentity.k8s.io',
      'azureidentitybindings.aadpodidentity.k8s.io',
      'azurepodidentityexceptions.aadpodidentity.k8s.io',
    ]);
    expect(objs.find((o) => o.kind === 'Deployment')!.spec.replicas).toBe(2);
  });

  it('uses the v1.6.0 manifest (with --host-ip) for an old install, with v1 CRDs', () => {
    const s = parseScenario(MINIMAL + 'podIdentity: { version: v1.6.0 }\n');
    const objs = podIdentityObjects(s);
    const nmi = objs.find((o) => o.kind === 'DaemonSet')!;
    expect(nmi.spec.template.spec.containers[0].args).toContain('--host-ip=$(HOST_IP)');
    expect(nmi.spec.template.spec.containers[0].image).toBe('mcr.microsoft.com/k8s/aad-pod-identity/nmi:1.6.0');
    expect(objs.filter((o) => o.kind === 'CustomResourceDefinition').every((o) => o.apiVersion === 'apiextensions.k8s.io/v1')).toBe(true);
  });

  it('renders a Helm install with the chart names, labels and operation mode', () => {
    const s = parseScenario(MINIMAL + 'podIdentity: { install: helm, namespace: kube-system, immutableUserMsis: [abc] }\n');
    const objs = podIdentityObjects(s);
    const nmi = objs.find((o) => o.kind === 'DaemonSet')!;
    const mic = objs.find((o) => o.kind === 'Deployment')!;
    expect(nmi.metadata.name).toBe('aad-pod-identity-nmi');
    expect(nmi.metadata.namespace).toBe('kube-system');
    expect(nmi.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
    expect(nmi.metadata.annotations?.['meta.helm.sh/release-name']).toBe('aad-pod-identity');
    expect(nmi.spec.template.spec.containers[0].args).toContain('--operation-mode=standard');
    expect(mic.spec.template.spec.containers[0].args).toContain('--immutable-user-msis=abc');
    const crb = objs.find((o) => o.kind === 'ClusterRoleBinding' && o.metadata.name === 'aad-pod-identity-mic')!;
    expect(crb.subjects[0]).toMatchObject({ name: 'aad-pod-identity-mic', namespace: 'kube-system' });
  });

  it('writes legacy capitalised field names when asked', () => {
    const s = parseScenario(MINIMAL.replace('selector: app }', 'selector: app, legacyFieldNames: true }'));
    const [id, binding] = identityObjects(s);
    expect(Object.keys(id.spec)).toEqual(['type', 'ResourceID', 'ClientID']);
    expect(binding.spec).toEqual({ AzureIdentity: 'app-id', Selector: 'app' });
  });

  it('pins workloads to their pool and labels them with their binding', () => {
    const s = loadScenarioFile(DEFAULT_SCENARIO_PATH);
    const objs = workloadObjects(s);
    const api = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'api')!;
    expect(api.spec.template.spec.nodeSelector).toEqual({ 'kubernetes.azure.com/agentpool': 'pay' });
    expect(api.spec.template.metadata.labels.aadpodidbinding).toBe('api');
    expect(objs.filter((o) => o.kind === 'PodDisruptionBudget')).toHaveLength(1);
  });
});

describe('workloads on several pools', () => {
  it('turn into required node affinity, and unknown pools are named', () => {
    const s = parseScenario(MINIMAL.replace('pool: system, binding: app', 'pools: [system, extra], binding: app').replace("pools: [{ name: system, count: 1 }]", 'pools: [{ name: system, count: 1 }, { name: extra, count: 1 }]'));
    const d = workloadObjects(s).find((o) => o.kind === 'Deployment')!;
    expect(d.spec.template.spec.nodeSelector).toBeUndefined();
    expect(d.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions).toEqual([
      { key: 'kubernetes.azure.com/agentpool', operator: 'In', values: ['system', 'extra'] },
    ]);
    expect(problemsOf(MINIMAL.replace('pool: system, binding: app', 'pools: [system, gpu], binding: app'))).toEqual(['workloads[0].pools[1]: no pool named "gpu" (pools: system)']);
  });
});

describe('scenario fields for rehearsal fidelity', () => {
  it('renders bare pods, volumes, hostNetwork, separate NMI/MIC namespaces and Helm values', () => {
    const s = parseScenario(`${MINIMAL.replace('workloads: [{ name: app, namespace: apps, pool: system, binding: app }]', `workloads:
  - { name: app, namespace: apps, pool: system, binding: app, volumes: [{ name: cache, emptyDir: {} }, { name: logs, hostPath: { path: /var/log } }] }
  - { name: agent, namespace: apps, pool: system, kind: Pod, replicas: 2, hostNetwork: true }`)}podIdentity: { install: helm, nmiNamespace: kube-system, micNamespace: pod-identity, helmValues: { forceNamespaced: true, nmi: { probePort: 9000 }, mic: { nodeSelector: { pool: system } } } }
users: [{ name: auditor, clusterRoles: [view], namespace: apps }]
`);
    const w = workloadObjects(s);
    const deploy = w.find((o) => o.kind === 'Deployment')!;
    expect(deploy.spec.template.spec.volumes).toEqual([{ name: 'cache', emptyDir: {} }, { name: 'logs', hostPath: { path: '/var/log' } }]);
    expect(deploy.spec.template.spec.containers[0].volumeMounts).toEqual([{ name: 'cache', mountPath: '/mnt/cache' }, { name: 'logs', mountPath: '/mnt/logs' }]);
    const pods = w.filter((o) => o.kind === 'Pod');
    expect(pods.map((p) => p.metadata.name)).toEqual(['agent-0', 'agent-1']);
    expect(pods[0].spec.hostNetwork).toBe(true);
    const pi = podIdentityObjects(s);
    const nmi = pi.find((o) => o.kind === 'DaemonSet')!;
    const mic = pi.find((o) => o.kind === 'Deployment')!;
    expect(nmi.metadata.namespace).toBe('kube-system');
    expect(mic.metadata.namespace).toBe('pod-identity');
    expect(nmi.spec.template.spec.containers[0].args).toEqual(expect.arrayContaining(['--forceNamespaced=true', '--http-probe-port=9000']));
    expect(mic.spec.template.spec.nodeSelector).toMatchObject({ pool: 'system' });
    const micBinding = pi.find((o) => o.kind === 'ClusterRoleBinding' && /mic/.test(o.metadata.name ?? ""))!;
    expect(micBinding.subjects[0].namespace).toBe('pod-identity');
    expect(s.namespaces).toEqual(expect.arrayContaining(['apps', 'pod-identity']));
    expect(s.users).toEqual([{ name: 'auditor', groups: [], clusterRoles: ['view'], rules: [], namespace: 'apps' }]);
  });

  it('names what is wrong with the new fields', () => {
    expect(problemsOf(`${MINIMAL}podIdentity: { helmValues: { forceNamespaced: true } }\n`)).toEqual(['podIdentity.helmValues: only used with install: helm (set podIdentity.install: helm, or drop helmValues)']);
    expect(problemsOf(MINIMAL.replace('binding: app }]', 'binding: app, kind: Pod, pdb: { minAvailable: 1 } }]'))).toEqual(['workloads[0].pdb: a PodDisruptionBudget needs pods with a controller; drop pdb or use kind: Deployment']);
    expect(problemsOf(`${MINIMAL}users: [{ name: operator }]\n`)).toEqual(['users[0].name: "operator" is a built-in sandbox user; pick another name']);
  });
});
