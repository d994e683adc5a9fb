/**
 * Validation of every file the tool reads: the inventory, a saved plan (`apply --plan`) and the
 * journal's structure. Each problem names the field by its path in the document (`pools[1].nodes`)
 * and says what is wrong; the caller's error says what to do. Nothing here talks to a cluster,
 * so commands validate their files before they connect.
 *
 * The three inputs share the same defences before any schema: the bytes must be UTF-8 text (a
 * binary file is named as such), and no object may have a key that JavaScript treats specially
 * (`__proto__`, `constructor`, `prototype`): such a key can change how a parsed document behaves,
 * and no legitimate file of ours has one.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import { describeSchemaError, fieldPath } from '../util/schema-errors.ts';
import { PreconditionError, UsageError } from './errors.ts';
import { DEFAULT_RUNBOOK, RUNBOOK_IDS, STEP_IDS, WORKLOAD_IDENTITY_STEP_IDS, isRunbookId, stepIdsOf, type RunbookId } from './step.ts';

/** Where the inventory schema lives in the package. */
export const INVENTORY_SCHEMA_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'inventory', 'inventory.schema.json');

/** Keys refused anywhere in an input document. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** At most this many problems are listed; the rest are counted. */
const MAX_PROBLEMS = 25;

/** An input file the tool refuses; `problems` names each bad field. Nothing was changed. */
export class InvalidInputError extends PreconditionError {
  readonly path: string;
  readonly problems: string[];
  constructor(what: string, path: string, problems: string[], hint: string) {
    const shown = problems.slice(0, MAX_PROBLEMS);
    if (problems.length > MAX_PROBLEMS) shown.push(`... and ${problems.length - MAX_PROBLEMS} more`);
    super(`${what} ${path} is not valid:\n  ${shown.join('\n  ')}`, hint);
    this.path = path;
    this.problems = problems;
  }
}

/** What `readInventoryFile` returns. */
export interface ValidatedInventory {
  document: unknown;
  sha256: string;
}

const INVENTORY_HINT = (path: string) =>
  `Fix the fields above (the format is ${INVENTORY_SCHEMA_FILE}), or move ${path} aside and run \`podid-migrate apply --step inventory\` to write a fresh one. Nothing was changed.`;

/**
 * Problems that make bytes unusable as a text document: not UTF-8, or NUL bytes (binary data).
 * Returns undefined when the bytes are text.
 */
export function binaryProblem(bytes: Uint8Array): string | undefined {
  const nul = bytes.indexOf(0);
  if (nul >= 0) return `(file): not a text file (a NUL byte at offset ${nul}: binary data); it must be YAML or JSON text`;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return '(file): not UTF-8 text (binary data or another encoding); it must be YAML or JSON text in UTF-8';
  }
  return undefined;
}

/** Every forbidden key (see {@link FORBIDDEN_KEYS}) in `value`, as problems naming its path. */
export function forbiddenKeyProblems(value: unknown, pointer = ''): string[] {
  const out: string[] = [];
  const walk = (v: unknown, p: string): void => {
    if (Array.isArray(v)) {
      v.forEach((item, i) => walk(item, `${p}/${i}`));
      return;
    }
    if (!v || typeof v !== 'object') return;
    for (const key of Object.keys(v)) {
      const here = `${p}/${key}`;
      if (FORBIDDEN_KEYS.has(key)) {
        out.push(`${fieldPath(here)}: a key named "${key}" is not allowed (it could change how the document is read); remove it`);
        continue;
      }
      walk((v as Record<string, unknown>)[key], here);
    }
  };
  walk(value, pointer);
  return out;
}

/** Parses YAML or JSON text; a syntax error becomes one problem line. */
function parseText(text: string): { value?: unknown; problem?: string } {
  try {
    // `uniqueKeys` (the default) refuses a key given twice; merge keys are off (YAML 1.2 core).
    return { value: parseYaml(text, { prettyErrors: false }) };
  } catch (e) {
    return { problem: `(file): not valid YAML or JSON: ${(e as Error).message.split('\n')[0]}` };
  }
}

type Validator = ReturnType<Ajv['compile']>;
const validators = new Map<string, Validator>();

function compiled(name: string, schema: () => object): Validator {
  let v = validators.get(name);
  if (!v) {
    const ajv = new Ajv({ allErrors: true, strict: false });
    // ajv-formats is CommonJS: its default export arrives wrapped under Node's ESM interop.
    const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;
    addFormats(ajv);
    v = ajv.compile(schema());
    validators.set(name, v);
  }
  return v;
}

