/**
 * Names the Microsoft Entra Workload ID pieces share on AKS: the labels and annotations the
 * mutating webhook reads, what it injects, and the audience of the exchanged token. Values
 * follow azure-workload-identity (`pkg/webhook/consts.go`, the v1 layout AKS ships).
 */

/** Pod label the webhook's objectSelector matches (`"true"`). */
export const USE_LABEL = 'azure.workload.identity/use';
/** Service account annotation: client id of the identity the pods use. */
export const CLIENT_ID_ANNOTATION = 'azure.workload.identity/client-id';
/** Service account annotation: tenant id (default: the cluster's tenant). */
export const TENANT_ID_ANNOTATION = 'azure.workload.identity/tenant-id';
/** Pod or service account annotation: projected token lifetime, 3600-86400 s. */
export const TOKEN_EXPIRATION_ANNOTATION = 'azure.workload.identity/service-account-token-expiration';
/** Pod annotation: containers (`;`-separated) the webhook leaves alone. */
export const SKIP_CONTAINERS_ANNOTATION = 'azure.workload.identity/skip-containers';
/** Pod annotation: inject the IMDS proxy sidecar and its init container. */
export const INJECT_PROXY_ANNOTATION = 'azure.workload.identity/inject-proxy-sidecar';
/** Pod annotation: port of the proxy sidecar (default 8000). */
export const PROXY_PORT_ANNOTATION = 'azure.workload.identity/proxy-sidecar-port';

export const ENV_CLIENT_ID = 'AZURE_CLIENT_ID';
export const ENV_TENANT_ID = 'AZURE_TENANT_ID';
export const ENV_TOKEN_FILE = 'AZURE_FEDERATED_TOKEN_FILE';
export const ENV_AUTHORITY_HOST = 'AZURE_AUTHORITY_HOST';

/** Audience of the projected token, and of every federated credential AKS documents. */
export const TOKEN_EXCHANGE_AUDIENCE = 'api://AzureADTokenExchange';
/** Name of the projected volume the webhook adds. */
export const TOKEN_VOLUME_NAME = 'azure-identity-token';
/** Where the volume is mounted in each container. */
export const TOKEN_MOUNT_PATH = '/var/run/secrets/azure/tokens';
/** File name inside the volume. */
export const TOKEN_FILE_NAME = 'azure-identity-token';
/** `AZURE_FEDERATED_TOKEN_FILE` as the webhook sets it. */
export const TOKEN_FILE_PATH = `${TOKEN_MOUNT_PATH}/${TOKEN_FILE_NAME}`;
/** What the webhook puts in `AZURE_AUTHORITY_HOST` in the public cloud. */
export const PUBLIC_AUTHORITY_HOST = 'https://login.microsoftonline.com/';

export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600;
export const MIN_TOKEN_EXPIRATION_SECONDS = 3600;
export const MAX_TOKEN_EXPIRATION_SECONDS = 86400;
export const DEFAULT_PROXY_PORT = 8000;

export const PROXY_INIT_CONTAINER = 'azwi-proxy-init';
export const PROXY_CONTAINER = 'azwi-proxy';
export const PROXY_VERSION = 'v1.5.1';
export const PROXY_IMAGE = `mcr.microsoft.com/oss/azure/workload-identity/proxy:${PROXY_VERSION}`;
export const PROXY_INIT_IMAGE = `mcr.microsoft.com/oss/azure/workload-identity/proxy-init:${PROXY_VERSION}`;

/** Issuer of service account tokens while the OIDC issuer is off (the API server's default). */
export const DEFAULT_SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** `system:serviceaccount:<ns>:<sa>`, the subject of a service account token. */
export function serviceAccountSubject(namespace: string, serviceAccount: string): string {
  return `system:serviceaccount:${namespace}:${serviceAccount}`;
}
