/**
 * What the workload identity runbook sets up per service, derived from the inventory and the
 * live workloads: which service account each service's pods run as under workload identity
 * (the template's own, or a dedicated one named after the workload when the template uses
 * `default`; always a dedicated one for services whose pods another system creates: bare Jobs,
 * Pods, CronJobs), and so which federated identity credentials each identity needs (one per
 * namespace/service account pair) and which annotations each service account carries.
 *
 * `wi-preflight` (limits), `wi-federate` (credentials) and `wi-serviceaccounts` (annotations)
 * all plan from {@link readWorkloadIdentityTargets}, so they agree on names.
 */
import { createHash } from 'node:crypto';
import type { FederatedCredential, ManagedIdentity } from '../../../azure/gateway.ts';
import { sameIssuer } from '../../../azure/gateway.ts';
import type { KubeObject } from '../../../kube/gateway.ts';
import type { Ctx } from '../context.ts';
import type { InventoryDocument, InventoryIdentity } from '../inventory-model.ts';
import { patchableKind, recordedServiceAccounts, refOfKind, servicesOf, templateServiceAccount, type WiService } from './workloads.ts';

/** Service account annotation the webhook turns into `AZURE_CLIENT_ID`. */
export const WI_CLIENT_ID_ANNOTATION = 'azure.workload.identity/client-id';

/** Service account annotation the webhook turns into `AZURE_TENANT_ID` (else the cluster's tenant). */
export const WI_TENANT_ID_ANNOTATION = 'azure.workload.identity/tenant-id';

/** Label on a service account this tool created for a workload that ran as `default` (value: the step that created it). */
export const WI_ACCOUNT_OWNER_LABEL = 'podid-migrate.io/created-by';

/** Journal data key under which `wi-enable` records the cluster's issuer URL (`steps.wi-enable.data.issuerUrl`). */
export const ISSUER_URL_KEY = 'issuerUrl';

/** Prefix of the federated credentials this tool names. */
export const FEDERATED_CREDENTIAL_PREFIX = 'podid-migrate';

/** The subject Kubernetes puts in a service account token: `system:serviceaccount:<ns>:<sa>`. */
export function subjectOf(namespace: string, serviceAccount: string): string {
  return `system:serviceaccount:${namespace}:${serviceAccount}`;
}

/**
 * The deterministic name of the federated credential for a namespace/service account pair:
 * `podid-migrate-<ns>-<sa>` (Entra allows 3-120 characters, letters, digits, `-` and `_`,
 * starting with a letter or digit); a longer one is cut and ends in a hash of the full pair, so
 * two pairs never share a name and a resumed run finds the credential it created.
 */
export function federatedCredentialName(namespace: string, serviceAccount: string): string {
  const raw = `${FEDERATED_CREDENTIAL_PREFIX}-${namespace}-${serviceAccount}`.replace(/[^A-Za-z0-9_-]/g, '-');
  if (raw.length <= 120) return raw;
  const hash = createHash('sha256').update(`${namespace}/${serviceAccount}`).digest('hex').slice(0, 10);
  return `${raw.slice(0, 109)}-${hash}`;
}

/** The service account a workload running as `default` gets: named after the workload. */
export function dedicatedServiceAccountName(workloadName: string): string {
  return workloadName;
}

/** Where one service's pods get their workload identity. */
export interface ServiceTarget {
  service: WiService;
  /** The live workload (absent for a kind without a template this runbook changes: Job, Pod, CronJob). */
  live?: KubeObject;
  /** The service account its pods run as under workload identity. */
  serviceAccount: string;
  /** True when the template runs as `default` and the service gets {@link dedicatedServiceAccountName}. */
  dedicated: boolean;
}

/** One service account and everything that runs as it. */
export interface AccountTarget {
  namespace: string;
  name: string;
  /** The identities of the services running as it (more than one cannot be: one client-id annotation). */
  identities: InventoryIdentity[];
  services: ServiceTarget[];
  /** True when the account is a dedicated one this runbook creates (when absent). */
  dedicated: boolean;
}

/** One federated credential an identity needs. */
export interface CredentialTarget {
  identity: InventoryIdentity;
  /** The identity's resource id (targets are only built for identities that have one). */
  identityId: string;
  namespace: string;
  serviceAccount: string;
  subject: string;
  name: string;
  /** `<ns>/<name>` of the services it serves. */
  services: string[];
}

/** Everything the runbook's early steps plan from. */
export interface WorkloadIdentityTargets {
  services: ServiceTarget[];
  /** Services whose workload (Deployment, StatefulSet, DaemonSet) is gone: not migrated by the runbook. */
  skipped: { service: WiService; reason: string }[];
  accounts: AccountTarget[];
  credentials: CredentialTarget[];
}

/**
 * The service account a service runs as under workload identity, from its template: the
 * template's own, or a dedicated one when it runs as `default` (never annotate `default`: every
 * pod of the namespace without an account of its own would get the identity).
 */
export function accountForTemplate(templateAccount: string, workloadName: string): { serviceAccount: string; dedicated: boolean } {
  if (templateAccount === 'default') return { serviceAccount: dedicatedServiceAccountName(workloadName), dedicated: true };
  return { serviceAccount: templateAccount, dedicated: false };
}