/**
 * ajv errors as problem lines: one per field, `oneOf` alternatives folded into one line, and
 * nothing repeated for a key already reported as forbidden.
 */
function schemaProblems(validate: Validator, doc: unknown, oneOfLine?: (path: string) => string): string[] {
  if (validate(doc)) return [];
  const errors: ErrorObject[] = validate.errors ?? [];
  const oneOfPaths = new Set(errors.filter((e) => e.keyword === 'oneOf').map((e) => e.instancePath));
  const out: string[] = [];
  for (const e of errors) {
    if (e.keyword === 'additionalProperties' && FORBIDDEN_KEYS.has(String((e.params as { additionalProperty?: string }).additionalProperty))) continue;
    if (e.keyword !== 'oneOf' && [...oneOfPaths].some((p) => e.instancePath === p || e.instancePath.startsWith(p + '/'))) continue;
    const line = e.keyword === 'oneOf' && oneOfLine ? oneOfLine(e.instancePath) : describeSchemaError(e, doc);
    if (!out.includes(line)) out.push(line);
  }
  return out;
}

function topLevelProblem(value: unknown, what: string): string | undefined {
  if (value === null || value === undefined) return `(top level): the file is empty; it must be ${what}`;
  if (Array.isArray(value)) return `(top level): a list, but it must be ${what}`;
  if (typeof value !== 'object') return `(top level): a ${typeof value} (${JSON.stringify(value).slice(0, 60)}), but it must be ${what}`;
  return undefined;
}

/** Every problem of an inventory document (parsed), each naming its field; empty when valid. */
export function inventoryProblems(doc: unknown): string[] {
  const top = topLevelProblem(doc, 'an Inventory mapping (apiVersion: podid-migrate/v1, kind: Inventory)');
  if (top) return [top];
  const forbidden = forbiddenKeyProblems(doc);
  const schema = schemaProblems(
    compiled('inventory', () => JSON.parse(readFileSync(INVENTORY_SCHEMA_FILE, 'utf8')) as object),
    doc,
    (p) => `${fieldPath(p)}: not a valid test case (kind must be nmi-health, token, http with url, or command with command; no other fields)`,
  );
  return [...forbidden, ...schema];
}

/**
 * Validates inventory bytes (YAML or JSON) and returns the document and the bytes' sha256.
 * @throws InvalidInputError naming every bad field
 */
export function validateInventoryBytes(bytes: Uint8Array, path: string): ValidatedInventory {
  const binary = binaryProblem(bytes);
  if (binary) throw new InvalidInputError('inventory', path, [binary], INVENTORY_HINT(path));
  const parsed = parseText(Buffer.from(bytes).toString('utf8'));
  if (parsed.problem) throw new InvalidInputError('inventory', path, [parsed.problem], INVENTORY_HINT(path));
  const problems = inventoryProblems(parsed.value);
  if (problems.length) throw new InvalidInputError('inventory', path, problems, INVENTORY_HINT(path));
  return { document: parsed.value, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/**
 * Reads and validates the inventory file; undefined when it does not exist.
 * @throws InvalidInputError naming every bad field, PreconditionError when it cannot be read
 */
export async function readValidatedInventory(path: string): Promise<ValidatedInventory | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new PreconditionError(
      `cannot read the inventory ${path} (${code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (error as Error).message}).`,
      'Point --inventory at the inventory file (YAML), or leave it out to use inventory/<cluster>.yaml.',
    );
  }
  return validateInventoryBytes(bytes, path);
}

// ---------------------------------------------------------------------------------------------
// Saved plan (`plan --out`, `apply --plan`)

const STEP_STATES = ['pending', 'applying', 'applied', 'checked', 'failed', 'rolling-back', 'rolled-back'];
const str = { type: 'string' };
const strList = { type: 'array', items: str };
const count = { type: 'integer', minimum: 0 };
const clusterSchema = {
  type: 'object',
  required: ['name', 'apiServer', 'kubeSystemUid', 'subscriptionId', 'aksResourceId'],
  additionalProperties: false,
  properties: { name: str, apiServer: str, kubeSystemUid: str, subscriptionId: str, aksResourceId: str },
};

