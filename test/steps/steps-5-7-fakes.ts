/**
 * In-memory implementations of our own gateway interfaces (never an SDK) for the drain, test
 * and cleanup unit tests: a tiny cluster with nodes, pods, evictions that a PodDisruptionBudget
 * can refuse, graceful deletion and finalizers, a "kubelet" that runs probe pods' shell scripts
 * with the real `/bin/sh` (and a scripted `curl` on PATH), and a scale set whose reimage makes
 * the node NotReady and then Ready with a new boot id.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import type { AzureGateway, ScaleSetInstance } from '../../src/azure/gateway.ts';
import { Journal, type ClusterIdentity } from '../../src/engine/journal.ts';
import type { StepContext, StepId } from '../../src/engine/step.ts';
import type { EvictionResult, KubeGateway, KubeObject, ListOptions, ResourceRef, WaitOptions, WaitProbe } from '../../src/kube/gateway.ts';
import type { AccessReviewRequest, AccessReviewResult } from '../../src/kube/gateway.ts';
import { WaitTimeoutError } from '../../src/kube/errors.ts';
import { key, matchesLabels } from './fakes.ts';

const run = promisify(execFile);

export const SUB = '1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a6b';
export const NODE_RG = 'MC_prod_prod-weu_westeurope';
export const CLUSTER: ClusterIdentity = {
  name: 'prod-weu',
  apiServer: 'https://fake:443',
  kubeSystemUid: 'ks-uid',
  subscriptionId: SUB,
  aksResourceId: `/subscriptions/${SUB}/resourceGroups/prod/providers/Microsoft.ContainerService/managedClusters/prod-weu`,
};
export const idOf = (name: string) => `/subscriptions/${SUB}/resourcegroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;

/** RFC 7386 merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** What an eviction of a pod meets: `allow`, or a PDB refusal naming the budget. */
export type EvictionPolicy = (pod: KubeObject) => 'allow' | { budget: string; healthy: number; needed: number };

/** The result a probe pod's `curl` gets, per pod (by its labels and node). */
export type CurlBehaviour = (pod: KubeObject, url: string) => { status: number; body: string };

/** Fake Kubernetes API. Time-based behaviour (grace periods) runs on real, short timers. */
export class MiniKube implements KubeGateway {
  readonly dryRunMode = 'none' as const;
  readonly objects = new Map<string, KubeObject>();
  /** Every write, in order: `verb kind ns/name`. */
  readonly writes: string[] = [];
  readonly events: string[] = [];
  readonly health = new Map<string, string>();
  evictionPolicy: EvictionPolicy = () => 'allow';
  /** Called after a pod is evicted and gone (a controller would recreate it elsewhere). */
  onPodGone: (pod: KubeObject) => void = () => {};
  /** Milliseconds an evicted pod with a grace period takes to go away. */
  terminationMs = 30;
  curl: CurlBehaviour = () => ({ status: 404, body: 'no binding' });
  /** Directory holding the scripted `curl` the fake kubelet puts first on PATH. */
  readonly binDir: string;
  private nextUid = 1;
  private rv = 1;
  readonly logs = new Map<string, string>();
  evictCalls = 0;

  constructor() {
    this.binDir = mkdtempSync(join(tmpdir(), 'podid-fakebin-'));
  }

  add(obj: KubeObject): KubeObject {
    const o = structuredClone(obj);
    o.metadata ??= {};
    o.metadata.uid ??= `uid-${this.nextUid++}`;
    o.metadata.resourceVersion = String(this.rv++);
    o.metadata.creationTimestamp ??= '2026-01-01T00:00:00Z';
    this.objects.set(key(o.kind!, o.metadata.namespace, o.metadata.name), o);
    return o;
  }
  find(kind: string, ns: string | undefined, name: string | undefined): KubeObject | undefined {
    return this.objects.get(key(kind, ns, name));
  }
  all(kind: string): KubeObject[] {
    return [...this.objects.values()].filter((o) => o.kind === kind);
  }
  remove(kind: string, ns: string | undefined, name: string | undefined): void {
    const o = this.find(kind, ns, name);
    this.objects.delete(key(kind, ns, name));
    if (o && kind === 'Pod') this.onPodGone(o);
  }

