import { applyPlan, rollbackStep, verifyRollback } from './run-actions.ts';
import { readFileSync } from 'node:fs';
import { actionLogPathFor } from '../../src/engine/journal.ts';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { decodeJwtPayload, interpretTokenRun, parseStatusLines, runTokenProbe, scrubTokens, verifyClaims } from '../../src/steps/lib/probe.ts';
import { renderJunit, type TestResult } from '../../src/steps/lib/junit.ts';
import { expandCases, testStep } from '../../src/steps/06-test.ts';
import { CLUSTER, contextFor, idOf, MiniAzure, FakeKube, nodeObject, podObject, recordStepData, tempDir } from './steps-5-7-fakes.ts';
import { Journal } from '../../src/engine/journal.ts';

/**
 * A strict XML 1.0 well-formedness check for the report (no parser is a dependency): tags nest
 * and close, attribute values are quoted, `&` starts only the five predefined entities, and no
 * raw `<` appears in text. Returns the root element's attributes.
 */
function parseXmlShape(xml: string): { root: string; attrs: Record<string, string>; elements: number } {
  const body = xml.replace(/^<\?xml [^?]*\?>\s*/, '');
  const stack: string[] = [];
  let root = '';
  let attrs: Record<string, string> = {};
  let elements = 0;
  const re = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  while ((m = re.exec(body))) {
    pos = re.lastIndex;
    if (m[5] !== undefined) {
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(m[5])) throw new Error(`bad entity in text: ${m[5].slice(0, 40)}`);
      continue;
    }
    const [, close, name, attrText, selfClose] = m;
    if (/&(?!(amp|lt|gt|quot|apos);)/.test(attrText)) throw new Error(`bad entity in attributes of ${name}`);
    if (close) {
      if (stack.pop() !== name) throw new Error(`</${name}> does not close the open element`);
      continue;
    }
    elements++;
    if (!root) {
      root = name;
      attrs = Object.fromEntries([...attrText.matchAll(/([\w.-]+)="([^"]*)"/g)].map((a) => [a[1], a[2]]));
    }
    if (!selfClose) stack.push(name);
  }
  if (pos !== body.length || stack.length) throw new Error(`not well-formed near offset ${pos}: ${body.slice(pos, pos + 60)}`);
  return { root, attrs, elements };
}

const API = { name: 'payments/api-id', resourceId: idOf('api-id'), clientId: '0b7c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d', principalId: '9a8b7c6d-0000-4000-8000-00000000a001' };
const SECRET = new TextEncoder().encode('sandbox-signing-key-for-unit-tests-only');

/** A signed JWT as IMDS hands out (claims from DOMAIN.md section 8). */
async function imdsToken(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ aud: 'https://management.azure.com/', tid: '72f988bf-86f1-41af-91ab-2d7cd011db47', ...claims })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(SECRET);
}

function imdsBody(token: string): string {
  return JSON.stringify({ access_token: token, client_id: API.clientId, expires_in: '86399', expires_on: '1893456000', resource: 'https://management.azure.com/', token_type: 'Bearer' });
}

describe('claims', () => {
  it('accepts the identity whatever the resource id casing, and names each mismatch', async () => {
    const good = decodeJwtPayload(await imdsToken({ xms_mirid: API.resourceId.replace('resourcegroups', 'resourceGroups').toUpperCase(), appid: API.clientId, oid: API.principalId }))!;
    expect(verifyClaims(good, API)).toEqual([]);
    const other = decodeJwtPayload(await imdsToken({ xms_mirid: idOf('checkout-id'), appid: 'ffff', oid: API.principalId }))!;
    expect(verifyClaims(other, API)).toEqual([`xms_mirid is ${idOf('checkout-id')}, expected ${API.resourceId}`, `appid is ffff, expected client id ${API.clientId}`]);
  });

  it('catches the IMDS cache trap: same resource id and client id, but the old principal', async () => {
    const stale = decodeJwtPayload(await imdsToken({ xms_mirid: API.resourceId, appid: API.clientId, oid: '11111111-2222-4333-8444-555555555555' }))!;
    const m = verifyClaims(stale, API);
    expect(m).toHaveLength(1);
    expect(m[0]).toMatch(/^oid is 11111111-.* expected principal id 9a8b7c6d-.*cached token of a deleted and re-created identity/);
  });

  it('decodes a whole token or its payload segment, and nothing else', async () => {
    const t = await imdsToken({ appid: 'x' });
    expect(decodeJwtPayload(t)?.appid).toBe('x');
    expect(decodeJwtPayload(t.split('.')[1])?.appid).toBe('x');
    expect(decodeJwtPayload('{"error":"invalid_request"}')).toBeUndefined();
    expect(scrubTokens(`token ${t} end`)).toBe('token <redacted token> end');
  });
});

