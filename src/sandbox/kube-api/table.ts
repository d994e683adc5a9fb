/**
 * Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for
 * (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`). Columns follow the real
 * server's printers for the types a migration looks at; every other type gets the generic
 * Name / Age table, like a custom resource without additional printer columns.
 */
import type { KObject, ResourceType } from '../store.ts';

interface Column {
  name: string;
  type: string;
  format?: string;
  description: string;
  priority: number;
  cell: (o: Readonly<KObject>, now: number) => unknown;
}

/** The real server's `HumanDuration` (`5s`, `3m20s`, `45m`, `5h3m`, `2d3h`, `40d`, `2y10d`). */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const days = Math.floor(hours / 24) % 365;
    return days === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${days}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

const name: Column = { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0, cell: (o) => o.metadata.name };
const age: Column = {
  name: 'Age',
  type: 'string',
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created.',
  priority: 0,
  cell: (o, now) => (o.metadata.creationTimestamp ? humanDuration(now - Date.parse(o.metadata.creationTimestamp)) : '<unknown>'),
};

function col(n: string, type: string, priority: number, cell: Column['cell'], description = ''): Column {
  return { name: n, type, priority, cell, description };
}

function podReadyAndStatus(o: Readonly<KObject>): { ready: string; status: string; restarts: string } {
  const statuses: any[] = o.status?.containerStatuses ?? [];
  const total = o.spec?.containers?.length ?? 0;
  const ready = statuses.filter((s) => s.ready).length;
  let status: string = o.status?.reason || o.status?.phase || 'Unknown';
  let restarts = 0;
  for (const s of statuses) {
    restarts += s.restartCount ?? 0;
    if (s.state?.waiting?.reason) status = s.state.waiting.reason;
    else if (s.state?.terminated?.reason && status === 'Running') status = s.state.terminated.reason;
  }
  if (o.metadata.deletionTimestamp) status = o.status?.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
  return { ready: `${ready}/${total}`, status, restarts: String(restarts) };
}

function nodeStatus(o: Readonly<KObject>): string {
  const ready = (o.status?.conditions ?? []).find((c: any) => c.type === 'Ready');
  const parts = [ready?.status === 'True' ? 'Ready' : ready ? 'NotReady' : 'Unknown'];
  if (o.spec?.unschedulable) parts.push('SchedulingDisabled');
  return parts.join(',');
}

function nodeRoles(o: Readonly<KObject>): string {
  const roles: string[] = [];
  for (const k of Object.keys(o.metadata.labels ?? {})) {
    if (k.startsWith('node-role.kubernetes.io/')) roles.push(k.slice('node-role.kubernetes.io/'.length));
    else if (k === 'kubernetes.io/role') roles.push(o.metadata.labels![k]);
  }
  // AKS labels both node-role.kubernetes.io/agent and kubernetes.io/role=agent: one role.
  return roles.length ? [...new Set(roles)].sort().join(',') : '<none>';
}

function address(o: Readonly<KObject>, type: string): string {
  return (o.status?.addresses ?? []).find((a: any) => a.type === type)?.address ?? '<none>';
}

function selectorString(sel: any): string {
  if (!sel) return '<none>';
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions ?? []) parts.push(`${e.key} ${String(e.operator).toLowerCase()} (${(e.values ?? []).join(',')})`);
  return parts.length ? parts.join(',') : '<none>';
}

function containersOf(o: Readonly<KObject>): any[] {
  return o.spec?.template?.spec?.containers ?? [];
}

const containersCol = col('Containers', 'string', 1, (o) => containersOf(o).map((c) => c.name).join(','));
const imagesCol = col('Images', 'string', 1, (o) => containersOf(o).map((c) => c.image).join(','));
const selectorCol = col('Selector', 'string', 1, (o) => selectorString(o.spec?.selector));

/** The upstream event printer's LAST SEEN: the last occurrence, or the series' last observation. */
function eventLastSeen(o: Readonly<KObject>, now: number): string {
  const ts = o.series?.lastObservedTime ?? o.lastTimestamp ?? o.deprecatedLastTimestamp ?? o.eventTime ?? o.metadata.creationTimestamp;
  return ts ? humanDuration(now - Date.parse(ts)) : '<unknown>';
}

