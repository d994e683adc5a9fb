/**
 * The outage meter: every simulated second, for every running service pod, would a token
 * request succeed right now, and if not, why. This is the number that proves (or disproves)
 * a zero-outage cutover.
 *
 * A service pod is a running, non-terminating pod with the `aadpodidbinding` label, except
 * the migration's own probe pods (`podid-migrate.io/probe=true`). The verdict follows what a
 * request without `client_id` (what SDKs send by default) would meet, evaluated from state
 * alone (no request is sent, nothing waits):
 *
 * - the node's NMI chain is missing (NMI restarting or absent): the request reaches IMDS
 *   directly; it succeeds only if IMDS hands out exactly the pod's own identity;
 * - NMI in managed mode: a binding and identity in the pod's namespace must match, and the
 *   identity must be on the VMSS;
 * - NMI in standard mode: the pod's AzureAssignedIdentity must be `Assigned` and the identity
 *   on the VMSS. **Grace rule:** a pod whose assignment is still pending is *not* counted as
 *   failing during its first `assignmentGraceSeconds` (default: MIC's assignment latency plus
 *   one NMI retry interval of 5 s) after it started, because a fresh pod waits for MIC in
 *   normal operation too (NMI holds the request until then). After the grace it counts as
 *   failing with cause `waiting-for-mic-assignment`.
 */
import { isoSeconds } from '../clock.ts';
import type { KObject } from '../store.ts';
import {
  BINDING_LABEL,
  coreType,
  identityClientId,
  identityType,
  nmiRegistry,
  timingOf,
  type PodIdentityOptions,
} from './common.ts';
import { decideImdsIdentity } from './imds.ts';
import {
  assignedIdentitiesByState,
  desiredAssignments,
  identitiesByName,
  isExceptedPod,
  isMicPod,
  managedModeIdentities,
  pickManaged,
  pickStandard,
  standardAttempt,
} from './matching.ts';

/** Label of the migration's own test pods, which the meter ignores. */
export const PROBE_LABEL = 'podid-migrate.io/probe';

/** What {@link OutageMeter.report} returns. */
export interface OutageReport {
  /** When sampling started (or was last reset), RFC 3339. */
  since: string;
  /** Number of one-second samples taken. */
  samples: number;
  /** Sum over pods of seconds during which a token request would have failed. */
  failingPodSeconds: number;
  /** Pods that failed at least once, worst first. */
  pods: { pod: string; service: string; failingSeconds: number; longestFailureSeconds: number }[];
  /** Continuous failures of one pod with one cause, in start order; `end` null while still failing. */
  windows: { pod: string; node: string; start: string; end: string | null; seconds: number; cause: string }[];
  /** Failing pod-seconds per cause. */
  byCause: Record<string, number>;
}

/** The verdict on one pod right now. */
export type PodVerdict = { ok: true } | { ok: false; cause: string } | { ok: 'pending' };

/**
 * Another way pods get tokens (workload identity): the meter also samples the pods it
 * `applies` to, labelled or not with `aadpodidbinding`, and takes its verdict for them.
 */
export interface MeterPath {
  applies(pod: Readonly<KObject>): boolean;
  evaluate(pod: Readonly<KObject>, now: number): PodVerdict;
}

interface OpenWindow {
  pod: string;
  node: string;
  start: number;
  seconds: number;
  cause: string;
}

interface PodStats {
  service: string;
  failingSeconds: number;
  longest: number;
  run: number;
}

export class OutageMeter {
  private readonly opts: PodIdentityOptions;
  private readonly graceMs: number;
  private readonly restartGapMs: number;
  private stopTimer: (() => void) | undefined;
  private since: number;
  private samples = 0;
  private readonly open = new Map<string, OpenWindow>();
  private readonly closed: { pod: string; node: string; start: number; end: number; seconds: number; cause: string }[] = [];
  private readonly stats = new Map<string, PodStats>();
  private readonly byCause = new Map<string, number>();
  /** Last time each node's NMI chain was seen in place (to tell a restart from an absent NMI). */
  private readonly lastChain = new Map<string, number>();
  private readonly paths: MeterPath[] = [];

