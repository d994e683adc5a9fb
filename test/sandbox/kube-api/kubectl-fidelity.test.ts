/**
 * Stock kubectl (v1.32) against a fresh sandbox, the way a new user tries it: the imperative
 * `create` / `run` / `expose` commands (protobuf bodies), server-side apply with conflicts,
 * `explain`, RBAC with `auth can-i` / `whoami`, events (`get`, `--watch`, `describe`), node
 * leases, `logs -f`, rollout undo, honest ages and watch timeouts, the commands that do not
 * apply to simulated pods, and the everyday ones (get, describe, apply, patch, scale, rollout,
 * cordon, drain, wait, api-resources). Every assertion is on kubectl's own output.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseScenario } from '../../../src/sandbox/scenario.ts';
import { Sandbox } from '../../../src/sandbox/sandbox.ts';

const SCENARIO = `
apiVersion: podid-migrate.io/v1
kind: SandboxScenario
name: fidelity
timeScale: 20
cluster: {name: fid, resourceGroup: rg}
podIdentity: {install: helm, version: v1.8.17, nmiNamespace: kube-system, micNamespace: pod-identity, micReplicas: 1, helmValues: {forceNamespaced: true}}
pools:
  - {name: system, mode: System, count: 2}
  - {name: legacy, count: 1, type: AvailabilitySet}
namespaces: [apps]
identities:
  - {name: app-id, resourceGroup: ids, namespace: apps, selector: app}
users:
  - {name: auditor, rules: [{verbs: [get, list], apiGroups: [""], resources: [pods]}], namespace: apps}
workloads:
  - {name: web, namespace: apps, pool: system, replicas: 2, binding: app, port: 8080, volumes: [{name: cache, emptyDir: {}}]}
  - {name: agent, namespace: apps, pool: system, kind: Pod, hostNetwork: true, volumes: [{name: host, hostPath: {path: /var/log, type: Directory}}]}
  - {name: old, namespace: apps, pool: legacy, replicas: 1}
`;

let sb: Sandbox;
let dir: string;
let kubeconfig: string;

function kubectl(args: string[], opts: { input?: string; context?: string; timeoutMs?: number } = {}) {
  const ctx = opts.context ? ['--context', opts.context] : [];
  return execa('/usr/bin/kubectl', ['--kubeconfig', kubeconfig, ...ctx, ...args], {
    input: opts.input,
    reject: false,
    env: { HOME: dir, KUBECONFIG: '' },
    extendEnv: false,
    timeout: opts.timeoutMs ?? 60_000,
  });
}

async function ok(args: string[], opts: { input?: string; context?: string } = {}): Promise<string> {
  const r = await kubectl(args, opts);
  if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
  return String(r.stdout);
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolves once `child` has printed text matching `re` (on stdout). */
function printed(child: ResultPromise, re: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no output matching ${re} within ${timeoutMs} ms; got: ${out}`)), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (re.test(out)) {
        clearTimeout(timer);
        resolve(out);
      }
    });
  });
}

beforeAll(async () => {
  sb = await Sandbox.start({ scenario: parseScenario(SCENARIO, 'fidelity') });
  await sb.waitReady(90_000);
  dir = mkdtempSync(join(tmpdir(), 'kubectl-fidelity-'));
  kubeconfig = sb.writeClientFiles(join(dir, 'sandbox')).kubeconfig;
}, 120_000);
afterAll(async () => {
  await sb?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('kubectl create / run / expose (protobuf request bodies)', () => {
  it('creates a namespace, configmap, secret, serviceaccount, deployment and job, runs a pod and exposes a deployment', async () => {
    expect(await ok(['create', 'namespace', 'tryout'])).toBe('namespace/tryout created');
    expect(await ok(['create', 'configmap', 'settings', '-n', 'tryout', '--from-literal=mode=fast', '--from-literal=level=3'])).toContain('configmap/settings created');
    expect(await ok(['create', 'secret', 'generic', 'creds', '-n', 'tryout', '--from-literal=password=hunter2'])).toContain('secret/creds created');
    expect(await ok(['create', 'serviceaccount', 'robot', '-n', 'tryout'])).toContain('serviceaccount/robot created');
    expect(await ok(['create', 'deployment', 'shop', '-n', 'tryout', '--image=nginx:1.27', '--replicas=2', '--port=80'])).toContain('deployment.apps/shop created');
    expect(await ok(['create', 'job', 'once', '-n', 'tryout', '--image=busybox:1.36', '--', 'echo', 'done'])).toContain('job.batch/once created');
    expect(await ok(['run', 'probe', '-n', 'tryout', '--image=busybox:1.36', '--labels=role=probe', '--env=A=B', '--', 'sleep', '3600'])).toContain('pod/probe created');
    expect(await ok(['expose', 'deployment', 'shop', '-n', 'tryout', '--port=80', '--target-port=80'])).toContain('service/shop exposed');

    expect(await ok(['create', 'poddisruptionbudget', 'shop', '-n', 'tryout', '--selector=app=shop', '--min-available=1'])).toContain('poddisruptionbudget.policy/shop created');
    expect(await ok(['create', 'service', 'clusterip', 'backend', '-n', 'tryout', '--tcp=8080:80'])).toContain('service/backend created');
    expect(await ok(['get', 'pdb', 'shop', '-n', 'tryout', '-o', 'jsonpath={.spec.minAvailable} {.spec.selector.matchLabels.app}'])).toBe('1 shop');
    expect(await ok(['get', 'service', 'backend', '-n', 'tryout', '-o', 'jsonpath={.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.ports[0].name}'])).toBe('8080 80 8080-80');
    expect(await ok(['get', 'configmap', 'settings', '-n', 'tryout', '-o', 'jsonpath={.data}'])).toBe('{"level":"3","mode":"fast"}');
    expect(await ok(['get', 'secret', 'creds', '-n', 'tryout', '-o', 'jsonpath={.type} {.data.password}'])).toBe(`Opaque ${Buffer.from('hunter2').toString('base64')}`);
    expect(await ok(['get', 'deployment', 'shop', '-n', 'tryout', '-o', 'jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.selector.matchLabels.app}'])).toBe('2 80 shop');
    expect(await ok(['get', 'job', 'once', '-n', 'tryout', '-o', 'jsonpath={.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].command}'])).toBe('Never ["echo","done"]');
    expect(await ok(['get', 'pod', 'probe', '-n', 'tryout', '-o', 'jsonpath={.metadata.labels.role} {.spec.containers[0].env[0].value} {.spec.containers[0].args}'])).toBe('probe B ["sleep","3600"]');
    expect(await ok(['get', 'service', 'shop', '-n', 'tryout', '-o', 'jsonpath={.spec.type} {.spec.ports[0].port} {.spec.selector.app}'])).toBe('ClusterIP 80 shop');
    await until('the created deployment to be available', async () => (await ok(['get', 'deploy', 'shop', '-n', 'tryout', '-o', 'jsonpath={.status.availableReplicas}'])) === '2');
    expect(await ok(['wait', '--for=condition=complete', 'job/once', '-n', 'tryout', '--timeout=60s'])).toContain('job.batch/once condition met');
  });

  it('creates roles, cluster roles and their bindings', async () => {
    expect(await ok(['create', 'role', 'reader', '-n', 'tryout', '--verb=get,list', '--resource=pods,configmaps'])).toContain('role.rbac.authorization.k8s.io/reader created');
    expect(await ok(['create', 'rolebinding', 'reader', '-n', 'tryout', '--role=reader', '--user=dana', '--serviceaccount=tryout:robot'])).toContain('rolebinding.rbac.authorization.k8s.io/reader created');
    expect(await ok(['create', 'clusterrole', 'node-reader', '--verb=get', '--resource=nodes'])).toContain('clusterrole.rbac.authorization.k8s.io/node-reader created');
    expect(await ok(['create', 'clusterrolebinding', 'node-reader', '--clusterrole=node-reader', '--group=ops'])).toContain('clusterrolebinding.rbac.authorization.k8s.io/node-reader created');
    expect(await ok(['get', 'role', 'reader', '-n', 'tryout', '-o', 'jsonpath={.rules[0].verbs} {.rules[0].resources}'])).toBe('["get","list"] ["pods","configmaps"]');
    expect(await ok(['get', 'rolebinding', 'reader', '-n', 'tryout', '-o', 'jsonpath={.roleRef.kind}/{.roleRef.name} {.subjects[*].kind}'])).toBe('Role/reader User ServiceAccount');
    // Impersonation: the admin may act as dana, who got exactly the role's rights.
    expect((await ok(['auth', 'can-i', 'list', 'configmaps', '-n', 'tryout', '--as=dana'])).trim()).toBe('yes');
    expect((await kubectl(['auth', 'can-i', 'delete', 'configmaps', '-n', 'tryout', '--as=dana'])).stdout.trim()).toBe('no');
    expect((await kubectl(['get', 'nodes', '--as=dana'])).stderr).toContain('nodes is forbidden: User "dana" cannot list resource "nodes" in API group "" at the cluster scope');
    expect((await ok(['auth', 'can-i', 'get', 'nodes', '--as=someone', '--as-group=ops'])).trim()).toBe('yes');
    expect((await kubectl(['get', 'pods', '--as=dana'], { context: 'operator' })).stderr).toContain('users "dana" is forbidden: User "operator" cannot impersonate resource "users" in API group "" at the cluster scope');
  });

  it('folds a Secret\'s stringData into base64 data with the default type', async () => {
    await ok(['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: Secret\nmetadata: {name: plain, namespace: tryout}\nstringData: {token: abc}\n' });
    const s = JSON.parse(await ok(['get', 'secret', 'plain', '-n', 'tryout', '-o', 'json']));
    expect(s.type).toBe('Opaque');
    expect(s.data).toEqual({ token: Buffer.from('abc').toString('base64') });
    expect(s.stringData).toBeUndefined();
  });
});

describe('kubectl apply --server-side', () => {
  const manifest = (replicas: number, containers: string) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: gitops, namespace: tryout}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: gitops}}
  template:
    metadata: {labels: {app: gitops}}
    spec:
      containers:${containers}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: gitops, namespace: tryout}
data: {a: "1"}
`;
  const two = '\n      - {name: app, image: nginx:1.27}\n      - {name: sidecar, image: busybox:1.36}';
  const one = '\n      - {name: app, image: nginx:1.27}';

  it('creates with managedFields, reports conflicts with the managers as the API server does, and takes fields over with --force-conflicts', async () => {
    expect(await ok(['apply', '--server-side', '--field-manager=flux', '-f', '-'], { input: manifest(2, two) })).toContain('deployment.apps/gitops serverside-applied');
    const managed = await ok(['get', 'deploy', 'gitops', '-n', 'tryout', '--show-managed-fields', '-o', 'jsonpath={.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation}']);
    expect(managed).toBe('flux Apply');
    await ok(['scale', 'deploy', 'gitops', '-n', 'tryout', '--replicas=4']);
    const conflict = await kubectl(['apply', '--server-side', '--field-manager=flux', '-f', '-'], { input: manifest(3, two) });
    expect(conflict.exitCode).not.toBe(0);
    expect(conflict.stderr).toMatch(/Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps\/v1: \.spec\.replicas/);
    await ok(['apply', '--server-side', '--field-manager=flux', '--force-conflicts', '-f', '-'], { input: manifest(3, two) });
    expect(await ok(['get', 'deploy', 'gitops', '-n', 'tryout', '-o', 'jsonpath={.spec.replicas}'])).toBe('3');
  });

  it('merges containers by name and drops what the manager stopped applying', async () => {
    await ok(['apply', '--server-side', '--field-manager=flux', '-f', '-'], { input: manifest(3, one) });
    expect(await ok(['get', 'deploy', 'gitops', '-n', 'tryout', '-o', 'jsonpath={.spec.template.spec.containers[*].name}'])).toBe('app');
    await ok(['apply', '--server-side', '--field-manager=argocd', '-f', '-'], { input: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gitops, namespace: tryout}\ndata: {b: "2"}\n' });
    expect(await ok(['get', 'cm', 'gitops', '-n', 'tryout', '-o', 'jsonpath={.data}'])).toBe('{"a":"1","b":"2"}');
  });
});

