import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/sandbox/clock.ts';
import { isEmulatedArgv, runCommand } from '../../../src/sandbox/controllers/command-emulator.ts';
import { PodNetwork } from '../../../src/sandbox/netsim.ts';

const NODE_IP = '10.224.0.4';
const TOKEN = '{"access_token":"eyJ0eXAi.x.y","expires_in":"86399","token_type":"Bearer"}';

function network(): { net: PodNetwork; hits: Record<string, number> } {
  const net = new PodNetwork();
  const hits: Record<string, number> = {};
  const count = (k: string) => (hits[k] = (hits[k] ?? 0) + 1);
  net.listen(NODE_IP, 8085, (req) => {
    count('healthz');
    return req.url.pathname === '/healthz' ? { status: 200, body: 'Active' } : { status: 404, body: '404 page not found\n' };
  });
  net.listen('10.224.0.5', 8085, () => ({ status: 200, body: 'Not Active' }));
  net.listen('10.244.0.9', 80, (req) => {
    count(req.url.pathname);
    if (req.url.pathname === '/flaky') return hits['/flaky'] < 3 ? { status: 503, body: 'busy' } : { status: 200, body: 'ok' };
    if (req.url.pathname === '/hang') return new Promise(() => {});
    if (req.url.pathname === '/echo') return { status: 200, body: `${req.method} ${req.headers['X-Test'] ?? '-'} ${req.body ?? ''}` };
    return { status: 500, body: 'boom' };
  });
  net.setInterceptor('n1', (req) => {
    if (req.headers.Metadata !== 'true') return { status: 400, body: '{"error":"invalid_request","error_description":"Required metadata header not specified"}' };
    return { status: 200, headers: { 'content-type': 'application/json' }, body: TOKEN };
  });
  net.addResolver((h) => (h === 'web.default.svc' ? '10.244.0.9' : undefined));
  return { net, hits };
}

async function exec(argv: string[], env: Record<string, string> = {}, opts: { image?: string; net?: PodNetwork } = {}) {
  const clock = new ManualClock();
  const net = opts.net ?? network().net;
  let out = '';
  let err = '';
  const ctl = new AbortController();
  let code: number | undefined;
  const start = clock.now();
  const p = runCommand(argv, {
    clock,
    network: net,
    source: { ip: '10.244.0.7', nodeName: 'n1', pod: { namespace: 'default', name: 'probe' } },
    env: { HOST_IP: NODE_IP, ...env },
    image: opts.image ?? 'busybox:1.36',
    signal: ctl.signal,
    out: (t) => (out += t),
    err: (t) => (err += t),
  }).then((c) => (code = c));
  for (let i = 0; i < 2000 && code === undefined; i++) await clock.advance(250);
  await p;
  return { code: code!, out, err, seconds: (clock.now() - start) / 1000 };
}

const sh = (script: string) => ['sh', '-c', script];

