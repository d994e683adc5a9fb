/**
 * Failures of the environment reach the operator as typed errors with the fix: an unreachable
 * API server (within seconds, naming server and context), an untrusted certificate, refused
 * credentials (401) and a missing permission (403, naming verb and resource).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScriptedKubeApi, type ScriptedKubeApi } from './scripted-kube-api.ts';
import { createKubeGateway, KINDS } from '../../src/kube/gateway.ts';
import { AuthenticationError, EndpointUnreachableError, PermissionDeniedError, TlsTrustError } from '../../src/engine/errors.ts';
import { generateSandboxTls } from '../../src/sandbox/tls.ts';
import { KubeClient, tlsError } from '../../src/kube/client.ts';

let api: ScriptedKubeApi;
const dir = mkdtempSync(join(tmpdir(), 'kube-env-'));
beforeAll(async () => {
  api = await startScriptedKubeApi({ pods: 1 });
});
afterAll(async () => {
  await api.close();
});

const fast = { retry: { baseDelayMs: 10 }, rateLimit: { qps: 1000, burst: 1000 } };

function kubeconfigWith(change: (kc: any) => void): string {
  const kc = JSON.parse(readFileSync(api.kubeconfigPath, 'utf8'));
  change(kc);
  const path = join(dir, `kc-${Math.random().toString(36).slice(2)}`);
  writeFileSync(path, JSON.stringify(kc), { mode: 0o600 });
  return path;
}

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('environment failures of the Kubernetes gateway', () => {
  it('connection refused: EndpointUnreachableError within seconds, naming the server and the context', async () => {
    const port = await closedPort();
    const kc = kubeconfigWith((k) => (k.clusters[0].cluster.server = `https://127.0.0.1:${port}`));
    const kube = createKubeGateway({ kubeconfig: kc, context: 'scripted-ctx', rateLimit: fast.rateLimit });
    const t0 = Date.now();
    const err = await kube.get(KINDS.Namespace, undefined, 'kube-system').catch((e) => e);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(err).toBeInstanceOf(EndpointUnreachableError);
    expect(err.message).toContain(`the API server https://127.0.0.1:${port} of kubeconfig context "scripted-ctx" refuses connections after 3 attempts`);
    expect(err.hint).toContain('kubectl config get-contexts');
    expect(err.exitCode).toBe(1);
  });

  it('a host name that does not resolve is named as such', async () => {
    const kc = kubeconfigWith((k) => (k.clusters[0].cluster.server = 'https://no-such-cluster.invalid:443'));
    const kube = createKubeGateway({ kubeconfig: kc, ...fast });
    const err = await kube.get(KINDS.Namespace, undefined, 'kube-system').catch((e) => e);
    expect(err).toBeInstanceOf(EndpointUnreachableError);
    expect(err.message).toMatch(/no-such-cluster\.invalid:443 of kubeconfig context "other" has a host name that does not resolve/);
  });

  it('a server certificate from another CA: TlsTrustError, not retried', async () => {
    const other = await generateSandboxTls();
    const kc = kubeconfigWith((k) => (k.clusters[0].cluster['certificate-authority-data'] = Buffer.from(other.caPem).toString('base64')));
    const kube = createKubeGateway({ kubeconfig: kc, ...fast });
    api.seen.length = 0;
    const err = await kube.get(KINDS.Namespace, undefined, 'kube-system').catch((e) => e);
    expect(err).toBeInstanceOf(TlsTrustError);
    expect(err.message).toMatch(/^the certificate of the API server https:\/\/127\.0\.0\.1:\d+ of kubeconfig context "other" is not trusted \([A-Z_]+\)/);
    expect(err.hint).toContain('az aks get-credentials');
    expect(api.seen).toHaveLength(0);
  });

  it('a server refusing the client certificate (TLS alert) is a credential problem, not an untrusted server', () => {
    const client = KubeClient.load({ kubeconfig: api.kubeconfigPath });
    const e = tlsError(client, 'get namespaces (GET /api/v1/namespaces/kube-system)', { kind: 'tls', code: 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', text: 'sslv3 alert certificate expired' }, undefined);
    expect(e).toBeInstanceOf(AuthenticationError);
    expect(e.message).toContain('refused the client certificate of user "tester" (ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: expired, revoked or issued for another cluster)');
    expect(tlsError(client, 'x', { kind: 'tls', code: 'CERT_HAS_EXPIRED', text: 'certificate has expired' }, undefined)).toBeInstanceOf(TlsTrustError);
  });

  it('a refused token (401): AuthenticationError naming context and user', async () => {
    const kc = kubeconfigWith((k) => (k.users[0].user.token = 'expired-token'));
    const kube = createKubeGateway({ kubeconfig: kc, ...fast });
    const err = await kube.get(KINDS.Namespace, undefined, 'kube-system').catch((e) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err.message).toMatch(/refused the credentials of user "tester" \(401 Unauthorized: missing, invalid or expired\)/);
    expect(err.message).not.toContain('expired-token');
    expect(err.hint).toContain('az aks get-credentials');
  });

  it('an exec credential plugin that cannot run (kubelogin missing): AuthenticationError naming the context', async () => {
    const kc = kubeconfigWith((k) => (k.users[0].user = { exec: { apiVersion: 'client.authentication.k8s.io/v1beta1', command: 'no-such-kubelogin', args: ['get-token'] } }));
    const kube = createKubeGateway({ kubeconfig: kc, ...fast });
    const err = await kube.get(KINDS.Namespace, undefined, 'kube-system').catch((e) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err.message).toMatch(/^cannot get credentials for kubeconfig context "other" \(user "tester"\): /);
    expect(err.hint).toContain('kubelogin convert-kubeconfig');
  });

  it('a missing permission (403) names the verb, resource and namespace, and how to check it', async () => {
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, ...fast });
    api.faults.push({
      method: 'PATCH',
      path: /daemonsets\/nmi$/,
      status: 403,
      body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Forbidden', code: 403, message: 'daemonsets.apps "nmi" is forbidden: User "tester" cannot patch resource "daemonsets" in API group "apps" in the namespace "default"' },
    });
    const err = await kube.patch(KINDS.DaemonSet, 'default', 'nmi', { metadata: { labels: { a: 'b' } } }, 'merge').catch((e) => e);
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(err.refused).toBe('patch daemonsets.apps in namespace default');
    expect(err.message).toBe('kubeconfig context "other" (user "tester") may not patch daemonsets.apps in namespace default: daemonsets.apps "nmi" is forbidden: User "tester" cannot patch resource "daemonsets" in API group "apps" in the namespace "default"');
    expect(err.hint).toContain('kubectl auth can-i patch daemonsets.apps -n default');
  });

  it('a long Retry-After wait is announced with what is awaited and a countdown', async () => {
    const lines: string[] = [];
    const kube = createKubeGateway({ kubeconfig: api.kubeconfigPath, rateLimit: fast.rateLimit, retry: { maxRetryAfterMs: 3500 }, progress: (l) => lines.push(l) });
    api.faults.push({ method: 'GET', path: /^\/api\/v1\/namespaces\/kube-system$/, status: 429, headers: { 'retry-after': '3600' } });
    await kube.get(KINDS.Namespace, undefined, 'kube-system');
    expect(lines[0]).toBe('get namespaces: HTTP 429; retrying in 3.5 s (the server asked for Retry-After 3600, capped at 3.5 s)');
  });
});