function eventObject(o: Readonly<KObject>): string {
  const r = o.involvedObject ?? o.regarding ?? {};
  return `${String(r.kind ?? '').toLowerCase()}/${r.name ?? ''}`;
}

function eventFirstSeen(o: Readonly<KObject>, now: number): string {
  const ts = o.firstTimestamp ?? o.deprecatedFirstTimestamp ?? o.eventTime ?? o.metadata.creationTimestamp;
  return ts ? humanDuration(now - Date.parse(ts)) : '<unknown>';
}

const EVENT_COLUMNS: Column[] = [
  col('Last Seen', 'string', 0, eventLastSeen),
  col('Type', 'string', 0, (o) => o.type ?? ''),
  col('Reason', 'string', 0, (o) => o.reason ?? ''),
  col('Object', 'string', 0, eventObject),
  col('Subobject', 'string', 1, (o) => (o.involvedObject ?? o.regarding)?.fieldPath ?? ''),
  col('Source', 'string', 1, (o) => {
    const c = o.source?.component ?? o.reportingController ?? '';
    const h = o.source?.host ?? o.reportingInstance;
    return h ? `${c}, ${h}` : c;
  }),
  col('Message', 'string', 0, (o) => o.message ?? o.note ?? ''),
  col('First Seen', 'string', 1, eventFirstSeen),
  col('Count', 'string', 1, (o) => String(o.count ?? o.deprecatedCount ?? 1)),
  { ...name, priority: 1 },
];

