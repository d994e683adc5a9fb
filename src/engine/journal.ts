/**
 * The journal: one JSON file per cluster recording what this tool did, so a run can stop at any
 * point (crash, Ctrl-C, lost laptop) and be resumed or undone later.
 *
 * Location: `.podid-migrate/<cluster-name>.json` under the working directory for the default
 * runbook, `.podid-migrate/<cluster-name>.<runbook>.json` for another, unless `--journal` says
 * otherwise; the directory is created with mode 0700 and the files with 0600. A journal records
 * its runbook (`runbook`, absent in journals written before runbooks existed: `managed-mode`)
 * and holds exactly that runbook's steps; a command of another runbook refuses it.
 *
 * Two files make one journal:
 * - the **snapshot** `<journal>` (one JSON document), replaced atomically ({@link writeFileAtomic})
 *   at step boundaries: state changes, inventory, run events, `save()`;
 * - the **action log** `<journal>.wal` ({@link actionLogPathFor}): one JSON line per action
 *   intent, done/failed, `setData` and `markRolledBack`, appended and fsynced before the call
 *   resolves, so recording one action costs the same whatever the journal's size. Every reader
 *   ({@link Journal.read}, {@link Journal.open}) replays it over the snapshot; each snapshot write
 *   folds it in (compaction) and resets it to a header line.
 *
 * A torn last line (a writer killed mid-append) is dropped: the call it belonged to never
 * returned. Anything else that cannot be read (bad JSON, an unknown version, a gap in the
 * sequence, a log of another journal) is refused with {@link JournalCorruptError} and neither
 * file is overwritten. Values that look like bearer tokens are refused ({@link SecretLeakError}).
 */
import { existsSync, promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeStaleTempFiles, writeFileAtomic, type AtomicWriteHooks } from './atomic-file.ts';
import { ClusterMismatchError, JournalCorruptError, RunbookMismatchError, SecretLeakError } from './errors.ts';
import { journalProblems } from './inputs.ts';
import { redactDeep, redactText, tokenPaths } from './redaction.ts';
import {
  DEFAULT_RUNBOOK,
  commandPrefix,
  isRunbookId,
  isStepId,
  stepIdsOf,
  type ActionRecord,
  type RunbookId,
  type JournalAction,
  type StepId,
  type StepJournal,
  type StepJournalView,
} from './step.ts';

/** The journal schema version this code reads and writes. */
export const JOURNAL_SCHEMA_VERSION = 1;
const JOURNAL_KIND = 'podid-migrate/journal';
/** Oldest events are dropped past this many, so a long-lived journal stays small. */
const MAX_EVENTS = 5000;

/** Which cluster a journal belongs to. `kubeSystemUid` is the identity that matters; the rest is for humans and ARM. */
export interface ClusterIdentity {
  /** Short name used in messages and the default journal path (the AKS resource name). */
  name: string;
  /** API server URL from the kubeconfig. */
  apiServer: string;
  /** UID of the `kube-system` namespace: unique per cluster, survives API server URL changes. */
  kubeSystemUid: string;
  subscriptionId: string;
  /** `/subscriptions/…/resourceGroups/…/providers/Microsoft.ContainerService/managedClusters/<name>` */
  aksResourceId: string;
}

/** Step lifecycle. `applying` or `rolling-back` left behind means the run stopped inside that phase. */
export type StepState = 'pending' | 'applying' | 'applied' | 'checked' | 'failed' | 'rolling-back' | 'rolled-back';
export const STEP_STATES: readonly StepState[] = ['pending', 'applying', 'applied', 'checked', 'failed', 'rolling-back', 'rolled-back'];

/** Everything the journal keeps about one step. Timestamps are ISO-8601 UTC. */
export interface StepEntry {
  id: StepId;
  state: StepState;
  updatedAt?: string;
  startedAt?: string;
  appliedAt?: string;
  checkedAt?: string;
  failedAt?: string;
  rolledBackAt?: string;
  /** How many times `apply` was started for this step (resumes included). */
  attempts: number;
  /** One line from apply/rollback. */
  summary?: string;
  notes: string[];
  /** Evidence from the last check (or rollback verification). */
  evidence: string[];
  /** Failures from the last check, or the error that stopped the step. */
  failures: string[];
  /** Fingerprint of the plan the last apply executed. */
  planFingerprint?: string;
  /** Intent/done records of the current apply cycle, oldest first. */
  actions: ActionRecord[];
  /** Records of earlier cycles that were rolled back (kept for history, not used for undo). */
  archivedActions: ActionRecord[];
  /** Free-form JSON the step persisted (`setData`). */
  data: Record<string, unknown>;
}

/** One line of the journal's history. */
export interface JournalEvent {
  at: string;
  /** e.g. `apply-start`, `step-applying`, `action-intent`, `action-done`, `check-failed`, `rollback-done`, `error`. */
  event: string;
  stepId?: StepId;
  message: string;
  /** Extra JSON (with `--verbose`, an error's stack). */
  detail?: unknown;
}

/**
 * Records kept beside the steps by a command that changes the cluster outside the runbook
 * (`drift --fix` under `extensions["drift-fix"]`), with the same intent/done model, so the
 * steps' own records are never touched by it.
 */
export interface JournalExtension {
  actions: ActionRecord[];
  archivedActions: ActionRecord[];
  data: Record<string, unknown>;
  updatedAt?: string;
}

