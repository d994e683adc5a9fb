/**
 * `podid-migrate drift [--fix [--yes]] [--update-inventory] [--rollback]`: day two. Compares the
 * inventory and every AzureIdentity / binding with the live cluster and Azure, reports each
 * finding with its fix (exit 0 no drift, 3 drift, 1 error), and with `--fix` repairs what is safe
 * to repair automatically, plan first, journalled under the journal's `drift-fix` extension so
 * `--rollback` undoes exactly that. Loaded only when the command runs (see `main.ts`).
 */
import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import type { AzureGateway } from '../../azure/gateway.ts';
import { EXIT, PreconditionError, UsageError } from '../../engine/errors.ts';
import { Journal, type JournalDocument } from '../../engine/journal.ts';
import { acquireLock } from '../../engine/lock.ts';
import { STEP_IDS } from '../../engine/step.ts';
import { analyseDrift } from '../../drift/analyse.ts';
import { DRIFT_FIX_JOURNAL_KEY, rollbackDriftFixes, runDriftFixes } from '../../drift/fix.ts';
import { DRIFT_REPORT_SCHEMA_VERSION, type DriftAction, type DriftReport } from '../../drift/model.ts';
import { readDriftState } from '../../drift/read.ts';
import type { KubeGateway } from '../../kube/gateway.ts';
import { loadInventory } from '../../steps/lib/inventory-model.ts';
import { pathsFor, type Runtime } from '../context.ts';
import type { Paint } from '../io.ts';
import type { CliEnv } from '../main.ts';
import type { GlobalOptions } from '../options.ts';
import { renderData } from '../render.ts';

/** Exit code when drift is found (the same 3 as a failed check: something does not hold). */
export const DRIFT_FOUND_EXIT = EXIT.checkFailed;

/** Flags of `drift`. */
export interface DriftFlags {
  fix?: boolean;
  yes?: boolean;
  updateInventory?: boolean;
  rollback?: boolean;
}

/** How long `--fix` may wait for NMI's rollout (one node at a time). */
const FIX_DEADLINE_MS = 30 * 60_000;

function journalLine(doc: JournalDocument | undefined): string {
  if (!doc) return 'none';
  const checked = STEP_IDS.filter((id) => doc.steps[id].state === 'checked');
  const base =
    checked.length === STEP_IDS.length
      ? `migration complete ${(doc.steps.cleanup.checkedAt ?? '').slice(0, 10)}`
      : `${checked.length}/${STEP_IDS.length} steps checked${STEP_IDS.find((id) => doc.steps[id].state !== 'checked') ? ` (next: ${STEP_IDS.find((id) => doc.steps[id].state !== 'checked')})` : ''}`;
  const fixes = (doc.extensions?.[DRIFT_FIX_JOURNAL_KEY]?.actions ?? []).filter((r) => !r.rolledBack && r.status === 'done').length;
  return fixes ? `${base}; ${fixes} drift fix action(s) recorded (undo: podid-migrate drift --rollback)` : base;
}

/** Reads everything and builds the report (read-only, no lock). */
async function buildReport(runtime: Runtime, globals: GlobalOptions, signal: AbortSignal): Promise<DriftReport> {
  const { inventoryPath, journalPath } = pathsFor(globals, runtime.cluster);
  const inventory = await loadInventory(inventoryPath);
  if (!inventory) {
    throw new PreconditionError(
      `there is no inventory at ${inventoryPath}: drift compares the cluster with it.`,
      'Point --inventory at the file the migration wrote (inventory/<cluster>.yaml), or write one: podid-migrate apply --step inventory',
    );
  }
  if (inventory.cluster.kubeSystemUid !== runtime.cluster.kubeSystemUid) {
    throw new PreconditionError(
      `the inventory ${inventoryPath} belongs to cluster ${inventory.cluster.name} (kube-system uid ${inventory.cluster.kubeSystemUid.slice(0, 8)}...), but the current context points at ${runtime.cluster.name} (uid ${runtime.cluster.kubeSystemUid.slice(0, 8)}...).`,
      'Use --context to select that cluster, or --inventory for this cluster\'s inventory.',
    );
  }
  const journal = await Journal.read(journalPath);
  const kube = (runtime.kube as KubeGateway).scoped({ signal });
  const azure = (runtime.azure as AzureGateway).scoped({ signal });
  const live = await readDriftState(kube, azure, { aksId: globals.aksId, inventory });
  const analysis = analyseDrift(inventory, live, { inventoryPath });
  const drift = analysis.findings.filter((f) => f.severity === 'drift');
  const k = kube.calls();
  const a = azure.calls();
  return {
    kind: 'DriftReport',
    schemaVersion: DRIFT_REPORT_SCHEMA_VERSION,
    generatedAt: new Date().toISOString(),
    context: {
      cluster: { name: runtime.cluster.name, kubeSystemUid: runtime.cluster.kubeSystemUid, ...(globals.aksId ? { aksResourceId: globals.aksId } : {}) },
      inventory: { path: inventoryPath, identities: inventory.identities.length, pools: inventory.pools.length },
      journal: journalLine(journal),
      ok: analysis.ok,
      notes: analysis.notes,
    },
    findings: analysis.findings,
    actions: analysis.actions,
    totals: {
      drift: drift.length,
      notices: analysis.findings.length - drift.length,
      fixable: drift.filter((f) => f.fixKind === 'auto' || f.fixKind === 'inventory').length,
      manual: drift.filter((f) => f.fixKind === 'manual').length,
    },
    calls: { kube: { total: k.total, byKey: k.byKey }, arm: { total: a.total, byKey: a.byKey } },
  };
}

