/**
 * The runner: plans, applies, checks and rolls back the runbook's steps against one cluster,
 * enforcing the order (a step starts only when every earlier step is `checked`), recording
 * everything in the journal under the lock, and resuming an interrupted step by re-planning it.
 *
 * It never imports an SDK and never exits the process: failures are typed errors
 * (`errors.ts`) carrying the exit code.
 */
import {
  AbortedError,
  BlockersFoundError,
  CheckFailedError,
  DirtyJournalError,
  PodidError,
  PreconditionError,
  RunbookMismatchError,
  StalePlanError,
  StepFailedError,
  UsageError,
} from './errors.ts';
import type { ActionMismatchError } from './errors.ts';
import { Journal, redact, type ClusterIdentity, type JournalDocument, type StepEntry } from './journal.ts';
import { readValidatedInventory } from './inputs.ts';
import { acquireLock, type LockHandle } from './lock.ts';
import { DEFAULT_STEP_TIMEOUT_MS, formatDuration } from './durations.ts';
import { assertDoneMatchesPlan, executeActions, openIntents, reconcileIntents, undoActions, unsettledRecords, verifyUndone } from './actions.ts';
import { fingerprintStepPlan, stepWrites, stepWritesUpTo, totalsOf, type PlannedStep, type RunbookPlan } from './plan.ts';
import {
  DEFAULT_RUNBOOK,
  commandPrefix,
  isStepId,
  runbookOf,
  stepIdsOf,
  stepIndex,
  type Blocker,
  type CheckResult,
  type DryRunMode,
  type ExecutorRegistry,
  type RunbookId,
  type Step,
  type StepContext,
  type StepId,
  type StepPlan,
  type StepRegistry,
} from './step.ts';

export { DEFAULT_STEP_TIMEOUT_MS, formatDuration };

/** The inventory as loaded for a run. */
export interface LoadedInventory {
  document: unknown;
  sha256: string;
}

/** Observer for progress; the CLI turns these into listr2 tasks or plain lines. All optional. */
export interface RunnerEvents {
  stepStart?(stepId: StepId, title: string, phase: 'apply' | 'check' | 'rollback'): void;
  stepProgress?(stepId: StepId, message: string): void;
  stepEnd?(result: StepRunResult): void;
  log?(level: 'info' | 'debug' | 'warn', message: string, stepId?: StepId): void;
}

/** Everything a runner needs. The gateways are passed through to steps untouched. */
export interface RunnerConfig<K = unknown, A = unknown> {
  /**
   * The runbook the steps belong to (default: the runbook of the registry's first step, else
   * `managed-mode`). The journal must record the same runbook ({@link RunbookMismatchError}).
   */
  runbook?: RunbookId;
  /** The runbook's steps in its order (a registry may leave out steps of the runbook, never reorder them). */
  steps: StepRegistry<K, A>;
  /** The executors of every action kind the steps plan (`src/steps/executors/index.ts` in production). */
  executors: ExecutorRegistry<K, A>;
  kube: K;
  azure: A;
  cluster: ClusterIdentity;
  journalPath: string;
  inventoryPath: string;
  /** Reads the inventory; default: YAML/JSON file at `inventoryPath`, undefined when absent. */
  loadInventory?: () => Promise<LoadedInventory | undefined>;
  /** Step flags (`drainTimeoutMs`, …), handed to every step as `ctx.options`. */
  options?: Record<string, unknown>;
  /** `client` / `server`: no journal written, no lock taken, checks skipped (see {@link Runner.apply}). */
  dryRun?: DryRunMode;
  /** Per step call (apply, check, rollback); a step's own `deadlineMs` wins. */
  stepTimeoutMs?: number;
  /** Aborted on SIGINT: the current step stops at its next await, the journal records where. */
  signal?: AbortSignal;
  events?: RunnerEvents;
  /** Store error stacks in the journal's log. */
  verbose?: boolean;
  /**
   * Read snapshot hook: every step call runs inside `readScope(phase, call)`, phase being `plan`,
   * `apply`, `check` or `rollback` (verifyRollback included). The CLI passes the command's
   * `ReadSnapshot.during`, so plans share one read of the cluster and a check re-reads only what
   * the apply's writes may have changed. Absent: every read goes to the server.
   */
  readScope?: <T>(phase: 'plan' | 'apply' | 'check' | 'rollback', call: () => Promise<T>) => Promise<T>;
  /** Extra blockers for a step's plan, found before anything is written (e.g. missing Kubernetes permissions). */
  preflight?: (stepId: StepId, kube: K, inventoryDocument: unknown) => Promise<Blocker[]>;
}

