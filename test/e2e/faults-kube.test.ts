/**
 * Fault matrix, Kubernetes side: the real CLI against the sandbox with API server fault rules
 * (503/500/429 on lists, 409 on the NMI DaemonSet PATCH, 403), an unreachable server and refused
 * credentials, and a real concurrent change met by the gateway. Each failing case asserts the
 * message and exit code, no action left in `intent`, and a plain `apply --yes` that succeeds
 * once the fault is gone; the cases share one sandbox and walk steps 1-4 forward.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcurrentChangeError } from '../../src/kube/errors.ts';
import { generateSandboxTls } from '../../src/sandbox/tls.ts';
import { expectFields, KINDS } from '../../src/kube/gateway.ts';
import { addFault, expectCleanFailure, expectResume, firedOf, readJournal, removeFault, runCli, runMain, startEnv, STEPS_1_4, type Env } from './faults-harness.ts';

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The CLI environment with a changed copy of the sandbox kubeconfig. */
function withKubeconfig(env: Env, change: (kc: any) => void): Env {
  const kc = parseYaml(readFileSync(env.kubeconfig, 'utf8'));
  change(kc);
  const path = join(env.dir, `kubeconfig-${Math.random().toString(36).slice(2)}`);
  writeFileSync(path, toYaml(kc), { mode: 0o600 });
  return { ...env, cliEnv: { ...env.cliEnv, KUBECONFIG: path } };
}