describe('token probe pod (script run by the real /bin/sh with the real cut)', () => {
  function cluster() {
    const kube = new FakeKube();
    const node = kube.add(nodeObject('pay', 1)).metadata!.name!;
    return { kube, node };
  }

  it('prints only the payload segment, checks the claims, and deletes the pod', async () => {
    const { kube, node } = cluster();
    const token = await imdsToken({ xms_mirid: API.resourceId, appid: API.clientId, oid: API.principalId });
    kube.curl = (pod, url) => {
      expect(pod.metadata?.labels).toMatchObject({ aadpodidbinding: 'api', 'podid-migrate.io/probe': 'true' });
      expect((pod.spec as { nodeName: string }).nodeName).toBe(node);
      expect(url).toBe('http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net');
      return { status: 200, body: imdsBody(token) };
    };
    const r = await runTokenProbe(kube, { namespace: 'payments', nodeName: node, selector: 'api', identity: API, resource: 'https://vault.azure.net', timeoutMs: 5000 });
    expect(r).toMatchObject({ ok: true, attempts: 1, status: 200, mismatches: [] });
    expect(r.message).toBe(`token for payments/api-id on node ${node}: xms_mirid, appid, oid match (attempt 1)`);
    const log = [...kube.logs.values()][0];
    expect(log).toContain('probe-claims ');
    // The container log never held a usable token: no signature, no header.
    expect(log).not.toContain(token);
    expect(log).not.toContain(token.split('.')[2]);
    expect(log).not.toContain(token.split('.')[0]);
    expect(kube.all('Pod')).toEqual([]);
    expect(kube.writeLines().filter((w) => w.startsWith('delete Pod'))).toHaveLength(1);
  });

  it('retries for the whole budget while NMI answers 404, then reports the last answer', async () => {
    const { kube, node } = cluster();
    kube.curl = () => ({ status: 404, body: 'no AzureIdentity found for pod payments/probe' });
    const r = await runTokenProbe(kube, { namespace: 'payments', nodeName: node, selector: 'api', identity: API, timeoutMs: 80_000 });
    expect(r.ok).toBe(false);
    expect(r.attempts).toBe(16);
    expect(r.message).toBe(`no token for identity payments/api-id on node ${node}: HTTP 404 after 16 attempts: no AzureIdentity found for pod payments/probe`);
    expect(kube.all('Pod')).toEqual([]);
  });

  it('deletes the probe pod when the run is aborted', async () => {
    const { kube, node } = cluster();
    // A pod that never finishes: the fake kubelet is told the script hangs.
    kube.create = (async (obj) => {
      kube.writes.push({ verb: 'create', kind: 'Pod', key: `Pod/${obj.metadata?.namespace}/${obj.metadata?.name}` });
      return kube.add(obj);
    }) as FakeKube['create'];
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('interrupted')), 50);
    await expect(runTokenProbe(kube, { namespace: 'payments', nodeName: node, selector: 'api', identity: API, timeoutMs: 60_000, signal: ac.signal })).rejects.toThrow('interrupted');
    expect(kube.all('Pod')).toEqual([]);
  });

  it('reads status lines and verdicts from a log', () => {
    expect(parseStatusLines('probe-status 000 attempt 1 \nprobe-status 400 attempt 2 {"error":"invalid_request"}\n')).toEqual([
      { status: 0, attempt: 1, detail: '' },
      { status: 400, attempt: 2, detail: '{"error":"invalid_request"}' },
    ]);
    const r = interpretTokenRun({ pod: 'p', log: 'probe-status 200 attempt 1\nprobe-claims not-base64!\n', phase: 'Succeeded', exitCode: 0, timedOut: false, durationMs: 5 }, API, 'n1');
    expect(r).toMatchObject({ ok: false, message: 'IMDS answered 200 on node n1 but the response held no readable token' });
  });
});

