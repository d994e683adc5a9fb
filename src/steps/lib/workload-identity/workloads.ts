/**
 * The inventory's services as the workload identity runbook's later steps see them: which
 * workload each one is, whether its pod template can be patched, which service account its
 * pods run as (the dedicated one `wi-serviceaccounts` created, else the template's), and whether
 * the operator marked it as needing the proxy sidecar.
 */
import type { KubeObject } from '../../../kube/gateway.ts';
import type { Ctx } from '../context.ts';
import type { InventoryDocument, InventoryIdentity, InventoryService } from '../inventory-model.ts';
import type { TemplateWorkload } from '../../executors/patch-pod-template.ts';
import { KINDS } from '../../../kube/kinds.ts';

export { WI_USE_LABEL } from './token-probe.ts';

/** Pod annotation asking the webhook for the proxy sidecar (IMDS-style requests of older SDKs). */
export const WI_PROXY_ANNOTATION = 'azure.workload.identity/inject-proxy-sidecar';

/** The label AAD Pod Identity matches bindings by. */
export const BINDING_LABEL = 'aadpodidbinding';

/** What `wi-serviceaccounts` records (journal data `serviceAccounts`): the account each service's pods use. */
export type ServiceAccountRecord = Record<string, { namespace: string; name: string; created?: boolean }>;

/** One service of the inventory with its identity. */
export interface WiService {
  /** `<namespace>/<name>`. */
  service: string;
  namespace: string;
  name: string;
  /** The top controller's kind (`Deployment` when the inventory does not say). */
  kind: string;
  identity: InventoryIdentity;
  inventory: InventoryService;
  /** Marked in the inventory as needing the proxy sidecar (`workloadIdentity.proxySidecar`). */
  proxySidecar: boolean;
}

const PATCHABLE: readonly string[] = ['Deployment', 'DaemonSet', 'StatefulSet'];

/** True when the runbook can patch (and roll out) this kind's pod template. */
export function patchableKind(kind: string): kind is TemplateWorkload {
  return PATCHABLE.includes(kind);
}

/** Every service of the inventory, sorted by name, each with its identity. */
export function servicesOf(inv: InventoryDocument): WiService[] {
  const out: WiService[] = [];
  for (const identity of inv.identities) {
    for (const s of identity.services) {
      const [namespace, name] = s.name.includes('/') ? s.name.split('/') : [identity.namespace, s.name];
      const wi = (s as { workloadIdentity?: { proxySidecar?: boolean } }).workloadIdentity;
      out.push({ service: `${namespace}/${name}`, namespace, name, kind: s.kind ?? 'Deployment', identity, inventory: s, proxySidecar: wi?.proxySidecar === true });
    }
  }
  return out.sort((a, b) => a.service.localeCompare(b.service));
}

/** The reference of a patchable kind. */
export function refOfKind(kind: TemplateWorkload) {
  return kind === 'Deployment' ? KINDS.Deployment : kind === 'DaemonSet' ? KINDS.DaemonSet : KINDS.StatefulSet;
}

/** The service account named in a workload's pod template (`default` when none is). */
export function templateServiceAccount(obj: KubeObject): string {
  const spec = (obj.spec as { template?: { spec?: { serviceAccountName?: string; serviceAccount?: string } } } | undefined)?.template?.spec;
  return spec?.serviceAccountName || spec?.serviceAccount || 'default';
}

/** A workload's pod template labels. */
export function templateLabels(obj: KubeObject): Record<string, string> {
  return (obj.spec as { template?: { metadata?: { labels?: Record<string, string> } } } | undefined)?.template?.metadata?.labels ?? {};
}

/** What `wi-serviceaccounts` recorded, or an empty record before it ran. */
export function recordedServiceAccounts(ctx: Pick<Ctx, 'journal'>): ServiceAccountRecord {
  return ctx.journal.of('wi-serviceaccounts').getData<ServiceAccountRecord>('serviceAccounts') ?? {};
}

/**
 * The service account a service's pods are to run as under workload identity: the one
 * `wi-serviceaccounts` recorded for it, else the one its template names now.
 */
export function serviceAccountFor(ctx: Pick<Ctx, 'journal'>, s: Pick<WiService, 'service'>, live: KubeObject | undefined): string {
  return recordedServiceAccounts(ctx)[s.service]?.name ?? (live ? templateServiceAccount(live) : 'default');
}