function savedPlanSchema(): object {
  const writeCounts = { type: 'object', required: ['kube', 'arm'], additionalProperties: false, properties: { kube: count, arm: count } };
  return {
    type: 'object',
    required: ['kind', 'schemaVersion', 'createdAt', 'cluster', 'steps', 'totals'],
    additionalProperties: false,
    properties: {
      kind: { const: 'podid-migrate/plan' },
      schemaVersion: { const: 1 },
      // Absent in plans saved before runbooks existed: managed-mode.
      runbook: { enum: [...RUNBOOK_IDS] },
      createdAt: { type: 'string', format: 'date-time' },
      cluster: clusterSchema,
      inventory: { type: 'object', required: ['path', 'sha256'], additionalProperties: false, properties: { path: str, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } } },
      steps: {
        type: 'array',
        maxItems: Math.max(STEP_IDS.length, WORKLOAD_IDENTITY_STEP_IDS.length),
        items: {
          type: 'object',
          required: ['stepId', 'title', 'state', 'status'],
          additionalProperties: false,
          properties: {
            // The ids of the plan's own runbook: checked in savedPlanProblems.
            stepId: { enum: [...STEP_IDS, ...WORKLOAD_IDENTITY_STEP_IDS] },
            title: str,
            state: { enum: STEP_STATES },
            status: { enum: ['done', 'planned', 'tentative', 'unavailable'] },
            fingerprint: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' },
            reason: str,
            writes: writeCounts,
            writesUpTo: writeCounts,
            plan: {
              type: 'object',
              required: ['stepId', 'actions', 'blockers', 'notes'],
              properties: {
                stepId: { enum: [...STEP_IDS, ...WORKLOAD_IDENTITY_STEP_IDS] },
                notes: strList,
                actions: {
                  type: 'array',
                  items: {
                    type: 'object',
                    // Actions may carry more (typed details): the fingerprint decides whether they still match.
                    required: ['id', 'kind', 'op', 'target', 'summary', 'api', 'writes'],
                    properties: { id: str, kind: str, op: { enum: ['+', '~', '-'] }, target: str, summary: str, api: { enum: ['kube', 'arm', 'none'] }, writes: writeCounts, writesUpTo: writeCounts },
                  },
                },
                blockers: {
                  type: 'array',
                  items: { type: 'object', required: ['code', 'subject', 'message', 'fix'], properties: { code: str, subject: str, message: str, fix: str } },
                },
              },
            },
          },
        },
      },
      totals: {
        type: 'object',
        required: ['add', 'change', 'remove', 'blockers', 'azureWrites'],
        properties: { add: count, change: count, remove: count, blockers: count, azureWrites: count, kubeWrites: count },
      },
    },
  };
}

/** Every problem of a saved plan (parsed JSON), each naming its field; empty when valid. */
export function savedPlanProblems(value: unknown): string[] {
  const top = topLevelProblem(value, 'a plan object written by `podid-migrate plan --out`');
  if (top) return [top];
  const problems = [...forbiddenKeyProblems(value), ...schemaProblems(compiled('plan', savedPlanSchema), value)];
  if (problems.length) return problems;
  const steps = (value as { steps: { stepId: string; status: string; fingerprint?: string; plan?: { stepId: string } }[] }).steps;
  const seen = new Set<string>();
  steps.forEach((s, i) => {
    if (seen.has(s.stepId)) problems.push(`steps[${i}].stepId: step "${s.stepId}" appears twice`);
    seen.add(s.stepId);
    if (s.plan && s.plan.stepId !== s.stepId) problems.push(`steps[${i}].plan.stepId: "${s.plan.stepId}" does not match steps[${i}].stepId "${s.stepId}"`);
    if ((s.status === 'planned' || s.status === 'tentative') && (!s.plan || !s.fingerprint)) problems.push(`steps[${i}]: a ${s.status} step needs "plan" and "fingerprint"`);
  });
  const runbook = ((value as { runbook?: RunbookId }).runbook ?? DEFAULT_RUNBOOK) as RunbookId;
  const ids: readonly string[] = stepIdsOf(runbook);
  steps.forEach((s, i) => {
    if (!ids.includes(s.stepId)) problems.push(`steps[${i}].stepId: "${s.stepId}" is not a step of the ${runbook} runbook (${ids.join(', ')})`);
  });
  const order = steps.map((s) => ids.indexOf(s.stepId));
  if (order.some((n, i) => i > 0 && n <= order[i - 1]) && problems.length === 0) problems.push(`steps: not in runbook order (${ids.join(', ')})`);
  return problems;
}

