/**
 * The API server driven by the real `@kubernetes/client-node` over HTTPS: auth, errors,
 * optimistic concurrency, validation, defaulting, selectors, paging, dry run, the patch
 * formats, subresources, watch, metrics and faults.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  PolicyV1Api,
  Watch,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { type Harness, FIXTURES, loadManifest, runningPod, startHarness, waitFor } from './harness.ts';
import type { KObject } from '../../../src/sandbox/store.ts';

let h: Harness;
let core: CoreV1Api;
let apps: AppsV1Api;
let policy: PolicyV1Api;
let custom: CustomObjectsApi;

beforeAll(async () => {
  h = await startHarness();
  core = h.kc.makeApiClient(CoreV1Api);
  apps = h.kc.makeApiClient(AppsV1Api);
  policy = h.kc.makeApiClient(PolicyV1Api);
  custom = h.kc.makeApiClient(CustomObjectsApi);
});
afterAll(async () => {
  await h?.close();
});

/** Runs `fn`, expecting an ApiException; returns its code and parsed v1.Status body. */
async function failure(fn: () => Promise<unknown>): Promise<{ code: number; body: any; headers: Record<string, string> }> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof ApiException) return { code: e.code, body: typeof e.body === 'string' ? JSON.parse(e.body) : e.body, headers: e.headers };
    throw e;
  }
  throw new Error('expected the request to fail');
}

function deployment(name: string, labels: Record<string, string> = { app: name }, replicas = 2): any {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'default' },
    spec: {
      replicas,
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'app', image: 'example/app:1.0', env: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }] }, { name: 'side', image: 'example/side:1.0' }] } },
    },
  };
}

describe('authentication and errors', () => {
  it('answers 401 Unauthorized without the bearer token', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: h.server.url, caData: Buffer.from(h.tls.caPem).toString('base64') }],
      users: [{ name: 'anon' }],
      contexts: [{ name: 'c', cluster: 'c', user: 'anon' }],
      currentContext: 'c',
    });
    const anon = kc.makeApiClient(CoreV1Api);
    const f = await failure(() => anon.listNamespace());
    expect(f.code).toBe(401);
    const raw = await rawRequest('GET', '/api/v1/namespaces', undefined, 'application/json', false);
    expect(raw.status).toBe(401);
    expect(JSON.parse(raw.body)).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
  });

  it('answers 404 with a real v1.Status for a missing object and for an unknown path', async () => {
    const f = await failure(() => apps.readNamespacedDeployment({ name: 'nope', namespace: 'default' }));
    expect(f.code).toBe(404);
    expect(f.body).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'deployments.apps "nope" not found',
      reason: 'NotFound',
      details: { name: 'nope', group: 'apps', kind: 'deployments' },
      code: 404,
    });
    const raw = await rawRequest('GET', '/apis/apps/v1/namespaces/default/widgets');
    expect(raw.status).toBe(404);
    expect(JSON.parse(raw.body)).toMatchObject({ kind: 'Status', reason: 'NotFound', message: 'the server could not find the requested resource', code: 404 });
  });

  it('answers 415 for a patch media type the server does not know', async () => {
    const raw = await rawRequest('PATCH', '/api/v1/namespaces/default', '{}', 'application/xml');
    expect(raw.status).toBe(415);
    expect(JSON.parse(raw.body)).toMatchObject({ reason: 'UnsupportedMediaType', code: 415 });
  });
});