const INVENTORY = {
  apiVersion: 'podid-migrate/v1',
  kind: 'Inventory',
  cluster: { name: 'prod-weu', kubeSystemUid: 'ks-uid' },
  identities: [
    {
      name: 'api-id', namespace: 'payments', type: 0, resourceId: API.resourceId, clientId: API.clientId, principalId: API.principalId, pools: ['pay'],
      bindings: [{ name: 'api-binding', namespace: 'payments', selector: 'api' }],
      services: [
        { name: 'payments/api', selector: 'api', pools: ['pay'], testCases: [{ kind: 'token' }, { kind: 'nmi-health' }] },
        { name: 'payments/ledger', selector: 'api', pools: ['pay'], testCases: [{ kind: 'command', command: ['sh', '-c', 'echo "pool=$PODID_MIGRATE_POOL node=$PODID_MIGRATE_NODE"; printf \'%s.%s.%s\\n\' eyJhbGciOiJIUzI1NiJ9 eyJzdWIiOiJ4In0 c2lnbmF0dXJl; exit 3'] }] },
      ],
    },
    {
      name: 'worker-id', namespace: 'batch', type: 0, resourceId: idOf('worker-id'), clientId: '2d9e3f40-5162-4c7d-8e8f-9a0b1c2d3e4f', pools: ['batch'],
      services: [{ name: 'batch/worker', selector: 'worker', pools: ['batch'], testCases: [{ kind: 'token' }] }, { name: 'batch/importer', selector: 'worker', pools: ['batch'] }],
    },
  ],
  pools: [{ name: 'pay' }, { name: 'batch' }],
};

