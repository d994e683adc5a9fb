/**
 * curl's request body options in the command emulator, as a workload identity probe uses
 * them: `-d @file` (CR/LF stripped), `--data-binary @file`, `--data-raw`, `--data-urlencode`
 * in its forms, `$(cat <mounted file>)`, and files from the container's volumes.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/sandbox/clock.ts';
import { runCommand } from '../../../src/sandbox/controllers/command-emulator.ts';
import { PodNetwork } from '../../../src/sandbox/netsim.ts';

async function run(script: string, mounted: Record<string, string> = {}): Promise<{ code: number; out: string; err: string; bodies: string[]; types: string[] }> {
  const clock = new ManualClock();
  const net = new PodNetwork();
  const bodies: string[] = [];
  const types: string[] = [];
  net.addResolver((h) => (h === 'login.example' ? '20.0.0.1' : undefined));
  net.listen('20.0.0.1', 443, (req) => {
    bodies.push(req.body ?? '');
    types.push(`${req.method} ${req.headers['Content-Type'] ?? ''}`);
    return { status: 200, body: 'ok' };
  });
  let out = '';
  let err = '';
  let code: number | undefined;
  const p = runCommand(['sh', '-c', script], {
    clock,
    network: net,
    source: { ip: '10.244.0.7', nodeName: 'n1', pod: { namespace: 'default', name: 'probe' } },
    env: { AUTH: 'https://login.example/', TENANT: 't1', TOKEN_FILE: '/var/run/secrets/azure/tokens/azure-identity-token' },
    image: 'curlimages/curl:8.11.1',
    signal: new AbortController().signal,
    out: (t) => (out += t),
    err: (t) => (err += t),
    readMounted: (path) => mounted[path],
  }).then((c) => (code = c));
  for (let i = 0; i < 100 && code === undefined; i++) await clock.advance(100);
  await p;
  return { code: code!, out, err, bodies, types };
}

describe('curl request bodies', () => {
  it('joins -d pieces with & and POSTs them form-encoded; $(cat) reads a mounted token file', async () => {
    const r = await run('curl -s -d grant_type=client_credentials -d "client_assertion=$(cat $TOKEN_FILE)" "${AUTH}${TENANT}/oauth2/v2.0/token"', { '/var/run/secrets/azure/tokens/azure-identity-token': 'aaa.bbb.ccc\n' });
    expect(r.code).toBe(0);
    expect(r.bodies).toEqual(['grant_type=client_credentials&client_assertion=aaa.bbb.ccc']);
    expect(r.types).toEqual(['POST application/x-www-form-urlencoded']);
  });

  it('-d @file strips newlines, --data-binary @file keeps them, --data-raw takes @ literally', async () => {
    const files = { '/t': 'line1\r\nline2\n' };
    expect((await run('curl -s -d @/t https://login.example/x', files)).bodies).toEqual(['line1line2']);
    expect((await run('curl -s --data-binary @/t https://login.example/x', files)).bodies).toEqual(['line1\r\nline2\n']);
    expect((await run('curl -s --data-raw @/t https://login.example/x', files)).bodies).toEqual(['@/t']);
  });

  it('--data-urlencode encodes the content of content, =content, name=content and name@file', async () => {
    const r = await run('curl -s --data-urlencode "scope=https://management.azure.com/.default" --data-urlencode "=a b" --data-urlencode "x y" --data-urlencode "tok@/t" https://login.example/x', { '/t': 'p+q' });
    expect(r.bodies).toEqual(['scope=https%3A%2F%2Fmanagement.azure.com%2F.default&a%20b&x%20y&tok=p%2Bq']);
  });

  it('warns about an unreadable file and sends an empty piece, as curl does', async () => {
    const r = await run('curl -s -X POST -d @/missing https://login.example/x');
    expect(r.bodies).toEqual(['']);
    expect(r.err).toContain(`Warning: Couldn't read data from file "/missing", this makes an empty`);
  });

  it('scripts see mounted files with test -f and < redirection', async () => {
    const r = await run('test -f $TOKEN_FILE && read_ok=yes; cat < $TOKEN_FILE; echo " $read_ok"; test -f /nope || echo absent', { '/var/run/secrets/azure/tokens/azure-identity-token': 'tok' });
    expect(r.out).toBe('tok yes\nabsent\n');
  });
});