  /**
   * @param opts.nmiRestartGapSeconds how long after a node's NMI chain was last seen a missing
   *   chain still counts as an NMI restart (`nmi-restart: ...`) rather than NMI being absent
   *   (`no-nmi: ...`). Default: NMI's termination sleep + start-up + 30 s for the new pod.
   * @param opts.assignmentGraceSeconds see the grace rule above.
   */
  constructor(opts: PodIdentityOptions & { nmiRestartGapSeconds?: number; assignmentGraceSeconds?: number }) {
    this.opts = opts;
    const t = timingOf(opts);
    this.graceMs = (opts.assignmentGraceSeconds ?? t.micAssignmentSeconds + 5) * 1000;
    this.restartGapMs = (opts.nmiRestartGapSeconds ?? t.nmiTerminationSleepSeconds + t.nmiStartupSeconds + 30) * 1000;
    this.since = opts.clock.now();
  }

  /** Adds a token path (see {@link MeterPath}); the first path that applies to a pod decides for it. */
  addPath(path: MeterPath): void {
    this.paths.push(path);
  }

  /** Samples every simulated second until {@link OutageMeter.stop}. */
  start(): void {
    if (this.stopTimer) return;
    this.stopTimer = this.opts.clock.every(1000, () => this.sample());
  }

  stop(): void {
    this.stopTimer?.();
    this.stopTimer = undefined;
  }

  /** Forgets everything measured so far; sampling continues if started. */
  reset(): void {
    this.since = this.opts.clock.now();
    this.samples = 0;
    this.open.clear();
    this.closed.length = 0;
    this.stats.clear();
    this.byCause.clear();
  }

  /** Takes one sample now (the timer calls this every second; tests may call it directly). */
  sample(): void {
    const { store, clock } = this.opts;
    const now = clock.now();
    const pods = coreType(store, 'pods');
    this.samples++;
    const registry = nmiRegistry(this.opts.network);
    for (const [node, st] of registry) if (st.chainActive) this.lastChain.set(node, now);
    const seen = new Set<string>();
    if (pods) {
      for (const p of this.paths.length ? store.scan(pods) : store.scan(pods, { labelSelector: BINDING_LABEL })) {
        if (!isServicePod(p, this.paths)) continue;
        const key = `${p.metadata.namespace}/${p.metadata.name}`;
        seen.add(key);
        const verdict = this.evaluate(p, now);
        const failing = verdict.ok === false;
        let s = this.stats.get(key);
        if (failing) {
          if (!s) this.stats.set(key, (s = { service: serviceOf(p), failingSeconds: 0, longest: 0, run: 0 }));
          s.failingSeconds++;
          s.run++;
          s.longest = Math.max(s.longest, s.run);
          const cause = (verdict as { cause: string }).cause;
          this.byCause.set(cause, (this.byCause.get(cause) ?? 0) + 1);
          const w = this.open.get(key);
          if (w && w.cause === cause) w.seconds++;
          else {
            if (w) this.close(key, now);
            this.open.set(key, { pod: key, node: p.spec.nodeName, start: now, seconds: 1, cause });
          }
        } else {
          if (s) s.run = 0;
          if (this.open.has(key)) this.close(key, now);
        }
      }
    }
    for (const key of [...this.open.keys()]) if (!seen.has(key)) this.close(key, now);
    for (const [key, s] of this.stats) if (!seen.has(key)) s.run = 0;
  }

  private close(key: string, end: number): void {
    const w = this.open.get(key);
    if (!w) return;
    this.open.delete(key);
    this.closed.push({ ...w, end });
  }

  report(): OutageReport {
    let failingPodSeconds = 0;
    for (const s of this.stats.values()) failingPodSeconds += s.failingSeconds;
    const windows = [
      ...this.closed.map((w) => ({ pod: w.pod, node: w.node, start: isoSeconds(w.start), end: isoSeconds(w.end) as string | null, seconds: w.seconds, cause: w.cause, at: w.start })),
      ...[...this.open.values()].map((w) => ({ pod: w.pod, node: w.node, start: isoSeconds(w.start), end: null, seconds: w.seconds, cause: w.cause, at: w.start })),
    ]
      .sort((a, b) => a.at - b.at || a.pod.localeCompare(b.pod))
      .map(({ at: _at, ...w }) => w);
    return {
      since: isoSeconds(this.since),
      samples: this.samples,
      failingPodSeconds,
      pods: [...this.stats.entries()]
        .map(([pod, s]) => ({ pod, service: s.service, failingSeconds: s.failingSeconds, longestFailureSeconds: s.longest }))
        .sort((a, b) => b.failingSeconds - a.failingSeconds || a.pod.localeCompare(b.pod)),
      windows,
      byCause: Object.fromEntries([...this.byCause.entries()].sort((a, b) => b[1] - a[1])),
    };
  }