/**
 * Pure: the targets from the inventory's services and their live workloads (`live` by
 * `<ns>/<name>`). A service `wi-serviceaccounts` already recorded keeps the account recorded
 * (its template may already run as it).
 */
export function targetsOf(inv: InventoryDocument, live: ReadonlyMap<string, KubeObject | undefined>, recorded: Readonly<Record<string, { name: string; created?: boolean }>> = {}): WorkloadIdentityTargets {
  const services: ServiceTarget[] = [];
  const skipped: WorkloadIdentityTargets['skipped'] = [];
  for (const s of servicesOf(inv)) {
    const rec = recorded[s.service];
    if (!patchableKind(s.kind)) {
      // Bare Jobs, Pods, CronJobs: their pods come from another system (a batch scheduler, an
      // operator), which the operator points at this account; it gets one of its own.
      services.push({ service: s, serviceAccount: rec?.name ?? dedicatedServiceAccountName(s.name), dedicated: true });
      continue;
    }
    const obj = live.get(s.service);
    if (!obj) {
      skipped.push({ service: s, reason: `${s.kind} ${s.service} does not exist` });
      continue;
    }
    const account = rec ? { serviceAccount: rec.name, dedicated: rec.created === true || rec.name === dedicatedServiceAccountName(s.name) } : accountForTemplate(templateServiceAccount(obj), s.name);
    services.push({ service: s, live: obj, ...account });
  }
  const accounts = new Map<string, AccountTarget>();
  for (const t of services) {
    const key = `${t.service.namespace}/${t.serviceAccount}`;
    let a = accounts.get(key);
    if (!a) {
      a = { namespace: t.service.namespace, name: t.serviceAccount, identities: [], services: [], dedicated: t.dedicated };
      accounts.set(key, a);
    }
    a.services.push(t);
    a.dedicated &&= t.dedicated;
    if (!a.identities.some((i) => sameIdentity(i, t.service.identity))) a.identities.push(t.service.identity);
  }
  const credentials = new Map<string, CredentialTarget>();
  for (const a of accounts.values()) {
    for (const identity of a.identities) {
      if (!identity.resourceId) continue;
      const key = `${identity.resourceId.toLowerCase()}|${a.namespace}/${a.name}`;
      const services = a.services.filter((t) => sameIdentity(t.service.identity, identity)).map((t) => t.service.service);
      credentials.set(key, {
        identity,
        identityId: identity.resourceId,
        namespace: a.namespace,
        serviceAccount: a.name,
        subject: subjectOf(a.namespace, a.name),
        name: federatedCredentialName(a.namespace, a.name),
        services,
      });
    }
  }
  const byName = (x: { namespace: string; name: string }, y: { namespace: string; name: string }) => `${x.namespace}/${x.name}`.localeCompare(`${y.namespace}/${y.name}`);
  return {
    services,
    skipped,
    accounts: [...accounts.values()].sort(byName),
    credentials: [...credentials.values()].sort((x, y) => x.identityId.toLowerCase().localeCompare(y.identityId.toLowerCase()) || x.subject.localeCompare(y.subject)),
  };
}

/** Reads the services' workloads (one get each; the read snapshot answers them from one list per kind) and builds the targets. */
export async function readWorkloadIdentityTargets(ctx: Ctx, inv: InventoryDocument): Promise<WorkloadIdentityTargets> {
  const live = new Map<string, KubeObject | undefined>();
  await Promise.all(
    servicesOf(inv)
      .filter((s) => patchableKind(s.kind))
      .map(async (s) => {
        live.set(s.service, await ctx.kube.get(refOfKind(s.kind as 'Deployment'), s.namespace, s.name));
      }),
  );
  return targetsOf(inv, live, recordedServiceAccounts(ctx));
}

/** Same identity: same resource id, else same namespace/name. */
export function sameIdentity(a: InventoryIdentity, b: InventoryIdentity): boolean {
  if (a.resourceId && b.resourceId) return a.resourceId.toLowerCase() === b.resourceId.toLowerCase();
  return a.namespace === b.namespace && a.name === b.name;
}

/** `<ns>/<name>` of an identity for messages. */
export function identityLabel(i: InventoryIdentity): string {
  return `${i.namespace}/${i.name}`;
}

/**
 * Whether an existing credential already does what `target` needs: same subject and, once the
 * cluster has an issuer, the same issuer (without one, nothing of this cluster can exist yet).
 */
export function credentialSatisfies(existing: FederatedCredential, target: Pick<CredentialTarget, 'subject'>, issuerUrl: string | undefined): boolean {
  return issuerUrl !== undefined && existing.subject === target.subject && sameIssuer(existing.issuer, issuerUrl);
}

/** The client id and tenant an identity's service accounts are annotated with: the inventory's client id, else ARM's. */
export function annotationsFor(identity: InventoryIdentity, arm: ManagedIdentity | undefined): Record<string, string> {
  const clientId = identity.clientId ?? arm?.clientId;
  return {
    ...(clientId ? { [WI_CLIENT_ID_ANNOTATION]: clientId } : {}),
    ...(arm?.tenantId ? { [WI_TENANT_ID_ANNOTATION]: arm.tenantId } : {}),
  };
}