/** Outcome of one step in an apply or rollback run. */
export interface StepRunResult {
  stepId: StepId;
  title: string;
  /**
   * `skipped`: already checked (apply) or nothing recorded to undo (rollback);
   * `checked`: applied and verified; `dry-run`: planned and sent as dry-run, not verified;
   * `rolled-back`: undone and verified.
   */
  outcome: 'skipped' | 'checked' | 'dry-run' | 'rolled-back';
  summary: string;
  durationMs: number;
  actions: number;
  evidence: string[];
  /** True when the step had been left `applying`/`failed` and was re-planned. */
  resumed?: boolean;
  /** Dry run: what the step would do, one line per planned action (`~ node x: cordon, evict 3 pods`), then its notes. */
  wouldDo?: string[];
}

/** What `apply` / `rollback` return. */
export interface RunResult {
  /** The runbook run. */
  runbook: RunbookId;
  steps: StepRunResult[];
  journalPath: string;
  /** Journal state after the run (in-memory copy for dry-run). */
  journal: JournalDocument;
  /** The next step to apply, if any. */
  next?: StepId;
}

/** Apply target: one step, everything up to a step, or (neither) the whole runbook. */
export interface ApplyOptions {
  step?: StepId;
  to?: StepId;
  /** A saved plan (`plan --out`): each step's fresh plan must have the saved fingerprint. */
  savedPlan?: RunbookPlan;
}

/**
 * Rollback target. `step`: only that step (every later step must already be rolled back or
 * never applied). `to`: that step and every later one, newest first. `all`: every step.
 */
export interface RollbackOptions {
  step?: StepId;
  to?: StepId;
  all?: boolean;
}

/**
 * Reads an inventory file (YAML or JSON), validates it against the inventory schema and hashes
 * its bytes; undefined when it does not exist.
 * @throws InvalidInputError naming every bad field (`inputs.ts`)
 */
export async function readInventoryFile(path: string): Promise<LoadedInventory | undefined> {
  return readValidatedInventory(path);
}

/** Runs the runbook. One instance per command invocation. */
export class Runner<K = unknown, A = unknown> {
  private readonly config: RunnerConfig<K, A>;
  private readonly byId: Map<StepId, Step<K, A>>;
  /** The runbook this runner runs. */
  readonly runbook: RunbookId;

  constructor(config: RunnerConfig<K, A>) {
    const ids = config.steps.map((s) => s.id);
    const first = ids[0];
    const runbook = config.runbook ?? (isStepId(first) ? runbookOf(first) : DEFAULT_RUNBOOK);
    for (const [i, id] of ids.entries()) {
      if (!isStepId(id, runbook)) throw new TypeError(`step registry: ${JSON.stringify(id)} is not a step of the ${runbook} runbook (${stepIdsOf(runbook).join(', ')})`);
      if (i > 0 && stepIndex(id) <= stepIndex(ids[i - 1])) throw new TypeError(`step registry: steps must be in runbook order (${stepIdsOf(runbook).join(', ')})`);
    }
    this.config = config;
    this.runbook = runbook;
    this.byId = new Map(config.steps.map((s) => [s.id, s]));
  }

  /** How hints spell this runbook's commands (`podid-migrate --runbook workload-identity`). */
  private get cli(): string {
    return commandPrefix(this.runbook);
  }

  private openJournal(options: { inMemory?: boolean } = {}): Promise<Journal> {
    return Journal.open(this.config.journalPath, this.config.cluster, { ...options, runbook: this.runbook });
  }

  private get dryRun(): DryRunMode {
    return this.config.dryRun ?? 'none';
  }

  private async inventory(): Promise<LoadedInventory | undefined> {
    return (this.config.loadInventory ?? (() => readInventoryFile(this.config.inventoryPath)))();
  }

