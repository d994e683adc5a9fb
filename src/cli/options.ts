/**
 * Global options: parsing, validation (every bad value names its flag), and derived paths.
 */
import { isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../engine/errors.ts';
import { defaultJournalPath, safeFileName } from '../engine/journal-paths.ts';
import { DEFAULT_RUNBOOK, isRunbookId, isStepId, RUNBOOK_IDS, stepIdsOf, type RunbookId, type StepId } from '../engine/step.ts';
import { CLOUD_ENV, CLOUD_NAMES, isCloudName, type CloudName } from '../azure/clouds.ts';

export { CLOUD_NAMES, RUNBOOK_IDS };

/** Environment variable naming the runbook when `--runbook` is not given. */
export const RUNBOOK_ENV = 'PODID_MIGRATE_RUNBOOK';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml', 'markdown'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Validated global options. */
export interface GlobalOptions {
  kubeconfig?: string;
  context?: string;
  subscription?: string;
  /** Azure cloud (`--cloud` or `PODID_MIGRATE_CLOUD`; default `AzureCloud`). */
  cloud: CloudName;
  /** AKS managed cluster resource id (`--aks-id` or `PODID_MIGRATE_AKS_ID`). */
  aksId?: string;
  /** Inventory file; default `inventory/<cluster>.yaml` under the working directory. */
  inventory?: string;
  /** Journal file; default `.podid-migrate/<cluster>.json` (another runbook: `<cluster>.<runbook>.json`) under the working directory. */
  journal?: string;
  /** The runbook the command runs (`--runbook` or `PODID_MIGRATE_RUNBOOK`; default `managed-mode`). */
  runbook: RunbookId;
  output: OutputFormat;
  verbose: boolean;
  color: boolean;
  /** Per-step deadline in ms (`--step-timeout`). */
  stepTimeoutMs?: number;
  cwd: string;
}

const AKS_ID = /^\/subscriptions\/([0-9a-fA-F-]{36})\/resourceGroups\/[^/]+\/providers\/Microsoft\.ContainerService\/managedClusters\/([^/]+)$/i;
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Splits an AKS resource id into subscription and cluster name; undefined when malformed. */
export function parseAksId(id: string): { subscriptionId: string; name: string } | undefined {
  const m = AKS_ID.exec(id);
  return m ? { subscriptionId: m[1], name: m[2] } : undefined;
}

/** Parses `90s`, `15m`, `1h30m`, `500ms` into milliseconds; undefined when not a positive duration. */
export function parseDuration(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  if (!/^(\d+(?:\.\d+)?(ms|s|m|h))+$/.test(text.trim())) return undefined;
  let total = 0;
  for (const m of text.trim().matchAll(re)) {
    const n = Number(m[1]);
    total += m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : m[2] === 'm' ? n * 60_000 : n * 3_600_000;
  }
  return total > 0 ? Math.round(total) : undefined;
}

/** Validates a duration flag's value. @throws UsageError naming the flag */
export function durationFlag(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${flag}: "${value}" is not a duration.`, `Give a positive duration with a unit, e.g. ${flag} 90s, ${flag} 15m, ${flag} 1h.`);
  return ms;
}

/** Validates a step id flag against the runbook's steps. @throws UsageError naming the flag */
export function stepFlag(flag: string, value: string | undefined, runbook: RunbookId = DEFAULT_RUNBOOK): StepId | undefined {
  if (value === undefined) return undefined;
  if (!isStepId(value, runbook)) {
    const other = RUNBOOK_IDS.find((r) => r !== runbook && isStepId(value, r));
    throw new UsageError(
      `${flag}: "${value}" is not a step${runbook === DEFAULT_RUNBOOK && !other ? '' : ` of the ${runbook} runbook`}.`,
      `Steps, in order: ${stepIdsOf(runbook).join(', ')}.${other ? ` "${value}" is a step of the ${other} runbook: add --runbook ${other}.` : ''}`,
    );
  }
  return value;
}

/** Raw commander values for the global options. */
export interface RawGlobalOptions {
  kubeconfig?: string;
  context?: string;
  subscription?: string;
  cloud?: string;
  aksId?: string;
  inventory?: string;
  journal?: string;
  output?: string;
  verbose?: boolean;
  color?: boolean;
  stepTimeout?: string;
  runbook?: string;
}

/**
 * Validates the global options. @throws UsageError naming the offending flag; nothing has been read or written.
 */
export function validateGlobalOptions(raw: RawGlobalOptions, env: Record<string, string | undefined>, cwd: string): GlobalOptions {
  const output = (raw.output ?? 'table') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(output)) {
    throw new UsageError(`-o/--output: "${raw.output}" is not a format.`, `Use one of: ${OUTPUT_FORMATS.join(', ')}.`);
  }
  const aksId = raw.aksId ?? (env.PODID_MIGRATE_AKS_ID || undefined);
  const cloud = raw.cloud ?? (env[CLOUD_ENV] || 'AzureCloud');
  if (!isCloudName(cloud)) {
    throw new UsageError(`${raw.cloud !== undefined ? '--cloud' : CLOUD_ENV}: "${cloud}" is not an Azure cloud.`, `Use one of: ${CLOUD_NAMES.join(', ')} (as \`az cloud show --query name\` prints it).`);
  }
  let subscription = raw.subscription;
  if (subscription !== undefined && !GUID.test(subscription)) {
    throw new UsageError(`--subscription: "${subscription}" is not a subscription id.`, 'Give the subscription GUID, e.g. --subscription 1b2c3d4e-0000-0000-0000-000000000000 (az account show --query id).');
  }
  if (aksId !== undefined) {
    const parsed = parseAksId(aksId);
    const flag = raw.aksId !== undefined ? '--aks-id' : 'PODID_MIGRATE_AKS_ID';
    if (!parsed) {
      throw new UsageError(
        `${flag}: "${aksId}" is not an AKS resource id.`,
        'Give /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.ContainerService/managedClusters/<name> (az aks show --query id).',
      );
    }
    if (subscription && subscription.toLowerCase() !== parsed.subscriptionId.toLowerCase()) {
      throw new UsageError(`--subscription ${subscription} does not match the subscription in ${flag} (${parsed.subscriptionId}).`, 'Drop --subscription, or fix one of them.');
    }
    subscription ??= parsed.subscriptionId;
  }
  const runbook = raw.runbook ?? (env[RUNBOOK_ENV] || DEFAULT_RUNBOOK);
  if (!isRunbookId(runbook)) {
    throw new UsageError(`${raw.runbook !== undefined ? '--runbook' : RUNBOOK_ENV}: "${runbook}" is not a runbook.`, `Use one of: ${RUNBOOK_IDS.join(', ')} (default ${DEFAULT_RUNBOOK}).`);
  }
  for (const [flag, value] of [['--kubeconfig', raw.kubeconfig], ['--journal', raw.journal], ['--inventory', raw.inventory]] as const) {
    if (value !== undefined && value.trim() === '') throw new UsageError(`${flag}: the path is empty.`, `Give a file path, or leave ${flag} out for the default.`);
  }
  const abs = (p: string | undefined) => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(cwd, p));
  return {
    kubeconfig: abs(raw.kubeconfig),
    context: raw.context,
    subscription,
    cloud,
    aksId,
    inventory: abs(raw.inventory),
    journal: abs(raw.journal),
    runbook,
    output,
    verbose: raw.verbose ?? false,
    color: (raw.color ?? true) && !env.NO_COLOR,
    stepTimeoutMs: durationFlag('--step-timeout', raw.stepTimeout),
    cwd,
  };
}

/**
 * Journal path: `--journal`, else `.podid-migrate/<cluster>.json` under the working directory
 * (another runbook than the default: `.podid-migrate/<cluster>.<runbook>.json`).
 */
export function journalPathFor(options: Pick<GlobalOptions, 'journal' | 'cwd'> & { runbook?: RunbookId }, clusterName: string): string {
  return options.journal ?? defaultJournalPath(clusterName, options.cwd, options.runbook ?? DEFAULT_RUNBOOK);
}

/** Inventory path: `--inventory`, else `inventory/<cluster>.yaml` under the working directory. */
export function inventoryPathFor(options: GlobalOptions, clusterName: string): string {
  return options.inventory ?? join(options.cwd, 'inventory', `${safeFileName(clusterName)}.yaml`);
}