/** The journal as an extension sees it: the step journal's action model, keyed by the extension. */
export interface ExtensionJournal {
  records(): ActionRecord[];
  firstPreState<T = unknown>(actionId: string): T | undefined;
  getData<T = unknown>(key: string): T | undefined;
  setData(key: string, value: unknown): Promise<void>;
  /** Intent (with the first pre-state kept) before `mutate`, done (with its result) after: see {@link StepJournal.runAction}. */
  runAction<T>(action: JournalAction, preState: unknown, mutate: () => Promise<T>): Promise<T>;
  markRolledBack(actionId: string): Promise<void>;
  /** Moves the current records to `archivedActions` (after a completed rollback). */
  archive(): Promise<void>;
  /** Appends an event to the journal's log and persists it. */
  log(event: string, message: string): Promise<void>;
}

/** The file's content. */
export interface JournalDocument {
  kind: typeof JOURNAL_KIND;
  schemaVersion: typeof JOURNAL_SCHEMA_VERSION;
  createdAt: string;
  updatedAt: string;
  cluster: ClusterIdentity;
  /** The runbook whose steps this journal records (absent in journals written before runbooks existed: `managed-mode`). */
  runbook?: RunbookId;
  /** The inventory the steps were planned from. */
  inventory?: { path: string; sha256: string };
  /** One entry per step id of the journal's runbook ({@link stepIdsOf}), and no other. */
  steps: Record<StepId, StepEntry>;
  /** Extension records by key (e.g. `drift-fix`); absent until an extension writes. */
  extensions?: Record<string, JournalExtension>;
  events: JournalEvent[];
  /**
   * Sequence number of the last action log entry this snapshot holds (absent: none yet). The
   * action log's entries after it are replayed on top (see {@link actionLogPathFor}).
   */
  logSeq?: number;
}

export { defaultJournalPath, safeFileName } from './journal-paths.ts';

/** The runbook a journal document records ({@link DEFAULT_RUNBOOK} when it predates runbooks). */
export function journalRunbook(doc: Pick<JournalDocument, 'runbook'>): RunbookId {
  return doc.runbook ?? DEFAULT_RUNBOOK;
}

/**
 * Refuses a journal of another runbook than `runbook`: its steps are not this runbook's, and
 * writing them would mix two migrations in one file.
 * @throws RunbookMismatchError
 */
export function assertJournalRunbook(doc: Pick<JournalDocument, 'runbook'>, runbook: RunbookId, path: string): void {
  const found = journalRunbook(doc);
  if (found === runbook) return;
  throw new RunbookMismatchError(
    `journal ${path} records the ${found} runbook, not ${runbook}; it was not changed.`,
    `Run that runbook's commands on it (\`${commandPrefix(found)} status --journal ${path}\`), or give the ${runbook} runbook its own journal: leave --journal out (the default is per cluster and runbook) or point it at another file.`,
  );
}

/** Matches a compact JWS/JWT (`eyJ<header>.<payload>.<signature>`) anywhere in a string. */
const JWT_PATTERN = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/;

/** True when `value` contains something shaped like a bearer token. */
export function looksLikeToken(value: string): boolean {
  return JWT_PATTERN.test(value);
}

/**
 * Throws {@link SecretLeakError} naming the JSON path (never the value) of the first string
 * (or object key) in `value` that looks like a token.
 */
export function assertNoTokens(value: unknown, path = '$'): void {
  if (typeof value === 'string') {
    if (looksLikeToken(value)) {
      throw new SecretLeakError(
        `refusing to write a value that looks like an access token (JWT) at ${path}.`,
        'Tokens are never stored. This is a bug in the step that produced the value: report it; the journal was not changed.',
      );
    }
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => assertNoTokens(item, `${path}[${i}]`));
    return;
  }
  if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      assertNoTokens(key, `${path} (key)`);
      assertNoTokens(item, `${path}.${key}`);
    }
  }
}

function emptyStep(id: StepId): StepEntry {
  return { id, state: 'pending', attempts: 0, notes: [], evidence: [], failures: [], actions: [], archivedActions: [], data: {} };
}

/** Where the action log of the journal at `path` lives: `<journal>.wal`, beside it. */
export function actionLogPathFor(path: string): string {
  return `${path}.wal`;
}

const LOG_KIND = 'podid-migrate/journal-log';
/** The action log format version this code reads and writes. */
export const ACTION_LOG_SCHEMA_VERSION = 1;

/** First line of the action log: which snapshot it extends. */
interface LogHeader {
  kind: typeof LOG_KIND;
  schemaVersion: typeof ACTION_LOG_SCHEMA_VERSION;
  /** Ties the log to its snapshot: the snapshot's `createdAt` and the cluster's kube-system uid. */
  journal: string;
  /** The snapshot's `logSeq` when this log was started: its first entry is `baseSeq + 1`. */
  baseSeq: number;
}

/** One change, as appended to the action log. `events` are the journal events recorded with it. */
type LogOp =
  | { op: 'intent'; step: StepId; record: ActionRecord }
  | { op: 'done'; step: StepId; index: number; status: 'done' | 'failed'; doneAt: string; result?: unknown; error?: string }
  | { op: 'data'; step: StepId; key: string; value: unknown }
  | { op: 'rolled-back'; step: StepId; actionId: string };
type LogEntry = LogOp & { seq: number; at: string; events?: JournalEvent[] };

function logIdentity(doc: JournalDocument): string {
  return `${doc.createdAt}|${doc.cluster.kubeSystemUid}`;
}

function pushEvent(doc: JournalDocument, event: JournalEvent): void {
  doc.events.push(event);
  if (doc.events.length > MAX_EVENTS) doc.events.splice(0, doc.events.length - MAX_EVENTS);
}

