/**
 * Runs a step's plan the way the runner does (executors, journal intent/done, the done-record
 * assertion, `afterActions`) and its rollback (undo newest first, then verify), over a step
 * context from the fakes. For step unit tests; the runner's own ordering and state machine are
 * tested in test/engine.
 */
import { assertDoneMatchesPlan, executeActions, reconcileIntents, undoActions, verifyUndone } from '../../src/engine/actions.ts';
import type { CheckResult, StepOutcome, StepPlan } from '../../src/engine/step.ts';
import { EXECUTORS } from '../../src/steps/executors/index.ts';
import type { Ctx, MigrationStep } from '../../src/steps/lib/context.ts';

/** Executes `plan` (default: a fresh plan) and returns the step's summary. Open intents are resolved first, as on a resume. */
export async function applyPlan(step: MigrationStep, ctx: Ctx, plan?: StepPlan): Promise<StepOutcome> {
  await reconcileIntents(ctx, EXECUTORS);
  const p = plan ?? (await step.plan(ctx));
  const from = ctx.journal.records().length;
  await executeActions(ctx, p, EXECUTORS);
  assertDoneMatchesPlan(step.id, p, ctx.journal.records(), from);
  return step.afterActions ? step.afterActions(ctx, p) : { summary: `${p.actions.length} action(s)` };
}

/** The runner's rollback of one step: every recorded action undone, newest first. */
export async function rollbackStep(ctx: Ctx): Promise<StepOutcome> {
  const lines = await undoActions(ctx, EXECUTORS);
  return { summary: lines.join('; ') };
}

/** The runner's verification after a rollback. */
export async function verifyRollback(ctx: Ctx): Promise<CheckResult> {
  return verifyUndone(ctx, EXECUTORS);
}
