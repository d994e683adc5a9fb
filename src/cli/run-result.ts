/**
 * What `apply` and `rollback` print as their result, on stdout: the closing summary (one line
 * per step, then the journal line) followed by the checks each step passed; or, with
 * `-o json|yaml`, the same as a document (`schemas/apply.schema.json`, `rollback.schema.json`).
 */
import type { RunResult } from '../engine/runner.ts';
import type { DryRunMode } from '../engine/step.ts';
import type { DryRunEntry } from '../kube/dry-run.ts';
import type { Paint } from './io.ts';
import { renderRunSummary } from './render.ts';

/** One step of an apply/rollback result document. */
export interface StepResultDocument {
  stepId: string;
  title: string;
  /** What this run did with the step: `checked`, `skipped`, `dry-run`, `rolled-back`. */
  outcome: string;
  /** The step's state in the journal afterwards (`pending` in a dry run, which writes no journal). */
  state: string;
  summary: string;
  durationMs: number;
  /** Planned actions the step carried out (or would have, in a dry run). */
  actions: number;
  /** What its check verified, one line each. */
  checks: string[];
  resumed: boolean;
}

/** The body of the apply/rollback document (the caller adds the envelope). */
export function runResultBody(result: RunResult, dryRun: DryRunMode, writes?: readonly DryRunEntry[]) {
  return {
    runbook: result.runbook,
    dryRun,
    /** The journal written (none in a dry run). */
    journalPath: dryRun === 'none' ? result.journalPath : null,
    next: result.next ?? null,
    steps: result.steps.map(
      (s): StepResultDocument => ({
        stepId: s.stepId,
        title: s.title,
        outcome: s.outcome,
        state: result.journal.steps[s.stepId]?.state ?? 'pending',
        summary: s.summary,
        durationMs: s.durationMs,
        actions: s.actions,
        checks: [...s.evidence],
        resumed: s.resumed ?? false,
      }),
    ),
    ...(writes ? { writes: [...writes] } : {}),
  };
}

/** The result as text: the summary lines, then each step's checks. */
export function renderRunResult(result: RunResult, p: Paint, verb: 'apply' | 'rollback', dryRun: DryRunMode): string {
  const lines = [renderRunSummary(result, p, verb, dryRun).trimEnd()];
  const checked = result.steps.filter((s) => s.evidence.length > 0);
  if (checked.length > 0) {
    lines.push('', p.bold('Checks'));
    for (const s of checked) {
      lines.push(`  ${s.stepId}`);
      for (const line of s.evidence) lines.push(`    ${p.green('✔')} ${line}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
