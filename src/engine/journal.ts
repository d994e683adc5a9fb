/**
 * The journal: one JSON file per cluster recording what this tool did, so a run can stop at any
 * point (crash, Ctrl-C, lost laptop) and be resumed or undone later.
 *
 * Location: `.podid-migrate/<cluster-name>.json` under the working directory unless `--journal`
 * says otherwise; the directory is created with mode 0700 and the file with 0600. Every change is
 * written atomically ({@link writeFileAtomic}). A file that cannot be parsed, has another
 * `schemaVersion`, or fails validation is refused with {@link JournalCorruptError} and never
 * overwritten. Values that look like bearer tokens are refused ({@link SecretLeakError}).
 */
import { existsSync, promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeStaleTempFiles, writeFileAtomic, type AtomicWriteHooks } from './atomic-file.ts';
import { ClusterMismatchError, JournalCorruptError, SecretLeakError } from './errors.ts';
import {
  STEP_IDS,
  isStepId,
  type ActionRecord,
  type PlannedAction,
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
  runAction<T>(action: PlannedAction, preState: unknown, mutate: () => Promise<T>): Promise<T>;
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
  /** The inventory the steps were planned from. */
  inventory?: { path: string; sha256: string };
  steps: Record<StepId, StepEntry>;
  /** Extension records by key (e.g. `drift-fix`); absent until an extension writes. */
  extensions?: Record<string, JournalExtension>;
  events: JournalEvent[];
}

/** Default journal path for a cluster: `<cwd>/.podid-migrate/<cluster-name>.json`. */
export function defaultJournalPath(clusterName: string, cwd = process.cwd()): string {
  return join(cwd, '.podid-migrate', `${safeFileName(clusterName)}.json`);
}

/** Cluster names are DNS-ish already; this only guarantees a single path segment. */
export function safeFileName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^\.+/, '');
  return cleaned || 'cluster';
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

/** Options for opening a journal. */
export interface JournalOptions {
  /** Write nothing (dry-run): every change stays in memory. */
  inMemory?: boolean;
  /** Clock for timestamps (tests). */
  now?: () => Date;
  /** Test seam passed to the atomic writer. */
  writeHooks?: AtomicWriteHooks;
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
  private writeChain: Promise<void> = Promise.resolve();

  private constructor(path: string, doc: JournalDocument, fresh: boolean, options: JournalOptions) {
    this.path = path;
    this.doc = doc;
    this.fresh = fresh;
    this.inMemory = options.inMemory ?? false;
    this.now = options.now ?? (() => new Date());
    this.writeHooks = options.writeHooks;
  }

