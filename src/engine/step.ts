/**
 * The step contract: what every runbook step implements and what the engine hands it.
 *
 * The engine (runner, journal, lock) only knows these types; the steps (`src/steps/NN-name.ts`)
 * type the Kubernetes and Azure gateways themselves through the `K` / `A` parameters, so the
 * engine never imports an SDK.
 */

/**
 * The runbooks this engine runs. Each has its own ordered step ids, its own registry
 * (`src/steps/registry.ts`) and its own journal per cluster. `managed-mode` (standard to
 * managed mode) is the default; `workload-identity` moves off pod identity to Microsoft Entra
 * Workload ID. Stored in journals and saved plans: never rename.
 */
export const RUNBOOK_IDS = ['managed-mode', 'workload-identity'] as const;

/** One of {@link RUNBOOK_IDS}. */
export type RunbookId = (typeof RUNBOOK_IDS)[number];

/** The runbook a command runs when `--runbook` is not given (and the runbook of journals written before runbooks existed). */
export const DEFAULT_RUNBOOK: RunbookId = 'managed-mode';

/** True when `value` is a known runbook id. */
export function isRunbookId(value: unknown): value is RunbookId {
  return typeof value === 'string' && (RUNBOOK_IDS as readonly string[]).includes(value);
}

/**
 * Step ids of the `managed-mode` runbook in order. They are stored in journals and saved plans:
 * never rename or reorder them (add new ones only with a journal schema bump).
 */
export const STEP_IDS = ['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup'] as const;

/** Step ids of the `workload-identity` runbook in order (same rules as {@link STEP_IDS}). */
export const WORKLOAD_IDENTITY_STEP_IDS = ['wi-preflight', 'wi-enable', 'wi-federate', 'wi-serviceaccounts', 'wi-workloads', 'wi-test', 'wi-remove-pod-identity'] as const;

/** A step of the `managed-mode` runbook. */
export type ManagedModeStepId = (typeof STEP_IDS)[number];

/** A step of the `workload-identity` runbook. */
export type WorkloadIdentityStepId = (typeof WORKLOAD_IDENTITY_STEP_IDS)[number];

/** A step of any runbook (ids are unique across runbooks). */
export type StepId = ManagedModeStepId | WorkloadIdentityStepId;

const RUNBOOK_STEP_IDS: Readonly<Record<RunbookId, readonly StepId[]>> = {
  'managed-mode': STEP_IDS,
  'workload-identity': WORKLOAD_IDENTITY_STEP_IDS,
};

/** The step ids of `runbook`, in order. */
export function stepIdsOf(runbook: RunbookId): readonly StepId[] {
  return RUNBOOK_STEP_IDS[runbook];
}

/** The runbook a step id belongs to. */
export function runbookOf(id: StepId): RunbookId {
  return (WORKLOAD_IDENTITY_STEP_IDS as readonly string[]).includes(id) ? 'workload-identity' : 'managed-mode';
}

/**
 * True when `value` is a step id of `runbook` (of any runbook when `runbook` is omitted), for
 * validating flags and journals.
 */
export function isStepId(value: unknown, runbook?: RunbookId): value is StepId {
  if (typeof value !== 'string') return false;
  const ids: readonly string[] = runbook ? RUNBOOK_STEP_IDS[runbook] : [...STEP_IDS, ...WORKLOAD_IDENTITY_STEP_IDS];
  return ids.includes(value);
}

/** Position of a step in its own runbook, 0-based. */
export function stepIndex(id: StepId): number {
  return RUNBOOK_STEP_IDS[runbookOf(id)].indexOf(id);
}

/**
 * How hints spell the command for `runbook`: `podid-migrate` for the default runbook,
 * `podid-migrate --runbook <id>` for another (so a copied command works as printed).
 */
export function commandPrefix(runbook: RunbookId): string {
  return runbook === DEFAULT_RUNBOOK ? 'podid-migrate' : `podid-migrate --runbook ${runbook}`;
}

/** Terraform-style operation: `+` create, `~` change in place, `-` delete. */
export type ActionOp = '+' | '~' | '-';

/** Which API an action's main write goes to (`none` for local-only actions such as writing a file). */
export type ActionApi = 'kube' | 'arm' | 'none';

/**
 * Mutating API calls, by API. On an action: exactly what a clean run of it sends, including the
 * writes made on the way (an uncordon after a reimage, a leader-lease hand-over during a
 * rollout). On a step: its actions plus what its `check` sends (probe pods).
 */
export interface WriteCounts {
  kube: number;
  arm: number;
}

