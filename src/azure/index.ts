/**
 * The Azure adapter as the CLI loads it (`src/cli/context.ts`): the gateway factory, which
 * resolves the connection from the environment (a sandbox's endpoint, token file and CA after
 * `source <dir>/env`, else `DefaultAzureCredential` and public ARM).
 */
export { createAzureGateway, parseResourceId, identityDelta, chunk, MAX_IDENTITIES_PER_PATCH, ASSIGN_ACTION } from './gateway.ts';
export type * from './gateway.ts';
export { AzureApiError, AzureConfigError, AzureLoginError, isAzureNotFound } from './errors.ts';
export { resolveAzureConnection, ARM_ENV, SignInExplainingCredential } from './client.ts';
export { AZURE_CLOUDS, CLOUD_NAMES, type CloudName } from './clouds.ts';
export { snapshotAzureGateway } from './read-snapshot.ts';