  /** Would a token request from this pod succeed right now? Side-effect free. */
  evaluate(pod: Readonly<KObject>, now = this.opts.clock.now()): PodVerdict {
    const other = this.paths.find((x) => x.applies(pod));
    if (other) return other.evaluate(pod, now);
    const { store, infra, network } = this.opts;
    const node = String(pod.spec?.nodeName ?? '');
    const nmi = nmiRegistry(network).get(node);
    if (!network.isIntercepted(node)) {
      const last = this.lastChain.get(node);
      const restarting = nmi !== undefined || (last !== undefined && now - last <= this.restartGapMs);
      const prefix = restarting ? 'nmi-restart' : 'no-nmi';
      const d = decideImdsIdentity(infra, node, {});
      if (!d.ok) {
        const why = d.description.startsWith('Multiple') ? 'several identities on the VMSS' : 'no identity on the VMSS';
        return { ok: false, cause: `${prefix}: IMDS answered ${d.status} (${why})` };
      }
      const own = this.ownClientIds(pod);
      if (own.has(d.identity.clientId.toLowerCase())) return { ok: true };
      return { ok: false, cause: `${prefix}: IMDS handed out another identity` };
    }
    if (!nmi) return { ok: true }; // Someone else intercepts IMDS: not Pod Identity's to judge.
    if (isExceptedPod(store, pod) || isMicPod(pod, nmi.micNamespace)) {
      return decideImdsIdentity(infra, node, {}).ok ? { ok: true } : { ok: false, cause: 'exception-pod: IMDS refused' };
    }
    let identity: Readonly<KObject> | undefined;
    if (nmi.mode === 'managed') {
      identity = pickManaged(managedModeIdentities(store, pod), pod.metadata.namespace!, '', '');
      if (!identity) return { ok: false, cause: 'no-binding-in-namespace (managed mode)' };
    } else {
      const r = standardAttempt(assignedIdentitiesByState(store, node, { namespace: pod.metadata.namespace!, name: pod.metadata.name! }, nmi.scaleFeatures), '', '');
      if (r.kind !== 'found') {
        const started = Date.parse(pod.status?.startTime ?? pod.metadata.creationTimestamp ?? '') || now;
        if (now - started < this.graceMs) return { ok: 'pending' };
        return { ok: false, cause: 'waiting-for-mic-assignment' };
      }
      const picked = pickStandard(r.ids, pod.metadata.namespace!, nmi.namespaced, '', '');
      if (picked === 'panic' || !picked) return { ok: false, cause: 'identity-in-other-namespace (namespaced)' };
      identity = picked;
    }
    if (identityType(identity) !== 0) return { ok: true };
    const d = decideImdsIdentity(infra, node, { clientId: identityClientId(identity) });
    return d.ok ? { ok: true } : { ok: false, cause: 'identity-not-on-vmss' };
  }

  /** Client ids of the identities the pod is bound to (any namespace, as MIC matches them). */
  private ownClientIds(pod: Readonly<KObject>): Set<string> {
    const { store } = this.opts;
    const out = new Set<string>();
    const bt = store.type('aadpodidentity.k8s.io', 'azureidentitybindings');
    if (!bt) return out;
    for (const m of desiredAssignments(pod, [...store.scan(bt)], identitiesByName(store), false)) out.add(identityClientId(m.identity).toLowerCase());
    for (const id of managedModeIdentities(store, pod)) out.add(identityClientId(id).toLowerCase());
    return out;
  }
}

function isServicePod(p: Readonly<KObject>, paths: readonly MeterPath[] = []): boolean {
  if (!p.metadata.labels?.[BINDING_LABEL] && !paths.some((x) => x.applies(p))) return false;
  if (p.metadata.labels?.[PROBE_LABEL] === 'true') return false;
  if (p.metadata.deletionTimestamp) return false;
  if (!p.spec?.nodeName || p.status?.phase !== 'Running') return false;
  return true;
}

/** The service a pod belongs to: its `app` label, else its owner, else its binding label. */
function serviceOf(p: Readonly<KObject>): string {
  const ns = p.metadata.namespace;
  const app = p.metadata.labels?.app ?? p.metadata.labels?.['app.kubernetes.io/name'];
  if (app) return `${ns}/${app}`;
  const owner = p.metadata.ownerReferences?.find((o) => o.controller);
  if (owner) return `${ns}/${owner.kind === 'ReplicaSet' ? owner.name.replace(/-[a-z0-9]{5,10}$/, '') : owner.name}`;
  return `${ns}/${p.metadata.labels?.[BINDING_LABEL]}`;
}
