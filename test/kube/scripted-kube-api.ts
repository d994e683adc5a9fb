/**
 * A small HTTPS Kubernetes API server for the gateway's tests: discovery for the groups the
 * tests touch, pods with `limit`/`continue` paging, a DaemonSet that takes strategic-merge
 * patches (containers merged by name), Deployment scale, eviction answered by a scripted
 * PodDisruptionBudget, `dryRun=All` honoured, bearer token required. It records every request
 * (method, path, query, time) so tests can assert what reached the wire.
 */
import { createServer } from 'node:https';
import type { Server, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSandboxTls } from '../../src/sandbox/tls.ts';

export interface SeenRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  at: number;
  contentType?: string;
  body?: unknown;
}

type Obj = Record<string, any>;

export interface ScriptedKubeApi {
  url: string;
  kubeconfigPath: string;
  token: string;
  seen: SeenRequest[];
  pods: Obj[];
  daemonSet: Obj;
  deployment: Obj;
  /** When set, evictions of pods are refused with this PDB name. */
  pdbBlocking?: string;
  /** Answers queued for the next matching requests (status, headers, body). */
  faults: { method: string; path: RegExp; status: number; headers?: Record<string, string>; body?: unknown; /** Runs when the fault answers (e.g. another writer changes the object). */ then?: () => void }[];
  close(): Promise<void>;
}

const RESOURCES: Record<string, { name: string; kind: string; namespaced: boolean }[]> = {
  v1: [
    { name: 'namespaces', kind: 'Namespace', namespaced: false },
    { name: 'pods', kind: 'Pod', namespaced: true },
    { name: 'nodes', kind: 'Node', namespaced: false },
  ],
  'apps/v1': [
    { name: 'daemonsets', kind: 'DaemonSet', namespaced: true },
    { name: 'deployments', kind: 'Deployment', namespaced: true },
  ],
};

function status(code: number, reason: string, message: string, details?: unknown): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details, code };
}

/** Strategic merge of a DaemonSet patch for the fields the tests send: containers merged by name, maps merged. */
function smp(target: any, patch: any, field = ''): any {
  if (Array.isArray(patch)) {
    if (field !== 'containers') return patch;
    const out = [...(target ?? [])];
    for (const c of patch) {
      const i = out.findIndex((x: any) => x.name === c.name);
      if (i >= 0) out[i] = smp(out[i], c);
      else out.push(c);
    }
    return out;
  }
  if (patch === null || typeof patch !== 'object') return patch;
  const out = { ...(target ?? {}) };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = smp(out[k], v, k);
  }
  return out;
}