  /**
   * Reads and validates the journal at `path` without binding it to a cluster (for `status`
   * and `history`). Returns undefined when the file does not exist.
   * @throws JournalCorruptError when the file exists but is not a valid journal of this schema version.
   */
  static async read(path: string): Promise<JournalDocument | undefined> {
    let text: string;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new JournalCorruptError(
        `cannot read journal ${path}: ${(error as Error).message}.`,
        'Check the file permissions (the journal is mode 0600, readable by its owner only).',
        path,
      );
    }
    return parseJournal(text, path);
  }

  /**
   * Opens the journal for `cluster`: loads and validates an existing file (refusing another
   * cluster's) or starts a new one in memory (written on the first change).
   * @throws JournalCorruptError, ClusterMismatchError
   */
  static async open(path: string, cluster: ClusterIdentity, options: JournalOptions = {}): Promise<Journal> {
    const existing = await Journal.read(path);
    const now = (options.now ?? (() => new Date()))().toISOString();
    if (!existing) {
      const doc: JournalDocument = {
        kind: JOURNAL_KIND,
        schemaVersion: JOURNAL_SCHEMA_VERSION,
        createdAt: now,
        updatedAt: now,
        cluster: { ...cluster },
        steps: Object.fromEntries(STEP_IDS.map((id) => [id, emptyStep(id)])) as Record<StepId, StepEntry>,
        events: [],
      };
      return new Journal(path, doc, true, options);
    }
    assertSameCluster(existing.cluster, cluster, path);
    const journal = new Journal(path, existing, false, options);
    if (existing.cluster.apiServer !== cluster.apiServer) {
      // Same cluster (same kube-system uid) reached through another URL, e.g. after enabling private link.
      journal.event('cluster-endpoint-changed', `API server is now ${cluster.apiServer} (was ${existing.cluster.apiServer})`);
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

  get inventory(): { path: string; sha256: string } | undefined {
    return this.doc.inventory ? { ...this.doc.inventory } : undefined;
  }

  step(id: StepId): Readonly<StepEntry> {
    return this.doc.steps[id];
  }

  /** Applies `change` to the step entry, stamps it, and persists. */
  async updateStep(id: StepId, change: (entry: StepEntry, at: string) => void): Promise<void> {
    const at = this.now().toISOString();
    const entry = this.doc.steps[id];
    change(entry, at);
    entry.updatedAt = at;
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

  /** Appends an event (persisted with the next save, or immediately with `persist`). */
  event(event: string, message: string, stepId?: StepId, detail?: unknown, at = this.now().toISOString()): void {
    this.doc.events.push({ at, event, message, ...(stepId ? { stepId } : {}), ...(detail === undefined ? {} : { detail }) });
    if (this.doc.events.length > MAX_EVENTS) this.doc.events.splice(0, this.doc.events.length - MAX_EVENTS);
  }

  /** Appends an event and persists it. */
  async log(event: string, message: string, stepId?: StepId, detail?: unknown): Promise<void> {
    this.event(event, message, stepId, detail);
    await this.save();
  }

  /** The journal as one step sees it ({@link StepJournal}). */
  forStep(id: StepId): StepJournal {
    const view = (stepId: StepId): StepJournalView => ({
      records: () => structuredClone(this.doc.steps[stepId].actions),
      firstPreState: <T>(actionId: string) => {
        const first = this.doc.steps[stepId].actions.find((r) => r.actionId === actionId && r.preState !== undefined);
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
        await this.updateStep(id, (entry) => {
          entry.data[key] = structuredClone(value);
        });
      },
      markRolledBack: async (actionId) => {
        await this.updateStep(id, (entry) => {
          for (const record of entry.actions) if (record.actionId === actionId) record.rolledBack = true;
        });
      },
      runAction: <T>(action: PlannedAction, preState: unknown, mutate: () => Promise<T>): Promise<T> => this.runActionIn(this.doc.steps[id], `$.steps.${id}`, id, action, preState, mutate),
    };
  }

  /**
   * Writes an intent record (the first pre-state of an action id is kept) before `mutate`, then a
   * done or failed record after it; each record is persisted before the call goes on.
   */
  private async runActionIn<T>(entry: { actions: ActionRecord[] }, where: string, stepId: StepId | undefined, action: PlannedAction, preState: unknown, mutate: () => Promise<T>): Promise<T> {
    assertNoTokens(action, `${where}.actions[${action.id}]`);
    assertNoTokens(preState, `${where}.actions[${action.id}].preState`);
    const tag = stepId ? '' : `[${where.replace(/^\$\.extensions\./, '')}] `;
    const record: ActionRecord = {
      actionId: action.id,
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
      runAction: <T>(action: PlannedAction, preState: unknown, mutate: () => Promise<T>) => this.runActionIn(entry(), where, undefined, action, preState, mutate),
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
   * Persists the document atomically. Writes are serialised; each resolves once its own content is on disk.
   * @throws SecretLeakError (the file is left unchanged)
   */
  async save(): Promise<void> {
    this.doc.updatedAt = this.now().toISOString();
    assertNoTokens(this.doc);
    if (this.inMemory) return;
    const text = `${JSON.stringify(this.doc, null, 2)}\n`;
    const write = this.writeChain.then(async () => {
      if (this.fresh) {
        await fs.mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      }
      await writeFileAtomic(this.path, text, { mode: 0o600, hooks: this.writeHooks });
      this.fresh = false;
    });
    this.writeChain = write.catch(() => {});
    await write;
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

function short(uid: string): string {
  return uid.length > 8 ? `${uid.slice(0, 8)}...` : uid;
}

/** Strips anything token-shaped out of an error message before it is stored. */
export function redact(text: string): string {
  return text.replace(new RegExp(JWT_PATTERN.source, 'g'), '<redacted token>');
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
  const steps = doc.steps as Record<string, unknown> | undefined;
  if (!steps || typeof steps !== 'object') fail('"steps" is missing');
  for (const id of STEP_IDS) {
    const entry = steps![id] as Record<string, unknown> | undefined;
    if (!entry || typeof entry !== 'object') fail(`step "${id}" is missing`);
    if (!STEP_STATES.includes(entry!.state as StepState)) fail(`step "${id}" has unknown state ${JSON.stringify(entry!.state)}`);
    for (const list of ['actions', 'archivedActions', 'notes', 'evidence', 'failures'] as const) {
      if (!Array.isArray(entry![list])) fail(`step "${id}".${list} is not a list`);
    }
    if (!entry!.data || typeof entry!.data !== 'object') fail(`step "${id}".data is not an object`);
  }
  for (const key of Object.keys(steps!)) if (!isStepId(key)) fail(`unknown step "${key}"`);
  if (doc.extensions !== undefined) {
    if (!doc.extensions || typeof doc.extensions !== 'object' || Array.isArray(doc.extensions)) fail('"extensions" is not an object');
    for (const [key, ext] of Object.entries(doc.extensions as Record<string, Record<string, unknown>>)) {
      if (!ext || typeof ext !== 'object' || !Array.isArray(ext.actions) || !Array.isArray(ext.archivedActions) || !ext.data || typeof ext.data !== 'object') fail(`extension "${key}" is not { actions, archivedActions, data }`);
    }
  }
  if (!Array.isArray(doc.events)) fail('"events" is not a list');
  return value as JournalDocument;
}
