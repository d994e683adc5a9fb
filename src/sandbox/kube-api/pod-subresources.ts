/**
 * The pod subresources a migration relies on: `eviction` (PodDisruptionBudget-aware, as the
 * real eviction REST handler decides), `log` (from {@link PodLogs}) and `proxy` (into the
 * simulated pod network, the way `kubectl get --raw .../pods/nmi-x:8085/proxy/healthz`
 * reaches NMI's health endpoint).
 */
import type { Clock } from '../clock.ts';
import { isoSeconds } from '../clock.ts';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import { ConnectionRefusedError, HostNotFoundError, type PodNetwork } from '../netsim.ts';
import type { PodLogs } from '../pod-logs.ts';
import { decodeBody, deleteOne, type HandlerResult, parseDeleteOptions, pdbSelects, type RequestInput } from './handlers.ts';
import type { ResourceRoute } from './routes.ts';
import { ApiError, badRequest, failureStatus, successStatus } from './status.ts';

const EVICTION_DENIED = "Cannot evict pod as it would violate the pod's disruption budget.";

function isPodReady(pod: Readonly<KObject>): boolean {
  return (pod.status?.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True');
}

/** Terminal, pending and already terminating pods are deleted without consulting PDBs. */
function canIgnorePdb(pod: Readonly<KObject>): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed' || phase === 'Pending' || !!pod.metadata.deletionTimestamp;
}

function disruptionDeniedMessage(pdb: Readonly<KObject>): string {
  const st = pdb.status ?? {};
  const cond = (st.conditions ?? []).find((c: any) => c.type === 'DisruptionAllowed');
  const name = pdb.metadata.name;
  if (cond && cond.status === 'False' && cond.message && cond.reason === 'SyncFailed') {
    return `The disruption budget ${name} does not allow evicting pods currently because it failed sync: ${cond.message}`;
  }
  if ((st.currentHealthy ?? 0) <= (st.desiredHealthy ?? 0)) {
    return `The disruption budget ${name} needs ${st.desiredHealthy ?? 0} healthy pods and has ${st.currentHealthy ?? 0} currently`;
  }
  if (cond && cond.status === 'False' && cond.message) return `The disruption budget ${name} does not allow evicting pods currently (${cond.reason}): ${cond.message}`;
  return `The disruption budget ${name} does not allow evicting pods currently`;
}

function tooManyRequests(cause: string, retryAfterSeconds?: number): ApiError {
  return new ApiError(429, 'TooManyRequests', EVICTION_DENIED, { causes: [{ reason: 'DisruptionBudget', message: cause }] }, retryAfterSeconds);
}

/**
 * Checks the PDB allows one more disruption and records it (decrements
 * `status.disruptionsAllowed`, adds the pod to `status.disruptedPods`), or throws the
 * real server's 429 / 403.
 */
function checkAndDecrement(store: ObjectStore, pdbType: ResourceType, pdb: Readonly<KObject>, podName: string, clock: Clock, dryRun: boolean): void {
  const st = pdb.status ?? {};
  if ((st.observedGeneration ?? 0) < (pdb.metadata.generation ?? 1)) {
    throw tooManyRequests(`The disruption budget ${pdb.metadata.name} is still being processed by the server.`, 10);
  }
  const allowed = st.disruptionsAllowed ?? 0;
  if (allowed < 0) {
    throw new ApiError(403, 'Forbidden', `poddisruptionbudgets.policy "${pdb.metadata.name}" is forbidden: pdb disruptions allowed is negative`, { name: pdb.metadata.name, group: 'policy', kind: 'poddisruptionbudgets' });
  }
  if (Object.keys(st.disruptedPods ?? {}).length > 2000) {
    throw new ApiError(403, 'Forbidden', `poddisruptionbudgets.policy "${pdb.metadata.name}" is forbidden: DisruptedPods map too big - too many evictions not confirmed by PDB controller`, { name: pdb.metadata.name, group: 'policy', kind: 'poddisruptionbudgets' });
  }
  if (allowed === 0) throw tooManyRequests(disruptionDeniedMessage(pdb));
  if (dryRun) return;
  const next = structuredClone(pdb) as KObject;
  next.status = { ...(next.status ?? {}), disruptionsAllowed: allowed - 1, disruptedPods: { ...(next.status?.disruptedPods ?? {}), [podName]: isoSeconds(clock.now()) } };
  if (allowed - 1 === 0) {
    const conds = (next.status.conditions ?? []).filter((c: any) => c.type !== 'DisruptionAllowed');
    conds.push({ type: 'DisruptionAllowed', status: 'False', reason: 'InsufficientPods', message: '', observedGeneration: pdb.metadata.generation, lastTransitionTime: isoSeconds(clock.now()) });
    next.status.conditions = conds;
  }
  store.update(pdbType, next, { subresource: 'status' });
}