describe('test step', () => {
  it('expands every case once per pool onto the fresh node, and blocks a pool without one', () => {
    const { cases, blockers, untested } = expandCases(INVENTORY as never, { pay: 'n-pay' });
    expect(cases.map((c) => c.id)).toEqual(['payments/api/pay/1-token', 'payments/api/pay/2-nmi-health', 'payments/ledger/pay/1-command']);
    expect(blockers.map((b) => [b.code, b.subject])).toEqual([['no-fresh-node', 'pool batch']]);
    expect(untested).toEqual(['batch/importer']);
  });

  it('needs the drain step first, then records results and a JUnit report without any token; check names service, pool, node and identity', async () => {
    const kube = new FakeKube();
    const azure = new MiniAzure(kube);
    const pay = kube.add(nodeObject('pay', 1)).metadata!.name!;
    const batch = kube.add(nodeObject('batch', 2)).metadata!.name!;
    kube.add(podObject('default', 'nmi-pay', pay, { kind: 'DaemonSet', name: 'nmi' }));
    kube.add(podObject('default', 'nmi-batch', batch, { kind: 'DaemonSet', name: 'nmi' }));
    const good = await imdsToken({ xms_mirid: API.resourceId, appid: API.clientId, oid: API.principalId });
    // The batch node's VMSS lost worker-id: IMDS answers with the only other identity there.
    const wrong = await imdsToken({ xms_mirid: idOf('prod-weu-agentpool'), appid: 'kubelet-client', oid: 'kubelet-oid' });
    kube.curl = (pod) => ({ status: 200, body: imdsBody((pod.spec as { nodeName: string }).nodeName === pay ? good : wrong) });
    const dir = tempDir();
    const junitPath = join(dir, 'reports', 'junit.xml');
    let ctx = await contextFor('test', kube, azure, dir, { inventory: INVENTORY, options: { junitPath, testTimeoutMs: 2000 } });
    await expect(testStep.plan(ctx)).rejects.toThrow(/drain step records one per pool/);

    await recordStepData(dir, 'inventory', 'podIdentity', { nmi: { namespace: 'default', name: 'nmi' }, mic: { namespace: 'default', name: 'mic' } });
    await recordStepData(dir, 'drain', 'freshNodes', { pay, batch });
    ctx = await contextFor('test', kube, azure, dir, { inventory: INVENTORY, options: { junitPath, testTimeoutMs: 2000 } });
    const plan = await testStep.plan(ctx);
    expect(plan.blockers).toEqual([]);
    expect(plan.notes[0]).toBe('4 test cases on 2 fresh nodes');

    // Drain interrupted again (a crash left an action unsettled): its recorded fresh nodes may be
    // stale or partial, so the plan depends on drain instead of reporting blockers.
    {
      const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
      // The process dies inside the write: the intent stays (the promise is never settled).
      await new Promise<void>((intentSaved) => {
        void journal.forStep('drain').runAction({ id: 'pool/pay/replace', kind: 'replace-node', op: '~', target: 'node x', summary: 'reimage', api: 'arm' }, undefined, () => {
          intentSaved();
          return new Promise(() => {});
        });
      });
      const interrupted = await contextFor('test', kube, azure, dir, { inventory: INVENTORY, options: { junitPath, testTimeoutMs: 2000 } });
      await expect(testStep.plan(interrupted)).rejects.toThrow(/drain step has unfinished actions \(pool\/pay\/replace\)/);
      await journal.forStep('drain').settleRecord('pool/pay/replace', { done: true });
    }
    expect(plan.notes[1]).toContain('batch/importer');
    const out = await applyPlan(testStep, ctx, plan);
    expect(out.summary).toBe('2/4 test cases passed on 2 fresh nodes, 2 failed');

    const check = await testStep.check(ctx);
    expect(check.ok).toBe(false);
    expect(check.failures).toEqual([
      expect.stringMatching(new RegExp(`^token of service batch/worker in pool batch \\(node ${batch}\\), identity batch/worker-id: token on node ${batch} is not for identity batch/worker-id: xms_mirid is .*prod-weu-agentpool`)),
      expect.stringMatching(new RegExp(`^command of service payments/ledger in pool pay \\(node ${pay}\\), identity payments/api-id: sh -c .* exited 3: <redacted token>$`)),
    ]);
    const results = ctx.journal.getData<TestResult[]>('results')!;
    expect(results.find((r) => r.kind === 'command')?.output).toContain(`pool=pay node=${pay}`);

    const journalText = readFileSync(ctx.journalPath, 'utf8') + readFileSync(actionLogPathFor(ctx.journalPath), 'utf8');
    const xml = readFileSync(junitPath, 'utf8');
    for (const text of [journalText, xml, ctx.messages.join('\n')]) {
      for (const t of [good, wrong]) {
        expect(text).not.toContain(t);
        expect(text).not.toContain(t.split('.')[1]);
      }
      expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\./);
    }
    const doc = parseXmlShape(xml);
    expect(doc.root).toBe('testsuites');
    expect(doc.attrs).toMatchObject({ tests: '4', failures: '2' });
    expect(kube.all('Pod').filter((p) => p.metadata?.labels?.['podid-migrate.io/probe'])).toEqual([]);
  });
});

describe('JUnit XML', () => {
  it('escapes markup, groups by pool and names the failing identity', () => {
    const xml = renderJunit([
      { id: 'a', kind: 'http', service: 'payments/api', namespace: 'payments', pool: 'pay', node: 'n1', identity: 'payments/api-id', ok: false, message: 'got <500> & "oops"', attempts: 3, durationMs: 1500 },
      { id: 'b', kind: 'token', service: 'batch/worker', namespace: 'batch', pool: 'batch', node: 'n2', identity: 'batch/worker-id', ok: true, message: 'fine', attempts: 1, durationMs: 250 },
    ]);
    expect(parseXmlShape(xml).elements).toBe(1 + 2 + 2 * (1 + 1 + 5) + 1 + 1);
    expect(() => parseXmlShape('<a><b></a></b>')).toThrow();
    expect(() => parseXmlShape('<a>x & y</a>')).toThrow();
    expect(xml).toContain('<testsuite name="podid-migrate test / pool batch" tests="1" failures="0"');
    expect(xml).toContain('<failure message="got &lt;500&gt; &amp; &quot;oops&quot;" type="http">service payments/api, pool pay, node n1, identity payments/api-id: got &lt;500&gt;');
    expect(xml).toContain('time="1.500"');
  });
});