const PLAN_HINT = 'Give a file written by `podid-migrate plan --out <file>`, unchanged; or make a fresh one: podid-migrate plan --out plan.json. Nothing was read from the cluster or changed.';

/**
 * Reads and validates a saved plan. Refused as a usage error (exit 1) before anything connects.
 * @throws InvalidInputError naming every bad field
 */
export async function readValidatedSavedPlan(path: string, shownAs = path): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new UsageError(`--plan: cannot read ${shownAs} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).`, 'Give a file written by `podid-migrate plan --out <file>`.');
  }
  const binary = binaryProblem(bytes);
  if (binary) throw new InvalidInputError('--plan: saved plan', shownAs, [binary], PLAN_HINT);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new InvalidInputError('--plan: saved plan', shownAs, [`(file): not JSON (${(error as Error).message})`], PLAN_HINT);
  }
  const problems = savedPlanProblems(value);
  if (problems.length) throw new InvalidInputError('--plan: saved plan', shownAs, problems, PLAN_HINT);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Journal structure (after `kind`/`schemaVersion`, which the journal checks itself)

function journalSchema(runbook: RunbookId): object {
  const ids = stepIdsOf(runbook);
  const action = {
    type: 'object',
    required: ['actionId', 'op', 'target', 'summary', 'api', 'status', 'intentAt'],
    properties: {
      actionId: str,
      op: { enum: ['+', '~', '-'] },
      target: str,
      summary: str,
      api: { enum: ['kube', 'arm', 'none'] },
      status: { enum: ['intent', 'done', 'failed'] },
      error: str,
      intentAt: str,
      doneAt: str,
      rolledBack: { type: 'boolean' },
    },
  };
  const entry = {
    type: 'object',
    required: ['id', 'state', 'attempts', 'notes', 'evidence', 'failures', 'actions', 'archivedActions', 'data'],
    properties: {
      id: { enum: [...ids] },
      state: { enum: STEP_STATES },
      attempts: count,
      summary: str,
      notes: strList,
      evidence: strList,
      failures: strList,
      planFingerprint: str,
      actions: { type: 'array', items: action },
      archivedActions: { type: 'array', items: action },
      data: { type: 'object' },
      updatedAt: str,
      startedAt: str,
      appliedAt: str,
      checkedAt: str,
      failedAt: str,
      rolledBackAt: str,
    },
  };
  return {
    type: 'object',
    required: ['kind', 'schemaVersion', 'createdAt', 'updatedAt', 'cluster', 'steps', 'events'],
    properties: {
      createdAt: str,
      updatedAt: str,
      cluster: { ...clusterSchema, additionalProperties: true },
      inventory: { type: 'object', required: ['path', 'sha256'], properties: { path: str, sha256: str } },
      runbook: { enum: [...RUNBOOK_IDS] },
      steps: { type: 'object', required: [...ids], additionalProperties: false, properties: Object.fromEntries(ids.map((id) => [id, entry])) },
      events: {
        type: 'array',
        items: { type: 'object', required: ['at', 'event', 'message'], properties: { at: str, event: str, message: str, stepId: { enum: [...ids] } } },
      },
    },
  };
}

/**
 * Every structural problem of a parsed journal, each naming its field (types of every step
 * entry, action record and event). Fields added by later versions of the same schema are allowed;
 * what the engine reads must have the right type. Empty when valid.
 */
export function journalProblems(doc: unknown): string[] {
  const top = topLevelProblem(doc, 'a podid-migrate journal object');
  if (top) return [top];
  // The steps are those of the journal's runbook (absent: written before runbooks existed).
  const declared = (doc as { runbook?: unknown }).runbook;
  if (declared !== undefined && !isRunbookId(declared)) return [`runbook: must be one of ${RUNBOOK_IDS.join(', ')} (got ${JSON.stringify(declared)})`];
  const runbook = (declared ?? DEFAULT_RUNBOOK) as RunbookId;
  const problems = [...forbiddenKeyProblems(doc), ...schemaProblems(compiled(`journal:${runbook}`, () => journalSchema(runbook)), doc)];
  if (problems.length) return problems;
  const steps = (doc as { steps: Record<string, { id: string }> }).steps;
  for (const id of stepIdsOf(runbook)) if (steps[id].id !== id) problems.push(`steps.${id}.id: is "${steps[id].id}", expected "${id}"`);
  return problems;
}