const COLUMNS: Record<string, Column[]> = {
  '/events': EVENT_COLUMNS,
  'events.k8s.io/events': EVENT_COLUMNS,
  '/pods': [
    name,
    col('Ready', 'string', 0, (o) => podReadyAndStatus(o).ready, 'The aggregate readiness state of this pod for accepting traffic.'),
    col('Status', 'string', 0, (o) => podReadyAndStatus(o).status, 'The aggregate status of the containers in this pod.'),
    col('Restarts', 'string', 0, (o) => podReadyAndStatus(o).restarts, 'The number of times the containers in this pod have been restarted.'),
    age,
    col('IP', 'string', 1, (o) => o.status?.podIP || '<none>', 'IP address allocated to the pod.'),
    col('Node', 'string', 1, (o) => o.spec?.nodeName || '<none>', 'Name of the node the pod is assigned to.'),
    col('Nominated Node', 'string', 1, (o) => o.status?.nominatedNodeName || '<none>'),
    col('Readiness Gates', 'string', 1, (o) => (o.spec?.readinessGates?.length ? String(o.spec.readinessGates.length) : '<none>')),
  ],
  '/nodes': [
    name,
    col('Status', 'string', 0, nodeStatus, 'The status of the node'),
    col('Roles', 'string', 0, nodeRoles, 'The roles of the node'),
    age,
    col('Version', 'string', 0, (o) => o.status?.nodeInfo?.kubeletVersion ?? '', 'Kubelet Version reported by the node.'),
    col('Internal-IP', 'string', 1, (o) => address(o, 'InternalIP')),
    col('External-IP', 'string', 1, (o) => address(o, 'ExternalIP')),
    col('OS-Image', 'string', 1, (o) => o.status?.nodeInfo?.osImage ?? '<unknown>'),
    col('Kernel-Version', 'string', 1, (o) => o.status?.nodeInfo?.kernelVersion ?? '<unknown>'),
    col('Container-Runtime', 'string', 1, (o) => o.status?.nodeInfo?.containerRuntimeVersion ?? '<unknown>'),
  ],
  '/namespaces': [name, col('Status', 'string', 0, (o) => o.status?.phase ?? ''), age],
  'apps/deployments': [
    name,
    col('Ready', 'string', 0, (o) => `${o.status?.readyReplicas ?? 0}/${o.spec?.replicas ?? 0}`),
    col('Up-to-date', 'integer', 0, (o) => o.status?.updatedReplicas ?? 0),
    col('Available', 'integer', 0, (o) => o.status?.availableReplicas ?? 0),
    age,
    containersCol,
    imagesCol,
    selectorCol,
  ],
  'apps/replicasets': [
    name,
    col('Desired', 'integer', 0, (o) => o.spec?.replicas ?? 0),
    col('Current', 'integer', 0, (o) => o.status?.replicas ?? 0),
    col('Ready', 'integer', 0, (o) => o.status?.readyReplicas ?? 0),
    age,
    containersCol,
    imagesCol,
    selectorCol,
  ],
  'apps/daemonsets': [
    name,
    col('Desired', 'integer', 0, (o) => o.status?.desiredNumberScheduled ?? 0),
    col('Current', 'integer', 0, (o) => o.status?.currentNumberScheduled ?? 0),
    col('Ready', 'integer', 0, (o) => o.status?.numberReady ?? 0),
    col('Up-to-date', 'integer', 0, (o) => o.status?.updatedNumberScheduled ?? 0),
    col('Available', 'integer', 0, (o) => o.status?.numberAvailable ?? 0),
    col('Node Selector', 'string', 0, (o) => {
      const s = Object.entries(o.spec?.template?.spec?.nodeSelector ?? {}).map(([k, v]) => `${k}=${v}`);
      return s.length ? s.join(',') : '<none>';
    }),
    age,
    containersCol,
    imagesCol,
    selectorCol,
  ],
  'batch/jobs': [
    name,
    col('Status', 'string', 0, (o) => {
      const c = (o.status?.conditions ?? []).find((x: any) => x.status === 'True' && ['Complete', 'Failed', 'Suspended'].includes(x.type));
      return c ? c.type : 'Running';
    }),
    col('Completions', 'string', 0, (o) => `${o.status?.succeeded ?? 0}/${o.spec?.completions ?? 1}`),
    col('Duration', 'string', 0, (o, now) => {
      const start = o.status?.startTime ? Date.parse(o.status.startTime) : undefined;
      if (start === undefined) return '';
      const end = o.status?.completionTime ? Date.parse(o.status.completionTime) : now;
      return humanDuration(end - start);
    }),
    age,
    containersCol,
    imagesCol,
    selectorCol,
  ],
  'policy/poddisruptionbudgets': [
    name,
    col('Min Available', 'string', 0, (o) => (o.spec?.minAvailable !== undefined ? String(o.spec.minAvailable) : 'N/A')),
    col('Max Unavailable', 'string', 0, (o) => (o.spec?.maxUnavailable !== undefined ? String(o.spec.maxUnavailable) : 'N/A')),
    col('Allowed Disruptions', 'integer', 0, (o) => o.status?.disruptionsAllowed ?? 0),
    age,
  ],
};

/** How much of each object a Table row carries (`includeObject` query parameter). */
export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** Builds the Table for `objects` (one object for a GET by name). */
export function toTable(
  t: ResourceType,
  objects: readonly Readonly<KObject>[],
  opts: { now: number; includeObject: IncludeObject; resourceVersion?: string; continue?: string; remainingItemCount?: number },
): object {
  const columns = COLUMNS[`${t.group}/${t.resource}`] ?? [name, age];
  const rows = objects.map((o) => {
    const row: Record<string, unknown> = { cells: columns.map((c) => c.cell(o, opts.now) ?? '') };
    if (opts.includeObject === 'Object') row.object = o;
    else if (opts.includeObject === 'Metadata') row.object = { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
    return row;
  });
  const metadata: Record<string, unknown> = {};
  if (opts.resourceVersion) metadata.resourceVersion = opts.resourceVersion;
  if (opts.continue) metadata.continue = opts.continue;
  if (opts.remainingItemCount !== undefined) metadata.remainingItemCount = opts.remainingItemCount;
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata,
    columnDefinitions: columns.map(({ cell: _c, ...d }) => ({ format: '', ...d })),
    rows,
  };
}