describe('create, update, validation and defaulting', () => {
  it('defaults a created Deployment and rejects a stale update with 409 Conflict', async () => {
    const created = await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('web') });
    expect(created.spec?.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } });
    expect(created.spec?.revisionHistoryLimit).toBe(10);
    expect(created.spec?.progressDeadlineSeconds).toBe(600);
    expect(created.spec?.template.spec?.restartPolicy).toBe('Always');
    expect(created.spec?.template.spec?.terminationGracePeriodSeconds).toBe(30);
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    const stale = structuredClone(created);
    created.spec!.replicas = 3;
    const updated = await apps.replaceNamespacedDeployment({ name: 'web', namespace: 'default', body: created });
    expect(updated.metadata?.generation).toBe(2);
    stale.spec!.replicas = 5;
    const f = await failure(() => apps.replaceNamespacedDeployment({ name: 'web', namespace: 'default', body: stale }));
    expect(f.code).toBe(409);
    expect(f.body).toMatchObject({
      reason: 'Conflict',
      message: 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; please apply your changes to the latest version and try again',
      details: { name: 'web', group: 'apps', kind: 'deployments' },
    });
    const dup = await failure(() => apps.createNamespacedDeployment({ namespace: 'default', body: deployment('web') }));
    expect(dup.code).toBe(409);
    expect(dup.body.reason).toBe('AlreadyExists');
  });

  it('answers 422 Invalid for a selector that does not match, no containers and negative replicas', async () => {
    const bad = deployment('bad');
    bad.spec.template.metadata.labels = { app: 'other' };
    bad.spec.replicas = -1;
    const f = await failure(() => apps.createNamespacedDeployment({ namespace: 'default', body: bad }));
    expect(f.code).toBe(422);
    expect(f.body.reason).toBe('Invalid');
    expect(f.body.message).toMatch(/^Deployment "bad" is invalid: /);
    const fields = f.body.details.causes.map((c: any) => c.field);
    expect(fields).toEqual(expect.arrayContaining(['spec.replicas', 'spec.template.metadata.labels']));
    const noContainers = deployment('empty');
    noContainers.spec.template.spec.containers = [];
    const g = await failure(() => apps.createNamespacedDeployment({ namespace: 'default', body: noContainers }));
    expect(g.body.details.causes[0]).toMatchObject({ field: 'spec.template.spec.containers', message: 'Required value' });
  });

  it('keeps spec.selector immutable on update', async () => {
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('sel') });
    const f = await failure(() =>
      apps.patchNamespacedDeployment(
        { name: 'sel', namespace: 'default', body: { spec: { selector: { matchLabels: { app: 'sel', tier: 'x' } }, template: { metadata: { labels: { app: 'sel', tier: 'x' } } } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    expect(f.code).toBe(422);
    expect(f.body.details.causes).toContainEqual(expect.objectContaining({ field: 'spec.selector' }));
  });

  it('defaults pods and DaemonSets and resets the status a client sends on create', async () => {
    const pod = await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'defaulted' }, spec: { containers: [{ name: 'c', image: 'busybox:1.36' }] }, status: { phase: 'Running' } } as any });
    expect(pod.status?.phase).toBe('Pending');
    expect(pod.spec).toMatchObject({ restartPolicy: 'Always', terminationGracePeriodSeconds: 30, dnsPolicy: 'ClusterFirst', schedulerName: 'default-scheduler', serviceAccountName: 'default' });
    const [ds] = (await loadManifest(`${FIXTURES}/deploy/infra/deployment-rbac.yaml`)).filter((o) => o.kind === 'DaemonSet');
    const created = await apps.createNamespacedDaemonSet({ namespace: 'default', body: { ...ds, metadata: { ...ds.metadata, name: 'nmi-defaults' }, spec: { ...ds.spec, updateStrategy: undefined } } as any });
    expect(created.spec?.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
    expect(created.spec?.revisionHistoryLimit).toBe(10);
  });
});

describe('dry run', () => {
  it('persists nothing and emits no event for dryRun=All on every mutating verb, counting it as dry run', async () => {
    const rvBefore = h.store.currentResourceVersion();
    const dry = await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('dry'), dryRun: 'All' });
    expect(dry.metadata?.name).toBe('dry');
    expect(h.store.get(h.store.typeOrThrow('apps', 'deployments'), 'default', 'dry')).toBeUndefined();
    await apps.patchNamespacedDeployment({ name: 'web', namespace: 'default', body: { spec: { replicas: 9 } }, dryRun: 'All' }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    await apps.deleteNamespacedDeployment({ name: 'web', namespace: 'default', dryRun: 'All' });
    const web = h.store.get(h.store.typeOrThrow('apps', 'deployments'), 'default', 'web')!;
    expect(web.spec.replicas).toBe(3);
    expect(h.store.currentResourceVersion()).toBe(rvBefore);
    expect(h.metrics.count({ api: 'kube', dryRun: true, verb: 'create', resource: 'deployments.apps' })).toBe(1);
    expect(h.metrics.count({ api: 'kube', dryRun: true, verb: 'patch', resource: 'deployments.apps' })).toBe(1);
    expect(h.metrics.count({ api: 'kube', dryRun: true, verb: 'delete', resource: 'deployments.apps' })).toBe(1);
  });
});

