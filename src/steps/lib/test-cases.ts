/**
 * Test cases: the inventory's cases expanded onto each pool's fresh node, and how one case runs
 * (DOMAIN.md section 8): `nmi-health` (the node's NMI body reads `Active`), `token` (a probe pod
 * with the service's `aadpodidbinding` label gets a token from IMDS whose claims match the
 * identity), `http` (a probe pod on the node gets the expected status from an in-cluster URL),
 * `command` (a local command with the cluster context in its environment; exit 0 passes).
 * Token and HTTP probes retry for NMI's real timing (80 s by default, `timeoutSeconds` per case
 * or `testTimeoutMs` for all), not an SDK's short defaults.
 */
import { dirname } from 'node:path';
import { execa } from 'execa';
import type { Blocker } from '../../engine/step.ts';
import type { Ctx } from './context.ts';
import { nmiRefOf } from './inventory-source.ts';
import type { InventoryDocument, InventoryIdentity, TestCase } from './inventory-model.ts';
import type { TestResult } from './junit.ts';
import { DEFAULT_PROBE_TIMEOUT_MS, checkNmiHealth, findNmiPod, runHttpProbe, runTokenProbe, scrubTokens, type ProbeResult } from './probe.ts';

/** Captured output of a `command` case kept in the results (the tail). */
const MAX_OUTPUT_CHARS = 2000;

/** One test case to run: a case of a service, on one pool's fresh node. */
export interface PlannedCase {
  id: string;
  kind: TestCase['kind'];
  name?: string;
  service: string;
  namespace: string;
  selector?: string;
  pool: string;
  node: string;
  identity: { ref: string; name: string; type: 0 | 1 | 2; resourceId?: string; clientId?: string; principalId?: string };
  testCase: TestCase;
}

/**
 * Expands the inventory's test cases: every case of every service, once per pool the service
 * runs in, pinned to that pool's fresh node. Also returns what cannot run (a pool without a
 * fresh node, an identity without a client id for a token check).
 */
export function expandCases(inv: InventoryDocument, freshNodes: Record<string, string>): { cases: PlannedCase[]; blockers: Blocker[]; untested: string[] } {
  const cases: PlannedCase[] = [];
  const blockers: Blocker[] = [];
  const untested: string[] = [];
  const missingPools = new Set<string>();
  for (const identity of [...inv.identities].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))) {
    for (const service of [...identity.services].sort((a, b) => a.name.localeCompare(b.name))) {
      const [namespace] = service.name.includes('/') ? service.name.split('/') : [identity.namespace];
      const testCases = service.testCases ?? [];
      if (!testCases.length) {
        untested.push(service.name);
        continue;
      }
      const servicePools = [...new Set(service.pools ?? identity.pools ?? [])].sort();
      for (const pool of servicePools) {
        const node = freshNodes[pool];
        if (!node) {
          missingPools.add(pool);
          continue;
        }
        testCases.forEach((tc, i) => {
          if (tc.kind === 'token' && !identityExpectation(identity)) {
            blockers.push({
              code: 'identity-unresolved',
              subject: `identity ${identity.namespace}/${identity.name}`,
              message: `the token test of ${service.name} needs the identity's client id, which the inventory does not have.`,
              fix: 'Re-run the inventory step (podid-migrate apply --step inventory) so it reads the identity from Azure, or add clientId to the inventory.',
            });
            return;
          }
          cases.push({
            id: `${service.name}/${pool}/${i + 1}-${tc.kind}`,
            kind: tc.kind,
            name: tc.name,
            service: service.name,
            namespace,
            selector: service.selector ?? identity.bindings?.find((b) => b.namespace === namespace)?.selector ?? identity.bindings?.[0]?.selector,
            pool,
            node,
            identity: { ref: `${identity.namespace}/${identity.name}`, name: identity.name, type: identity.type, resourceId: identity.resourceId, clientId: identity.clientId, principalId: identity.principalId },
            testCase: tc,
          });
        });
      }
    }
  }
  for (const pool of [...missingPools].sort()) {
    blockers.push({
      code: 'no-fresh-node',
      subject: `pool ${pool}`,
      message: `the drain step recorded no fresh node for pool ${pool}, so its test cases have nowhere to run.`,
      fix: 'Run podid-migrate apply --step drain (it drains one node per pool of the inventory).',
    });
  }
  return { cases, blockers: dedupe(blockers), untested };
}

function dedupe(blockers: Blocker[]): Blocker[] {
  const seen = new Set<string>();
  return blockers.filter((b) => (seen.has(`${b.code}:${b.subject}`) ? false : (seen.add(`${b.code}:${b.subject}`), true)));
}

function identityExpectation(identity: Pick<InventoryIdentity, 'clientId' | 'resourceId' | 'type'>): boolean {
  return Boolean(identity.clientId) && (identity.type !== 0 || Boolean(identity.resourceId));
}

export function caseTimeoutMs(ctx: Ctx, tc: TestCase): number {
  if ('timeoutSeconds' in tc && typeof tc.timeoutSeconds === 'number') return tc.timeoutSeconds * 1000;
  const t = ctx.options.testTimeoutMs;
  return typeof t === 'number' && t > 0 ? t : DEFAULT_PROBE_TIMEOUT_MS;
}

/** One line naming everything an operator needs to find the failing case. */
export function describeCase(c: Pick<PlannedCase, 'kind' | 'name' | 'service' | 'pool' | 'node' | 'identity'>): string {
  return `${c.kind}${c.name ? ` "${c.name}"` : ''} of service ${c.service} in pool ${c.pool} (node ${c.node}), identity ${c.identity.ref}`;
}

