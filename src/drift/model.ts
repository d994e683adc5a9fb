/**
 * The drift report: what `podid-migrate drift` found between the desired state (the inventory's
 * identities per pool, plus every AzureIdentity / AzureIdentityBinding in the cluster) and the
 * live cluster and Azure, each finding with its fix, and the typed actions `drift --fix` would
 * take for the ones that are safe to repair automatically.
 */
import type { PlannedAction } from '../engine/step.ts';

/** Version of the `DriftReport` document (`-o json|yaml`, `schemas/drift.schema.json`). */
export const DRIFT_REPORT_SCHEMA_VERSION = 1;

/** Stable machine codes of findings (documented in the README; never renamed). */
export type DriftCode =
  | 'identity-missing-on-vmss'
  | 'new-pool-missing-identities'
  | 'pool-not-in-inventory'
  | 'pool-not-vmss'
  | 'stale-vmss-identity'
  | 'identity-not-in-arm'
  | 'azureidentity-client-id-mismatch'
  | 'identity-not-in-inventory'
  | 'identity-pools-not-in-inventory'
  | 'binding-not-in-inventory'
  | 'cross-namespace-binding'
  | 'nmi-missing'
  | 'nmi-not-managed'
  | 'nmi-pod-not-managed'
  | 'nmi-not-on-node'
  | 'mic-running'
  | 'mic-present'
  | 'assigned-identities-present'
  | 'nmi-bypass';

/**
 * How a finding is repaired: `auto` by `drift --fix`, `inventory` by `drift --update-inventory`
 * (the inventory file only), `manual` by the operator (the fix says how).
 */
export type FixKind = 'auto' | 'inventory' | 'manual';

/** One difference between desired and live state. */
export interface DriftFinding {
  code: DriftCode;
  /** `drift` counts toward exit code 3; `notice` is shown but is not drift (e.g. an unused new pool). */
  severity: 'drift' | 'notice';
  /** The object, e.g. `vmss aks-batch-12345678-vmss`, `daemonset default/nmi`. */
  subject: string;
  /** What is wrong and why it matters. */
  message: string;
  /** What repairs it: a `podid-migrate drift --fix` line or the manual commands. */
  fix: string;
  fixKind: FixKind;
  /** Ids of the {@link DriftAction}s that repair it. */
  actionIds: string[];
}

/** Details of `vmss-add-identities`: the delta only; identities already there are never named. */
export interface VmssAddIdentitiesDetails {
  resourceGroup: string;
  scaleSet: string;
  pool: string;
  /** Sorted by id, lower-case compare. */
  identities: { id: string; name: string }[];
}

/** Details of `nmi-managed-args`: the container args before and after (a JSON patch guarded by a test of the container name). */
export interface NmiManagedArgsDetails {
  namespace: string;
  name: string;
  container: string;
  containerIndex: number;
  argsBefore: string[];
  args: string[];
}

/** Details of `mic-scale-zero`. */
export interface MicScaleZeroDetails {
  namespace: string;
  name: string;
  replicasBefore: number;
}

/** Details of `inventory-update`: what is added to the inventory file (nothing is removed or rewritten). */
export interface InventoryUpdateDetails {
  path: string;
  pools: { name: string; scaleSet?: string; nodes: number; identitiesBefore: string[] }[];
  /** Pools added to existing identities' `pools` (keyed by identity key). */
  identityPools: { identity: string; name: string; namespace: string; pools: string[] }[];
  /** Bindings added to existing identities. */
  identityBindings: { identity: string; bindings: { name: string; namespace: string; selector: string }[] }[];
  identities: {
    name: string;
    namespace: string;
    type: 0 | 1 | 2;
    resourceId?: string;
    clientId?: string;
    pools: string[];
    namespaces: string[];
    bindings: { name: string; namespace: string; selector: string }[];
    /** Services using it now; each gets the default token test case. */
    services: { name: string; kind: string; selector: string; pools: string[] }[];
  }[];
}

/** What each action kind carries; `kind` selects the executor. */
export interface DriftActionDetails {
  'vmss-add-identities': VmssAddIdentitiesDetails;
  'nmi-managed-args': NmiManagedArgsDetails;
  'mic-scale-zero': MicScaleZeroDetails;
  'inventory-update': InventoryUpdateDetails;
}

export type DriftActionKind = keyof DriftActionDetails;

/** A fix as a typed planned action: `kind` plus typed `details` (runs through one executor per kind). */
export type DriftAction = {
  [K in DriftActionKind]: Omit<PlannedAction, 'details' | 'kind'> & { kind: K; details: DriftActionDetails[K] };
}[DriftActionKind];

/** Context lines about what was compared. */
export interface DriftContext {
  cluster: { name: string; kubeSystemUid: string; aksResourceId?: string };
  inventory: { path: string; identities: number; pools: number };
  /** `none`, or the migration's state from the journal (e.g. `migration complete 2026-12-01`). */
  journal: string;
  /** Facts that held, e.g. `5 scale sets carry their identities`. */
  ok: string[];
  notes: string[];
}

/** The whole report, as `-o json|yaml` prints it. */
export interface DriftReport {
  kind: 'DriftReport';
  schemaVersion: typeof DRIFT_REPORT_SCHEMA_VERSION;
  generatedAt: string;
  context: DriftContext;
  findings: DriftFinding[];
  /** The actions `drift --fix` would take (`--update-inventory` adds the inventory one). */
  actions: DriftAction[];
  totals: { drift: number; notices: number; fixable: number; manual: number };
  /** What the read cost: Kubernetes requests and ARM requests, by key. */
  calls: { kube: { total: number; byKey: Record<string, number> }; arm: { total: number; byKey: Record<string, number> } };
}
