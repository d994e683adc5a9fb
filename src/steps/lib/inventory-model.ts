/**
 * The inventory document (`inventory/inventory.schema.json`): its TypeScript shape, loading
 * with validation that names every bad field, and writing that keeps what the operator edited
 * (the test cases) while everything else is re-read from the cluster.
 */
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { writeFileAtomic } from '../../engine/atomic-file.ts';
import { PreconditionError } from '../../engine/errors.ts';
import { describeSchemaError, fieldPath } from '../../util/schema-errors.ts';

/** Where the schema lives in the package. */
export const INVENTORY_SCHEMA_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'inventory', 'inventory.schema.json');

/** A reference to the NMI DaemonSet or MIC Deployment. */
export interface WorkloadRef {
  kind?: string;
  name?: string;
  namespace?: string;
  image?: string;
  replicas?: number;
  args?: string[];
}

/** One way of proving a service's identity works (DOMAIN.md section 8). */
export type TestCase =
  | { kind: 'nmi-health'; name?: string }
  | { kind: 'token'; name?: string; resource?: string; timeoutSeconds?: number }
  | { kind: 'http'; name?: string; url: string; expectStatus?: number; timeoutSeconds?: number }
  | { kind: 'command'; name?: string; command: string[]; timeoutSeconds?: number };

/** A top controller whose pods carry an `aadpodidbinding` label. */
export interface InventoryService {
  /** `<namespace>/<name>` of the top controller. */
  name: string;
  kind?: string;
  /** The `aadpodidbinding` label value its pods carry. */
  selector?: string;
  pools?: string[];
  pods?: number;
  testCases?: TestCase[];
  /** The operator's facts for the workload-identity runbook (kept like the test cases). */
  workloadIdentity?: ServiceWorkloadIdentity;
}

/** Languages of the Azure Identity SDKs the workload-identity runbook knows the minimum version of. */
export type SdkLanguage = 'dotnet' | 'java' | 'go' | 'node' | 'python';

/** Per service, what the operator knows about its token acquisition (inventory `services[].workloadIdentity`). */
export interface ServiceWorkloadIdentity {
  /** The Azure Identity SDK and version the service uses. */
  sdk?: { language: SdkLanguage; version: string };
  /** Inject the workload identity proxy sidecar (an SDK that only speaks IMDS). */
  proxySidecar?: boolean;
}

/** One AzureIdentity (copies made by the migration are folded into their source). */
export interface InventoryIdentity {
  name: string;
  namespace: string;
  /** 0 user-assigned MSI, 1 service principal, 2 service principal with certificate. */
  type: 0 | 1 | 2;
  resourceId?: string;
  clientId?: string;
  principalId?: string;
  /** Pools whose VMSS must carry it. */
  pools?: string[];
  /** Namespaces of the pods that use it. */
  namespaces?: string[];
  bindings?: { name: string; namespace: string; selector: string }[];
  services: InventoryService[];
}

/** One node pool. */
export interface InventoryPool {
  name: string;
  /** VMSS resource id; absent for a pool not backed by a VMSS. */
  scaleSet?: string;
  nodes?: number;
  /** Identity resource ids on the VMSS before the migration (never removed by it). */
  identitiesBefore?: string[];
}

/** The whole inventory file. */
export interface InventoryDocument {
  apiVersion: 'podid-migrate/v1';
  kind: 'Inventory';
  generatedAt?: string;
  cluster: { name: string; apiServer?: string; kubeSystemUid: string; resourceId?: string; nodeResourceGroup?: string };
  podIdentity?: { install?: 'raw' | 'helm'; version?: string; nmi?: WorkloadRef; mic?: WorkloadRef };
  identities: InventoryIdentity[];
  pools: InventoryPool[];
}