  /**
   * Plans every registered step in order, read-only: no journal write, no lock. Checked steps
   * are `done`; the first unchecked step is `planned`; later ones are `tentative` (planned
   * against today's state) or `unavailable` when their plan needs an earlier step's result
   * (the step threw while planning). An error planning the first unchecked step propagates.
   */
  async plan(): Promise<RunbookPlan> {
    const journal = await this.openJournal({ inMemory: true });
    const inventory = await this.inventory();
    // What later plans see: the file, or the document an earlier pending step would write.
    let planInventory = inventory;
    const steps: PlannedStep[] = [];
    let pendingSeen = false;
    for (const step of this.config.steps) {
      const entry = journal.step(step.id);
      if (entry.state === 'checked') {
        steps.push({ stepId: step.id, title: step.title, state: entry.state, status: 'done' });
        continue;
      }
      const firm = !pendingSeen;
      pendingSeen = true;
      try {
        const plan = await this.planStep(step, journal, planInventory, (document) => {
          planInventory = { document, sha256: '' };
        });
        steps.push({ stepId: step.id, title: step.title, state: entry.state, status: firm ? 'planned' : 'tentative', plan, writes: stepWrites(plan), ...(stepWritesUpTo(plan) ? { writesUpTo: stepWritesUpTo(plan) } : {}), fingerprint: fingerprintStepPlan(plan) });
      } catch (error) {
        // An error planning the first unchecked step is real; later steps may just need its result.
        if (firm) throw error;
        const previous = steps.filter((s) => s.status !== 'done').at(-1);
        steps.push({
          stepId: step.id,
          title: step.title,
          state: entry.state,
          status: 'unavailable',
          reason: `depends on ${previous ? `step ${previous.stepId}` : 'an earlier step'}: ${redact((error as Error).message)}`,
        });
      }
    }
    return {
      kind: 'podid-migrate/plan',
      schemaVersion: 1,
      runbook: this.runbook,
      createdAt: new Date().toISOString(),
      cluster: this.config.cluster,
      ...(inventory ? { inventory: { path: this.config.inventoryPath, sha256: inventory.sha256 } } : {}),
      steps,
      totals: totalsOf(steps),
    };
  }

  /**
   * Applies pending steps in order up to the target, each followed by its check.
   *
   * - A step starts only when every earlier step is `checked` (`--step` on a later step is refused).
   * - Before anything is written, every step in range is planned; any blocker → {@link BlockersFoundError} (exit 4), nothing changed.
   * - Each step is planned again just before it runs; with a saved plan the fingerprint must match ({@link StalePlanError}).
   * - A step left `applying` or `failed` is resumed: every action left in `intent` is resolved through its executor
   *   (re-read: recorded done, or failed and so planned again), then the step is re-planned against live state;
   *   `applied` goes straight to its check. A check fails while an action is left in `intent`.
   * - Each step's `plan.actions` are executed in order through the executors, then the done records must match the
   *   plan one to one ({@link ActionMismatchError}), then the step's `afterActions` records what later steps read.
   * - Check failure → `failed`, {@link CheckFailedError} (exit 3). Apply failure → `failed`, {@link StepFailedError} (exit 1).
   * - Dry-run: the journal is loaded into memory and never written, no lock is taken, checks are skipped,
   *   and later steps run their (dry-run) actions as if earlier ones had succeeded: they see the earlier steps'
   *   in-memory records and data, and the inventory the inventory step would write.
   */
  async apply(options: ApplyOptions = {}): Promise<RunResult> {
    if (options.step && options.to) throw new UsageError('--step and --to cannot be combined.', 'Use --step ID to apply one step, or --to ID to apply every pending step up to it.');
    const dry = this.dryRun !== 'none';
    const lock = dry ? undefined : await acquireLock(this.config.journalPath, 'apply', this.cli);
    try {
      const journal = await this.openJournal({ inMemory: dry });
      if (!dry) await journal.cleanTempFiles();
      const range = this.applyRange(options);
      const dirty = stepIdsOf(this.runbook).find((id) => journal.step(id).state === 'rolling-back');
      if (dirty) {
        throw new DirtyJournalError(
          `a rollback of step "${dirty}" did not finish; the cluster is between its applied and original state.`,
          `Finish it first: ${this.cli} rollback --step ${dirty}`,
        );
      }
      const first = range[0];
      for (const earlier of this.config.steps.slice(0, this.config.steps.indexOf(first))) {
        const state = journal.step(earlier.id).state;
        if (state !== 'checked') {
          throw new PreconditionError(
            `step "${first.id}" cannot start: the earlier step "${earlier.id}" is ${state}, not checked.`,
            `Apply the steps in order: ${this.cli} apply --to ${first.id}`,
          );
        }
      }
      if (options.savedPlan) this.assertSavedPlanMatches(options.savedPlan);

      const inventory = await this.inventory();
      if (inventory && !dry) await journal.setInventory(this.config.inventoryPath, inventory.sha256);
      await this.preflight(range, journal, inventory);
      if (!dry) await journal.log('apply-start', `apply ${range.map((s) => s.id).join(', ')}`);

      const results: StepRunResult[] = [];
      // A dry run writes no inventory file: later steps get the document the inventory step would write.
      const dryInventory: { current?: LoadedInventory } = {};
      for (const step of range) {
        results.push(await this.applyStep(step, journal, options.savedPlan, dryInventory));
      }
      if (!dry) await journal.log('apply-done', `applied up to ${range.at(-1)!.id}`);
      return { runbook: this.runbook, steps: results, journalPath: this.config.journalPath, journal: journal.snapshot(), next: this.nextStep(journal) };
    } finally {
      await lock?.release();
    }
  }

