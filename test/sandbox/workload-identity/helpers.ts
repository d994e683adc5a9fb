/** Small HTTPS helpers for the workload identity tests (loopback only, sandbox CA trusted per request). */
import { request } from 'node:https';

/** One HTTPS request; resolves with status and body. */
export function httpsRequest(url: string, ca: string, opts: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', ca, headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return httpsRequest(url, ca);
}

/** The claims of a JWT (payload segment only; the token itself is never printed). */
export function jwtClaims(token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** A small cluster: two pools, two identities in `ids`, one pod-identity workload; `extra` is appended. */
export const WI_SCENARIO = (extra = '') => `
apiVersion: podid-migrate.io/v1
kind: SandboxScenario
name: wi
cluster: { name: wi, resourceGroup: rg }
pools: [{ name: system, count: 1 }, { name: apps, count: 1 }]
identities:
  - { name: app-id, resourceGroup: ids, namespace: apps, selector: app }
  - { name: other-id, resourceGroup: ids, namespace: apps, selector: other }
workloads:
  - { name: app, namespace: apps, pool: apps, replicas: 1, binding: app }
${extra}`;

