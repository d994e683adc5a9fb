/**
 * The workload identity add-on's in-cluster part, as AKS deploys it when workload identity is
 * turned on: the webhook Deployment `azure-wi-webhook-controller-manager` (2 replicas,
 * kube-system, label `azure-workload-identity.io/system: "true"`) and its Service
 * `azure-wi-webhook-webhook-service`. The mutating webhook is called through that Service; with
 * failurePolicy Fail a labelled pod is refused while no webhook pod is ready, with the API
 * server's "failed calling webhook" error.
 */
import { isPodReady } from '../controllers/util.ts';
import { applyDefaults } from '../kube-api/defaults.ts';
import { StoreError, type KObject, type ObjectStore } from '../store.ts';
import { PROXY_VERSION } from './constants.ts';
import { WEBHOOK_NAME } from './webhook.ts';

export const WEBHOOK_DEPLOYMENT = 'azure-wi-webhook-controller-manager';
export const WEBHOOK_SERVICE = 'azure-wi-webhook-webhook-service';
export const WEBHOOK_LABEL = 'azure-workload-identity.io/system';
const NAMESPACE = 'kube-system';

/** Creates the webhook Deployment and Service unless present (idempotent, as the add-on reconciler is). */
export function installWebhook(store: ObjectStore): void {
  const deployments = store.typeOrThrow('apps', 'deployments');
  const services = store.typeOrThrow('', 'services');
  const labels = { [WEBHOOK_LABEL]: 'true', 'kubernetes.azure.com/managedby': 'aks' };
  if (!store.peek(services, NAMESPACE, WEBHOOK_SERVICE)) {
    store.create(services, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: WEBHOOK_SERVICE, namespace: NAMESPACE, labels },
      spec: { selector: { [WEBHOOK_LABEL]: 'true' }, ports: [{ port: 443, protocol: 'TCP', targetPort: 9443 }] },
    });
  }
  if (store.peek(deployments, NAMESPACE, WEBHOOK_DEPLOYMENT)) return;
  const d: KObject = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: WEBHOOK_DEPLOYMENT, namespace: NAMESPACE, labels },
    spec: {
      replicas: 2,
      selector: { matchLabels: { [WEBHOOK_LABEL]: 'true' } },
      template: {
        metadata: { labels: { [WEBHOOK_LABEL]: 'true' } },
        spec: {
          priorityClassName: 'system-cluster-critical',
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          serviceAccountName: 'default',
          containers: [
            {
              name: 'manager',
              image: `mcr.microsoft.com/oss/v2/azure/workload-identity/webhook:${PROXY_VERSION}`,
              args: ['--log-level=info', '--disable-cert-rotation=true', '--metrics-addr=:8095', '--health-addr=:9440'],
              ports: [{ containerPort: 9443, name: 'webhook-server', protocol: 'TCP' }],
            },
          ],
        },
      },
    },
  };
  store.create(deployments, d, { prepare: (o) => applyDefaults(deployments, o) });
}

/** Removes the add-on's Deployment and Service (workload identity turned off). */
export function uninstallWebhook(store: ObjectStore): void {
  for (const [group, resource, name] of [['apps', 'deployments', WEBHOOK_DEPLOYMENT], ['', 'services', WEBHOOK_SERVICE]] as const) {
    const t = store.typeOrThrow(group, resource);
    if (store.peek(t, NAMESPACE, name)) store.delete(t, NAMESPACE, name);
  }
}

/** Throws the API server's error for a labelled pod while the webhook has no ready endpoint. */
export function requireWebhookEndpoint(store: ObjectStore): void {
  const pods = store.type('', 'pods');
  if (pods) for (const p of store.scan(pods, { namespace: NAMESPACE, labelSelector: `${WEBHOOK_LABEL}=true` })) if (!p.metadata.deletionTimestamp && isPodReady(p)) return;
  throw new StoreError(
    'InternalError',
    `Internal error occurred: failed calling webhook "${WEBHOOK_NAME}": failed to call webhook: Post "https://${WEBHOOK_SERVICE}.${NAMESPACE}.svc:443/mutate-v1-pod?timeout=10s": no endpoints available for service "${WEBHOOK_SERVICE}"`,
  );
}
