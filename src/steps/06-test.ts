/**
 * Step 6, `test`: runs every test case of the inventory on each pool's fresh node (recorded by
 * `drain`), in the service's namespace, and records the results (never a token) in the journal
 * and, with `junitPath`, as JUnit XML.
 *
 * Kinds (DOMAIN.md section 8): `nmi-health` (the node's NMI body reads `Active`), `token` (a
 * probe pod with the service's `aadpodidbinding` label gets a token from IMDS whose claims match
 * the identity), `http` (a probe pod on the node gets the expected status from an in-cluster
 * URL), `command` (a local command with the cluster context in its environment; exit 0 passes).
 * Token and HTTP probes retry for NMI's real timing (80 s by default, `timeoutSeconds` per case
 * or `testTimeoutMs` for all), not an SDK's short defaults.
 *
 * `check` passes only when every recorded case passed; each failure names the service, pool,
 * node and identity. Nothing to roll back: probe pods are deleted as each case ends (and any
 * left by an interrupted run are swept at the start and in `rollback`).
 */
import { dirname } from 'node:path';
import { execa } from 'execa';
import pLimit from 'p-limit';
import type { CheckResult, PlannedAction, Step, StepContext, StepOutcome, StepPlan, Blocker } from '../engine/step.ts';
import type { AzureGateway } from '../azure/gateway.ts';
import type { KubeGateway } from '../kube/gateway.ts';
import { asInventory, type InventoryDocument, type InventoryIdentity, type TestCase } from './inventory-model.ts';
import { writeJunit, type TestResult } from './junit.ts';
import { DEFAULT_PROBE_TIMEOUT_MS, checkNmiHealth, findNmiPod, runHttpProbe, runTokenProbe, scrubTokens, sweepProbePods, type ProbeResult } from './probe.ts';
import { nmiRefOf } from './05-drain.ts';

type Ctx = StepContext<KubeGateway, AzureGateway>;

export type { TestResult };

/** Test cases run at once (each is one short-lived pod on a node). */
const PARALLEL_CASES = 4;

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

function inventoryOf(ctx: Ctx): InventoryDocument {
  if (ctx.inventory === undefined) throw new Error(`no inventory at ${ctx.inventoryPath}: the inventory step writes it`);
  return asInventory(ctx.inventory, ctx.inventoryPath);
}

function freshNodesOf(ctx: Ctx): Record<string, string> {
  const fresh = ctx.journal.of('drain').getData<Record<string, string>>('freshNodes');
  if (!fresh || !Object.keys(fresh).length) throw new Error('no fresh nodes recorded yet: the drain step records one per pool');
  return fresh;
}

function caseTimeoutMs(ctx: Ctx, tc: TestCase): number {
  if ('timeoutSeconds' in tc && typeof tc.timeoutSeconds === 'number') return tc.timeoutSeconds * 1000;
  const t = ctx.options.testTimeoutMs;
  return typeof t === 'number' && t > 0 ? t : DEFAULT_PROBE_TIMEOUT_MS;
}

/** One line naming everything an operator needs to find the failing case. */
export function describeCase(c: Pick<PlannedCase, 'kind' | 'name' | 'service' | 'pool' | 'node' | 'identity'>): string {
  return `${c.kind}${c.name ? ` "${c.name}"` : ''} of service ${c.service} in pool ${c.pool} (node ${c.node}), identity ${c.identity.ref}`;
}

async function plan(ctx: Ctx): Promise<StepPlan> {
  const inv = inventoryOf(ctx);
  const fresh = freshNodesOf(ctx);
  const { cases, blockers, untested } = expandCases(inv, fresh);
  const nodes = new Set(cases.map((c) => c.node));
  const notes = [`${cases.length} test case${cases.length === 1 ? '' : 's'} on ${nodes.size} fresh node${nodes.size === 1 ? '' : 's'}`];
  if (untested.length) notes.push(`no test case for ${untested.join(', ')} (add one to the inventory's testCases)`);
  if (ctx.options.junitPath) notes.push(`JUnit report: ${String(ctx.options.junitPath)}`);
  const podCases = cases.filter((c) => c.kind === 'token' || c.kind === 'http').length;
  const action: PlannedAction = {
    id: 'test-cases',
    op: '~',
    target: `${cases.length} test cases`,
    summary: `run on fresh nodes ${[...nodes].sort().join(', ')} (${podCases} short-lived probe pod${podCases === 1 ? '' : 's'}, deleted after each case)`,
    api: 'kube',
    writes: podCases * 2,
    details: { cases: cases.map((c) => ({ id: c.id, node: c.node, identity: c.identity.ref, testCase: c.testCase })) },
  };
  return { stepId: 'test', actions: cases.length ? [action] : [], blockers, notes };
}