/** Applies one logged change to the document (on write and, identically, on replay). */
function applyOp(doc: JournalDocument, entry: LogEntry): void {
  const step = doc.steps[entry.step];
  switch (entry.op) {
    case 'intent':
      step.actions.push(entry.record);
      break;
    case 'done': {
      const record = step.actions[entry.index];
      record.status = entry.status;
      record.doneAt = entry.doneAt;
      if (entry.result !== undefined) record.result = entry.result;
      if (entry.error !== undefined) record.error = entry.error;
      break;
    }
    case 'data':
      step.data[entry.key] = entry.value;
      step.updatedAt = entry.at;
      break;
    case 'rolled-back':
      for (const record of step.actions) if (record.actionId === entry.actionId) record.rolledBack = true;
      step.updatedAt = entry.at;
      break;
  }
  for (const event of entry.events ?? []) pushEvent(doc, event);
  doc.updatedAt = entry.at;
}

/** What replaying an action log found. */
interface Replay {
  /** Last sequence number applied (the snapshot's when the log adds nothing). */
  seq: number;
  /** `baseSeq` of the log file, or undefined when there is none. */
  baseSeq?: number;
  /** Bytes of the log up to its last complete line (a torn tail past it is dropped). */
  validBytes: number;
}

/** Thrown by {@link replayLog} when the log was reset (compacted) after the snapshot was read: read both again. */
class CompactedMeanwhile extends Error {}

/**
 * Replays the action log `text` (of file `logPath`) over `doc`. Entries up to `doc.logSeq` are
 * already in the snapshot and skipped. A last line without its newline is a torn append and is
 * ignored; any other unreadable line is refused.
 * @throws JournalCorruptError, CompactedMeanwhile
 */
export function replayLog(doc: JournalDocument, text: string, logPath: string): Replay {
  const snapshotSeq = doc.logSeq ?? 0;
  const keep = `Neither file was changed. Restore the journal from a backup, or move ${logPath} and its snapshot aside and start a new journal with --journal <new path> (the old files still record what was done).`;
  const end = text.lastIndexOf('\n') + 1;
  const lines = text.slice(0, end).split('\n').slice(0, -1);
  if (lines.length === 0) return { seq: snapshotSeq, validBytes: end };
  const fail = (line: number, what: string): never => {
    throw new JournalCorruptError(`journal action log ${logPath} line ${line}: ${what}.`, keep, logPath);
  };
  const parse = (line: number): Record<string, unknown> => {
    try {
      const value = JSON.parse(lines[line - 1]) as unknown;
      if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
    } catch {
      // reported below
    }
    return fail(line, 'is not a JSON object');
  };
  const header = parse(1);
  if (header.kind !== LOG_KIND) fail(1, `"kind" is ${JSON.stringify(header.kind)}, expected "${LOG_KIND}"`);
  if (header.schemaVersion !== ACTION_LOG_SCHEMA_VERSION) {
    const newer = typeof header.schemaVersion === 'number' && header.schemaVersion > ACTION_LOG_SCHEMA_VERSION;
    throw new JournalCorruptError(
      `journal action log ${logPath} has schemaVersion ${JSON.stringify(header.schemaVersion)}; this podid-migrate reads version ${ACTION_LOG_SCHEMA_VERSION} only.`,
      newer ? 'It was written by a newer podid-migrate: run that version (the files were not changed).' : keep,
      logPath,
    );
  }
  if (header.journal !== logIdentity(doc)) fail(1, `it belongs to another journal (${JSON.stringify(header.journal)}), not the snapshot beside it (${logIdentity(doc)})`);
  const baseSeq = header.baseSeq;
  if (typeof baseSeq !== 'number' || !Number.isInteger(baseSeq) || baseSeq < 0) fail(1, '"baseSeq" is not a non-negative integer');
  // The writer folded the log into a newer snapshot after we read ours.
  if ((baseSeq as number) > snapshotSeq) throw new CompactedMeanwhile();
  let seq = snapshotSeq;
  for (let line = 2; line <= lines.length; line++) {
    const entry = parse(line) as unknown as LogEntry;
    if (typeof entry.seq !== 'number' || typeof entry.at !== 'string') fail(line, '"seq" or "at" is missing');
    if (entry.seq <= snapshotSeq) continue;
    if (entry.seq !== seq + 1) fail(line, `sequence number ${entry.seq} follows ${seq}: entries are missing`);
    if (!isStepId(entry.step, journalRunbook(doc))) fail(line, `unknown step ${JSON.stringify(entry.step)}`);
    const actions = doc.steps[entry.step].actions;
    if (entry.op === 'intent') {
      const r = entry.record as Partial<ActionRecord> | undefined;
      if (!r || typeof r.actionId !== 'string' || r.status !== 'intent') fail(line, 'the intent has no action record');
    } else if (entry.op === 'done') {
      if (!Number.isInteger(entry.index) || !actions[entry.index]) fail(line, `it completes action #${entry.index}, which step "${entry.step}" does not have`);
      if (entry.status !== 'done' && entry.status !== 'failed') fail(line, `unknown action status ${JSON.stringify(entry.status)}`);
    } else if (entry.op === 'data') {
      if (typeof entry.key !== 'string') fail(line, '"key" is missing');
    } else if (entry.op === 'rolled-back') {
      if (typeof entry.actionId !== 'string') fail(line, '"actionId" is missing');
    } else {
      fail(line, `unknown operation ${JSON.stringify((entry as { op?: unknown }).op)}`);
    }
    if (entry.events !== undefined && !Array.isArray(entry.events)) fail(line, '"events" is not a list');
    applyOp(doc, entry);
    seq = entry.seq;
  }
  return { seq, baseSeq: baseSeq as number, validBytes: end };
}

