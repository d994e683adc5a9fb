/**
 * ARM routes of Microsoft Entra Workload ID, plugged into the sandbox's ARM endpoint as an
 * {@link ArmRouteExtension}:
 *
 * - `PUT .../Microsoft.ContainerService/managedClusters/<name>` (what
 *   `managedClusters.beginCreateOrUpdate` sends): reads `properties.oidcIssuerProfile.enabled`
 *   and `properties.securityProfile.workloadIdentity.enabled`; a change is a long-running
 *   update (200 with `provisioningState: Updating` and `Azure-AsyncOperation` on
 *   `Microsoft.ContainerService/locations/<loc>/operations/<id>`), after which
 *   `oidcIssuerProfile.issuerURL` (the wire spelling) is set. AKS's rules: workload identity needs the issuer, the
 *   issuer cannot be disabled once enabled, a second update while one runs gets 409
 *   `OperationNotAllowed`.
 * - `PATCH` of the managed cluster (`beginUpdateTags`): replaces the tags, same long-running shape.
 * - `.../Microsoft.ManagedIdentity/userAssignedIdentities/<id>/federatedIdentityCredentials[/<name>]`:
 *   list, get, PUT (201 created / 200 updated), DELETE (200, or 204 when absent), with the
 *   resource provider's limit, uniqueness and concurrency rules from {@link WorkloadIdentityState}.
 *
 * The managed cluster JSON served by GET is completed by {@link ArmRouteExtension.decorateManagedCluster}.
 */
import type { Clock } from '../clock.ts';
import type { ArmExtensionReply, ArmExtensionRequest, ArmRouteExtension } from './server.ts';
import { ArmError, notFound, type ArmState } from './state.ts';
import type { WorkloadIdentityState } from '../workload-identity/state.ts';

const FIC_TYPE = 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials';