async function apply(ctx: Ctx, p: StepPlan): Promise<StepOutcome> {
  const inv = inventoryOf(ctx);
  const { cases } = expandCases(inv, freshNodesOf(ctx));
  const planned = new Set(((p.actions[0]?.details as { cases?: { id: string }[] } | undefined)?.cases ?? []).map((c) => c.id));
  const toRun = cases.filter((c) => planned.has(c.id));
  if (ctx.dryRun !== 'none') {
    return { summary: `would run ${toRun.length} test case${toRun.length === 1 ? '' : 's'} (dry run: no probe pod created)` };
  }
  if (!toRun.length) return { summary: 'no test cases in the inventory' };
  const swept = await sweepProbePods(ctx.kube);
  if (swept) ctx.log.info(`removed ${swept} probe pod(s) left by an earlier run`);
  let results: TestResult[] = [];
  await ctx.journal.runAction(p.actions[0], { cases: toRun.length }, async () => {
    const limit = pLimit(PARALLEL_CASES);
    let done = 0;
    results = await Promise.all(
      toRun.map((c) =>
        limit(async () => {
          const r = await runCase(ctx, c);
          done++;
          ctx.progress(`${done}/${toRun.length} test cases (${r.ok ? 'passed' : 'FAILED'}: ${c.kind} ${c.service} on ${c.pool})`);
          if (!r.ok) ctx.log.warn(`test case failed: ${describeCase(c)}: ${r.message}`);
          return r;
        }),
      ),
    );
    // The journal keeps the results once, under `results`; the action records the counts.
    return { passed: results.filter((r) => r.ok).length, failed: results.filter((r) => !r.ok).length };
  });
  await ctx.journal.setData('results', results);
  if (typeof ctx.options.junitPath === 'string') await writeJunit(ctx.options.junitPath, results, { timestamp: new Date().toISOString() });
  const failed = results.filter((r) => !r.ok).length;
  return { summary: `${results.length - failed}/${results.length} test cases passed on ${new Set(results.map((r) => r.node)).size} fresh nodes${failed ? `, ${failed} failed` : ''}` };
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

async function check(ctx: Ctx): Promise<CheckResult> {
  const results = ctx.journal.getData<TestResult[]>('results') ?? [];
  const evidence: string[] = [];
  const failures: string[] = [];
  const inv = inventoryOf(ctx);
  const expected = expandCases(inv, ctx.journal.of('drain').getData<Record<string, string>>('freshNodes') ?? {}).cases;
  const byId = new Map(results.map((r) => [r.id, r]));
  for (const c of expected) {
    const r = byId.get(c.id);
    if (!r) failures.push(`${describeCase(c)}: not run; run podid-migrate apply --step test`);
    else if (!r.ok) failures.push(`${describeCase(c)}: ${r.message}`);
    else evidence.push(`${r.kind} ${r.service} on ${r.pool} (${r.node}): ${r.message}`);
  }
  const leftovers = await ctx.kube.list({ apiVersion: 'v1', kind: 'Pod' }, { labelSelector: 'podid-migrate.io/probe=true' });
  if (leftovers.length) failures.push(`probe pods left behind: ${leftovers.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).join(', ')} (podid-migrate rollback --step test removes them)`);
  return { ok: failures.length === 0, evidence, failures };
}

async function rollback(ctx: Ctx): Promise<StepOutcome> {
  const swept = await sweepProbePods(ctx.kube);
  for (const r of ctx.journal.records()) if (!r.rolledBack) await ctx.journal.markRolledBack(r.actionId);
  return { summary: `nothing to undo (test cases change nothing)${swept ? `; removed ${swept} leftover probe pod(s)` : ''}` };
}

/** The `test` step. */
export const testStep: Step<KubeGateway, AzureGateway> = {
  id: 'test',
  title: 'Run the test cases on the fresh nodes',
  plan,
  apply,
  check,
  rollback,
};

export default testStep;