describe('command emulator', () => {
  const table: { name: string; argv: string[]; code: number; out?: string | RegExp; err?: string | RegExp; image?: string }[] = [
    { name: 'wget -qO- without scheme', argv: sh('wget -qO- $HOST_IP:8085/healthz'), code: 0, out: 'Active', err: '' },
    { name: 'wget -O - with spaces', argv: ['wget', '-q', '-O', '-', `http://${NODE_IP}:8085/healthz`], code: 0, out: 'Active' },
    { name: 'BusyBox wget 404', argv: sh('wget -qO- $HOST_IP:8085/nope'), code: 1, out: '', err: 'wget: server returned error: HTTP/1.1 404 Not Found\n' },
    { name: 'BusyBox wget refused', argv: sh('wget -qO- 10.224.0.99:8085/healthz'), code: 1, err: "wget: can't connect to remote host (10.224.0.99): Connection refused\n" },
    { name: 'BusyBox wget bad host', argv: sh('wget -qO- nmi.nowhere:8085/healthz'), code: 1, err: "wget: bad address 'nmi.nowhere'\n" },
    { name: 'GNU wget 404 exits 8', argv: ['wget', '-qO-', `${NODE_IP}:8085/nope`], code: 8, out: '', image: 'debian:12' },
    { name: 'GNU wget refused exits 4', argv: ['wget', '-O-', '10.224.0.99:8085/healthz'], code: 4, err: /Connecting to 10\.224\.0\.99:8085\.\.\. failed: Connection refused\./, image: 'ubuntu:24.04' },
    { name: 'body check with grep -q', argv: sh('wget -qO- $HOST_IP:8085/healthz | grep -q "^Active$"'), code: 0, out: '' },
    { name: 'body check fails on Not Active', argv: sh('wget -qO- 10.224.0.5:8085/healthz | grep -q "^Active$"'), code: 1 },
    { name: 'test with command substitution', argv: sh('[ "$(wget -qO- $HOST_IP:8085/healthz)" = "Active" ] && echo healthy || echo sick'), code: 0, out: 'healthy\n' },
    { name: 'curl token with -H Metadata:true -s', argv: sh("curl 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/' -H Metadata:true -s"), code: 0, out: TOKEN, err: '' },
    { name: 'curl token without header gets 400 body, exit 0', argv: ['curl', '-s', 'http://169.254.169.254/metadata/identity/oauth2/token?resource=x'], code: 0, out: /invalid_request/ },
    { name: 'curl -f on 400 exits 22 silently', argv: ['curl', '-sf', 'http://169.254.169.254/metadata/identity/oauth2/token?resource=x'], code: 22, out: '', err: '' },
    { name: 'curl -sSf shows the error', argv: ['curl', '-sSf', `${NODE_IP}:8085/nope`], code: 22, err: 'curl: (22) The requested URL returned error: 404\n' },
    { name: 'curl -w http_code -o /dev/null', argv: ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${NODE_IP}:8085/healthz`], code: 0, out: '200' },
    { name: 'curl refused exits 7', argv: ['curl', '-sS', 'http://10.224.0.99:8085/healthz'], code: 7, err: "curl: (7) Failed to connect to 10.224.0.99 port 8085 after 0 ms: Couldn't connect to server\n" },
    { name: 'curl -s refused prints nothing', argv: ['curl', '-s', 'http://10.224.0.99:8085/healthz'], code: 7, out: '', err: '' },
    { name: 'curl unknown host exits 6', argv: ['curl', '-sS', 'http://nope.svc/'], code: 6, err: 'curl: (6) Could not resolve host: nope.svc\n' },
    { name: 'curl resolves cluster DNS', argv: ['curl', '-s', '-X', 'POST', '-H', 'X-Test: yes', '-d', 'a=1', 'http://web.default.svc/echo'], code: 0, out: 'POST yes a=1' },
    { name: 'curl --max-time exits 28', argv: ['curl', '-sS', '--max-time', '2', 'http://10.244.0.9/hang'], code: 28, err: 'curl: (28) Operation timed out after 2000 milliseconds with 0 bytes received\n' },
    { name: 'curl --retry recovers from 503', argv: ['curl', '-sf', '--retry', '5', '--retry-delay', '1', 'http://10.244.0.9/flaky'], code: 0, out: 'ok' },
    { name: 'curl unknown option exits 2', argv: ['curl', '--frobnicate', 'http://x/'], code: 2, err: /curl: option --frobnicate: is unknown/ },
    { name: 'unsupported syntax: arithmetic', argv: sh('n=0; until wget -qO- 10.224.0.5:8085/healthz | grep -q ^Active; do n=$((n+1)); done'), code: 127, err: /sh: \$\(\(: not found/ },
    { name: 'exit code propagates', argv: sh('echo before; exit 3; echo after'), code: 3, out: 'before\n' },
    { name: 'false || true', argv: sh('false || true'), code: 0 },
    { name: 'true && false', argv: sh('true && false'), code: 1 },
    { name: 'unsupported command', argv: sh('python3 -c "print(1)"'), code: 127, err: 'sh: python3: not found\n' },
    { name: 'unsupported syntax: backquotes', argv: sh('echo `date`'), code: 127, err: /sh: `: not found/ },
    { name: 'variables and defaults', argv: sh('X=hi; echo "$X ${Y:-dflt} ${HOST_IP}"'), code: 0, out: `hi dflt ${NODE_IP}\n` },
    { name: 'single quotes keep $', argv: sh("echo '$HOST_IP'"), code: 0, out: '$HOST_IP\n' },
    { name: 'set -e stops at the first failure', argv: ['sh', '-ec', 'echo one; false; echo two'], code: 1, out: 'one\n' },
    { name: 'if/then/else', argv: sh('if wget -q -O /dev/null $HOST_IP:8085/healthz; then echo up; else echo down; fi'), code: 0, out: 'up\n' },
    { name: 'for loop and head', argv: sh('for i in a b c; do echo $i; done | head -n 2'), code: 0, out: 'a\nb\n' },
    { name: 'redirect stderr to stdout', argv: sh('wget -qO- 10.224.0.99:1/ 2>&1; echo rc=$?'), code: 0, out: "wget: can't connect to remote host (10.224.0.99): Connection refused\nrc=1\n" },
    { name: 'direct argv: sleep then nothing', argv: ['sleep', '3'], code: 0, out: '' },
    { name: 'curl -o file then cat', argv: sh('curl -s -o /tmp/h $HOST_IP:8085/healthz && cat /tmp/h'), code: 0, out: 'Active' },
    { name: 'syntax error', argv: sh('if true; then echo x'), code: 2, err: /syntax error/ },
  ];
  for (const row of table) {
    it(row.name, async () => {
      const r = await exec(row.argv, {}, { image: row.image });
      expect({ code: r.code }).toEqual({ code: row.code });
      if (row.out !== undefined) typeof row.out === 'string' ? expect(r.out).toBe(row.out) : expect(r.out).toMatch(row.out);
      if (row.err !== undefined) typeof row.err === 'string' ? expect(r.err).toBe(row.err) : expect(r.err).toMatch(row.err);
    });
  }

  it('until ... sleep retries in simulated time until the endpoint answers', async () => {
    const { net } = network();
    const clock = new ManualClock();
    let out = '';
    let code: number | undefined;
    const p = runCommand(sh('until wget -qO- $HOST_IP:8090/healthz; do echo waiting for NMI probe startup; sleep 2; done'), {
      clock, network: net, source: { ip: '10.244.0.7', nodeName: 'n1' }, env: { HOST_IP: NODE_IP }, image: 'busybox:1.28', signal: new AbortController().signal,
      out: (t) => (out += t), err: () => {},
    }).then((c) => (code = c));
    await clock.advance(5000);
    expect(code).toBeUndefined();
    net.listen(NODE_IP, 8090, () => ({ status: 200, body: 'Active' }));
    for (let i = 0; i < 20 && code === undefined; i++) await clock.advance(1000);
    await p;
    expect(code).toBe(0);
    const waits = out.split('\n').filter((l) => l === 'waiting for NMI probe startup').length;
    expect(waits).toBeGreaterThanOrEqual(3);
    expect(out.endsWith('Active')).toBe(true);
  });

  it('curl --retry waits between attempts and gives up with the last status', async () => {
    const { net, hits } = network();
    const r = await exec(['curl', '-sS', '--fail', '--retry', '2', '--retry-delay', '3', 'http://10.244.0.9/always-500'], {}, { net });
    expect(r.code).toBe(22);
    expect(hits['/always-500']).toBe(3);
    expect(r.seconds).toBeGreaterThanOrEqual(6);
  });

  it('a kill stops a sleeping script with 137', async () => {
    const clock = new ManualClock();
    const ctl = new AbortController();
    let code: number | undefined;
    const p = runCommand(sh('sleep 3600'), { clock, network: new PodNetwork(), source: { ip: '1.1.1.1', nodeName: 'n1' }, env: {}, image: 'busybox', signal: ctl.signal, out: () => {}, err: () => {} }).then((c) => (code = c));
    await clock.advance(10_000);
    expect(code).toBeUndefined();
    ctl.abort();
    await p;
    expect(code).toBe(137);
  });

  it('recognises the command lines it emulates', () => {
    expect(isEmulatedArgv(['sh', '-c', 'x'])).toBe(true);
    expect(isEmulatedArgv(['/bin/sh', '-ec', 'x'])).toBe(true);
    expect(isEmulatedArgv(['/usr/bin/curl', '-s', 'x'])).toBe(true);
    expect(isEmulatedArgv(['wget', 'x'])).toBe(true);
    expect(isEmulatedArgv(['/app/server', '--port=80'])).toBe(false);
    expect(isEmulatedArgv(['sh', 'script.sh'])).toBe(false);
    expect(isEmulatedArgv([])).toBe(false);
  });
});
