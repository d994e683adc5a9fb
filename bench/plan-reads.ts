/**
 * Requests and memory of `podid-migrate plan` on a 500-node / 10,000-pod sandbox, with the
 * command's read snapshot off and on, side by side in one run.
 *
 * The sandbox runs in this process (as in `bench/sandbox-scale.ts`); each `plan` runs in a child
 * process through the CLI's own `main()` and runtime factory (real client-node and ARM clients
 * over HTTPS), so its peak RSS is the CLI's alone. "off" is the same runtime without the runner's
 * `readScope` hook: every read goes to the server, as before the snapshot existed. One identity
 * lacks the assign permission (scenario `denyAssign`), so both runs must report that blocker.
 *
 *   node bench/plan-reads.ts [pods=10000] [nodes=500]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { deflateRawSync } from 'node:zlib';
import { stringify } from 'yaml';

if (process.argv[2] === '--child') {
  await child(process.argv[3] as 'on' | 'off', process.argv.slice(4));
} else {
  await parent();
}

/** One command (default `plan -o json`) through the CLI; prints `RESULT <json>` on stderr. */
async function child(mode: 'on' | 'off', args: string[]): Promise<void> {
  const { main } = await import('../src/cli/main.ts');
  const { createRuntime } = await import('../src/cli/context.ts');
  let out = '';
  const stdout = new Writable({
    write(chunk, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  let peakHeap = 0;
  let atPeakRss = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakHeap = Math.max(peakHeap, m.heapUsed);
    if (m.rss > atPeakRss.rss) atPeakRss = { rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
  }, 20);
  const started = performance.now();
  const code = await main(['node', 'podid-migrate', ...(args.length ? args : ['plan', '-o', 'json'])], {
    stdout: stdout as unknown as NodeJS.WriteStream,
    createRuntime: async (options, m) => {
      const runtime = await createRuntime(options, m);
      return mode === 'on' ? runtime : { ...runtime, readScope: undefined };
    },
  });
  const ms = performance.now() - started;
  clearInterval(sampler);
  let blockers: string[] = [];
  try {
    const plan = JSON.parse(out) as { steps: { plan?: { blockers: { code: string; subject: string }[] } }[] };
    blockers = plan.steps.flatMap((s) => s.plan?.blockers ?? []).map((b) => `${b.code} ${b.subject}`);
  } catch {
    blockers = [`(no JSON plan on stdout: exit ${code})`];
  }
  process.stderr.write(`RESULT ${JSON.stringify({ code, ms, maxRssKiB: process.resourceUsage().maxRSS, peakHeapKiB: Math.round(peakHeap / 1024), atPeakRss: Object.fromEntries(Object.entries(atPeakRss).map(([k, v]) => [k, Math.round(v / 1048576)])), blockers })}\n`);
}

async function parent(): Promise<void> {
  const { parseScenario } = await import('../src/sandbox/scenario.ts');
  const { Sandbox } = await import('../src/sandbox/sandbox.ts');
  const PODS = Number(process.argv[2] ?? 10_000);
  const NODES = Number(process.argv[3] ?? 500);
  const POOLS = 5;
  const DEPLOYMENTS_PER_POOL = 20;
  const identities = [];
  const workloads = [];
  for (let p = 0; p < POOLS; p++) {
    identities.push({ name: `pool${p}-id`, resourceGroup: 'identities', namespace: `ns${p}`, selector: `sel${p}` });
    for (let d = 0; d < DEPLOYMENTS_PER_POOL; d++) {
      workloads.push({ name: `svc${d}`, namespace: `ns${p}`, pool: `pool${p}`, replicas: PODS / POOLS / DEPLOYMENTS_PER_POOL, binding: `sel${p}` });
    }
  }
  const scenario = parseScenario(
    stringify({
      apiVersion: 'podid-migrate.io/v1',
      kind: 'SandboxScenario',
      name: 'plan-reads',
      timeScale: 2,
      cluster: { name: 'scale', resourceGroup: 'scale' },
      pools: Array.from({ length: POOLS }, (_, p) => ({ name: `pool${p}`, count: NODES / POOLS })),
      identities,
      workloads,
    }),
    'plan-reads benchmark',
  );
  const t0 = performance.now();
  const sb = await Sandbox.start({ scenario, churn: false });
  const dir = mkdtempSync(join(tmpdir(), 'podid-plan-reads-'));
  try {
    const podType = sb.store.typeOrThrow('', 'pods');
    const running = () => {
      let n = 0;
      for (const p of sb.store.scan(podType)) if (p.status?.phase === 'Running') n++;
      return n;
    };
    let last = performance.now();
    for (let n = running(); n < PODS; n = running()) {
      if (performance.now() - last > 10_000) {
        console.log(`  ${n}/${PODS} pods Running after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
        last = performance.now();
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    const aai = sb.store.typeOrThrow('aadpodidentity.k8s.io', 'azureassignedidentities');
    const assigned = () => {
      let n = 0;
      for (const _ of sb.store.scan(aai)) n++;
      return n;
    };
    const steadyBy = performance.now() + 300_000;
    while (assigned() < PODS && performance.now() < steadyBy) await new Promise((r) => setTimeout(r, 500));
    console.log(`sandbox: ${NODES} nodes, ${running()} pods Running, ${assigned()} AzureAssignedIdentities, ready after ${((performance.now() - t0) / 1000).toFixed(0)} s`);

    const files = sb.writeClientFiles(join(dir, 'sandbox'));
    const env = {
      ...process.env,
      PODID_MIGRATE_ARM_ENDPOINT: sb.armUrl,
      PODID_MIGRATE_ARM_TOKEN_FILE: files.armTokenFile,
      PODID_MIGRATE_CA_FILE: files.caFile,
      KUBECONFIG: files.kubeconfig,
      NODE_EXTRA_CA_CERTS: files.caFile,
      PODID_MIGRATE_AKS_ID: sb.aksResourceId,
      CI: 'true',
    };
    type Result = { code: number; ms: number; maxRssKiB: number; peakHeapKiB: number; atPeakRss: Record<string, number>; blockers: string[] };
    const runPlan = async (mode: 'on' | 'off', args: string[] = [], cwd = dir) => {
      sb.metrics.reset();
      const result = await new Promise<Result>((resolve, reject) => {
        const proc = spawn(process.execPath, [import.meta.filename, '--child', mode, ...args], { env, cwd, stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
        proc.once('exit', () => {
          const line = err.split('\n').find((l) => l.startsWith('RESULT '));
          if (line) resolve(JSON.parse(line.slice(7)));
          else reject(new Error(`plan (${mode}) gave no result:\n${err.slice(-2000)}`));
        });
      });
      const snap = sb.metrics.snapshot();
      // The tool's own requests only (the sandbox's MIC is counted under its own caller name).
      const own = (bucket: Record<string, number>) => Object.fromEntries(Object.entries(bucket).filter(([label]) => !label.includes(':')));
      return { result, kube: own(snap.kube), arm: own(snap.arm) };
    };
    const runs = { off: await runPlan('off'), on: await runPlan('on') };
    // apply --step inventory: plan (preflight), plan again, apply, check; each run with its own journal and inventory file.
    const applyIn = (mode: 'on' | 'off') => {
      const cwd = join(dir, `apply-${mode}`);
      mkdirSync(cwd);
      return runPlan(mode, ['apply', '--step', 'inventory', '--yes'], cwd);
    };
    const applied = { off: await applyIn('off'), on: await applyIn('on') };
    // Then the same with one identity the caller may not assign: both must report it as a blocker.
    sb.arm.denyAssign(`/subscriptions/${scenario.subscriptionId}/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pool${POOLS - 1}-id`);
    const denied = { off: (await runPlan('off')).result, on: (await runPlan('on')).result };

    const sum = (b: Record<string, number>, f: (label: string) => boolean = () => true) => Object.entries(b).filter(([l]) => f(l)).reduce((n, [, c]) => n + c, 0);
    // The sandbox counts each page of a paged list as one list request.
    const listsOf = (b: Record<string, number>) => {
      const out: Record<string, number> = {};
      for (const [label, n] of Object.entries(b)) if (label.startsWith('list ')) out[label.split(' ')[1]] = (out[label.split(' ')[1]] ?? 0) + n;
      return out;
    };
    const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
    const col = (s: string | number) => String(s).padStart(14);
    console.log('');
    console.log(`${`podid-migrate plan -o json, ${PODS} pods on ${NODES} nodes`.padEnd(58)} ${col('snapshot off')} ${col('snapshot on')}`);
    const row = (name: string, off: string | number, on: string | number) => console.log(`${name.padEnd(58)} ${col(off)} ${col(on)}`);
    row('exit code', runs.off.result.code, runs.on.result.code);
    row('Kubernetes requests', sum(runs.off.kube), sum(runs.on.kube));
    row('  of which list pages', sum(runs.off.kube, (l) => l.startsWith('list ')), sum(runs.on.kube, (l) => l.startsWith('list ')));
    const kinds = [...new Set([...Object.keys(listsOf(runs.off.kube)), ...Object.keys(listsOf(runs.on.kube))])].sort();
    const objectsOf = (resource: string) => {
      const [plural, ...group] = resource.split('.');
      const type = sb.store.type(group.join('.'), plural);
      return type ? sb.store.count(type) : 0;
    };
    for (const k of kinds) row(`    list ${k.split('.')[0]} (${objectsOf(k)} objects, ${Math.max(1, Math.ceil(objectsOf(k) / 500))} pages/list)`, listsOf(runs.off.kube)[k] ?? 0, listsOf(runs.on.kube)[k] ?? 0);
    row('  gets', sum(runs.off.kube, (l) => l.startsWith('get ')), sum(runs.on.kube, (l) => l.startsWith('get ')));
    row('ARM requests', sum(runs.off.arm), sum(runs.on.arm));
    row('  of which permission checks', sum(runs.off.arm, (l) => l.includes('Permissions_')), sum(runs.on.arm, (l) => l.includes('Permissions_')));
    row('peak RSS of the plan process', mib(runs.off.result.maxRssKiB), mib(runs.on.result.maxRssKiB));
    row('  peak JS heap used (sampled every 20 ms)', mib(runs.off.result.peakHeapKiB), mib(runs.on.result.peakHeapKiB));
    row('wall time', `${(runs.off.result.ms / 1000).toFixed(1)} s`, `${(runs.on.result.ms / 1000).toFixed(1)} s`);
    // What the snapshot keeps of those lists: JSON in deflated chunks of 500, as src/kube/read-snapshot.ts does.
    let jsonBytes = 0;
    let keptBytes = 0;
    for (const k of kinds) {
      const [plural, ...group] = k.split('.');
      const type = sb.store.type(group.join('.'), plural);
      if (!type) continue;
      const objs = [...sb.store.scan(type)];
      for (let i = 0; i < objs.length; i += 500) {
        const text = JSON.stringify(objs.slice(i, i + 500));
        jsonBytes += text.length;
        keptBytes += deflateRawSync(text, { level: 1 }).length;
      }
    }
    row('listed kinds: JSON text / kept by the snapshot (deflated)', mib(jsonBytes / 1024), mib(keptBytes / 1024));
    row('apply --step inventory: exit code', applied.off.result.code, applied.on.result.code);
    row('  Kubernetes requests', sum(applied.off.kube), sum(applied.on.kube));
    row('    of which list pages', sum(applied.off.kube, (l) => l.startsWith('list ')), sum(applied.on.kube, (l) => l.startsWith('list ')));
    row('  ARM requests', sum(applied.off.arm), sum(applied.on.arm));
    row('  peak RSS', mib(applied.off.result.maxRssKiB), mib(applied.on.result.maxRssKiB));
    console.log('');
    console.log(`ratios on/off: Kubernetes requests ${(sum(runs.on.kube) / sum(runs.off.kube)).toFixed(2)}, ARM requests ${(sum(runs.on.arm) / sum(runs.off.arm)).toFixed(2)}, peak RSS ${(runs.on.result.maxRssKiB / runs.off.result.maxRssKiB).toFixed(2)}, time ${(runs.on.result.ms / runs.off.result.ms).toFixed(2)}`);
    console.log(`snapshot on: peak RSS ${mib(runs.on.result.maxRssKiB)} (goal < 300 MiB); list pages per kind above (one list of N objects is ceil(N/500) pages)`);
    for (const mode of ['off', 'on'] as const) console.log(`memory at the sampled RSS peak (${mode}), MiB: ${JSON.stringify(runs[mode].result.atPeakRss)}`);
    if (process.env.PLAN_READS_DEBUG) for (const mode of ["off", "on"] as const) console.log(mode, runs[mode].kube, runs[mode].arm);
    for (const mode of ['off', 'on'] as const) console.log(`blockers (${mode}): ${runs[mode].result.blockers.join('; ') || 'none'}`);
    for (const mode of ['off', 'on'] as const) console.log(`blockers with pool${POOLS - 1}-id's assign permission denied (${mode}): ${denied[mode].blockers.join('; ') || 'none'} (exit ${denied[mode].code})`);
    const same = JSON.stringify(runs.off.result.blockers) === JSON.stringify(runs.on.result.blockers) && JSON.stringify(denied.off.blockers) === JSON.stringify(denied.on.blockers) && denied.on.blockers.some((b) => b.startsWith('cannot-assign-identity'));
    console.log(same ? 'blockers identical with and without the snapshot; the denied identity is a blocker in both' : 'BLOCKERS DIFFER between the runs');
  } finally {
    await sb.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
