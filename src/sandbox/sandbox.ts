/**
 * The sandbox: a simulated AKS cluster running AAD Pod Identity in standard mode, and the
 * Azure Resource Manager behind it, served over HTTPS on loopback to real clients.
 *
 * `Sandbox.start()` builds the scenario's cluster, starts the controllers (scheduler,
 * workload controllers, kubelet, node lifecycle, MIC, NMI, IMDS, churn, the outage meter)
 * and both endpoints, and `waitReady()` resolves once the cluster is in the steady state an
 * operator would find: every workload available, every NMI `Active`, a MIC leader elected and
 * every service pod's identity assigned.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { ArmState } from './arm/state.ts';
import { handleAksControl, scheduleAksOperations } from './aks-operations.ts';
import { startArmServer } from './arm/server.ts';
import { ScaledClock } from './clock.ts';
import { addNode, ClusterControllers } from './controllers/index.ts';
import { startChurn } from './controllers/churn.ts';
import { FaultInjector, type FaultRule } from './faults.ts';
import { identityObjects, podIdentityObjects, workloadObjects } from './install.ts';
import { applyDefaults, validate } from './kube-api/defaults.ts';
import { registerBuiltinTypes } from './kube-api/types.ts';
import { startKubeApiServer } from './kube-api/server.ts';
import { bootstrapPolicyObjects } from './kube-api/rbac.ts';
import { sandboxUsers, type SandboxUser } from './kube-api/users.ts';
import { Metrics } from './metrics.ts';
import { PodNetwork } from './netsim.ts';
import { OutageMeter, registerPodIdentityPrograms, startImds, type PodIdentityOptions } from './podidentity/index.ts';
import { PodLogs } from './pod-logs.ts';
import { ProgramRegistry } from './runtime.ts';
import { registerWorkloadPrograms, startServiceProxy } from './services.ts';
import { stableGuid as stableGuidFor, type Scenario } from './scenario.ts';
import { ObjectStore, type KObject, type ResourceType } from './store.ts';
import { startWorkloadIdentity, type WorkloadIdentity } from './workload-identity/index.ts';
import type { WorkloadIdentitySnapshot } from './workload-identity/state.ts';

export interface SandboxOptions {
  scenario: Scenario;
  /** Overrides the scenario's time scale (simulated seconds per real second). */
  timeScale?: number;
  kubePort?: number;
  armPort?: number;
  /** Start batch churn from the scenario (default true). */
  churn?: boolean;
}

/** What `sandbox status` shows. */
export interface SandboxStatus {
  scenario: string;
  timeScale: number;
  simulatedTime: string;
  /**
   * The clock's anchor: simulated time started at `startedAt` (wall clock) and runs
   * `timeScale` times faster; API timestamps are shown on the wall clock (`clientNow`).
   */
  clock: { timeScale: number; startedAt: string; simulatedNow: string; clientNow: string };
  kubeUrl: string;
  armUrl: string;
  objects: Record<string, number>;
  metrics: ReturnType<Metrics['snapshot']>;
  outage: ReturnType<OutageMeter['report']>;
  faults: ReturnType<FaultInjector['list']>;
  workloadIdentity?: WorkloadIdentitySnapshot & { authorityUrl: string };
}

/** Paths of the client files {@link Sandbox.writeClientFiles} writes. */
export interface SandboxClientFiles {
  dir: string;
  kubeconfig: string;
  caFile: string;
  armTokenFile: string;
  envFile: string;
}

const WELL_KNOWN_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

