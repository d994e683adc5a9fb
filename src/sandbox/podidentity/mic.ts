/**
 * MIC (Managed Identity Controller) as a container program.
 *
 * Faithful to upstream v1.6-v1.8 (cmd/mic/main.go, pkg/mic/mic.go, pkg/crd/crd.go):
 * - leader election with client-go's Endpoints lock `aad-pod-identity-mic` (annotation
 *   `control-plane.alpha.kubernetes.io/leader`), lease 15 s, renew deadline 7.5 s, retry
 *   3.75 s; the namespace is `--leader-election-namespace` (upstream default `default`);
 *   losing the lease exits 1; `/healthz` on the probe port answers `Active` only on the leader
 *   once its sync loop runs;
 * - the leader rewrites capitalised pre-1.6.0 field names once (recorded in ConfigMap
 *   `aad-pod-identity-config`, key `type-upgrade-status`), then syncs on every pod, binding or
 *   identity change and periodically: it creates an AzureAssignedIdentity per pod and matched
 *   binding (`Created`), PATCHes each VMSS once with the delta, then marks them `Assigned`; a
 *   cycle with no delta GETs the scale sets and sends no PATCH (upstream `requiresUpdate`), so
 *   it takes `micReadSeconds`, not the PATCH's `micAssignmentSeconds`;
 * - garbage collection: AzureAssignedIdentities whose pod is gone or moved are deleted after
 *   the identity is removed from the VMSS, unless another pod on that VMSS still uses it or
 *   its client id is in `--immutable-user-msis`. Identities no object references are never
 *   touched; an identity an operator also assigned by hand is removed all the same;
 * - every 3 minutes identities of `Assigned` objects missing from the VMSS are re-added;
 * - SIGTERM just ends the process: nothing is cleaned up and the lease is not released.
 */
import { isoSeconds } from '../clock.ts';
import type { ContainerContext, ContainerProcess, ContainerProgram } from '../runtime.ts';
import type { SimHttpRequest, SimHttpResponse } from '../netsim.ts';
import { StoreError, type KObject, type ObjectStore, type ResourceType } from '../store.ts';
import {
  ASSIGNED_FINALIZER,
  BINDING_LABEL,
  ExitLatch,
  atLeast,
  coreType,
  crdType,
  flagBool,
  identityClientId,
  identityResourceId,
  identityType,
  imageVersion,
  klogLine,
  parseFlags,
  parseGoDuration,
  scaleSetOfNode,
  timingOf,
  type PodIdentityOptions,
} from './common.ts';
import { desiredAssignments, identitiesByName } from './matching.ts';

export const LEADER_ANNOTATION = 'control-plane.alpha.kubernetes.io/leader';
const TEXT = { 'content-type': 'text/plain; charset=utf-8' };
const BOOLEAN_FLAGS = new Set(['forceNamespaced', 'version', 'enableProfile', 'enableScaleFeatures', 'enable-type-upgrade', 'logtostderr', 'alsologtostderr']);

/** client-go's `LeaderElectionRecord` as stored in the annotation. */
export interface LeaderElectionRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime: string;
  renewTime: string;
  leaderTransitions: number;
}

/** MIC's configuration after flag parsing. */
export interface MicConfig {
  immutableUserMsis: string[];
  namespaced: boolean;
  leaderInstance: string;
  leaderNamespace: string;
  leaderName: string;
  leaseMs: number;
  probePort: number;
  syncMs: number;
  reconcileMs: number;
  typeUpgrade: boolean;
  configMapName: string;
  typeUpgradeKey: string;
}

