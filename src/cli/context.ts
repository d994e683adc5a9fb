/**
 * The single place where commands obtain the Kubernetes and Azure gateways, the cluster identity
 * and the step registry. Tests inject a {@link RuntimeFactory} with fakes through `main()`.
 */
import { PreconditionError } from '../engine/errors.ts';
import { readValidatedInventory } from '../engine/inputs.ts';
import type { ClusterIdentity } from '../engine/journal.ts';
import { Runner, type RunnerConfig, type RunnerEvents } from '../engine/runner.ts';
import type { DryRunMode, ExecutorRegistry, StepRegistry } from '../engine/step.ts';
import type { DryRunEntry } from '../kube/dry-run.ts';
import { inventoryPathFor, journalPathFor, parseAksId, type GlobalOptions } from './options.ts';

/** What a command works with once connected. `close` releases clients (idempotent). */
export interface Runtime<K = unknown, A = unknown> {
  steps: StepRegistry<K, A>;
  /** The executors of the steps' action kinds. */
  executors: ExecutorRegistry<K, A>;
  kube: K;
  azure: A;
  /** The cluster the kubeconfig context and `--aks-id` point at. */
  cluster: ClusterIdentity;
  /** In a dry run: the writes the gateways held back (client) or sent with dryRun=All (server). */
  recordedWrites?(): DryRunEntry[];
  /** The command's read snapshot hook, handed to the runner as `readScope` (see `src/kube/read-snapshot.ts`). */
  readScope?: RunnerConfig['readScope'];
  /** Extra plan blockers (the Kubernetes permission preflight), handed to the runner as `preflight`. */
  preflight?: RunnerConfig['preflight'];
  close(): Promise<void>;
}

/**
 * Builds a {@link Runtime}; gateways already wrap `dryRun`. `mode.env` is the environment the
 * command runs with (`CliDeps.env`): the Azure connection is read from it, not from `process.env`,
 * so `main()` can run with another environment than its process.
 */
export type RuntimeFactory = (options: GlobalOptions, mode: { dryRun: DryRunMode; signal: AbortSignal; progress?: (line: string) => void; env?: Record<string, string | undefined> }) => Promise<Runtime>;

/**
 * The production factory: the ordered steps of `--runbook`, and the Kubernetes and Azure gateways (already in
 * the requested dry-run mode) for the kubeconfig context and `--aks-id`.
 */
export const createRuntime: RuntimeFactory = async (options, mode) => {
  const aks = options.aksId ? parseAksId(options.aksId) : undefined;
  if (!aks || !options.aksId) {
    throw new PreconditionError(
      'the AKS cluster is not known: --aks-id (or PODID_MIGRATE_AKS_ID) is required.',
      'Give the managed cluster resource id: --aks-id "$(az aks show -g <group> -n <name> --query id -o tsv)", or `source .sandbox/env` for the sandbox.',
    );
  }
  // Loaded on demand: the SDKs behind them take a noticeable time to import, and commands such
  // as --help, status or sandbox never need them.
  const [{ createKubeGateway, ReadSnapshot, snapshotKubeGateway }, { createAzureGateway, snapshotAzureGateway }, { stepsFor, EXECUTORS }] = await Promise.all([
    import('../kube/index.ts'),
    import('../azure/index.ts'),
    import('../steps/registry.ts'),
  ]);
  const { kubePermissionBlockers } = await import('../steps/lib/permission-preflight.ts');
  // Long waits inside the gateways (a capped Retry-After, a conflict backoff, a slow rollout) say what they wait for.
  const kube = createKubeGateway({ kubeconfig: options.kubeconfig, context: options.context, dryRun: mode.dryRun, signal: mode.signal, progress: mode.progress });
  const azure = createAzureGateway({ subscriptionId: options.subscription ?? aks.subscriptionId, cloud: options.cloud, env: mode.env, dryRun: mode.dryRun, signal: mode.signal, progress: mode.progress });
  // One read snapshot per command, shared by both gateways (a write through either invalidates both).
  const reads = new ReadSnapshot();
  const sharedKube = snapshotKubeGateway(kube, reads);
  // Read through the snapshot, so the inventory's own cluster identity check needs no second GET.
  const identity = await reads.run('shared', () => sharedKube.clusterIdentity());
  const info = { apiServer: identity.server, kubeSystemUid: identity.kubeSystemUid };
  return {
    steps: stepsFor(options.runbook) as unknown as StepRegistry,
    executors: EXECUTORS as unknown as ExecutorRegistry,
    kube: sharedKube,
    azure: snapshotAzureGateway(azure, reads),
    readScope: (phase, call) => reads.during(phase, call),
    preflight: (stepId, gateway, inventoryDocument) => kubePermissionBlockers(stepId, gateway, inventoryDocument),
    cluster: { name: aks.name, apiServer: info.apiServer, kubeSystemUid: info.kubeSystemUid, subscriptionId: aks.subscriptionId, aksResourceId: options.aksId },
    recordedWrites: () => [...kube.dryRunLog(), ...azure.dryRunLog()],
    close: async () => {
      await kube.close();
    },
  };
};

/** Paths derived for a connected cluster. */
export interface RunPaths {
  journalPath: string;
  inventoryPath: string;
}

export function pathsFor(options: GlobalOptions, cluster: ClusterIdentity): RunPaths {
  return { journalPath: journalPathFor(options, cluster.name), inventoryPath: inventoryPathFor(options, cluster.name) };
}

/** Builds the runner for a connected runtime. */
export function runnerFor(
  runtime: Runtime,
  options: GlobalOptions,
  extra: { dryRun: DryRunMode; signal: AbortSignal; events?: RunnerEvents; stepOptions?: Record<string, unknown> },
): Runner {
  const paths = pathsFor(options, runtime.cluster);
  return new Runner({
    runbook: options.runbook,
    steps: runtime.steps,
    executors: runtime.executors,
    kube: runtime.kube,
    azure: runtime.azure,
    cluster: runtime.cluster,
    journalPath: paths.journalPath,
    inventoryPath: paths.inventoryPath,
    // Steps read the AKS resource id (e.g. the inventory finds the node resource group through it).
    // The workload identity runbook also reads what the managed-mode runbook did on this cluster
    // (the identities its assign step put on the scale sets): that journal's default path.
    options: {
      ...(options.aksId ? { aksId: options.aksId } : {}),
      ...(options.runbook === 'workload-identity' ? { managedJournalPath: journalPathFor({ cwd: options.cwd, runbook: 'managed-mode' }, runtime.cluster.name) } : {}),
      ...(extra.stepOptions ?? {}),
    },
    dryRun: extra.dryRun,
    stepTimeoutMs: options.stepTimeoutMs,
    signal: extra.signal,
    events: extra.events,
    verbose: options.verbose,
    readScope: runtime.readScope,
    preflight: runtime.preflight,
  });
}

/**
 * Validates the inventory file before anything connects to the cluster, when its path is known
 * without connecting (`--inventory`, or the default path from `--aks-id`). The runner validates
 * it again whenever it reads it (also after the inventory step wrote it).
 * @throws InvalidInputError naming every bad field
 */
export async function validateInputsBeforeConnecting(options: GlobalOptions): Promise<void> {
  const aks = options.aksId ? parseAksId(options.aksId) : undefined;
  const path = options.inventory ?? (aks ? inventoryPathFor(options, aks.name) : undefined);
  if (path) await readValidatedInventory(path);
}
