/**
 * Microsoft Entra Workload ID in the sandbox, wired as one component:
 *
 * - {@link WorkloadIdentityState}: the managed cluster's OIDC issuer / workload identity flags
 *   and the federated identity credentials (ARM routes in `../arm/workload-identity-routes.ts`);
 * - {@link ServiceAccountIssuer}: the cluster's token signer, its discovery document and JWKS
 *   served over HTTPS on loopback at the issuer URL;
 * - the Entra token endpoint (client-assertion exchange) over HTTPS on loopback (`authorityUrl`)
 *   and on the pod network as `login.microsoftonline.com:443`;
 * - the mutating webhook (store admission; its Deployment and Service in kube-system, installed
 *   when workload identity is turned on, must have a ready pod), the kubelet's projected token files, the
 *   TokenRequest subresource, the proxy sidecar programs and the outage meter's verdict.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ArmState } from '../arm/state.ts';
import type { ArmRouteExtension } from '../arm/server.ts';
import { workloadIdentityArmRoutes } from '../arm/workload-identity-routes.ts';
import type { Clock } from '../clock.ts';
import type { HandlerResult, RequestInput } from '../kube-api/handlers.ts';
import type { ResourceRoute } from '../kube-api/routes.ts';
import { listenOnLoopback } from '../listen.ts';
import type { PodNetwork, SimHttpResponse } from '../netsim.ts';
import type { MeterPath, OutageMeter } from '../podidentity/outage-meter.ts';
import { tokenIssuer } from '../podidentity/common.ts';
import type { ProgramRegistry } from '../runtime.ts';
import type { ObjectStore } from '../store.ts';
import type { FaultInjector } from '../faults.ts';
import type { Metrics } from '../metrics.ts';
import type { SandboxTls } from '../tls.ts';
import { PUBLIC_AUTHORITY_HOST, TOKEN_EXCHANGE_AUDIENCE } from './constants.ts';
import { entraTokenEndpoint } from './entra.ts';
import { ServiceAccountIssuer } from './issuer.ts';
import { evaluateWorkloadIdentityPod, onWorkloadIdentityPath } from './meter.ts';
import { ProjectedTokenFiles } from './projected-tokens.ts';
import { registerProxyPrograms } from './proxy.ts';
import { WorkloadIdentityState, type WorkloadIdentityConfig } from './state.ts';
import { tokenRequestHandler } from './token-request.ts';
import { workloadIdentityWebhook } from './webhook.ts';
import { installWebhook, requireWebhookEndpoint, uninstallWebhook } from './webhook-install.ts';

export { WorkloadIdentityState, MAX_FEDERATED_CREDENTIALS, type FederatedCredential, type WorkloadIdentityConfig } from './state.ts';
export * from './constants.ts';

/** Where the pod network places `login.microsoftonline.com` (an address in Entra's public range). */
export const AUTHORITY_POD_NETWORK_IP = '20.190.160.2';

/** A federated credential the scenario declares as already present. */
export interface SeedCredential {
  /** Resource id of the identity. */
  identityId: string;
  name: string;
  subject: string;
  /** Default: the cluster's issuer URL. */
  issuer?: string;
  audiences?: string[];
}

export interface WorkloadIdentityOptions {
  store: ObjectStore;
  clock: Clock;
  network: PodNetwork;
  arm: ArmState;
  tls: SandboxTls;
  programs: ProgramRegistry;
  metrics?: Metrics;
  faults?: FaultInjector;
  config: WorkloadIdentityConfig;
  /** Seeds the issuer path (`/<tenant>/<guid>/`), stable per scenario. */
  clusterGuid: string;
  seed?: SeedCredential[];
}

/** The running component; `stop()` closes both HTTPS endpoints. */
export interface WorkloadIdentity {
  state: WorkloadIdentityState;
  issuer: ServiceAccountIssuer;
  files: ProjectedTokenFiles;
  armRoutes: ArmRouteExtension;
  /** Kube API subresources this component serves (`serviceaccounts/token`). */
  subresources: Record<string, (method: string, route: ResourceRoute, input: RequestInput) => HandlerResult>;
  /** `https://127.0.0.1:<port>/`: the token endpoint for loopback clients (an `AZURE_AUTHORITY_HOST`). */
  authorityUrl: string;
  /** Adds the workload identity verdict to the outage meter. */
  attachMeter(meter: OutageMeter): void;
  stop(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 1 << 20) throw new Error('request body too large');
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, r: SimHttpResponse): void {
  res.writeHead(r.status, { ...(r.headers ?? {}), 'content-length': Buffer.byteLength(r.body) });
  res.end(r.body);
}

