/**
 * `curl` and `wget` for the command emulator: they send their request through the sandbox's
 * {@link PodNetwork} from the pod's address and print what the real tools print, with the
 * real exit codes (curl 6/7/22/28; BusyBox wget 1, GNU wget 4/8).
 */
import { isoSeconds } from '../clock.ts';
import { ConnectionRefusedError, HostNotFoundError } from '../netsim.ts';
import type { PodNetwork, SimHttpResponse, SimSource } from '../netsim.ts';
import type { ExternalCommand, Io, Shell } from './shell.ts';

const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found', 304: 'Not Modified',
  307: 'Temporary Redirect', 308: 'Permanent Redirect', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 408: 'Request Timeout', 409: 'Conflict', 429: 'Too Many Requests', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? '';
}

type FetchResult =
  | { kind: 'ok'; res: SimHttpResponse; ms: number }
  | { kind: 'refused'; host: string; port: number }
  | { kind: 'nohost'; host: string }
  | { kind: 'timeout'; ms: number }
  | { kind: 'killed' };

/** Adds `http://` to a scheme-less URL (`$HOST_IP:8085/healthz`), as curl and wget do. */
export function parseToolUrl(raw: string): URL | undefined {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  try {
    return new URL(withScheme);
  } catch {
    return undefined;
  }
}

async function simFetch(
  shell: Shell,
  network: PodNetwork,
  source: SimSource,
  req: { method: string; url: URL; headers: Record<string, string>; body?: string; timeoutMs?: number },
): Promise<FetchResult> {
  const ctl = new AbortController();
  const onKill = () => ctl.abort(shell.signal.reason);
  shell.signal.addEventListener('abort', onKill, { once: true });
  const started = shell.clock.now();
  let timer: ReturnType<typeof shell.clock.setTimeout> | undefined;
  try {
    if (shell.signal.aborted) return { kind: 'killed' };
    const work = network.request({ method: req.method, url: req.url, headers: req.headers, source, body: req.body, signal: ctl.signal });
    const races: Promise<FetchResult>[] = [
      work.then((res) => ({ kind: 'ok' as const, res, ms: shell.clock.now() - started })),
      new Promise<FetchResult>((resolve) => ctl.signal.addEventListener('abort', () => resolve(shell.signal.aborted ? { kind: 'killed' } : { kind: 'timeout', ms: req.timeoutMs ?? 0 }), { once: true })),
    ];
    if (req.timeoutMs !== undefined && req.timeoutMs > 0) {
      timer = shell.clock.setTimeout(() => ctl.abort(new Error('timeout')), req.timeoutMs);
    }
    // Keep a rejection after the race settled from surfacing as unhandled.
    work.catch(() => {});
    try {
      return await Promise.race(races);
    } catch (e) {
      if (e instanceof ConnectionRefusedError) return { kind: 'refused', host: e.host, port: e.port };
      if (e instanceof HostNotFoundError) return { kind: 'nohost', host: e.host };
      if (shell.signal.aborted) return { kind: 'killed' };
      if (ctl.signal.aborted) return { kind: 'timeout', ms: req.timeoutMs ?? 0 };
      throw e;
    }
  } finally {
    shell.clock.clearTimeout(timer);
    shell.signal.removeEventListener('abort', onKill);
  }
}

function splitHeader(h: string): [string, string] | undefined {
  const i = h.indexOf(':');
  if (i <= 0) return undefined;
  return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
}