/** Builds the extension over the shared ARM and workload identity state. */
export function workloadIdentityArmRoutes(opts: { arm: ArmState; wi: WorkloadIdentityState; clock: Clock }): ArmRouteExtension {
  const { arm, wi, clock } = opts;
  let tags: Record<string, string> = {};
  /** Flags requested by the update in flight (GET shows them while it runs). */
  let pending: { oidcIssuerEnabled: boolean; workloadIdentityEnabled: boolean } | undefined;
  let lastUpdateFailed = false;
  /** AKS shows `securityProfile.workloadIdentity` once it was ever set, `enabled: false` after a disable. */
  let workloadIdentityProfileSet = wi.workloadIdentityEnabled;

  function ficJson(c: { id: string; name: string; issuer: string; subject: string; audiences: string[] }): object {
    return { id: c.id, name: c.name, type: FIC_TYPE, properties: { issuer: c.issuer, subject: c.subject, audiences: c.audiences } };
  }

  function identityFor(req: ArmExtensionRequest): { id: string; name: string } {
    const rgName = arm.resourceGroup(req.segs[1]);
    if (!rgName) throw new ArmError(404, 'ResourceGroupNotFound', `Resource group '${req.segs[1]}' could not be found.`);
    const name = req.segs[5];
    const identity = arm.identities().find((i) => i.resourceGroup.toLowerCase() === rgName.toLowerCase() && i.name.toLowerCase() === name.toLowerCase());
    if (!identity) throw notFound('Microsoft.ManagedIdentity/userAssignedIdentities', name, rgName);
    return identity;
  }

  async function federatedCredentials(req: ArmExtensionRequest): Promise<ArmExtensionReply> {
    const identity = identityFor(req);
    const ficName = req.segs[7];
    if (ficName === undefined) {
      if (req.method !== 'GET') throw methodNotAllowed(req.method);
      return { status: 200, body: { value: wi.list(identity.id).map(ficJson) } };
    }
    if (req.method === 'GET') {
      const c = wi.get(identity.id, ficName);
      if (!c) throw notFound(FIC_TYPE, `${identity.name}/${ficName}`, req.segs[1]);
      return { status: 200, body: ficJson(c) };
    }
    if (req.method !== 'PUT' && req.method !== 'DELETE') throw methodNotAllowed(req.method);
    const end = wi.beginWrite(identity.id);
    try {
      let reply: ArmExtensionReply;
      if (req.method === 'PUT') {
        const body = req.body as { properties?: Record<string, unknown> } | undefined;
        if (!body || typeof body !== 'object' || Array.isArray(body) || !body.properties || typeof body.properties !== 'object') {
          throw new ArmError(400, 'BadRequest', "The request body must contain 'properties' with 'issuer', 'subject' and 'audiences'.", { target: 'properties' });
        }
        const r = wi.upsert(identity.id, ficName, body.properties);
        reply = { status: r.created ? 201 : 200, body: ficJson(r.credential) };
      } else {
        reply = { status: wi.remove(identity.id, ficName) ? 200 : 204 };
      }
      // The write takes a while at the RP; a second write to this identity meanwhile gets 409.
      await clock.sleep(wi.config.credentialWriteSeconds * 1000);
      return reply;
    } finally {
      end();
    }
  }

  function readFlags(body: any): { oidc?: boolean; wi?: boolean } {
    const p = body?.properties;
    if (!p || typeof p !== 'object') throw new ArmError(400, 'InvalidParameter', "The value of parameter 'properties' is invalid.", { target: 'properties' });
    const oidc = p.oidcIssuerProfile?.enabled;
    const wiEnabled = p.securityProfile?.workloadIdentity?.enabled;
    if (oidc !== undefined && typeof oidc !== 'boolean') throw new ArmError(400, 'InvalidParameter', "The value of parameter 'oidcIssuerProfile.enabled' is invalid.", { target: 'oidcIssuerProfile.enabled' });
    if (wiEnabled !== undefined && typeof wiEnabled !== 'boolean') throw new ArmError(400, 'InvalidParameter', "The value of parameter 'securityProfile.workloadIdentity.enabled' is invalid.", { target: 'securityProfile.workloadIdentity.enabled' });
    return { oidc, wi: wiEnabled };
  }

  function refuseWhileUpdating(): void {
    if (wi.clusterUpdate) {
      throw new ArmError(409, 'OperationNotAllowed', `Operation is not allowed because there's an in progress update managed cluster operation on the managed cluster started at ${new Date(wi.clusterUpdate.startedAt).toISOString()}. Please wait for the operation to complete.`);
    }
  }

  async function managedCluster(req: ArmExtensionRequest): Promise<ArmExtensionReply | undefined> {
    if (req.method !== 'PUT' && req.method !== 'PATCH') return undefined;
    const mc = arm.managedCluster();
    const rgName = arm.resourceGroup(req.segs[1]);
    if (!mc || !rgName || mc.resourceGroup.toLowerCase() !== rgName.toLowerCase() || mc.name.toLowerCase() !== req.lower[5]) {
      if (req.method === 'PATCH') throw notFound('Microsoft.ContainerService/managedClusters', req.segs[5], req.segs[1]);
      throw new ArmError(400, 'BadRequest', `Creating a new managed cluster is not supported by the sandbox: only '${mc?.name}' in '${mc?.resourceGroup}' exists.`);
    }
    refuseWhileUpdating();
    let apply: () => void;
    if (req.method === 'PATCH') {
      const t = (req.body as { tags?: unknown } | undefined)?.tags;
      if (t !== undefined && (t === null || typeof t !== 'object' || Array.isArray(t))) throw new ArmError(400, 'InvalidParameter', "The value of parameter 'tags' is invalid.", { target: 'tags' });
      const next = { ...((t as Record<string, string>) ?? {}) };
      tags = next;
      apply = () => {};
    } else {
      const f = readFlags(req.body);
      const oidc = f.oidc ?? wi.oidcIssuerEnabled;
      const wiOn = f.wi ?? wi.workloadIdentityEnabled;
      if (wi.oidcIssuerEnabled && !oidc) throw new ArmError(400, 'InvalidParameter', 'The OIDC issuer cannot be disabled once it is enabled on a managed cluster.', { target: 'oidcIssuerProfile.enabled' });
      if (wiOn && !oidc) throw new ArmError(400, 'InvalidParameter', 'Workload identity requires the OIDC issuer: set oidcIssuerProfile.enabled to true as well.', { target: 'securityProfile.workloadIdentity.enabled' });
      const bodyTags = (req.body as { tags?: unknown }).tags;
      if (bodyTags && typeof bodyTags === 'object' && !Array.isArray(bodyTags)) tags = { ...(bodyTags as Record<string, string>) };
      pending = { oidcIssuerEnabled: oidc, workloadIdentityEnabled: wiOn };
      if (f.wi !== undefined) workloadIdentityProfileSet = true;
      const want = pending;
      // AKS deploys the add-on while the operation runs; the switch flips when it completes.
      wi.emit('cluster-updating', want);
      apply = () => wi.setClusterFlags(want);
    }
    const startedAt = clock.now();
    const fail = req.fail;
    const done = (async () => {
      await clock.sleep(wi.config.enableSeconds * 1000);
      if (fail) throw new ArmError(500, fail.code ?? 'InternalOperationError', fail.message ?? 'Internal server error occurred. Please retry the operation.');
      apply();
    })();
    wi.clusterUpdate = { startedAt, done };
    lastUpdateFailed = false;
    done.then(
      () => {
        wi.clusterUpdate = undefined;
        pending = undefined;
      },
      () => {
        wi.clusterUpdate = undefined;
        pending = undefined;
        lastUpdateFailed = true;
      },
    );
    const urls = req.trackOperation({ startedAt, done }, 'Microsoft.ContainerService', mc.location);
    return { status: 200, body: req.managedClusterJson(), headers: { 'Azure-AsyncOperation': urls.asyncOperation } };
  }

  return {
    async handle(req) {
      const r = req.lower;
      if (r[0] !== 'resourcegroups' || r[2] !== 'providers') return undefined;
      if (r[3] === 'microsoft.managedidentity' && r[4] === 'userassignedidentities' && r[6] === 'federatedidentitycredentials' && (r.length === 7 || r.length === 8)) {
        return federatedCredentials(req);
      }
      if (r[3] === 'microsoft.containerservice' && r[4] === 'managedclusters' && r.length === 6) return managedCluster(req);
      return undefined;
    },
    decorateManagedCluster(json) {
      json.tags = { ...tags };
      const p = (json.properties ??= {});
      const oidc = pending?.oidcIssuerEnabled ?? wi.oidcIssuerEnabled;
      const wiOn = pending?.workloadIdentityEnabled ?? wi.workloadIdentityEnabled;
      p.oidcIssuerProfile = { enabled: oidc, ...(wi.issuerUrl ? { issuerURL: wi.issuerUrl } : {}) };
      p.securityProfile = { ...(p.securityProfile ?? {}), ...(wiOn || workloadIdentityProfileSet ? { workloadIdentity: { enabled: wiOn } } : {}) };
      if (wi.clusterUpdate) p.provisioningState = 'Updating';
      else if (lastUpdateFailed) p.provisioningState = 'Failed';
    },
  };
}

function methodNotAllowed(method: string): ArmError {
  return new ArmError(405, 'MethodNotAllowed', `The requested resource does not support http method '${method}'.`);
}
