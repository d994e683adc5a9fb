/**
 * A small HTTPS ARM endpoint for the Azure gateway's tests: VMSS GET/PATCH with ARM's merge
 * semantics for `identity.userAssignedIdentities` (`{}` adds, `null` removes, ids compared
 * case-insensitively, at most 150 per request, `LinkedAuthorizationFailed` for identities the
 * caller may not assign), long-running operations through `Azure-AsyncOperation`, VMSS VM
 * list, `manualupgrade`, identity GET and `Microsoft.Authorization/permissions`. Scripted
 * answers can be queued. Every request is recorded (method, path, body, whether it carried
 * a bearer token).
 */
import { createServer } from 'node:https';
import type { Server, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { generateSandboxTls } from '../../src/sandbox/tls.ts';

export const SUB = '00000000-0000-0000-0000-000000000001';
export const NODE_RG = 'MC_rg_aks_eastus';

export function identityId(name: string, rg = 'rg-ids'): string {
  return `/subscriptions/${SUB}/resourceGroups/${rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;
}

export interface ArmSeen {
  method: string;
  path: string;
  body?: any;
  bearer: boolean;
  at: number;
}

export interface ScriptedArm {
  url: string;
  /** Environment a sandbox's `env` file would set (endpoint, token file, CA file). */
  env: Record<string, string>;
  token: string;
  seen: ArmSeen[];
  vmss: Map<string, { type: string; uai: Map<string, { key: string; clientId: string; principalId: string }> }>;
  /** Identity ids (lower-case) the caller may not assign. */
  forbidden: Set<string>;
  /** Actions the permissions endpoint reports for every identity. */
  permissionActions: string[];
  faults: { method: string; path: RegExp; status: number; headers?: Record<string, string>; body?: unknown }[];
  close(): Promise<void>;
}

export async function startScriptedArm(): Promise<ScriptedArm> {
  const tls = await generateSandboxTls();
  const token = 'arm-test-token-' + randomUUID();
  const arm: ScriptedArm = {
    url: '',
    env: {},
    token,
    seen: [],
    vmss: new Map(),
    forbidden: new Set(),
    permissionActions: ['Microsoft.ManagedIdentity/userAssignedIdentities/*/action', 'Microsoft.ManagedIdentity/userAssignedIdentities/read'],
    faults: [],
    close: async () => {},
  };
  const ops = new Map<string, number>();

  const vmssBody = (name: string): unknown => {
    const v = arm.vmss.get(name.toLowerCase())!;
    const uai = Object.fromEntries([...v.uai.values()].map((e) => [e.key, { clientId: e.clientId, principalId: e.principalId }]));
    return {
      id: `/subscriptions/${SUB}/resourceGroups/${NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/${name}`,
      name,
      type: 'Microsoft.Compute/virtualMachineScaleSets',
      location: 'eastus',
      tags: { 'aks-managed-poolName': name.split('-')[1] ?? 'pool' },
      sku: { name: 'Standard_D4s_v5', tier: 'Standard', capacity: 3 },
      identity: v.type === 'None' ? undefined : { type: v.type, ...(v.uai.size ? { userAssignedIdentities: uai } : {}) },
      properties: { upgradePolicy: { mode: 'Manual' }, provisioningState: 'Succeeded' },
    };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const u = new URL(req.url ?? '/', 'https://x');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const body = raw ? JSON.parse(raw) : undefined;
    const method = req.method ?? 'GET';
    arm.seen.push({ method, path: u.pathname, body, bearer: req.headers.authorization === `Bearer ${token}`, at: Date.now() });
    const send = (code: number, obj?: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'x-ms-request-id': randomUUID(), ...headers });
      res.end(obj === undefined ? '' : JSON.stringify(obj));
    };
    if (req.headers.authorization !== `Bearer ${token}`) return send(401, { error: { code: 'AuthenticationFailed', message: 'Authentication failed.' } });
    const fi = arm.faults.findIndex((f) => f.method === method && f.path.test(u.pathname));
    if (fi >= 0) {
      const f = arm.faults.splice(fi, 1)[0];
      return send(f.status, f.body ?? { error: { code: f.status === 429 ? 'TooManyRequests' : 'Scripted', message: 'scripted answer' } }, f.headers);
    }
    const p = u.pathname;
    const op = /\/providers\/Microsoft\.Compute\/locations\/eastus\/operations\/([^/]+)$/.exec(p);
    if (op) {
      const left = ops.get(op[1]) ?? 0;
      ops.set(op[1], left - 1);
      return send(200, { startTime: new Date().toISOString(), status: left > 0 ? 'InProgress' : 'Succeeded', name: op[1] });
    }
    const perm = /^(.*\/userAssignedIdentities\/[^/]+)\/providers\/Microsoft\.Authorization\/permissions$/i.exec(p);
    if (perm && method === 'GET') {
      const denied = arm.forbidden.has(perm[1].toLowerCase());
      return send(200, { value: [{ actions: denied ? ['Microsoft.ManagedIdentity/userAssignedIdentities/read'] : arm.permissionActions, notActions: [], dataActions: [], notDataActions: [] }] });
    }
    const ident = /\/resourceGroups\/([^/]+)\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/([^/]+)$/i.exec(p);
    if (ident && method === 'GET') {
      return send(200, { id: p, name: ident[2], type: 'Microsoft.ManagedIdentity/userAssignedIdentities', location: 'eastus', properties: { clientId: `client-${ident[2]}`, principalId: `principal-${ident[2]}`, tenantId: 'tenant-1' } });
    }
    const vm = /\/virtualMachineScaleSets\/([^/]+)(\/[^/]+)?$/i.exec(p);
    if (vm && arm.vmss.has(vm[1].toLowerCase())) {
      const name = vm[1];
      const v = arm.vmss.get(name.toLowerCase())!;
      const sub = vm[2];
      if (!sub && method === 'GET') return send(200, vmssBody(name));
      if (!sub && method === 'PATCH') {
        const map: Record<string, object | null> = body?.identity?.userAssignedIdentities ?? {};
        const ids = Object.keys(map);
        if (ids.length > 150) return send(400, { error: { code: 'InvalidParameter', message: `at most 150 user-assigned identities per request, got ${ids.length}` } });
        const denied = ids.filter((id) => map[id] !== null && arm.forbidden.has(id.toLowerCase()));
        if (denied.length) {
          return send(403, {
            error: {
              code: 'LinkedAuthorizationFailed',
              message: `The client 'c1' with object id 'o1' has permission to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' on scope '${p}'; however, it does not have permission to perform action(s) 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '${denied.join(',')}' (respectively) or the linked scope(s) are invalid.`,
            },
          });
        }
        for (const [id, val] of Object.entries(map)) {
          if (val === null) v.uai.delete(id.toLowerCase());
          else if (!v.uai.has(id.toLowerCase())) v.uai.set(id.toLowerCase(), { key: id, clientId: randomUUID(), principalId: randomUUID() });
        }
        if (body?.identity?.type) {
          v.type = body.identity.type;
          if (v.type === 'None' || v.type === 'SystemAssigned') v.uai.clear();
        }
        const opId = randomUUID();
        ops.set(opId, 1);
        return send(200, vmssBody(name), {
          'azure-asyncoperation': `${arm.url}/subscriptions/${SUB}/providers/Microsoft.Compute/locations/eastus/operations/${opId}?api-version=2024-11-01`,
        });
      }
      if (sub === '/virtualMachines' && method === 'GET') {
        return send(200, {
          value: [0, 1].map((i) => ({
            id: `${p}/${i}`,
            name: `${name}_${i}`,
            instanceId: String(i),
            properties: { latestModelApplied: i === 0, provisioningState: 'Succeeded', osProfile: { computerName: `${name}00000${i}` } },
            identity: { type: 'UserAssigned', userAssignedIdentities: Object.fromEntries([...v.uai.values()].map((e) => [e.key, { clientId: e.clientId, principalId: e.principalId }])) },
          })),
        });
      }
      if (sub === '/manualupgrade' && method === 'POST') {
        const opId = randomUUID();
        ops.set(opId, 0);
        return send(202, undefined, {
          'azure-asyncoperation': `${arm.url}/subscriptions/${SUB}/providers/Microsoft.Compute/locations/eastus/operations/${opId}?api-version=2024-11-01`,
          location: `${arm.url}/subscriptions/${SUB}/providers/Microsoft.Compute/locations/eastus/operations/${opId}?monitor=true&api-version=2024-11-01`,
        });
      }
    }
    send(404, { error: { code: 'ResourceNotFound', message: `The Resource '${p}' was not found.` } });
  };

  const server: Server = createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
    handle(req, res).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    });
  }) as unknown as Server;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  arm.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dir = mkdtempSync(join(tmpdir(), 'podid-arm-'));
  writeFileSync(join(dir, 'arm-token'), token + '\n', { mode: 0o600 });
  writeFileSync(join(dir, 'ca.pem'), tls.caPem);
  arm.env = { PODID_MIGRATE_ARM_ENDPOINT: arm.url, PODID_MIGRATE_ARM_TOKEN_FILE: join(dir, 'arm-token'), PODID_MIGRATE_CA_FILE: join(dir, 'ca.pem') };
  arm.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections?.();
      server.close(() => r());
    });
  return arm;
}
