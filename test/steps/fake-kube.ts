/**
 * The one in-memory implementation of our own `KubeGateway` (never an SDK) that every step unit
 * test uses: a tiny cluster of plain objects with JSON and merge patches (generation bumped on
 * spec changes, a controller that observes it at once), scale (pods follow an `app` label),
 * evictions that a PodDisruptionBudget can refuse, graceful deletion and finalizers, `/healthz`
 * bodies through the pod proxy, and a "kubelet" that runs probe pods' shell scripts with the real
 * `/bin/sh` (and a scripted `curl` on PATH).
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fastJsonPatch from 'fast-json-patch';
import type { AccessReviewRequest, AccessReviewResult } from '../../src/kube/gateway.ts';
import type { Operation } from 'fast-json-patch';
import type { EvictionResult, KubeGateway, KubeObject, ListOptions, ResourceRef, WaitOptions, WaitProbe } from '../../src/kube/gateway.ts';
import { WaitTimeoutError } from '../../src/kube/errors.ts';

const run = promisify(execFile);

/** One write the fake API accepted. */
export interface KubeWrite {
  verb: 'create' | 'replace' | 'patch' | 'delete' | 'scale' | 'evict';
  kind: string;
  /** `Kind/namespace/name`. */
  key: string;
  body?: unknown;
}

/** Store key of a fake object. */
export function key(kind: string, ns: string | undefined, name: string | undefined): string {
  return `${kind}/${ns ?? ''}/${name ?? ''}`;
}

/** Equality/existence label selector matching, all the fakes need. */
export function matchesLabels(obj: KubeObject, selector: string | undefined): boolean {
  if (!selector) return true;
  const labels = obj.metadata?.labels ?? {};
  return selector.split(',').every((term) => {
    if (term.includes('!=')) {
      const [k, v] = term.split('!=');
      return labels[k] !== v;
    }
    const [k, v] = term.split('=');
    return v === undefined ? k in labels : labels[k] === v;
  });
}

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



const AAI_CRD = 'azureassignedidentities.aadpodidentity.k8s.io';

export class FakeKube implements KubeGateway {
  /** Access reviews answered `allowed` unless listed in `deniedAccess` as `verb group/resource namespace`. */
  readonly deniedAccess = new Set<string>();
  async accessReview(r: AccessReviewRequest): Promise<AccessReviewResult> {
    const resource = r.subresource ? `${r.resource}/${r.subresource}` : r.resource;
    return { allowed: !this.deniedAccess.has(`${r.verb} ${r.group}/${resource} ${r.namespace ?? ''}`.trim()) };
  }

  readonly dryRunMode = 'none' as const;
  readonly objects = new Map<string, KubeObject>();
  /** Every write, in order. */
  readonly writes: KubeWrite[] = [];
  /** Every read, in order: `list Kind` / `get Kind`. */
  readonly reads: string[] = [];
  readonly events: string[] = [];
  /** `/healthz` bodies by `ns/pod:port`; default `Active`. */
  readonly health = new Map<string, string>();
  evictionPolicy: EvictionPolicy = () => 'allow';
  /** Called after a pod is evicted and gone (a controller would recreate it elsewhere). */
  onPodGone: (pod: KubeObject) => void = () => {};
  /** Milliseconds an evicted pod with a grace period takes to go away. */
  terminationMs = 30;
  curl: CurlBehaviour = () => ({ status: 404, body: 'no binding' });
  /** A wait gives up after this many polls even before its timeout (a fake has no real latency to wait out). */
  maxPolls = Number.POSITIVE_INFINITY;
  readonly logs = new Map<string, string>();
  evictCalls = 0;
  private binDirPath: string | undefined;
  private nextUid = 1;
  private rv = 1;

  /** Directory holding the scripted `curl` the fake kubelet puts first on PATH. */
  get binDir(): string {
    this.binDirPath ??= mkdtempSync(join(tmpdir(), 'podid-fakebin-'));
    return this.binDirPath;
  }

  /** The writes as one line each: `create Pod ns/name`, `patch Node /n {...}`, `scale Deployment ns/name 0`, … */
  writeLines(): string[] {
    return this.writes.map((w) => {
      const [, ns, name] = w.key.split('/');
      const at = `${ns}/${name}`;
      if (w.verb === 'patch') return `patch ${w.kind} ${at} ${JSON.stringify(w.body)}`;
      if (w.verb === 'scale') return `scale ${w.kind} ${at} ${String(w.body)}`;
      return `${w.verb} ${w.kind} ${at}`;
    });
  }

