/**
 * Request counters for the sandbox's two endpoints. Every HTTP request that reaches the
 * Kubernetes API server or the ARM endpoint is counted once, by API, verb and resource (or
 * ARM operation), with the caller (from the User-Agent) kept apart so that what the tool did
 * can be told from what the sandbox's own MIC did.
 */

/** `entra`: the workload identity token endpoint (caller `client` from loopback, `pod` from the pod network). */
export type Api = 'kube' | 'arm' | 'entra';

export interface RequestRecord {
  api: Api;
  /** Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection, proxy, ...) or HTTP method for ARM. */
  verb: string;
  /** Kubernetes `resource[/subresource]` (e.g. `pods/eviction`, `deployments.apps/scale`) or ARM operation id (e.g. `VirtualMachineScaleSets_Update`). */
  resource: string;
  status: number;
  /** True when the request asked for `dryRun=All` (never persisted). */
  dryRun?: boolean;
  /** `client` for external HTTP callers, or the in-process component's name (`mic`). */
  caller?: string;
}

const MUTATING = new Set(['create', 'update', 'patch', 'delete', 'deletecollection', 'PUT', 'PATCH', 'POST', 'DELETE']);

export function isMutating(r: Pick<RequestRecord, 'verb' | 'resource'>): boolean {
  if (!MUTATING.has(r.verb)) return false;
  // Access reviews are questions answered from RBAC: nothing is persisted.
  if (/^selfsubject(access|rules)?reviews\./.test(r.resource)) return false;
  // ARM POSTs that only read (listKeys-style) do not occur in the sandbox; every POST mutates.
  return true;
}

export interface MetricsSnapshot {
  kube: Record<string, number>;
  arm: Record<string, number>;
  /** Token endpoint requests (`POST token 200`, `POST token 400 AADSTS70021` is counted as `POST token 400`). */
  entra: Record<string, number>;
  /** Mutations that were persisted (dry-run requests excluded), by API, from external callers. */
  mutations: { kube: number; arm: number };
  dryRunRequests: number;
  total: number;
}

export class Metrics {
  private readonly records: RequestRecord[] = [];
  private readonly counters = new Map<string, number>();

  record(r: RequestRecord): void {
    // Keep a bounded tail of raw records for debugging; counters are exact regardless.
    this.records.push(r);
    if (this.records.length > 50_000) this.records.splice(0, 10_000);
    const key = `${r.api}\t${r.caller ?? 'client'}\t${r.verb}\t${r.resource}\t${r.status}\t${r.dryRun ? 1 : 0}`;
    this.counters.set(key, (this.counters.get(key) ?? 0) + 1);
  }

  /** Sum of requests matching every given field. */
  count(filter: Partial<RequestRecord> & { mutating?: boolean } = {}): number {
    let n = 0;
    for (const [key, c] of this.counters) {
      const [api, caller, verb, resource, status, dry] = key.split('\t');
      if (filter.api && filter.api !== api) continue;
      if (filter.caller && filter.caller !== caller) continue;
      if (filter.verb && filter.verb !== verb) continue;
      if (filter.resource && filter.resource !== resource) continue;
      if (filter.status !== undefined && String(filter.status) !== status) continue;
      if (filter.dryRun !== undefined && filter.dryRun !== (dry === '1')) continue;
      if (filter.mutating !== undefined && filter.mutating !== isMutating({ verb, resource })) continue;
      n += c;
    }
    return n;
  }

  snapshot(): MetricsSnapshot {
    const kube: Record<string, number> = {};
    const arm: Record<string, number> = {};
    const entra: Record<string, number> = {};
    let total = 0;
    let dryRunRequests = 0;
    const mutations = { kube: 0, arm: 0 };
    for (const [key, c] of this.counters) {
      const [api, caller, verb, resource, status, dry] = key.split('\t');
      const label = `${caller === 'client' ? '' : caller + ':'}${verb} ${resource} ${status}${dry === '1' ? ' dryRun' : ''}`;
      const bucket = api === 'kube' ? kube : api === 'arm' ? arm : entra;
      bucket[label] = (bucket[label] ?? 0) + c;
      total += c;
      if (dry === '1') dryRunRequests += c;
      else if (caller === 'client' && (api === 'kube' || api === 'arm') && isMutating({ verb, resource }) && Number(status) < 400) mutations[api] += c;
    }
    return { kube, arm, entra, mutations, dryRunRequests, total };
  }

  reset(): void {
    this.records.length = 0;
    this.counters.clear();
  }

  recent(n = 100): RequestRecord[] {
    return this.records.slice(-n);
  }
}