describe('kubectl explain and OpenAPI', () => {
  it('explains built-in fields and the Pod Identity custom resources', async () => {
    const field = await ok(['explain', 'pod.spec.nodeName']);
    expect(field).toMatch(/KIND:\s+Pod/);
    expect(field).toMatch(/FIELD: nodeName <string>/);
    expect(field).toContain('NodeName indicates in which node this pod is scheduled');
    expect(await ok(['explain', 'deployment.spec.template.spec.containers'])).toMatch(/FIELD: containers <\[\]Container>/);
    const crd = await ok(['explain', 'azureidentity.spec']);
    expect(crd).toMatch(/GROUP:\s+aadpodidentity\.k8s\.io/);
    expect(crd).toMatch(/KIND:\s+AzureIdentity/);
    const v2 = JSON.parse(await ok(['get', '--raw', '/openapi/v2']));
    const gvks = Object.values(v2.definitions as Record<string, any>).flatMap((d) => d['x-kubernetes-group-version-kind'] ?? []).map((g: any) => `${g.group}/${g.version}/${g.kind}`);
    expect(gvks).toEqual(expect.arrayContaining(['/v1/Pod', 'apps/v1/DaemonSet', 'aadpodidentity.k8s.io/v1/AzureIdentityBinding', 'rbac.authorization.k8s.io/v1/ClusterRole']));
  });
});

