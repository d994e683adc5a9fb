/**
 * `cut` in the command emulator, and the `test` step's token probe script run through it as a
 * probe pod would run it: only the JWT payload segment reaches stdout.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/sandbox/clock.ts';
import { runCommand } from '../../../src/sandbox/controllers/command-emulator.ts';
import { PodNetwork } from '../../../src/sandbox/netsim.ts';
import { tokenScript } from '../../../src/steps/lib/probe.ts';

const HEADER = Buffer.from('{"alg":"RS256","typ":"JWT"}').toString('base64url');
const PAYLOAD = Buffer.from('{"xms_mirid":"/subscriptions/s/resourcegroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/api-id","appid":"c1","oid":"p1"}').toString('base64url');
const SIGNATURE = 'c2lnbmF0dXJlLW9mLXRoZS10b2tlbg';
const BODY = JSON.stringify({ access_token: `${HEADER}.${PAYLOAD}.${SIGNATURE}`, client_id: 'c1', expires_in: '86399', resource: 'https://management.azure.com/', token_type: 'Bearer' });

async function exec(script: string, answer: () => { status: number; body: string }) {
  const clock = new ManualClock();
  const net = new PodNetwork();
  net.setInterceptor('n1', (req) => (req.headers.Metadata !== 'true' ? { status: 400, body: 'no header' } : answer()));
  let out = '';
  let err = '';
  let code: number | undefined;
  const p = runCommand(['sh', '-c', script], {
    clock,
    network: net,
    source: { ip: '10.244.0.7', nodeName: 'n1', pod: { namespace: 'payments', name: 'probe' } },
    env: {},
    image: 'curlimages/curl:8.11.1',
    signal: new AbortController().signal,
    out: (t) => (out += t),
    err: (t) => (err += t),
  }).then((c) => (code = c));
  for (let i = 0; i < 4000 && code === undefined; i++) await clock.advance(250);
  await p;
  return { code: code!, out, err };
}

describe('cut', () => {
  const table: [string, string][] = [
    ["printf 'a.b.c\\nx.y\\nnodelim\\n' | cut -d. -f2", 'b\ny\nnodelim\n'],
    ["printf 'a.b.c\\nnodelim\\n' | cut -s -d . -f 1,3", 'a.c\n'],
    ["printf 'a:b:c:d\\n' | cut -d: -f2-", 'b:c:d\n'],
    ["printf 'a:b:c:d\\n' | cut -d: -f-2", 'a:b\n'],
    ["printf 'hello\\n' | cut -c 2-3", 'el\n'],
    ["printf 'k\\tv\\n' | cut -f2", 'v\n'],
  ];
  for (const [script, want] of table) {
    it(script, async () => {
      const r = await exec(script, () => ({ status: 200, body: '' }));
      expect(r).toMatchObject({ code: 0, out: want });
    });
  }
  it('rejects a bad list or delimiter like the real tool', async () => {
    expect(await exec("echo a | cut -d. -f0", () => ({ status: 200, body: '' }))).toMatchObject({ code: 1, err: "cut: invalid field value '0'\n" });
    expect(await exec("echo a | cut -d '::' -f1", () => ({ status: 200, body: '' }))).toMatchObject({ code: 1, err: 'cut: the delimiter must be a single character\n' });
  });
});

describe('the token probe script', () => {
  const url = 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F';

  it('prints the status and only the payload segment', async () => {
    const r = await exec(tokenScript(url, 3), () => ({ status: 200, body: BODY }));
    expect(r.code).toBe(0);
    expect(r.out).toBe(`probe-status 200 attempt 1\nprobe-claims ${PAYLOAD}\n`);
    expect(r.out).not.toContain(SIGNATURE);
    expect(r.out).not.toContain(HEADER);
  });

  it('retries every 5 s and reports each answer until it gives up', async () => {
    let n = 0;
    const r = await exec(tokenScript(url, 3), () => (++n < 3 ? { status: 404, body: 'no AzureIdentity matched' } : { status: 200, body: BODY }));
    expect(r.out).toBe(`probe-status 404 attempt 1 no AzureIdentity matched\nprobe-status 404 attempt 2 no AzureIdentity matched\nprobe-status 200 attempt 3\nprobe-claims ${PAYLOAD}\n`);
    const never = await exec(tokenScript(url, 2), () => ({ status: 403, body: 'forbidden' }));
    expect(never).toMatchObject({ code: 1, out: 'probe-status 403 attempt 1 forbidden\nprobe-status 403 attempt 2 forbidden\n' });
  });
});