/** POST `pods/<name>/eviction` (policy/v1 Eviction). */
export function evictPod(store: ObjectStore, clock: Clock, route: ResourceRoute, input: RequestInput): HandlerResult {
  const eviction = decodeBody(input);
  if (eviction?.metadata?.name !== route.name) throw badRequest('name in URL does not match name in Eviction object');
  const podType = route.type;
  const opts = parseDeleteOptions({ ...input, body: Buffer.from(JSON.stringify(eviction.deleteOptions ?? {})) });
  const pod = store.getOrThrow(podType, route.namespace, route.name!);
  const ns = pod.metadata.namespace!;
  const evictNow = (): HandlerResult => {
    if (!opts.dryRun && !pod.metadata.deletionTimestamp) {
      // Upstream marks the pod with a DisruptionTarget condition before deleting it.
      store.mutate(podType, ns, pod.metadata.name!, (p) => {
        p.status = p.status ?? {};
        const conds = (p.status.conditions ?? []).filter((c: any) => c.type !== 'DisruptionTarget');
        conds.push({ type: 'DisruptionTarget', status: 'True', reason: 'EvictionByEvictionAPI', message: 'Eviction API: evicting', lastTransitionTime: isoSeconds(clock.now()) });
        p.status.conditions = conds;
      }, { subresource: 'status' });
    }
    deleteOne(store, podType, ns, pod.metadata.name!, opts);
    return { status: 201, body: successStatus(201) };
  };
  if (canIgnorePdb(pod)) return evictNow();
  const pdbType = store.typeOrThrow('policy', 'poddisruptionbudgets');
  const pdbs = [...store.scan(pdbType, { namespace: ns })].filter((p) => pdbSelects(p, pod.metadata.labels));
  if (pdbs.length > 1) {
    return { status: 500, body: failureStatus(500, undefined, 'This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.') };
  }
  if (pdbs.length === 1) {
    const pdb = pdbs[0];
    let decrement = true;
    if (!isPodReady(pod)) {
      const st = pdb.status ?? {};
      if (pdb.spec?.unhealthyPodEvictionPolicy === 'AlwaysAllow') decrement = false;
      else if ((st.currentHealthy ?? 0) >= (st.desiredHealthy ?? 0) && (st.desiredHealthy ?? 0) > 0) decrement = false;
    }
    if (decrement) checkAndDecrement(store, pdbType, pdb, pod.metadata.name!, clock, opts.dryRun);
  }
  return evictNow();
}