/** Parses MIC's flags (Go `flag` package: `-x`/`--x`, `=value` or next argument). */
export function parseMicArgs(argv: string[], env: Record<string, string>, hostName: string, dflt: { syncMs: number; reconcileMs: number }): MicConfig {
  const { flags } = parseFlags(argv, BOOLEAN_FLAGS);
  const immutable = flags.get('immutable-user-msis') ?? '';
  return {
    // strings.Split without trimming, as upstream does.
    immutableUserMsis: immutable ? immutable.split(',') : [],
    namespaced: flagBool(flags.get('forceNamespaced'), false) || env.FORCENAMESPACED === 'true',
    leaderInstance: flags.get('leader-election-instance') || hostName,
    leaderNamespace: flags.get('leader-election-namespace') || 'default',
    leaderName: flags.get('leader-election-name') || 'aad-pod-identity-mic',
    leaseMs: parseGoDuration(flags.get('leader-election-duration'), 15_000),
    probePort: Number(flags.get('http-probe-port') ?? 8080) || 8080,
    syncMs: flags.has('syncRetryDuration') ? parseGoDuration(flags.get('syncRetryDuration'), dflt.syncMs) : dflt.syncMs,
    reconcileMs: flags.has('identity-assignment-reconcile-interval') ? parseGoDuration(flags.get('identity-assignment-reconcile-interval'), dflt.reconcileMs) : dflt.reconcileMs,
    typeUpgrade: flagBool(flags.get('enable-type-upgrade'), true),
    configMapName: flags.get('config-map-name') || 'aad-pod-identity-config',
    typeUpgradeKey: flags.get('type-upgrade-status-key') || 'type-upgrade-status',
  };
}

/** The MIC container program. Register it for images `.../aad-pod-identity/mic:<tag>`. */
export function micProgram(opts: PodIdentityOptions): ContainerProgram {
  return (ctx) => new MicProcess(opts, ctx).process;
}

/** Whether an image is MIC's. */
export function isMicImage(image: string): boolean {
  return /\/aad-pod-identity\/mic:/.test(image);
}

/** One planned AzureAssignedIdentity. */
interface Desired {
  name: string;
  namespace: string;
  pod: string;
  podNamespace: string;
  node: string;
  identity: Readonly<KObject>;
  binding: Readonly<KObject>;
}

/** What one VMSS gets in a sync cycle. */
interface ScaleSetWork {
  add: Map<string, string>; // lower-cased id -> id
  remove: Map<string, string>;
  create: KObject[]; // objects to mark Assigned afterwards
  remove_objects: KObject[]; // objects to delete afterwards
}

class MicProcess {
  readonly process: ContainerProcess;
  private readonly opts: PodIdentityOptions;
  private readonly ctx: ContainerContext;
  private readonly store: ObjectStore;
  private readonly latch = new ExitLatch();
  private readonly life = new AbortController();
  private readonly cleanups: (() => void)[] = [];
  private readonly cfg: MicConfig;
  private readonly version: [number, number, number];
  private readonly assignmentMs: number;
  private readonly readMs: number;
  private leader = false;
  private syncLoopStarted = false;
  private observed: { raw: string; at: number } | undefined;
  private lastRenew = 0;
  private syncing = false;
  private dirty = false;

  constructor(opts: PodIdentityOptions, ctx: ContainerContext) {
    this.opts = opts;
    this.ctx = ctx;
    this.store = opts.store;
    const timing = timingOf(opts);
    this.assignmentMs = timing.micAssignmentSeconds * 1000;
    this.readMs = timing.micReadSeconds * 1000;
    this.version = imageVersion(String(ctx.container.image ?? ''));
    const argv = ctx.argv.length && !ctx.argv[0].startsWith('-') ? ctx.argv.slice(1) : ctx.argv;
    this.cfg = parseMicArgs(argv, ctx.env, ctx.pod.metadata.name ?? 'mic', { syncMs: timing.micSyncSeconds * 1000, reconcileMs: timing.micReconcileSeconds * 1000 });
    ctx.signal.addEventListener('abort', () => this.exit(137), { once: true });
    this.process = {
      exited: this.latch.exited,
      isReady: () => !this.latch.done,
      // MIC installs no SIGTERM handler: Go's default action ends it at once, nothing cleaned up, lease kept.
      terminate: () => this.exit(143),
    };
    void this.main().catch((e) => {
      if (!this.latch.done && !this.life.signal.aborted) this.fatal('main.go:200', String((e as Error)?.message ?? e));
    });
  }

