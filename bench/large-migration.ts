/**
 * Benchmark: the full migration (every runbook step, in-place NMI rollout) of the large scenario
 * (scenarios/large.yaml: 20 pools, 200 nodes, about 2,200 pods, churn on), on an in-process
 * sandbox, through the real clients. Prints per step the simulated and real time, Kubernetes
 * calls, ARM calls and writes, and the peak RSS of this process (sandbox included) while the
 * step ran; then the totals and the outage meter's figures.
 *
 *   node_modules/.bin/node bench/large-migration.ts [--scenario file] [--time-scale x]
 *
 * It takes about ten minutes at the scenario's 20x.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Runner, type RunnerEvents } from '../src/engine/runner.ts';
import type { ExecutorRegistry, StepId, StepRegistry } from '../src/engine/step.ts';
import type { ClusterIdentity } from '../src/engine/journal.ts';
import { createKubeGateway } from '../src/kube/index.ts';
import { createAzureGateway, resolveAzureConnection } from '../src/azure/index.ts';
import { writesBetween } from '../src/procedures/upstream.ts';
import { loadScenarioFile, SCENARIOS_DIR } from '../src/sandbox/scenario.ts';
import { Sandbox } from '../src/sandbox/sandbox.ts';
import { EXECUTORS, STEPS } from '../src/steps/registry.ts';
import type { CallCounts } from '../src/kube/call-counter.ts';

const { values } = parseArgs({ options: { scenario: { type: 'string' }, 'time-scale': { type: 'string' } } });
const scenario = loadScenarioFile(values.scenario ?? join(SCENARIOS_DIR, 'large.yaml'));
const timeScale = values['time-scale'] ? Number(values['time-scale']) : undefined;

const mib = (n: number) => `${Math.round(n / 1024 / 1024)} MiB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const clockText = (ms: number) => {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h ? `${h}h` : ''}${m}m${String(s % 60).padStart(2, '0')}s`;
};

// Peak RSS per step: sampled, since a step's peak can fall between two events.
let peakRss = process.memoryUsage().rss;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 100);
sampler.unref();

const dir = mkdtempSync(join(tmpdir(), 'podid-bench-large-'));
const t0 = performance.now();
const sb = await Sandbox.start({ scenario, timeScale, churn: scenario.churn.length > 0 });
const pods = () => [...sb.store.scan(sb.store.typeOrThrow('', 'pods'))].length;
try {
  console.log(`scenario ${scenario.name}: ${scenario.pools.length} pools, ${scenario.pools.reduce((a, p) => a + p.count, 0)} nodes, ${scenario.workloads.reduce((a, w) => a + w.replicas, 0)} service pods; sandbox at ${sb.clock.timeScale}x`);
  await sb.waitReady(20 * 60_000);
  const readyAt = performance.now();
  console.log(`sandbox steady after ${secs(readyAt - t0)} real: ${pods()} pods, RSS ${mib(process.memoryUsage().rss)}`);
  const files = sb.writeClientFiles(join(dir, 'sandbox'));
  const kube = createKubeGateway({ kubeconfig: files.kubeconfig });
  const azure = createAzureGateway({
    subscriptionId: scenario.subscriptionId,
    connection: resolveAzureConnection({ PODID_MIGRATE_ARM_ENDPOINT: sb.armUrl, PODID_MIGRATE_ARM_TOKEN_FILE: files.armTokenFile, PODID_MIGRATE_CA_FILE: files.caFile }),
  });
  const info = await kube.clusterInfo();
  const cluster: ClusterIdentity = { name: scenario.cluster.name, apiServer: info.apiServer, kubeSystemUid: info.kubeSystemUid, subscriptionId: scenario.subscriptionId, aksResourceId: sb.aksResourceId };

  interface Row {
    step: StepId;
    simMs: number;
    realMs: number;
    kube: number;
    arm: number;
    armWrites: number;
    peakRss: number;
    summary: string;
  }
  const rows: Row[] = [];
  const open = new Map<StepId, { sim: number; real: number; kube: CallCounts; arm: CallCounts }>();
  const events: RunnerEvents = {
    stepStart(id) {
      if (open.has(id)) return;
      peakRss = process.memoryUsage().rss;
      open.set(id, { sim: sb.clock.now(), real: performance.now(), kube: kube.calls(), arm: azure.calls() });
      process.stderr.write(`[${id}] started\n`);
    },
    stepEnd(result) {
      const o = open.get(result.stepId);
      if (!o) return;
      // A step seen again (the full apply re-checks the inventory applied first) gets its own row, timed from its own start.
      open.delete(result.stepId);
      const k = kube.calls();
      const a = azure.calls();
      rows.push({ step: result.stepId, simMs: sb.clock.now() - o.sim, realMs: performance.now() - o.real, kube: k.total - o.kube.total, arm: a.total - o.arm.total, armWrites: writesBetween(a, o.arm), peakRss: Math.max(peakRss, process.memoryUsage().rss), summary: result.summary });
      process.stderr.write(`[${result.stepId}] ${result.outcome} after ${secs(performance.now() - o.real)} real: ${result.summary}\n`);
    },
    stepProgress(id, message) {
      if (process.env.BENCH_VERBOSE) process.stderr.write(`  ${id}: ${message}\n`);
    },
  };
  const runner = new Runner({
    steps: STEPS as StepRegistry,
    executors: EXECUTORS as ExecutorRegistry,
    kube,
    azure,
    cluster,
    journalPath: join(dir, 'journal.json'),
    inventoryPath: join(dir, 'inventory.yaml'),
    // The sandbox's clock runs timeScale times faster than the wall clock: the plan's duration estimate needs it.
    options: { aksId: sb.aksResourceId, junitPath: join(dir, 'junit.xml'), kubeconfig: files.kubeconfig, clusterTimeScale: sb.clock.timeScale },
    // The NMI rollout of 200 nodes one at a time runs past the default 30 min: measure it, do not cut it.
    stepTimeoutMs: 4 * 3600_000,
    events,
  });
  const simStart = sb.clock.now();
  const realStart = performance.now();
  let failure: unknown;
  // What `plan` estimated for the NMI rollout, printed next to the measured time (planned again when it runs, against the cluster then).
  let estimate: string | undefined;
  try {
    await runner.apply({ step: 'inventory' });
    const planned = await runner.plan();
    estimate = planned.steps.find((s) => s.stepId === 'nmi-managed')?.plan?.notes.find((n) => n.startsWith('estimated duration'));
    await runner.apply();
  } catch (e) {
    failure = e;
  }
  const simTotal = sb.clock.now() - simStart;
  const realTotal = performance.now() - realStart;
  const outage = sb.meter.report();

  const header = ['STEP', 'SIMULATED', 'REAL', 'K8S CALLS', 'ARM CALLS', 'ARM WRITES', 'PEAK RSS'];
  const body = rows.map((r) => [r.step, clockText(r.simMs), secs(r.realMs), String(r.kube), String(r.arm), String(r.armWrites), mib(r.peakRss)]);
  body.push(['total', clockText(simTotal), secs(realTotal), String(rows.reduce((a, r) => a + r.kube, 0)), String(rows.reduce((a, r) => a + r.arm, 0)), String(rows.reduce((a, r) => a + r.armWrites, 0)), mib(Math.max(...rows.map((r) => r.peakRss), 0))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log('');
  console.log(`Full migration of scenario ${scenario.name} at ${sb.clock.timeScale}x (real time measured here; simulated = the sandbox clock)`);
  console.log(line(header));
  for (const b of body) console.log(line(b));
  console.log('');
  for (const r of rows) console.log(`  ${r.step}: ${r.summary}`);
  const nmiRow = rows.find((r) => r.step === 'nmi-managed');
  if (estimate && nmiRow) console.log(`\nnmi-managed: plan said "${estimate}"; measured ${secs(nmiRow.realMs)} real`);
  console.log('');
  console.log(`outage meter: ${outage.failingPodSeconds} failing pod-seconds in ${outage.windows.length} windows (longest ${Math.max(0, ...outage.windows.map((w) => w.seconds))} s)`);
  for (const [cause, n] of Object.entries(outage.byCause).sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(6)} pod-s  ${cause}`);
  console.log(`sandbox start to steady ${secs(readyAt - t0)} real; benchmark total ${secs(performance.now() - t0)} real`);
  if (failure) {
    console.log(`\nthe migration stopped: ${(failure as Error).message}`);
    process.exitCode = 1;
  }
} finally {
  clearInterval(sampler);
  await sb.stop();
}