async function readText(path: string, what: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new JournalCorruptError(
      `cannot read ${what} ${path}: ${(error as Error).message}.`,
      'Check the file permissions (the journal is mode 0600, readable by its owner only).',
      path,
    );
  }
}

/** Reads the snapshot and replays its action log; retries when a writer compacted in between. */
async function load(path: string): Promise<{ doc: JournalDocument; replay: Replay } | undefined> {
  const logPath = actionLogPathFor(path);
  for (let attempt = 0; ; attempt++) {
    const text = await readText(path, 'journal');
    if (text === undefined) return undefined;
    const doc = parseJournal(text, path);
    const log = await readText(logPath, 'journal action log');
    if (log === undefined) return { doc, replay: { seq: doc.logSeq ?? 0, validBytes: 0 } };
    try {
      return { doc, replay: replayLog(doc, log, logPath) };
    } catch (error) {
      if (error instanceof CompactedMeanwhile && attempt < 20) continue;
      if (error instanceof CompactedMeanwhile) {
        throw new JournalCorruptError(`journal action log ${logPath} starts after its snapshot ${path}: entries are missing.`, 'Neither file was changed. Restore the journal from a backup, or start a new one with --journal <new path>.', logPath);
      }
      throw error;
    }
  }
}

/** Options for opening a journal. */
export interface JournalOptions {
  /** Write nothing (dry-run): every change stays in memory. */
  inMemory?: boolean;
  /** Clock for timestamps (tests). */
  now?: () => Date;
  /** Test seam passed to the atomic writer. */
  writeHooks?: AtomicWriteHooks;
  /** Test seam: called after an action log line is written and fsynced, before the call continues. */
  afterAppend?: (entry: { seq: number; op: string; step: StepId }) => Promise<void> | void;
  /** The runbook the journal records (default {@link DEFAULT_RUNBOOK}): a new journal gets its steps, an existing one of another runbook is refused. */
  runbook?: RunbookId;
}

/**
 * A loaded journal. Mutating methods persist before they resolve (unless in memory).
 * Not safe for concurrent writers: hold the lock ({@link acquireLock}) while writing.
 */
export class Journal {
  readonly path: string;
  readonly inMemory: boolean;
  /** True when the file did not exist and nothing has been written yet. */
  fresh: boolean;
  private doc: JournalDocument;
  private readonly now: () => Date;
  private readonly writeHooks?: AtomicWriteHooks;
  private readonly afterAppend?: JournalOptions['afterAppend'];
  private writeChain: Promise<void> = Promise.resolve();
  /** Last sequence number applied to `doc` (snapshot + log). */
  private seq: number;
  /** `logSeq` of the snapshot on disk. */
  private snapshotSeq: number;
  /** `baseSeq` of the action log on disk, undefined when there is none. */
  private logBase: number | undefined;
  /** Bytes of the log file that hold complete lines (anything past it is a torn append). */
  private logValidBytes: number;
  /** True once this process made sure the log ends with its last complete line. */
  private logChecked = false;
  /** Events recorded with `event()` and not yet on disk. */
  private pendingEvents: JournalEvent[] = [];
  /** Per step: action id -> the first record carrying a pre-state (built on demand). */
  private preStates = new Map<StepId, Map<string, ActionRecord>>();

  private constructor(path: string, doc: JournalDocument, fresh: boolean, replay: Replay, options: JournalOptions) {
    this.path = path;
    this.doc = doc;
    this.fresh = fresh;
    this.inMemory = options.inMemory ?? false;
    this.now = options.now ?? (() => new Date());
    this.writeHooks = options.writeHooks;
    this.afterAppend = options.afterAppend;
    this.seq = replay.seq;
    this.snapshotSeq = doc.logSeq ?? 0;
    this.logBase = replay.baseSeq;
    this.logValidBytes = replay.validBytes;
  }

  /** The action log beside this journal (see {@link actionLogPathFor}). */
  get logPath(): string {
    return actionLogPathFor(this.path);
  }

  /**
   * Reads and validates the journal at `path` (snapshot plus action log) without binding it to
   * a cluster (for `status` and `history`). Returns undefined when the file does not exist.
   * @throws JournalCorruptError when the files exist but are not a valid journal of this schema version.
   */
  static async read(path: string): Promise<JournalDocument | undefined> {
    return (await load(path))?.doc;
  }

  /**
   * Opens the journal for `cluster`: loads and validates an existing file and its action log
   * (refusing another cluster's or another runbook's) or starts a new one of `options.runbook`
   * in memory (written on the first change).
   * @throws JournalCorruptError, ClusterMismatchError, RunbookMismatchError
   */
  static async open(path: string, cluster: ClusterIdentity, options: JournalOptions = {}): Promise<Journal> {
    const existing = await load(path);
    const now = (options.now ?? (() => new Date()))().toISOString();
    const runbook = options.runbook ?? DEFAULT_RUNBOOK;
    if (!existing) {
      const doc: JournalDocument = {
        kind: JOURNAL_KIND,
        schemaVersion: JOURNAL_SCHEMA_VERSION,
        createdAt: now,
        updatedAt: now,
        cluster: { ...cluster },
        runbook,
        steps: Object.fromEntries(stepIdsOf(runbook).map((id) => [id, emptyStep(id)])) as Record<StepId, StepEntry>,
        events: [],
      };
      return new Journal(path, doc, true, { seq: 0, validBytes: 0 }, options);
    }
    assertJournalRunbook(existing.doc, runbook, path);
    assertSameCluster(existing.doc.cluster, cluster, path);
    assertNoTokensInFile(existing.doc, path);
    const journal = new Journal(path, existing.doc, false, existing.replay, options);
    if (existing.doc.cluster.apiServer !== cluster.apiServer) {
      // Same cluster (same kube-system uid) reached through another URL, e.g. after enabling private link.
      journal.event('cluster-endpoint-changed', `API server is now ${cluster.apiServer} (was ${existing.doc.cluster.apiServer})`);
      journal.doc.cluster.apiServer = cluster.apiServer;
    }
    return journal;
  }

