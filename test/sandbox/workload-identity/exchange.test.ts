/**
 * Workload identity end to end on the pod side, through `@kubernetes/client-node`, the real
 * `@azure/arm-msi` client and stock kubectl over HTTPS: the webhook's env and projected
 * volume, a probe pod that exchanges its projected token with curl (AADSTS70021 while the
 * new federated credential propagates, then a token with the identity's claims), the proxy
 * sidecar answering IMDS requests, TokenRequest through `kubectl create token`, and the
 * outage meter's causes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startSandbox, until, type SandboxHarness } from '../../helpers/sandbox.ts';
import { httpsRequest, jwtClaims, WI_SCENARIO } from './helpers.ts';

const AUD = ['api://AzureADTokenExchange'];
const ENABLED = (extra = '') => WI_SCENARIO(`workloadIdentity:\n  oidcIssuerEnabled: true\n  enabled: true\n  propagationSeconds: 60\n  credentialWriteSeconds: 1\n${extra}`);

/**
 * What a probe pod runs: the client-assertion exchange with curl, retried every 5 s. Only the
 * JWT payload segment of a token is printed (`cut -d. -f2`), never a usable token; on failure
 * the AADSTS code.
 */
export function exchangeScript(attempts: number): string {
  return [
    `for i in ${Array.from({ length: attempts }, (_, i) => i + 1).join(' ')}; do`,
    `  curl -s -m 30 -o /tmp/token-response -w '%{http_code}' -X POST \\`,
    `    -d grant_type=client_credentials -d "client_id=$AZURE_CLIENT_ID" \\`,
    `    --data-urlencode "scope=https://management.azure.com/.default" \\`,
    `    -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \\`,
    `    -d "client_assertion=$(cat $AZURE_FEDERATED_TOKEN_FILE)" \\`,
    `    "\${AZURE_AUTHORITY_HOST}\${AZURE_TENANT_ID}/oauth2/v2.0/token" > /tmp/status`,
    `  code=$(cat /tmp/status)`,
    `  if [ "$code" = "200" ]; then echo "probe-status 200 attempt $i"; printf 'probe-claims '; cut -d. -f2 /tmp/token-response; exit 0; fi`,
    `  echo "probe-status $code attempt $i $(cut -d'"' -f8 /tmp/token-response | cut -d: -f1)"`,
    `  sleep 5`,
    `done`,
    `exit 1`,
  ].join('\n');
}

let h: SandboxHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function serviceAccount(h: SandboxHarness, name: string, annotations: Record<string, string> = {}): Promise<void> {
  await h.core.createNamespacedServiceAccount({ namespace: 'apps', body: { metadata: { name, annotations } } });
}

function identity(h: SandboxHarness, name: string) {
  const i = h.sb.arm.identity(name)!;
  return { clientId: i.clientId, principalId: i.principalId, id: i.id };
}

async function podPhase(h: SandboxHarness, name: string): Promise<string> {
  return (await h.core.readNamespacedPod({ name, namespace: 'apps' })).status?.phase ?? '';
}

function claimsFromLog(log: string): Record<string, any> {
  const line = log.split('\n').find((l) => l.startsWith('probe-claims '));
  if (!line) throw new Error(`no claims in log:\n${log}`);
  return JSON.parse(Buffer.from(line.slice('probe-claims '.length).trim(), 'base64url').toString('utf8'));
}

