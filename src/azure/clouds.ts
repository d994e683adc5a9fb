/**
 * The Azure clouds podid-migrate can work in: for each, where Azure Resource Manager is, which
 * Microsoft Entra authority signs users in, and the audience ARM tokens are issued for. Pure
 * data (no SDK import), so the CLI can validate `--cloud` without loading the Azure SDKs.
 */

/** A cloud's name as the Azure CLI spells it (`az cloud list`). */
export type CloudName = 'AzureCloud' | 'AzureUSGovernment' | 'AzureChinaCloud';

/** The endpoints of one cloud. */
export interface AzureCloudEndpoints {
  name: CloudName;
  /** Azure Resource Manager base URL. */
  armEndpoint: string;
  /** Microsoft Entra ID authority host that `DefaultAzureCredential` signs in with. */
  authorityHost: string;
  /** The resource ARM tokens are requested for; the scope is `<audience>/.default`. */
  audience: string;
}

/** Every supported cloud, the public one first. */
export const AZURE_CLOUDS: Readonly<Record<CloudName, AzureCloudEndpoints>> = {
  AzureCloud: {
    name: 'AzureCloud',
    armEndpoint: 'https://management.azure.com',
    authorityHost: 'https://login.microsoftonline.com',
    audience: 'https://management.azure.com',
  },
  AzureUSGovernment: {
    name: 'AzureUSGovernment',
    armEndpoint: 'https://management.usgovcloudapi.net',
    authorityHost: 'https://login.microsoftonline.us',
    audience: 'https://management.usgovcloudapi.net',
  },
  AzureChinaCloud: {
    name: 'AzureChinaCloud',
    armEndpoint: 'https://management.chinacloudapi.cn',
    authorityHost: 'https://login.chinacloudapi.cn',
    audience: 'https://management.chinacloudapi.cn',
  },
};

/** The names `--cloud` accepts. */
export const CLOUD_NAMES = Object.keys(AZURE_CLOUDS) as CloudName[];

/** The environment variable that selects the cloud when `--cloud` is not given. */
export const CLOUD_ENV = 'PODID_MIGRATE_CLOUD';

/** True when `name` is a supported cloud (exact spelling, as `az cloud list` prints it). */
export function isCloudName(name: string): name is CloudName {
  return Object.hasOwn(AZURE_CLOUDS, name);
}
