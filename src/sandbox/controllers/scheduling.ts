/**
 * Scheduling predicates shared by the scheduler and the DaemonSet controller: node
 * readiness, taints and tolerations, `nodeSelector` and required node affinity (including
 * the `metadata.name` field match the DaemonSet controller pins its pods with).
 */
import type { KObject } from '../store.ts';

export const TAINT_NOT_READY = 'node.kubernetes.io/not-ready';
export const TAINT_UNREACHABLE = 'node.kubernetes.io/unreachable';
export const TAINT_UNSCHEDULABLE = 'node.kubernetes.io/unschedulable';

export interface Taint {
  key: string;
  value?: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

export interface Toleration {
  key?: string;
  operator?: 'Exists' | 'Equal';
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
}

export function isNodeReady(node: Readonly<KObject> | undefined): boolean {
  if (!node) return false;
  const c = (node.status?.conditions as any[] | undefined)?.find((x) => x.type === 'Ready');
  return c?.status === 'True';
}

export function tolerates(tol: Toleration, taint: Taint): boolean {
  if (tol.effect && tol.effect !== taint.effect) return false;
  if ((tol.operator ?? 'Equal') === 'Exists') return !tol.key || tol.key === taint.key;
  return tol.key === taint.key && (tol.value ?? '') === (taint.value ?? '');
}

/** True when every taint with one of `effects` is tolerated. */
export function toleratesTaints(tolerations: Toleration[] | undefined, taints: Taint[] | undefined, effects: string[] = ['NoSchedule', 'NoExecute']): boolean {
  for (const taint of taints ?? []) {
    if (!effects.includes(taint.effect)) continue;
    if (!(tolerations ?? []).some((t) => tolerates(t, taint))) return false;
  }
  return true;
}

/**
 * The taints a node carries, including the ones the node lifecycle controller derives from
 * its state (not-ready, unschedulable) even if the taint write has not landed yet.
 */
export function effectiveTaints(node: Readonly<KObject>): Taint[] {
  const taints: Taint[] = [...((node.spec?.taints as Taint[] | undefined) ?? [])];
  const has = (key: string, effect: string) => taints.some((t) => t.key === key && t.effect === effect);
  if (node.spec?.unschedulable && !has(TAINT_UNSCHEDULABLE, 'NoSchedule')) taints.push({ key: TAINT_UNSCHEDULABLE, effect: 'NoSchedule' });
  if (!isNodeReady(node) && !has(TAINT_NOT_READY, 'NoSchedule')) taints.push({ key: TAINT_NOT_READY, effect: 'NoSchedule' });
  return taints;
}

function matchExpression(expr: { key: string; operator: string; values?: string[] }, value: string | undefined): boolean {
  const vals = expr.values ?? [];
  switch (expr.operator) {
    case 'In':
      return value !== undefined && vals.includes(value);
    case 'NotIn':
      return value === undefined || !vals.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
    case 'Gt':
      return value !== undefined && Number(value) > Number(vals[0]);
    case 'Lt':
      return value !== undefined && Number(value) < Number(vals[0]);
    default:
      return false;
  }
}

/** `spec.nodeSelector` and `requiredDuringSchedulingIgnoredDuringExecution` node affinity. */
export function matchesNodeSelection(podSpec: Record<string, any> | undefined, node: Readonly<KObject>): boolean {
  const labels = node.metadata.labels ?? {};
  for (const [k, v] of Object.entries((podSpec?.nodeSelector as Record<string, string> | undefined) ?? {})) {
    if (labels[k] !== v) return false;
  }
  const terms = podSpec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms as any[] | undefined;
  if (!terms || terms.length === 0) return true;
  // Terms are ORed; expressions inside a term are ANDed.
  return terms.some((term) => {
    const exprs = term.matchExpressions ?? [];
    const fields = term.matchFields ?? [];
    if (exprs.length === 0 && fields.length === 0) return false;
    for (const e of exprs) if (!matchExpression(e, labels[e.key])) return false;
    for (const f of fields) if (!matchExpression(f, f.key === 'metadata.name' ? node.metadata.name : undefined)) return false;
    return true;
  });
}

/** Whether `pod` may be placed on `node` by the scheduler (capacity aside). */
export function fitsNode(podSpec: Record<string, any> | undefined, node: Readonly<KObject>): boolean {
  if (!matchesNodeSelection(podSpec, node)) return false;
  return toleratesTaints(podSpec?.tolerations, effectiveTaints(node), ['NoSchedule', 'NoExecute']);
}

/** Host ports a pod binds on its node (hostNetwork makes every container port a host port). */
export function hostPorts(podSpec: Record<string, any> | undefined): string[] {
  const out: string[] = [];
  for (const c of (podSpec?.containers as any[] | undefined) ?? []) {
    for (const p of c.ports ?? []) {
      const hp = p.hostPort ?? (podSpec?.hostNetwork ? p.containerPort : undefined);
      if (hp) out.push(`${p.protocol ?? 'TCP'}/${hp}`);
    }
  }
  return out;
}
