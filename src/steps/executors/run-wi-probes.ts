/**
 * `run-wi-probes`: runs the planned workload identity token cases exactly as planned, at most
 * four at once, each a short-lived probe pod of the service's service account doing the
 * client-assertion exchange (`lib/workload-identity/token-probe.ts`): one create and one delete
 * each. A failing case is a result, not an error; the step's check fails on it. Probe pods left
 * by an interrupted run are swept first. Undo removes leftover probe pods (the cases change
 * nothing else).
 */
import type { Executor } from '../lib/context.ts';
import { DEFAULT_PROBE_TIMEOUT_MS, scrubTokens } from '../lib/probe.ts';
import { runWorkloadIdentityTokenProbe } from '../lib/workload-identity/token-probe.ts';
import { PARALLEL_PROBE_CASES, probeCasesChangeNothing, runProbeCases } from './probe-cases.ts';

/** Cases run at once. */
export const PARALLEL_WI_CASES = PARALLEL_PROBE_CASES;

/** One token case through workload identity. */
export interface PlannedWiCase {
  /** `<service>/<n>-token`, stable. */
  id: string;
  name?: string;
  service: string;
  namespace: string;
  serviceAccount: string;
  identity: { ref: string; name: string; resourceId?: string; clientId: string; principalId?: string };
  resource?: string;
  timeoutSeconds?: number;
}

/** Details of a `run-wi-probes` action. */
export interface RunWiProbesDetails {
  cases: PlannedWiCase[];
  /**
   * A gate, not a test: a failing case fails the action (and so the step) instead of being a
   * result. `wi-workloads` runs one before the first rollout onto each service account, so no pod
   * starts with the workload identity env before Entra accepts the account's credential.
   */
  gate?: boolean;
}

/** The outcome of one case (never a token). */
export interface WiTestResult {
  id: string;
  kind: 'token';
  name?: string;
  service: string;
  namespace: string;
  serviceAccount: string;
  identity: string;
  ok: boolean;
  message: string;
  attempts: number;
  durationMs: number;
  /** The non-secret claims compared (on success or a claim mismatch). */
  claims?: { oid?: string; appid?: string; xms_mirid?: string };
}

/** Result of the action. */
export interface RunWiProbesResult {
  passed: number;
  failed: number;
  results: WiTestResult[];
  dryRun?: boolean;
}

export const runWiProbes: Executor<RunWiProbesDetails, { cases: number }, RunWiProbesResult> = {
  kind: 'run-wi-probes',
  async capture(_ctx, { details: d }) {
    return { cases: d.cases.length };
  },
  async do(ctx, { action: { details: d } }) {
    if (ctx.dryRun !== 'none') return { passed: 0, failed: 0, results: [], dryRun: true };
    const budget = typeof ctx.options.testTimeoutMs === 'number' && ctx.options.testTimeoutMs > 0 ? ctx.options.testTimeoutMs : DEFAULT_PROBE_TIMEOUT_MS;
    const results = await runProbeCases(
      ctx,
      d.cases,
      async (c): Promise<WiTestResult> => {
        const started = Date.now();
        const base = { id: c.id, kind: 'token' as const, ...(c.name ? { name: c.name } : {}), service: c.service, namespace: c.namespace, serviceAccount: c.serviceAccount, identity: c.identity.ref };
        let r: WiTestResult;
        try {
          const p = await runWorkloadIdentityTokenProbe(ctx.kube, {
            namespace: c.namespace,
            serviceAccountName: c.serviceAccount,
            identity: { name: c.identity.ref, resourceId: c.identity.resourceId, clientId: c.identity.clientId, principalId: c.identity.principalId },
            resource: c.resource,
            timeoutMs: c.timeoutSeconds ? c.timeoutSeconds * 1000 : budget,
            signal: ctx.signal,
          });
          r = { ...base, ok: p.ok, message: scrubTokens(p.message), attempts: p.attempts, durationMs: p.durationMs, ...(p.claims ? { claims: { oid: p.claims.oid, appid: p.claims.appid, xms_mirid: p.claims.xms_mirid } } : {}) };
        } catch (e) {
          if (ctx.signal.aborted) throw e;
          r = { ...base, ok: false, message: scrubTokens(`could not run: ${(e as Error).message}`), attempts: 0, durationMs: Date.now() - started };
        }
        return r;
      },
      (done, r, c) => {
        ctx.progress(`${done}/${d.cases.length} workload identity token cases (${r.ok ? 'passed' : 'FAILED'}: ${c.service})`);
        if (!r.ok) ctx.log.warn(`workload identity token case failed: ${c.service} (identity ${c.identity.ref}): ${r.message}`);
      },
    );
    const failed = results.filter((r) => !r.ok);
    if (d.gate && failed.length) {
      throw new Error(`workload identity does not answer for ${failed.map((r) => `${r.namespace}/${r.serviceAccount}`).join(', ')} yet, so nothing was rolled out onto it: ${failed.map((r) => r.message).join('; ')}`);
    }
    return { passed: results.length - failed.length, failed: failed.length, results };
  },
  ...probeCasesChangeNothing,
};