  private applyRange(options: ApplyOptions): Step<K, A>[] {
    if (this.config.steps.length === 0) throw new UsageError(`the ${this.runbook} runbook has no steps in this build.`, `Known runbooks and their steps: see \`podid-migrate --help\`.`);
    const target = options.step ?? options.to;
    if (target) {
      const step = this.byId.get(target);
      if (!step) throw new UsageError(`step "${target}" is not in this build's runbook.`, `Known steps: ${this.config.steps.map((s) => s.id).join(', ')}`);
      if (options.step) return [step];
      return this.config.steps.slice(0, this.config.steps.indexOf(step) + 1);
    }
    return [...this.config.steps];
  }

  private assertSavedPlanMatches(saved: RunbookPlan): void {
    const savedRunbook = saved.runbook ?? DEFAULT_RUNBOOK;
    if (savedRunbook !== this.runbook) {
      throw new RunbookMismatchError(
        `the saved plan is a plan of the ${savedRunbook} runbook, not ${this.runbook}; nothing was changed.`,
        `Apply it with that runbook (\`${commandPrefix(savedRunbook)} apply --plan <file>\`), or save a plan of this one: ${this.cli} plan --out plan.json`,
      );
    }
    if (saved.cluster.kubeSystemUid !== this.config.cluster.kubeSystemUid) {
      throw new StalePlanError(
        `the saved plan was made for cluster ${saved.cluster.name} (kube-system uid ${saved.cluster.kubeSystemUid}), not ${this.config.cluster.name}.`,
        `Run \`${this.cli} plan --out plan.json\` against this cluster and apply that.`,
      );
    }
  }

  /** Plans every step in range before anything is written; collects every blocker at once. */
  private async preflight(range: Step<K, A>[], journal: Journal, inventory: LoadedInventory | undefined): Promise<void> {
    const blockers: BlockersFoundError['blockers'][number][] = [];
    let firm = true;
    let planInventory = inventory;
    for (const step of range) {
      if (journal.step(step.id).state === 'checked') continue;
      try {
        const plan = await this.planStep(step, journal, planInventory, (document) => {
          // In a dry run the later steps are planned against the document the inventory step would write.
          if (journal.inMemory) planInventory = { document, sha256: '' };
        });
        for (const b of plan.blockers) blockers.push({ stepId: step.id, ...b });
      } catch (error) {
        // Later steps may need an earlier step's result to plan; they are planned again when they run.
        if (firm) throw error;
      }
      firm = false;
    }
    if (blockers.length > 0) {
      if (!journal.inMemory) await journal.log('blockers', `${blockers.length} blocker(s); nothing changed`, undefined, blockers);
      throw new BlockersFoundError(
        `${blockers.length} blocker${blockers.length === 1 ? '' : 's'} found; nothing was changed.`,
        `Fix them (each says how) and run the command again. \`${this.cli} plan\` lists them.`,
        blockers,
      );
    }
  }