/** Runs one case; failures are results, not exceptions (only an abort throws). */
export async function runCase(ctx: Ctx, c: PlannedCase): Promise<TestResult> {
  const started = Date.now();
  const base = { id: c.id, kind: c.kind, ...(c.name ? { name: c.name } : {}), service: c.service, namespace: c.namespace, pool: c.pool, node: c.node, identity: c.identity.ref };
  const fromProbe = (r: ProbeResult): TestResult => ({ ...base, ok: r.ok, message: scrubTokens(r.message), attempts: r.attempts, durationMs: r.durationMs });
  try {
    switch (c.testCase.kind) {
      case 'nmi-health': {
        const nmi = nmiRefOf(ctx);
        let attempts = 0;
        let last = '';
        const active = await ctx.kube
          .waitFor(
            async (note) => {
              attempts++;
              const pod = await findNmiPod(ctx.kube, nmi, c.node);
              if (!pod) {
                last = `no NMI pod of ${nmi.namespace}/${nmi.name} on the node`;
                note(last);
                return false;
              }
              const h = await checkNmiHealth(ctx.kube, pod);
              last = `NMI ${pod.metadata?.name} answered "${h.body}"`;
              note(last);
              return h.active;
            },
            { describe: `NMI Active on ${c.node}`, timeoutMs: Math.min(caseTimeoutMs(ctx, c.testCase), 30_000), intervalMs: 500, signal: ctx.signal },
          )
          .catch((e: Error) => {
            if (e.name === 'WaitTimeoutError') return false;
            throw e;
          });
        return { ...base, ok: active === true, message: active ? `${last} on node ${c.node}` : `${last}, not Active`, attempts, durationMs: Date.now() - started };
      }
      case 'token': {
        if (!c.selector) return { ...base, ok: false, message: `service ${c.service} has no aadpodidbinding selector in the inventory`, attempts: 0, durationMs: 0 };
        const r = await runTokenProbe(ctx.kube, {
          namespace: c.namespace,
          nodeName: c.node,
          selector: c.selector,
          identity: { name: c.identity.ref, resourceId: c.identity.type === 0 ? c.identity.resourceId : undefined, clientId: c.identity.clientId!, principalId: c.identity.principalId },
          resource: c.testCase.resource,
          timeoutMs: caseTimeoutMs(ctx, c.testCase),
          signal: ctx.signal,
        });
        return fromProbe(r);
      }
      case 'http': {
        const r = await runHttpProbe(ctx.kube, {
          namespace: c.namespace,
          nodeName: c.node,
          url: c.testCase.url,
          expectStatus: c.testCase.expectStatus,
          labels: c.selector ? { aadpodidbinding: c.selector } : {},
          timeoutMs: caseTimeoutMs(ctx, c.testCase),
          signal: ctx.signal,
        });
        return fromProbe(r);
      }
      case 'command':
        return await runCommandCase(ctx, c, c.testCase, base, started);
    }
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    return { ...base, ok: false, message: scrubTokens(`could not run: ${(e as Error).message}`), attempts: 0, durationMs: Date.now() - started };
  }
}

/** Environment a `command` case gets: the cluster context and where the case runs. */
export function commandEnv(ctx: Pick<Ctx, 'options'>, c: PlannedCase): Record<string, string> {
  const env: Record<string, string> = {
    PODID_MIGRATE_SERVICE: c.service,
    PODID_MIGRATE_NAMESPACE: c.namespace,
    PODID_MIGRATE_POOL: c.pool,
    PODID_MIGRATE_NODE: c.node,
    PODID_MIGRATE_IDENTITY: c.identity.ref,
  };
  if (c.identity.clientId) env.PODID_MIGRATE_IDENTITY_CLIENT_ID = c.identity.clientId;
  if (c.identity.resourceId) env.PODID_MIGRATE_IDENTITY_RESOURCE_ID = c.identity.resourceId;
  if (c.selector) env.PODID_MIGRATE_SELECTOR = c.selector;
  const kubeconfig = typeof ctx.options.kubeconfig === 'string' ? ctx.options.kubeconfig : process.env.KUBECONFIG;
  if (kubeconfig) env.KUBECONFIG = kubeconfig;
  if (typeof ctx.options.context === 'string') env.PODID_MIGRATE_CONTEXT = ctx.options.context;
  return env;
}

async function runCommandCase(ctx: Ctx, c: PlannedCase, tc: Extract<TestCase, { kind: 'command' }>, base: Omit<TestResult, 'ok' | 'message' | 'attempts' | 'durationMs'>, started: number): Promise<TestResult> {
  const [file, ...args] = tc.command;
  const r = await execa(file, args, {
    cwd: dirname(ctx.inventoryPath),
    env: commandEnv(ctx, c),
    timeout: caseTimeoutMs(ctx, tc),
    cancelSignal: ctx.signal,
    reject: false,
    all: true,
    stdin: 'ignore',
  });
  const output = scrubTokens(String(r.all ?? '')).slice(-MAX_OUTPUT_CHARS);
  const ok = r.exitCode === 0 && !r.timedOut;
  const why = r.timedOut ? `timed out after ${caseTimeoutMs(ctx, tc) / 1000} s` : r.exitCode === undefined ? `could not start: ${scrubTokens(r.shortMessage ?? '')}` : `exited ${r.exitCode}`;
  const tail = output.trim().split('\n').slice(-1)[0] ?? '';
  return { ...base, ok, message: ok ? `${tc.command.join(' ')} exited 0` : `${tc.command.join(' ')} ${why}${tail ? `: ${tail.slice(0, 300)}` : ''}`, attempts: 1, durationMs: Date.now() - started, ...(output ? { output } : {}) };
}
