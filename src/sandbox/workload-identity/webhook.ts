/**
 * The azure-workload-identity mutating admission webhook (`mutation.azure-workload-identity.io`,
 * failurePolicy Fail, pods, CREATE), as AKS installs it once workload identity is enabled. It
 * runs in the sandbox's store admission chain, so it sees every pod created, through the API
 * server or by a controller, exactly as the API server calls the real webhook.
 *
 * For a pod labelled `azure.workload.identity/use: "true"` it reads the pod's service account
 * (`default` when none is named) and:
 * - adds to every container and init container not listed in
 *   `azure.workload.identity/skip-containers` the env `AZURE_CLIENT_ID` (the service account's
 *   `azure.workload.identity/client-id`, left out when the annotation is missing),
 *   `AZURE_TENANT_ID` (its `tenant-id` annotation, else the cluster's tenant),
 *   `AZURE_FEDERATED_TOKEN_FILE` and `AZURE_AUTHORITY_HOST`, none replacing a value already set;
 *   and a read-only mount of the projected volume at `/var/run/secrets/azure/tokens`;
 * - adds the projected volume `azure-identity-token`: a service account token with audience
 *   `api://AzureADTokenExchange` and the expiration from the pod's or service account's
 *   `service-account-token-expiration` annotation (3600-86400, default 3600);
 * - with the annotation `azure.workload.identity/inject-proxy-sidecar`, the `azwi-proxy-init`
 *   init container (privileged, NET_ADMIN, `PROXY_PORT`) and the `azwi-proxy` sidecar as the
 *   first container (`--proxy-port`, postStart probe); refused for hostNetwork pods.
 *
 * Refusals are the API server's answer to a denying webhook:
 * `admission webhook "mutation.azure-workload-identity.io" denied the request: <reason>`.
 */
import { StoreError, type KObject, type ObjectStore } from '../store.ts';
import {
  CLIENT_ID_ANNOTATION,
  DEFAULT_PROXY_PORT,
  DEFAULT_TOKEN_EXPIRATION_SECONDS,
  ENV_AUTHORITY_HOST,
  ENV_CLIENT_ID,
  ENV_TENANT_ID,
  ENV_TOKEN_FILE,
  INJECT_PROXY_ANNOTATION,
  MAX_TOKEN_EXPIRATION_SECONDS,
  MIN_TOKEN_EXPIRATION_SECONDS,
  PROXY_CONTAINER,
  PROXY_IMAGE,
  PROXY_INIT_CONTAINER,
  PROXY_INIT_IMAGE,
  PROXY_PORT_ANNOTATION,
  SKIP_CONTAINERS_ANNOTATION,
  TENANT_ID_ANNOTATION,
  TOKEN_EXCHANGE_AUDIENCE,
  TOKEN_EXPIRATION_ANNOTATION,
  TOKEN_FILE_NAME,
  TOKEN_FILE_PATH,
  TOKEN_MOUNT_PATH,
  TOKEN_VOLUME_NAME,
  USE_LABEL,
} from './constants.ts';

export const WEBHOOK_NAME = 'mutation.azure-workload-identity.io';

export interface WebhookOptions {
  store: ObjectStore;
  tenantId: string;
  /** Value of `AZURE_AUTHORITY_HOST` (with the trailing slash). */
  authorityHost: string;
  /** Whether the webhook is installed right now (workload identity enabled on the cluster). */
  enabled: () => boolean;
  /** Throws when the webhook cannot be called (no ready endpoint); failurePolicy Fail refuses the pod. */
  requireEndpoint?: () => void;
}

function deny(reason: string): StoreError {
  return new StoreError('BadRequest', `admission webhook "${WEBHOOK_NAME}" denied the request: ${reason}`);
}

/** The admission function to register with {@link ObjectStore.addAdmission}. */
export function workloadIdentityWebhook(opts: WebhookOptions): (type: { group: string; resource: string }, obj: KObject) => void {
  return (type, pod) => {
    if (type.group !== '' || type.resource !== 'pods') return;
    if (!opts.enabled()) return;
    if (pod.metadata.labels?.[USE_LABEL] !== 'true') return;
    opts.requireEndpoint?.();
    mutatePod(opts, pod);
  };
}

