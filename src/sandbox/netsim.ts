/**
 * The sandbox's pod network: an in-process stand-in for node and pod IPs.
 *
 * Components "listen" on an (ip, port) pair (NMI on its node's IP at 8085, a workload pod on
 * its pod IP). Requests from a pod to the instance metadata address 169.254.169.254 follow
 * the node's iptables state: when NMI has installed its `aad-metadata` chain on that node
 * they reach NMI, otherwise they reach that VM's IMDS directly, which is exactly the gap a
 * careless NMI rollout opens.
 */

export const IMDS_IP = '169.254.169.254';

/** Where a simulated request comes from. */
export interface SimSource {
  /** The pod's IP (equal to the node IP for hostNetwork pods). */
  ip: string;
  /** The node the caller runs on; empty for callers outside the cluster (the API server proxy). */
  nodeName: string;
  /** The calling pod, when the caller is a pod. */
  pod?: { namespace: string; name: string };
}

export interface SimHttpRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  source: SimSource;
  body?: string;
  signal?: AbortSignal;
}

export interface SimHttpResponse {
  status: number;
  headers?: Record<string, string>;
  body: string;
}

export type SimHandler = (req: SimHttpRequest) => Promise<SimHttpResponse> | SimHttpResponse;

/** A request that found nobody listening (curl exit 7, wget "Connection refused"). */
export class ConnectionRefusedError extends Error {
  readonly host: string;
  readonly port: number;
  constructor(host: string, port: number) {
    super(`connect to ${host} port ${port} failed: Connection refused`);
    this.name = 'ConnectionRefusedError';
    this.host = host;
    this.port = port;
  }
}

/** A host name that does not resolve (curl exit 6, wget "bad address"). */
export class HostNotFoundError extends Error {
  readonly host: string;
  constructor(host: string) {
    super(`Could not resolve host: ${host}`);
    this.name = 'HostNotFoundError';
    this.host = host;
  }
}

export class PodNetwork {
  private readonly listeners = new Map<string, SimHandler>();
  private readonly interceptors = new Map<string, SimHandler>(); // nodeName -> NMI
  private imds: SimHandler | undefined;
  private readonly resolvers: ((host: string) => string | undefined)[] = [];
  private readonly podImdsRedirects = new Map<string, number>(); // pod IP -> local port

  /** Serves `handler` on ip:port. Returns a function that stops listening. */
  listen(ip: string, port: number, handler: SimHandler): () => void {
    const key = `${ip}:${port}`;
    this.listeners.set(key, handler);
    return () => {
      if (this.listeners.get(key) === handler) this.listeners.delete(key);
    };
  }

  isListening(ip: string, port: number): boolean {
    return this.listeners.has(`${ip}:${port}`);
  }

  /**
   * Installs (handler) or removes (undefined) the node's IMDS interception, as NMI's
   * iptables chain `aad-metadata` does.
   */
  setInterceptor(nodeName: string, handler: SimHandler | undefined): void {
    if (handler) this.interceptors.set(nodeName, handler);
    else this.interceptors.delete(nodeName);
  }

  isIntercepted(nodeName: string): boolean {
    return this.interceptors.has(nodeName);
  }

  /**
   * Redirects the pod's own IMDS traffic to a port on the pod (the workload identity proxy's
   * iptables rule in the pod's network namespace, installed by `azwi-proxy-init`); undefined removes it.
   * It takes precedence over the node's NMI chain, as the pod's NAT table is traversed first.
   */
  setPodImdsRedirect(podIp: string, port: number | undefined): void {
    if (port === undefined) this.podImdsRedirects.delete(podIp);
    else this.podImdsRedirects.set(podIp, port);
  }

  /** The port the pod's IMDS traffic is redirected to, if any. */
  podImdsRedirect(podIp: string): number | undefined {
    return this.podImdsRedirects.get(podIp);
  }

  /** The Azure instance metadata service, answering for the VM named by `req.source.nodeName`. */
  setImds(handler: SimHandler): void {
    this.imds = handler;
  }

  /** Adds a name resolver (cluster DNS: `<svc>.<ns>.svc`); it returns an IP or undefined. */
  addResolver(resolve: (host: string) => string | undefined): void {
    this.resolvers.push(resolve);
  }

  /** Routes one request and returns the answer, or throws a connection error. */
  async request(req: SimHttpRequest): Promise<SimHttpResponse> {
    let host = req.url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(req.url.port || (req.url.protocol === 'https:' ? 443 : 80));
    if (host === IMDS_IP && port === 80) {
      const redirect = req.source.pod ? this.podImdsRedirects.get(req.source.ip) : undefined;
      if (redirect !== undefined) {
        const local = this.listeners.get(`${req.source.ip}:${redirect}`);
        if (!local) throw new ConnectionRefusedError(host, port);
        return local(req);
      }
      const nmi = req.source.nodeName ? this.interceptors.get(req.source.nodeName) : undefined;
      if (nmi) return nmi(req);
      if (this.imds && req.source.nodeName) return this.imds(req);
      throw new ConnectionRefusedError(host, port);
    }
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(host)) {
      let ip: string | undefined;
      for (const r of this.resolvers) {
        ip = r(host);
        if (ip) break;
      }
      if (!ip) throw new HostNotFoundError(host);
      host = ip;
    }
    const handler = this.listeners.get(`${host}:${port}`);
    if (!handler) throw new ConnectionRefusedError(host, port);
    return handler(req);
  }
}