describe('workload identity pods', () => {
  it('injects env and the projected token volume; a probe pod gets AADSTS70021 while the credential propagates, then the identity\'s token', async () => {
    h = await startSandbox({ scenario: ENABLED(), timeScale: 20, churn: false });
    const app = identity(h, 'app-id');
    await serviceAccount(h, 'app', { 'azure.workload.identity/client-id': app.clientId });
    const issuer = h.sb.workloadIdentity!.state.issuerUrl!;
    await h.arm.msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', 'apps-app', { issuer, subject: 'system:serviceaccount:apps:app', audiences: AUD });
    await h.core.createNamespacedPod({
      namespace: 'apps',
      body: {
        metadata: { name: 'wi-probe', labels: { 'azure.workload.identity/use': 'true', 'podid-migrate.io/probe': 'true' } },
        spec: { serviceAccountName: 'app', restartPolicy: 'Never', containers: [{ name: 'probe', image: 'curlimages/curl:8.11.1', command: ['sh', '-c', exchangeScript(30)] }] },
      },
    });

    const pod = await h.core.readNamespacedPod({ name: 'wi-probe', namespace: 'apps' });
    const env = Object.fromEntries((pod.spec!.containers[0].env ?? []).map((e) => [e.name, e.value]));
    expect(env).toEqual({
      AZURE_CLIENT_ID: app.clientId,
      AZURE_TENANT_ID: h.sb.scenario.tenantId,
      AZURE_FEDERATED_TOKEN_FILE: '/var/run/secrets/azure/tokens/azure-identity-token',
      AZURE_AUTHORITY_HOST: 'https://login.microsoftonline.com/',
    });
    expect(pod.spec!.containers[0].volumeMounts).toContainEqual({ name: 'azure-identity-token', mountPath: '/var/run/secrets/azure/tokens', readOnly: true });
    expect(pod.spec!.volumes).toContainEqual(expect.objectContaining({
      name: 'azure-identity-token',
      projected: expect.objectContaining({ sources: [{ serviceAccountToken: { audience: 'api://AzureADTokenExchange', expirationSeconds: 3600, path: 'azure-identity-token' } }] }),
    }));

    await until('the probe pod to finish', async () => ['Succeeded', 'Failed'].includes(await podPhase(h!, 'wi-probe')), 60_000);
    const log = await h.core.readNamespacedPodLog({ name: 'wi-probe', namespace: 'apps' });
    expect(`${await podPhase(h, 'wi-probe')}\n${log}`).toMatch(/^Succeeded\n/);
    const statuses = log.split('\n').filter((l) => l.startsWith('probe-status'));
    // The credential was created just before: the first attempts meet the propagation delay.
    expect(statuses[0]).toMatch(/^probe-status 400 attempt 1 AADSTS70021$/);
    expect(statuses.at(-1)).toMatch(/^probe-status 200 attempt \d+$/);
    const attempts = Number(statuses.at(-1)!.split(' ')[3]);
    // 60 s of propagation at one attempt per 5 s: the success comes after about 12 attempts.
    expect(attempts).toBeGreaterThanOrEqual(11);
    expect(attempts).toBeLessThanOrEqual(15);
    const claims = claimsFromLog(log);
    expect(claims.oid).toBe(app.principalId);
    expect(claims.appid).toBe(app.clientId);
    expect(claims.tid).toBe(h.sb.scenario.tenantId);
    expect(claims.aud).toBe('https://management.azure.com');
    expect(String(claims.xms_mirid).toLowerCase()).toBe(app.id.toLowerCase());
    expect(log).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/);
    // Every attempt reached the token endpoint from the pod network.
    expect(h.sb.metrics.count({ api: 'entra', caller: 'pod', resource: 'token', status: 200 })).toBe(1);
    expect(h.sb.metrics.count({ api: 'entra', caller: 'pod', resource: 'token', status: 400 })).toBe(attempts - 1);

    // Stock kubectl shows the injected env.
    const yaml = await h.kubectl(['get', 'pod', 'wi-probe', '-n', 'apps', '-o', 'yaml']);
    expect(yaml).toContain('name: AZURE_FEDERATED_TOKEN_FILE');
    expect(yaml).toContain('value: /var/run/secrets/azure/tokens/azure-identity-token');
  });

  it('leaves unlabelled pods alone and refuses a proxy sidecar on a hostNetwork pod', async () => {
    h = await startSandbox({ scenario: ENABLED(), timeScale: 20, churn: false });
    await serviceAccount(h, 'app', { 'azure.workload.identity/client-id': identity(h, 'app-id').clientId });
    await h.core.createNamespacedPod({ namespace: 'apps', body: { metadata: { name: 'plain' }, spec: { serviceAccountName: 'app', containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10' }] } } });
    const plain = await h.core.readNamespacedPod({ name: 'plain', namespace: 'apps' });
    expect(plain.spec!.containers[0].env ?? []).toEqual([]);
    let refused = '';
    try {
      await h.kubectl(['apply', '-f', '-'], {
        input: JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'hostnet', namespace: 'apps', labels: { 'azure.workload.identity/use': 'true' }, annotations: { 'azure.workload.identity/inject-proxy-sidecar': 'true' } }, spec: { hostNetwork: true, serviceAccountName: 'app', containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10' }] } }),
      });
    } catch (e) {
      refused = (e as Error).message;
    }
    expect(refused).toContain('admission webhook "mutation.azure-workload-identity.io" denied the request: hostNetwork is set to true, cannot inject proxy sidecar');

    // The add-on's webhook runs in kube-system; with no ready webhook pod, labelled pods are refused (failurePolicy Fail).
    await h.kubectl(['scale', 'deployment/azure-wi-webhook-controller-manager', '-n', 'kube-system', '--replicas=0']);
    await until('no webhook pod', async () => (await h!.core.listNamespacedPod({ namespace: 'kube-system', labelSelector: 'azure-workload-identity.io/system=true' })).items.length === 0, 30_000);
    const down = await h.kubectl(['run', 'late', '-n', 'apps', '--image=registry.k8s.io/pause:3.10', '--labels=azure.workload.identity/use=true']).catch((e: Error) => e.message);
    expect(down).toContain('Internal error occurred: failed calling webhook "mutation.azure-workload-identity.io"');
    expect(down).toContain('no endpoints available for service "azure-wi-webhook-webhook-service"');
    // Unlabelled pods are not sent to the webhook at all.
    await h.kubectl(['run', 'unlabelled', '-n', 'apps', '--image=registry.k8s.io/pause:3.10']);
  });

  it('the proxy sidecar answers IMDS token requests of an old SDK by doing the exchange', async () => {
    h = await startSandbox({ scenario: ENABLED('  federatedCredentials: [{ identity: app-id, name: apps-legacy, namespace: apps, serviceAccount: legacy }]\n'), timeScale: 20, churn: false });
    const app = identity(h, 'app-id');
    await serviceAccount(h, 'legacy', { 'azure.workload.identity/client-id': app.clientId });
    const url = 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net';
    await h.core.createNamespacedPod({
      namespace: 'apps',
      body: {
        metadata: { name: 'legacy', labels: { 'azure.workload.identity/use': 'true', 'podid-migrate.io/probe': 'true' }, annotations: { 'azure.workload.identity/inject-proxy-sidecar': 'true' } },
        spec: {
          serviceAccountName: 'legacy',
          restartPolicy: 'Never',
          containers: [{ name: 'app', image: 'curlimages/curl:8.11.1', command: ['sh', '-c', `curl -sf --retry 10 --retry-connrefused --retry-delay 1 -H Metadata:true '${url}' | cut -d. -f2`] }],
        },
      },
    });
    const pod = await h.core.readNamespacedPod({ name: 'legacy', namespace: 'apps' });
    expect(pod.spec!.initContainers!.map((c) => c.name)).toEqual(['azwi-proxy-init']);
    expect(pod.spec!.initContainers![0].securityContext).toMatchObject({ privileged: true, capabilities: { add: ['NET_ADMIN'] } });
    expect(pod.spec!.containers.map((c) => c.name)).toEqual(['azwi-proxy', 'app']);
    expect(pod.spec!.containers[0].args).toEqual(['--proxy-port=8000', '--log-level=info']);
    await until('the app container to finish', async () => {
      const p = await h!.core.readNamespacedPod({ name: 'legacy', namespace: 'apps' });
      return p.status?.containerStatuses?.find((c) => c.name === 'app')?.state?.terminated;
    }, 60_000);
    const log = await h.core.readNamespacedPodLog({ name: 'legacy', namespace: 'apps', container: 'app' });
    const claims = JSON.parse(Buffer.from(log.trim(), 'base64url').toString('utf8'));
    expect(claims).toMatchObject({ appid: app.clientId, oid: app.principalId, aud: 'https://vault.azure.net' });
  });

  it('kubectl create token uses the TokenRequest subresource; the loopback token endpoint exchanges it', async () => {
    h = await startSandbox({ scenario: ENABLED('  federatedCredentials: [{ identity: other-id, name: apps-tool, namespace: apps, serviceAccount: tool }]\n'), timeScale: 20, churn: false });
    await serviceAccount(h, 'tool');
    const token = (await h.kubectl(['create', 'token', 'tool', '-n', 'apps', '--audience', 'api://AzureADTokenExchange', '--duration', '1h'])).trim();
    const issuer = h.sb.workloadIdentity!.state.issuerUrl!;
    const tc = jwtClaims(token);
    expect(tc).toMatchObject({ iss: issuer, sub: 'system:serviceaccount:apps:tool', aud: ['api://AzureADTokenExchange'] });
    expect(tc.exp - tc.iat).toBe(3600);
    const tooShort = await h.kubectl(['create', 'token', 'tool', '-n', 'apps', '--duration', '5m']).catch((e: Error) => e.message);
    expect(tooShort).toMatch(/may not specify a duration less than 10 minutes/);

    // The control API and the env file tell loopback clients where the token endpoint is.
    const control = JSON.parse(await h.kubectl(['get', '--raw', '/_sandbox/workload-identity']));
    expect(control).toMatchObject({ oidcIssuerEnabled: true, workloadIdentityEnabled: true, issuerUrl: issuer, authorityUrl: h.sb.workloadIdentity!.authorityUrl });
    expect(control.federatedCredentials).toEqual([expect.objectContaining({ subject: 'system:serviceaccount:apps:tool', issuer })]);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(h.files.envFile, 'utf8')).toContain(`export PODID_MIGRATE_SANDBOX_AUTHORITY_HOST='${h.sb.workloadIdentity!.authorityUrl}'`);

    const other = identity(h, 'other-id');
    const form = (clientId: string, assertion: string) =>
      new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, scope: 'https://management.azure.com/.default', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }).toString();
    const url = `${h.sb.workloadIdentity!.authorityUrl}${h.sb.scenario.tenantId}/oauth2/v2.0/token`;
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    // A throttling rule on the token endpoint answers as Entra does, once.
    h.sb.faults.add({ api: 'entra', method: 'POST', path: '/oauth2/v2.0/token$', times: 1, action: { kind: 'status', status: 429, retryAfterSeconds: 3 } });
    const throttled = await httpsRequest(url, h.sb.caPem, { method: 'POST', body: form(other.clientId, token), headers });
    expect(throttled.status).toBe(429);
    expect(JSON.parse(throttled.body)).toMatchObject({ error: 'temporarily_unavailable', error_codes: [90055] });
    const ok = await httpsRequest(url, h.sb.caPem, { method: 'POST', body: form(other.clientId, token), headers });
    expect(ok.status).toBe(200);
    const body = JSON.parse(ok.body);
    expect(body.token_type).toBe('Bearer');
    expect(jwtClaims(body.access_token)).toMatchObject({ appid: other.clientId, oid: other.principalId });
    // The same token for an identity with no credential for this subject: Entra's 70021.
    const wrong = await httpsRequest(url, h.sb.caPem, { method: 'POST', body: form(identity(h, 'app-id').clientId, token), headers });
    expect(wrong.status).toBe(400);
    const err = JSON.parse(wrong.body);
    expect(err).toMatchObject({ error: 'invalid_request', error_codes: [70021] });
    expect(err.error_description).toMatch(/^AADSTS70021: No matching federated identity record found for presented assertion\. Assertion Issuer: '.*'\. Assertion Subject: 'system:serviceaccount:apps:tool'\./);
  });
});

