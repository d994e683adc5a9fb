/**
 * The Azure adapter as the CLI loads it (`src/cli/context.ts`): the gateway factory, which
 * resolves the connection from the environment (a sandbox's endpoint, token file and CA after
 * `source <dir>/env`, else `DefaultAzureCredential` and public ARM).
 */
export { createAzureGateway, parseResourceId, identityDelta, chunk, MAX_IDENTITIES_PER_PATCH, ASSIGN_ACTION } from './gateway.ts';
export type * from './gateway.ts';
export { AzureApiError, isAzureNotFound } from './errors.ts';
export { snapshotAzureGateway } from './read-snapshot.ts';
export { resolveAzureConnection, ARM_ENV } from './client.ts';
