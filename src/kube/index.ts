/**
 * The Kubernetes adapter as the CLI loads it (`src/cli/context.ts`): the gateway, plus
 * `clusterInfo()`, the cluster identity in the shape the journal records.
 */
import { createKubeGateway as createGateway } from './gateway.ts';
import type { KubeGateway, KubeGatewayOptions } from './gateway.ts';

export { KINDS, classifyEvictionRefusal } from './gateway.ts';
export type * from './gateway.ts';
export { KubeApiError, WaitTimeoutError, DryRunViolationError, isNotFound, isConflict } from './errors.ts';
export { ReadSnapshot, snapshotKubeGateway } from './read-snapshot.ts';
export type { ReadMode, ReadSnapshotOptions, ReadSnapshotStats } from './read-snapshot.ts';

/** The API server and `kube-system` UID the journal binds itself to. */
export interface ClusterInfo {
  apiServer: string;
  kubeSystemUid: string;
  /** Cluster name from the kubeconfig. */
  name: string;
}

/** The gateway the CLI works with: every {@link KubeGateway} call, plus {@link CliKubeGateway.clusterInfo}. */
export interface CliKubeGateway extends KubeGateway {
  /** Reads the `kube-system` namespace (one GET); throws when the API server has none. */
  clusterInfo(): Promise<ClusterInfo>;
  /** Nothing to release (HTTP keep-alive sockets close on their own); present for the runtime contract. */
  close(): Promise<void>;
}

/**
 * Builds the gateway from `--kubeconfig` / `--context` (or client-node's default loading) with
 * the run's dry-run mode and interrupt signal.
 */
export function createKubeGateway(opts: KubeGatewayOptions = {}): CliKubeGateway {
  const gateway = createGateway(opts);
  // Added on the instance: the gateway keeps its state in private fields, so it cannot be wrapped in a proxy.
  return Object.assign(gateway, {
    async clusterInfo(): Promise<ClusterInfo> {
      const id = await gateway.clusterIdentity();
      return { apiServer: id.server, kubeSystemUid: id.kubeSystemUid, name: id.clusterName };
    },
    async close(): Promise<void> {},
  });
}
