/**
 * The Azure Identity SDK versions that support workload identity (`WorkloadIdentityCredential`,
 * or `DefaultAzureCredential` reading `AZURE_FEDERATED_TOKEN_FILE`). A service on an older SDK
 * only speaks IMDS and needs the workload identity proxy sidecar. Pure functions.
 */
import type { SdkLanguage } from '../inventory-model.ts';

/** The first version of each language's Azure Identity library with workload identity. */
export const MIN_SDK_VERSIONS: Readonly<Record<SdkLanguage, { package: string; version: string }>> = {
  dotnet: { package: 'Azure.Identity', version: '1.9.0' },
  java: { package: 'azure-identity', version: '1.9.0' },
  go: { package: 'azidentity', version: '1.3.0' },
  node: { package: '@azure/identity', version: '3.2.0' },
  python: { package: 'azure-identity', version: '1.13.0' },
};

/** `1.9.0`, `v1.3`, `3.2.0-beta.1` as `[major, minor, patch]` (missing parts 0); undefined when not a version. */
export function parseSdkVersion(text: string): [number, number, number] | undefined {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$/.exec(text.trim());
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}

/**
 * True when `version` of `language`'s library supports workload identity. A pre-release of
 * the minimum (`1.9.0-beta.1`) counts as older: the feature landed in the release.
 */
export function sdkSupportsWorkloadIdentity(language: SdkLanguage, version: string): boolean {
  const have = parseSdkVersion(version);
  const min = parseSdkVersion(MIN_SDK_VERSIONS[language].version)!;
  if (!have) return false;
  for (let i = 0; i < 3; i++) if (have[i] !== min[i]) return have[i] > min[i];
  return !/-/.test(version.replace(/\+.*$/, ''));
}
