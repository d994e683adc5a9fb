/**
 * Starts the API server in-process over a fresh store, with generated TLS, and hands out
 * real clients for it: a `KubeConfig` for `@kubernetes/client-node` and a kubeconfig file
 * for stock `kubectl`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { readFile } from 'node:fs/promises';
import { ManualClock } from '../../../src/sandbox/clock.ts';
import { FaultInjector } from '../../../src/sandbox/faults.ts';
import { Metrics } from '../../../src/sandbox/metrics.ts';
import { PodNetwork } from '../../../src/sandbox/netsim.ts';
import { PodLogs } from '../../../src/sandbox/pod-logs.ts';
import { ObjectStore, type KObject } from '../../../src/sandbox/store.ts';
import { generateSandboxTls, type SandboxTls } from '../../../src/sandbox/tls.ts';
import { bootstrapNamespaces, registerBuiltinTypes } from '../../../src/sandbox/kube-api/types.ts';
import { startKubeApiServer, type KubeApiServer } from '../../../src/sandbox/kube-api/server.ts';
import type { TokenUser } from '../../../src/sandbox/kube-api/rbac.ts';

export const FIXTURES = '/work/shared/fixtures/aad-pod-identity/upstream';

export interface Harness {
  store: ObjectStore;
  clock: ManualClock;
  metrics: Metrics;
  faults: FaultInjector;
  network: PodNetwork;
  logs: PodLogs;
  tls: SandboxTls;
  token: string;
  server: KubeApiServer;
  kc: KubeConfig;
  dir: string;
  kubeconfigPath: string;
  close(): Promise<void>;
}

let sharedTls: Promise<SandboxTls> | undefined;

/** Starts the server; `users` are extra bearer-token users whose rights RBAC decides. */
export async function startHarness(opts: { users?: TokenUser[] } = {}): Promise<Harness> {
  // One certificate per test file is plenty; key generation is the slow part of start-up.
  sharedTls ??= generateSandboxTls();
  const tls = await sharedTls;
  const clock = new ManualClock();
  const store = new ObjectStore(clock);
  registerBuiltinTypes(store);
  bootstrapNamespaces(store);
  const metrics = new Metrics();
  const faults = new FaultInjector();
  const network = new PodNetwork();
  const logs = new PodLogs();
  const token = `test-token-${Math.random().toString(36).slice(2)}`;
  const server = await startKubeApiServer({ store, tls, token, users: opts.users, metrics, faults, network, logs, clock, port: 0 });
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'sandbox', server: server.url, caData: Buffer.from(tls.caPem).toString('base64'), skipTLSVerify: false }],
    users: [{ name: 'tester', token }],
    contexts: [{ name: 'sandbox', cluster: 'sandbox', user: 'tester' }],
    currentContext: 'sandbox',
  });
  const dir = await mkdtemp(join(tmpdir(), 'kube-api-test-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfigPath,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: sandbox',
      '  cluster:',
      `    server: ${server.url}`,
      `    certificate-authority-data: ${Buffer.from(tls.caPem).toString('base64')}`,
      'users:',
      '- name: tester',
      '  user:',
      `    token: ${token}`,
      'contexts:',
      '- name: sandbox',
      '  context: {cluster: sandbox, user: tester, namespace: default}',
      'current-context: sandbox',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return {
    store, clock, metrics, faults, network, logs, tls, token, server, kc, dir, kubeconfigPath,
    close: async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Loads every document of a YAML manifest file. */
export async function loadManifest(path: string): Promise<KObject[]> {
  const docs = parseAllDocuments(await readFile(path, 'utf8'));
  return docs.map((d) => d.toJSON()).filter((o) => o && typeof o === 'object') as KObject[];
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A minimal running pod bound to `node`, written straight into the store as the kubelet would leave it. */
export function runningPod(name: string, opts: { namespace?: string; node?: string; labels?: Record<string, string>; ip?: string; containers?: string[]; ready?: boolean; ownerReferences?: any[]; grace?: number; volumes?: any[] } = {}): KObject {
  const containers = (opts.containers ?? ['app']).map((c) => ({ name: c, image: `example/${c}:1.0` }));
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: opts.namespace ?? 'default', labels: opts.labels ?? {}, ownerReferences: opts.ownerReferences },
    spec: { nodeName: opts.node, containers, terminationGracePeriodSeconds: opts.grace ?? 30, volumes: opts.volumes },
    status: {
      phase: 'Running',
      podIP: opts.ip,
      conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }],
      containerStatuses: containers.map((c) => ({ name: c.name, ready: opts.ready !== false, restartCount: 0, image: c.image, state: { running: { startedAt: '2026-11-23T10:00:00Z' } } })),
    },
  };
}