describe('lists: selectors and paging', () => {
  beforeAll(() => {
    const pods = h.store.typeOrThrow('', 'pods');
    const ns = h.store.typeOrThrow('', 'namespaces');
    h.store.create(ns, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'paging' } });
    for (let i = 0; i < 25; i++) {
      const p = runningPod(`p-${String(i).padStart(2, '0')}`, { namespace: 'paging', node: i % 2 ? 'node-a' : 'node-b', labels: { app: i < 10 ? 'ten' : 'rest' } });
      if (i === 3) p.status.phase = 'Succeeded';
      h.store.create(pods, p);
    }
  });

  it('filters by label selector and by spec.nodeName / status.phase / metadata.name field selectors', async () => {
    const byLabel = await core.listNamespacedPod({ namespace: 'paging', labelSelector: 'app=ten' });
    expect(byLabel.items).toHaveLength(10);
    const byNode = await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=node-a' });
    expect(byNode.items.map((p) => p.metadata?.name)).toHaveLength(12);
    expect(byNode.items.every((p) => p.spec?.nodeName === 'node-a')).toBe(true);
    const done = await core.listNamespacedPod({ namespace: 'paging', fieldSelector: 'status.phase=Succeeded' });
    expect(done.items.map((p) => p.metadata?.name)).toEqual(['p-03']);
    const named = await core.listNamespacedPod({ namespace: 'paging', fieldSelector: 'metadata.name=p-07' });
    expect(named.items).toHaveLength(1);
    const f = await failure(() => core.listNamespacedPod({ namespace: 'paging', fieldSelector: 'spec.bogus=1' }));
    expect(f.code).toBe(400);
    expect(f.body.message).toBe('field label not supported: spec.bogus');
  });

  it('pages with limit and an opaque continue token, reporting remainingItemCount', async () => {
    const seen: string[] = [];
    let cont: string | undefined;
    const remaining: (number | undefined)[] = [];
    do {
      const page = await core.listNamespacedPod({ namespace: 'paging', limit: 10, _continue: cont });
      seen.push(...page.items.map((p) => p.metadata!.name!));
      remaining.push(page.metadata?.remainingItemCount);
      cont = page.metadata?._continue;
    } while (cont);
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
    expect(seen).toEqual([...seen].sort());
    expect(remaining).toEqual([15, 5, undefined]);
    const bad = await failure(() => core.listNamespacedPod({ namespace: 'paging', limit: 10, _continue: 'not-a-token' }));
    expect(bad.code).toBe(400);
  });
});