  async clusterIdentity() {
    return { server: CLUSTER.apiServer, contextName: 'fake', clusterName: 'prod-weu', kubeSystemUid: 'ks-uid' };
  }
  async list<T extends KubeObject = KubeObject>(ref: ResourceRef, opts: ListOptions = {}): Promise<T[]> {
    if (ref.kind === 'AzureAssignedIdentity' && !this.find('CustomResourceDefinition', undefined, 'azureassignedidentities.aadpodidentity.k8s.io')) {
      throw Object.assign(new Error('the server could not find the requested resource'), { status: 404 });
    }
    return this.all(ref.kind)
      .filter((o) => (!opts.namespace || o.metadata?.namespace === opts.namespace) && matchesLabels(o, opts.labelSelector))
      .filter((o) => !opts.fieldSelector || opts.fieldSelector === `spec.nodeName=${(o.spec as { nodeName?: string })?.nodeName}`)
      .map((o) => ({ apiVersion: ref.apiVersion, kind: ref.kind, ...structuredClone(o) }) as T);
  }
  async get<T extends KubeObject = KubeObject>(ref: ResourceRef, ns: string | undefined, name: string): Promise<T | undefined> {
    const o = this.find(ref.kind, ns, name);
    return o ? (structuredClone(o) as T) : undefined;
  }
  async create<T extends KubeObject>(obj: T): Promise<T> {
    if (this.find(obj.kind!, obj.metadata?.namespace, obj.metadata?.name)) throw Object.assign(new Error(`${obj.kind} ${obj.metadata?.name} already exists`), { status: 409 });
    this.writes.push(`create ${obj.kind} ${obj.metadata?.namespace ?? ''}/${obj.metadata?.name}`);
    const stored = this.add(obj);
    if (obj.kind === 'Pod' && obj.metadata?.labels?.['podid-migrate.io/probe'] === 'true') void this.runProbePod(stored);
    return structuredClone(stored) as T;
  }
  async replace<T extends KubeObject>(obj: T): Promise<T> {
    this.writes.push(`replace ${obj.kind} ${obj.metadata?.name}`);
    return structuredClone(this.add(obj)) as T;
  }
  async patch<T extends KubeObject = KubeObject>(ref: ResourceRef, ns: string | undefined, name: string, patch: unknown, type: 'strategic' | 'merge' | 'json'): Promise<T> {
    const cur = this.find(ref.kind, ns, name);
    if (!cur) throw Object.assign(new Error(`${ref.kind} ${name} not found`), { status: 404 });
    this.writes.push(`patch ${ref.kind} ${ns ?? ''}/${name} ${JSON.stringify(patch)}`);
    const next = type === 'json' ? fastJsonPatch.applyPatch(structuredClone(cur), patch as Operation[]).newDocument : (mergePatch(cur, patch) as KubeObject);
    next.metadata!.resourceVersion = String(this.rv++);
    this.objects.set(key(ref.kind, ns, name), next);
    // A pending deletion completes once the last finalizer is gone.
    if (next.metadata?.deletionTimestamp && !next.metadata.finalizers?.length) this.remove(ref.kind, ns, name);
    return structuredClone(next) as T;
  }
  async delete(ref: ResourceRef, ns: string | undefined, name: string): Promise<'deleted' | 'not-found'> {
    const cur = this.find(ref.kind, ns, name);
    if (!cur) return 'not-found';
    this.writes.push(`delete ${ref.kind} ${ns ?? ''}/${name}`);
    if (cur.metadata?.finalizers?.length) {
      cur.metadata.deletionTimestamp = '2026-01-01T00:00:01Z';
      return 'deleted';
    }
    this.remove(ref.kind, ns, name);
    return 'deleted';
  }
  async scale(ns: string, name: string, replicas: number) {
    const d = this.find('Deployment', ns, name)!;
    const previousReplicas = (d.spec as { replicas?: number }).replicas ?? 1;
    (d.spec as { replicas?: number }).replicas = replicas;
    this.writes.push(`scale Deployment ${ns}/${name} ${replicas}`);
    return { previousReplicas, replicas };
  }
  async evict(ns: string, pod: string): Promise<EvictionResult> {
    this.evictCalls++;
    const p = this.find('Pod', ns, pod);
    if (!p) return { kind: 'not-found' };
    const verdict = this.evictionPolicy(p);
    if (verdict !== 'allow') {
      const cause = `The disruption budget ${verdict.budget} needs ${verdict.needed} healthy pods and has ${verdict.healthy} currently`;
      return { kind: 'blocked-by-pdb', message: `Cannot evict pod as it would violate the pod's disruption budget. ${cause}`, budgets: [cause] };
    }
    this.writes.push(`evict Pod ${ns}/${pod}`);
    this.events.push(`evicted ${ns}/${pod}`);
    const grace = (p.spec as { terminationGracePeriodSeconds?: number }).terminationGracePeriodSeconds ?? 30;
    if (grace > 0) {
      p.metadata!.deletionTimestamp = '2026-01-01T00:00:02Z';
      setTimeout(() => {
        this.events.push(`gone ${ns}/${pod}`);
        this.remove('Pod', ns, pod);
      }, this.terminationMs);
    } else {
      this.events.push(`gone ${ns}/${pod}`);
      this.remove('Pod', ns, pod);
    }
    return { kind: 'evicted' };
  }
  async podLog(ns: string, pod: string): Promise<string> {
    return this.logs.get(`${ns}/${pod}`) ?? '';
  }
  async proxyGet(ns: string, pod: string, port: number) {
    return { status: 200, body: this.health.get(`${ns}/${pod}:${port}`) ?? 'Active' };
  }
  async raw<T = unknown>(): Promise<T> {
    throw new Error('not used');
  }
  /** Access reviews answered `allowed` unless listed in `deniedAccess` as `verb group/resource namespace`. */
  readonly deniedAccess = new Set<string>();
  async accessReview(r: AccessReviewRequest): Promise<AccessReviewResult> {
    const resource = r.subresource ? `${r.resource}/${r.subresource}` : r.resource;
    return { allowed: !this.deniedAccess.has(`${r.verb} ${r.group}/${resource} ${r.namespace ?? ''}`.trim()) };
  }
  async waitFor<T>(probe: WaitProbe<T>, opts: WaitOptions): Promise<T> {
    const started = Date.now();
    let last: string | undefined;
    // Polls ten times faster than asked: the fake has no real latency to respect.
    const interval = Math.max(2, (opts.intervalMs ?? 1000) / 10);
    for (;;) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const v = await probe((s) => (last = s));
      if (v !== undefined && v !== null && v !== false) return v;
      if (Date.now() - started > opts.timeoutMs) throw new WaitTimeoutError(opts.describe, Date.now() - started, last);
      await new Promise((r) => setTimeout(r, interval));
    }
  }
  scoped(): KubeGateway {
    return this;
  }
  calls() {
    return { total: 0, reads: 0, writes: this.writes.length, byVerb: {}, byResource: {} } as never;
  }
  dryRunLog() {
    return [];
  }

  /**
   * The fake kubelet: runs the probe container's `sh -c` script with the real shell and a
   * scripted `curl` whose answer comes from {@link MiniKube.curl}; the pod's log is the
   * script's stdout, its phase follows the exit code.
   */
  private async runProbePod(pod: KubeObject): Promise<void> {
    const ns = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    const container = (pod.spec as { containers: { command: string[] }[] }).containers[0];
    const script = container.command[2];
    const work = mkdtempSync(join(tmpdir(), 'podid-probe-'));
    const answers = join(work, 'answers.json');
    writeFileSync(answers, '{}');
    writeCurl(this.binDir);
    // `sleep 5` between attempts becomes a no-op: retries are counted, not waited for.
    const fast = script.replace(/sleep \d+/g, 'true').replace(/\/tmp\//g, `${work}/`);
    const urlMatch = /'(https?:\/\/[^']+)'/.exec(script);
    const answer = this.curl(pod, urlMatch?.[1] ?? '');
    writeFileSync(answers, JSON.stringify(answer));
    let stdout = '';
    let code = 0;
    try {
      const r = await run('/bin/sh', ['-c', fast], { env: { PATH: `${this.binDir}:/usr/bin:/bin`, FAKE_CURL_ANSWER: answers } });
      stdout = r.stdout;
    } catch (e) {
      const err = e as { stdout?: string; code?: number };
      stdout = err.stdout ?? '';
      code = typeof err.code === 'number' ? err.code : 1;
    }
    const live = this.find('Pod', ns, name);
    if (!live) return;
    this.logs.set(`${ns}/${name}`, stdout);
    live.status = { phase: code === 0 ? 'Succeeded' : 'Failed', containerStatuses: [{ name: 'probe', state: { terminated: { exitCode: code } } }] };
  }
}

