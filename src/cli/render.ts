/**
 * Text rendering for the terminal and pull-request comments. Pure functions: data in, string out.
 */
import { stringify as toYaml } from 'yaml';
import { journalRunbook, type JournalDocument, type StepEntry } from '../engine/journal.ts';
import type { RunbookPlan } from '../engine/plan.ts';
import { formatDuration, type RunResult } from '../engine/runner.ts';
import { commandPrefix, stepIdsOf, stepIndex } from '../engine/step.ts';
import type { Paint } from './io.ts';
import { redactDeep } from '../engine/redaction.ts';
import type { OutputFormat } from './options.ts';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** `Plan: N to add, N to change, N to remove. N blockers. Azure writes: N.` */
export function planSummaryLine(plan: RunbookPlan): string {
  const t = plan.totals;
  const pending = plan.steps.filter((s) => s.status === 'unavailable').length;
  return (
    `Plan: ${t.add} to add, ${t.change} to change, ${t.remove} to remove. ${plural(t.blockers, 'blocker')}. Azure writes: ${t.azureWrites}.` +
    (pending > 0 ? ` ${plural(pending, 'step')} planned when reached.` : '')
  );
}

function shortUid(uid: string): string {
  return uid.length > 8 ? `${uid.slice(0, 8)}...` : uid;
}

/** Terraform-style plan for a terminal. */
export function renderPlanTable(plan: RunbookPlan, p: Paint, journalPath: string): string {
  const lines: string[] = [];
  const c = plan.cluster;
  lines.push(`${p.bold('Cluster')}   ${c.name} (API ${c.apiServer}, kube-system uid ${shortUid(c.kubeSystemUid)})`);
  lines.push(`${p.bold('Azure')}     subscription ${c.subscriptionId}  cluster ${c.aksResourceId}`);
  lines.push(`${p.bold('Inventory')} ${plan.inventory ? `${plan.inventory.path} (sha256 ${plan.inventory.sha256.slice(0, 12)})` : 'not written yet (the inventory step writes it)'}`);
  lines.push(`${p.bold('Journal')}   ${journalPath}`);
  lines.push('');
  const blockers = plan.steps.flatMap((s) => (s.plan?.blockers ?? []).map((b) => ({ step: s.stepId, ...b })));
  if (blockers.length > 0) {
    lines.push(p.red('Blockers (fix these first):'));
    for (const b of blockers) {
      lines.push(`  ${p.red('x')}  [${b.step}] ${b.subject}: ${b.message}`);
      lines.push(`     Fix: ${b.fix}`);
    }
    lines.push('');
  }
  const width = Math.max(...plan.steps.map((s) => s.stepId.length)) + 2;
  for (const step of plan.steps) {
    const n = stepIndex(step.stepId) + 1;
    const head = `Step ${n} ${step.stepId.padEnd(width)}`;
    const pad = ' '.repeat(head.length);
    if (step.status === 'done') {
      lines.push(`${head}${p.green('✔')} already checked`);
      continue;
    }
    if (step.status === 'unavailable') {
      lines.push(`${head}${p.dim(step.reason ?? 'depends on an earlier step')}`);
      continue;
    }
    const actions = step.plan?.actions ?? [];
    const body: string[] = [];
    if (step.state !== 'pending') body.push(p.yellow(`(journal: ${step.state}; apply re-plans and continues)`));
    for (const a of actions) {
      const op = a.op === '+' ? p.green('+') : a.op === '-' ? p.red('-') : p.yellow('~');
      body.push(`${op} ${a.target}  ${a.summary}`);
    }
    for (const note of step.plan?.notes ?? []) body.push(p.dim(note));
    if (step.writes && step.writes.kube + step.writes.arm > 0) {
      const range = (least: number, most: number | undefined) => (most !== undefined && most !== least ? `${least}-${most}` : `${least}`);
      body.push(p.dim(`writes: ${range(step.writes.kube, step.writesUpTo?.kube)} Kubernetes, ${range(step.writes.arm, step.writesUpTo?.arm)} Azure (apply and check)`));
    }
    if (actions.length === 0 && (step.plan?.blockers.length ?? 0) === 0) body.push(p.dim('no changes'));
    if (step.status === 'tentative' && actions.length > 0) body.push(p.dim('(planned against the current state; planned again when it runs)'));
    lines.push(`${head}${body[0] ?? ''}`);
    for (const line of body.slice(1)) lines.push(`${pad}${line}`);
  }
  lines.push('');
  lines.push(p.bold(planSummaryLine(plan)));
  return `${lines.join('\n')}\n`;
}

const mdEscape = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The plan as GitHub-flavoured Markdown for a pull-request comment. */
export function renderPlanMarkdown(plan: RunbookPlan): string {
  const c = plan.cluster;
  const out: string[] = [`### podid-migrate plan: \`${c.name}\``, '', `- API server: \`${c.apiServer}\` (kube-system uid \`${c.kubeSystemUid}\`)`, `- AKS: \`${c.aksResourceId}\``];
  out.push(`- Inventory: ${plan.inventory ? `\`${plan.inventory.path}\` (sha256 \`${plan.inventory.sha256.slice(0, 12)}\`)` : 'not written yet'}`, '');
  const blockers = plan.steps.flatMap((s) => (s.plan?.blockers ?? []).map((b) => ({ step: s.stepId, ...b })));
  if (blockers.length > 0) {
    out.push('#### Blockers', '', '| Step | Subject | Problem | Fix |', '|---|---|---|---|');
    for (const b of blockers) out.push(`| ${b.step} | ${mdEscape(b.subject)} | ${mdEscape(b.message)} | ${mdEscape(b.fix)} |`);
    out.push('');
  }
  out.push('| # | Step | Op | Target | Change |', '|---|---|---|---|---|');
  for (const step of plan.steps) {
    const n = stepIndex(step.stepId) + 1;
    if (step.status === 'done') out.push(`| ${n} | ${step.stepId} | | | already checked |`);
    else if (step.status === 'unavailable') out.push(`| ${n} | ${step.stepId} | | | ${mdEscape(step.reason ?? '')} |`);
    else if ((step.plan?.actions.length ?? 0) === 0) out.push(`| ${n} | ${step.stepId} | | | no changes |`);
    else for (const a of step.plan!.actions) out.push(`| ${n} | ${step.stepId} | \`${a.op}\` | ${mdEscape(a.target)} | ${mdEscape(a.summary)} |`);
  }
  out.push('', `**${planSummaryLine(plan)}**`, '');
  return out.join('\n');
}