describe('patch formats', () => {
  it('applies JSON patch, merge patch and strategic merge patch with list merge keys', async () => {
    const name = 'patchme';
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment(name) });
    // Strategic: containers merge by name, env by name; args replaced atomically.
    const smp = await apps.patchNamespacedDeployment(
      {
        name,
        namespace: 'default',
        body: { spec: { template: { spec: { containers: [{ name: 'app', args: ['--operation-mode=managed'], env: [{ name: 'B', value: 'two' }, { name: 'C', value: '3' }] }] } } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    const containers = smp.spec!.template.spec!.containers;
    expect(containers.map((c) => c.name)).toEqual(['app', 'side']);
    expect(containers[0].env).toEqual([{ name: 'A', value: '1' }, { name: 'B', value: 'two' }, { name: 'C', value: '3' }]);
    expect(containers[0].args).toEqual(['--operation-mode=managed']);
    // Strategic $patch: delete removes one container by key.
    const del = await apps.patchNamespacedDeployment(
      { name, namespace: 'default', body: { spec: { template: { spec: { containers: [{ name: 'side', $patch: 'delete' }] } } } } },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    expect(del.spec!.template.spec!.containers.map((c) => c.name)).toEqual(['app']);
    // Merge patch replaces lists wholesale.
    const merged = await apps.patchNamespacedDeployment(
      { name, namespace: 'default', body: { spec: { template: { spec: { containers: [{ name: 'only', image: 'x:1' }] } } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(merged.spec!.template.spec!.containers.map((c) => c.name)).toEqual(['only']);
    // JSON patch, including a failing test operation.
    const jp = await apps.patchNamespacedDeployment(
      { name, namespace: 'default', body: [{ op: 'replace', path: '/spec/replicas', value: 0 }] },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    expect(jp.spec?.replicas).toBe(0);
    const f = await failure(() =>
      apps.patchNamespacedDeployment({ name, namespace: 'default', body: [{ op: 'test', path: '/spec/replicas', value: 4 }] }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch)),
    );
    expect(f.code).toBe(422);
  });

  it('cordons a node with a strategic merge patch', async () => {
    await core.createNode({ body: { metadata: { name: 'cordon-me' }, status: { conditions: [{ type: 'Ready', status: 'True' }] } } as any });
    const n = await core.patchNode({ name: 'cordon-me', body: { spec: { unschedulable: true } } }, setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch));
    expect(n.spec?.unschedulable).toBe(true);
  });
});

describe('subresources', () => {
  it('reads and writes scale for deployments', async () => {
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('scaled', { app: 'scaled' }, 2) });
    const s = await apps.readNamespacedDeploymentScale({ name: 'scaled', namespace: 'default' });
    expect(s).toMatchObject({ kind: 'Scale', apiVersion: 'autoscaling/v1', spec: { replicas: 2 }, status: { selector: 'app=scaled' } });
    const patched = await apps.patchNamespacedDeploymentScale({ name: 'scaled', namespace: 'default', body: { spec: { replicas: 0 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    expect(patched.spec?.replicas).toBe(0);
    expect((await apps.readNamespacedDeployment({ name: 'scaled', namespace: 'default' })).spec?.replicas).toBe(0);
    expect(h.metrics.count({ verb: 'patch', resource: 'deployments.apps/scale', status: 200 })).toBe(1);
  });

  it('writes status only through the status subresource', async () => {
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('stat') });
    const d = await apps.readNamespacedDeployment({ name: 'stat', namespace: 'default' });
    d.status = { replicas: 2, readyReplicas: 2 };
    const viaMain = await apps.replaceNamespacedDeployment({ name: 'stat', namespace: 'default', body: d });
    expect(viaMain.status?.readyReplicas).toBeUndefined();
    const viaStatus = await apps.patchNamespacedDeploymentStatus({ name: 'stat', namespace: 'default', body: { status: { readyReplicas: 2, replicas: 2 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    expect(viaStatus.status?.readyReplicas).toBe(2);
  });

  it('serves pods/log with tailLines and the real 400 when a multi-container pod names no container', async () => {
    h.store.create(h.store.typeOrThrow('', 'pods'), runningPod('logger', { node: 'n1', containers: ['nmi', 'sidecar'] }));
    for (let i = 1; i <= 5; i++) h.logs.append('default', 'logger', 'nmi', `line ${i}`);
    const text = await core.readNamespacedPodLog({ name: 'logger', namespace: 'default', container: 'nmi', tailLines: 2 });
    expect(text).toBe('line 4\nline 5\n');
    const f = await failure(() => core.readNamespacedPodLog({ name: 'logger', namespace: 'default' }));
    expect(f.code).toBe(400);
    expect(f.body.message).toBe('a container name must be specified for pod logger, choose one of: [nmi sidecar]');
    expect(h.metrics.count({ verb: 'log', resource: 'pods/log', status: 200 })).toBe(1);
  });

  it('proxies to a pod port in the simulated network, and answers 503 when nothing listens', async () => {
    h.store.create(h.store.typeOrThrow('', 'pods'), runningPod('nmi-abcde', { node: 'n1', ip: '10.240.0.4' }));
    const stop = h.network.listen('10.240.0.4', 8085, (req) => ({ status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: req.url.pathname === '/healthz' ? 'Active' : 'nope' }));
    try {
      const ok = await rawRequest('GET', '/api/v1/namespaces/default/pods/nmi-abcde:8085/proxy/healthz');
      expect(ok).toMatchObject({ status: 200, body: 'Active' });
      const viaClient = await core.connectGetNamespacedPodProxyWithPath({ name: 'nmi-abcde:8085', namespace: 'default', path: 'healthz' });
      expect(viaClient).toBe('Active');
    } finally {
      stop();
    }
    const down = await rawRequest('GET', '/api/v1/namespaces/default/pods/nmi-abcde:8085/proxy/healthz');
    expect(down.status).toBe(503);
    expect(JSON.parse(down.body)).toMatchObject({ reason: 'ServiceUnavailable', message: 'error trying to reach service: dial tcp 10.240.0.4:8085: connect: connection refused' });
    expect(h.metrics.count({ verb: 'proxy', resource: 'pods/proxy' })).toBe(3);
  });
});

describe('delete', () => {
  const pods = () => h.store.typeOrThrow('', 'pods');

  it('deletes a scheduled pod gracefully with its terminationGracePeriodSeconds, an unscheduled one at once', async () => {
    h.store.create(pods(), runningPod('graceful', { node: 'n1', grace: 12 }));
    const res = await core.deleteNamespacedPod({ name: 'graceful', namespace: 'default' });
    expect(res.metadata?.deletionTimestamp).toBeDefined();
    expect(res.metadata?.deletionGracePeriodSeconds).toBe(12);
    expect(h.store.peek(pods(), 'default', 'graceful')).toBeDefined();
    // A second delete with gracePeriodSeconds=0 (kubectl --force) removes it.
    await core.deleteNamespacedPod({ name: 'graceful', namespace: 'default', gracePeriodSeconds: 0 });
    expect(h.store.peek(pods(), 'default', 'graceful')).toBeUndefined();
    await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'unscheduled' }, spec: { containers: [{ name: 'c', image: 'i:1' }] } } });
    await core.deleteNamespacedPod({ name: 'unscheduled', namespace: 'default' });
    expect(h.store.peek(pods(), 'default', 'unscheduled')).toBeUndefined();
  });

  it('answers a Success Status for other kinds, 422 for an unknown propagationPolicy, and deletes collections by selector', async () => {
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'del-1', labels: { batch: 'x' } } } });
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'del-2', labels: { batch: 'x' } } } });
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'keep', labels: { batch: 'y' } } } });
    const bad = await failure(() => core.deleteNamespacedConfigMap({ name: 'del-1', namespace: 'default', propagationPolicy: 'Sideways' }));
    expect(bad.code).toBe(422);
    const raw = await rawRequest('DELETE', '/api/v1/namespaces/default/configmaps/del-1', JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' }));
    expect(raw.status).toBe(200);
    expect(JSON.parse(raw.body)).toMatchObject({ kind: 'Status', status: 'Success', details: { name: 'del-1', kind: 'configmaps' } });
    // Foreground propagation leaves the owner terminating with the finalizer the garbage collector works off.
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('fg') });
    await apps.deleteNamespacedDeployment({ name: 'fg', namespace: 'default', propagationPolicy: 'Foreground' });
    const terminating = h.store.peek(h.store.typeOrThrow('apps', 'deployments'), 'default', 'fg')!;
    expect(terminating.metadata.deletionTimestamp).toBeDefined();
    expect(terminating.metadata.finalizers).toEqual(['foregroundDeletion']);
    await core.deleteCollectionNamespacedConfigMap({ namespace: 'default', labelSelector: 'batch=x' });
    const left = await core.listNamespacedConfigMap({ namespace: 'default', labelSelector: 'batch' });
    expect(left.items.map((c) => c.metadata?.name)).toEqual(['keep']);
    expect(h.metrics.count({ verb: 'deletecollection', resource: 'configmaps', status: 200 })).toBe(1);
  });
});

