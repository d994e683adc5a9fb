/**
 * What later steps read about the migration: the inventory document and the Pod Identity
 * workloads the inventory step recorded. One implementation each, right in a dry run too.
 */
import { PreconditionError } from '../../engine/errors.ts';
import type { KubeGateway } from '../../kube/gateway.ts';
import { KINDS } from '../../kube/kinds.ts';
import type { Ctx } from './context.ts';
import { discover } from './inventory/discover.ts';
import { asInventory, type InventoryDocument } from './inventory-model.ts';
import { findMicDeployments, findNmiDaemonSets, type PodIdentityWorkload } from './pod-identity.ts';

/** What the inventory step records as `setData('podIdentity', …)` for later steps. */
export interface PodIdentityData {
  nmi: { namespace: string; name: string; install: 'raw' | 'helm'; version?: string };
  mic?: { namespace: string; name: string; replicas: number };
}

/**
 * The inventory later steps work from: `ctx.inventory` (the file the inventory step wrote, or in a
 * dry run and within one `plan` the document it would write; validated). In a dry run of a later
 * step alone, with no file, it is computed from the live cluster.
 * @throws PreconditionError when there is none yet (the engine shows "depends on inventory")
 */
export async function inventoryFor(ctx: Ctx): Promise<InventoryDocument> {
  if (ctx.inventory !== undefined && ctx.inventory !== null) return asInventory(ctx.inventory, ctx.inventoryPath);
  if (ctx.dryRun !== 'none') return (await discover(ctx)).document;
  throw new PreconditionError(`there is no inventory at ${ctx.inventoryPath} yet.`, 'Apply the inventory step first: podid-migrate apply --step inventory');
}

/** NMI and MIC found by listing DaemonSets and Deployments (two list calls). */
export async function findPodIdentityLive(kube: KubeGateway): Promise<{ nmi?: PodIdentityWorkload; mic?: PodIdentityWorkload }> {
  const [daemonSets, deployments] = await Promise.all([kube.list(KINDS.DaemonSet), kube.list(KINDS.Deployment)]);
  return { nmi: findNmiDaemonSets(daemonSets)[0], mic: findMicDeployments(deployments)[0] };
}

/** The NMI and MIC workloads as they are now, located by what the inventory step recorded (live discovery in a dry run or for an older journal). */
export async function podIdentityFor(ctx: Ctx): Promise<{ nmi?: PodIdentityWorkload; mic?: PodIdentityWorkload }> {
  const data = ctx.journal.of('inventory').getData<PodIdentityData>('podIdentity');
  if (data) {
    const [ds, dep] = await Promise.all([
      ctx.kube.get(KINDS.DaemonSet, data.nmi.namespace, data.nmi.name),
      data.mic ? ctx.kube.get(KINDS.Deployment, data.mic.namespace, data.mic.name) : Promise.resolve(undefined),
    ]);
    return { nmi: ds ? findNmiDaemonSets([ds])[0] : undefined, mic: dep ? findMicDeployments([dep])[0] : undefined };
  }
  if (ctx.dryRun === 'none' && ctx.inventory === undefined) {
    throw new PreconditionError('the inventory step has not recorded the NMI and MIC workloads yet.', 'Apply the inventory step first: podid-migrate apply --step inventory');
  }
  return findPodIdentityLive(ctx.kube);
}

/** NMI DaemonSet location: what the inventory step recorded, else the inventory document. */
export function nmiRefOf(ctx: Pick<Ctx, 'journal' | 'inventory'>): { namespace: string; name: string } {
  const recorded = ctx.journal.of('inventory').getData<PodIdentityData>('podIdentity');
  if (recorded?.nmi?.namespace && recorded.nmi.name) return { namespace: recorded.nmi.namespace, name: recorded.nmi.name };
  const nmi = (ctx.inventory as InventoryDocument | undefined)?.podIdentity?.nmi;
  if (nmi?.namespace && nmi.name) return { namespace: nmi.namespace, name: nmi.name };
  throw new PreconditionError('the NMI DaemonSet is not known yet: the inventory step records it.', 'Apply the inventory step first: podid-migrate apply --step inventory');
}

/** The MIC Deployment as recorded by `mic-scale` (or `inventory`). */
export interface MicRef {
  namespace: string;
  name: string;
  replicas?: number;
}

/** MIC's location: what `mic-scale` recorded, else what `inventory` recorded, else the inventory document. */
export function micRefOf(ctx: Pick<Ctx, 'journal' | 'inventory'>): MicRef {
  const recorded = ctx.journal.of('mic-scale').getData<MicRef>('mic');
  if (recorded?.namespace && recorded.name) return recorded;
  const inv = ctx.journal.of('inventory').getData<PodIdentityData>('podIdentity');
  if (inv?.mic?.namespace && inv.mic.name) return inv.mic;
  const mic = (ctx.inventory as InventoryDocument | undefined)?.podIdentity?.mic;
  if (mic?.namespace && mic.name) return { namespace: mic.namespace, name: mic.name };
  throw new PreconditionError('the MIC Deployment is not known yet: the inventory and mic-scale steps record it.', 'Apply the inventory step first: podid-migrate apply --step inventory');
}