/** The file exists but is not a valid inventory; `problems` names each bad field. */
export class InventoryError extends PreconditionError {
  readonly problems: string[];
  constructor(path: string, problems: string[]) {
    super(
      `inventory ${path} is not valid:\n  ${problems.join('\n  ')}`,
      `Fix the fields above (the format is ${INVENTORY_SCHEMA_PATH}), or move the file aside and run \`podid-migrate apply --step inventory\` to write a fresh one.`,
    );
    this.problems = problems;
  }
}

type Validator = ReturnType<Ajv['compile']>;
let validator: Validator | undefined;

function schemaValidator(): Validator {
  if (!validator) {
    const schema = JSON.parse(readFileSync(INVENTORY_SCHEMA_PATH, 'utf8')) as object;
    const ajv = new Ajv({ allErrors: true, strict: false });
    // ajv-formats is CommonJS: its default export arrives wrapped under Node's ESM interop.
    const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (a: Ajv) => Ajv;
    addFormats(ajv);
    validator = ajv.compile(schema);
  }
  return validator;
}

/**
 * Validates a parsed inventory against the schema. Returns every problem (empty when valid),
 * each naming the field, e.g. `identities[2].type: must be one of 0, 1, 2`. A test case that
 * matches no kind is reported once, by its field, instead of once per alternative.
 */
export function validateInventory(doc: unknown): string[] {
  const validate = schemaValidator();
  if (validate(doc)) return [];
  const errors = validate.errors ?? [];
  const oneOfPaths = new Set(errors.filter((e) => e.keyword === 'oneOf').map((e) => e.instancePath));
  const out: string[] = [];
  for (const e of errors) {
    if (e.keyword !== 'oneOf' && oneOfPaths.has(e.instancePath)) continue;
    if (e.keyword !== 'oneOf' && [...oneOfPaths].some((p) => e.instancePath.startsWith(p + '/'))) continue;
    const msg =
      e.keyword === 'oneOf'
        ? `${fieldPath(e.instancePath)}: not a valid test case (kind must be nmi-health, token, http with url, or command with command; no other fields)`
        : describeSchemaError(e);
    if (!out.includes(msg)) out.push(msg);
  }
  return out;
}

/** Parses inventory YAML (or JSON) text and validates it. @throws InventoryError naming every bad field */
export function parseInventory(text: string, source: string): InventoryDocument {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new InventoryError(source, [`YAML syntax error: ${(e as Error).message.split('\n')[0]}`]);
  }
  const problems = validateInventory(doc);
  if (problems.length) throw new InventoryError(source, problems);
  return doc as InventoryDocument;
}

/** Reads and validates the inventory file; undefined when it does not exist. @throws InventoryError naming every bad field */
export async function loadInventory(path: string): Promise<InventoryDocument | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return parseInventory(text, path);
}

/** Validates an inventory the engine already parsed (`ctx.inventory`). @throws InventoryError */
export function asInventory(value: unknown, source: string): InventoryDocument {
  const problems = validateInventory(value);
  if (problems.length) throw new InventoryError(source, problems);
  return value as InventoryDocument;
}

/** Key that identifies "the same identity" across runs: its resource id, else client id, else namespace/name. */
export function identityKey(i: Pick<InventoryIdentity, 'resourceId' | 'clientId' | 'namespace' | 'name'>): string {
  return (i.resourceId ?? i.clientId ?? `${i.namespace}/${i.name}`).toLowerCase();
}

/** The test case the inventory writes for a service the operator has not described yet. */
export function defaultTestCases(): TestCase[] {
  return [{ kind: 'token' }];
}

/**
 * `fresh` with each service's `testCases` and `workloadIdentity` taken from `previous` where the
 * operator already had the same service under the same identity: those are the operator's to edit.
 */