describe('eviction', () => {
  const pods = () => h.store.typeOrThrow('', 'pods');
  const pdbs = () => h.store.typeOrThrow('policy', 'poddisruptionbudgets');

  function pdb(name: string, labels: Record<string, string>, status: Record<string, unknown>): KObject {
    const created = h.store.create(pdbs(), { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name, namespace: 'default' }, spec: { minAvailable: 2, selector: { matchLabels: labels } } });
    // The disruption controller's status, as it would have written it.
    return h.store.update(pdbs(), { ...created, status: { observedGeneration: 1, ...status } }, { subresource: 'status' });
  }

  it('answers 429 with the upstream message when the PDB allows no disruption', async () => {
    h.store.create(pods(), runningPod('guarded-1', { node: 'n1', labels: { app: 'guarded' } }));
    pdb('guarded-pdb', { app: 'guarded' }, { disruptionsAllowed: 0, currentHealthy: 2, desiredHealthy: 2, expectedPods: 2 });
    const f = await failure(() => core.createNamespacedPodEviction({ name: 'guarded-1', namespace: 'default', body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'guarded-1', namespace: 'default' } } }));
    expect(f.code).toBe(429);
    expect(f.body).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      reason: 'TooManyRequests',
      message: "Cannot evict pod as it would violate the pod's disruption budget.",
      details: { causes: [{ reason: 'DisruptionBudget', message: 'The disruption budget guarded-pdb needs 2 healthy pods and has 2 currently' }] },
      code: 429,
    });
    expect(h.store.peek(pods(), 'default', 'guarded-1')?.metadata.deletionTimestamp).toBeUndefined();
    expect(h.metrics.count({ verb: 'create', resource: 'pods/eviction', status: 429 })).toBe(1);
  });

  it('evicts when allowed: decrements disruptionsAllowed and deletes the pod gracefully', async () => {
    h.store.create(pods(), runningPod('free-1', { node: 'n1', labels: { app: 'free' }, grace: 45 }));
    pdb('free-pdb', { app: 'free' }, { disruptionsAllowed: 1, currentHealthy: 3, desiredHealthy: 2, expectedPods: 3 });
    await policy.readNamespacedPodDisruptionBudget({ name: 'free-pdb', namespace: 'default' });
    await core.createNamespacedPodEviction({ name: 'free-1', namespace: 'default', body: { metadata: { name: 'free-1', namespace: 'default' } } });
    const after = h.store.peek(pdbs(), 'default', 'free-pdb')!;
    expect(after.status.disruptionsAllowed).toBe(0);
    expect(Object.keys(after.status.disruptedPods)).toEqual(['free-1']);
    const pod = h.store.peek(pods(), 'default', 'free-1')!;
    expect(pod.metadata.deletionTimestamp).toBeDefined();
    expect(pod.metadata.deletionGracePeriodSeconds).toBe(45);
    expect(pod.status.conditions).toContainEqual(expect.objectContaining({ type: 'DisruptionTarget', reason: 'EvictionByEvictionAPI' }));
    // A pod already terminating evicts fine even though the budget is now exhausted.
    const again = await rawRequest('POST', '/api/v1/namespaces/default/pods/free-1/eviction', JSON.stringify({ apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'free-1', namespace: 'default' } }));
    expect(again.status).toBe(201);
    expect(JSON.parse(again.body)).toEqual({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 });
  });

  it('answers 500 when more than one PDB selects the pod', async () => {
    h.store.create(pods(), runningPod('double-1', { node: 'n1', labels: { app: 'double', tier: 'a' } }));
    pdb('double-a', { app: 'double' }, { disruptionsAllowed: 5 });
    pdb('double-b', { tier: 'a' }, { disruptionsAllowed: 5 });
    const f = await failure(() => core.createNamespacedPodEviction({ name: 'double-1', namespace: 'default', body: { metadata: { name: 'double-1', namespace: 'default' } } }));
    expect(f.code).toBe(500);
    expect(f.body.message).toBe('This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.');
  });
});