/** JSON/YAML/table/markdown dispatch for structured data. */
export function renderData(format: OutputFormat, data: unknown): string {
  // Redacted before rendering: YAML folds long strings, which a line-based filter would miss.
  const safe = redactDeep(data);
  if (format === 'yaml') return toYaml(safe);
  return `${JSON.stringify(safe, null, 2)}\n`;
}

const stamp = (iso?: string) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, '').replace(/Z$/, '') : '');

/** Pads columns to the widest cell. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return `${rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join('   ').trimEnd()).join('\n')}\n`;
}

function noteOf(entry: StepEntry): string {
  if (entry.failures.length > 0) return entry.failures[0];
  return entry.summary ?? '';
}

/** `status` as a table (UX.md), times in UTC. */
export function renderStatusTable(doc: JournalDocument, journalPath: string, p: Paint): string {
  const rows = [['STEP', 'STATE', 'APPLIED (UTC)', 'CHECKED (UTC)', 'NOTE']];
  const runbook = journalRunbook(doc);
  const ids = stepIdsOf(runbook);
  for (const id of ids) {
    const e = doc.steps[id];
    rows.push([id, e.state, stamp(e.appliedAt), stamp(e.checkedAt), noteOf(e)]);
  }
  const next = ids.find((id) => doc.steps[id].state !== 'checked');
  const which = runbook === 'managed-mode' ? '' : `  runbook ${runbook}`;
  return `${p.bold(`Cluster ${doc.cluster.name}`)} (kube-system uid ${shortUid(doc.cluster.kubeSystemUid)})${which}  journal ${journalPath}\n\n${table(rows)}\n${next ? `Next: ${commandPrefix(runbook)} apply --step ${next}` : 'All steps checked.'}\n`;
}

export function renderStatusMarkdown(doc: JournalDocument): string {
  const out = [`### podid-migrate status: \`${doc.cluster.name}\``, '', '| Step | State | Applied (UTC) | Checked (UTC) | Note |', '|---|---|---|---|---|'];
  for (const id of stepIdsOf(journalRunbook(doc))) {
    const e = doc.steps[id];
    out.push(`| ${id} | ${e.state} | ${stamp(e.appliedAt)} | ${stamp(e.checkedAt)} | ${mdEscape(noteOf(e))} |`);
  }
  return `${out.join('\n')}\n`;
}

/** `history`: the journal's events, oldest first. */
export function renderHistoryTable(doc: JournalDocument): string {
  const rows = [['TIME (UTC)', 'STEP', 'EVENT', 'MESSAGE']];
  for (const e of doc.events) rows.push([stamp(e.at), e.stepId ?? '', e.event, e.message]);
  return table(rows);
}

export function renderHistoryMarkdown(doc: JournalDocument): string {
  const out = ['| Time (UTC) | Step | Event | Message |', '|---|---|---|---|'];
  for (const e of doc.events) out.push(`| ${stamp(e.at)} | ${e.stepId ?? ''} | ${e.event} | ${mdEscape(e.message)} |`);
  return `${out.join('\n')}\n`;
}

/** The closing summary of apply/rollback (UX.md), e.g. `✔ assign (52 s) 5 scale sets patched`. */
export function renderRunSummary(result: RunResult, p: Paint, verb: 'apply' | 'rollback', dryRun: string): string {
  const width = Math.max(...result.steps.map((s) => s.stepId.length), 4) + 2;
  const lines = result.steps.map((s) => {
    const mark = s.outcome === 'skipped' ? p.dim('-') : s.outcome === 'dry-run' ? p.yellow('○') : p.green('✔');
    const time = s.outcome === 'skipped' ? '' : `(${formatDuration(s.durationMs)})`;
    const head = `${mark} ${s.stepId.padEnd(width)}${time.padEnd(10)} ${s.outcome === 'dry-run' ? `dry-run=${dryRun}: ` : ''}${s.summary}${s.resumed ? ' (resumed)' : ''}`;
    // A dry run says, per step, exactly what it would do.
    const indent = ' '.repeat(2 + width + 11);
    return [head, ...(s.wouldDo ?? []).map((line) => `${indent}${p.dim(line)}`)].join('\n');
  });
  if (dryRun !== 'none') {
    lines.push(`Dry run (${dryRun}): nothing was changed; no journal written.`);
  } else {
    const ids = stepIdsOf(result.runbook);
    const checked = ids.filter((id) => result.journal.steps[id]?.state === 'checked');
    lines.push(`Journal ${result.journalPath}  (${checked.length}/${ids.length} steps checked${result.next ? `; next: ${result.next}` : verb === 'apply' ? '; migration complete' : ''})`);
  }
  return `${lines.join('\n')}\n`;
}