/** A `curl` that understands `-s -m N -o FILE -w FMT -H H URL` and answers from `$FAKE_CURL_ANSWER`. */
function writeCurl(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'curl');
  writeFileSync(
    path,
    `#!/usr/bin/env node
const fs = require('node:fs');
const a = process.argv.slice(2);
let out, fmt;
for (let i = 0; i < a.length; i++) {
  if (a[i] === '-o') out = a[++i];
  else if (a[i] === '-w') fmt = a[++i];
  else if (a[i] === '-H' || a[i] === '-m') i++;
}
const ans = JSON.parse(fs.readFileSync(process.env.FAKE_CURL_ANSWER, 'utf8'));
if (out && out !== '/dev/null') fs.writeFileSync(out, ans.body); else if (!out) process.stdout.write(ans.body);
if (fmt) process.stdout.write(fmt.replace('%{http_code}', String(ans.status)));
`,
  );
  chmodSync(path, 0o755);
}

/** Fake Azure gateway: instances of scale sets; reimage and delete drive the fake nodes. */
export class MiniAzure implements AzureGateway {
  readonly dryRunMode = 'none' as const;
  readonly subscriptionId = SUB;
  readonly calls_: string[] = [];
  /** Milliseconds a reimage keeps the node NotReady. */
  reimageMs = 20;
  /** When set, a deleted instance is followed by a new node in the pool (the cluster autoscaler). */
  autoscale = false;
  private nextInstance = 100;
  private readonly kube: MiniKube;
  constructor(kube: MiniKube) {
    this.kube = kube;
  }

