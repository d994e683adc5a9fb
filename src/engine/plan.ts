/**
 * The runbook plan: every step's plan in order, totals, and fingerprints that let `apply --plan`
 * refuse a saved plan the live system no longer matches.
 */
import { createHash } from 'node:crypto';
import type { ClusterIdentity, StepState } from './journal.ts';
import type { RunbookId, StepId, StepPlan, WriteCounts } from './step.ts';

/**
 * How a step appears in a runbook plan:
 * - `done`: already checked in the journal; nothing to do.
 * - `planned`: planned against live state that no earlier pending step will change first.
 * - `tentative`: planned against today's live state while an earlier step is still pending; it is
 *   planned again just before it runs (and `apply --plan` then requires the same fingerprint).
 * - `unavailable`: cannot be planned until an earlier step has run (`reason` says why).
 */
export type PlannedStepStatus = 'done' | 'planned' | 'tentative' | 'unavailable';

/** One step of a {@link RunbookPlan}. */
export interface PlannedStep {
  stepId: StepId;
  title: string;
  /** The step's state in the journal when planned. */
  state: StepState;
  status: PlannedStepStatus;
  plan?: StepPlan;
  /** Every mutating call a clean run of this step's apply and check sends ({@link stepWrites}). */
  writes?: WriteCounts;
  /** Present when a race outside this tool decides some writes: the most a clean run may send (`writes` is then the least). */
  writesUpTo?: WriteCounts;
  fingerprint?: string;
  reason?: string;
}

/** Counts for the summary line. */
export interface PlanTotals {
  add: number;
  change: number;
  remove: number;
  blockers: number;
  azureWrites: number;
  kubeWrites: number;
}

/** A whole plan, as shown by `plan` and saved by `plan --out`. */
export interface RunbookPlan {
  kind: 'podid-migrate/plan';
  schemaVersion: 1;
  /** The runbook planned (absent in plans saved before runbooks existed: `managed-mode`). */
  runbook?: RunbookId;
  createdAt: string;
  cluster: ClusterIdentity;
  inventory?: { path: string; sha256: string };
  steps: PlannedStep[];
  totals: PlanTotals;
}

/** Stable JSON: object keys sorted, so equal content gives equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

/** A copy of `value` with object keys sorted (undefined values dropped), at every depth. */
export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/**
 * Fingerprint of what a step plan would do: action ids, ops, targets, APIs, write counts and
 * details, plus blocker codes and subjects. Summaries and notes are left out on purpose: they
 * carry volatile counts (pods on a node under churn) that do not change the decision.
 */
export function fingerprintStepPlan(plan: StepPlan): string {
  const material = {
    stepId: plan.stepId,
    actions: plan.actions.map((a) => ({ id: a.id, kind: a.kind, op: a.op, target: a.target, api: a.api, writes: a.writes, details: a.details, ...(a.serialKey !== undefined ? { serialKey: a.serialKey } : {}) })),
    blockers: plan.blockers.map((b) => ({ code: b.code, subject: b.subject })),
  };
  return `sha256:${createHash('sha256').update(canonicalJson(material)).digest('hex')}`;
}

/** What a clean run of a step's apply and check sends: its actions' writes plus its check's. */
export function stepWrites(plan: StepPlan): WriteCounts {
  const writes: WriteCounts = { kube: plan.checkWrites?.kube ?? 0, arm: plan.checkWrites?.arm ?? 0 };
  for (const action of plan.actions) {
    writes.kube += action.writes.kube;
    writes.arm += action.writes.arm;
  }
  return writes;
}

/** The most a clean run of the step may send, when some action's writes depend on a race; undefined otherwise. */
export function stepWritesUpTo(plan: StepPlan): WriteCounts | undefined {
  if (!plan.actions.some((a) => a.writesUpTo)) return undefined;
  const writes: WriteCounts = { kube: plan.checkWrites?.kube ?? 0, arm: plan.checkWrites?.arm ?? 0 };
  for (const action of plan.actions) {
    writes.kube += (action.writesUpTo ?? action.writes).kube;
    writes.arm += (action.writesUpTo ?? action.writes).arm;
  }
  return writes;
}

/** Sums the actions, writes and blockers of every planned (non-done) step. */
export function totalsOf(steps: readonly PlannedStep[]): PlanTotals {
  const totals: PlanTotals = { add: 0, change: 0, remove: 0, blockers: 0, azureWrites: 0, kubeWrites: 0 };
  for (const step of steps) {
    if (!step.plan || step.status === 'done') continue;
    for (const action of step.plan.actions) {
      if (action.op === '+') totals.add++;
      else if (action.op === '~') totals.change++;
      else totals.remove++;
    }
    const writes = stepWrites(step.plan);
    totals.azureWrites += writes.arm;
    totals.kubeWrites += writes.kube;
    totals.blockers += step.plan.blockers.length;
  }
  return totals;
}

/** True when the plan would change something. */
export function hasChanges(plan: RunbookPlan): boolean {
  const t = plan.totals;
  return t.add + t.change + t.remove > 0 || plan.steps.some((s) => s.status === 'unavailable');
}

/** Validates a saved plan file's shape. Returns an error description or undefined. */
export function invalidSavedPlan(value: unknown): string | undefined {
  if (!value || typeof value !== 'object') return 'not a JSON object';
  const plan = value as Partial<RunbookPlan>;
  if (plan.kind !== 'podid-migrate/plan') return `"kind" is ${JSON.stringify(plan.kind)}, expected "podid-migrate/plan"`;
  if (plan.schemaVersion !== 1) return `schemaVersion ${JSON.stringify(plan.schemaVersion)} is not supported (expected 1)`;
  if (!plan.cluster || typeof plan.cluster.kubeSystemUid !== 'string') return '"cluster" is missing';
  if (!Array.isArray(plan.steps)) return '"steps" is not a list';
  return undefined;
}
