import { describe, expect, it } from 'vitest';
import { KINDS } from '../../src/kube/kinds.ts';
import type { KubeObject } from '../../src/kube/gateway.ts';
import { ReadSnapshot, kindsChangedBy, snapshotKubeGateway } from '../../src/kube/read-snapshot.ts';
import { parseFieldSelector, parseLabelSelector } from '../../src/kube/selectors.ts';
import { inventoryStep } from '../../src/steps/01-inventory.ts';
import { FakeKube, contextFor, idOf, standardCluster, tempDir } from '../steps/fakes.ts';

const pod = (ns: string, name: string, labels: Record<string, string>, nodeName?: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, labels },
  spec: nodeName ? { nodeName } : {},
  status: { phase: 'Running' },
});

function cluster(): FakeKube {
  const kube = new FakeKube();
  kube.add(pod('payments', 'api-0', { app: 'api', aadpodidbinding: 'api', tier: 'web' }, 'node-a'));
  kube.add(pod('payments', 'api-1', { app: 'api', aadpodidbinding: 'api', tier: 'web' }, 'node-b'));
  kube.add(pod('batch', 'job-0', { app: 'job', tier: 'batch' }, 'node-a'));
  kube.add(pod('batch', 'pending-0', { app: 'job' }));
  kube.add({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } });
  kube.add({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-b' } });
  kube.add({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'mic', namespace: 'default' }, spec: { replicas: 2 } });
  return kube;
}