  private async applyStep(step: Step<K, A>, journal: Journal, savedPlan: RunbookPlan | undefined, dryInventory: { current?: LoadedInventory }): Promise<StepRunResult> {
    const dry = journal.inMemory;
    const started = Date.now();
    const entry = journal.step(step.id);
    if (entry.state === 'checked') {
      const result: StepRunResult = { stepId: step.id, title: step.title, outcome: 'skipped', summary: entry.summary ?? 'already checked', durationMs: 0, actions: 0, evidence: [] };
      this.config.events?.stepEnd?.(result);
      return result;
    }
    const resumed = entry.state === 'applying' || entry.state === 'failed';
    if (entry.state === 'rolled-back' && entry.actions.length > 0) await journal.archiveActions(step.id);
    this.config.events?.stepStart?.(step.id, step.title, 'apply');
    const inventoryNow = async () => (dry ? (dryInventory.current ?? (await this.inventory())) : this.inventory());

    let summary = entry.summary ?? '';
    let actions = 0;
    let wouldDo: string[] | undefined;
    if (entry.state !== 'applied') {
      if (resumed) await this.note(journal, 'resume', `${step.id} was left ${entry.state}: resolving its open intents, then re-planning against the live state`, step.id);
      const inventory = await inventoryNow();
      if (unsettledRecords(entry.actions).length > 0) {
        // Every write a crash left unconfirmed is resolved by re-reading its object before the re-plan sees the cluster.
        let lines: string[];
        try {
          lines = await this.call(step, journal, inventory, 'apply', (ctx) => reconcileIntents(ctx, this.config.executors));
        } catch (error) {
          throw await this.fail(journal, step, 'apply', error);
        }
        for (const line of lines) await this.note(journal, 'intent-resolved', `${step.id}: ${line}`, step.id);
      }
      const plan = await this.planStep(step, journal, inventory, (document) => {
        if (dry) dryInventory.current = { document, sha256: '' };
      });
      if (plan.blockers.length > 0) {
        const blockers = plan.blockers.map((b) => ({ stepId: step.id, ...b }));
        if (!dry) await journal.log('blockers', `${step.id}: ${blockers.length} blocker(s); step not started`, step.id, blockers);
        throw new BlockersFoundError(
          `step "${step.id}" has ${blockers.length} blocker${blockers.length === 1 ? '' : 's'}; nothing in it was changed.`,
          `Fix them (each says how) and run \`${this.cli} apply\` again; it continues with this step.`,
          blockers,
        );
      }
      const fingerprint = fingerprintStepPlan(plan);
      if (savedPlan) {
        const saved = savedPlan.steps.find((s) => s.stepId === step.id);
        if (!saved?.fingerprint || saved.fingerprint !== fingerprint) {
          throw new StalePlanError(
            `the saved plan for step "${step.id}" no longer matches the cluster (${saved?.fingerprint ? 'the actions differ' : `it was ${saved?.status ?? 'not planned'} when saved`}); nothing in this step was changed.`,
            `Review a fresh plan and apply that: ${this.cli} plan --out plan.json && ${this.cli} apply --plan plan.json`,
          );
        }
      }
      actions = plan.actions.length;
      if (dry) wouldDo = [...plan.actions.map((a) => `${a.op} ${a.target}: ${a.summary}`), ...plan.notes];
      await journal.updateStep(step.id, (e, at) => {
        e.state = 'applying';
        e.startedAt = at;
        e.attempts += 1;
        e.planFingerprint = fingerprint;
        e.failures = [];
        e.notes = plan.notes;
      });
      journal.event('step-applying', `${step.id}: ${actions} action(s)${dry ? ` (dry-run=${this.dryRun})` : ''}`, step.id);
      const fromRecord = journal.step(step.id).actions.length;
      try {
        const outcome = await this.call(step, journal, inventory, 'apply', async (ctx) => {
          await executeActions(ctx, plan, this.config.executors);
          assertDoneMatchesPlan(step.id, plan, ctx.journal.records(), fromRecord);
          return step.afterActions ? step.afterActions(ctx, plan) : { summary: defaultSummary(plan, dry) };
        });
        summary = outcome.summary;
      } catch (error) {
        throw await this.fail(journal, step, 'apply', error);
      }
      await journal.updateStep(step.id, (e) => {
        e.summary = summary;
      });
      await journal.setState(step.id, 'applied', `${step.id} applied: ${summary}`);
    }

    if (dry) {
      const result: StepRunResult = { stepId: step.id, title: step.title, outcome: 'dry-run', summary, durationMs: Date.now() - started, actions, evidence: [], resumed, ...(wouldDo ? { wouldDo } : {}) };
      this.config.events?.stepEnd?.(result);
      return result;
    }

    this.config.events?.stepStart?.(step.id, step.title, 'check');
    let check: CheckResult;
    const open = openIntents(journal.step(step.id).actions);
    if (open.length > 0) {
      // An unconfirmed write means the step's state is unknown: its check cannot pass until the intent is resolved.
      check = { ok: false, evidence: [], failures: open.map((r) => `${r.target}: action ${r.actionId} is still recorded as intent (its write is unconfirmed); run ${this.cli} apply --step ${step.id} to resolve it`) };
    } else {
      try {
        check = await this.call(step, journal, await this.inventory(), 'check', (ctx) => step.check(ctx));
      } catch (error) {
        throw await this.fail(journal, step, 'check', error);
      }
    }
    await journal.updateStep(step.id, (e) => {
      e.evidence = check.evidence;
      e.failures = check.failures;
    });
    if (!check.ok || check.failures.length > 0) {
      await journal.setState(step.id, 'failed', `${step.id} check failed: ${check.failures.join('; ')}`);
      throw new CheckFailedError(
        `step "${step.id}" was applied but its check failed:\n  ${check.failures.join('\n  ')}`,
        `The journal marks it failed (${this.config.journalPath}). Fix the cause and run \`${this.cli} apply --step ${step.id}\` to re-plan and check again, or \`${this.cli} rollback --step ${step.id}\`.`,
        step.id,
        check.failures,
      );
    }
    await journal.setState(step.id, 'checked', `${step.id} checked (${check.evidence.length} evidence line(s))`);
    const result: StepRunResult = { stepId: step.id, title: step.title, outcome: 'checked', summary, durationMs: Date.now() - started, actions, evidence: check.evidence, resumed };
    this.config.events?.stepEnd?.(result);
    return result;
  }

