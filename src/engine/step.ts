/**
 * The step contract: what every runbook step implements and what the engine hands it.
 *
 * The engine (runner, journal, lock) only knows these types; the steps (`src/steps/NN-name.ts`)
 * type the Kubernetes and Azure gateways themselves through the `K` / `A` parameters, so the
 * engine never imports an SDK.
 */

/**
 * Step ids in runbook order. They are stored in journals and saved plans: never rename or
 * reorder them (add new ones only with a journal schema bump).
 */
export const STEP_IDS = ['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup'] as const;

/** One of {@link STEP_IDS}. */
export type StepId = (typeof STEP_IDS)[number];

/** True when `value` is a known step id (for validating flags and journals). */
export function isStepId(value: unknown): value is StepId {
  return typeof value === 'string' && (STEP_IDS as readonly string[]).includes(value);
}

/** Position of a step in the runbook, 0-based. */
export function stepIndex(id: StepId): number {
  return STEP_IDS.indexOf(id);
}

/** Terraform-style operation: `+` create, `~` change in place, `-` delete. */
export type ActionOp = '+' | '~' | '-';

/**
 * One change a step intends to make. A plan is a list of these; `apply` performs exactly them.
 *
 * `id` is stable across re-plans of the same live state (e.g.
 * `vmss/aks-system-12345678-vmss/add-identities`): the journal keys intent/done records and
 * pre-states by it, and a saved plan is compared against a fresh one through it.
 */
export interface PlannedAction {
  /** Stable key, unique within the step, e.g. `vmss/aks-system-12345678-vmss/add-identities`. */
  id: string;
  op: ActionOp;
  /** Human-readable kind + name, e.g. `vmss aks-system-12345678-vmss`, `ds default/nmi`. */
  target: string;
  /** One line, e.g. `identities: + api-id, + worker-id (keeps 2 existing)`. */
  summary: string;
  /** Which API the write goes to (`none` for local-only actions such as writing a file). */
  api: 'kube' | 'arm' | 'none';
  /** Number of mutating API calls this action makes (the plan's "Azure writes" figure sums the `arm` ones). */
  writes: number;
  /**
   * JSON-serialisable: everything `apply` needs to do exactly this action. Part of the plan
   * fingerprint, so it must be deterministic (sorted lists, no timestamps). Never a token.
   */
  details?: unknown;
}

/** Something that must be fixed before a step may apply. Plans report every blocker at once. */
export interface Blocker {
  /** Stable machine code, e.g. `cross-namespace-binding`, `nmi-too-old`. */
  code: string;
  /** What it is about, e.g. `pod batch/report-7d9f`. */
  subject: string;
  /** What is wrong and why it matters. */
  message: string;
  /** What the operator can do about it (a command, a flag, an edit). */
  fix: string;
}

/** The result of a step's read-only `plan`. */
export interface StepPlan {
  stepId: StepId;
  actions: PlannedAction[];
  blockers: Blocker[];
  /** Context lines shown under the step (e.g. "12 test cases on 5 fresh nodes"). */
  notes: string[];
  /**
   * Only from a step whose apply writes the inventory: the document it would write. Within one
   * `plan` run the runner hands it to the later steps' plans as `ctx.inventory` (so a fresh
   * cluster shows the whole runbook before anything is applied). It is never given to `apply`,
   * and it is left out of plan output and fingerprints.
   */
  inventoryPreview?: unknown;
}

/** The result of a step's `check`: `ok` only when every failure list is empty. */
export interface CheckResult {
  ok: boolean;
  /** What was verified and how (e.g. "vmss aks-pay-…: 3/3 identities with client ids"). */
  evidence: string[];
  /** What did not hold, each naming the object and what to do. */
  failures: string[];
}

/** Progress and log sink a step writes to; the CLI decides how (and whether) to show it. */
export interface StepLog {
  info(message: string): void;
  debug(message: string): void;
  warn(message: string): void;
}

/** Dry-run mode: `client` makes no write call at all, `server` sends Kubernetes writes with `dryRun=All` and only prints Azure writes. */
export type DryRunMode = 'none' | 'client' | 'server';

/** An action's persisted intent/done pair as the journal keeps it. */
export interface ActionRecord {
  actionId: string;
  op: ActionOp;
  target: string;
  summary: string;
  api: 'kube' | 'arm' | 'none';
  /** `intent` written before the mutation; `done` after it returned; `failed` when it threw. */
  status: 'intent' | 'done' | 'failed';
  /** The state needed to undo this action, as captured before the (first) mutation. */
  preState?: unknown;
  /** What the mutation returned (JSON), when done. */
  result?: unknown;
  /** Error message when failed (never a stack with secrets, never a token). */
  error?: string;
  intentAt: string;
  doneAt?: string;
  /** True once the step's rollback has undone this action. */
  rolledBack?: boolean;
}