describe('authentication and RBAC', () => {
  it('answers auth can-i and whoami for the admin, readonly, operator and scenario users, and forbids with the API server\'s words', async () => {
    expect((await ok(['auth', 'can-i', 'create', 'pods', '-n', 'apps'])).trim()).toBe('yes');
    expect((await kubectl(['auth', 'can-i', 'create', 'pods', '-n', 'apps'], { context: 'readonly' })).stdout.trim()).toBe('no');
    expect((await ok(['auth', 'can-i', 'list', 'nodes'], { context: 'readonly' })).trim()).toBe('yes');
    expect((await ok(['auth', 'can-i', 'create', 'pods', '--subresource=eviction', '-A'], { context: 'operator' })).trim()).toBe('yes');
    expect((await kubectl(['auth', 'can-i', 'create', 'namespaces'], { context: 'operator' })).stdout.trim()).toBe('no');
    expect(await ok(['auth', 'whoami'], { context: 'operator' })).toMatch(/Username\s+operator/);
    expect((await ok(['auth', 'can-i', 'list', 'pods', '-n', 'apps'], { context: 'auditor' })).trim()).toBe('yes');
    expect((await kubectl(['auth', 'can-i', 'list', 'pods', '-n', 'default'], { context: 'auditor' })).stdout.trim()).toBe('no');
    const denied = await kubectl(['delete', 'configmap', 'settings', '-n', 'tryout'], { context: 'readonly' });
    expect(denied.stderr).toContain('Error from server (Forbidden): configmaps "settings" is forbidden: User "readonly" cannot delete resource "configmaps" in API group "" in the namespace "tryout"');
    expect(await ok(['auth', 'can-i', '--list', '-n', 'apps'], { context: 'readonly' })).toMatch(/\*\.\*\s+\[\]\s+\[\]\s+\[get list watch\]/);
  });
});