describe('custom resources from the upstream CRDs', () => {
  it('serves the aadpodidentity.k8s.io kinds once their CRDs exist', async () => {
    const crdType = h.store.typeOrThrow('apiextensions.k8s.io', 'customresourcedefinitions');
    for (const crd of await loadManifest(`${FIXTURES}/config/crd/aadpodidentity.k8s.io.yaml`)) h.store.create(crdType, crd);
    const body = { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity', metadata: { name: 'id1', namespace: 'default' }, spec: { type: 0, resourceID: '/subscriptions/x/id1', clientID: '00000000-0000-0000-0000-000000000001' } };
    await custom.createNamespacedCustomObject({ group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureidentities', body });
    const list: any = await custom.listNamespacedCustomObject({ group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureidentities' });
    expect(list.kind).toBe('AzureIdentityList');
    expect(list.items.map((i: any) => i.spec.clientID)).toEqual(['00000000-0000-0000-0000-000000000001']);
    // Merge patch works on custom resources; strategic merge patch is refused like upstream.
    await custom.patchNamespacedCustomObject({ group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureidentities', name: 'id1', body: { metadata: { labels: { a: 'b' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const f = await failure(() => custom.patchNamespacedCustomObject({ group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureidentities', name: 'id1', body: { metadata: { labels: { c: 'd' } } } }, setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch)));
    expect(f.code).toBe(415);
    // Finalizers hold deletion until removed.
    const aai = { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity', metadata: { name: 'pod-default-id1', namespace: 'default', finalizers: ['azureassignedidentity.finalizers.aadpodidentity.k8s.io'] }, spec: { pod: 'pod', podNamespace: 'default' } };
    await custom.createNamespacedCustomObject({ group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureassignedidentities', body: aai });
    await custom.deleteNamespacedCustomObject({ group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureassignedidentities', name: 'pod-default-id1' });
    const held: any = await custom.getNamespacedCustomObject({ group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureassignedidentities', name: 'pod-default-id1' });
    expect(held.metadata.deletionTimestamp).toBeDefined();
    await custom.patchNamespacedCustomObject(
      { group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureassignedidentities', name: 'pod-default-id1', body: [{ op: 'remove', path: '/metadata/finalizers' }] },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    const gone = await failure(() => custom.getNamespacedCustomObject({ group: 'aadpodidentity.k8s.io', version: 'v1', namespace: 'default', plural: 'azureassignedidentities', name: 'pod-default-id1' }));
    expect(gone.code).toBe(404);
    expect(h.metrics.count({ verb: 'create', resource: 'azureassignedidentities.aadpodidentity.k8s.io', status: 201 })).toBe(1);
  });
});

describe('watch', () => {
  it('streams events from a resourceVersion with the real Watch client, filtered by label', async () => {
    const list = await core.listNamespacedConfigMap({ namespace: 'default' });
    const events: string[] = [];
    const watch = new Watch(h.kc);
    const ctl = await watch.watch(
      '/api/v1/namespaces/default/configmaps',
      { resourceVersion: list.metadata?.resourceVersion, labelSelector: 'watched=yes' },
      (type, obj) => events.push(`${type} ${obj.metadata.name}`),
      () => undefined,
    );
    try {
      await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'cm1', labels: { watched: 'yes' } }, data: { a: '1' } } });
      await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'cm-other' } } });
      await core.patchNamespacedConfigMap({ name: 'cm1', namespace: 'default', body: { data: { a: '2' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      // Dropping the label takes the object out of the watch's view: a DELETED event.
      await core.patchNamespacedConfigMap({ name: 'cm1', namespace: 'default', body: { metadata: { labels: { watched: null } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      await waitFor(() => events.length >= 3, 'three watch events');
      expect(events).toEqual(['ADDED cm1', 'MODIFIED cm1', 'DELETED cm1']);
    } finally {
      ctl.abort();
    }
    expect(h.metrics.count({ verb: 'watch', resource: 'configmaps' })).toBe(1);
  });

  it('watches a single object by name, starting with its current state', async () => {
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'solo' } } });
    const res = await rawRequest('GET', '/api/v1/namespaces/default/configmaps/solo?watch=1');
    const lines = res.body.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => `${l.type} ${l.object.metadata.name}`)).toEqual(['ADDED solo']);
  });

  it('sends a 410 Expired ERROR event for a resourceVersion older than the history window', async () => {
    // The store's history starts after the bootstrap writes, so resourceVersion 1 is too old.
    const res = await rawRequest('GET', '/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1');
    const first = JSON.parse(res.body.split('\n')[0]);
    expect(first.type).toBe('ERROR');
    expect(first.object).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' });
  });
});

describe('faults', () => {
  it('answers a status rule with v1.Status and Retry-After', async () => {
    const id = h.faults.add({ api: 'kube', method: 'GET', path: '^/api/v1/namespaces/default/secrets$', times: 1, action: { kind: 'status', status: 429, retryAfterSeconds: 3 } });
    const res = await rawRequest('GET', '/api/v1/namespaces/default/secrets');
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('3');
    expect(JSON.parse(res.body)).toMatchObject({ kind: 'Status', reason: 'TooManyRequests', code: 429, details: { retryAfterSeconds: 3 } });
    const again = await rawRequest('GET', '/api/v1/namespaces/default/secrets');
    expect(again.status).toBe(200);
    h.faults.remove(id);
  });

  it('applies a held mutation but answers only once the rule is removed', async () => {
    const id = h.faults.add({ api: 'kube', method: 'POST', path: '/configmaps$', action: { kind: 'hold-response' } });
    const held = new Promise<{ ruleId: string }>((resolve) => h.faults.once('held', resolve));
    let answered = false;
    const pending = core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'held-cm' } } }).then((r) => {
      answered = true;
      return r;
    });
    await held;
    // The write is applied while the answer is held back.
    expect(h.store.peek(h.store.typeOrThrow('', 'configmaps'), 'default', 'held-cm')).toBeDefined();
    expect(answered).toBe(false);
    h.faults.remove(id);
    const created = await pending;
    expect(created.metadata?.name).toBe('held-cm');
  });
});

describe('faults: a client that gives up on a held answer', () => {
  it('keeps the applied write, drops the answer and keeps serving', async () => {
    const countedBefore = h.metrics.count({ verb: 'create', resource: 'configmaps', status: 201 });
    const id = h.faults.add({ api: 'kube', method: 'POST', path: '/namespaces/default/configmaps$', action: { kind: 'hold-response' } });
    const https = await import('node:https');
    const held = new Promise((resolve) => h.faults.once('held', resolve));
    const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'abandoned' } });
    const req = https.request(`${h.server.url}/api/v1/namespaces/default/configmaps`, {
      method: 'POST',
      ca: h.tls.caPem,
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
    });
    req.on('error', () => undefined);
    req.end(body);
    await held;
    req.destroy();
    await waitFor(() => req.socket?.destroyed ?? true, 'the client socket to close');
    h.faults.remove(id);
    expect(h.store.peek(h.store.typeOrThrow('', 'configmaps'), 'default', 'abandoned')).toBeDefined();
    await waitFor(() => h.metrics.count({ verb: 'create', resource: 'configmaps', status: 201 }) === countedBefore + 1, 'the held request to be counted');
    const list = await core.listNamespacedConfigMap({ namespace: 'default', fieldSelector: 'metadata.name=abandoned' });
    expect(list.items).toHaveLength(1);
  });
});