  /** A deep copy of the document (for rendering). */
  snapshot(): JournalDocument {
    return structuredClone(this.doc);
  }

  get cluster(): ClusterIdentity {
    return { ...this.doc.cluster };
  }

  /** The runbook whose steps this journal records. */
  get runbook(): RunbookId {
    return journalRunbook(this.doc);
  }

  get inventory(): { path: string; sha256: string } | undefined {
    return this.doc.inventory ? { ...this.doc.inventory } : undefined;
  }

  step(id: StepId): Readonly<StepEntry> {
    return this.doc.steps[id];
  }

  /** Applies `change` to the step entry, stamps it, and persists (a snapshot write: step boundaries only). */
  async updateStep(id: StepId, change: (entry: StepEntry, at: string) => void): Promise<void> {
    const at = this.now().toISOString();
    const entry = this.doc.steps[id];
    change(entry, at);
    entry.updatedAt = at;
    // The change may have touched the records in any way: index them again when next asked.
    this.preStates.delete(id);
    await this.save();
  }

  /** Sets the step's state, stamping the matching timestamp, with an event. */
  async setState(id: StepId, state: StepState, message?: string): Promise<void> {
    await this.updateStep(id, (entry, at) => {
      entry.state = state;
      if (state === 'applying') entry.startedAt = at;
      if (state === 'applied') entry.appliedAt = at;
      if (state === 'checked') entry.checkedAt = at;
      if (state === 'failed') entry.failedAt = at;
      if (state === 'rolled-back') entry.rolledBackAt = at;
      this.event(`step-${state}`, message ?? `${id} is ${state}`, id, undefined, at);
    });
  }

  /** Records the inventory the run is planned from. */
  async setInventory(path: string, sha256: string): Promise<void> {
    const before = this.doc.inventory;
    if (before?.path === path && before.sha256 === sha256) return;
    this.doc.inventory = { path, sha256 };
    this.event('inventory', `inventory ${path} sha256 ${sha256.slice(0, 12)}${before ? ` (was ${before.sha256.slice(0, 12)})` : ''}`);
    await this.save();
  }

  /** Appends an event (persisted with the next write, or immediately with {@link log}). */
  event(event: string, message: string, stepId?: StepId, detail?: unknown, at = this.now().toISOString()): void {
    // Events carry text from the cluster (blocker messages, server errors): redacted, so a
    // token-shaped value there can never make the next write refuse the whole journal.
    const entry: JournalEvent = { at, event, message: redactText(message), ...(stepId ? { stepId } : {}), ...(detail === undefined ? {} : { detail: redactDeep(detail) }) };
    pushEvent(this.doc, entry);
    this.pendingEvents.push(entry);
  }

  /** Appends an event and persists it. */
  async log(event: string, message: string, stepId?: StepId, detail?: unknown): Promise<void> {
    this.event(event, message, stepId, detail);
    await this.save();
  }

  private firstRecordWithPreState(stepId: StepId, actionId: string): ActionRecord | undefined {
    let index = this.preStates.get(stepId);
    if (!index) {
      index = new Map();
      for (const r of this.doc.steps[stepId].actions) if (r.preState !== undefined && !index.has(r.actionId)) index.set(r.actionId, r);
      this.preStates.set(stepId, index);
    }
    return index.get(actionId);
  }

  /** The journal as one step sees it ({@link StepJournal}). */
  forStep(id: StepId): StepJournal {
    const view = (stepId: StepId): StepJournalView => ({
      records: () => structuredClone(this.doc.steps[stepId].actions),
      firstPreState: <T>(actionId: string) => {
        const first = this.firstRecordWithPreState(stepId, actionId);
        return first ? (structuredClone(first.preState) as T) : undefined;
      },
      getData: <T>(key: string) => {
        const value = this.doc.steps[stepId].data[key];
        return value === undefined ? undefined : (structuredClone(value) as T);
      },
    });
    const own = view(id);
    return {
      ...own,
      of: (other) => view(other),
      setData: async (key, value) => {
        assertNoTokens(value, `$.steps.${id}.data.${key}`);
        await this.record({ op: 'data', step: id, key, value: structuredClone(value) });
      },
      markRolledBack: async (actionId) => {
        await this.record({ op: 'rolled-back', step: id, actionId });
      },
      settleRecord: async (actionId, outcome) => {
        await this.updateStep(id, (entry, at) => {
          const record = entry.actions.filter((r) => r.actionId === actionId).at(-1);
          if (!record || record.status === 'done' || record.rolledBack) return;
          record.doneAt = at;
          if (outcome.done) {
            record.status = 'done';
            delete record.error;
            if (outcome.result !== undefined) {
              const json = toJson(outcome.result);
              assertNoTokens(json, `$.steps.${id}.actions[${actionId}].result`);
              record.result = json;
            }
            this.event('action-done', `${record.op} ${record.target} (found in effect on resume)`, id, undefined, at);
          } else {
            const why = redact(outcome.error);
            record.error = record.status === 'failed' && record.error ? `${record.error}; ${why}` : why;
            record.status = 'failed';
            this.event('action-failed', `${record.target}: ${why}`, id, undefined, at);
          }
        });
      },
      runAction: async <T>(action: JournalAction, preState: unknown, mutate: () => Promise<T>): Promise<T> => {
        assertNoTokens(action, `$.steps.${id}.actions[${action.id}]`);
        assertNoTokens(preState, `$.steps.${id}.actions[${action.id}].preState`);
        const record: ActionRecord = {
          actionId: action.id,
          ...(action.kind ? { kind: action.kind } : {}),
          ...(action.details !== undefined ? { details: structuredClone(action.details) } : {}),
          op: action.op,
          target: action.target,
          summary: action.summary,
          api: action.api,
          status: 'intent',
          intentAt: this.now().toISOString(),
        };
        // Only the first intent keeps a pre-state: a resumed step sees a half-changed object, not the original.
        const hasPreState = this.firstRecordWithPreState(id, action.id) !== undefined;
        if (!hasPreState && preState !== undefined) record.preState = structuredClone(preState);
        const index = this.doc.steps[id].actions.length;
        this.event('action-intent', `${action.op} ${action.target}: ${action.summary}`, id);
        await this.record({ op: 'intent', step: id, record });
        if (record.preState !== undefined) this.preStates.get(id)?.set(action.id, record);
        let result: T;
        try {
          result = await mutate();
        } catch (error) {
          const message = redact((error as Error)?.message ?? String(error));
          this.event('action-failed', `${action.target}: ${message}`, id);
          await this.record({ op: 'done', step: id, index, status: 'failed', doneAt: this.now().toISOString(), error: message });
          throw error;
        }
        let json: unknown;
        if (result !== undefined) {
          json = toJson(result);
          assertNoTokens(json, `$.steps.${id}.actions[${action.id}].result`);
        }
        this.event('action-done', `${action.op} ${action.target}`, id);
        await this.record({ op: 'done', step: id, index, status: 'done', doneAt: this.now().toISOString(), ...(json === undefined ? {} : { result: json }) });
        return result;
      },
    };
  }