async function serveHttps(tls: SandboxTls, handle: (method: string, url: URL, body: string) => Promise<SimHttpResponse> | SimHttpResponse): Promise<{ server: Server; port: number }> {
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    readBody(req)
      .then((body) => handle(req.method ?? 'GET', new URL(req.url ?? '/', `https://${req.headers.host ?? '127.0.0.1'}`), body))
      .then((r) => send(res, r))
      .catch((e) => send(res, { status: 500, headers: { 'content-type': 'text/plain' }, body: `${(e as Error).message}\n` }));
  });
  const port = await listenOnLoopback(server, 0);
  return { server, port };
}

/** Builds and starts the component. Call before the controllers start (the kubelet reads its files). */
export async function startWorkloadIdentity(opts: WorkloadIdentityOptions): Promise<WorkloadIdentity> {
  const { store, clock, network, arm, tls } = opts;
  const state = new WorkloadIdentityState({ clock, tenantId: arm.tenantId, clusterGuid: opts.clusterGuid, config: opts.config });
  const issuer = new ServiceAccountIssuer({ clock, state });
  const files = new ProjectedTokenFiles({ store, clock, issuer });
  const entra = entraTokenEndpoint({ clock, arm, state, issuer, accessTokens: () => tokenIssuer(network), metrics: opts.metrics, faults: opts.faults });

  const issuerHttp = await serveHttps(tls, (method, url) => issuer.serve(method, url.pathname));
  state.issuerOrigin = `https://127.0.0.1:${issuerHttp.port}`;
  let loginHttp: { server: Server; port: number };
  try {
    loginHttp = await serveHttps(tls, entra);
  } catch (e) {
    issuerHttp.server.close();
    throw e;
  }

  network.addResolver((host) => (host.toLowerCase() === 'login.microsoftonline.com' ? AUTHORITY_POD_NETWORK_IP : undefined));
  const stopListen = network.listen(AUTHORITY_POD_NETWORK_IP, 443, (req) => entra(req.method, req.url, req.body ?? '', req.source.pod ? 'pod' : 'client'));
  const removeAdmission = store.addAdmission(
    workloadIdentityWebhook({ store, tenantId: arm.tenantId, authorityHost: PUBLIC_AUTHORITY_HOST, enabled: () => state.workloadIdentityEnabled, requireEndpoint: () => requireWebhookEndpoint(store) }),
  );
  if (state.workloadIdentityEnabled) installWebhook(store);
  state.on('cluster-updating', (want: { workloadIdentityEnabled: boolean }) => {
    if (want.workloadIdentityEnabled) installWebhook(store);
  });
  state.on('cluster-changed', () => {
    if (!state.workloadIdentityEnabled) uninstallWebhook(store);
  });
  registerProxyPrograms(opts.programs);
  // The pod's NAT rule goes with its network namespace.
  const unsubscribe = store.subscribe((ev) => {
    if (ev.type === 'DELETED' && ev.object.kind === 'Pod' && ev.object.status?.podIP) network.setPodImdsRedirect(String(ev.object.status.podIP), undefined);
  });

  for (const c of opts.seed ?? []) {
    state.upsert(c.identityId, c.name, { issuer: c.issuer ?? state.futureIssuerUrl, subject: c.subject, audiences: c.audiences ?? [TOKEN_EXCHANGE_AUDIENCE] });
  }
  // Credentials present at start have long propagated.
  state.backdateAll();

  const meterOpts = { clock, arm, state, issuer, files, network };
  const path: MeterPath = { applies: onWorkloadIdentityPath, evaluate: (pod) => evaluateWorkloadIdentityPod(meterOpts, pod) };

  return {
    state,
    issuer,
    files,
    armRoutes: workloadIdentityArmRoutes({ arm, wi: state, clock }),
    subresources: { 'serviceaccounts/token': tokenRequestHandler({ store, clock, issuer }) },
    authorityUrl: `https://127.0.0.1:${loginHttp.port}/`,
    attachMeter: (meter) => meter.addPath(path),
    async stop() {
      stopListen();
      removeAdmission();
      unsubscribe();
      for (const s of [issuerHttp.server, loginHttp.server]) {
        await new Promise<void>((r) => {
          s.close(() => r());
          s.closeAllConnections();
        });
      }
    },
  };
}