describe('events, leases, logs and time', () => {
  it('records scheduler, kubelet and controller events that get events and describe show', async () => {
    const all = await ok(['get', 'events', '-n', 'apps']);
    expect(all).toMatch(/^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE/);
    expect(all).toMatch(/Normal\s+Scheduled\s+pod\/web-\S+\s+Successfully assigned apps\/web-\S+ to aks-system-12345678-vmss00000[01]/);
    expect(all).toMatch(/Normal\s+Started\s+pod\/web-\S+\s+Started container web/);
    expect(all).toMatch(/Normal\s+SuccessfulCreate\s+replicaset\/web-\S+\s+Created pod: web-/);
    expect(all).toMatch(/Normal\s+ScalingReplicaSet\s+deployment\/web\s+Scaled up replica set web-\S+ from 0 to 2/);
    expect(all).toMatch(/Normal\s+binding applied\s+azureidentitybinding\/app-id-binding\s+Binding app-id-binding applied on node /);
    const pod = (await ok(['get', 'pods', '-n', 'apps', '-l', 'app=web', '-o', 'name'])).split('\n')[0];
    const described = await ok(['describe', '-n', 'apps', pod]);
    expect(described).toMatch(/Events:\n\s+Type\s+Reason\s+Age\s+From\s+Message/);
    expect(described).toMatch(/Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned/);
    expect(await ok(['get', 'events.events.k8s.io', '-n', 'apps', '--field-selector', 'metadata.namespace=apps', '-o', 'jsonpath={.items[0].apiVersion}'])).toBe('events.k8s.io/v1');
    // A controller of the user's own, recording through events.k8s.io/v1.
    const uid = await ok(['get', 'deploy', 'web', '-n', 'apps', '-o', 'jsonpath={.metadata.uid}']);
    const own = `apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: own.1, namespace: apps}\neventTime: "${new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')}"\nreportingController: example.com/op\nreportingInstance: op-0\naction: Sync\nreason: Synced\nnote: reconciled web\ntype: Normal\nregarding: {apiVersion: apps/v1, kind: Deployment, name: web, namespace: apps, uid: ${uid}}\n`;
    expect(await ok(['create', '-f', '-'], { input: own })).toBe('event.events.k8s.io/own.1 created');
    expect(await ok(['describe', 'deployment', 'web', '-n', 'apps'])).toMatch(/Normal\s+Synced\s+\S+\s+example\.com\/op\s+reconciled web/);
  });

  it('streams new events to get events --watch (a cordon, then an uncordon)', async () => {
    const watch = kubectl(['get', 'events', '-A', '--watch-only'], { timeoutMs: 60_000 });
    const seen = printed(watch, /NodeNotSchedulable\s+node\/aks-legacy-12345678-0/);
    // The watch is open once kubectl printed its header for an event, or a moment after it connected.
    await until('the watch to be registered', async () => sb.metrics.recent(50).some((r) => r.verb === 'watch' && r.resource === 'events'));
    await ok(['cordon', 'aks-legacy-12345678-0']);
    expect(await seen).toMatch(/Normal\s+NodeNotSchedulable\s+node\/aks-legacy-12345678-0\s+Node aks-legacy-12345678-0 status is now: NodeNotSchedulable/);
    watch.kill();
    await watch;
    await ok(['uncordon', 'aks-legacy-12345678-0']);
  });

  it('shows node leases, one role per node and ages that are never negative', async () => {
    const node = await ok(['describe', 'node', 'aks-system-12345678-vmss000000']);
    expect(node).toMatch(/Lease:\n\s+HolderIdentity:\s+aks-system-12345678-vmss000000\n\s+AcquireTime:\s+\S+.*\n\s+RenewTime:\s+\w{3}, /);
    expect(node).not.toContain('<invalid>');
    expect(node).toMatch(/Normal\s+RegisteredNode/);
    const nodes = await ok(['get', 'nodes']);
    expect(nodes).toMatch(/aks-legacy-12345678-0\s+Ready\s+agent\s+\d+s\s+v1\.32/);
    expect(nodes).not.toContain('agent,agent');
    expect(await ok(['get', 'pods', '-A'])).not.toContain('<invalid>');
    const created = Date.parse(await ok(['get', 'node', 'aks-system-12345678-vmss000000', '-o', 'jsonpath={.metadata.creationTimestamp}']));
    expect(created).toBeLessThanOrEqual(Date.now());
    const lease = Date.parse(await ok(['get', 'lease', '-n', 'kube-node-lease', 'aks-system-12345678-vmss000000', '-o', 'jsonpath={.spec.renewTime}']));
    expect(lease).toBeLessThanOrEqual(Date.now() + 1000);
  });

  it('ends a watch after timeoutSeconds as the client counts them', async () => {
    const started = Date.now();
    await ok(['get', '--raw', '/api/v1/namespaces/apps/pods?watch=1&timeoutSeconds=1']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('follows a log with logs -f', async () => {
    const pod = (await ok(['get', 'pods', '-n', 'apps', '-l', 'app=web', '-o', 'jsonpath={.items[0].metadata.name}'])).trim();
    const follow = kubectl(['logs', '-f', '-n', 'apps', pod], { timeoutMs: 60_000 });
    let ended = false;
    void follow.then(() => (ended = true));
    await until('the log stream to be open', async () => sb.metrics.recent(50).some((r) => r.verb === 'log'));
    const line = `fidelity-line-${Date.now()}`;
    const got = printed(follow, new RegExp(line));
    sb.logs.append('apps', pod, 'web', line);
    expect(await got).toContain(line);
    // Still streaming: kubectl did not return once the existing log was printed.
    expect(ended).toBe(false);
    follow.kill();
    await follow;
  });
});

describe('workloads: rollout, scale, patch, drain', () => {
  it('rollout undo re-uses the previous ReplicaSet with revision semantics', async () => {
    await ok(['set', 'image', 'deployment/shop', '-n', 'tryout', 'nginx=nginx:1.28']);
    await ok(['rollout', 'status', 'deployment/shop', '-n', 'tryout', '--timeout=60s']);
    const before = (await ok(['get', 'rs', '-n', 'tryout', '-l', 'app=shop', '-o', 'name'])).trim().split('\n').sort();
    expect(before).toHaveLength(2);
    expect(await ok(['rollout', 'undo', 'deployment/shop', '-n', 'tryout'])).toContain('deployment.apps/shop rolled back');
    await ok(['rollout', 'status', 'deployment/shop', '-n', 'tryout', '--timeout=60s']);
    const after = (await ok(['get', 'rs', '-n', 'tryout', '-l', 'app=shop', '-o', 'name'])).trim().split('\n').sort();
    expect(after).toEqual(before);
    expect(await ok(['get', 'deploy', 'shop', '-n', 'tryout', '-o', 'jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.spec.template.spec.containers[0].image}'])).toBe('3 nginx:1.27');
    const history = await ok(['rollout', 'history', 'deployment/shop', '-n', 'tryout']);
    expect(history).toMatch(/REVISION\s+CHANGE-CAUSE\n2\s+<none>\n3\s+<none>/);
  });

  it('scales, patches, waits, lists resources, and drains a node', async () => {
    expect(await ok(['scale', 'deployment/web', '-n', 'apps', '--replicas=3'])).toContain('deployment.apps/web scaled');
    expect(await ok(['wait', '--for=condition=Available', 'deployment/web', '-n', 'apps', '--timeout=60s'])).toContain('condition met');
    expect(await ok(['patch', 'deployment', 'web', '-n', 'apps', '-p', '{"metadata":{"labels":{"tier":"front"}}}'])).toContain('deployment.apps/web patched');
    expect(await ok(['get', 'deploy', 'web', '-n', 'apps', '-o', 'jsonpath={.metadata.labels.tier}'])).toBe('front');
    const resources = await ok(['api-resources']);
    expect(resources).toMatch(/selfsubjectaccessreviews\s+authorization\.k8s\.io\/v1\s+false\s+SelfSubjectAccessReview/);
    expect(resources).toMatch(/events\s+ev\s+events\.k8s\.io\/v1\s+true\s+Event/);
    const drain = await ok(['drain', 'aks-legacy-12345678-0', '--ignore-daemonsets', '--timeout=60s']);
    expect(drain).toContain('node/aks-legacy-12345678-0 drained');
    expect(await ok(['get', 'events', '-A', '--field-selector', 'reason=Killing', '-o', 'name'])).not.toBe('');
    await ok(['uncordon', 'aks-legacy-12345678-0']);
  });
});

describe('what simulated pods cannot do', () => {
  it('exec, attach and port-forward answer that the sandbox does not run containers', async () => {
    const pod = (await ok(['get', 'pods', '-n', 'apps', '-l', 'app=web', '-o', 'jsonpath={.items[0].metadata.name}'])).trim();
    for (const args of [['exec', '-n', 'apps', pod, '--', 'true'], ['attach', '-n', 'apps', pod], ['port-forward', '-n', 'apps', `pod/${pod}`, '18080:8080']]) {
      const r = await kubectl(args, { timeoutMs: 30_000 });
      expect(r.exitCode, args[0]).not.toBe(0);
      expect(r.stderr, args[0]).toContain('the podid-migrate sandbox does not run containers');
    }
  });
});