  /**
   * Writes an intent record (the first pre-state of an action id is kept) before `mutate`, then a
   * done or failed record after it; each record is persisted before the call goes on.
   */
  private async runActionIn<T>(entry: { actions: ActionRecord[] }, where: string, stepId: StepId | undefined, action: JournalAction, preState: unknown, mutate: () => Promise<T>): Promise<T> {
    assertNoTokens(action, `${where}.actions[${action.id}]`);
    assertNoTokens(preState, `${where}.actions[${action.id}].preState`);
    const tag = stepId ? '' : `[${where.replace(/^\$\.extensions\./, '')}] `;
    const record: ActionRecord = {
      actionId: action.id,
      ...(action.kind ? { kind: action.kind } : {}),
      ...(action.details !== undefined ? { details: structuredClone(action.details) } : {}),
      op: action.op,
      target: action.target,
      summary: action.summary,
      api: action.api,
      status: 'intent',
      intentAt: this.now().toISOString(),
    };
    // Only the first intent keeps a pre-state: a resumed step sees a half-changed object, not the original.
    const hasPreState = entry.actions.some((r) => r.actionId === action.id && r.preState !== undefined);
    if (!hasPreState && preState !== undefined) record.preState = structuredClone(preState);
    entry.actions.push(record);
    this.event('action-intent', `${tag}${action.op} ${action.target}: ${action.summary}`, stepId);
    await this.save();
    let result: T;
    try {
      result = await mutate();
    } catch (error) {
      record.status = 'failed';
      record.doneAt = this.now().toISOString();
      record.error = redact((error as Error)?.message ?? String(error));
      this.event('action-failed', `${tag}${action.target}: ${record.error}`, stepId);
      await this.save();
      throw error;
    }
    record.status = 'done';
    record.doneAt = this.now().toISOString();
    if (result !== undefined) {
      const json = toJson(result);
      assertNoTokens(json, `${where}.actions[${action.id}].result`);
      record.result = json;
    }
    this.event('action-done', `${tag}${action.op} ${action.target}`, stepId);
    await this.save();
    return result;
  }

  /** The records of extension `key` (created empty on first write), e.g. `drift-fix`. */
  forExtension(key: string): ExtensionJournal {
    const where = `$.extensions.${key}`;
    const entry = (): JournalExtension => {
      this.doc.extensions ??= {};
      return (this.doc.extensions[key] ??= { actions: [], archivedActions: [], data: {} });
    };
    const peek = (): JournalExtension | undefined => this.doc.extensions?.[key];
    const touch = async (change: (e: JournalExtension) => void) => {
      const e = entry();
      change(e);
      e.updatedAt = this.now().toISOString();
      await this.save();
    };
    return {
      records: () => structuredClone(peek()?.actions ?? []),
      firstPreState: <T>(actionId: string) => {
        const first = peek()?.actions.find((r) => r.actionId === actionId && r.preState !== undefined);
        return first ? (structuredClone(first.preState) as T) : undefined;
      },
      getData: <T>(k: string) => {
        const value = peek()?.data[k];
        return value === undefined ? undefined : (structuredClone(value) as T);
      },
      setData: async (k, value) => {
        assertNoTokens(value, `${where}.data.${k}`);
        await touch((e) => void (e.data[k] = structuredClone(value)));
      },
      runAction: <T>(action: JournalAction, preState: unknown, mutate: () => Promise<T>) => this.runActionIn(entry(), where, undefined, action, preState, mutate),
      markRolledBack: async (actionId) => {
        await touch((e) => {
          for (const r of e.actions) if (r.actionId === actionId) r.rolledBack = true;
        });
      },
      archive: async () => {
        await touch((e) => {
          e.archivedActions.push(...e.actions);
          e.actions = [];
        });
      },
      log: (event, message) => this.log(event, `[${key}] ${message}`),
    };
  }

