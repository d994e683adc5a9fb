/**
 * The single place where commands obtain the Kubernetes and Azure gateways, the cluster identity
 * and the step registry. Tests inject a {@link RuntimeFactory} with fakes through `main()`.
 */
import { PreconditionError } from '../engine/errors.ts';
import type { ClusterIdentity } from '../engine/journal.ts';
import { Runner, type RunnerEvents } from '../engine/runner.ts';
import type { DryRunMode, StepRegistry } from '../engine/step.ts';
import { inventoryPathFor, journalPathFor, parseAksId, type GlobalOptions } from './options.ts';

/** What a command works with once connected. `close` releases clients (idempotent). */
export interface Runtime<K = unknown, A = unknown> {
  steps: StepRegistry<K, A>;
  kube: K;
  azure: A;
  /** The cluster the kubeconfig context and `--aks-id` point at. */
  cluster: ClusterIdentity;
  close(): Promise<void>;
}

/** Builds a {@link Runtime} for the given options; gateways already wrap `dryRun`. */
export type RuntimeFactory = (options: GlobalOptions, mode: { dryRun: DryRunMode; signal: AbortSignal }) => Promise<Runtime>;

/**
 * The production factory. It loads, by convention:
 * - `src/steps/registry.ts`, exporting the ordered steps as `STEPS` (or `steps` / default);
 * - `src/kube/index.ts` exporting `createKubeGateway({ kubeconfig, context, dryRun, signal })`,
 *   whose result has `clusterInfo(): Promise<{ apiServer, kubeSystemUid, name? }>`;
 * - `src/azure/index.ts` exporting `createAzureGateway({ subscriptionId, dryRun, signal })`.
 * Each gateway may have `close()`. A missing module is reported as a precondition error.
 */
export const createRuntime: RuntimeFactory = async (options, mode) => {
  const aks = options.aksId ? parseAksId(options.aksId) : undefined;
  if (!aks || !options.aksId) {
    throw new PreconditionError(
      'the AKS cluster is not known: --aks-id (or PODID_MIGRATE_AKS_ID) is required.',
      'Give the managed cluster resource id: --aks-id "$(az aks show -g <group> -n <name> --query id -o tsv)", or `source .sandbox/env` for the sandbox.',
    );
  }
  const steps = await loadModule('../steps/registry.ts', 'the step registry (src/steps/registry.ts)');
  const registry = (steps.STEPS ?? steps.steps ?? steps.default) as StepRegistry | undefined;
  if (!Array.isArray(registry)) throw new PreconditionError('src/steps/registry.ts exports no STEPS list.', 'This build is incomplete; use a released version.');
  const kubeModule = await loadModule('../kube/index.ts', 'the Kubernetes adapter (src/kube/index.ts)');
  const azureModule = await loadModule('../azure/index.ts', 'the Azure adapter (src/azure/index.ts)');
  const createKube = kubeModule.createKubeGateway as ((o: unknown) => Promise<KubeLike>) | undefined;
  const createAzure = azureModule.createAzureGateway as ((o: unknown) => Promise<ClosableLike>) | undefined;
  if (typeof createKube !== 'function' || typeof createAzure !== 'function') {
    throw new PreconditionError('the Kubernetes or Azure adapter does not export its gateway factory.', 'This build is incomplete; use a released version.');
  }
  const kube = await createKube({ kubeconfig: options.kubeconfig, context: options.context, dryRun: mode.dryRun, signal: mode.signal });
  const azure = await createAzure({ subscriptionId: options.subscription ?? aks.subscriptionId, dryRun: mode.dryRun, signal: mode.signal });
  const info = await kube.clusterInfo();
  return {
    steps: registry,
    kube,
    azure,
    cluster: { name: aks.name, apiServer: info.apiServer, kubeSystemUid: info.kubeSystemUid, subscriptionId: aks.subscriptionId, aksResourceId: options.aksId },
    close: async () => {
      await kube.close?.();
      await azure.close?.();
    },
  };
};

interface ClosableLike {
  close?(): Promise<void> | void;
}
interface KubeLike extends ClosableLike {
  clusterInfo(): Promise<{ apiServer: string; kubeSystemUid: string }>;
}

async function loadModule(specifier: string, what: string): Promise<Record<string, unknown>> {
  try {
    return (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes(specifier.replace('../', ''))) {
      throw new PreconditionError(`this build of podid-migrate does not include ${what}.`, 'Use a complete checkout or release.');
    }
    throw error;
  }
}

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
    steps: runtime.steps,
    kube: runtime.kube,
    azure: runtime.azure,
    cluster: runtime.cluster,
    journalPath: paths.journalPath,
    inventoryPath: paths.inventoryPath,
    // Steps read the AKS resource id (e.g. the inventory finds the node resource group through it).
    options: { ...(options.aksId ? { aksId: options.aksId } : {}), ...(extra.stepOptions ?? {}) },
    dryRun: extra.dryRun,
    stepTimeoutMs: options.stepTimeoutMs,
    signal: extra.signal,
    events: extra.events,
    verbose: options.verbose,
  });
}