  private log(sev: 'I' | 'W' | 'E' | 'F', src: string, msg: string): void {
    this.ctx.log(klogLine(this.ctx.clock, sev, src, msg));
  }

  private fatal(src: string, msg: string): void {
    this.log('F', src, msg);
    this.exit(255);
  }

  private exit(code: number): void {
    if (this.latch.done) return;
    for (const c of this.cleanups.splice(0).reverse()) c();
    this.life.abort(new Error('process exited'));
    this.latch.exit(code);
  }

  private sleep(ms: number): Promise<void> {
    return this.ctx.clock.sleep(ms, this.life.signal);
  }

  private async main(): Promise<void> {
    const podns = this.ctx.env.MIC_POD_NAMESPACE;
    if (!podns) return this.fatal('main.go:120', 'namespace not specified. Please add meta.namespace as env variable MIC_POD_NAMESPACE');
    this.log('I', 'main.go:127', `starting mic process. Version: v${this.version.join('.')}. Build date: 2023-09-28-18:39`);
    this.log('I', 'main.go:160', `running MIC in namespaced mode: ${this.cfg.namespaced}`);
    if (this.cfg.immutableUserMsis.length) this.log('I', 'mic.go:160', `immutable user MSIs: ${this.cfg.immutableUserMsis.length}`);
    // pkg/probes: 200 always; `Active` only once this replica leads and its sync loop runs.
    this.cleanups.push(this.ctx.network.listen(this.ctx.podIp, this.cfg.probePort, (req) => this.probe(req)));
    this.log('I', 'mic.go:215', 'initiating MIC Leader election');
    await this.electionLoop();
  }

  private probe(req: SimHttpRequest): SimHttpResponse {
    if (req.url.pathname !== '/healthz') return { status: 404, headers: TEXT, body: '404 page not found\n' };
    return { status: 200, headers: TEXT, body: this.syncLoopStarted ? 'Active' : 'Not Active' };
  }

  // ---- leader election (client-go leaderelection with an Endpoints lock) -------------------

  private get retryMs(): number {
    return this.cfg.leaseMs / 4;
  }

  private async electionLoop(): Promise<void> {
    for (;;) {
      if (this.life.signal.aborted) return;
      const ok = this.tryAcquireOrRenew();
      const now = this.ctx.clock.now();
      if (ok) {
        this.lastRenew = now;
        if (!this.leader) {
          this.leader = true;
          this.log('I', 'leaderelection.go:258', `successfully acquired lease ${this.cfg.leaderNamespace}/${this.cfg.leaderName}`);
          void this.startLeading().catch((e) => {
            if (!this.life.signal.aborted) this.fatal('mic.go:250', String((e as Error)?.message ?? e));
          });
        }
      } else if (this.leader && now - this.lastRenew >= this.cfg.leaseMs / 2) {
        // RenewDeadline passed without a successful renew: OnStoppedLeading exits the process.
        this.log('E', 'mic.go:236', 'Lost leader lease');
        this.exit(1);
        return;
      }
      // wait.JitterUntil with JitterFactor 1.2 on the retry period; the sandbox keeps it deterministic.
      await this.sleep(this.retryMs);
    }
  }

  private endpointsType(): ResourceType | undefined {
    return coreType(this.store, 'endpoints');
  }

