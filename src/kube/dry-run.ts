/**
 * The one place where dry-run is decided, shared by the Kubernetes and Azure gateways.
 *
 * - `none`: writes are sent.
 * - `server`: Kubernetes writes are sent with `dryRun=All` (the API server validates and
 *   answers, nothing persists); Azure writes are not sent (ARM has no dry-run) but recorded.
 * - `client`: no write call at all; every write is recorded.
 *
 * Steps never see this module: they get a gateway that was built with a mode and cannot
 * change it, and the gateways' transport refuses any write the mode forbids, so a step has
 * no path around it.
 */
import type { DryRunMode } from '../engine/step.ts';

export type { DryRunMode };

/** One write that dry-run kept from persisting. */
export interface DryRunEntry {
  api: 'kube' | 'arm';
  /** The mode in force when it was recorded. */
  mode: Exclude<DryRunMode, 'none'>;
  /** HTTP method of the write, e.g. `PATCH`. */
  method: string;
  /** Path and query the write goes to (no host, no credentials). */
  url: string;
  /** Request body (JSON), when the write has one. */
  body?: unknown;
  /** True when the request was sent with `dryRun=All` and the server answered it. */
  sentAsServerDryRun: boolean;
  /** A short human description, e.g. `add 3 identities to vmss aks-pay-123-vmss`. */
  description: string;
}

/** Collects the would-be writes of one gateway (and its scoped views). */
export class DryRunRecorder {
  readonly mode: DryRunMode;
  private readonly entries: DryRunEntry[] = [];

  constructor(mode: DryRunMode) {
    if (mode !== 'none' && mode !== 'client' && mode !== 'server') throw new Error(`unknown dry-run mode ${String(mode)} (use none, client or server)`);
    this.mode = mode;
  }

  /** True when a Kubernetes write must not be sent at all. */
  get suppressKubeWrites(): boolean {
    return this.mode === 'client';
  }

  /** True when a Kubernetes write must carry `dryRun=All`. */
  get kubeServerDryRun(): boolean {
    return this.mode === 'server';
  }

  /** True when an Azure write must not be sent (both dry-run modes: ARM has no server-side dry-run). */
  get suppressArmWrites(): boolean {
    return this.mode !== 'none';
  }

  record(entry: Omit<DryRunEntry, 'mode'>): void {
    if (this.mode === 'none') return;
    this.entries.push({ ...entry, mode: this.mode, body: entry.body === undefined ? undefined : structuredClone(entry.body) });
  }

  /** The recorded writes, oldest first (copies). */
  log(): DryRunEntry[] {
    return this.entries.map((e) => structuredClone(e));
  }
}

/** `would PATCH /subscriptions/.../vmss?api-version=... {"identity":...}`: the line the CLI prints. */
export function formatDryRunEntry(e: DryRunEntry): string {
  const verb = e.sentAsServerDryRun ? 'sent with dryRun=All:' : 'would';
  const body = e.body === undefined ? '' : ` ${JSON.stringify(e.body)}`;
  return `${verb} ${e.method} ${e.url}${body}`;
}
