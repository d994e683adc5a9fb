/**
 * Container environment and argv, resolved the way the kubelet does before it starts a
 * container: `env[].value` with `$(VAR)` references to earlier variables, `valueFrom.fieldRef`
 * (the downward API), `configMapKeyRef` / `secretKeyRef`, and `$(VAR)` expansion in
 * `command` and `args` (`$$` escapes a dollar, unknown references stay as written).
 */
import type { KObject, ObjectStore } from '../store.ts';
import { fieldValue } from '../selectors.ts';

/** Raised when a container cannot start because its environment cannot be built (kubelet `CreateContainerConfigError`). */
export class ContainerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContainerConfigError';
  }
}

/** Expands `$(NAME)` in `s` from `vars`; `$$(NAME)` yields a literal `$(NAME)`. */
export function expandKubeRefs(s: string, vars: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch !== '$' || i + 1 >= s.length) {
      out += ch;
      continue;
    }
    const next = s[i + 1];
    if (next === '$') {
      out += '$';
      i++;
      continue;
    }
    if (next === '(') {
      const end = s.indexOf(')', i + 2);
      if (end > 0) {
        const name = s.slice(i + 2, end);
        if (Object.prototype.hasOwnProperty.call(vars, name)) {
          out += vars[name];
          i = end;
          continue;
        }
        out += s.slice(i, end + 1);
        i = end;
        continue;
      }
    }
    out += ch;
  }
  return out;
}

/** The downward-API value of `fieldPath` for a pod (supports `metadata.labels['k']` / `metadata.annotations['k']`). */
export function downwardValue(pod: Readonly<KObject>, fieldPath: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (m) return String((pod.metadata as any)[m[1]]?.[m[2]] ?? '');
  switch (fieldPath) {
    case 'metadata.name':
    case 'metadata.namespace':
    case 'metadata.uid':
    case 'spec.nodeName':
    case 'spec.serviceAccountName':
    case 'status.hostIP':
    case 'status.podIP':
      return fieldValue(pod, fieldPath);
    case 'status.podIPs':
      return ((pod.status?.podIPs as { ip: string }[] | undefined) ?? []).map((x) => x.ip).join(',');
    case 'status.hostIPs':
      return ((pod.status?.hostIPs as { ip: string }[] | undefined) ?? []).map((x) => x.ip).join(',');
    case 'metadata.labels':
    case 'metadata.annotations': {
      const o = (pod.metadata as any)[fieldPath.slice('metadata.'.length)] ?? {};
      return Object.keys(o)
        .sort()
        .map((k) => `${k}="${o[k]}"`)
        .join('\n');
    }
    default:
      throw new ContainerConfigError(`unsupported fieldPath: ${fieldPath}`);
  }
}

function keyRef(store: ObjectStore | undefined, kind: 'configmaps' | 'secrets', ns: string, ref: { name: string; key: string; optional?: boolean }): string | undefined {
  const t = store?.type('', kind);
  const obj = t ? store!.peek(t, ns, ref.name) : undefined;
  const label = kind === 'configmaps' ? 'configmap' : 'secret';
  if (!obj) {
    if (ref.optional) return undefined;
    throw new ContainerConfigError(`${label} "${ref.name}" not found`);
  }
  let v: string | undefined;
  if (kind === 'configmaps') v = obj.data?.[ref.key];
  else if (obj.data?.[ref.key] !== undefined) v = Buffer.from(String(obj.data[ref.key]), 'base64').toString('utf8');
  else v = obj.stringData?.[ref.key];
  if (v === undefined && !ref.optional) throw new ContainerConfigError(`couldn't find key ${ref.key} in ${kind === 'configmaps' ? 'ConfigMap' : 'Secret'} ${ns}/${ref.name}`);
  return v;
}

/**
 * Builds a container's environment. `pod` must carry the status the container will see
 * (hostIP and podIP are known once the pod sandbox exists).
 */
export function resolveEnv(pod: Readonly<KObject>, container: Readonly<Record<string, any>>, store?: ObjectStore): Record<string, string> {
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOSTNAME: pod.spec?.hostNetwork ? String(pod.spec?.nodeName ?? '') : String(pod.metadata.name),
    KUBERNETES_SERVICE_HOST: '10.0.0.1',
    KUBERNETES_SERVICE_PORT: '443',
    KUBERNETES_PORT: 'tcp://10.0.0.1:443',
  };
  const ns = String(pod.metadata.namespace ?? 'default');
  for (const from of (container.envFrom as any[] | undefined) ?? []) {
    const kind = from.configMapRef ? 'configmaps' : from.secretRef ? 'secrets' : undefined;
    const ref = from.configMapRef ?? from.secretRef;
    if (!kind || !ref) continue;
    const t = store?.type('', kind);
    const obj = t ? store!.peek(t, ns, ref.name) : undefined;
    if (!obj) {
      if (ref.optional) continue;
      throw new ContainerConfigError(`${kind === 'configmaps' ? 'configmap' : 'secret'} "${ref.name}" not found`);
    }
    for (const [k, v] of Object.entries((obj.data as Record<string, string> | undefined) ?? {})) {
      env[(from.prefix ?? '') + k] = kind === 'secrets' ? Buffer.from(v, 'base64').toString('utf8') : v;
    }
  }
  // Declared variables only see those declared before them (and the defaults above), as in the kubelet.
  const declared: Record<string, string> = {};
  for (const e of (container.env as any[] | undefined) ?? []) {
    let v: string | undefined;
    if (e.valueFrom?.fieldRef) v = downwardValue(pod, e.valueFrom.fieldRef.fieldPath);
    else if (e.valueFrom?.configMapKeyRef) v = keyRef(store, 'configmaps', ns, e.valueFrom.configMapKeyRef);
    else if (e.valueFrom?.secretKeyRef) v = keyRef(store, 'secrets', ns, e.valueFrom.secretKeyRef);
    else if (e.valueFrom?.resourceFieldRef) v = '0';
    else v = expandKubeRefs(String(e.value ?? ''), { ...env, ...declared });
    if (v === undefined) continue;
    declared[e.name] = v;
  }
  return { ...env, ...declared };
}

/** `command` + `args` with `$(VAR)` expanded; the image's entrypoint stands in when both are empty. */
export function resolveArgv(container: Readonly<Record<string, any>>, env: Record<string, string>): string[] {
  const command = ((container.command as string[] | undefined) ?? []).map((s) => expandKubeRefs(String(s), env));
  const args = ((container.args as string[] | undefined) ?? []).map((s) => expandKubeRefs(String(s), env));
  return [...command, ...args];
}