export function keepOperatorEdits(previous: InventoryDocument | undefined, fresh: InventoryDocument): InventoryDocument {
  if (!previous) return fresh;
  const kept = new Map<string, TestCase[]>();
  const facts = new Map<string, ServiceWorkloadIdentity>();
  for (const i of previous.identities) {
    for (const s of i.services) {
      if (s.testCases) kept.set(`${identityKey(i)}\u0000${s.name}`, s.testCases);
      if (s.workloadIdentity) facts.set(`${identityKey(i)}\u0000${s.name}`, s.workloadIdentity);
    }
  }
  const out = structuredClone(fresh);
  for (const i of out.identities) {
    for (const s of i.services) {
      const prev = kept.get(`${identityKey(i)}\u0000${s.name}`);
      if (prev) s.testCases = structuredClone(prev);
      const wi = facts.get(`${identityKey(i)}\u0000${s.name}`);
      if (wi) s.workloadIdentity = structuredClone(wi);
    }
  }
  return out;
}

/** What changed in the cluster between two inventories, one line each (empty when nothing did). */
export function inventoryChanges(previous: InventoryDocument, fresh: InventoryDocument): string[] {
  const out: string[] = [];
  const prevIds = new Map(previous.identities.map((i) => [identityKey(i), i]));
  const freshIds = new Map(fresh.identities.map((i) => [identityKey(i), i]));
  for (const [k, i] of freshIds) if (!prevIds.has(k)) out.push(`identity ${i.namespace}/${i.name} is new`);
  for (const [k, i] of prevIds) if (!freshIds.has(k)) out.push(`identity ${i.namespace}/${i.name} is no longer used or no longer exists`);
  for (const [k, i] of freshIds) {
    const p = prevIds.get(k);
    if (!p) continue;
    const pools = diffLists(p.pools ?? [], i.pools ?? []);
    if (pools) out.push(`identity ${i.name}: pools ${pools}`);
    const services = diffLists(p.services.map((s) => s.name), i.services.map((s) => s.name));
    if (services) out.push(`identity ${i.name}: services ${services}`);
    if ((p.clientId ?? '') !== (i.clientId ?? '')) out.push(`identity ${i.name}: client id changed (re-created?)`);
  }
  const pools = diffLists(previous.pools.map((p) => p.name), fresh.pools.map((p) => p.name));
  if (pools) out.push(`pools ${pools}`);
  for (const p of fresh.pools) {
    const q = previous.pools.find((x) => x.name === p.name);
    if (q && (q.scaleSet ?? '').toLowerCase() !== (p.scaleSet ?? '').toLowerCase()) out.push(`pool ${p.name}: scale set changed`);
  }
  return out;
}

function diffLists(before: readonly string[], after: readonly string[]): string | undefined {
  const added = after.filter((x) => !before.includes(x));
  const removed = before.filter((x) => !after.includes(x));
  if (!added.length && !removed.length) return undefined;
  return [...added.map((x) => `+ ${x}`), ...removed.map((x) => `- ${x}`)].join(', ');
}

const HEADER = [
  '# podid-migrate inventory: which identities each node pool needs, and how each service proves',
  '# its identity works. Edit the testCases; everything else is re-read from the cluster on every',
  '# run of the inventory step (your testCases are kept). Format: inventory/inventory.schema.json',
].join('\n');

/** The YAML text the inventory step writes for `doc`. */
export function renderInventory(doc: InventoryDocument): string {
  return `${HEADER}\n${toYaml(doc, { lineWidth: 0 })}`;
}

/**
 * Writes `doc` atomically (mode 0644, directory created), keeping the test cases of an existing
 * valid file at `path` (see {@link keepOperatorEdits}). Returns what was written. An existing
 * file that does not validate is refused, never overwritten: it may hold the operator's work.
 */
export async function writeInventory(path: string, doc: InventoryDocument): Promise<InventoryDocument> {
  const previous = await loadInventory(path);
  const merged = keepOperatorEdits(previous, doc);
  const problems = validateInventory(merged);
  if (problems.length) throw new InventoryError(`${path} (about to be written)`, problems);
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, renderInventory(merged), { mode: 0o644 });
  return merged;
}