  add(obj: KubeObject): KubeObject {
    const o = structuredClone(obj);
    o.metadata ??= {};
    o.metadata.uid ??= `uid-${this.nextUid++}`;
    o.metadata.generation ??= 1;
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
    return { server: 'https://fake:443', contextName: 'fake', clusterName: 'prod-weu', kubeSystemUid: 'ks-uid' };
  }
  async list<T extends KubeObject = KubeObject>(ref: ResourceRef, opts: ListOptions = {}): Promise<T[]> {
    this.reads.push(`list ${ref.kind}`);
    // AzureAssignedIdentities are served while their CRD exists (a fake that models no CRD at all serves them).
    if (ref.kind === 'AzureAssignedIdentity' && this.all('CustomResourceDefinition').length && !this.find('CustomResourceDefinition', undefined, AAI_CRD)) {
      throw Object.assign(new Error('the server could not find the requested resource'), { status: 404 });
    }
    return this.all(ref.kind)
      .filter((o) => (!opts.namespace || o.metadata?.namespace === opts.namespace) && matchesLabels(o, opts.labelSelector))
      .filter((o) => !opts.fieldSelector || opts.fieldSelector === `spec.nodeName=${(o.spec as { nodeName?: string })?.nodeName}`)
      .map((o) => ({ apiVersion: ref.apiVersion, kind: ref.kind, ...structuredClone(o) }) as T);
  }
  async get<T extends KubeObject = KubeObject>(ref: ResourceRef, ns: string | undefined, name: string): Promise<T | undefined> {
    this.reads.push(`get ${ref.kind}`);
    const o = this.find(ref.kind, ns, name);
    return o ? (structuredClone(o) as T) : undefined;
  }
  async create<T extends KubeObject>(obj: T): Promise<T> {
    if (this.find(obj.kind!, obj.metadata?.namespace, obj.metadata?.name)) throw Object.assign(new Error(`${obj.kind} ${obj.metadata?.name} already exists`), { status: 409 });
    this.writes.push({ verb: 'create', kind: obj.kind!, key: key(obj.kind!, obj.metadata?.namespace, obj.metadata?.name), body: obj });
    const stored = this.add(obj);
    if (obj.kind === 'Pod' && obj.metadata?.labels?.['podid-migrate.io/probe'] === 'true') void this.runProbePod(stored);
    return structuredClone(stored) as T;
  }
  async replace<T extends KubeObject>(obj: T): Promise<T> {
    this.writes.push({ verb: 'replace', kind: obj.kind!, key: key(obj.kind!, obj.metadata?.namespace, obj.metadata?.name), body: obj });
    return structuredClone(this.add(obj)) as T;
  }
  async patch<T extends KubeObject = KubeObject>(ref: ResourceRef, ns: string | undefined, name: string, patch: unknown, type: 'strategic' | 'merge' | 'json'): Promise<T> {
    const cur = this.find(ref.kind, ns, name);
    if (!cur) throw Object.assign(new Error(`${ref.kind} ${name} not found`), { status: 404 });
    if (type === 'strategic') throw new Error('the fake applies JSON and merge patches only');
    const next = type === 'json' ? fastJsonPatch.applyPatch(structuredClone(cur), patch as Operation[], true, false).newDocument : (mergePatch(cur, patch) as KubeObject);
    if (JSON.stringify(next.spec) !== JSON.stringify(cur.spec)) next.metadata!.generation = (cur.metadata?.generation ?? 1) + 1;
    // The fake controllers roll out at once: the new generation is observed.
    if (next.status && (ref.kind === 'Deployment' || ref.kind === 'DaemonSet')) (next.status as { observedGeneration?: number }).observedGeneration = next.metadata!.generation;
    next.metadata!.resourceVersion = String(this.rv++);
    this.objects.set(key(ref.kind, ns, name), next);
    this.writes.push({ verb: 'patch', kind: ref.kind, key: key(ref.kind, ns, name), body: patch });
    // A pending deletion completes once the last finalizer is gone.
    if (next.metadata?.deletionTimestamp && !next.metadata.finalizers?.length) this.remove(ref.kind, ns, name);
    return structuredClone(next) as T;
  }
  async delete(ref: ResourceRef, ns: string | undefined, name: string): Promise<'deleted' | 'not-found'> {
    const cur = this.find(ref.kind, ns, name);
    if (!cur) return 'not-found';
    this.writes.push({ verb: 'delete', kind: ref.kind, key: key(ref.kind, ns, name) });
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
    this.writes.push({ verb: 'scale', kind: 'Deployment', key: key('Deployment', ns, name), body: replicas });
    // The fake controller acts at once: pods labelled app=<name> follow the replica count.
    const pods = [...this.objects.entries()].filter(([, p]) => p.kind === 'Pod' && p.metadata?.namespace === ns && p.metadata?.labels?.app === name);
    if (replicas === 0) for (const [k] of pods) this.objects.delete(k);
    else if (pods.length && pods.length < replicas) for (let i = pods.length; i < replicas; i++) this.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `${name}-${i}`, namespace: ns, labels: { app: name } }, status: { phase: 'Running' } });
    else if (!pods.length) for (let i = 0; i < replicas; i++) this.add({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `${name}-${i}`, namespace: ns, labels: { app: name } }, status: { phase: 'Running' } });
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
    this.writes.push({ verb: 'evict', kind: 'Pod', key: key('Pod', ns, pod) });
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
    throw new Error('raw is not used by the steps');
  }
  async waitFor<T>(probe: WaitProbe<T>, opts: WaitOptions): Promise<T> {
    const started = Date.now();
    let last: string | undefined;
    // Polls ten times faster than asked: the fake has no real latency to respect.
    const interval = Math.max(1, (opts.intervalMs ?? 1000) / 10);
    for (let polls = 1; ; polls++) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const v = await probe((s) => (last = s));
      if (v !== undefined && v !== null && v !== false) return v;
      if (Date.now() - started > opts.timeoutMs || polls >= this.maxPolls) throw new WaitTimeoutError(opts.describe, Date.now() - started, last);
      await new Promise((r) => setTimeout(r, interval));
    }
  }
  scoped(): KubeGateway {
    return this;
  }
  calls() {
    return { total: this.reads.length + this.writes.length, byKey: {}, retries: 0, suppressedWrites: 0 } as never;
  }
  dryRunLog() {
    return [];
  }

  /**
   * The fake kubelet: runs the probe container's `sh -c` script with the real shell and a
   * scripted `curl` whose answer comes from {@link FakeKube.curl}; the pod's log is the
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
  // Written once, atomically: probe pods run concurrently, and a script truncated while another
  // probe execs it would let the shell find the machine's real curl further down PATH.
  if (existsSync(path)) return;
  const temp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  writeFileSync(
    temp,
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
  chmodSync(temp, 0o755);
  renameSync(temp, path);
}

