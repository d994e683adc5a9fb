/**
 * Defaulting and validation for objects written through the API, the subset of the real
 * server's registry strategies that a Pod Identity migration can observe: defaults that show
 * up in `kubectl get -o yaml` and that controllers rely on, and the 422 answers for the
 * mistakes a tool could make (selector not matching the template, no containers, negative
 * replicas, changing an immutable selector).
 */
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import { labelSelectorFromObject, matchLabels, SelectorParseError } from '../selectors.ts';

type Cause = { field: string; message: string };

function setDefault(obj: Record<string, any>, key: string, value: unknown): void {
  if (obj[key] === undefined || obj[key] === null) obj[key] = value;
}

function defaultContainer(c: Record<string, any>): void {
  setDefault(c, 'terminationMessagePath', '/dev/termination-log');
  setDefault(c, 'terminationMessagePolicy', 'File');
  setDefault(c, 'imagePullPolicy', /:latest$|^[^:]*$/.test(String(c.image ?? '')) ? 'Always' : 'IfNotPresent');
  setDefault(c, 'resources', {});
  for (const p of c.ports ?? []) setDefault(p, 'protocol', 'TCP');
}

/** Pod spec defaults, as the real server applies them to pods and pod templates. */
export function defaultPodSpec(spec: Record<string, any>): void {
  setDefault(spec, 'restartPolicy', 'Always');
  setDefault(spec, 'terminationGracePeriodSeconds', 30);
  setDefault(spec, 'dnsPolicy', 'ClusterFirst');
  setDefault(spec, 'schedulerName', 'default-scheduler');
  setDefault(spec, 'securityContext', {});
  if (spec.serviceAccountName === undefined && spec.serviceAccount !== undefined) spec.serviceAccountName = spec.serviceAccount;
  setDefault(spec, 'serviceAccountName', 'default');
  for (const c of spec.containers ?? []) defaultContainer(c);
  for (const c of spec.initContainers ?? []) defaultContainer(c);
}

/** What the DefaultTolerationSeconds admission plugin adds to every pod. */
function addDefaultTolerations(spec: Record<string, any>): void {
  const tolerations: any[] = (spec.tolerations = spec.tolerations ?? []);
  for (const key of ['node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable']) {
    const covered = tolerations.some((t) => (t.key === key || (t.key === undefined && t.operator === 'Exists')) && (!t.effect || t.effect === 'NoExecute'));
    if (!covered) tolerations.push({ key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 });
  }
}

function defaultTemplate(spec: Record<string, any>): void {
  spec.template = spec.template ?? {};
  spec.template.spec = spec.template.spec ?? {};
  defaultPodSpec(spec.template.spec);
}

/** Applies the server-side defaults for a create (and, where the real server does so, update). */
export function applyDefaults(t: ResourceType, obj: KObject): void {
  const hadSpec = obj.spec !== undefined;
  const spec = (obj.spec = obj.spec ?? {});
  switch (`${t.group}/${t.kind}`) {
    case '/Pod':
      defaultPodSpec(spec);
      setDefault(spec, 'serviceAccount', spec.serviceAccountName);
      setDefault(spec, 'enableServiceLinks', true);
      setDefault(spec, 'priority', 0);
      setDefault(spec, 'preemptionPolicy', 'PreemptLowerPriority');
      addDefaultTolerations(spec);
      obj.status = obj.status ?? {};
      setDefault(obj.status, 'phase', 'Pending');
      setDefault(obj.status, 'qosClass', 'BestEffort');
      break;
    case '/Namespace':
      setDefault(spec, 'finalizers', ['kubernetes']);
      obj.status = { ...(obj.status ?? {}), phase: obj.status?.phase ?? 'Active' };
      obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': obj.metadata.name! };
      break;
    case 'apps/Deployment':
      setDefault(spec, 'replicas', 1);
      setDefault(spec, 'strategy', { type: 'RollingUpdate' });
      if (spec.strategy.type === 'RollingUpdate') {
        spec.strategy.rollingUpdate = { maxUnavailable: '25%', maxSurge: '25%', ...(spec.strategy.rollingUpdate ?? {}) };
      }
      setDefault(spec, 'revisionHistoryLimit', 10);
      setDefault(spec, 'progressDeadlineSeconds', 600);
      defaultTemplate(spec);
      break;
    case 'apps/ReplicaSet':
      setDefault(spec, 'replicas', 1);
      defaultTemplate(spec);
      break;
    case 'apps/DaemonSet':
      setDefault(spec, 'updateStrategy', { type: 'RollingUpdate' });
      if (spec.updateStrategy.type === 'RollingUpdate') {
        spec.updateStrategy.rollingUpdate = { maxUnavailable: 1, maxSurge: 0, ...(spec.updateStrategy.rollingUpdate ?? {}) };
      }
      setDefault(spec, 'revisionHistoryLimit', 10);
      defaultTemplate(spec);
      break;
    case 'batch/Job': {
      setDefault(spec, 'parallelism', 1);
      setDefault(spec, 'backoffLimit', 6);
      setDefault(spec, 'completionMode', 'NonIndexed');
      setDefault(spec, 'suspend', false);
      setDefault(spec, 'podReplacementPolicy', 'TerminatedOrFailed');
      setDefault(spec, 'manualSelector', false);
      if (spec.completions === undefined) spec.completions = 1;
      defaultTemplate(spec);
      // Jobs get a generated selector on controller-uid unless the user asked for a manual one.
      if (!spec.selector && obj.metadata.uid) {
        spec.selector = { matchLabels: { 'batch.kubernetes.io/controller-uid': obj.metadata.uid } };
        const md = (spec.template.metadata = spec.template.metadata ?? {});
        md.labels = { ...(md.labels ?? {}), 'batch.kubernetes.io/controller-uid': obj.metadata.uid, 'batch.kubernetes.io/job-name': obj.metadata.name!, 'controller-uid': obj.metadata.uid, 'job-name': obj.metadata.name! };
      }
      break;
    }
    case 'policy/PodDisruptionBudget':
      obj.status = obj.status ?? {};
      setDefault(obj.status, 'disruptionsAllowed', 0);
      setDefault(obj.status, 'currentHealthy', 0);
      setDefault(obj.status, 'desiredHealthy', 0);
      setDefault(obj.status, 'expectedPods', 0);
      break;
    case '/Secret':
      if (!hadSpec) delete obj.spec;
      // stringData is write-only: the registry folds it into base64 data (stringData wins).
      if (obj.stringData && typeof obj.stringData === 'object') {
        obj.data = { ...(obj.data ?? {}) };
        for (const [k, v] of Object.entries(obj.stringData as Record<string, string>)) obj.data[k] = Buffer.from(String(v), 'utf8').toString('base64');
      }
      delete obj.stringData;
      if (!obj.type) obj.type = 'Opaque';
      break;
    case '/Service':
      setDefault(spec, 'type', 'ClusterIP');
      setDefault(spec, 'sessionAffinity', 'None');
      for (const p of spec.ports ?? []) {
        setDefault(p, 'protocol', 'TCP');
        setDefault(p, 'targetPort', p.port);
      }
      break;
    default:
      // Kinds without defaults keep exactly the spec they were given (none, for a ConfigMap).
      if (!hadSpec) delete obj.spec;
  }
}