describe('Kubernetes faults against the real CLI', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv({ timeScale: 100 });
  }, 90_000);
  afterAll(async () => {
    await env?.stop();
  });

  it('an unreachable API server fails within seconds naming server and context; exit 1, nothing written', async () => {
    const port = await closedPort();
    const broken = withKubeconfig(env, (kc) => (kc.clusters[0].cluster.server = `https://127.0.0.1:${port}`));
    const t0 = Date.now();
    // A child process: the figure includes the CLI's start, as an operator meets it.
    const r = await runCli(broken, ['plan']);
    const seconds = (Date.now() - t0) / 1000;
    expectCleanFailure(env, r, 1, new RegExp(`^Error: the API server https://127\\.0\\.0\\.1:${port} of kubeconfig context "\\S+" refuses connections after 3 attempts`, 'm'));
    expect(r.stderr).toContain('kubectl config get-contexts');
    expect(seconds).toBeLessThan(15);
    expect(readJournal(env)).toBeUndefined();
    console.log(`figures: unreachable API server reported after ${seconds.toFixed(1)} s (CLI start included)`);
  }, 60_000);

  it('refused credentials (401) name the context and user and how to get fresh ones; exit 1', async () => {
    const broken = withKubeconfig(env, (kc) => (kc.users[0].user.token = 'revoked-or-expired'));
    const r = await runMain(broken, ['apply', '--to', 'inventory', '--yes']);
    expectCleanFailure(env, r, 1, /refused the credentials of user "\S+" \(401 Unauthorized: missing, invalid or expired\)/);
    expect(r.stderr).toContain('az aks get-credentials');
    expect(r.all).not.toContain('revoked-or-expired');
  }, 60_000);

  it('an API server certificate from another CA is refused as untrusted, not retried; exit 1', async () => {
    const other = await generateSandboxTls();
    const broken = withKubeconfig(env, (kc) => (kc.clusters[0].cluster['certificate-authority-data'] = Buffer.from(other.caPem).toString('base64')));
    const r = await runMain(broken, ['plan']);
    expectCleanFailure(env, r, 1, /^Error: the certificate of the API server https:\/\/127\.0\.0\.1:\d+ of kubeconfig context "\S+" is not trusted \([A-Z_]+\)/m);
    expect(r.stderr).toContain('Do not turn off verification');
  }, 60_000);

  it('503 on every pod list: retried until the step deadline, named; exit 1; resume', async () => {
    const id = await addFault(env, { api: 'kube', method: 'GET', path: '^/api/v1/pods$', action: { kind: 'status', status: 503 } });
    const r = await runMain(env, ['apply', '--to', 'inventory', '--yes', '--step-timeout', '8s']);
    const fired = await firedOf(env, id);
    await removeFault(env, id);
    expect(fired).toBeGreaterThan(1);
    expectCleanFailure(env, r, 1, /list pods: giving up, the next retry would wait .* \(last failure: HTTP 503\)/);
    await expectResume(env, 'inventory', STEPS_1_4);
  }, 200_000);

  it('429 (Retry-After 1) on Deployment reads and 500 on pod lists a few times are retried within the run: exit 0', async () => {
    const throttled = await addFault(env, { api: 'kube', method: 'GET', path: '/deployments(/[^/]+)?$', times: 2, action: { kind: 'status', status: 429, retryAfterSeconds: 1 } });
    const failing = await addFault(env, { api: 'kube', method: 'GET', path: '/pods$', times: 2, action: { kind: 'status', status: 500 } });
    await expectResume(env, 'assign', STEPS_1_4);
    expect([await firedOf(env, throttled), await firedOf(env, failing)]).toEqual([2, 2]);
    await removeFault(env, throttled);
    await removeFault(env, failing);
  }, 200_000);

  it('a 409 Conflict on the NMI DaemonSet PATCH once: re-read, retried, the step goes on; one record, done', async () => {
    const id = await addFault(env, {
      api: 'kube',
      method: 'PATCH',
      path: '^/apis/apps/v1/namespaces/[^/]+/daemonsets/nmi$',
      times: 1,
      action: { kind: 'status', status: 409, message: 'Operation cannot be fulfilled on daemonsets.apps "nmi": the object has been modified; please apply your changes to the latest version and try again' },
    });
    const patchesBefore = env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'patch', resource: 'daemonsets.apps' });
    const r = await expectResume(env, 'nmi-managed', STEPS_1_4);
    expect(await firedOf(env, id)).toBe(1);
    await removeFault(env, id);
    // The conflicting PATCH and the one after the fresh read.
    expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client', verb: 'patch', resource: 'daemonsets.apps' }) - patchesBefore).toBe(2);
    expect(readJournal(env)!.steps['nmi-managed'].actions.map((a) => a.status)).toEqual(['done']);
    expect(r.stderr).toMatch(/waiting: daemonset \S+\/nmi: 409 Conflict, reading it again in \d+ ms \(attempt 2 of 5\)/);
  }, 300_000);

  it('403 on the MIC scale names the verb, resource and namespace and how to check; exit 1; resume', async () => {
    const id = await addFault(env, {
      api: 'kube',
      method: 'PATCH',
      path: '/deployments/[^/]+/scale$',
      action: { kind: 'status', status: 403, message: 'deployments.apps "mic" is forbidden: User "ops" cannot patch resource "deployments/scale" in API group "apps" in the namespace "default"' },
    });
    const r = await runMain(env, ['apply', '--nmi-rollout', 'in-place', '--to', 'mic-scale', '--yes']);
    await removeFault(env, id);
    expectCleanFailure(env, r, 1, /^Error: kubeconfig context "\S+" \(user "\S+"\) may not patch deployments\.apps\/scale in namespace \S+: deployments\.apps "mic" is forbidden/m);
    expect(r.stderr).toMatch(/kubectl auth can-i patch deployments\.apps\/scale -n \S+/);
    await expectResume(env, 'mic-scale', STEPS_1_4);
  }, 300_000);

  it('an inventory edited into an invalid one after the inventory step ran: plan and apply refuse it naming the fields, before any request reaches the cluster', async () => {
    const good = readFileSync(env.inventoryPath, 'utf8');
    const doc = parseYaml(good);
    doc.pools[0].nodes = 'many';
    doc.identities[0].resourceGroup = 'typo';
    // As an own key, the way JSON.parse reads it (an assignment would set the prototype instead).
    writeFileSync(env.inventoryPath, JSON.stringify(doc).replace(/^\{/, '{"__proto__":{"polluted":true},'));
    try {
      const before = env.sandbox.metrics.count({ api: 'kube', caller: 'client' });
      for (const args of [['plan'], ['apply', '--yes'], ['apply', '--nmi-rollout', 'in-place', '--to', 'mic-scale', '--yes']]) {
        const r = await runMain(env, args);
        expectCleanFailure(env, r, 1, /^Error: inventory \S+inventory\.yaml is not valid:$/m);
        expect(r.stderr).toContain('pools[0].nodes: must be integer (got "many")');
        expect(r.stderr).toContain('identities[0].resourceGroup: unknown field; remove it or check its spelling');
        expect(r.stderr).toContain('__proto__: a key named "__proto__" is not allowed');
      }
      expect(env.sandbox.metrics.count({ api: 'kube', caller: 'client' })).toBe(before);
    } finally {
      writeFileSync(env.inventoryPath, good);
    }
    const ok = await runMain(env, ['plan']);
    expect(ok.stderr).not.toContain('is not valid');
    expect(ok.stdout, ok.all).toMatch(/^Step 4 mic-scale +✔ already checked$/m);
  }, 60_000);

  it('a real concurrent change: a replace planned on the NMI args meets 409 after someone else changed them; the gateway stops with the diff', async () => {
    const ds = (await env.kube.get(KINDS.DaemonSet, 'default', 'nmi'))!;
    const pointer = '/spec/template/spec/containers/0/args';
    const planned = (ds.spec as any).template.spec.containers[0].args as string[];
    // Another writer (Helm, GitOps, a person) changes the args through the API server.
    const theirs = [...planned, '--log-level=5'];
    await env.kube.patch(KINDS.DaemonSet, 'default', 'nmi', [{ op: 'replace', path: pointer, value: theirs }], 'json');
    const mine = structuredClone(ds);
    mine.metadata!.labels = { ...mine.metadata!.labels, 'podid-migrate/checked': 'true' };
    const err = await env.kube.replace(mine, { precondition: expectFields({ [pointer]: planned }), rebase: (c) => ({ ...c, metadata: { ...c.metadata, labels: mine.metadata!.labels } }) }).catch((e) => e);
    expect(err).toBeInstanceOf(ConcurrentChangeError);
    expect(err.diff).toEqual([`${pointer}: planned ${JSON.stringify(planned)}, now ${JSON.stringify(theirs)}`]);
    expect(err.hint).toContain('kubectl get daemonset nmi -n default -o yaml --show-managed-fields');
    const now = (await env.kube.get(KINDS.DaemonSet, 'default', 'nmi'))!;
    expect((now.spec as any).template.spec.containers[0].args).toEqual(theirs);
    expect(now.metadata?.labels?.['podid-migrate/checked']).toBeUndefined();

    // A JSON patch carries its precondition as `test` operations: the server's 422 becomes the same diff.
    const jsonErr = await env.kube
      .patch(KINDS.DaemonSet, 'default', 'nmi', [{ op: 'test', path: pointer, value: planned }, { op: 'add', path: pointer, value: ['--operation-mode=managed'] }], 'json')
      .catch((e) => e);
    expect(jsonErr).toBeInstanceOf(ConcurrentChangeError);
    expect(jsonErr.diff).toEqual([`${pointer}: planned ${JSON.stringify(planned)}, now ${JSON.stringify(theirs)}`]);

    // The same write whose plan still holds (only a label changed meanwhile) is rebased and goes through.
    const fresh = (await env.kube.get(KINDS.DaemonSet, 'default', 'nmi'))!;
    await env.kube.patch(KINDS.DaemonSet, 'default', 'nmi', { metadata: { labels: { team: 'platform' } } }, 'merge');
    const ok = await env.kube.replace({ ...fresh, metadata: { ...fresh.metadata, labels: { ...fresh.metadata!.labels, 'podid-migrate/checked': 'true' } } }, {
      precondition: expectFields({ [pointer]: theirs }),
      rebase: (c) => ({ ...c, metadata: { ...c.metadata, labels: { ...c.metadata!.labels, 'podid-migrate/checked': 'true' } } }),
    });
    expect(ok.metadata?.labels).toMatchObject({ team: 'platform', 'podid-migrate/checked': 'true' });
  }, 60_000);
});