  async getManagedCluster(): Promise<never> {
    throw new Error('not used');
  }
  async listScaleSets() {
    return [];
  }
  async getScaleSet() {
    return undefined;
  }
  async assignIdentities(): Promise<never> {
    throw new Error('not used');
  }
  async unassignIdentities(): Promise<never> {
    throw new Error('not used');
  }
  async listInstances(_rg: string, vmss: string): Promise<ScaleSetInstance[]> {
    return this.kube
      .all('Node')
      .map((n) => /virtualMachineScaleSets\/([^/]+)\/virtualMachines\/(\d+)$/.exec(String((n.spec as { providerID?: string }).providerID)))
      .filter((m): m is RegExpExecArray => Boolean(m) && m![1] === vmss)
      .map((m) => ({ instanceId: m[2], name: `${vmss}_${m[2]}`, provisioningState: 'Succeeded', identityIds: [] }));
  }
  async manualUpgrade(): Promise<void> {}
  async reimageInstances(_rg: string, vmss: string, ids: string[]): Promise<void> {
    this.calls_.push(`reimage ${vmss} ${ids.join(',')}`);
    for (const id of ids) {
      const node = this.nodeOf(vmss, id)!;
      this.kube.events.push(`reimage ${node.metadata!.name}`);
      setReady(node, false);
      for (const p of this.kube.all('Pod').filter((p) => (p.spec as { nodeName?: string }).nodeName === node.metadata!.name)) {
        const ds = p.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet');
        if (!ds) this.kube.remove('Pod', p.metadata!.namespace, p.metadata!.name);
      }
      setTimeout(() => {
        setReady(node, true);
        (node.status as { nodeInfo: { bootID: string } }).nodeInfo.bootID = `boot-${Math.random().toString(36).slice(2)}`;
      }, this.reimageMs);
    }
  }
  async deleteInstances(_rg: string, vmss: string, ids: string[]): Promise<void> {
    this.calls_.push(`delete ${vmss} ${ids.join(',')}`);
    for (const id of ids) {
      const node = this.nodeOf(vmss, id)!;
      const pool = node.metadata!.labels!['kubernetes.azure.com/agentpool'];
      for (const p of this.kube.all('Pod').filter((p) => (p.spec as { nodeName?: string }).nodeName === node.metadata!.name)) this.kube.remove('Pod', p.metadata!.namespace, p.metadata!.name);
      this.kube.remove('Node', undefined, node.metadata!.name);
      if (this.autoscale) {
        setTimeout(() => {
          // The new node registers and the NMI DaemonSet puts a pod on it.
          const added = this.kube.add(nodeObject(pool, this.nextInstance++)).metadata!.name!;
          this.kube.add(podObject('default', `nmi-${added.slice(-4)}`, added, { kind: 'DaemonSet', name: 'nmi' }));
        }, this.reimageMs);
      }
    }
  }
  async getIdentity() {
    return undefined;
  }
  async listIdentities() {
    return [];
  }
  async canAssign(identityId: string) {
    return { identityId, allowed: true, reason: 'fake' };
  }
  scoped(): AzureGateway {
    return this;
  }
  calls() {
    return { total: this.calls_.length } as never;
  }
  dryRunLog() {
    return [];
  }
  private nodeOf(vmss: string, id: string): KubeObject | undefined {
    return this.kube.all('Node').find((n) => String((n.spec as { providerID?: string }).providerID).endsWith(`/virtualMachineScaleSets/${vmss}/virtualMachines/${id}`));
  }
}

