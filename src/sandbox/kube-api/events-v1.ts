/**
 * The events.k8s.io/v1 view of core/v1 Events: one storage, two schemas, converted the way the
 * API server's events registry does (`regarding`, `note`, `reportingController`, `deprecated*`).
 */
import type { KObject, ResourceType } from '../store.ts';

/** True for the events.k8s.io/v1 Event type. */
export function isEventsV1(t: ResourceType): boolean {
  return t.group === 'events.k8s.io' && t.resource === 'events';
}

function microFrom(ts: string | undefined): string | undefined {
  if (!ts) return undefined;
  const ms = Date.parse(ts);
  return Number.isFinite(ms) ? new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z') : undefined;
}

/** A core/v1 Event in the events.k8s.io/v1 schema. */
export function toEventsV1(e: Readonly<KObject>): KObject {
  const out: KObject = {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: structuredClone(e.metadata),
    eventTime: e.eventTime ?? microFrom(e.firstTimestamp) ?? null,
    reportingController: e.reportingComponent || e.source?.component || '',
    reportingInstance: e.reportingInstance || e.source?.host || '',
    action: e.action ?? e.reason,
    reason: e.reason,
    regarding: structuredClone(e.involvedObject ?? {}),
    note: e.message,
    type: e.type,
  };
  if (e.related) out.related = structuredClone(e.related);
  if (e.series) out.series = structuredClone(e.series);
  if (e.source) out.deprecatedSource = structuredClone(e.source);
  if (e.firstTimestamp) out.deprecatedFirstTimestamp = e.firstTimestamp;
  if (e.lastTimestamp) out.deprecatedLastTimestamp = e.lastTimestamp;
  if (e.count) out.deprecatedCount = e.count;
  return out;
}

/** An events.k8s.io/v1 Event as the core/v1 Event it is stored as. */
export function fromEventsV1(e: Record<string, any>): KObject {
  const out: KObject = {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: structuredClone(e.metadata ?? {}),
    involvedObject: structuredClone(e.regarding ?? {}),
    reason: e.reason,
    message: e.note,
    type: e.type,
    eventTime: e.eventTime ?? null,
    action: e.action,
    reportingComponent: e.reportingController ?? '',
    reportingInstance: e.reportingInstance ?? '',
    source: structuredClone(e.deprecatedSource ?? { component: e.reportingController ?? '' }),
    count: e.deprecatedCount ?? e.series?.count ?? 1,
  };
  if (e.related) out.related = structuredClone(e.related);
  if (e.series) out.series = structuredClone(e.series);
  if (e.deprecatedFirstTimestamp) out.firstTimestamp = e.deprecatedFirstTimestamp;
  if (e.deprecatedLastTimestamp) out.lastTimestamp = e.deprecatedLastTimestamp;
  return out;
}
