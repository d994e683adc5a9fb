/**
 * Journal cost per recorded action, as a function of how many actions the journal already holds.
 *
 * For journals that already hold 10 and 5,000 done actions (each with a ~2.5 KB pre-state, the
 * size of a saved AzureAssignedIdentity), records more actions through `StepJournal.runAction`
 * (intent fsynced before the mutation, done after) and prints records/s side by side with the
 * whole-file rewrite the journal used before its action log (implemented inline below: every
 * intent and done re-serialises the document, scans it for tokens and replaces the file atomically).
 *
 *   node bench/journal-records.ts [seconds-per-journal=3]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../src/engine/atomic-file.ts';
import { Journal, assertNoTokens, type ClusterIdentity, type JournalDocument } from '../src/engine/journal.ts';
import type { ActionRecord, PlannedAction } from '../src/engine/step.ts';

const SECONDS = Number(process.argv[2] ?? 3);
const SIZES = [10, 5000];
const CLUSTER: ClusterIdentity = {
  name: 'bench',
  apiServer: 'https://127.0.0.1:6443',
  kubeSystemUid: '6f1c2d3e-0000-4000-8000-000000000001',
  subscriptionId: '00000000-0000-4000-8000-000000000000',
  aksResourceId: '/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/bench/providers/Microsoft.ContainerService/managedClusters/bench',
};

/** What cleanup keeps of one AzureAssignedIdentity before deleting it. */
function savedCopy(i: number): unknown {
  return {
    apiVersion: 'aadpodidentity.k8s.io/v1',
    kind: 'AzureAssignedIdentity',
    metadata: { name: `api-${i}-default-api-id`, namespace: 'default', uid: `0000${i}-aaaa-4000-8000-000000000000`, resourceVersion: String(100000 + i), labels: { nodename: `aks-pool0-12345678-vmss${String(i % 100).padStart(6, '0')}` }, finalizers: ['azureassignedidentity.finalizers.aadpodidentity.k8s.io'] },
    spec: {
      azureIdentityRef: { metadata: { name: 'api-id', namespace: 'default' }, spec: { type: 0, resourceID: '/subscriptions/00000000-0000-4000-8000-000000000000/resourcegroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/api-id', clientID: '11111111-2222-4333-8444-555555555555' } },
      azureBindingRef: { metadata: { name: 'api-binding', namespace: 'default' }, spec: { azureIdentity: 'api-id', selector: 'api' } },
      pod: `api-${i}-7d9f8c6b5-x${i}`,
      podNamespace: 'default',
      nodename: `aks-pool0-12345678-vmss${String(i % 100).padStart(6, '0')}`,
    },
    status: { status: 'Assigned', availableReplicas: 1 },
    padding: 'x'.repeat(1200),
  };
}

function action(i: number): PlannedAction {
  return { id: `delete/azureassignedidentity/default/api-${i}`, op: '-', target: `azureassignedidentity default/api-${i}`, kind: 'delete-object', summary: 'delete (full copy kept)', api: 'kube', writes: { kube: 1, arm: 0 }, details: {} };
}

