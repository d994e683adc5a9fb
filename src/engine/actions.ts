/**
 * How the runner executes, resumes and undoes a step's planned actions through the executors
 * (`ActionExecutor` in `step.ts`). Steps never call these; they only plan.
 *
 * - {@link executeActions}: each action in plan order (consecutive actions sharing a
 *   `parallelGroup` concurrently, at most `parallelLimit` or {@link PARALLEL_ACTIONS} at once, those
 *   sharing a `serialKey` one after another): `capture`, then
 *   `journal.runAction` (intent with the pre-state, `do`, done with the result).
 * - {@link assertDoneMatchesPlan}: afterwards, exactly one done record per planned action and
 *   none beyond, or {@link ActionMismatchError}.
 * - {@link reconcileIntents}: every action whose newest record is still `intent` (a crash
 *   between the write and its done record) or `failed` (an error that may have come after the
 *   write) is resolved through its executor's `reconcile`: recorded done when the write took
 *   effect, failed (and so planned again) when it did not.
 * - {@link undoActions} / {@link verifyUndone}: the generic rollback, newest action first.
 */
import pLimit from 'p-limit';
import { ActionMismatchError, UnknownActionKindError } from './errors.ts';
import type { ActionExecutor, ActionInput, ActionRecord, CheckResult, ExecutorRegistry, PlannedAction, StepContext, StepId, StepPlan } from './step.ts';

/** Actions of one `parallelGroup` run at the same time. */
export const PARALLEL_ACTIONS = 4;

/** The executor of `kind`, or a typed error naming it. */
export function executorFor<K, A>(executors: ExecutorRegistry<K, A>, kind: string | undefined, actionId: string): ActionExecutor<K, A> {
  const executor = kind ? executors[kind] : undefined;
  if (!executor) {
    throw new UnknownActionKindError(
      `action ${actionId} has kind ${JSON.stringify(kind)}, which this podid-migrate has no executor for.`,
      kind ? 'It was planned or journaled by another version of podid-migrate: run that version.' : 'It was journaled by a version before actions were typed: run that version to finish or roll back this step.',
    );
  }
  return executor;
}

/** The action as a journal record stored it (for resume and rollback). */
export function actionOfRecord(record: ActionRecord): PlannedAction {
  return { id: record.actionId, kind: record.kind ?? '', op: record.op, target: record.target, summary: record.summary, api: record.api, writes: { kube: 0, arm: 0 }, details: record.details };
}

function historyOf<K, A>(ctx: StepContext<K, A>, actionId: string): ActionRecord[] {
  return ctx.journal.records().filter((r) => r.actionId === actionId);
}

function inputFor<K, A>(ctx: StepContext<K, A>, action: PlannedAction): ActionInput {
  return { action, firstPreState: ctx.journal.firstPreState(action.id), history: historyOf(ctx, action.id) };
}

/** Splits a plan's actions into runs: one action alone, or consecutive actions sharing a `parallelGroup`. */
export function actionBatches(actions: readonly PlannedAction[]): PlannedAction[][] {
  const batches: PlannedAction[][] = [];
  for (const action of actions) {
    const last = batches.at(-1);
    if (action.parallelGroup && last && last[0].parallelGroup === action.parallelGroup) last.push(action);
    else batches.push([action]);
  }
  return batches;
}

/** A parallel batch as chains: actions sharing a `serialKey` in plan order, every other action alone. */
export function serialChains(batch: readonly PlannedAction[]): PlannedAction[][] {
  const chains: PlannedAction[][] = [];
  const byKey = new Map<string, PlannedAction[]>();
  for (const action of batch) {
    if (action.serialKey === undefined) {
      chains.push([action]);
      continue;
    }
    let chain = byKey.get(action.serialKey);
    if (!chain) {
      chain = [];
      byKey.set(action.serialKey, chain);
      chains.push(chain);
    }
    chain.push(action);
  }
  return chains;
}

/**
 * Executes `plan.actions` through their executors, journaling each. Every kind is looked up
 * before the first write, so an unknown kind changes nothing. Stops at the first failure (the
 * rest of a parallel batch finishes first).
 */
