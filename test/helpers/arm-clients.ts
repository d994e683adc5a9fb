/**
 * Real Azure SDK clients pointed at the sandbox's ARM endpoint.
 *
 * How the sandbox is reached, per client and without touching process-wide settings:
 * - `endpoint`: the sandbox URL (https://127.0.0.1:<port>); every SDK used here takes it.
 * - `tlsOptions: { ca }`: `@azure/core-rest-pipeline`'s `tlsPolicy` puts the sandbox CA on
 *   each request, and its node HTTP client builds (and caches) an https.Agent with it. This
 *   replaces the default trust store for that client only, unlike `NODE_EXTRA_CA_CERTS`, which
 *   is read once at process start and applies to everything.
 * - a `TokenCredential` that returns the sandbox's static bearer token. The scopes are kept on
 *   `https://management.azure.com/.default` so the same options work with a real credential.
 * - `retryOptions`: optional, so tests can bound the SDK's own retries.
 */
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import type { PipelineRetryOptions } from '@azure/core-rest-pipeline';
import { ComputeManagementClient } from '@azure/arm-compute';
import { ManagedServiceIdentityClient } from '@azure/arm-msi';
import { ContainerServiceClient } from '@azure/arm-containerservice';

/** Where the sandbox's ARM endpoint is and how to authenticate to it. */
export interface ArmTarget {
  /** e.g. `https://127.0.0.1:41234` */
  endpoint: string;
  /** The sandbox's bearer token (never log it). */
  token: string;
  /** PEM of the sandbox CA. */
  caPem: string;
  subscriptionId: string;
  retryOptions?: PipelineRetryOptions;
}

const ARM_SCOPE = 'https://management.azure.com/.default';

/** A credential that hands out one fixed bearer token, valid for an hour from each call. */
export function staticTokenCredential(token: string): TokenCredential {
  return {
    async getToken(): Promise<AccessToken> {
      return { token, expiresOnTimestamp: Date.now() + 3600_000, tokenType: 'Bearer' };
    },
  };
}

/** Pipeline options shared by every client: endpoint, CA and retries. */
export function armPipelineOptions(t: ArmTarget): { endpoint: string; tlsOptions: { ca: string }; retryOptions?: PipelineRetryOptions } {
  return { endpoint: t.endpoint, tlsOptions: { ca: t.caPem }, ...(t.retryOptions ? { retryOptions: t.retryOptions } : {}) };
}

/** The three management clients the migration uses, all aimed at `t`. */
export function createArmClients(t: ArmTarget): { compute: ComputeManagementClient; msi: ManagedServiceIdentityClient; aks: ContainerServiceClient; credential: TokenCredential } {
  const credential = staticTokenCredential(t.token);
  const base = armPipelineOptions(t);
  return {
    credential,
    compute: new ComputeManagementClient(credential, t.subscriptionId, { ...base, credentials: { scopes: [ARM_SCOPE] } }),
    msi: new ManagedServiceIdentityClient(credential, t.subscriptionId, { ...base, credentialScopes: [ARM_SCOPE] }),
    aks: new ContainerServiceClient(credential, t.subscriptionId, { ...base, credentials: { scopes: [ARM_SCOPE] } }),
  };
}
