/**
 * `plan` against the sandbox's Kubernetes API with no Azure credential configured: no sandbox
 * ARM variables, no AZURE_* variables, no Azure CLI profile (a fresh HOME), and the instance
 * metadata endpoint answering as on a machine without a managed identity (a loopback stand-in
 * through AZURE_POD_IDENTITY_AUTHORITY_HOST, so the test makes no off-host request). The
 * operator must get one message naming what was tried and how to sign in, and exit 1.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type SandboxHarness } from '../helpers/sandbox.ts';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'podid-migrate');

let h: SandboxHarness;
let imds: Server;
let imdsUrl: string;
let home: string;
let imdsRequests = 0;

beforeAll(async () => {
  h = await startSandbox({ churn: false });
  // IMDS of a VM without an identity: 400 "Identity not found".
  imds = createServer((req, res) => {
    imdsRequests += 1;
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_request', error_description: 'Identity not found' }));
  });
  await new Promise<void>((resolve) => imds.listen(0, '127.0.0.1', resolve));
  imdsUrl = `http://127.0.0.1:${(imds.address() as AddressInfo).port}`;
  home = mkdtempSync(join(tmpdir(), 'podid-nologin-'));
});

afterAll(async () => {
  await h?.close();
  await new Promise((resolve) => imds?.close(resolve));
  if (home) rmSync(home, { recursive: true, force: true });
});

/** The environment of an operator who has not signed in to Azure. */
function notSignedIn(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(AZURE_|PODID_MIGRATE_|IDENTITY_|MSI_|KUBECONFIG$|NODE_EXTRA_CA_CERTS$)/.test(k)) env[k] = v;
  }
  return {
    ...env,
    HOME: home,
    USERPROFILE: home,
    CI: 'true',
    KUBECONFIG: h.files.kubeconfig,
    PODID_MIGRATE_AKS_ID: h.sb.aksResourceId,
    AZURE_POD_IDENTITY_AUTHORITY_HOST: imdsUrl,
    ...extra,
  };
}

async function cli(args: string[], env: Record<string, string>, dir = mkdtempSync(join(home, 'run-'))): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, '--journal', join(dir, 'j.json'), '--inventory', join(dir, 'i.yaml'), ...args], { env, cwd: dir, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

describe('no Azure credential', () => {
  it('plan exits 1 with one message: what was tried, az login, the DefaultAzureCredential variables, --subscription', async () => {
    const r = await cli(['plan'], notSignedIn());
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    // One error, then its hint lines (indented): no stack, no list of raw SDK errors.
    expect(lines[0]).toMatch(/^Error: not signed in to Azure \(AzureCloud\): no credential was available\. Tried, in order: environment variables .*a managed identity of this machine.*the Azure CLI \(az login\)/);
    expect(lines.filter((l) => l.startsWith('Error:'))).toHaveLength(1);
    expect(lines.slice(1).every((l) => l.startsWith('  '))).toBe(true);
    expect(r.stderr).toContain('az login');
    expect(r.stderr).toMatch(/AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET/);
    expect(r.stderr).toContain('--subscription');
    expect(r.stderr).not.toMatch(/unexpected|CredentialUnavailableError|AggregateAuthenticationError|\n\s+at /i);
    // The managed identity was really asked (on loopback), once per attempt at most.
    expect(imdsRequests).toBeGreaterThan(0);
  });

  it('apply and rollback say the same and exit 1; a rollback that needs Azure changes nothing there', async () => {
    const applyNoLogin = await cli(['apply', '--step', 'inventory', '--yes'], notSignedIn());
    expect(applyNoLogin.code).toBe(1);
    expect(applyNoLogin.stderr).toMatch(/^Error: not signed in to Azure \(AzureCloud\): no credential was available\./m);
    expect(applyNoLogin.stderr).not.toMatch(/unexpected|CredentialUnavailableError|\n\s+at /i);

    // Signed in (the sandbox's ARM token), assign adds identities; then, signed out, its rollback.
    const dir = mkdtempSync(join(home, 'rollback-'));
    const signedIn = notSignedIn({ PODID_MIGRATE_ARM_ENDPOINT: h.sb.armUrl, PODID_MIGRATE_ARM_TOKEN_FILE: h.files.armTokenFile, PODID_MIGRATE_CA_FILE: h.files.caFile });
    const applied = await cli(['apply', '--to', 'assign', '--yes'], signedIn, dir);
    expect(applied.code, applied.stderr).toBe(0);
    const armWrites = h.sb.status().metrics.mutations.arm;
    expect(armWrites).toBeGreaterThan(0);
    const rollback = await cli(['rollback', '--step', 'assign', '--yes'], notSignedIn(), dir);
    expect(rollback.code).toBe(1);
    expect(rollback.stderr).toMatch(/^Error: not signed in to Azure \(AzureCloud\): no credential was available\. Tried, in order: .*the Azure CLI \(az login\)/m);
    expect(rollback.stderr).toContain('  Sign in with the Azure CLI: az login');
    expect(rollback.stderr).not.toMatch(/unexpected|CredentialUnavailableError|\n\s+at /i);
    expect(h.sb.status().metrics.mutations.arm).toBe(armWrites);
  }, 120_000);

  it('--cloud names the sovereign cloud and how to select it in the Azure CLI; a bad PODID_MIGRATE_CLOUD is a usage error', async () => {
    const gov = await cli(['plan', '--cloud', 'AzureUSGovernment'], notSignedIn());
    expect(gov.code).toBe(1);
    expect(gov.stderr).toMatch(/^Error: not signed in to Azure \(AzureUSGovernment\)/);
    expect(gov.stderr).toContain('az cloud set --name AzureUSGovernment');
    expect(gov.stderr).toContain('https://management.usgovcloudapi.net');

    const bad = await cli(['plan'], notSignedIn({ PODID_MIGRATE_CLOUD: 'AzureGermanCloud' }));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^Error: PODID_MIGRATE_CLOUD: "AzureGermanCloud" is not an Azure cloud\./);
    expect(bad.stderr).toContain('AzureCloud, AzureUSGovernment, AzureChinaCloud');
  });
});