/**
 * One change a step intends to make: typed, executable data. A plan is a list of these; the
 * runner executes exactly them, in order, through the executor registered for `kind`.
 *
 * `id` is stable across re-plans of the same live state (e.g.
 * `vmss/aks-system-12345678-vmss/add-identities`): the journal keys intent/done records and
 * pre-states by it, and a saved plan is compared against a fresh one through it.
 *
 * `Kind`/`D` let a package of executors declare a discriminated union of its actions
 * (`src/steps/executors/index.ts`: `MigrationAction`); the engine itself treats `details` as opaque JSON.
 */
export interface PlannedAction<Kind extends string = string, D = unknown> {
  /** Stable key, unique within the step, e.g. `vmss/aks-system-12345678-vmss/add-identities`. */
  id: string;
  /** Which executor runs it, e.g. `vmss-add-identities`, `delete-object`. Stored in the journal. */
  kind: Kind;
  op: ActionOp;
  /** Human-readable kind + name, e.g. `vmss aks-system-12345678-vmss`, `ds default/nmi`. */
  target: string;
  /** One line, e.g. `identities: + api-id, + worker-id (keeps 2 existing)`. */
  summary: string;
  /** Which API the main write goes to. */
  api: ActionApi;
  /** Every mutating call a clean run of this action sends, by API ({@link WriteCounts}). */
  writes: WriteCounts;
  /**
   * Only when some of its writes depend on a race outside this tool (how many MIC leaders a
   * rollout replaces while they hold the lease): the most a clean run may send. `writes` is then
   * the least, and what the race adds is explained in `summary`.
   */
  writesUpTo?: WriteCounts;
  /**
   * Consecutive actions with the same group run concurrently (bounded by the runner); actions
   * without one run alone, in plan order. E.g. one PATCH per scale set, four at a time.
   */
  parallelGroup?: string;
  /**
   * How many actions of its `parallelGroup` may run at once (read from the group's first
   * action; default 4). E.g. one drain per pool, every pool at once (`--parallel-pools`).
   */
  parallelLimit?: number;
  /**
   * Within a `parallelGroup`: actions with the same key run one after another, in plan order
   * (the chain takes one of the group's slots), while different keys run concurrently. E.g. one
   * federated credential write per action, serialized per identity (Entra refuses concurrent
   * writes to one identity), parallel across identities. A chain stops at its first failure.
   */
  serialKey?: string;
  /**
   * JSON-serialisable: everything the executor needs to do exactly this action. Part of the plan
   * fingerprint and of the journal record, so it must be deterministic (sorted lists, no
   * timestamps). Never a token.
   */
  details: D;
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
   * Writes the step's `check` sends on a clean run (probe pods created and deleted). The plan
   * output adds them to the actions' writes as the step's `writes`.
   */
  checkWrites?: WriteCounts;
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
  /** The executor kind (absent in records written before actions were typed). */
  kind?: string;
  /** The action's details as executed (what resume and rollback hand back to the executor). */
  details?: unknown;
  op: ActionOp;
  target: string;
  summary: string;
  api: ActionApi;
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

/** The fields of an action the journal records (a {@link PlannedAction}, or a hand-made one in tests). */
export interface JournalAction {
  id: string;
  kind?: string;
  op: ActionOp;
  target: string;
  summary: string;
  api: ActionApi;
  writes?: WriteCounts | number;
  details?: unknown;
}

/**
 * The journal as one step sees it. All writes are persisted (atomically) before the promise resolves.
 * In dry-run mode the same interface is backed by memory only.
 */
export interface StepJournal extends StepJournalView {
  /**
   * Writes an intent record (with the action's kind and details, and the pre-state needed to
   * undo) before `mutate`, then a done record (with the result). A crash between them leaves
   * the intent, which the runner resolves through the action's executor before anything else
   * (see `docs/ARCHITECTURE.md`, "Resume"). The first intent's preState for a given action id is
   * kept forever (rollback restores it), so a resumed step that captures a pre-state of an
   * already half-changed object cannot overwrite the true original.
   */
  runAction<T>(action: JournalAction, preState: unknown, mutate: () => Promise<T>): Promise<T>;
  /**
   * Settles the newest record of `actionId` whose outcome is unknown (left in `intent` by a
   * crash, or `failed` with an error that may have come after the write): `done` with the result
   * (its write took effect, found by re-reading the object), or `failed` with the reason (it did
   * not; the re-plan plans it again). No-op when the newest record is done or rolled back.
   */
  settleRecord(actionId: string, outcome: { done: true; result?: unknown } | { done: false; error: string }): Promise<void>;
  /** Free-form JSON the step wants persisted (e.g. test results, saved objects). Must never contain tokens. */
  setData(key: string, value: unknown): Promise<void>;
  /** Marks this step's record of `actionId` as undone (rollback calls it after restoring the pre-state). */
  markRolledBack(actionId: string): Promise<void>;
  /** What another step recorded, e.g. `cleanup` reading the replica count `mic-scale` saved. */
  of(stepId: StepId): StepJournalView;
}

/** Everything a step or executor call receives. A fresh context is built for each call. */
export interface StepContext<K = unknown, A = unknown> {
  /**
   * Kubernetes gateway (typed by the steps; opaque to the engine). Already dry-run aware, and
   * (when it has a `scoped` method) bound to this call's signal and deadline by the runner.
   */
  kube: K;
  /** Azure gateway (typed by the steps; opaque to the engine). Dry-run aware and scoped like `kube`. */
  azure: A;
  journal: StepJournal;
  /**
   * The parsed inventory document: the file, or in a dry run (and within one `plan`) the document
   * the `inventory` step would write. Undefined before there is one.
   */
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

/** What an apply or rollback of a step returns: one line for the summary view. */
export interface StepOutcome {
  summary: string;
}

/** What an executor call is handed about one action. */
export interface ActionInput<D = unknown, P = unknown> {
  action: PlannedAction<string, D>;
  /** The pre-state captured before the first intent of this action id (kept forever), if any. */
  firstPreState: P | undefined;
  /** Every record of this action id in the current apply cycle, oldest first. */
  history: ActionRecord[];
}

/** How an intent left by a crash turned out, found by re-reading the object. */
export type Reconciled<R = unknown> =
  /** The write took effect (and whatever the action awaits is finished now): recorded as done. */
  | { applied: true; result: R }
  /** It did not: the intent is recorded as failed with `reason` and the re-plan plans the action again. */
  | { applied: false; reason: string };

/**
 * Executes one kind of {@link PlannedAction}. Executors are shared by every step (and by any
 * other command that declares actions); the runner is the only caller.
 *
 * - `capture` reads the pre-state undo needs (read-only). It runs before every intent, but the
 *   journal keeps only the first one per action id.
 * - `do` makes exactly the writes the action declares (`writes`), then awaits what makes the
 *   action complete (a rollout, a node back Ready). Idempotent: a write already in effect is not
 *   repeated. In a dry run the gateways hold back or dry-run the writes; `do` skips waits on
 *   effects a dry run does not cause.
 * - `reconcile` resolves an intent left by a crash: re-reads the object to tell whether the
 *   write took effect (then finishes the wait and returns the result) or not.
 * - `undo` restores `firstPreState` (only what the action changed; never an operator's later
 *   edit) and returns one line; `verifyUndo` proves it with evidence.
 */
export interface ActionExecutor<K = unknown, A = unknown, D = any, P = any, R = any> {
  kind: string;
  capture(ctx: StepContext<K, A>, action: PlannedAction<string, D>): Promise<P | undefined>;
  do(ctx: StepContext<K, A>, input: ActionInput<D, P>): Promise<R>;
  reconcile(ctx: StepContext<K, A>, input: ActionInput<D, P>): Promise<Reconciled<R>>;
  undo(ctx: StepContext<K, A>, input: ActionInput<D, P> & { result: R | undefined }): Promise<string>;
  verifyUndo(ctx: StepContext<K, A>, input: ActionInput<D, P> & { result: R | undefined }): Promise<CheckResult>;
}

/** Executors by kind. */
export type ExecutorRegistry<K = unknown, A = unknown> = Readonly<Record<string, ActionExecutor<K, A>>>;

/**
 * A runbook step: a migration in the golang-migrate sense, but declarative. Contract:
 * - `plan` is read-only, builds the actions from live state and reports every blocker at once.
 *   The runner executes exactly `plan.actions`, in order, through the executors, journals
 *   intent/done for each and refuses a run whose done records differ from the plan.
 * - `afterActions` (optional) runs once every planned action is done: it records what later
 *   steps read (`journal.setData`) and returns the summary line. It makes no API write.
 * - `check` is idempotent and read-only towards the migration's objects (it may run probe pods,
 *   which it declares in `plan.checkWrites`), returning evidence.
 * - Rollback is the runner's: newest done action first, its executor's `undo`, then `verifyUndo`.
 */
export interface Step<K = unknown, A = unknown> {
  id: StepId;
  title: string;
  plan(ctx: StepContext<K, A>): Promise<StepPlan>;
  afterActions?(ctx: StepContext<K, A>, plan: StepPlan): Promise<StepOutcome>;
  check(ctx: StepContext<K, A>): Promise<CheckResult>;
  /** Optional per-step deadline in ms (e.g. drain derives it from `--drain-timeout`); overrides the runner default. */
  deadlineMs?(options: Record<string, unknown>): number;
}

/** Ordered steps the runner is given (`src/steps/registry.ts` in production, fakes in tests). */
export type StepRegistry<K = unknown, A = unknown> = ReadonlyArray<Step<K, A>>;