export async function executeActions<K, A>(ctx: StepContext<K, A>, plan: StepPlan, executors: ExecutorRegistry<K, A>): Promise<void> {
  for (const action of plan.actions) executorFor(executors, action.kind, action.id);
  const runOne = async (action: PlannedAction): Promise<void> => {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const executor = executorFor(executors, action.kind, action.id);
    const pre = await executor.capture(ctx, action);
    await ctx.journal.runAction(action, pre, () => executor.do(ctx, inputFor(ctx, action)));
  };
  for (const batch of actionBatches(plan.actions)) {
    if (batch.length === 1) {
      await runOne(batch[0]);
      continue;
    }
    const limit = pLimit(batch[0].parallelLimit ?? PARALLEL_ACTIONS);
    const outcomes = await Promise.allSettled(
      serialChains(batch).map((chain) =>
        limit(async () => {
          for (const a of chain) await runOne(a);
        }),
      ),
    );
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/**
 * Exactly one done record per planned action among the records added since `fromIndex`, and
 * none for an action the plan did not name.
 * @throws ActionMismatchError
 */
export function assertDoneMatchesPlan(stepId: StepId, plan: StepPlan, records: readonly ActionRecord[], fromIndex: number): void {
  const done = new Map<string, number>();
  for (const r of records.slice(fromIndex)) if (r.status === 'done') done.set(r.actionId, (done.get(r.actionId) ?? 0) + 1);
  const planned = new Set(plan.actions.map((a) => a.id));
  const missing = [...planned].filter((id) => done.get(id) !== 1);
  const unplanned = [...done.keys()].filter((id) => !planned.has(id));
  if (!missing.length && !unplanned.length) return;
  const parts = [
    missing.length ? `planned but not recorded done exactly once: ${missing.join(', ')}` : '',
    unplanned.length ? `recorded done but not planned: ${unplanned.join(', ')}` : '',
  ].filter(Boolean);
  throw new ActionMismatchError(
    `step "${stepId}" did not do exactly what its plan said (${parts.join('; ')}).`,
    `The journal keeps every record. Run \`podid-migrate apply --step ${stepId}\` to re-plan against the live state, or \`podid-migrate rollback --step ${stepId}\`; report this as a bug.`,
    stepId,
    missing,
    unplanned,
  );
}

/** Action ids whose newest record is still `intent` (a crash between the write and its done record), oldest first. */
export function openIntents(records: readonly ActionRecord[]): ActionRecord[] {
  return newestRecords(records).filter((r) => r.status === 'intent');
}

/** Action ids whose outcome is unknown: newest record `intent`, or `failed` (the error may have come after the write). */
export function unsettledRecords(records: readonly ActionRecord[]): ActionRecord[] {
  return newestRecords(records).filter((r) => r.status === 'intent' || r.status === 'failed');
}

function newestRecords(records: readonly ActionRecord[]): ActionRecord[] {
  const newest = new Map<string, ActionRecord>();
  for (const r of records) if (!r.rolledBack) newest.set(r.actionId, r);
  return [...newest.values()];
}

/**
 * Resolves every action whose outcome is unknown (left in `intent` by a crash, or `failed` with
 * an error that may have come after its write) through its executor: re-reads the object and
 * records it done (the write took effect; whatever it awaits is finished now) or failed (it did
 * not; a re-plan plans it again). Returns one line per action.
 */
export async function reconcileIntents<K, A>(ctx: StepContext<K, A>, executors: ExecutorRegistry<K, A>): Promise<string[]> {
  const lines: string[] = [];
  for (const record of unsettledRecords(ctx.journal.records())) {
    const executor = executorFor(executors, record.kind, record.actionId);
    const action = actionOfRecord(record);
    ctx.progress(`resolving ${action.target}: did its write take effect?`);
    const outcome = await executor.reconcile(ctx, inputFor(ctx, action));
    if (outcome.applied) {
      await ctx.journal.settleRecord(record.actionId, { done: true, result: outcome.result });
      lines.push(`${action.target}: the write had taken effect; recorded done`);
    } else {
      if (record.status === 'intent') await ctx.journal.settleRecord(record.actionId, { done: false, error: `not in effect when resumed: ${outcome.reason}` });
      lines.push(`${action.target}: not in effect (${outcome.reason}); planned again`);
    }
  }
  return lines;
}

/** Action ids to undo (any record not yet rolled back), newest record first. */
function undoOrder(records: readonly ActionRecord[]): string[] {
  const seen = new Set<string>();
  const order: string[] = [];
  for (const r of [...records].reverse()) {
    if (r.rolledBack || seen.has(r.actionId)) continue;
    seen.add(r.actionId);
    order.push(r.actionId);
  }
  return order;
}

function undoInput<K, A>(ctx: StepContext<K, A>, actionId: string): ActionInput & { result: unknown } {
  const history = historyOf(ctx, actionId);
  const newest = history.at(-1)!;
  const lastDone = history.filter((r) => r.status === 'done').at(-1);
  return { action: actionOfRecord(lastDone ?? newest), firstPreState: ctx.journal.firstPreState(actionId), history, result: lastDone?.result };
}

/**
 * The generic rollback of one step: every recorded action not yet rolled back is undone through
 * its executor, newest first, and marked rolled back. An action left in `intent` or `failed` is
 * undone too (it may have written part of its change): executors' `undo` only restores what
 * differs from the first pre-state, so undoing an action that never took effect changes nothing.
 * Nothing is reconciled first: a rollback never finishes an action it is about to undo.
 * Returns one line per action.
 */
export async function undoActions<K, A>(ctx: StepContext<K, A>, executors: ExecutorRegistry<K, A>): Promise<string[]> {
  const lines: string[] = [];
  for (const actionId of undoOrder(ctx.journal.records())) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const input = undoInput(ctx, actionId);
    const executor = executorFor(executors, input.action.kind, actionId);
    lines.push(await executor.undo(ctx, input));
    await ctx.journal.markRolledBack(actionId);
  }
  return lines;
}

/** Every action this step recorded, verified undone through its executor (evidence like a check). */
export async function verifyUndone<K, A>(ctx: StepContext<K, A>, executors: ExecutorRegistry<K, A>): Promise<CheckResult> {
  const evidence: string[] = [];
  const failures: string[] = [];
  const ids = [...new Set(ctx.journal.records().map((r) => r.actionId))];
  for (const actionId of ids) {
    const input = undoInput(ctx, actionId);
    const verdict = await executorFor(executors, input.action.kind, actionId).verifyUndo(ctx, input);
    evidence.push(...verdict.evidence);
    failures.push(...verdict.failures);
  }
  return { ok: failures.length === 0, evidence, failures };
}