  /** Moves a step's current records to `archivedActions` (a new apply cycle after a completed rollback). */
  async archiveActions(id: StepId): Promise<void> {
    await this.updateStep(id, (entry) => {
      entry.archivedActions.push(...entry.actions);
      entry.actions = [];
    });
  }

  /**
   * Applies one change to the document and appends it to the action log (one line, fsynced),
   * so its cost does not depend on how much the journal already holds. A journal that has no
   * snapshot on disk yet writes one instead.
   * @throws SecretLeakError (nothing is changed or written)
   */
  private async record(op: LogOp): Promise<void> {
    const entry = { ...op, seq: this.seq + 1, at: this.now().toISOString(), ...(this.pendingEvents.length ? { events: this.pendingEvents } : {}) } as LogEntry;
    assertNoTokens(entry, `$.steps.${op.step}`);
    this.seq = entry.seq;
    this.pendingEvents = [];
    // The events are in the document already (`event()` put them there); the log line carries them to disk.
    applyOp(this.doc, { ...entry, events: undefined });
    if (this.inMemory) return;
    if (this.fresh) {
      await this.save();
      return;
    }
    const line = `${JSON.stringify(entry)}\n`;
    const write = this.writeChain.then(async () => {
      // Opened per append, so no file handle outlives the call (a journal has no close to forget).
      const handle = await this.openLog();
      try {
        await handle.write(line, this.logValidBytes, 'utf8');
        await handle.datasync();
      } finally {
        await handle.close();
      }
      this.logValidBytes += Buffer.byteLength(line);
      await this.afterAppend?.({ seq: entry.seq, op: entry.op, step: entry.step });
    });
    this.writeChain = write.catch(() => {});
    await write;
  }

  /** The action log, open for writing: created with its header if absent, a torn tail cut off. */
  private async openLog(): Promise<fs.FileHandle> {
    if (this.logBase === undefined) {
      const header = this.logHeader(this.snapshotSeq);
      await writeFileAtomic(this.logPath, header, { mode: 0o600, hooks: this.writeHooks });
      this.logBase = this.snapshotSeq;
      this.logValidBytes = Buffer.byteLength(header);
      this.logChecked = true;
    }
    const handle = await fs.open(this.logPath, 'r+');
    if (!this.logChecked) {
      // A line torn by a killed writer is dropped: appending after it would bury it mid-file.
      try {
        if ((await handle.stat()).size !== this.logValidBytes) await handle.truncate(this.logValidBytes);
      } catch (error) {
        await handle.close();
        throw error;
      }
      this.logChecked = true;
    }
    return handle;
  }

  private logHeader(baseSeq: number): string {
    const header: LogHeader = { kind: LOG_KIND, schemaVersion: ACTION_LOG_SCHEMA_VERSION, journal: logIdentity(this.doc), baseSeq };
    return `${JSON.stringify(header)}\n`;
  }

  /**
   * Persists the whole document atomically (snapshot write, compaction): the action log is folded
   * in and reset to its header. Writes are serialised; each resolves once its own content is on disk.
   * @throws SecretLeakError (the files are left unchanged)
   */
  async save(): Promise<void> {
    this.doc.updatedAt = this.now().toISOString();
    this.doc.logSeq = this.seq;
    assertNoTokens(this.doc);
    this.pendingEvents = [];
    if (this.inMemory) return;
    const text = `${JSON.stringify(this.doc, null, 2)}\n`;
    const seq = this.seq;
    const write = this.writeChain.then(async () => {
      if (this.fresh) {
        await fs.mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      }
      await writeFileAtomic(this.path, text, { mode: 0o600, hooks: this.writeHooks });
      this.fresh = false;
      this.snapshotSeq = seq;
      // The snapshot now holds every logged entry; start the log again after it. A crash before
      // this reset is harmless: replay skips entries the snapshot already holds.
      if (this.logBase !== undefined && this.logBase !== seq) {
        await writeFileAtomic(this.logPath, this.logHeader(seq), { mode: 0o600, hooks: this.writeHooks });
        this.logBase = seq;
        this.logValidBytes = Buffer.byteLength(this.logHeader(seq));
      }
    });
    this.writeChain = write.catch(() => {});
    await write;
  }

  /** Folds the action log into the snapshot if it holds anything the snapshot does not (compaction). */
  async compact(): Promise<void> {
    if (!this.inMemory && !this.fresh && (this.seq !== this.snapshotSeq || this.pendingEvents.length > 0)) await this.save();
  }

  /** Removes temp files left by a killed writer. Call only while holding the lock. */
  async cleanTempFiles(): Promise<void> {
    const removed = await removeStaleTempFiles(this.path);
    if (removed.length > 0) this.event('temp-files-removed', `removed ${removed.length} partial write(s) left by an interrupted run`);
  }
}

/** Exists-check without reading (for messages). */
export function journalExists(path: string): boolean {
  return existsSync(path);
}

function assertSameCluster(recorded: ClusterIdentity, current: ClusterIdentity, path: string): void {
  const sameUid = recorded.kubeSystemUid === current.kubeSystemUid;
  const sameAks = recorded.aksResourceId.toLowerCase() === current.aksResourceId.toLowerCase();
  if (sameUid && sameAks) return;
  const why = sameUid
    ? `AKS resource ${recorded.aksResourceId}, but --aks-id says ${current.aksResourceId}`
    : `kube-system uid ${short(recorded.kubeSystemUid)}, but the current context points at ${current.name} (uid ${short(current.kubeSystemUid)})`;
  throw new ClusterMismatchError(
    `this journal (${path}) belongs to cluster ${recorded.name} (${why}).`,
    'Use --context (or --kubeconfig / --aks-id) to select that cluster, or --journal for a new journal.',
  );
}