function validateTemplate(kind: string, spec: Record<string, any>, causes: Cause[], selectorRequired: boolean): void {
  const containers = spec.template?.spec?.containers;
  if (!Array.isArray(containers) || containers.length === 0) causes.push({ field: 'spec.template.spec.containers', message: 'Required value' });
  else containers.forEach((c: any, i: number) => {
    if (!c?.name) causes.push({ field: `spec.template.spec.containers[${i}].name`, message: 'Required value' });
    if (!c?.image) causes.push({ field: `spec.template.spec.containers[${i}].image`, message: 'Required value' });
  });
  if (spec.replicas !== undefined && (typeof spec.replicas !== 'number' || spec.replicas < 0)) {
    causes.push({ field: 'spec.replicas', message: `Invalid value: ${spec.replicas}: must be greater than or equal to 0` });
  }
  const sel = spec.selector;
  const empty = !sel || (Object.keys(sel.matchLabels ?? {}).length === 0 && (sel.matchExpressions ?? []).length === 0);
  if (empty) {
    if (selectorRequired) causes.push({ field: 'spec.selector', message: 'Required value' });
    return;
  }
  let reqs;
  try {
    reqs = labelSelectorFromObject(sel);
  } catch (e) {
    if (e instanceof SelectorParseError) {
      causes.push({ field: 'spec.selector', message: `Invalid value: ${JSON.stringify(sel)}: ${e.message}` });
      return;
    }
    throw e;
  }
  if (!matchLabels(reqs, spec.template?.metadata?.labels)) {
    causes.push({ field: 'spec.template.metadata.labels', message: `Invalid value: ${JSON.stringify(spec.template?.metadata?.labels ?? {})}: \`selector\` does not match template \`labels\`` });
  }
  void kind;
}

/**
 * Validates an object about to be created or updated (`old` given on update). Throws the
 * store's 422 Invalid error with every failing field.
 */
export function validate(store: ObjectStore, t: ResourceType, obj: KObject, old?: KObject): void {
  const causes: Cause[] = [];
  const spec = obj.spec ?? {};
  switch (`${t.group}/${t.kind}`) {
    case '/Pod': {
      const containers = spec.containers;
      if (!Array.isArray(containers) || containers.length === 0) causes.push({ field: 'spec.containers', message: 'Required value' });
      else containers.forEach((c: any, i: number) => {
        if (!c?.name) causes.push({ field: `spec.containers[${i}].name`, message: 'Required value' });
        if (!c?.image) causes.push({ field: `spec.containers[${i}].image`, message: 'Required value' });
      });
      if (old && old.spec?.nodeName && spec.nodeName !== old.spec.nodeName) {
        causes.push({ field: 'spec.nodeName', message: 'Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)' });
      }
      break;
    }
    case 'apps/Deployment':
    case 'apps/ReplicaSet':
    case 'apps/DaemonSet':
      validateTemplate(t.kind, spec, causes, true);
      if (old && JSON.stringify(old.spec?.selector ?? null) !== JSON.stringify(spec.selector ?? null)) {
        causes.push({ field: 'spec.selector', message: `Invalid value: ${JSON.stringify(spec.selector ?? null)}: field is immutable` });
      }
      break;
    case 'batch/Job':
      validateTemplate(t.kind, spec, causes, false);
      if (spec.template?.spec?.restartPolicy === 'Always') {
        causes.push({ field: 'spec.template.spec.restartPolicy', message: 'Unsupported value: "Always": supported values: "OnFailure", "Never"' });
      }
      break;
    case 'policy/PodDisruptionBudget':
      if (spec.minAvailable !== undefined && spec.maxUnavailable !== undefined) {
        causes.push({ field: 'spec', message: 'Invalid value: {"minAvailable":..., "maxUnavailable":...}: minAvailable and maxUnavailable cannot be both set' });
      }
      break;
  }
  if (causes.length) throw store.invalid(t, obj.metadata?.name ?? '', causes);
}
