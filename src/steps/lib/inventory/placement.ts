/**
 * Where a pod template may be scheduled: node selectors, required node affinity and taints, as
 * the scheduler judges them. Pure functions over plain Kubernetes JSON.
 */
import type { KubeObject } from '../../../kube/gateway.ts';
import { sorted } from '../util.ts';


/** The scheduling-relevant part of a pod spec. */
export interface PlacementSpec {
  nodeSelector?: Record<string, string>;
  affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: NodeSelectorTerm[] } } };
  tolerations?: Toleration[];
}
interface NodeSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Gt' | 'Lt' | string;
  values?: string[];
}
interface NodeSelectorTerm {
  matchExpressions?: NodeSelectorRequirement[];
  matchFields?: NodeSelectorRequirement[];
}
interface Toleration {
  key?: string;
  operator?: 'Equal' | 'Exists';
  value?: string;
  effect?: string;
}
interface Taint {
  key: string;
  value?: string;
  effect: string;
}

function requirementHolds(r: NodeSelectorRequirement, values: Record<string, string>): boolean {
  const has = Object.hasOwn(values, r.key);
  const v = values[r.key];
  switch (r.operator) {
    case 'In':
      return has && (r.values ?? []).includes(v);
    case 'NotIn':
      return !has || !(r.values ?? []).includes(v);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
    case 'Lt': {
      const n = Number(v);
      const bound = Number(r.values?.[0]);
      if (!has || !Number.isInteger(n) || !Number.isInteger(bound)) return false;
      return r.operator === 'Gt' ? n > bound : n < bound;
    }
    default:
      return false;
  }
}

function tolerates(tolerations: readonly Toleration[], taint: Taint): boolean {
  return tolerations.some((t) => {
    if (t.effect && t.effect !== taint.effect) return false;
    // An empty key with Exists tolerates every taint.
    if (!t.key) return t.operator === 'Exists';
    if (t.key !== taint.key) return false;
    return t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '');
  });
}

/**
 * Whether the scheduler may place a pod with `spec` on `node`: every `nodeSelector` label,
 * one of the required node-affinity terms (expressions `In`/`NotIn`/`Exists`/`DoesNotExist`/
 * `Gt`/`Lt` on labels, `matchFields` on `metadata.name`), and every `NoSchedule`/`NoExecute`
 * taint tolerated. A cordon is temporary and ignored.
 */
export function nodeAdmits(spec: PlacementSpec, node: KubeObject): boolean {
  const labels = node.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(spec.nodeSelector ?? {})) if (labels[k] !== v) return false;
  const terms = spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms && terms.length) {
    const fields = { 'metadata.name': node.metadata?.name ?? '' };
    // Terms are ORed, requirements within a term ANDed; a term with no requirement matches nothing.
    const ok = terms.some((t) => {
      const reqs = [...(t.matchExpressions ?? []).map((r) => [r, labels] as const), ...(t.matchFields ?? []).map((r) => [r, fields] as const)];
      return reqs.length > 0 && reqs.every(([r, values]) => requirementHolds(r, values));
    });
    if (!ok) return false;
  }
  const taints = ((node.spec as { taints?: Taint[] } | undefined)?.taints ?? []).filter((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
  return taints.every((t) => tolerates(spec.tolerations ?? [], t));
}

/** True when the spec names no node at all (no `nodeSelector`, no required node affinity): only taints limit it. */
export function placementUnconstrained(spec: PlacementSpec): boolean {
  return Object.keys(spec.nodeSelector ?? {}).length === 0 && !(spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.length);
}

/** Pools (sorted) with at least one node that admits `spec`. Pools with no node cannot be judged and are left out. */
export function poolsAdmitting(spec: PlacementSpec, poolNodes: ReadonlyMap<string, readonly KubeObject[]>): string[] {
  return sorted([...poolNodes.entries()].filter(([, ns]) => ns.some((n) => nodeAdmits(spec, n))).map(([p]) => p));
}

/** The pod template of a controller (CronJob through its job template), or a bare pod's own spec. */
export function podTemplateOf(obj: KubeObject): { metadata?: { labels?: Record<string, string> }; spec?: PlacementSpec } | undefined {
  const spec = obj.spec as { template?: unknown; jobTemplate?: { spec?: { template?: unknown } } } | undefined;
  if (obj.kind === 'Pod') return { metadata: obj.metadata, spec: obj.spec as PlacementSpec };
  if (obj.kind === 'CronJob') return spec?.jobTemplate?.spec?.template as ReturnType<typeof podTemplateOf>;
  return spec?.template as ReturnType<typeof podTemplateOf>;
}