describe('discovery', () => {
  it('reports version 1.32, the eviction subresource and the core resources', async () => {
    const v = JSON.parse((await rawRequest('GET', '/version')).body);
    expect(v.gitVersion).toMatch(/^v1\.32\./);
    const core = JSON.parse((await rawRequest('GET', '/api/v1')).body);
    const eviction = core.resources.find((r: any) => r.name === 'pods/eviction');
    expect(eviction).toMatchObject({ group: 'policy', version: 'v1', kind: 'Eviction', verbs: ['create'], namespaced: true });
    expect(core.resources.find((r: any) => r.name === 'pods')).toMatchObject({ kind: 'Pod', shortNames: ['po'], singularName: 'pod', categories: ['all'] });
    const groups = JSON.parse((await rawRequest('GET', '/apis')).body);
    expect(groups.groups.map((g: any) => g.name)).toEqual(expect.arrayContaining(['apps', 'batch', 'policy', 'rbac.authorization.k8s.io', 'apiextensions.k8s.io', 'coordination.k8s.io']));
    // A protobuf-preferring client (client-go's default Accept) gets JSON.
    const proto = await rawRequestWithAccept('/api/v1/namespaces/default', 'application/vnd.kubernetes.protobuf, */*');
    expect(proto.headers['content-type']).toBe('application/json');
    expect(JSON.parse(proto.body)).toMatchObject({ kind: 'Namespace', status: { phase: 'Active' } });
    const health = await rawRequest('GET', '/readyz');
    expect(health).toMatchObject({ status: 200, body: 'ok' });
  });
});

/** One HTTPS request trusting the sandbox CA, with the bearer token. */
async function rawRequest(method: string, path: string, body?: string, contentType = 'application/json', withToken = true): Promise<{ status: number; body: string; headers: Record<string, string> }> {
  const https = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = https.request(`${h.server.url}${path}`, { method, ca: h.tls.caPem, headers: { ...(withToken ? { authorization: `Bearer ${h.token}` } : {}), 'content-type': contentType, ...(body ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      // A watch stream never ends by itself: answer with what the first chunk carried.
      if (path.includes('watch=1')) {
        res.once('data', () => {
          resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers as Record<string, string> });
          req.destroy();
        });
      }
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers as Record<string, string> }));
    });
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    if (body) req.write(body);
    req.end();
  });
}

/** A GET with a chosen Accept header. */
async function rawRequestWithAccept(path: string, accept: string): Promise<{ status: number; body: string; headers: Record<string, string> }> {
  const https = await import('node:https');
  return new Promise((resolve, reject) => {
    https
      .get(`${h.server.url}${path}`, { ca: h.tls.caPem, headers: { authorization: `Bearer ${h.token}`, accept } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers as Record<string, string> }));
      })
      .on('error', reject);
  });
}