/** `Drift: N findings (M fixable with --fix).` */
export function driftSummaryLine(r: DriftReport): string {
  if (r.totals.drift === 0) return `No drift${r.totals.notices ? ` (${r.totals.notices} notice${r.totals.notices === 1 ? '' : 's'})` : ''}. Exit 0.`;
  return `Drift: ${r.totals.drift} finding${r.totals.drift === 1 ? '' : 's'} (${r.totals.fixable} fixable with --fix / --update-inventory, ${r.totals.manual} manual). Exit ${DRIFT_FOUND_EXIT}.`;
}

/** The report for a terminal (UX.md "Drift"). */
export function renderDriftTable(r: DriftReport, p: Paint): string {
  const c = r.context;
  const lines = [`${p.bold('Cluster')}   ${c.cluster.name}   inventory ${c.inventory.path} (${c.inventory.identities} identities, ${c.inventory.pools} pools)   journal: ${c.journal}`, ''];
  for (const f of r.findings) {
    lines.push(`  ${f.severity === 'drift' ? p.red('!') : p.dim('i')} ${f.subject}   ${f.message}`);
    lines.push(`      ${p.dim('fix:')} ${f.fix}`);
  }
  if (c.ok.length) lines.push(`  ${p.green('ok')} ${c.ok.join('; ')}`);
  for (const n of c.notes) lines.push(`  ${p.dim(`note: ${n}`)}`);
  lines.push('', p.bold(driftSummaryLine(r)));
  return `${lines.join('\n')}\n`;
}

const md = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The report as GitHub-flavoured Markdown (an issue or a scheduled job's summary). */
export function renderDriftMarkdown(r: DriftReport): string {
  const c = r.context;
  const out = [`### podid-migrate drift: \`${c.cluster.name}\``, '', `- Inventory: \`${c.inventory.path}\` (${c.inventory.identities} identities, ${c.inventory.pools} pools)`, `- Journal: ${c.journal}`, ''];
  if (r.findings.length) {
    out.push('| | Subject | Finding | Fix |', '|---|---|---|---|');
    for (const f of r.findings) out.push(`| ${f.severity === 'drift' ? '❗' : 'ℹ️'} | ${md(f.subject)} | ${md(f.message)} | \`${md(f.fix)}\` |`);
    out.push('');
  }
  for (const o of c.ok) out.push(`- ✅ ${md(o)}`);
  out.push('', `**${driftSummaryLine(r)}**`, '');
  return out.join('\n');
}

function renderPlanLines(actions: readonly DriftAction[], p: Paint): string {
  const lines = ['Drift fix plan:'];
  for (const a of actions) lines.push(`  ${a.op === '+' ? p.green('+') : p.yellow('~')} ${a.target}  ${a.summary}`);
  const arm = actions.filter((a) => a.api === 'arm').reduce((n, a) => n + a.writes.arm, 0);
  const kube = actions.filter((a) => a.api === 'kube').reduce((n, a) => n + a.writes.kube, 0);
  lines.push(`Fix: ${actions.length} action(s). Azure writes: ${arm}. Kubernetes writes: ${kube}.`);
  return `${lines.join('\n')}\n`;
}

function emit(env: CliEnv, globals: GlobalOptions, r: DriftReport, extra?: Record<string, unknown>): void {
  if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, { ...r, ...(extra ?? {}) }));
  else if (globals.output === 'markdown') env.out(renderDriftMarkdown(r));
  else env.out(renderDriftTable(r, env.paint(globals)));
}