export class Sandbox {
  readonly scenario: Scenario;
  readonly clock: ScaledClock;
  readonly store: ObjectStore;
  readonly network = new PodNetwork();
  readonly logs = new PodLogs();
  readonly metrics = new Metrics();
  readonly faults = new FaultInjector();
  readonly programs = new ProgramRegistry();
  readonly arm: ArmState;
  readonly meter: OutageMeter;
  /** What MIC, NMI, IMDS and the meter share: the cluster, the network, the VMSS state, the timings. */
  private readonly podIdentity: PodIdentityOptions;
  kubeUrl = '';
  armUrl = '';
  /** Bearer token of the Kubernetes API server (written only into the 0600 kubeconfig). */
  readonly kubeToken = randomBytes(24).toString('hex');
  /** The `readonly`, `operator` and scenario users (tokens written only into the 0600 kubeconfig). */
  readonly users: SandboxUser[];
  /** Bearer token of the ARM endpoint (written only into a 0600 file). */
  readonly armToken = randomBytes(24).toString('hex');
  caPem = '';
  private controllers?: ClusterControllers;
  /** Microsoft Entra Workload ID: OIDC issuer, federated credentials, webhook, token endpoint. */
  workloadIdentity?: WorkloadIdentity;
  private readonly stoppers: (() => void | Promise<void>)[] = [];
  private stopped = false;

  private constructor(opts: SandboxOptions) {
    this.scenario = opts.scenario;
    this.clock = new ScaledClock({ timeScale: opts.timeScale ?? opts.scenario.timeScale });
    this.store = new ObjectStore(this.clock);
    this.users = sandboxUsers(opts.scenario.users ?? []);
    this.arm = new ArmState({
      subscriptionId: opts.scenario.subscriptionId,
      tenantId: opts.scenario.tenantId,
      clock: this.clock,
      metrics: this.metrics,
      latency: {
        identityUpdateSeconds: opts.scenario.latency.vmssIdentityUpdateSeconds,
        reimageSeconds: opts.scenario.latency.reimageSeconds,
        deleteSeconds: opts.scenario.latency.deleteInstanceSeconds,
      },
    });
    this.arm.legacyInstanceModel = opts.scenario.legacyInstanceModel;
    this.podIdentity = { store: this.store, clock: this.clock, network: this.network, infra: this.arm, timing: { micAssignmentSeconds: opts.scenario.latency.micAssignmentSeconds, nmiStartupSeconds: opts.scenario.latency.nmiStartupSeconds } };
    this.meter = new OutageMeter(this.podIdentity);
  }

  /** Builds the scenario's cluster and serves it. Call {@link Sandbox.waitReady} before use. */
  static async start(opts: SandboxOptions): Promise<Sandbox> {
    const sb = new Sandbox(opts);
    try {
      await sb.boot(opts);
    } catch (e) {
      await sb.stop();
      throw e;
    }
    return sb;
  }

  private async boot(opts: SandboxOptions): Promise<void> {
    const s = this.scenario;
    const { generateSandboxTls } = await import('./tls.ts');
    const tls = await generateSandboxTls();
    this.caPem = tls.caPem;
    registerBuiltinTypes(this.store);
    this.buildAzure();
    this.buildCluster();

    for (const rule of s.faults) this.faults.add(rule as unknown as FaultRule);
    const wi = await this.startWorkloadIdentity(tls);
    registerPodIdentityPrograms(this.programs, this.podIdentity);
    registerWorkloadPrograms(this.programs);
    const stopServices = startServiceProxy(this.store, this.network, this.clock);
    this.stoppers.push(stopServices);
    const imds = startImds(this.podIdentity);
    this.stoppers.push(() => imds.stop());
    this.controllers = new ClusterControllers({ store: this.store, clock: this.clock, network: this.network, logs: this.logs, programs: this.programs, infra: this.arm, volumeFiles: wi.files });
    this.controllers.start();
    this.stoppers.push(() => this.controllers?.stop());
    wi.attachMeter(this.meter);
    this.meter.start();
    this.stoppers.push(() => this.meter.stop());
    if (opts.churn !== false) {
      for (const c of s.churn) {
        const stop = startChurn(this.store, this.clock, {
          namespace: c.namespace,
          every: c.everySeconds,
          bindingSelector: c.binding,
          nodeSelector: c.pool ? { 'kubernetes.azure.com/agentpool': c.pool } : undefined,
          jobDurationSeconds: c.durationSeconds,
        });
        this.stoppers.push(typeof stop === 'function' ? stop : () => (stop as any)?.stop?.());
      }
    }
    const kube = await startKubeApiServer({
      store: this.store,
      tls,
      token: this.kubeToken,
      users: this.users,
      metrics: this.metrics,
      faults: this.faults,
      network: this.network,
      logs: this.logs,
      clock: this.clock,
      control: (req, res, body) => this.handleControl(req, res, body),
      subresources: wi.subresources,
      port: opts.kubePort ?? 0,
    });
    this.kubeUrl = kube.url;
    this.stoppers.push(() => kube.close());
    this.stoppers.push(scheduleAksOperations(this, s.aksOperations ?? []));
    const arm = await startArmServer({ state: this.arm, tls, token: this.armToken, metrics: this.metrics, faults: this.faults, clock: this.clock, port: opts.armPort ?? 0, extensions: [wi.armRoutes] });
    this.armUrl = arm.url;
    this.stoppers.push(() => arm.close());
  }

