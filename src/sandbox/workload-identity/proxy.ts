/**
 * The workload identity proxy sidecar (`azwi-proxy`) and its init container
 * (`azwi-proxy-init`), as container programs for the simulated kubelet.
 *
 * - `azwi-proxy-init` installs the pod's NAT rule that sends the pod's traffic to
 *   `169.254.169.254:80` to the proxy's port (`PROXY_PORT`), then exits 0.
 * - `azwi-proxy` listens on the pod IP at `--proxy-port` (default 8000). It answers
 *   `GET /metadata/identity/oauth2/token?resource=<aud>[&client_id=<id>]` in IMDS format by
 *   doing the workload identity exchange itself: reads the projected token file
 *   (`AZURE_FEDERATED_TOKEN_FILE`), posts it as a client assertion to
 *   `<AZURE_AUTHORITY_HOST><AZURE_TENANT_ID>/oauth2/v2.0/token` with scope `<resource>/.default`
 *   and the `client_id` of the request, else `AZURE_CLIENT_ID`, else 400. A failed exchange is
 *   a 500 whose body carries Entra's error. `/readyz` answers 200 `ok` once it listens. Other
 *   paths are not served (404).
 */
import type { ContainerContext, ContainerProcess, ProgramRegistry } from '../runtime.ts';
import type { SimHttpRequest, SimHttpResponse } from '../netsim.ts';
import { DEFAULT_PROXY_PORT, ENV_AUTHORITY_HOST, ENV_CLIENT_ID, ENV_TENANT_ID, ENV_TOKEN_FILE } from './constants.ts';
import { JWT_BEARER_ASSERTION_TYPE } from './entra.ts';

function text(status: number, body: string): SimHttpResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' }, body: `${body}\n` };
}

function portFromArgs(argv: string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const m = /^--proxy-port=(\d+)$/.exec(argv[i]);
    if (m) return Number(m[1]);
    if (argv[i] === '--proxy-port' && argv[i + 1]) return Number(argv[i + 1]);
  }
  return DEFAULT_PROXY_PORT;
}

function klog(ctx: ContainerContext, msg: string): void {
  ctx.log(`I${new Date(ctx.clock.now()).toISOString()} ${msg}`);
}

/** `azwi-proxy-init`: the pod's iptables redirect of IMDS to the proxy. */
export function proxyInitProgram(ctx: ContainerContext): ContainerProcess {
  const port = Number(ctx.env.PROXY_PORT || DEFAULT_PROXY_PORT);
  ctx.network.setPodImdsRedirect(ctx.podIp, port);
  ctx.log(`+ iptables -t nat -A OUTPUT -p tcp -d 169.254.169.254 --dport 80 -m owner ! --uid-owner 1501 -j REDIRECT --to-port ${port}`);
  return { exited: Promise.resolve(0), terminate() {} };
}

/** `azwi-proxy`: answers IMDS token requests by exchanging the pod's service account token. */
export function proxyProgram(ctx: ContainerContext): ContainerProcess {
  const port = portFromArgs(ctx.argv);
  let resolveExit: (code: number) => void = () => {};
  const exited = new Promise<number>((r) => (resolveExit = r));

  async function exchange(clientId: string, resource: string, req: SimHttpRequest): Promise<SimHttpResponse> {
    const tokenFile = ctx.env[ENV_TOKEN_FILE];
    const assertion = tokenFile ? ctx.readFile?.(tokenFile) : undefined;
    if (!assertion) return text(500, `failed to read service account token: open ${tokenFile ?? ''}: no such file or directory`);
    const authority = ctx.env[ENV_AUTHORITY_HOST] ?? '';
    const tenant = ctx.env[ENV_TENANT_ID] ?? '';
    const url = new URL(`${authority.replace(/\/?$/, '/')}${tenant}/oauth2/v2.0/token`);
    const form = new URLSearchParams({
      client_id: clientId,
      scope: `${resource.replace(/\/+$/, '')}/.default`,
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER_ASSERTION_TYPE,
      client_assertion: assertion.trim(),
    });
    let res: SimHttpResponse;
    try {
      res = await ctx.network.request({ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(), source: req.source, signal: ctx.signal });
    } catch (e) {
      return text(500, `failed to acquire token: ${(e as Error).message}`);
    }
    if (res.status !== 200) {
      klog(ctx, `"failed to get token" err="FromAssertion(): http call(${url.href})(POST) error: reply status code was ${res.status}"`);
      return text(500, `failed to acquire token: FromAssertion(): http call(${url.href})(POST) error: reply status code was ${res.status}:\n${res.body}`);
    }
    const t = JSON.parse(res.body) as { access_token: string; expires_in: number };
    const now = Math.floor(ctx.clock.now() / 1000);
    const body = {
      access_token: t.access_token,
      refresh_token: '',
      expires_in: String(t.expires_in),
      expires_on: String(now + Number(t.expires_in)),
      not_before: String(now),
      resource,
      token_type: 'Bearer',
    };
    return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  }

  const stop = ctx.network.listen(ctx.podIp, port, async (req) => {
    const path = req.url.pathname;
    if (path === '/readyz') return text(200, 'ok');
    if (!/^\/metadata\/identity\/oauth2\/token\/?$/i.test(path)) return text(404, '404 page not found');
    const q = req.url.searchParams;
    const clientId = q.get('client_id') || ctx.env[ENV_CLIENT_ID] || '';
    if (!clientId) return text(400, 'The client_id parameter or AZURE_CLIENT_ID environment variable must be set');
    const resource = q.get('resource');
    if (!resource) return text(400, 'The resource parameter is required.');
    return exchange(clientId, resource, req);
  });
  klog(ctx, `"starting the proxy server" port=${port} userAgent="azure-workload-identity/proxy"`);
  const onAbort = () => {
    stop();
    resolveExit(137);
  };
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  return {
    exited,
    terminate() {
      ctx.signal.removeEventListener('abort', onAbort);
      stop();
      resolveExit(0);
    },
  };
}

/** Registers both programs by image (`.../workload-identity/proxy[-init]:<tag>`). */
export function registerProxyPrograms(programs: ProgramRegistry): void {
  programs.register('azwi-proxy-init', (image) => /\/workload-identity\/proxy-init(:|@|$)/.test(image), proxyInitProgram);
  programs.register('azwi-proxy', (image) => /\/workload-identity\/proxy(:|@|$)/.test(image), proxyProgram);
}