  /**
   * Rolls back steps newest first. For each step with recorded actions: state `rolling-back`,
   * open intents resolved through their executors, then every recorded action undone through its
   * executor (newest first, only what the journal recorded, from the first pre-state), then each
   * executor's `verifyUndo`; then `rolled-back`. A step with no recorded actions is marked
   * `rolled-back` without calling anything. If rollback or its verification fails the step
   * stays `rolling-back` (apply refuses to continue) and running the same rollback again resumes it.
   */
  async rollback(options: RollbackOptions): Promise<RunResult> {
    const chosen = [options.step, options.to, options.all ? 'all' : undefined].filter(Boolean);
    if (chosen.length !== 1) {
      throw new UsageError('rollback needs exactly one of --step ID, --to ID or --all.', `e.g. \`${this.cli} rollback --step drain\`, \`--to assign\` (assign and every later step), or \`--all\`.`);
    }
    if (this.dryRun !== 'none') throw new UsageError('rollback has no dry-run mode.', `Use \`${this.cli} status\` to see what the journal would undo.`);
    const target = options.step ?? options.to;
    if (target && !this.byId.has(target)) {
      throw new UsageError(`step "${target}" is not in this build's runbook.`, `Known steps: ${this.config.steps.map((s) => s.id).join(', ')}`);
    }
    const existing = await Journal.read(this.config.journalPath);
    if (!existing) {
      throw new PreconditionError(`there is nothing to roll back: no journal at ${this.config.journalPath}.`, 'This tool only undoes what its journal recorded. Use --journal if it lives elsewhere.');
    }
    const lock: LockHandle = await acquireLock(this.config.journalPath, 'rollback', this.cli);
    try {
      const journal = await this.openJournal();
      await journal.cleanTempFiles();
      const fromIndex = options.all ? 0 : this.config.steps.findIndex((s) => s.id === target);
      if (options.step) {
        for (const later of this.config.steps.slice(fromIndex + 1)) {
          if (needsRollback(journal.step(later.id))) {
            throw new PreconditionError(
              `step "${options.step}" cannot be rolled back while the later step "${later.id}" is ${journal.step(later.id).state}.`,
              `Roll back in reverse order: ${this.cli} rollback --to ${options.step}`,
            );
          }
        }
      }
      const order = (options.step ? [this.byId.get(options.step)!] : this.config.steps.slice(fromIndex)).slice().reverse();
      await journal.log('rollback-start', `rollback ${order.map((s) => s.id).join(', ')}`);
      const results: StepRunResult[] = [];
      for (const step of order) results.push(await this.rollbackStep(step, journal));
      await journal.log('rollback-done', `rolled back ${order.map((s) => s.id).join(', ')}`);
      return { runbook: this.runbook, steps: results, journalPath: this.config.journalPath, journal: journal.snapshot(), next: this.nextStep(journal) };
    } finally {
      await lock.release();
    }
  }