/** Applies the webhook's mutation to `pod` in place; throws the webhook's denial. */
export function mutatePod(opts: Pick<WebhookOptions, 'store' | 'tenantId' | 'authorityHost'>, pod: KObject): void {
  const { store } = opts;
  const spec = (pod.spec ??= {});
  const ns = String(pod.metadata.namespace ?? 'default');
  const saName = String(spec.serviceAccountName || spec.serviceAccount || 'default');
  const saType = store.type('', 'serviceaccounts');
  const sa = saType ? store.peek(saType, ns, saName) : undefined;
  if (!sa) throw deny(`serviceaccounts "${saName}" not found`);
  const annotations = pod.metadata.annotations ?? {};
  const saAnnotations = sa.metadata.annotations ?? {};

  if (INJECT_PROXY_ANNOTATION in annotations) {
    if (spec.hostNetwork === true) throw deny('hostNetwork is set to true, cannot inject proxy sidecar');
    const rawPort = annotations[PROXY_PORT_ANNOTATION];
    const port = rawPort === undefined ? DEFAULT_PROXY_PORT : Number.parseInt(rawPort, 10);
    if (!Number.isInteger(port) || String(port) !== String(rawPort ?? port)) throw deny(`failed to parse proxy sidecar port: strconv.ParseInt: parsing "${rawPort}": invalid syntax`);
    const inits: any[] = (spec.initContainers ??= []);
    if (!inits.some((c) => c.name === PROXY_INIT_CONTAINER)) inits.push(proxyInitContainer(port));
    const containers: any[] = (spec.containers ??= []);
    if (!containers.some((c) => c.name === PROXY_CONTAINER)) containers.unshift(proxyContainer(port));
  }

  const rawExp = annotations[TOKEN_EXPIRATION_ANNOTATION] || saAnnotations[TOKEN_EXPIRATION_ANNOTATION];
  const expiration = rawExp ? Number(rawExp) : DEFAULT_TOKEN_EXPIRATION_SECONDS;
  if (!Number.isInteger(expiration)) throw deny(`strconv.ParseInt: parsing "${rawExp}": invalid syntax`);
  if (expiration < MIN_TOKEN_EXPIRATION_SECONDS || expiration > MAX_TOKEN_EXPIRATION_SECONDS) {
    throw deny(`token expiration ${expiration} not valid. Expected value to be between ${MIN_TOKEN_EXPIRATION_SECONDS} and ${MAX_TOKEN_EXPIRATION_SECONDS}`);
  }
  const clientId = saAnnotations[CLIENT_ID_ANNOTATION] ?? '';
  const tenantId = TENANT_ID_ANNOTATION in saAnnotations ? saAnnotations[TENANT_ID_ANNOTATION] : opts.tenantId;
  const skip = new Set(String(annotations[SKIP_CONTAINERS_ANNOTATION] ?? '').split(';').map((s) => s.trim()).filter(Boolean));
  const desired: [string, string][] = [
    [ENV_CLIENT_ID, clientId],
    [ENV_TENANT_ID, tenantId],
    [ENV_TOKEN_FILE, TOKEN_FILE_PATH],
    [ENV_AUTHORITY_HOST, opts.authorityHost],
  ];
  for (const list of [spec.initContainers, spec.containers] as (any[] | undefined)[]) {
    for (const c of list ?? []) {
      if (skip.has(c.name)) continue;
      const env: any[] = (c.env ??= []);
      for (const [name, value] of desired) if (value && !env.some((e) => e.name === name)) env.push({ name, value });
      const mounts: any[] = (c.volumeMounts ??= []);
      const mount = { name: TOKEN_VOLUME_NAME, mountPath: TOKEN_MOUNT_PATH, readOnly: true };
      const i = mounts.findIndex((m) => m.name === TOKEN_VOLUME_NAME);
      if (i >= 0) mounts[i] = mount;
      else mounts.push(mount);
    }
  }
  const volume = {
    name: TOKEN_VOLUME_NAME,
    projected: { defaultMode: 420, sources: [{ serviceAccountToken: { audience: TOKEN_EXCHANGE_AUDIENCE, expirationSeconds: expiration, path: TOKEN_FILE_NAME } }] },
  };
  const volumes: any[] = (spec.volumes ??= []);
  const vi = volumes.findIndex((v) => v.name === TOKEN_VOLUME_NAME);
  if (vi >= 0) volumes[vi] = volume;
  else volumes.push(volume);
}

function proxyInitContainer(port: number): Record<string, unknown> {
  return {
    name: PROXY_INIT_CONTAINER,
    image: PROXY_INIT_IMAGE,
    imagePullPolicy: 'IfNotPresent',
    env: [{ name: 'PROXY_PORT', value: String(port) }],
    resources: {},
    securityContext: { capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] }, privileged: true, runAsNonRoot: false, runAsUser: 0 },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  };
}

function proxyContainer(port: number): Record<string, unknown> {
  return {
    name: PROXY_CONTAINER,
    image: PROXY_IMAGE,
    imagePullPolicy: 'IfNotPresent',
    args: [`--proxy-port=${port}`, '--log-level=info'],
    ports: [{ containerPort: port, protocol: 'TCP' }],
    lifecycle: { postStart: { exec: { command: ['/proxy', `--proxy-port=${port}`, '--probe', '--log-level=info'] } } },
    resources: {},
    securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, privileged: false, readOnlyRootFilesystem: true, runAsNonRoot: true },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  };
}