  /** Starts the workload identity component with the scenario's settings and credentials. */
  private async startWorkloadIdentity(tls: Awaited<ReturnType<typeof import('./tls.ts').generateSandboxTls>>): Promise<WorkloadIdentity> {
    const w = this.scenario.workloadIdentity;
    const wi = await startWorkloadIdentity({
      store: this.store,
      clock: this.clock,
      network: this.network,
      arm: this.arm,
      tls,
      programs: this.programs,
      metrics: this.metrics,
      faults: this.faults,
      clusterGuid: stableId(this.scenario, 'oidc-issuer'),
      config: { oidcIssuerEnabled: w.oidcIssuerEnabled, workloadIdentityEnabled: w.enabled, propagationSeconds: w.propagationSeconds, enableSeconds: w.enableSeconds, credentialWriteSeconds: w.credentialWriteSeconds },
      seed: w.federatedCredentials.map((c) => ({ identityId: this.arm.identity(c.identity)!.id, name: c.name, subject: `system:serviceaccount:${c.namespace}:${c.serviceAccount}`, issuer: c.issuer, audiences: [c.audience] })),
    });
    this.workloadIdentity = wi;
    this.stoppers.push(() => wi.stop());
    return wi;
  }

  /** Resource id of the simulated AKS cluster. */
  get aksResourceId(): string {
    const c = this.scenario.cluster;
    return `/subscriptions/${this.scenario.subscriptionId}/resourceGroups/${c.resourceGroup}/providers/Microsoft.ContainerService/managedClusters/${c.name}`;
  }

  private buildAzure(): void {
    const s = this.scenario;
    const c = s.cluster;
    const kubelet = this.arm.addIdentity({ name: `${c.name}-agentpool`, resourceGroup: c.nodeResourceGroup, location: c.location, clientId: stableId(s, 'kubelet-client'), principalId: stableId(s, 'kubelet-principal') });
    for (const i of s.identities) {
      const id = this.arm.addIdentity({ name: i.name, resourceGroup: i.resourceGroup, location: c.location, clientId: i.clientId, principalId: i.principalId });
      if (i.denyAssign) this.arm.denyAssign(id.id);
    }
    const declared = new Set(s.identities.map((i) => i.name));
    for (const p of s.pools) {
      for (const name of p.preassigned) {
        if (!declared.has(name) && !this.arm.identity(name)) {
          this.arm.addIdentity({ name, resourceGroup: c.nodeResourceGroup, location: c.location, clientId: stableId(s, `addon-client:${name}`), principalId: stableId(s, `addon-principal:${name}`) });
        }
      }
    }
    this.arm.setManagedCluster({
      resourceGroup: c.resourceGroup,
      name: c.name,
      location: c.location,
      nodeResourceGroup: c.nodeResourceGroup,
      kubeletIdentity: { resourceId: kubelet.id, clientId: kubelet.clientId, objectId: kubelet.principalId },
      agentPools: s.pools.map((p) => ({ name: p.name, count: p.count, vmSize: p.vmSize, mode: p.mode, type: p.type })),
      kubernetesVersion: c.kubernetesVersion,
      fqdn: `${c.name}-dns-${stableId(s, 'fqdn').slice(0, 8)}.hcp.${c.location}.azmk8s.io`,
    } as any);
    for (const p of s.pools) {
      if (p.type !== 'VirtualMachineScaleSets') continue;
      this.arm.addScaleSet({
        name: '',
        poolName: p.name,
        capacity: p.count,
        vmSize: p.vmSize,
        identities: [kubelet.id, ...p.preassigned.map((n) => this.arm.identity(n)!.id)],
      } as any);
    }
  }