/** A journal file holding `n` done cleanup actions. */
async function seed(path: string, n: number): Promise<void> {
  const journal = await Journal.open(path, CLUSTER);
  await journal.setState('cleanup', 'applying');
  const doc = journal.snapshot();
  const at = new Date().toISOString();
  for (let i = 0; i < n; i++) {
    const a = action(i);
    doc.steps.cleanup.actions.push({ actionId: a.id, op: a.op, target: a.target, summary: a.summary, api: a.api, status: 'done', preState: savedCopy(i), result: 'deleted', intentAt: at, doneAt: at });
    doc.events.push({ at, event: 'action-intent', stepId: 'cleanup', message: `${a.op} ${a.target}: ${a.summary}` }, { at, event: 'action-done', stepId: 'cleanup', message: `${a.op} ${a.target}` });
  }
  doc.events.splice(0, Math.max(0, doc.events.length - 5000));
  await writeFile(path, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
}

type Recorder = (i: number) => Promise<void>;

/**
 * Measures recorders side by side: ROUNDS rounds, each giving every recorder SECONDS / ROUNDS
 * in turn, so a change in the machine's load hits every recorder alike. Returns records/s each.
 */
async function measureSideBySide(recorders: Recorder[], firstIndex: number[]): Promise<{ perSecond: number; count: number }[]> {
  const ROUNDS = 6;
  const totals = recorders.map(() => ({ ms: 0, count: 0 }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [k, record] of recorders.entries()) {
      const started = performance.now();
      let n = 0;
      while (n < 2 || performance.now() - started < (SECONDS * 1000) / ROUNDS) {
        await record(firstIndex[k] + totals[k].count + n);
        n++;
      }
      totals[k].ms += performance.now() - started;
      totals[k].count += n;
    }
  }
  return totals.map((t) => ({ perSecond: t.count / (t.ms / 1000), count: t.count }));
}

/** The action log (this journal), on a journal holding `n` actions. */
async function current(dir: string, n: number): Promise<Recorder> {
  const path = join(dir, `current-${n}.json`);
  await seed(path, n);
  const sj = (await Journal.open(path, CLUSTER)).forStep('cleanup');
  return async (i) => {
    await sj.runAction(action(i), savedCopy(i), async () => 'deleted');
  };
}

/** The previous implementation: the whole document rewritten atomically at intent and at done. */
async function wholeFileRewrite(dir: string, n: number): Promise<Recorder> {
  const path = join(dir, `rewrite-${n}.json`);
  await seed(path, n);
  const doc = (await Journal.read(path))! as JournalDocument;
  const save = async () => {
    doc.updatedAt = new Date().toISOString();
    assertNoTokens(doc);
    await writeFileAtomic(path, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
  };
  return async (i) => {
    const a = action(i);
    const preState = savedCopy(i);
    assertNoTokens(preState);
    const entry = doc.steps.cleanup;
    const record: ActionRecord = { actionId: a.id, op: a.op, target: a.target, summary: a.summary, api: a.api, status: 'intent', intentAt: new Date().toISOString() };
    if (!entry.actions.some((r) => r.actionId === a.id && r.preState !== undefined)) record.preState = structuredClone(preState);
    entry.actions.push(record);
    doc.events.push({ at: record.intentAt, event: 'action-intent', stepId: 'cleanup', message: a.target });
    await save();
    record.status = 'done';
    record.doneAt = new Date().toISOString();
    record.result = 'deleted';
    doc.events.push({ at: record.doneAt, event: 'action-done', stepId: 'cleanup', message: a.target });
    if (doc.events.length > 5000) doc.events.splice(0, doc.events.length - 5000);
    await save();
  };
}

const dir = await mkdtemp(join(tmpdir(), 'podid-journal-bench-'));
try {
  const rows: { impl: string; n: number; perSecond: number; count: number }[] = [];
  for (const [impl, make] of [['action log', current], ['whole-file rewrite', wholeFileRewrite]] as const) {
    const recorders = await Promise.all(SIZES.map((n) => make(dir, n)));
    const results = await measureSideBySide(recorders, SIZES);
    for (const [k, n] of SIZES.entries()) rows.push({ impl, n, ...results[k] });
  }
  const rate = (impl: string, n: number) => rows.find((r) => r.impl === impl && r.n === n)!.perSecond;
  console.log(`journal: actions recorded per second (intent + done, each fsynced); ${SECONDS} s per journal, in 6 alternating rounds`);
  console.log('');
  console.log(`${'implementation'.padEnd(20)} ${SIZES.map((n) => `${n} existing`.padStart(16)).join(' ')} ${'ratio'.padStart(12)}`);
  for (const impl of ['action log', 'whole-file rewrite']) {
    const [small, large] = SIZES.map((n) => rate(impl, n));
    console.log(`${impl.padEnd(20)} ${SIZES.map((n) => `${rate(impl, n).toFixed(1)}/s`.padStart(16)).join(' ')} ${(large / small).toFixed(2).padStart(12)}`);
  }
  console.log('');
  console.log(`ratio = records/s at ${SIZES[1]} existing / at ${SIZES[0]} (1 = independent of the journal's size)`);
  for (const n of SIZES) console.log(`action log vs whole-file rewrite at ${n} existing actions: ${(rate('action log', n) / rate('whole-file rewrite', n)).toFixed(1)}x`);
  console.log(`samples: ${rows.map((r) => `${r.impl}@${r.n}=${r.count}`).join(', ')}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