/** Read-only view of a step's journal entries (used to read what an earlier step recorded). */
export interface StepJournalView {
  /** Records of this step's actions, oldest first (one per intent, including repeated intents after a resume). */
  records(): ActionRecord[];
  /** The earliest recorded pre-state of an action id, if any. */
  firstPreState<T = unknown>(actionId: string): T | undefined;
  /** Data previously stored with `setData`. */
  getData<T = unknown>(key: string): T | undefined;
}

/**
 * The journal as one step sees it. All writes are persisted (atomically) before the promise resolves.
 * In dry-run mode the same interface is backed by memory only.
 */
export interface StepJournal extends StepJournalView {
  /**
   * Writes an intent record (with the pre-state needed to undo) before `mutate`, then a done
   * record (with the result). A crash between them leaves the intent: the step is resumed by
   * re-planning against live state, never by blind repetition. The first intent's preState for
   * a given action id is kept forever (rollback restores it), so a resumed step that captures a
   * pre-state of an already half-changed object cannot overwrite the true original.
   */
  runAction<T>(action: PlannedAction, preState: unknown, mutate: () => Promise<T>): Promise<T>;
  /** Free-form JSON the step wants persisted (e.g. test results, saved objects). Must never contain tokens. */
  setData(key: string, value: unknown): Promise<void>;
  /** Marks this step's record of `actionId` as undone (rollback calls it after restoring the pre-state). */
  markRolledBack(actionId: string): Promise<void>;
  /** What another step recorded, e.g. `cleanup` reading the replica count `mic-scale` saved. */
  of(stepId: StepId): StepJournalView;
}

/** Everything a step call receives. A fresh context is built for each call. */
export interface StepContext<K = unknown, A = unknown> {
  /** Kubernetes gateway (typed by the steps; opaque to the engine). Already dry-run aware. */
  kube: K;
  /** Azure gateway (typed by the steps; opaque to the engine). Already dry-run aware. */
  azure: A;
  journal: StepJournal;
  /** The parsed inventory document, or undefined before the `inventory` step has written one. */
  inventory: unknown;
  /** Where the inventory file lives (the `inventory` step writes it there). */
  inventoryPath: string;
  /** Step flags, e.g. `drainTimeoutMs`, `drainStrategy`, `deleteCrd`, `junitPath`. */
  options: Record<string, unknown>;
  dryRun: DryRunMode;
  /** Aborted on SIGINT or when the step's deadline passes; pass it to every wait and request. */
  signal: AbortSignal;
  /** Epoch ms by which the step call must be finished (also enforced through `signal`). */
  deadline: number;
  /** One-line status for the progress view ("patching vmss 3/5"). */
  progress(message: string): void;
  log: StepLog;
}

/** What `apply` and `rollback` return: one line for the summary view. */
export interface StepOutcome {
  summary: string;
}

/**
 * A runbook step. Contract:
 * - `plan` is read-only and reports every blocker at once.
 * - `apply` performs exactly the planned actions through `journal.runAction`, and is idempotent:
 *   after a crash the engine re-plans against live state and calls `apply` with the new plan.
 * - `check` is idempotent and read-only, returning evidence.
 * - `rollback` undoes only what `journal.records()` says this step did, in reverse order, using
 *   `firstPreState`; the engine then runs `check`-style verification through `verifyRollback`
 *   when the step provides it.
 */
export interface Step<K = unknown, A = unknown> {
  id: StepId;
  title: string;
  plan(ctx: StepContext<K, A>): Promise<StepPlan>;
  apply(ctx: StepContext<K, A>, plan: StepPlan): Promise<StepOutcome>;
  check(ctx: StepContext<K, A>): Promise<CheckResult>;
  rollback(ctx: StepContext<K, A>): Promise<StepOutcome>;
  /** Optional: proves the pre-state is back after `rollback` (evidence like `check`). */
  verifyRollback?(ctx: StepContext<K, A>): Promise<CheckResult>;
  /** Optional per-step deadline in ms (e.g. drain derives it from `--drain-timeout`); overrides the runner default. */
  deadlineMs?(options: Record<string, unknown>): number;
}

/** Ordered steps the runner is given (`src/steps/registry.ts` in production, fakes in tests). */
export type StepRegistry<K = unknown, A = unknown> = ReadonlyArray<Step<K, A>>;