  private async rollbackStep(step: Step<K, A>, journal: Journal): Promise<StepRunResult> {
    const started = Date.now();
    const entry = journal.step(step.id);
    const toUndo = entry.actions.filter((a) => !a.rolledBack).length;
    if (!needsRollback(entry)) {
      const result: StepRunResult = { stepId: step.id, title: step.title, outcome: 'skipped', summary: `nothing to undo (${entry.state})`, durationMs: 0, actions: 0, evidence: [] };
      this.config.events?.stepEnd?.(result);
      return result;
    }
    if (entry.actions.length === 0) {
      await journal.updateStep(step.id, (e) => {
        e.summary = 'nothing recorded to undo';
      });
      await journal.setState(step.id, 'rolled-back', `${step.id}: no recorded actions, nothing to undo`);
      const result: StepRunResult = { stepId: step.id, title: step.title, outcome: 'rolled-back', summary: 'nothing recorded to undo', durationMs: Date.now() - started, actions: 0, evidence: [] };
      this.config.events?.stepEnd?.(result);
      return result;
    }
    this.config.events?.stepStart?.(step.id, step.title, 'rollback');
    await journal.setState(step.id, 'rolling-back', `${step.id}: undoing ${toUndo} recorded action(s)`);
    const inventory = await this.inventory();
    let summary: string;
    try {
      const lines = await this.call(step, journal, inventory, 'rollback', (ctx) => undoActions(ctx, this.config.executors));
      summary = lines.length ? lines.join('; ') : 'nothing recorded to undo';
    } catch (error) {
      throw await this.fail(journal, step, 'rollback', error);
    }
    let verdict: CheckResult;
    try {
      verdict = await this.call(step, journal, inventory, 'rollback', (ctx) => verifyUndone(ctx, this.config.executors));
    } catch (error) {
      throw await this.fail(journal, step, 'rollback', error);
    }
    const evidence = verdict.evidence;
    await journal.updateStep(step.id, (e) => {
      e.evidence = verdict.evidence;
      e.failures = verdict.failures;
    });
    if (!verdict.ok || verdict.failures.length > 0) {
      await journal.log('rollback-check-failed', `${step.id}: ${verdict.failures.join('; ')}`, step.id);
      throw new CheckFailedError(
        `step "${step.id}" was rolled back but its pre-state is not fully back:\n  ${verdict.failures.join('\n  ')}`,
        `The step stays rolling-back in the journal. Fix the cause and run \`${this.cli} rollback --step ${step.id}\` again.`,
        step.id,
        verdict.failures,
      );
    }
    await journal.updateStep(step.id, (e) => {
      for (const record of e.actions) record.rolledBack = true;
      e.summary = summary;
      e.failures = [];
    });
    await journal.setState(step.id, 'rolled-back', `${step.id} rolled back: ${summary}`);
    const result: StepRunResult = { stepId: step.id, title: step.title, outcome: 'rolled-back', summary, durationMs: Date.now() - started, actions: toUndo, evidence };
    this.config.events?.stepEnd?.(result);
    return result;
  }

  private nextStep(journal: Journal): StepId | undefined {
    return this.config.steps.find((s) => journal.step(s.id).state !== 'checked')?.id;
  }

  /** Plans one step; its `inventoryPreview`, if any, goes to `onPreview` and never into the returned plan (output, fingerprint). */
  private async planStep(step: Step<K, A>, journal: Journal, inventory: LoadedInventory | undefined, onPreview?: (document: unknown) => void): Promise<StepPlan> {
    const plan = await this.call(step, journal, inventory, 'plan', (ctx) => step.plan(ctx));
    if (plan.stepId !== step.id) throw new TypeError(`step ${step.id} returned a plan for ${plan.stepId}`);
    // Preflight (the CLI passes the Kubernetes permission check: each verb and resource the step
    // uses, asked with a SelfSubjectAccessReview): its blockers join the step's own.
    if (this.config.preflight) plan.blockers.push(...(await this.config.preflight(step.id, this.config.kube, inventory?.document)));
    const { inventoryPreview, ...rest } = plan;
    if (inventoryPreview !== undefined) onPreview?.(inventoryPreview);
    return rest;
  }