function seconds(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

// ---- curl -----------------------------------------------------------------------------------

interface CurlOpts {
  silent: boolean;
  showError: boolean;
  fail: boolean;
  failWithBody: boolean;
  headers: [string, string][];
  output?: string;
  writeOut?: string;
  retry: number;
  retryDelay?: number;
  retryMaxTime?: number;
  retryConnRefused: boolean;
  retryAllErrors: boolean;
  maxTime?: number;
  method?: string;
  /** `-d`/`--data*` values in order, resolved (files read, encoding applied) when the command runs. */
  data: { kind: 'data' | 'raw' | 'binary' | 'urlencode'; value: string }[];
  include: boolean;
  head: boolean;
  location: boolean;
  verbose: boolean;
  get: boolean;
  urls: string[];
}

const CURL_WITH_ARG = new Map<string, string>([
  ['-H', 'header'], ['--header', 'header'], ['-o', 'output'], ['--output', 'output'], ['-w', 'write-out'], ['--write-out', 'write-out'],
  ['--retry', 'retry'], ['--retry-delay', 'retry-delay'], ['--retry-max-time', 'retry-max-time'], ['-m', 'max-time'], ['--max-time', 'max-time'],
  ['--connect-timeout', 'connect-timeout'], ['-X', 'request'], ['--request', 'request'], ['-d', 'data'], ['--data', 'data'], ['--data-ascii', 'data'], ['--data-raw', 'data-raw'],
  ['--data-binary', 'data-binary'], ['--data-urlencode', 'data-urlencode'], ['-A', 'user-agent'], ['--user-agent', 'user-agent'], ['--url', 'url'], ['--noproxy', 'noproxy'],
  ['-u', 'user'], ['--user', 'user'], ['--cacert', 'cacert'], ['-e', 'referer'], ['--referer', 'referer'],
]);
const CURL_SHORT_FLAGS = 'sSfLkivIG';
const CURL_LONG_FLAGS = new Set(['--silent', '--show-error', '--fail', '--fail-with-body', '--location', '--insecure', '--include', '--verbose', '--head', '--get', '--retry-connrefused', '--retry-all-errors', '--compressed', '--http1.1', '--no-progress-meter']);

function parseCurl(args: string[]): CurlOpts | { error: string } {
  const o: CurlOpts = { silent: false, showError: false, fail: false, failWithBody: false, headers: [], data: [], retry: 0, retryConnRefused: false, retryAllErrors: false, include: false, head: false, location: false, verbose: false, get: false, urls: [] };
  let ua = 'curl/8.5.0';
  const takeValue = (name: string, v: string) => {
    switch (name) {
      case 'header': {
        const h = splitHeader(v);
        if (h) o.headers.push(h);
        break;
      }
      case 'output':
        o.output = v;
        break;
      case 'write-out':
        o.writeOut = v;
        break;
      case 'retry':
        o.retry = Number(v) | 0;
        break;
      case 'retry-delay':
        o.retryDelay = seconds(v);
        break;
      case 'retry-max-time':
        o.retryMaxTime = seconds(v);
        break;
      case 'max-time':
        o.maxTime = seconds(v);
        break;
      case 'request':
        o.method = v;
        break;
      case 'data':
        o.data.push({ kind: 'data', value: v });
        break;
      case 'data-raw':
        o.data.push({ kind: 'raw', value: v });
        break;
      case 'data-binary':
        o.data.push({ kind: 'binary', value: v });
        break;
      case 'data-urlencode':
        o.data.push({ kind: 'urlencode', value: v });
        break;
      case 'user-agent':
        ua = v;
        break;
      case 'url':
        o.urls.push(v);
        break;
    }
  };
  const flag = (f: string) => {
    switch (f) {
      case 's': case '--silent': o.silent = true; break;
      case 'S': case '--show-error': o.showError = true; break;
      case 'f': case '--fail': o.fail = true; break;
      case '--fail-with-body': o.failWithBody = true; break;
      case 'L': case '--location': o.location = true; break;
      case 'i': case '--include': o.include = true; break;
      case 'v': case '--verbose': o.verbose = true; break;
      case 'I': case '--head': o.head = true; break;
      case 'G': case '--get': o.get = true; break;
      case '--retry-connrefused': o.retryConnRefused = true; break;
      case '--retry-all-errors': o.retryAllErrors = true; break;
      case '--no-progress-meter': o.silent = o.silent || false; break;
    }
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a.startsWith('--') && a.includes('=') && CURL_WITH_ARG.has(a.slice(0, a.indexOf('=')))) {
      takeValue(CURL_WITH_ARG.get(a.slice(0, a.indexOf('=')))!, a.slice(a.indexOf('=') + 1));
    } else if (CURL_WITH_ARG.has(a)) {
      if (i + 1 >= args.length) return { error: `curl: option ${a}: requires parameter` };
      takeValue(CURL_WITH_ARG.get(a)!, args[++i]);
    } else if (CURL_LONG_FLAGS.has(a)) flag(a);
    else if (/^-[A-Za-z]+$/.test(a)) {
      // Bundled short options; the last may take a value (`-sSo /dev/null`, `-sm5`).
      for (let j = 1; j < a.length; j++) {
        const f = a[j];
        if (CURL_SHORT_FLAGS.includes(f)) flag(f);
        else if (CURL_WITH_ARG.has(`-${f}`)) {
          const rest = a.slice(j + 1);
          if (rest) takeValue(CURL_WITH_ARG.get(`-${f}`)!, rest);
          else if (i + 1 < args.length) takeValue(CURL_WITH_ARG.get(`-${f}`)!, args[++i]);
          else return { error: `curl: option -${f}: requires parameter` };
          break;
        } else return { error: `curl: option ${a}: is unknown` };
      }
    } else if (/^-[A-Za-z]\S+$/.test(a) && CURL_WITH_ARG.has(a.slice(0, 2))) takeValue(CURL_WITH_ARG.get(a.slice(0, 2))!, a.slice(2));
    else if (a.startsWith('-') && a !== '-') return { error: `curl: option ${a}: is unknown` };
    else o.urls.push(a);
  }
  if (!o.headers.some(([k]) => k.toLowerCase() === 'user-agent')) o.headers.unshift(['User-Agent', ua]);
  if (!o.headers.some(([k]) => k.toLowerCase() === 'accept')) o.headers.push(['Accept', '*/*']);
  return o;
}