function setReady(node: KubeObject, ready: boolean): void {
  const st = node.status as { conditions: { type: string; status: string }[] };
  st.conditions = [{ type: 'Ready', status: ready ? 'True' : 'False' }];
}

/** A Ready node of a pool, backed by a VMSS instance. */
export function nodeObject(pool: string, instance: number): KubeObject {
  const vmss = `aks-${pool}-12345678-vmss`;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: `${vmss}${instance.toString(36).padStart(6, '0')}`, labels: { 'kubernetes.azure.com/agentpool': pool, agentpool: pool } },
    spec: { providerID: `azure:///subscriptions/${SUB}/resourceGroups/${NODE_RG.toLowerCase()}/providers/Microsoft.Compute/virtualMachineScaleSets/${vmss}/virtualMachines/${instance}` },
    status: { conditions: [{ type: 'Ready', status: 'True' }], nodeInfo: { bootID: `boot-${pool}-${instance}` } },
  };
}

/** A pod on a node; `owner` decides what kubectl drain does with it. */
export function podObject(ns: string, name: string, node: string, owner: { kind: string; name: string } | undefined, labels: Record<string, string> = {}, grace = 30): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels, ...(owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: owner.kind, name: owner.name, uid: `owner-${owner.name}`, controller: true }] } : {}) },
    spec: { nodeName: node, terminationGracePeriodSeconds: grace },
    status: { phase: 'Running' },
  };
}

/** A temp directory for journal, inventory and report files. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'podid-steps57-'));
}

/** A step context over the fakes and a real journal file in `dir`. */
export async function contextFor(
  stepId: StepId,
  kube: KubeGateway,
  azure: AzureGateway,
  dir: string,
  extra: { inventory?: unknown; options?: Record<string, unknown>; deadlineMs?: number; signal?: AbortSignal } = {},
): Promise<StepContext<KubeGateway, AzureGateway> & { messages: string[]; journalPath: string }> {
  const journalPath = join(dir, 'journal.json');
  const journal = await Journal.open(journalPath, CLUSTER);
  const messages: string[] = [];
  return {
    kube,
    azure,
    journal: journal.forStep(stepId),
    inventory: extra.inventory,
    inventoryPath: join(dir, 'inventory.yaml'),
    options: { ...extra.options },
    dryRun: 'none',
    signal: extra.signal ?? new AbortController().signal,
    deadline: Date.now() + (extra.deadlineMs ?? 20_000),
    progress: (m) => messages.push(m),
    log: { info: (m) => messages.push(m), warn: (m) => messages.push(m), debug: (m) => messages.push(m) },
    messages,
    journalPath,
  };
}

/** Writes data another step recorded (e.g. `inventory`'s `podIdentity`) into the journal file. */
export async function recordStepData(dir: string, stepId: StepId, key: string, value: unknown): Promise<void> {
  const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
  await journal.forStep(stepId).setData(key, value);
}