export async function startScriptedKubeApi(opts: { pods?: number } = {}): Promise<ScriptedKubeApi> {
  const tls = await generateSandboxTls();
  const token = 'test-token-' + Math.random().toString(36).slice(2);
  const podCount = opts.pods ?? 10;
  const pods: Obj[] = Array.from({ length: podCount }, (_, i) => ({
    metadata: { name: `pod-${String(i).padStart(5, '0')}`, namespace: i % 2 ? 'team-a' : 'team-b', uid: `uid-${i}`, labels: { app: i % 3 ? 'web' : 'batch' } },
    spec: { nodeName: `node-${i % 4}` },
  }));
  const daemonSet: Obj = {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'nmi', namespace: 'default', resourceVersion: '7', generation: 1 },
    spec: {
      template: {
        spec: {
          containers: [
            { name: 'nmi', image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17', args: ['--node=$(NODE_NAME)', '--http-probe-port=8085'] },
            { name: 'sidecar', image: 'busybox', args: ['sleep', '3600'] },
          ],
        },
      },
    },
  };
  const deployment: Obj = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'mic', namespace: 'default' }, spec: { replicas: 2 } };
  const api: ScriptedKubeApi = { url: '', kubeconfigPath: '', token, seen: [], pods, daemonSet, deployment, faults: [], close: async () => {} };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const u = new URL(req.url ?? '/', 'https://x');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const body = raw ? JSON.parse(raw) : undefined;
    const method = req.method ?? 'GET';
    api.seen.push({ method, path: u.pathname, query: u.searchParams, at: performance.now(), contentType: req.headers['content-type'], body });
    const send = (code: number, obj: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(code, { 'content-type': typeof obj === 'string' ? 'text/plain' : 'application/json', ...headers });
      res.end(typeof obj === 'string' ? obj : JSON.stringify(obj));
    };
    if (req.headers.authorization !== `Bearer ${token}`) return send(401, status(401, 'Unauthorized', 'Unauthorized'));
    const fi = api.faults.findIndex((f) => f.method === method && f.path.test(u.pathname));
    if (fi >= 0) {
      const f = api.faults.splice(fi, 1)[0];
      f.then?.();
      return send(f.status, f.body ?? status(f.status, 'TooManyRequests', 'scripted'), f.headers);
    }
    const dry = u.searchParams.get('dryRun') === 'All';
    const p = u.pathname;
    if (p === '/api/v1' || p === '/apis/apps/v1') {
      const gv = p === '/api/v1' ? 'v1' : 'apps/v1';
      return send(200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: gv, resources: RESOURCES[gv].map((r) => ({ ...r, singularName: '', verbs: ['get', 'list'] })) });
    }
    if (p === '/api/v1/namespaces/kube-system') return send(200, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kube-system', uid: 'ks-uid-1234' } });
    if (p === '/api/v1/pods' || /^\/api\/v1\/namespaces\/[^/]+\/pods$/.test(p)) {
      const ns = p.split('/')[4];
      let items = pods.filter((x) => !ns || p === '/api/v1/pods' || x.metadata.namespace === ns);
      const sel = u.searchParams.get('labelSelector');
      if (sel) {
        const [k, v] = sel.split('=');
        items = items.filter((x) => x.metadata.labels?.[k] === v);
      }
      const limit = Number(u.searchParams.get('limit') ?? 0) || items.length;
      const start = Number(u.searchParams.get('continue') ?? 0);
      const page = items.slice(start, start + limit);
      const next = start + limit < items.length ? String(start + limit) : undefined;
      return send(200, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '100', ...(next ? { continue: next } : {}) }, items: page });
    }
    const one = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(p);
    if (one && method === 'GET') {
      const pod = pods.find((x) => x.metadata.name === one[2] && x.metadata.namespace === one[1]);
      return pod ? send(200, pod) : send(404, status(404, 'NotFound', `pods "${one[2]}" not found`));
    }
    const ev = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/eviction$/.exec(p);
    if (ev && method === 'POST') {
      const pod = pods.find((x) => x.metadata.name === ev[2] && x.metadata.namespace === ev[1]);
      if (!pod) return send(404, status(404, 'NotFound', `pods "${ev[2]}" not found`, { name: ev[2], kind: 'pods' }));
      if (api.pdbBlocking) {
        return send(
          429,
          status(429, 'TooManyRequests', "Cannot evict pod as it would violate the pod's disruption budget.", {
            causes: [{ reason: 'DisruptionBudget', message: `The disruption budget ${api.pdbBlocking} needs 2 healthy pods and has 2 currently` }],
          }),
        );
      }
      if (!dry && !body?.deleteOptions?.dryRun) pods.splice(pods.indexOf(pod), 1);
      return send(201, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 });
    }
    if (p === '/apis/apps/v1/namespaces/default/daemonsets/nmi') {
      if (method === 'GET') return send(200, daemonSet);
      const stale = (rv: unknown) => rv !== undefined && rv !== daemonSet.metadata.resourceVersion;
      const conflict = () =>
        send(409, status(409, 'Conflict', 'Operation cannot be fulfilled on daemonsets.apps "nmi": the object has been modified; please apply your changes to the latest version and try again', { name: 'nmi', group: 'apps', kind: 'daemonsets' }));
      if (method === 'PUT') {
        if (stale(body?.metadata?.resourceVersion)) return conflict();
        const next = structuredClone(body);
        if (!dry) {
          next.metadata.resourceVersion = String(Number(daemonSet.metadata.resourceVersion) + 1);
          for (const k of Object.keys(daemonSet)) delete daemonSet[k];
          Object.assign(daemonSet, next);
        }
        return send(200, next);
      }
      if (method === 'PATCH') {
        const ct = req.headers['content-type'];
        if (ct !== 'application/strategic-merge-patch+json' && ct !== 'application/merge-patch+json') return send(415, status(415, 'UnsupportedMediaType', `unexpected ${ct}`));
        if (stale(body?.metadata?.resourceVersion)) return conflict();
        const next = smp(structuredClone(daemonSet), body);
        if (!dry) {
          next.metadata.resourceVersion = String(Number(daemonSet.metadata.resourceVersion) + 1);
          next.metadata.generation = daemonSet.metadata.generation + 1;
          Object.assign(daemonSet, next);
        }
        return send(200, next);
      }
    }
    if (p === '/apis/apps/v1/namespaces/default/deployments/mic/scale') {
      const scale = { kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: { name: 'mic', namespace: 'default' }, spec: { replicas: deployment.spec.replicas } };
      if (method === 'GET') return send(200, scale);
      if (method === 'PATCH') {
        const r = body.spec.replicas;
        if (!dry) deployment.spec.replicas = r;
        return send(200, { ...scale, spec: { replicas: r } });
      }
    }
    if (p === '/apis/apps/v1/namespaces/default/deployments/gone' && method === 'DELETE') return send(404, status(404, 'NotFound', 'deployments.apps "gone" not found'));
    send(404, status(404, 'NotFound', `the server could not find the requested resource (${method} ${p})`));
  };

  const server: Server = createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
    handle(req, res).catch((e) => {
      res.writeHead(500);
      res.end(String(e));
    });
  }) as unknown as Server;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  api.url = `https://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'podid-kube-'));
  api.kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(
    api.kubeconfigPath,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'scripted', cluster: { server: api.url, 'certificate-authority-data': Buffer.from(tls.caPem).toString('base64') } }],
      users: [{ name: 'tester', user: { token } }],
      contexts: [{ name: 'scripted-ctx', context: { cluster: 'scripted', user: 'tester' } }, { name: 'other', context: { cluster: 'scripted', user: 'tester' } }],
      'current-context': 'other',
    }),
    { mode: 0o600 },
  );
  api.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections?.();
      server.close(() => r());
    });
  return api;
}