/** GET `pods/<name>/log`: the container's log as text/plain. */
export function podLog(store: ObjectStore, logs: PodLogs, route: ResourceRoute, query: URLSearchParams): { status: number; text: string; container: string } {
  const pod = store.getOrThrow(route.type, route.namespace, route.name!);
  const containers: string[] = (pod.spec?.containers ?? []).map((c: any) => c.name);
  const inits: string[] = (pod.spec?.initContainers ?? []).map((c: any) => c.name);
  let container = query.get('container') ?? '';
  if (!container) {
    if (containers.length === 1) container = containers[0];
    else {
      const initPart = inits.length ? ` or one of the init containers: [${inits.join(' ')}]` : '';
      throw badRequest(`a container name must be specified for pod ${pod.metadata.name}, choose one of: [${containers.join(' ')}]${initPart}`);
    }
  }
  if (!containers.includes(container) && !inits.includes(container)) throw badRequest(`container ${container} is not valid for pod ${pod.metadata.name}`);
  const tailRaw = query.get('tailLines');
  const tailLines = tailRaw !== null ? Number(tailRaw) : undefined;
  if (tailLines !== undefined && !(Number.isInteger(tailLines) && tailLines >= 0)) throw badRequest(`invalid tailLines: ${tailRaw}`);
  const text = logs.read(pod.metadata.namespace!, pod.metadata.name!, container, { tailLines });
  if (text === undefined) {
    const state = (pod.status?.containerStatuses ?? []).find((s: any) => s.name === container)?.state;
    if (pod.status?.phase === 'Pending' || state?.waiting) {
      throw badRequest(`container "${container}" in pod "${pod.metadata.name}" is waiting to start: ${state?.waiting?.reason ?? 'ContainerCreating'}`);
    }
    return { status: 200, text: '', container };
  }
  return { status: 200, text, container };
}

/** Splits `name`, `name:port` or `scheme:name:port` as the proxy subresource accepts them. */
function splitProxyName(raw: string): { scheme: string; name: string; port: string } {
  const parts = raw.split(':');
  if (parts.length === 3) return { scheme: parts[0], name: parts[1], port: parts[2] };
  if (parts.length === 2) return { scheme: '', name: parts[0], port: parts[1] };
  return { scheme: '', name: raw, port: '' };
}

/** The upstream answer of a proxied request, headers included. */
export interface ProxyResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Any method on `pods/<name>[:<port>]/proxy/<path>` or `nodes/<name>[:<port>]/proxy/<path>`:
 * forwards to the pod (or node) IP in the simulated network, from outside the cluster.
 */
export async function proxyRequest(store: ObjectStore, network: PodNetwork, route: ResourceRoute, method: string, query: URLSearchParams, input: RequestInput, headers: Record<string, string>): Promise<ProxyResult> {
  const { scheme, name, port: rawPort } = splitProxyName(route.name!);
  const obj = store.getOrThrow(route.type, route.namespace, name);
  const isNode = route.type.resource === 'nodes';
  let ip: string | undefined;
  let port = rawPort;
  if (isNode) {
    ip = (obj.status?.addresses ?? []).find((a: any) => a.type === 'InternalIP')?.address;
    if (!port) port = String(obj.status?.daemonEndpoints?.kubeletEndpoint?.Port ?? 10250);
  } else {
    ip = obj.status?.podIP;
    if (port && !/^\d+$/.test(port)) {
      // A named port resolves through the pod's container ports.
      const named = (obj.spec?.containers ?? []).flatMap((c: any) => c.ports ?? []).find((p: any) => p.name === port);
      if (!named) throw new ApiError(503, 'ServiceUnavailable', `no endpoints available for service "${name}"`);
      port = String(named.containerPort);
    }
    if (!port) port = '80';
  }
  if (!ip) {
    throw new ApiError(503, 'ServiceUnavailable', isNode ? `no preferred addresses found; known addresses: []` : `address not allowed`);
  }
  const proto = scheme === 'https' ? 'https' : 'http';
  const search = query.toString();
  const url = new URL(`${proto}://${ip}:${port}${route.proxyPath ?? '/'}${search ? `?${search}` : ''}`);
  const fwdHeaders: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    // The client's credentials are for the API server, never for the upstream.
    if (k === 'authorization' || k === 'host' || k === 'connection') continue;
    fwdHeaders[k] = v;
  }
  try {
    const res = await network.request({ method, url, headers: fwdHeaders, source: { ip: '', nodeName: '' }, body: input.body.length ? input.body.toString('utf8') : undefined });
    return { status: res.status, headers: res.headers ?? {}, body: res.body };
  } catch (e) {
    if (e instanceof ConnectionRefusedError || e instanceof HostNotFoundError) {
      throw new ApiError(503, 'ServiceUnavailable', `error trying to reach service: dial tcp ${ip}:${port}: connect: connection refused`);
    }
    throw e;
  }
}