/**
 * Refuses a journal file that already holds a token-shaped value: this tool never writes one,
 * so the file was edited, and every later save would refuse it anyway (with a message that
 * would blame a step). `status` and `history` still show such a file, redacted.
 */
function assertNoTokensInFile(doc: JournalDocument, path: string): void {
  const found = tokenPaths(doc);
  if (found.length === 0) return;
  throw new JournalCorruptError(
    `journal ${path} contains ${found.length === 1 ? 'a value' : `${found.length} values`} shaped like an access token (JWT) at ${found.slice(0, 5).join(', ')}${found.length > 5 ? ', ...' : ''}; ` +
      'podid-migrate never stores tokens, so the file was edited by hand or by another tool.',
    'The file was not changed. Remove those values (keep a backup; `podid-migrate status` shows the journal with them redacted), then run the command again.',
    path,
  );
}

function short(uid: string): string {
  return uid.length > 8 ? `${uid.slice(0, 8)}...` : uid;
}

/** Strips anything token-shaped out of an error message before it is stored. */
export function redact(text: string): string {
  // One marker on every path (`[redacted]`, see redaction.ts).
  return redactText(text);
}

function toJson(value: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(value));
  } catch {
    return String(value);
  }
}

/** Parses and validates journal text. @throws JournalCorruptError */
export function parseJournal(text: string, path: string): JournalDocument {
  const keep = `The file was not changed. Restore it from a backup, or move it aside and start a new journal with --journal <new path> (the old one still records what was done).`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new JournalCorruptError(`journal ${path} is not valid JSON (${(error as Error).message}).`, keep, path);
  }
  const fail = (what: string): never => {
    throw new JournalCorruptError(`journal ${path} is not a valid podid-migrate journal: ${what}.`, keep, path);
  };
  if (!value || typeof value !== 'object' || Array.isArray(value)) fail('the top level is not an object');
  const doc = value as Record<string, unknown>;
  if (doc.kind !== JOURNAL_KIND) fail(`"kind" is ${JSON.stringify(doc.kind)}, expected "${JOURNAL_KIND}"`);
  if (doc.schemaVersion !== JOURNAL_SCHEMA_VERSION) {
    const newer = typeof doc.schemaVersion === 'number' && doc.schemaVersion > JOURNAL_SCHEMA_VERSION;
    throw new JournalCorruptError(
      `journal ${path} has schemaVersion ${JSON.stringify(doc.schemaVersion)}; this podid-migrate reads version ${JOURNAL_SCHEMA_VERSION} only.`,
      newer
        ? 'It was written by a newer podid-migrate: run that version (the file was not changed).'
        : `The file was not changed. ${keep}`,
      path,
    );
  }
  const cluster = doc.cluster as Record<string, unknown> | undefined;
  if (!cluster || typeof cluster !== 'object') fail('"cluster" is missing');
  for (const key of ['name', 'apiServer', 'kubeSystemUid', 'subscriptionId', 'aksResourceId'] as const) {
    if (typeof cluster![key] !== 'string') fail(`"cluster.${key}" is missing or not a string`);
  }
  if (doc.runbook !== undefined && !isRunbookId(doc.runbook)) fail(`"runbook" is ${JSON.stringify(doc.runbook)}, not a known runbook`);
  const runbook = journalRunbook(doc as Pick<JournalDocument, 'runbook'>);
  const steps = doc.steps as Record<string, unknown> | undefined;
  if (!steps || typeof steps !== 'object') fail('"steps" is missing');
  for (const id of stepIdsOf(runbook)) {
    const entry = steps![id] as Record<string, unknown> | undefined;
    if (!entry || typeof entry !== 'object') fail(`step "${id}" is missing`);
    if (!STEP_STATES.includes(entry!.state as StepState)) fail(`step "${id}" has unknown state ${JSON.stringify(entry!.state)}`);
    for (const list of ['actions', 'archivedActions', 'notes', 'evidence', 'failures'] as const) {
      if (!Array.isArray(entry![list])) fail(`step "${id}".${list} is not a list`);
    }
    if (!entry!.data || typeof entry!.data !== 'object') fail(`step "${id}".data is not an object`);
  }
  for (const key of Object.keys(steps!)) if (!isStepId(key, runbook)) fail(`unknown step "${key}"${runbook === DEFAULT_RUNBOOK ? '' : ` for the ${runbook} runbook`}`);
  if (doc.extensions !== undefined) {
    if (!doc.extensions || typeof doc.extensions !== 'object' || Array.isArray(doc.extensions)) fail('"extensions" is not an object');
    for (const [key, ext] of Object.entries(doc.extensions as Record<string, Record<string, unknown>>)) {
      if (!ext || typeof ext !== 'object' || !Array.isArray(ext.actions) || !Array.isArray(ext.archivedActions) || !ext.data || typeof ext.data !== 'object') fail(`extension "${key}" is not { actions, archivedActions, data }`);
    }
  }
  if (!Array.isArray(doc.events)) fail('"events" is not a list');
  const problems = journalProblems(value);
  if (problems.length) fail(problems.length === 1 ? problems[0] : `\n  ${problems.slice(0, 25).join('\n  ')}\n`);
  if (doc.logSeq !== undefined && !(typeof doc.logSeq === 'number' && Number.isInteger(doc.logSeq) && doc.logSeq >= 0)) fail('"logSeq" is not a non-negative integer');
  return value as JournalDocument;
}