/** Runs `drift` with validated globals. Sets `env.exitCode`. */
export async function runDrift(env: CliEnv, flags: DriftFlags, cmd: Command): Promise<void> {
  const globals = env.globals(cmd);
  // Drift is what breaks managed mode after its cutover: it reads and extends the managed-mode journal only.
  if (globals.runbook !== 'managed-mode') throw new UsageError(`drift checks a cluster migrated by the managed-mode runbook, not ${globals.runbook}.`, 'Run `podid-migrate drift` without --runbook (and unset PODID_MIGRATE_RUNBOOK).');
  if (flags.rollback && (flags.fix || flags.updateInventory)) throw new UsageError('--rollback cannot be combined with --fix or --update-inventory.', 'Run `podid-migrate drift --rollback` on its own to undo the recorded fixes.');
  if (flags.yes && !flags.fix && !flags.updateInventory && !flags.rollback) throw new UsageError('--yes only applies to --fix, --update-inventory or --rollback.', 'Drop --yes: `podid-migrate drift` alone only reads.');
  const writes = Boolean(flags.fix || flags.updateInventory || flags.rollback);
  await env.withRuntime(globals, 'none', async (runtime, signal) => {
    const { journalPath } = pathsFor(globals, runtime.cluster);
    const confirm = async (question: string): Promise<boolean> => {
      if (flags.yes || env.ci) return true;
      if (!env.interactive) throw new PreconditionError('drift --fix changes the cluster and needs confirmation, but there is no terminal to ask on.', 'Pass --yes (or set CI=true) to repair without a prompt, or run it from a terminal.');
      return env.confirm(question);
    };
    const fixContext = (journal: Journal) => ({
      kube: (runtime.kube as KubeGateway).scoped({ signal, deadline: Date.now() + FIX_DEADLINE_MS }),
      azure: (runtime.azure as AzureGateway).scoped({ signal, deadline: Date.now() + FIX_DEADLINE_MS }),
      journal: journal.forExtension(DRIFT_FIX_JOURNAL_KEY),
      deadline: Date.now() + FIX_DEADLINE_MS,
      signal,
      progress: (m: string) => env.err(`  ${m}\n`),
    });

    if (flags.rollback) {
      const doc = await Journal.read(journalPath);
      const pending = (doc?.extensions?.[DRIFT_FIX_JOURNAL_KEY]?.actions ?? []).filter((r) => !r.rolledBack && r.preState !== undefined);
      if (!pending.length) {
        env.err(`No drift fix to undo in ${journalPath}.\n`);
        return;
      }
      env.err(`Drift rollback: ${pending.map((r) => `${r.target} (${r.summary})`).join('; ')}\n`);
      if (!(await confirm(`Undo ${pending.length} drift fix action(s) on cluster ${runtime.cluster.name}?`))) {
        env.err('Rollback cancelled; nothing was changed.\n');
        return;
      }
      const lock = await acquireLock(journalPath, 'drift --rollback');
      try {
        const journal = await Journal.open(journalPath, runtime.cluster);
        const lines = await rollbackDriftFixes(fixContext(journal));
        const VERIFIED = '  verified: ';
        const undone = lines.filter((l) => !l.startsWith(VERIFIED));
        const verifiedLines = lines.filter((l) => l.startsWith(VERIFIED)).map((l) => l.slice(VERIFIED.length));
        if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, { kind: 'DriftRollback', schemaVersion: 1, undone, verified: verifiedLines }));
        else env.out(`${lines.map((l) => (l.startsWith(VERIFIED) ? `    ${l.trim()}` : `✔ ${l}`)).join('\n')}\nDrift fixes undone and verified; journal ${journalPath}.\n`);
      } finally {
        await lock.release();
      }
      return;
    }

    const report = await buildReport(runtime, globals, signal);
    if (!writes) {
      emit(env, globals, report);
      env.exitCode = report.totals.drift > 0 ? DRIFT_FOUND_EXIT : EXIT.ok;
      return;
    }
    const chosen = report.actions.filter((a) => (a.kind === 'inventory-update' ? flags.updateInventory : flags.fix));
    if (!chosen.length) {
      emit(env, globals, report);
      env.err(`Nothing to ${flags.fix ? 'repair automatically' : 'add to the inventory'}; ${report.totals.drift ? 'the findings above need the manual fix they name.' : 'no drift.'}\n`);
      env.exitCode = report.totals.drift > 0 ? DRIFT_FOUND_EXIT : EXIT.ok;
      return;
    }
    env.err(renderDriftTable(report, env.paint(globals)));
    env.err(renderPlanLines(chosen, env.paint(globals)));
    if (!(await confirm(`Apply ${chosen.length} drift fix action(s) to cluster ${runtime.cluster.name} (journal ${journalPath})?`))) {
      env.err('Fix cancelled; nothing was changed.\n');
      env.exitCode = report.totals.drift > 0 ? DRIFT_FOUND_EXIT : EXIT.ok;
      return;
    }
    const runId = `${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomUUID().slice(0, 8)}`;
    const lock = await acquireLock(journalPath, flags.fix ? 'drift --fix' : 'drift --update-inventory');
    let lines: string[];
    try {
      const journal = await Journal.open(journalPath, runtime.cluster);
      lines = await runDriftFixes(fixContext(journal), chosen, runId);
    } finally {
      await lock.release();
    }
    for (const l of lines) env.err(`✔ ${l}\n`);
    env.err('Checking again...\n');
    const after = await buildReport(runtime, globals, signal);
    emit(env, globals, after, { fix: { runId, applied: lines } });
    env.exitCode = after.totals.drift > 0 ? DRIFT_FOUND_EXIT : EXIT.ok;
  });
}

/** The `drift` action (see `src/cli/commands/drift.ts`). */
export const run = runDrift;