  private type(group: string, resource: string): ResourceType {
    return this.store.typeOrThrow(group, resource);
  }

  private createAll(objects: KObject[]): void {
    for (const o of objects) {
      const [group] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : [''];
      const t = this.store.typeForKind(o.apiVersion, o.kind) ?? this.store.types().find((x) => x.group === group && x.kind === o.kind);
      if (!t) throw new Error(`sandbox: no API type for ${o.apiVersion} ${o.kind}`);
      // Exactly what `kubectl apply` of the same manifest stores: server defaults, validation.
      this.store.create(t, o, {
        prepare: (x) => {
          applyDefaults(t, x);
          validate(this.store, t, x);
        },
      });
    }
  }

  private buildCluster(): void {
    const s = this.scenario;
    const ns = this.type('', 'namespaces');
    for (const name of [...WELL_KNOWN_NAMESPACES, ...s.namespaces]) {
      if (!this.store.peek(ns, undefined, name)) this.store.create(ns, { apiVersion: 'v1', kind: 'Namespace', metadata: { name }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } });
    }
    const sa = this.type('', 'serviceaccounts');
    for (const name of [...WELL_KNOWN_NAMESPACES, ...s.namespaces]) {
      if (!this.store.peek(sa, name, 'default')) this.store.create(sa, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: name } });
    }
    let nodeIndex = 0;
    for (const set of this.arm.scaleSets()) {
      const pool = s.pools.find((p) => p.name === set.poolName)!;
      for (const inst of set.instances.values()) {
        const idx = nodeIndex++;
        addNode(this.store, {
          name: inst.computerName,
          pool: set.poolName,
          providerID: `azure:///subscriptions/${s.subscriptionId}/resourceGroups/${set.resourceGroup.toLowerCase()}/providers/Microsoft.Compute/virtualMachineScaleSets/${set.name}/virtualMachines/${inst.instanceId}`,
          ip: `10.224.${Math.floor(idx / 250)}.${(idx % 250) + 4}`,
          capacityPods: pool.maxPodsPerNode,
          labels: { 'kubernetes.azure.com/mode': pool.mode.toLowerCase(), 'node.kubernetes.io/instance-type': pool.vmSize },
        });
      }
    }
    // The bootstrap RBAC policy every cluster has, then what the sandbox's users may do.
    this.createAll(bootstrapPolicyObjects());
    for (const u of this.users) this.createAll(u.objects);
    // AvailabilitySet pools have no scale set: their nodes are standalone VMs (aks-<pool>-<id>-<i>).
    for (const pool of s.pools.filter((p) => p.type === 'AvailabilitySet')) {
      for (let i = 0; i < pool.count; i++) {
        const idx = nodeIndex++;
        const name = `aks-${pool.name}-12345678-${i}`;
        addNode(this.store, {
          name,
          pool: pool.name,
          providerID: `azure:///subscriptions/${s.subscriptionId}/resourceGroups/${s.cluster.nodeResourceGroup.toLowerCase()}/providers/Microsoft.Compute/virtualMachines/${name}`,
          ip: `10.224.${Math.floor(idx / 250)}.${(idx % 250) + 4}`,
          capacityPods: pool.maxPodsPerNode,
          labels: { 'kubernetes.azure.com/mode': pool.mode.toLowerCase(), 'node.kubernetes.io/instance-type': pool.vmSize },
        });
      }
    }
    this.createAll(podIdentityObjects(s));
    this.createAll(identityObjects(s));
    this.createAll(workloadObjects(s));
  }

  /**
   * Resolves once the cluster is in its steady state, or rejects with what is still missing
   * after `timeoutMs` (real time).
   */
  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let missing: string[] = [];
    while (Date.now() < deadline) {
      missing = this.notReadyReasons();
      if (missing.length === 0) {
        // Start-up (NMI pods coming up on fresh nodes) is not an outage: measure from steady state.
        this.meter.reset();
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`sandbox not ready after ${Math.round(timeoutMs / 1000)} s: ${missing.slice(0, 5).join('; ')}${missing.length > 5 ? ` (+${missing.length - 5} more)` : ''}`);
  }

  /** What keeps the sandbox from its steady state (empty when ready). */
  notReadyReasons(): string[] {
    const out: string[] = [];
    for (const d of this.store.scan(this.type('apps', 'deployments'))) {
      const want = d.spec?.replicas ?? 1;
      if ((d.status?.availableReplicas ?? 0) < want) out.push(`deployment ${d.metadata.namespace}/${d.metadata.name} ${d.status?.availableReplicas ?? 0}/${want} available`);
    }
    for (const ds of this.store.scan(this.type('apps', 'daemonsets'))) {
      const want = ds.status?.desiredNumberScheduled;
      if (!want || ds.status?.numberReady !== want) out.push(`daemonset ${ds.metadata.namespace}/${ds.metadata.name} ${ds.status?.numberReady ?? 0}/${want ?? '?'} ready`);
    }
    const aai = this.store.type('aadpodidentity.k8s.io', 'azureassignedidentities');
    if (aai && this.scenario.podIdentity.micReplicas > 0) {
      const assigned = new Set<string>();
      for (const a of this.store.scan(aai)) if (a.status?.status === 'Assigned') assigned.add(`${a.spec?.podNamespace}/${a.spec?.pod}`);
      for (const p of this.store.scan(this.type('', 'pods'), { labelSelector: 'aadpodidbinding' })) {
        if (p.status?.phase !== 'Running' || p.metadata.deletionTimestamp || p.metadata.ownerReferences?.some((o) => o.kind === 'Job')) continue;
        if (!assigned.has(`${p.metadata.namespace}/${p.metadata.name}`)) out.push(`pod ${p.metadata.namespace}/${p.metadata.name} has no Assigned AzureAssignedIdentity yet`);
      }
    }
    return out;
  }

  status(): SandboxStatus {
    const objects: Record<string, number> = {};
    for (const t of this.store.types()) {
      const n = this.store.count(t);
      if (n) objects[t.group ? `${t.resource}.${t.group}` : t.resource] = n;
    }
    return {
      scenario: this.scenario.name,
      timeScale: this.clock.timeScale,
      simulatedTime: new Date(this.clock.now()).toISOString(),
      clock: { timeScale: this.clock.timeScale, startedAt: new Date(this.clock.wallStart).toISOString(), simulatedNow: new Date(this.clock.now()).toISOString(), clientNow: new Date(this.clock.toWall(this.clock.now())).toISOString() },
      kubeUrl: this.kubeUrl,
      armUrl: this.armUrl,
      objects,
      metrics: this.metrics.snapshot(),
      outage: this.meter.report(),
      faults: this.faults.list(),
      workloadIdentity: this.workloadIdentity ? { ...this.workloadIdentity.state.snapshot(), authorityUrl: this.workloadIdentity.authorityUrl } : undefined,
    };
  }

  /**
   * Writes what clients need to reach the sandbox: `kubeconfig` (CA and token inline, 0600),
   * `ca.crt`, `arm-token` (0600) and `env` (shell exports; `source <dir>/env` points both
   * podid-migrate and kubectl at the sandbox). No private key is ever written.
   */
  writeClientFiles(dir: string): SandboxClientFiles {
    const abs = resolve(dir);
    mkdirSync(abs, { recursive: true, mode: 0o700 });
    const caFile = join(abs, 'ca.crt');
    const kubeconfig = join(abs, 'kubeconfig');
    const armTokenFile = join(abs, 'arm-token');
    const envFile = join(abs, 'env');
    writeFileSync(caFile, this.caPem, { mode: 0o644 });
    writeSecret(kubeconfig, this.kubeconfigYaml());
    writeSecret(armTokenFile, this.armToken + '\n');
    const q = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
    const env = [
      `# podid-migrate sandbox "${this.scenario.name}": source this file to point podid-migrate and kubectl at it.`,
      `export KUBECONFIG=${q(kubeconfig)}`,
      `export PODID_MIGRATE_ARM_ENDPOINT=${q(this.armUrl)}`,
      `export PODID_MIGRATE_ARM_TOKEN_FILE=${q(armTokenFile)}`,
      `export PODID_MIGRATE_CA_FILE=${q(caFile)}`,
      `export NODE_EXTRA_CA_CERTS=${q(caFile)}`,
      `export AZURE_SUBSCRIPTION_ID=${q(this.scenario.subscriptionId)}`,
      `export PODID_MIGRATE_AKS_ID=${q(this.aksResourceId)}`,
      `export PODID_MIGRATE_SANDBOX_DIR=${q(abs)}`,
      ...(this.workloadIdentity ? [`export PODID_MIGRATE_SANDBOX_AUTHORITY_HOST=${q(this.workloadIdentity.authorityUrl)}`] : []),
      '',
    ].join('\n');
    writeFileSync(envFile, env, { mode: 0o644 });
    return { dir: abs, kubeconfig, caFile, armTokenFile, envFile };
  }

  /**
   * A kubeconfig for the sandbox (CA data and bearer tokens inline): the administrator's
   * context (current, its user listed first) and one context per other user, named after it
   * (`readonly`, `operator`, the scenario's users).
   */
  kubeconfigYaml(): string {
    const name = `sandbox-${this.scenario.cluster.name}`;
    return toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name, cluster: { server: this.kubeUrl, 'certificate-authority-data': Buffer.from(this.caPem).toString('base64') } }],
      users: [{ name: `${name}-admin`, user: { token: this.kubeToken } }, ...this.users.map((u) => ({ name: `${name}-${u.context}`, user: { token: u.token } }))],
      contexts: [{ name, context: { cluster: name, user: `${name}-admin` } }, ...this.users.map((u) => ({ name: u.context, context: { cluster: name, user: `${name}-${u.context}` } }))],
      'current-context': name,
    });
  }

  /** `/_sandbox/...` control API, reached through the API server with its bearer token. */
  private async handleControl(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'https://sandbox');
    const send = (code: number, payload: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(payload));
      return true;
    };
    const path = url.pathname.replace(/^\/_sandbox/, '');
    try {
      if (req.method === 'GET' && path === '/status') return send(200, this.status());
      if (req.method === 'GET' && path === '/arm') return send(200, this.arm.snapshot());
      if (req.method === 'GET' && path === '/workload-identity' && this.workloadIdentity) return send(200, { ...this.workloadIdentity.state.snapshot(), authorityUrl: this.workloadIdentity.authorityUrl });
      if (req.method === 'GET' && path === '/faults') return send(200, this.faults.list());
      if (req.method === 'POST' && path === '/faults') {
        const rule = JSON.parse(body.toString('utf8') || '{}');
        return send(201, { id: this.faults.add(rule) });
      }
      const m = /^\/faults\/([^/]+)$/.exec(path);
      if (req.method === 'DELETE' && m) return send(this.faults.remove(decodeURIComponent(m[1])) ? 200 : 404, {});
      if (req.method === 'DELETE' && path === '/faults') {
        this.faults.clear();
        return send(200, {});
      }
      if (req.method === 'POST' && path === '/outage/reset') {
        this.meter.reset();
        return send(200, {});
      }
      if (req.method === 'POST' && path === '/metrics/reset') {
        this.metrics.reset();
        return send(200, {});
      }
      const aks = await handleAksControl(this, req.method, path, body);
      if (aks) return send(aks.status, aks.payload);
      if (req.method === 'GET' && path === '/ready') return send(200, { ready: this.notReadyReasons().length === 0, missing: this.notReadyReasons().slice(0, 20) });
    } catch (e) {
      return send(400, { error: (e as Error).message });
    }
    return false;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const stop of this.stoppers.reverse()) {
      try {
        await stop();
      } catch {
        // Keep stopping the rest; a half-stopped sandbox would leak ports and timers.
      }
    }
    this.clock.dispose();
  }
}

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

function stableId(s: Scenario, what: string): string {
  // Deterministic per scenario so re-runs produce identical ids.
  return stableGuidFor(`${s.subscriptionId}:${s.cluster.name}:${what}`);
}