function expandWriteOut(fmt: string, vars: Record<string, string>): string {
  return fmt
    .replace(/%\{([a-z_]+)\}/g, (m, k) => (k in vars ? vars[k] : m))
    .replace(/\\n/g, '\n')
    .replace(/\\r/g, '\r')
    .replace(/\\t/g, '\t');
}

function progressLine(bytes: number, ms: number): string {
  const speed = String(ms > 0 ? Math.round((bytes * 1000) / ms) : bytes);
  const b = String(bytes);
  return `100 ${b.padStart(5)}  100 ${b.padStart(5)}    0     0 ${speed.padStart(6)}      0 --:--:-- --:--:-- --:--:-- ${speed.padStart(6)}\n`;
}

const TRANSIENT_HTTP = new Set([408, 429, 500, 502, 503, 504]);

/** curl's URL encoding for `--data-urlencode` (everything but unreserved characters). */
function curlEscape(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The request body from the `--data*` options, as curl builds it: pieces joined with `&`;
 * `-d @file` reads the file without its CR/LF, `--data-binary @file` reads it as is,
 * `--data-raw` takes `@` literally, `--data-urlencode` encodes the content part of
 * `content`, `=content`, `name=content`, `@file` or `name@file`. An unreadable file gives
 * curl's warning and an empty piece.
 */
function curlBody(parts: CurlOpts['data'], shell: Shell, io: Io): string | undefined {
  if (!parts.length) return undefined;
  const read = (file: string): string => {
    const text = file === '-' ? '' : shell.readFile(file);
    if (text === undefined) {
      io.err(`Warning: Couldn't read data from file "${file}", this makes an empty\nWarning: POST.\n`);
      return '';
    }
    return text;
  };
  return parts
    .map(({ kind, value }) => {
      if (kind === 'raw') return value;
      if (kind === 'data') return value.startsWith('@') ? read(value.slice(1)).replace(/[\r\n]/g, '') : value;
      if (kind === 'binary') return value.startsWith('@') ? read(value.slice(1)) : value;
      const eq = value.indexOf('=');
      const at = value.indexOf('@');
      if (eq === 0) return curlEscape(value.slice(1));
      if (eq > 0 && (at < 0 || eq < at)) return `${value.slice(0, eq)}=${curlEscape(value.slice(eq + 1))}`;
      if (at === 0) return curlEscape(read(value.slice(1)));
      if (at > 0) return `${value.slice(0, at)}=${curlEscape(read(value.slice(at + 1)))}`;
      return curlEscape(value);
    })
    .join('&');
}

/** `curl`, as in the `curlimages/curl` image (curl 8). */
export function curlCommand(network: PodNetwork, source: SimSource): ExternalCommand {
  return async (argv: string[], io: Io, shell: Shell): Promise<number> => {
    const parsed = parseCurl(argv.slice(1));
    if ('error' in parsed) {
      io.err(`${parsed.error}\ncurl: try 'curl --help' or 'curl --manual' for more information\n`);
      return 2;
    }
    const o = parsed;
    const showErr = !o.silent || o.showError;
    if (!o.urls.length) {
      io.err("curl: no URL specified\ncurl: try 'curl --help' or 'curl --manual' for more information\n");
      return 2;
    }
    let code = 0;
    for (const rawUrl of o.urls) {
      let url = parseToolUrl(rawUrl);
      if (!url) {
        if (showErr) io.err(`curl: (3) URL rejected: Bad hostname\n`);
        code = 3;
        continue;
      }
      const data = curlBody(o.data, shell, io);
      if (o.get && data !== undefined) url = new URL(`${url.href}${url.search ? '&' : '?'}${data}`);
      const method = o.method ?? (o.head ? 'HEAD' : data !== undefined && !o.get ? 'POST' : 'GET');
      const headers: Record<string, string> = {};
      for (const [k, v] of o.headers) if (v !== '') headers[k] = v;
      if (data !== undefined && !o.get && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/x-www-form-urlencoded';
      let retriesLeft = o.retry;
      let backoff = 1;
      const started = shell.clock.now();
      for (let hop = 0; ; ) {
        if (o.verbose) {
          io.err(`*   Trying ${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}...\n`);
          io.err(`> ${method} ${url.pathname}${url.search} HTTP/1.1\n> Host: ${url.host}\n`);
          for (const [k, v] of Object.entries(headers)) io.err(`> ${k}: ${v}\n`);
          io.err('>\n');
        }
        const r = await simFetch(shell, network, source, { method, url, headers, body: o.get ? undefined : data, timeoutMs: o.maxTime !== undefined ? o.maxTime * 1000 : undefined });
        if (r.kind === 'killed') return 137;
        let problem: string | undefined;
        let transient = false;
        let retryAfter: number | undefined;
        if (r.kind === 'ok') {
          const status = r.res.status;
          if (o.location && status >= 300 && status < 400 && r.res.headers?.location && hop < 50) {
            url = new URL(r.res.headers.location, url);
            hop++;
            continue;
          }
          if (TRANSIENT_HTTP.has(status)) {
            transient = true;
            problem = 'HTTP error';
            retryAfter = seconds(Object.entries(r.res.headers ?? {}).find(([k]) => k.toLowerCase() === 'retry-after')?.[1]);
          } else if (o.retryAllErrors && status >= 400) {
            transient = true;
            problem = 'HTTP error';
          }
        } else if (r.kind === 'timeout') {
          transient = true;
          problem = 'timeout';
        } else if (r.kind === 'refused') {
          transient = o.retryConnRefused || o.retryAllErrors;
          problem = 'connection refused';
        } else if (o.retryAllErrors) {
          transient = true;
          problem = 'error';
        }
        const elapsed = (shell.clock.now() - started) / 1000;
        if (transient && retriesLeft > 0 && (o.retryMaxTime === undefined || o.retryMaxTime === 0 || elapsed < o.retryMaxTime)) {
          const wait = o.retryDelay ?? retryAfter ?? backoff;
          if (!o.silent) io.err(`Warning: Problem : ${problem}. Will retry in ${wait} second${wait === 1 ? '' : 's'}. ${retriesLeft} retr${retriesLeft === 1 ? 'y' : 'ies'} left.\n`);
          retriesLeft--;
          backoff = Math.min(backoff * 2, 600);
          try {
            shell.sleeps++;
            await shell.clock.sleep(wait * 1000, shell.signal);
          } catch {
            return 137;
          }
          continue;
        }
        if (r.kind === 'refused') {
          if (showErr) io.err(`curl: (7) Failed to connect to ${r.host} port ${r.port} after 0 ms: Couldn't connect to server\n`);
          code = 7;
        } else if (r.kind === 'nohost') {
          if (showErr) io.err(`curl: (6) Could not resolve host: ${r.host}\n`);
          code = 6;
        } else if (r.kind === 'timeout') {
          if (showErr) io.err(`curl: (28) Operation timed out after ${Math.round(r.ms)} milliseconds with 0 bytes received\n`);
          code = 28;
        } else {
          const res = r.res;
          const failed = (o.fail || o.failWithBody) && res.status >= 400;
          let out = '';
          if (o.include || o.head) {
            out += `HTTP/1.1 ${res.status} ${reasonPhrase(res.status)}\r\n`;
            for (const [k, v] of Object.entries(res.headers ?? {})) out += `${k}: ${v}\r\n`;
            out += '\r\n';
          }
          if (!o.head && (!failed || o.failWithBody)) out += res.body;
          if (o.verbose) io.err(`< HTTP/1.1 ${res.status} ${reasonPhrase(res.status)}\n<\n`);
          if (o.output && o.output !== '-') {
            if (o.output !== '/dev/null') shell.files.set(o.output, out);
          } else io.out(out);
          if (!o.silent && !o.verbose) {
            io.err('  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n');
            io.err('                                 Dload  Upload   Total   Spent    Left  Speed\n');
            io.err(progressLine(Buffer.byteLength(res.body), r.ms));
          }
          if (o.writeOut) {
            io.out(
              expandWriteOut(o.writeOut, {
                http_code: String(res.status).padStart(3, '0'),
                response_code: String(res.status),
                url_effective: url.href,
                size_download: String(Buffer.byteLength(res.body)),
                time_total: (r.ms / 1000).toFixed(6),
                content_type: Object.entries(res.headers ?? {}).find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? '',
              }),
            );
          }
          if (failed) {
            if (showErr) io.err(`curl: (22) The requested URL returned error: ${res.status}\n`);
            code = 22;
          }
        }
        break;
      }
    }
    return code;
  };
}

// ---- wget -----------------------------------------------------------------------------------

/** Which wget a container image carries: BusyBox (alpine, busybox, curl images) or GNU (Debian-style). */
export type WgetFlavor = 'busybox' | 'gnu';

export function wgetFlavorForImage(image: string): WgetFlavor {
  return /(^|[/:-])(debian|ubuntu|centos|fedora|rhel|ubi\d*|amazonlinux|mariner|azurelinux|buildpack-deps)([/:.-]|$)/i.test(image) ? 'gnu' : 'busybox';
}

interface WgetOpts {
  quiet: boolean;
  output?: string;
  headers: [string, string][];
  timeout?: number;
  tries: number;
  postData?: string;
  spider: boolean;
  serverResponse: boolean;
  urls: string[];
}

function parseWget(args: string[], flavor: WgetFlavor): WgetOpts | { error: string } {
  const o: WgetOpts = { quiet: false, headers: [], tries: flavor === 'gnu' ? 20 : 1, spider: false, serverResponse: false, urls: [] };
  let ua = flavor === 'gnu' ? 'Wget/1.21.3' : 'Wget';
  const withArg = new Map<string, string>([
    ['-O', 'output'], ['--output-document', 'output'], ['--header', 'header'], ['-T', 'timeout'], ['--timeout', 'timeout'], ['-t', 'tries'],
    ['--tries', 'tries'], ['--post-data', 'post-data'], ['-U', 'user-agent'], ['--user-agent', 'user-agent'], ['-Y', 'proxy'], ['-P', 'prefix'],
  ]);
  const take = (name: string, v: string) => {
    if (name === 'output') o.output = v;
    else if (name === 'header') {
      const h = splitHeader(v);
      if (h) o.headers.push(h);
    } else if (name === 'timeout') o.timeout = seconds(v);
    else if (name === 'tries') o.tries = Math.max(1, Number(v) | 0);
    else if (name === 'post-data') o.postData = v;
    else if (name === 'user-agent') ua = v;
  };
  const flags = new Map<string, () => void>([
    ['q', () => (o.quiet = true)], ['S', () => (o.serverResponse = true)], ['s', () => (o.spider = true)],
  ]);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    if (eq > 0 && withArg.has(a.slice(0, eq))) take(withArg.get(a.slice(0, eq))!, a.slice(eq + 1));
    else if (withArg.has(a)) {
      if (i + 1 >= args.length) return { error: flavor === 'gnu' ? `wget: option requires an argument -- '${a.replace(/^-+/, '')}'` : `wget: option requires an argument -- ${a.replace(/^-+/, '')}` };
      take(withArg.get(a)!, args[++i]);
    } else if (a === '--quiet') o.quiet = true;
    else if (a === '--spider') o.spider = true;
    else if (a === '--server-response') o.serverResponse = true;
    else if (a === '--no-check-certificate' || a === '--no-verbose' || a === '-nv') {
      if (a !== '--no-check-certificate') o.quiet = o.quiet || false;
    } else if (/^-[A-Za-z]+/.test(a) && !a.startsWith('--')) {
      // Bundled flags: `-qO-`, `-qO`, `-T5`.
      for (let j = 1; j < a.length; j++) {
        const f = a[j];
        const fl = flags.get(f);
        if (fl) fl();
        else if (withArg.has(`-${f}`)) {
          const rest = a.slice(j + 1);
          if (rest) take(withArg.get(`-${f}`)!, rest);
          else if (i + 1 < args.length) take(withArg.get(`-${f}`)!, args[++i]);
          else return { error: `wget: option requires an argument -- ${f}` };
          break;
        } else return { error: flavor === 'gnu' ? `wget: invalid option -- '${f}'` : `wget: invalid option -- '${f}'` };
      }
    } else if (a.startsWith('-') && a !== '-') return { error: flavor === 'gnu' ? `wget: unrecognized option '${a}'` : `wget: unrecognized option '${a}'` };
    else o.urls.push(a);
  }
  if (!o.headers.some(([k]) => k.toLowerCase() === 'user-agent')) o.headers.unshift(['User-Agent', ua]);
  return o;
}

/** `wget` in the flavor the container image ships. */
export function wgetCommand(network: PodNetwork, source: SimSource, flavor: WgetFlavor): ExternalCommand {
  return async (argv: string[], io: Io, shell: Shell): Promise<number> => {
    const parsed = parseWget(argv.slice(1), flavor);
    if ('error' in parsed) {
      io.err(`${parsed.error}\n${flavor === 'gnu' ? "Usage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n" : 'BusyBox v1.36.1 (2023-07-27 17:12:24 UTC) multi-call binary.\n\nUsage: wget [-cqS] [--spider] [-O FILE] [-o LOGFILE] [--header STR]\n\t[--post-data STR | --post-file FILE] [-Y on/off]\n\t[-P DIR] [-U AGENT] [-T SEC] URL...\n'}`);
      return flavor === 'gnu' ? 2 : 1;
    }
    const o = parsed;
    if (!o.urls.length) {
      io.err(flavor === 'gnu' ? "wget: missing URL\nUsage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n" : 'BusyBox v1.36.1 (2023-07-27 17:12:24 UTC) multi-call binary.\n\nUsage: wget [-cqS] [--spider] [-O FILE] [-o LOGFILE] [--header STR]\n\t[--post-data STR | --post-file FILE] [-Y on/off]\n\t[-P DIR] [-U AGENT] [-T SEC] URL...\n');
      return 1;
    }
    const toStdout = o.output === '-';
    const timeoutMs = (o.timeout ?? 900) * 1000;
    let exit = 0;
    for (const raw of o.urls) {
      const url = parseToolUrl(raw);
      if (!url) {
        io.err(flavor === 'gnu' ? `${raw}: Invalid URL.\n` : `wget: bad address '${raw}'\n`);
        exit = flavor === 'gnu' ? 1 : 1;
        continue;
      }
      const hostPort = `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`;
      const fileName = o.output ?? (url.pathname.split('/').filter(Boolean).pop() || 'index.html');
      const headers: Record<string, string> = {};
      for (const [k, v] of o.headers) headers[k] = v;
      const method = o.spider ? 'HEAD' : o.postData !== undefined ? 'POST' : 'GET';
      let r: FetchResult | undefined;
      for (let attempt = 1; attempt <= o.tries; attempt++) {
        if (flavor === 'gnu' && !o.quiet) io.err(`--${isoSeconds(shell.clock.now()).replace('T', ' ').replace('Z', '')}--  ${url.href}\nConnecting to ${hostPort}... `);
        else if (flavor === 'busybox' && !o.quiet) io.err(`Connecting to ${hostPort} (${hostPort})\n`);
        r = await simFetch(shell, network, source, { method, url, headers, body: o.postData, timeoutMs });
        if (r.kind === 'killed') return 137;
        if (r.kind === 'timeout' && flavor === 'gnu' && attempt < o.tries) {
          if (!o.quiet) io.err('failed: Connection timed out.\nRetrying.\n\n');
          try {
            shell.sleeps++;
            await shell.clock.sleep(Math.min(attempt, 10) * 1000, shell.signal);
          } catch {
            return 137;
          }
          continue;
        }
        break;
      }
      if (!r || r.kind === 'killed') return 137;
      if (flavor === 'busybox') {
        if (r.kind === 'refused') {
          io.err(`wget: can't connect to remote host (${r.host}): Connection refused\n`);
          return 1;
        }
        if (r.kind === 'nohost') {
          io.err(`wget: bad address '${r.host}'\n`);
          return 1;
        }
        if (r.kind === 'timeout') {
          io.err('wget: download timed out\n');
          return 1;
        }
        const res = r.res;
        if (res.status >= 400 || (res.status >= 300 && !res.headers?.location)) {
          io.err(`wget: server returned error: HTTP/1.1 ${res.status} ${reasonPhrase(res.status)}\n`);
          return 1;
        }
        if (o.serverResponse) io.err(`  HTTP/1.1 ${res.status} ${reasonPhrase(res.status)}\n`);
        if (o.spider) {
          if (!o.quiet) io.err('remote file exists\n');
          continue;
        }
        if (toStdout) {
          if (!o.quiet) io.err('writing to stdout\n');
          io.out(res.body);
          if (!o.quiet) io.err(`-                    100% |********************************| ${String(Buffer.byteLength(res.body)).padStart(5)}  0:00:00 ETA\nwritten to stdout\n`);
        } else {
          if (!o.quiet) io.err(`saving to '${fileName}'\n`);
          if (fileName !== '/dev/null') shell.files.set(fileName, res.body);
          if (!o.quiet) io.err(`${fileName.padEnd(20)} 100% |********************************| ${String(Buffer.byteLength(res.body)).padStart(5)}  0:00:00 ETA\n'${fileName}' saved\n`);
        }
        continue;
      }
      // GNU wget
      const stamp = () => isoSeconds(shell.clock.now()).replace('T', ' ').replace('Z', '');
      if (r.kind === 'refused') {
        if (!o.quiet) io.err('failed: Connection refused.\n');
        exit = 4;
        continue;
      }
      if (r.kind === 'nohost') {
        if (!o.quiet) io.err(`failed: Name or service not known.\nwget: unable to resolve host address '${r.host}'\n`);
        exit = 4;
        continue;
      }
      if (r.kind === 'timeout') {
        if (!o.quiet) io.err('failed: Connection timed out.\nGiving up.\n\n');
        exit = 4;
        continue;
      }
      const res = r.res;
      if (!o.quiet) io.err(`connected.\nHTTP request sent, awaiting response... ${res.status} ${reasonPhrase(res.status)}\n`);
      if (res.status >= 400) {
        if (!o.quiet) io.err(`${stamp()} ERROR ${res.status}: ${reasonPhrase(res.status)}.\n\n`);
        exit = 8;
        continue;
      }
      const len = Buffer.byteLength(res.body);
      if (!o.quiet) io.err(`Length: ${len} [${res.headers?.['content-type'] ?? 'text/plain'}]\nSaving to: '${toStdout ? 'STDOUT' : fileName}'\n\n`);
      if (toStdout) io.out(res.body);
      else if (fileName !== '/dev/null') shell.files.set(fileName, res.body);
      if (!o.quiet) io.err(`${stamp()} - ${toStdout ? 'written to stdout' : `'${fileName}' saved`} [${len}/${len}]\n\n`);
    }
    return exit;
  };
}
