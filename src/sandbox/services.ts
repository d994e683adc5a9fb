/**
 * In-cluster HTTP for the sandbox: workload containers that declare `containerPort`s answer
 * HTTP on them, and Services get a cluster IP, a DNS name (`<svc>.<ns>.svc` and
 * `<svc>.<ns>.svc.cluster.local`) and a virtual listener that forwards to a ready endpoint
 * pod, like kube-proxy. This is what a migration's `http` test cases reach.
 */
import type { Clock } from './clock.ts';
import type { PodNetwork, SimHttpRequest, SimHttpResponse } from './netsim.ts';
import type { ContainerContext, ContainerProcess, ProgramRegistry } from './runtime.ts';
import { labelSelectorFromObject, matchLabels } from './selectors.ts';
import type { KObject, ObjectStore } from './store.ts';

/**
 * A workload container that serves `200 ok` on every declared TCP port for as long as it
 * runs (any path; `/healthz` included), and stops listening on SIGTERM.
 */
export function httpWorkloadProgram(ctx: ContainerContext): ContainerProcess {
  const ports: number[] = (ctx.container.ports ?? []).filter((p: any) => (p.protocol ?? 'TCP') === 'TCP').map((p: any) => Number(p.containerPort));
  const name = `${ctx.pod.metadata.namespace}/${ctx.pod.metadata.name}`;
  const handler = (req: SimHttpRequest): SimHttpResponse => {
    ctx.log(`${req.method} ${req.url.pathname} from ${req.source.ip || 'apiserver'}`);
    return { status: 200, headers: { 'content-type': 'text/plain' }, body: `ok ${name}\n` };
  };
  const closers = ports.map((port) => ctx.network.listen(ctx.podIp, port, handler));
  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((r) => (resolveExit = r));
  const stop = (code: number) => {
    for (const close of closers) close();
    resolveExit(code);
  };
  if (ctx.signal.aborted) stop(137);
  else ctx.signal.addEventListener('abort', () => stop(137), { once: true });
  return { exited, terminate: () => stop(0) };
}

/** Registers {@link httpWorkloadProgram} for containers with ports and no command of their own. */
export function registerWorkloadPrograms(programs: ProgramRegistry): void {
  programs.register('http-workload', (_image, c) => Array.isArray(c.ports) && c.ports.length > 0 && !c.command && !c.args, httpWorkloadProgram);
}

/**
 * Gives every Service a cluster IP from 10.0.0.0/16 and serves it on the pod network.
 * Returns a stop function.
 */
export function startServiceProxy(store: ObjectStore, network: PodNetwork, _clock: Clock): () => void {
  const svcType = store.typeOrThrow('', 'services');
  const podType = store.typeOrThrow('', 'pods');
  const byIp = new Map<string, { namespace: string; name: string }>();
  const closers = new Map<string, (() => void)[]>();
  let next = 10;

  const readyEndpoint = (svc: Readonly<KObject>): string | undefined => {
    const reqs = labelSelectorFromObject({ matchLabels: svc.spec?.selector ?? {} });
    const ips: string[] = [];
    for (const p of store.scan(podType, { namespace: svc.metadata.namespace })) {
      if (p.metadata.deletionTimestamp || p.status?.phase !== 'Running' || !p.status?.podIP) continue;
      if (!p.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True')) continue;
      if (matchLabels(reqs, p.metadata.labels)) ips.push(p.status.podIP);
    }
    return ips.length ? ips[Math.floor(Math.random() * ips.length)] : undefined;
  };

  const expose = (svc: Readonly<KObject>) => {
    const key = `${svc.metadata.namespace}/${svc.metadata.name}`;
    if (closers.has(key) || !svc.spec?.selector) return;
    let ip: string = svc.spec.clusterIP;
    if (!ip || ip === 'None') {
      ip = `10.0.${Math.floor(next / 250)}.${(next % 250) + 1}`;
      next++;
      store.mutate(svcType, svc.metadata.namespace, svc.metadata.name!, (o) => {
        o.spec.clusterIP = ip;
        o.spec.clusterIPs = [ip];
        o.spec.type = o.spec.type ?? 'ClusterIP';
      });
    }
    byIp.set(ip, { namespace: svc.metadata.namespace!, name: svc.metadata.name! });
    const list: (() => void)[] = [];
    for (const port of svc.spec.ports ?? []) {
      list.push(
        network.listen(ip, Number(port.port), async (req) => {
          const current = store.peek(svcType, svc.metadata.namespace, svc.metadata.name!);
          const target = current ? readyEndpoint(current) : undefined;
          // kube-proxy with no ready endpoint rejects the connection.
          if (!target) return { status: 503, body: 'no endpoints available\n' };
          const targetPort = typeof port.targetPort === 'number' ? port.targetPort : Number(port.targetPort ?? port.port);
          const url = new URL(req.url.toString());
          url.hostname = target;
          url.port = String(targetPort);
          return network.request({ ...req, url });
        }),
      );
    }
    closers.set(key, list);
  };

  for (const svc of store.scan(svcType)) expose(svc);
  const unsubscribe = store.subscribe((ev) => {
    if (ev.resourceType !== svcType) return;
    const key = `${ev.object.metadata.namespace}/${ev.object.metadata.name}`;
    if (ev.type === 'DELETED') {
      for (const close of closers.get(key) ?? []) close();
      closers.delete(key);
    } else expose(ev.object);
  });
  network.addResolver((host) => {
    const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?$/.exec(host);
    if (!m) return undefined;
    const svc = store.peek(svcType, m[2], m[1]);
    return svc?.spec?.clusterIP && svc.spec.clusterIP !== 'None' ? svc.spec.clusterIP : undefined;
  });
  return () => {
    unsubscribe();
    for (const list of closers.values()) for (const close of list) close();
    closers.clear();
  };
}