describe('the token endpoint with a real SDK', () => {
  it("@azure/identity's WorkloadIdentityCredential gets the identity's token from a projected-style token file", async () => {
    h = await startSandbox({ scenario: ENABLED('  federatedCredentials: [{ identity: app-id, name: apps-sdk, namespace: apps, serviceAccount: sdk }]\n'), timeScale: 20, churn: false });
    await serviceAccount(h, 'sdk');
    const token = (await h.kubectl(['create', 'token', 'sdk', '-n', 'apps', '--audience', 'api://AzureADTokenExchange'])).trim();
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'wi-sdk-'));
    try {
      const tokenFilePath = join(dir, 'azure-identity-token');
      writeFileSync(tokenFilePath, token, { mode: 0o600 });
      const { WorkloadIdentityCredential } = await import('@azure/identity');
      const app = identity(h, 'app-id');
      const cred = new WorkloadIdentityCredential({
        tenantId: h.sb.scenario.tenantId,
        clientId: app.clientId,
        tokenFilePath,
        authorityHost: h.sb.workloadIdentity!.authorityUrl,
        disableInstanceDiscovery: true,
        tlsOptions: { ca: h.sb.caPem },
      });
      const at = await cred.getToken('https://management.azure.com/.default');
      expect(jwtClaims(at.token)).toMatchObject({ appid: app.clientId, oid: app.principalId, aud: 'https://management.azure.com' });
      expect(at.expiresOnTimestamp).toBeGreaterThan(Date.now());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