  /** Runs one step call with its own deadline, racing the abort so a step that ignores the signal still stops the run. */
  private async call<T>(step: Step<K, A>, journal: Journal, inventory: LoadedInventory | undefined, phase: 'plan' | 'apply' | 'check' | 'rollback', fn: (ctx: StepContext<K, A>) => Promise<T>): Promise<T> {
    const options = this.config.options ?? {};
    const timeoutMs = step.deadlineMs?.(options) ?? this.config.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new AbortedError(`step "${step.id}" ${phase} exceeded its deadline of ${formatDuration(timeoutMs)}.`, deadlineHint(step.id))), timeoutMs);
    timer.unref?.();
    const signal = this.config.signal ? AbortSignal.any([this.config.signal, timeout.signal]) : timeout.signal;
    const events = this.config.events;
    const scope = { signal, deadline };
    const ctx: StepContext<K, A> = {
      // Every request and wait of this call stops when the step is interrupted or out of time.
      kube: scopedGateway(this.config.kube, scope),
      azure: scopedGateway(this.config.azure, scope),
      journal: journal.forStep(step.id),
      inventory: inventory?.document,
      inventoryPath: this.config.inventoryPath,
      options,
      dryRun: this.dryRun,
      signal,
      deadline,
      progress: (message) => events?.stepProgress?.(step.id, redact(message)),
      log: {
        info: (m) => {
          events?.log?.('info', redact(m), step.id);
          journal.event('info', redact(m), step.id);
        },
        warn: (m) => {
          events?.log?.('warn', redact(m), step.id);
          journal.event('warn', redact(m), step.id);
        },
        debug: (m) => {
          events?.log?.('debug', redact(m), step.id);
          if (this.config.verbose) journal.event('debug', redact(m), step.id);
        },
      },
    };
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(toAbortError(signal.reason, step.id, phase));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => {});
    try {
      // Read snapshot wiring (see RunnerConfig.readScope): the phase decides whether reads are shared.
      const readScope = this.config.readScope;
      const work = readScope ? readScope(phase, () => fn(ctx)) : fn(ctx);
      return await Promise.race([work, aborted]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  /** Records a failed step call and returns the error to throw. */
  private async fail(journal: Journal, step: Step<K, A>, phase: 'apply' | 'check' | 'rollback', error: unknown): Promise<Error> {
    const message = redact(error instanceof Error ? error.message : String(error));
    const stack = this.config.verbose && error instanceof Error && error.stack ? redact(error.stack) : undefined;
    if (phase === 'rollback') {
      // Stays rolling-back: apply refuses to continue until the rollback is finished.
      await journal.updateStep(step.id, (e) => {
        e.failures = [message];
      });
      await journal.log('rollback-failed', `${step.id}: ${message}`, step.id, stack ? { stack } : undefined);
    } else {
      await journal.updateStep(step.id, (e) => {
        e.failures = [message];
      });
      await journal.setState(step.id, 'failed', `${step.id} ${phase} failed: ${message}`);
      if (stack) await journal.log('error', message, step.id, { stack });
    }
    if (error instanceof PodidError) return error;
    const next = phase === 'rollback' ? `${this.cli} rollback --step ${step.id}` : `${this.cli} apply --step ${step.id}`;
    return new StepFailedError(
      `step "${step.id}" ${phase} stopped: ${message}`,
      `The journal records what was done (${this.config.journalPath}). Running \`${next}\` re-plans against the live state and continues.`,
      step.id,
      { cause: error },
    );
  }

  private async note(journal: Journal, event: string, message: string, stepId: StepId): Promise<void> {
    this.config.events?.log?.('info', message, stepId);
    if (journal.inMemory) journal.event(event, message, stepId);
    else await journal.log(event, message, stepId);
  }
}

/** A gateway with a `scoped` method, bound to the call's signal and deadline; anything else as is. */
function scopedGateway<T>(gateway: T, scope: { signal: AbortSignal; deadline: number }): T {
  const scoped = (gateway as { scoped?: unknown } | null | undefined)?.scoped;
  return typeof scoped === 'function' ? (scoped.call(gateway, scope) as T) : gateway;
}

/** The summary of a step without `afterActions`: how many actions ran. */
function defaultSummary(plan: StepPlan, dry: boolean): string {
  if (!plan.actions.length) return 'nothing to change';
  return `${plan.actions.length} action(s) ${dry ? 'sent as a dry run' : 'done'}: ${plan.actions.map((a) => `${a.op} ${a.target}`).join(', ')}`;
}

function needsRollback(entry: Readonly<StepEntry>): boolean {
  if (entry.state === 'rolling-back') return true;
  if (entry.state === 'pending' || entry.state === 'rolled-back') return false;
  return true;
}

function toAbortError(reason: unknown, stepId: StepId, phase: string): Error {
  if (reason instanceof PodidError) return reason;
  return new AbortedError(
    `interrupted: step "${stepId}" ${phase} was stopped.`,
    `The journal records how far it got. Run the same command again to re-plan and continue, or \`${commandPrefix(runbookOf(stepId))} rollback --step ${stepId}\`.`,
  );
}

function deadlineHint(stepId: StepId): string {
  return `The journal records how far it got. Run \`${commandPrefix(runbookOf(stepId))} apply --step ${stepId}\` to re-plan and continue (a longer --step-timeout may help), or \`${commandPrefix(runbookOf(stepId))} rollback --step ${stepId}\`.`;
}