  /** One `tryAcquireOrRenew`: true while this replica holds the lease. */
  private tryAcquireOrRenew(): boolean {
    const t = this.endpointsType();
    if (!t) return false;
    const { leaderNamespace: ns, leaderName: name, leaderInstance: me } = this.cfg;
    const now = this.ctx.clock.now();
    const nowIso = isoSeconds(now);
    try {
      const cur = this.store.get(t, ns, name);
      if (!cur) {
        const rec: LeaderElectionRecord = { holderIdentity: me, leaseDurationSeconds: this.cfg.leaseMs / 1000, acquireTime: nowIso, renewTime: nowIso, leaderTransitions: 0 };
        this.store.create(t, { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: ns, annotations: { [LEADER_ANNOTATION]: JSON.stringify(rec) } } });
        this.observed = { raw: JSON.stringify(rec), at: now };
        return true;
      }
      const raw = cur.metadata.annotations?.[LEADER_ANNOTATION] ?? '';
      let old: LeaderElectionRecord | undefined;
      try {
        old = raw ? (JSON.parse(raw) as LeaderElectionRecord) : undefined;
      } catch {
        old = undefined;
      }
      // client-go measures expiry from when it last saw the record change, not from renewTime.
      if (!this.observed || this.observed.raw !== raw) this.observed = { raw, at: now };
      const held = old?.holderIdentity;
      if (held && held !== me && this.observed.at + (old!.leaseDurationSeconds || this.cfg.leaseMs / 1000) * 1000 > now) return false;
      const rec: LeaderElectionRecord = {
        holderIdentity: me,
        leaseDurationSeconds: this.cfg.leaseMs / 1000,
        acquireTime: held === me && old ? old.acquireTime : nowIso,
        renewTime: nowIso,
        leaderTransitions: (old?.leaderTransitions ?? 0) + (held && held !== me ? 1 : 0),
      };
      const next = structuredClone(cur);
      next.metadata.annotations = { ...next.metadata.annotations, [LEADER_ANNOTATION]: JSON.stringify(rec) };
      this.store.update(t, next);
      this.observed = { raw: JSON.stringify(rec), at: now };
      return true;
    } catch (e) {
      if (e instanceof StoreError && (e.reason === 'Conflict' || e.reason === 'AlreadyExists' || e.reason === 'NotFound')) return false;
      throw e;
    }
  }

  // ---- leading ---------------------------------------------------------------------------

  private async startLeading(): Promise<void> {
    // Pod, CRD and node informers sync before the first cycle.
    await this.sleep(1000);
    if (this.cfg.typeUpgrade && atLeast(this.version, [1, 6, 0])) this.upgradeTypes();
    this.syncLoopStarted = true;
    this.log('I', 'mic.go:340', 'sync thread started.');
    const t = this.store.subscribe((ev) => {
      const r = ev.resourceType;
      if (r.group === '' && (r.resource === 'pods' || (r.resource === 'nodes' && ev.type === 'DELETED'))) this.requestSync();
      else if (r.group === 'aadpodidentity.k8s.io' && (r.resource === 'azureidentities' || r.resource === 'azureidentitybindings')) this.requestSync();
      else if (r.group === 'aadpodidentity.k8s.io' && r.resource === 'azureassignedidentities' && ev.object.metadata.deletionTimestamp && ev.type !== 'DELETED') this.requestSync();
    });
    this.cleanups.push(t);
    this.cleanups.push(this.ctx.clock.every(this.cfg.syncMs, () => this.requestSync()));
    this.cleanups.push(this.ctx.clock.every(this.cfg.reconcileMs, () => this.requestSync(true)));
    this.requestSync();
  }

  private reconcileWanted = false;

  /** Event channel + ticker of upstream `Sync`: cycles never overlap; a request during one runs another after it. */
  private requestSync(reconcile = false): void {
    if (this.latch.done) return;
    if (reconcile) this.reconcileWanted = true;
    if (this.syncing) {
      this.dirty = true;
      return;
    }
    this.syncing = true;
    void (async () => {
      try {
        do {
          this.dirty = false;
          const rec = this.reconcileWanted;
          this.reconcileWanted = false;
          await this.syncOnce();
          if (rec) await this.reconcileAssignments();
        } while (this.dirty && !this.latch.done);
      } catch (e) {
        if (!this.life.signal.aborted) this.log('E', 'mic.go:400', `sync failed: ${(e as Error).message}`);
      } finally {
        this.syncing = false;
      }
    })();
  }

  /** Rewrites `ClientID`/`ResourceID`/`AzureIdentity`/`Selector` once, like `upgradeTypeIfRequired`. */
  private upgradeTypes(): void {
    const cmType = coreType(this.store, 'configmaps');
    const ns = this.ctx.env.MIC_POD_NAMESPACE;
    if (!cmType) return;
    const cm = this.store.get(cmType, ns, this.cfg.configMapName);
    if (cm?.data?.[this.cfg.typeUpgradeKey]) return;
    const renames: Record<string, string> = { ClientID: 'clientID', ResourceID: 'resourceID', TenantID: 'tenantID', ClientPassword: 'clientPassword', ADResourceID: 'adResourceID', ADEndpoint: 'adEndpoint', AzureIdentity: 'azureIdentity', Selector: 'selector' };
    let rewritten = 0;
    for (const res of ['azureidentities', 'azureidentitybindings'] as const) {
      const t = crdType(this.store, res);
      if (!t) continue;
      for (const o of [...this.store.scan(t)]) {
        if (!Object.keys(o.spec ?? {}).some((k) => k in renames)) continue;
        this.store.mutate(t, o.metadata.namespace, o.metadata.name!, (obj) => {
          const spec: Record<string, unknown> = {};
          for (const [k, v] of Object.entries(obj.spec ?? {})) {
            const nk = renames[k] ?? k;
            if (!(nk in spec) || renames[k] === undefined) spec[nk] = v;
          }
          obj.spec = spec;
        });
        rewritten++;
      }
    }
    const versionText = `v${this.version.join('.')}`;
    if (cm) this.store.mutate(cmType, ns, this.cfg.configMapName, (o) => void (o.data = { ...o.data, [this.cfg.typeUpgradeKey]: versionText }));
    else this.store.create(cmType, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: this.cfg.configMapName, namespace: ns }, data: { [this.cfg.typeUpgradeKey]: versionText } });
    this.log('I', 'mic.go:1120', `upgraded ${rewritten} AzureIdentity/AzureIdentityBinding objects to the current field names`);
  }

  // ---- the sync cycle --------------------------------------------------------------------

  private assignedName(pod: string, podns: string, identity: string): string {
    return `${pod}-${podns}-${identity}`;
  }

  private desired(): Desired[] {
    const pods = coreType(this.store, 'pods');
    const bt = crdType(this.store, 'azureidentitybindings');
    if (!pods || !bt) return [];
    const bindings = [...this.store.scan(bt)];
    const ids = identitiesByName(this.store);
    const out: Desired[] = [];
    for (const p of this.store.scan(pods, { labelSelector: BINDING_LABEL })) {
      if (!p.spec?.nodeName || !p.metadata.labels?.[BINDING_LABEL]) continue;
      // A finished pod no longer needs its identity.
      if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
      for (const m of desiredAssignments(p, bindings, ids, this.cfg.namespaced)) {
        const namespaced = this.cfg.namespaced || m.identity.metadata.annotations?.['aadpodidentity.k8s.io/Behavior'] === 'namespaced';
        out.push({
          name: this.assignedName(p.metadata.name!, p.metadata.namespace!, m.identity.metadata.name!),
          // Back-compat upstream: `default` unless MIC or the identity is namespaced.
          namespace: namespaced ? m.identity.metadata.namespace! : 'default',
          pod: p.metadata.name!,
          podNamespace: p.metadata.namespace!,
          node: p.spec.nodeName,
          identity: m.identity,
          binding: m.binding,
        });
      }
    }
    return out;
  }

  private matches(a: Readonly<KObject>, d: Desired): boolean {
    const s = a.spec ?? {};
    return (
      a.metadata.name === d.name &&
      a.metadata.namespace === d.namespace &&
      s.pod === d.pod &&
      s.podNamespace === d.podNamespace &&
      s.nodename === d.node &&
      s.azureBindingRef?.metadata?.name === d.binding.metadata.name &&
      s.azureIdentityRef?.metadata?.name === d.identity.metadata.name
    );
  }

  private workFor(map: Map<string, ScaleSetWork>, vmss: string): ScaleSetWork {
    let w = map.get(vmss);
    if (!w) map.set(vmss, (w = { add: new Map(), remove: new Map(), create: [], remove_objects: [] }));
    return w;
  }

  private isImmutable(clientId: string): boolean {
    return this.cfg.immutableUserMsis.includes(clientId);
  }

  /** `checkIfInUse`: another pod's desired assignment of the same identity on the same node or VMSS. */
  private inUse(del: Readonly<KObject>, desired: Desired[]): boolean {
    const ref = del.spec?.azureIdentityRef;
    if (identityType(ref) !== 0) return false;
    const delVmss = scaleSetOfNode(this.store, this.opts.infra, del.spec?.nodename ?? '');
    for (const d of desired) {
      if (d.pod === del.spec?.pod) continue;
      if (identityClientId(d.identity) !== identityClientId(ref)) continue;
      if (d.node === del.spec?.nodename) return true;
      if (delVmss && scaleSetOfNode(this.store, this.opts.infra, d.node) === delVmss) return true;
    }
    return false;
  }

  private async syncOnce(): Promise<void> {
    const aaiType = crdType(this.store, 'azureassignedidentities');
    if (!aaiType) return;
    const desired = this.desired();
    const current = [...this.store.scan(aaiType)];
    const nodes = coreType(this.store, 'nodes');

    // Objects and wishes meet by namespace/name (`matches` needs equal names), so index both
    // instead of comparing every object with every wish: 10,000 pods made that quadratic.
    const byName = new Map<string, Readonly<KObject>>();
    for (const a of current) byName.set(`${a.metadata.namespace}/${a.metadata.name}`, a);
    const wanted = new Map<string, Desired[]>();
    for (const d of desired) {
      const k = `${d.namespace}/${d.name}`;
      const list = wanted.get(k);
      if (list) list.push(d);
      else wanted.set(k, [d]);
    }
    // An object being deleted by someone else is let go (and recreated next cycle if still wanted).
    const toDelete = current.filter((a) => a.metadata.deletionTimestamp || !(wanted.get(`${a.metadata.namespace}/${a.metadata.name}`) ?? []).some((d) => this.matches(a, d)));
    const toCreate: { d: Desired; existing?: Readonly<KObject> }[] = [];
    for (const d of desired) {
      const same = byName.get(`${d.namespace}/${d.name}`);
      const existing = same && this.matches(same, d) && !same.metadata.deletionTimestamp ? same : undefined;
      if (!existing) {
        if (!same) toCreate.push({ d });
      } else if (existing.status?.status === 'Created' || existing.status?.status === undefined) toCreate.push({ d, existing });
    }
    if (!toDelete.length && !toCreate.length) return;

    const work = new Map<string, ScaleSetWork>();
    for (const a of toDelete) {
      const node = a.spec?.nodename ?? '';
      if (nodes && !this.store.peek(nodes, undefined, node)) {
        // cleanUpAllAssignedIdentitiesOnNode: the node is gone, so is its VM's need; no Azure call.
        this.removeAssigned(a);
        continue;
      }
      const vmss = scaleSetOfNode(this.store, this.opts.infra, node);
      if (!vmss) {
        this.removeAssigned(a);
        continue;
      }
      const w = this.workFor(work, vmss);
      w.remove_objects.push(a as KObject);
      const ref = a.spec?.azureIdentityRef;
      const state = a.status?.status ?? '';
      if ((state === 'Assigned' || state === '') && identityType(ref) === 0 && !this.inUse(a, desired) && !this.isImmutable(identityClientId(ref))) {
        const id = identityResourceId(ref);
        if (id) w.remove.set(id.toLowerCase(), id);
      }
    }
    for (const { d, existing } of toCreate) {
      if (nodes && !this.store.peek(nodes, undefined, d.node)) continue;
      const vmss = scaleSetOfNode(this.store, this.opts.infra, d.node);
      if (!vmss) continue;
      let obj: KObject | undefined = existing ? this.store.get(aaiType, existing.metadata.namespace, existing.metadata.name!) : undefined;
      if (!obj) obj = this.createAssigned(aaiType, d);
      if (!obj) continue;
      const w = this.workFor(work, vmss);
      w.create.push(obj);
      if (identityType(d.identity) === 0) {
        const id = identityResourceId(d.identity);
        if (id) w.add.set(id.toLowerCase(), id);
      }
    }
    if (!work.size) return;

    // Assignment latency: the VMSS GET, and when an identity is to be added or removed the PATCH's
    // long-running operation and its polling (upstream sends no PATCH when nothing changes).
    await this.sleep(this.needsPatch(work) ? this.assignmentMs : this.readMs);
    for (const [vmss, w] of work) this.applyScaleSet(aaiType, vmss, w);
  }

  /** Whether any scale set of the cycle lacks an identity to add or still carries one to remove (what `applyScaleSet` would PATCH). */
  private needsPatch(work: Map<string, ScaleSetWork>): boolean {
    for (const [vmss, w] of work) {
      const set = this.opts.infra.scaleSet(vmss);
      for (const key of w.add.keys()) if (!set?.userAssignedIdentities.has(key)) return true;
      for (const key of w.remove.keys()) if (!w.add.has(key) && set?.userAssignedIdentities.has(key)) return true;
    }
    return false;
  }

  private createAssigned(t: ResourceType, d: Desired): KObject | undefined {
    const obj: KObject = {
      apiVersion: 'aadpodidentity.k8s.io/v1',
      kind: 'AzureAssignedIdentity',
      metadata: { name: d.name, namespace: d.namespace, labels: { nodename: d.node }, finalizers: [ASSIGNED_FINALIZER] },
      spec: {
        azureIdentityRef: structuredClone(d.identity),
        azureBindingRef: structuredClone(d.binding),
        pod: d.pod,
        podNamespace: d.podNamespace,
        nodename: d.node,
      },
      status: { availableReplicas: 1, status: 'Created' },
    };
    try {
      const created = this.store.create(t, obj);
      this.log('I', 'crd.go:210', `created assigned identity ${d.namespace}/${d.name}`);
      return created;
    } catch (e) {
      this.log('E', 'mic.go:760', `Creating assigned identity for pod ${d.name} resulted in error ${(e as Error).message}`);
      return undefined;
    }
  }

  private setStatus(t: ResourceType, a: Readonly<KObject>, status: string): void {
    const sub = t.subresources?.includes('status') ? { subresource: 'status' as const } : {};
    this.store.mutate(t, a.metadata.namespace, a.metadata.name!, (o) => {
      if (o.status?.status === status) return false;
      o.status = { ...o.status, status };
    }, sub);
  }

  /** `RemoveAssignedIdentity`: status `Unassigned`, finalizer removed, object deleted. */
  private removeAssigned(a: Readonly<KObject>): void {
    const t = crdType(this.store, 'azureassignedidentities');
    if (!t) return;
    try {
      if (!a.metadata.deletionTimestamp) this.setStatus(t, a, 'Unassigned');
      this.store.mutate(t, a.metadata.namespace, a.metadata.name!, (o) => {
        if (!o.metadata.finalizers?.includes(ASSIGNED_FINALIZER)) return false;
        o.metadata.finalizers = o.metadata.finalizers.filter((f) => f !== ASSIGNED_FINALIZER);
      });
      if (this.store.peek(t, a.metadata.namespace, a.metadata.name!)) this.store.delete(t, a.metadata.namespace, a.metadata.name!);
      this.log('I', 'crd.go:260', `deleted assigned identity ${a.metadata.namespace}/${a.metadata.name}`);
    } catch (e) {
      if (!(e instanceof StoreError && e.reason === 'NotFound')) this.log('E', 'mic.go:800', `Removing assigned identity ${a.metadata.name} resulted in error ${(e as Error).message}`);
    }
  }

  /** `UpdateUserMSI` for one VMSS, then the objects' statuses. */
  private applyScaleSet(t: ResourceType, vmss: string, w: ScaleSetWork): void {
    const set = this.opts.infra.scaleSet(vmss);
    const delta: Record<string, {} | null> = {};
    for (const [key, id] of w.add) if (!set?.userAssignedIdentities.has(key)) delta[id] = {};
    for (const [key, id] of w.remove) if (!w.add.has(key) && set?.userAssignedIdentities.has(key)) delta[id] = null;
    let ok = true;
    if (Object.keys(delta).length) {
      try {
        this.opts.infra.patchIdentities(vmss, delta, { caller: 'mic' });
        this.log('I', 'cloudprovider.go:250', `updated user-assigned identities on VMSS ${vmss}: +${Object.values(delta).filter((v) => v !== null).length} -${Object.values(delta).filter((v) => v === null).length}`);
      } catch (e) {
        ok = false;
        this.log('E', 'mic.go:880', `Updating msis on node ${vmss}, add [${w.add.size}], del [${w.remove.size}] failed with error ${(e as Error).message}`);
      }
    }
    const now = this.opts.infra.scaleSet(vmss);
    for (const obj of w.create) {
      const id = identityResourceId(obj.spec?.azureIdentityRef);
      // After a failed PATCH only identities that really are on the VMSS count as assigned (upstream re-reads the list).
      if (!ok && identityType(obj.spec?.azureIdentityRef) === 0 && !now?.userAssignedIdentities.has(id.toLowerCase())) continue;
      if (!this.store.peek(t, obj.metadata.namespace, obj.metadata.name!)) continue;
      this.setStatus(t, obj, 'Assigned');
    }
    for (const obj of w.remove_objects) {
      const id = identityResourceId(obj.spec?.azureIdentityRef);
      if (!ok && w.remove.has(id.toLowerCase()) && now?.userAssignedIdentities.has(id.toLowerCase())) continue;
      this.removeAssigned(obj);
    }
  }

  /** `ReconcileIdentityAssignment`: re-adds identities of `Assigned` objects missing from their VMSS. */
  private async reconcileAssignments(): Promise<void> {
    const t = crdType(this.store, 'azureassignedidentities');
    if (!t) return;
    const missing = new Map<string, Record<string, {}>>();
    for (const a of this.store.scan(t)) {
      if (a.status?.status !== 'Assigned' || a.metadata.deletionTimestamp || identityType(a.spec?.azureIdentityRef) !== 0) continue;
      const vmss = scaleSetOfNode(this.store, this.opts.infra, a.spec?.nodename ?? '');
      const id = identityResourceId(a.spec?.azureIdentityRef);
      const set = vmss ? this.opts.infra.scaleSet(vmss) : undefined;
      if (!vmss || !set || !id || set.userAssignedIdentities.has(id.toLowerCase())) continue;
      const delta = missing.get(vmss) ?? {};
      delta[id] = {};
      missing.set(vmss, delta);
    }
    if (!missing.size) return;
    await this.sleep(this.assignmentMs);
    for (const [vmss, delta] of missing) {
      try {
        this.opts.infra.patchIdentities(vmss, delta, { caller: 'mic' });
        this.log('I', 'mic.go:1200', `reconciled identity assignment on VMSS ${vmss}: re-added ${Object.keys(delta).length}`);
      } catch (e) {
        this.log('E', 'mic.go:1205', `failed to reconcile identity assignment on VMSS ${vmss}: ${(e as Error).message}`);
      }
    }
  }
}