const names = (objs: KubeObject[]) => objs.map((o) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name}`).sort();

describe('selectors', () => {
  it('match labels and fields as the API server does', () => {
    const o = pod('payments', 'api-0', { app: 'api', tier: 'web' }, 'node-a');
    const yes = (sel: string) => parseLabelSelector(sel)!(o);
    expect([yes('app'), yes('!app'), yes('app=api'), yes('app==api'), yes('app!=api'), yes('missing!=x'), yes('app in (api, job)'), yes('app notin (api)'), yes('missing notin (x)'), yes('app=api,tier=web'), yes('app=api,tier=batch')]).toEqual([
      true, false, true, true, false, true, true, false, true, true, false,
    ]);
    expect(parseFieldSelector('spec.nodeName=node-a')!(o)).toBe(true);
    expect(parseFieldSelector('spec.nodeName!=node-a,metadata.namespace=payments')!(o)).toBe(false);
    expect(parseFieldSelector('spec.nodeName=')!(pod('b', 'p', {}))).toBe(true);
    expect(parseFieldSelector('status.phase==Running,metadata.name=api-0')!(o)).toBe(true);
    // Not understood here: the query goes to the server instead.
    expect(parseLabelSelector('app in (a')).toBeUndefined();
    expect(parseLabelSelector('app=a b')).toBeUndefined();
    expect(parseFieldSelector('spec.nodeName~node')).toBeUndefined();
  });
});

describe('read snapshot over the Kubernetes gateway', () => {
  it('in shared mode lists each kind once and answers filtered lists and gets from that list', async () => {
    const kube = cluster();
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    const results = await reads.run('shared', async () => ({
      bound: await gw.list(KINDS.Pod, { labelSelector: 'aadpodidbinding' }),
      inNs: await gw.list(KINDS.Pod, { namespace: 'batch' }),
      onNode: await gw.list(KINDS.Pod, { fieldSelector: 'spec.nodeName=node-a' }),
      setBased: await gw.list(KINDS.Pod, { labelSelector: 'tier in (web,batch),app!=job' }),
      unscheduled: await gw.list(KINDS.Pod, { namespace: 'batch', fieldSelector: 'spec.nodeName=' }),
      all: await gw.list(KINDS.Pod),
      nodes: await gw.list(KINDS.Node),
      node: await gw.get(KINDS.Node, undefined, 'node-b'),
      missing: await gw.get(KINDS.Pod, 'payments', 'api-9'),
      mic: await gw.get(KINDS.Deployment, 'default', 'mic'),
      micAgain: await gw.get(KINDS.Deployment, 'default', 'mic'),
    }));
    expect(names(results.bound)).toEqual(['payments/api-0', 'payments/api-1']);
    expect(names(results.inNs)).toEqual(['batch/job-0', 'batch/pending-0']);
    expect(names(results.onNode)).toEqual(['batch/job-0', 'payments/api-0']);
    expect(names(results.setBased)).toEqual(['payments/api-0', 'payments/api-1']);
    expect(names(results.unscheduled)).toEqual(['batch/pending-0']);
    expect(results.all).toHaveLength(4);
    expect(results.node?.metadata?.name).toBe('node-b');
    expect(results.missing).toBeUndefined();
    expect(results.mic?.spec).toEqual({ replicas: 2 });
    // One list of pods, one of nodes; the node came from its list; the deployment was read once.
    expect(kube.reads).toEqual(['list Pod', 'list Node', 'get Deployment']);
    expect(reads.stats()).toMatchObject({ fills: 3 });
  });

  it('keeps lists larger than one compressed chunk whole', async () => {
    const kube = new FakeKube();
    for (let i = 0; i < 1234; i++) kube.add(pod(`ns${i % 3}`, `p-${String(i).padStart(4, '0')}`, { app: i % 2 ? 'odd' : 'even', i: String(i) }, `node-${i % 7}`));
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    const all = await reads.run('shared', () => gw.list(KINDS.Pod));
    const again = await reads.run('shared', () => gw.list(KINDS.Pod));
    expect(again).toEqual(all);
    expect(again[0]).not.toBe(all[0]);
    const odd = await reads.run('shared', () => gw.list(KINDS.Pod, { namespace: 'ns2', labelSelector: 'app=odd', fieldSelector: 'spec.nodeName=node-3' }));
    expect(names(odd)).toEqual(names(await kube.list(KINDS.Pod)).filter((n) => {
      const i = Number(n.split('-')[1]);
      return i % 3 === 2 && i % 2 === 1 && i % 7 === 3;
    }));
    expect((await reads.run('shared', () => gw.get(KINDS.Pod, 'ns0', 'p-1233')))?.metadata?.labels?.i).toBe('1233');
    expect(kube.reads.filter((r) => r === 'list Pod')).toHaveLength(2);
  });

  it('reads live outside a shared run, and hands out copies that cannot change the snapshot', async () => {
    const kube = cluster();
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    await gw.list(KINDS.Node);
    await gw.list(KINDS.Node);
    expect(kube.reads).toEqual(['list Node', 'list Node']);
    await reads.run('shared', async () => {
      const first = await gw.list(KINDS.Pod, { namespace: 'payments' });
      first[0].metadata!.labels!.app = 'changed';
      const again = await gw.get(KINDS.Pod, 'payments', first[0].metadata!.name!);
      expect(again?.metadata?.labels?.app).toBe('api');
    });
    await reads.run('live', async () => {
      await gw.list(KINDS.Pod, { namespace: 'payments' });
    });
    expect(kube.reads.filter((r) => r === 'list Pod')).toHaveLength(2);
  });

  it('a write drops its kind and what controllers derive from it, and nothing else', async () => {
    const kube = cluster();
    kube.add({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity', metadata: { name: 'aai', namespace: 'payments' } });
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    const readAll = () => reads.run('shared', () => Promise.all([gw.list(KINDS.Pod), gw.list(KINDS.Node), gw.list(KINDS.Deployment), gw.list(KINDS.AzureAssignedIdentity), gw.list(KINDS.AzureIdentityBinding)]));
    await readAll();
    kube.reads.length = 0;
    // An apply (live) scales MIC: its deployment, replica sets and pods (and MIC's assignments) may change; nodes did not.
    await reads.run('live', () => gw.scale('default', 'mic', 0));
    await readAll();
    expect(kube.reads.sort()).toEqual(['list AzureAssignedIdentity', 'list Deployment', 'list Pod']);
    expect((await reads.run('shared', () => gw.list(KINDS.Pod))).filter((p) => p.metadata?.labels?.app === 'mic')).toEqual([]);

    kube.reads.length = 0;
    await gw.create({ apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding', metadata: { name: 'copy', namespace: 'batch' }, spec: { azureIdentity: 'x', selector: 'y' } });
    await readAll();
    expect(kube.reads.sort()).toEqual(['list AzureAssignedIdentity', 'list AzureIdentityBinding']);
    expect(names(await reads.run('shared', () => gw.list(KINDS.AzureIdentityBinding)))).toEqual(['batch/copy']);

    expect(kindsChangedBy('CustomResourceDefinition')).toBe('*');
    kube.reads.length = 0;
    await gw.delete(KINDS.CustomResourceDefinition, undefined, 'azureassignedidentities.aadpodidentity.k8s.io');
    await readAll();
    expect(kube.reads).toHaveLength(5);
  });

  it('a failed write still invalidates (it may have landed), a failed read is not kept', async () => {
    const kube = cluster();
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    await reads.run('shared', () => gw.list(KINDS.Deployment));
    await expect(gw.patch(KINDS.Deployment, 'default', 'absent', [], 'json')).rejects.toThrow(/not found|NotFound/);
    expect(reads.keys()).toEqual([]);
    let fail = true;
    const flaky = Object.assign(Object.create(kube) as FakeKube, {
      list: async () => {
        if (fail) throw new Error('connection reset');
        return kube.list(KINDS.Node);
      },
    });
    const gw2 = snapshotKubeGateway(flaky, reads);
    await expect(reads.run('shared', () => gw2.list(KINDS.Node))).rejects.toThrow('connection reset');
    fail = false;
    expect(await reads.run('shared', () => gw2.list(KINDS.Node))).toHaveLength(2);
  });

  it('shares one request between concurrent readers and between scoped views', async () => {
    const kube = cluster();
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    const scoped = gw.scoped({ signal: new AbortController().signal });
    await reads.run('shared', () => Promise.all([gw.list(KINDS.Pod), scoped.list(KINDS.Pod, { namespace: 'batch' }), scoped.get(KINDS.Pod, 'batch', 'job-0')]));
    expect(kube.reads).toEqual(['list Pod']);
  });

  it('reads inside waitFor probes are live, so a wait sees the cluster change', async () => {
    const kube = cluster();
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    await reads.run('shared', async () => {
      await gw.list(KINDS.Node);
      let polls = 0;
      const seen = await gw.waitFor(async () => {
        if (++polls === 3) kube.add({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-c' } });
        const nodes = await gw.list(KINDS.Node);
        return nodes.length === 3 ? nodes : undefined;
      }, { describe: 'a third node', timeoutMs: 1000 });
      expect(seen).toHaveLength(3);
      // The wait's live reads dropped the older shared read: the next one sees the change too.
      expect(await gw.list(KINDS.Node)).toHaveLength(3);
    });
  });

  it('entries expire after maxAgeMs', async () => {
    let now = 0;
    const kube = cluster();
    const reads = new ReadSnapshot({ maxAgeMs: 1000, now: () => now });
    const gw = snapshotKubeGateway(kube, reads);
    await reads.run('shared', () => gw.list(KINDS.Node));
    now = 999;
    await reads.run('shared', () => gw.list(KINDS.Node));
    now = 2001;
    await reads.run('shared', () => gw.list(KINDS.Node));
    expect(kube.reads).toEqual(['list Node', 'list Node']);
  });

  it('a selector it does not understand is sent to the server as it is', async () => {
    const kube = cluster();
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    const calls: unknown[] = [];
    const spy = Object.assign(Object.create(kube) as FakeKube, {
      list: async (ref: typeof KINDS.Pod, opts?: object) => {
        calls.push(opts ?? {});
        return kube.list(ref, opts);
      },
    });
    const g = snapshotKubeGateway(spy, reads);
    await reads.run('shared', () => g.list(KINDS.Pod, { labelSelector: 'app=api b' }));
    await reads.run('shared', () => g.list(KINDS.Pod, { labelSelector: 'app=api b' }));
    expect(calls).toEqual([{ labelSelector: 'app=api b' }]);
  });

  it('phases: plan and check share reads; apply and rollback read live and drop what they read', async () => {
    const kube = cluster();
    const reads = new ReadSnapshot();
    const gw = snapshotKubeGateway(kube, reads);
    await reads.during('plan', () => Promise.all([gw.list(KINDS.Node), gw.list(KINDS.Pod), gw.get(KINDS.Deployment, 'default', 'mic')]));
    await reads.during('plan', () => Promise.all([gw.list(KINDS.Node), gw.list(KINDS.Pod)]));
    expect(kube.reads).toEqual(['list Node', 'list Pod', 'get Deployment']);
    kube.reads.length = 0;
    // An apply that writes nothing but waits on the Deployment (a resumed run whose rollout is under way).
    await reads.during('apply', () => gw.waitFor(async () => gw.get(KINDS.Deployment, 'default', 'mic'), { describe: 'mic', timeoutMs: 100 }));
    await reads.during('check', () => Promise.all([gw.list(KINDS.Node), gw.list(KINDS.Pod), gw.get(KINDS.Deployment, 'default', 'mic')]));
    expect(kube.reads).toEqual(['get Deployment', 'get Deployment']);
    kube.reads.length = 0;
    await reads.during('rollback', () => gw.list(KINDS.Node));
    await reads.during('plan', () => gw.list(KINDS.Node));
    expect(kube.reads).toEqual(['list Node', 'list Node']);
  });

  it('two inventory plans in one command read the cluster once, and an identity that cannot be assigned is a blocker in both', async () => {
    const { kube, azure } = standardCluster();
    azure.denied.add(idOf('api-id').toLowerCase());
    let permissionReads = 0;
    const canAssign = azure.canAssign.bind(azure);
    azure.canAssign = async (id) => {
      permissionReads++;
      return canAssign(id);
    };
    const { snapshotAzureGateway } = await import('../../src/azure/read-snapshot.ts');
    const reads = new ReadSnapshot();
    const ctx = await contextFor('inventory', kube, azure, tempDir());
    const shared = { ...ctx, kube: snapshotKubeGateway(kube, reads), azure: snapshotAzureGateway(azure, reads) };
    const first = await reads.during('plan', () => inventoryStep.plan(shared));
    const readsAfterFirst = kube.reads.length;
    const second = await reads.during('plan', () => inventoryStep.plan(shared));
    expect(kube.reads.length).toBe(readsAfterFirst);
    expect(new Set(kube.reads).size).toBe(kube.reads.length);
    for (const plan of [first, second]) expect(plan.blockers.map((b) => `${b.code} ${b.subject}`)).toEqual(['cannot-assign-identity azureidentity payments/api-id']);
    expect(second.actions).toEqual(first.actions);
    // One permission read per identity scope.
    expect(permissionReads).toBe(2);
  });
});
