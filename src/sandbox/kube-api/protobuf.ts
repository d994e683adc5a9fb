/**
 * Decoding of `application/vnd.kubernetes.protobuf` request bodies, the encoding stock
 * `kubectl create` / `run` / `expose` use for built-in kinds.
 *
 * The wire format is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message whose
 * `raw` field holds the object's own message. The definitions below are written for the kinds
 * those commands send; field numbers are the ones of the Kubernetes API (`generated.proto` of
 * k8s.io/api and k8s.io/apimachinery).
 *
 * The Go encoder writes every non-pointer field, including empty strings, zero numbers and
 * empty structs, so the decoded message is turned into the JSON the same object would have
 * had (`omitempty`): empty values are dropped except for pointer fields where zero means
 * something (`replicas: 0`). A body carrying a field these definitions do not know is refused
 * with a 415 naming the field number, rather than storing an object with something missing.
 */
import protobuf from 'protobufjs';
import { ApiError } from './status.ts';

/** The media type of Kubernetes protobuf bodies. */
export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

const PROTO = `
syntax = "proto2";
package k8s;

message TypeMeta { optional string apiVersion = 1; optional string kind = 2; }
message Unknown { optional TypeMeta typeMeta = 1; optional bytes raw = 2; optional string contentEncoding = 3; optional string contentType = 4; }

message Time { optional int64 seconds = 1; optional int32 nanos = 2; }
message Quantity { optional string string = 1; }
message IntOrString { optional int64 type = 1; optional int32 intVal = 2; optional string strVal = 3; }

message OwnerReference { optional string kind = 1; optional string name = 3; optional string uid = 4; optional string apiVersion = 5; optional bool controller = 6; optional bool blockOwnerDeletion = 7; }
message ObjectMeta {
  optional string name = 1; optional string generateName = 2; optional string namespace = 3; optional string selfLink = 4;
  optional string uid = 5; optional string resourceVersion = 6; optional int64 generation = 7;
  optional Time creationTimestamp = 8; optional Time deletionTimestamp = 9; optional int64 deletionGracePeriodSeconds = 10;
  map<string, string> labels = 11; map<string, string> annotations = 12; repeated OwnerReference ownerReferences = 13;
  repeated string finalizers = 14; repeated bytes managedFields = 17;
}
message LabelSelectorRequirement { optional string key = 1; optional string operator = 2; repeated string values = 3; }
message LabelSelector { map<string, string> matchLabels = 1; repeated LabelSelectorRequirement matchExpressions = 2; }

message Namespace { optional ObjectMeta metadata = 1; optional NamespaceSpec spec = 2; optional bytes status = 3; }
message NamespaceSpec { repeated string finalizers = 1; }
message ConfigMap { optional ObjectMeta metadata = 1; map<string, string> data = 2; map<string, bytes> binaryData = 3; optional bool immutable = 4; }
message Secret { optional ObjectMeta metadata = 1; map<string, bytes> data = 2; optional string type = 3; map<string, string> stringData = 4; optional bool immutable = 5; }
message LocalObjectReference { optional string name = 1; }
message ObjectReference { optional string kind = 1; optional string namespace = 2; optional string name = 3; optional string uid = 4; optional string apiVersion = 5; optional string resourceVersion = 6; optional string fieldPath = 7; }
message ServiceAccount { optional ObjectMeta metadata = 1; repeated ObjectReference secrets = 2; repeated LocalObjectReference imagePullSecrets = 3; optional bool automountServiceAccountToken = 4; }

message ContainerPort { optional string name = 1; optional int32 hostPort = 2; optional int32 containerPort = 3; optional string protocol = 4; optional string hostIP = 5; }
message ObjectFieldSelector { optional string apiVersion = 1; optional string fieldPath = 2; }
message ResourceFieldSelector { optional string containerName = 1; optional string resource = 2; optional Quantity divisor = 3; }
message ConfigMapKeySelector { optional LocalObjectReference localObjectReference = 1; optional string key = 2; optional bool optional = 3; }
message SecretKeySelector { optional LocalObjectReference localObjectReference = 1; optional string key = 2; optional bool optional = 3; }
message EnvVarSource { optional ObjectFieldSelector fieldRef = 1; optional ResourceFieldSelector resourceFieldRef = 2; optional ConfigMapKeySelector configMapKeyRef = 3; optional SecretKeySelector secretKeyRef = 4; }
message EnvVar { optional string name = 1; optional string value = 2; optional EnvVarSource valueFrom = 3; }
message ConfigMapEnvSource { optional LocalObjectReference localObjectReference = 1; optional bool optional = 2; }
message SecretEnvSource { optional LocalObjectReference localObjectReference = 1; optional bool optional = 2; }
message EnvFromSource { optional string prefix = 1; optional ConfigMapEnvSource configMapRef = 2; optional SecretEnvSource secretRef = 3; }
message ResourceClaim { optional string name = 1; optional string request = 2; }
message ResourceRequirements { map<string, Quantity> limits = 1; map<string, Quantity> requests = 2; repeated ResourceClaim claims = 3; }
message VolumeMount { optional string name = 1; optional bool readOnly = 2; optional string mountPath = 3; optional string subPath = 4; optional string mountPropagation = 5; optional string subPathExpr = 6; optional string recursiveReadOnly = 7; }
message ExecAction { repeated string command = 1; }
message HTTPHeader { optional string name = 1; optional string value = 2; }
message HTTPGetAction { optional string path = 1; optional IntOrString port = 2; optional string host = 3; optional string scheme = 4; repeated HTTPHeader httpHeaders = 5; }
message TCPSocketAction { optional IntOrString port = 1; optional string host = 2; }
message ProbeHandler { optional ExecAction exec = 1; optional HTTPGetAction httpGet = 2; optional TCPSocketAction tcpSocket = 3; }
message Probe { optional ProbeHandler handler = 1; optional int32 initialDelaySeconds = 2; optional int32 timeoutSeconds = 3; optional int32 periodSeconds = 4; optional int32 successThreshold = 5; optional int32 failureThreshold = 6; optional int64 terminationGracePeriodSeconds = 7; }
message Capabilities { repeated string add = 1; repeated string drop = 2; }
message SecurityContext { optional Capabilities capabilities = 1; optional bool privileged = 2; optional int64 runAsUser = 4; optional bool runAsNonRoot = 5; optional bool readOnlyRootFilesystem = 6; optional bool allowPrivilegeEscalation = 7; optional int64 runAsGroup = 8; }
message Container {
  optional string name = 1; optional string image = 2; repeated string command = 3; repeated string args = 4; optional string workingDir = 5;
  repeated ContainerPort ports = 6; repeated EnvVar env = 7; optional ResourceRequirements resources = 8; repeated VolumeMount volumeMounts = 9;
  optional Probe livenessProbe = 10; optional Probe readinessProbe = 11; optional string terminationMessagePath = 13; optional string imagePullPolicy = 14;
  optional SecurityContext securityContext = 15; optional bool stdin = 16; optional bool stdinOnce = 17; optional bool tty = 18;
  repeated EnvFromSource envFrom = 19; optional string terminationMessagePolicy = 20; optional Probe startupProbe = 22;
}
message HostPathVolumeSource { optional string path = 1; optional string type = 2; }
message EmptyDirVolumeSource { optional string medium = 1; optional Quantity sizeLimit = 2; }
message KeyToPath { optional string key = 1; optional string path = 2; optional int32 mode = 3; }
message SecretVolumeSource { optional string secretName = 1; repeated KeyToPath items = 2; optional int32 defaultMode = 3; optional bool optional = 4; }
message ConfigMapVolumeSource { optional LocalObjectReference localObjectReference = 1; repeated KeyToPath items = 2; optional int32 defaultMode = 3; optional bool optional = 4; }
message VolumeSource { optional HostPathVolumeSource hostPath = 1; optional EmptyDirVolumeSource emptyDir = 2; optional SecretVolumeSource secret = 6; optional ConfigMapVolumeSource configMap = 19; }
message Volume { optional string name = 1; optional VolumeSource volumeSource = 2; }
message Toleration { optional string key = 1; optional string operator = 2; optional string value = 3; optional string effect = 4; optional int64 tolerationSeconds = 5; }
message PodSecurityContext { optional int64 runAsUser = 2; optional bool runAsNonRoot = 3; repeated int64 supplementalGroups = 4; optional int64 fsGroup = 5; optional int64 runAsGroup = 6; }
message PodSpec {
  repeated Volume volumes = 1; repeated Container containers = 2; optional string restartPolicy = 3; optional int64 terminationGracePeriodSeconds = 4;
  optional int64 activeDeadlineSeconds = 5; optional string dnsPolicy = 6; map<string, string> nodeSelector = 7; optional string serviceAccountName = 8;
  optional string serviceAccount = 9; optional string nodeName = 10; optional bool hostNetwork = 11; optional bool hostPID = 12; optional bool hostIPC = 13;
  optional PodSecurityContext securityContext = 14; repeated LocalObjectReference imagePullSecrets = 15; optional string hostname = 16; optional string subdomain = 17;
  optional string schedulerName = 19; repeated Container initContainers = 20; optional bool automountServiceAccountToken = 21; repeated Toleration tolerations = 22;
  optional string priorityClassName = 24; optional int32 priority = 25; optional bool enableServiceLinks = 30; optional string preemptionPolicy = 31;
}
message PodTemplateSpec { optional ObjectMeta metadata = 1; optional PodSpec spec = 2; }
message Pod { optional ObjectMeta metadata = 1; optional PodSpec spec = 2; optional bytes status = 3; }

message RollingUpdateDeployment { optional IntOrString maxUnavailable = 1; optional IntOrString maxSurge = 2; }
message DeploymentStrategy { optional string type = 1; optional RollingUpdateDeployment rollingUpdate = 2; }
message DeploymentSpec { optional int32 replicas = 1; optional LabelSelector selector = 2; optional PodTemplateSpec template = 3; optional DeploymentStrategy strategy = 4; optional int32 minReadySeconds = 5; optional int32 revisionHistoryLimit = 6; optional bool paused = 7; optional int32 progressDeadlineSeconds = 9; }
message Deployment { optional ObjectMeta metadata = 1; optional DeploymentSpec spec = 2; optional bytes status = 3; }

message JobSpec { optional int32 parallelism = 1; optional int32 completions = 2; optional int64 activeDeadlineSeconds = 3; optional LabelSelector selector = 4; optional bool manualSelector = 5; optional PodTemplateSpec template = 6; optional int32 backoffLimit = 7; optional int32 ttlSecondsAfterFinished = 8; optional string completionMode = 9; optional bool suspend = 10; }
message Job { optional ObjectMeta metadata = 1; optional JobSpec spec = 2; optional bytes status = 3; }

message ServicePort { optional string name = 1; optional string protocol = 2; optional int32 port = 3; optional IntOrString targetPort = 4; optional int32 nodePort = 5; optional string appProtocol = 6; }
message ServiceSpec {
  repeated ServicePort ports = 1; map<string, string> selector = 2; optional string clusterIP = 3; optional string type = 4; repeated string externalIPs = 5;
  optional string sessionAffinity = 7; optional string loadBalancerIP = 8; repeated string loadBalancerSourceRanges = 9; optional string externalName = 10;
  optional string externalTrafficPolicy = 11; optional int32 healthCheckNodePort = 12; optional bool publishNotReadyAddresses = 13;
  optional string ipFamilyPolicy = 17; repeated string clusterIPs = 18; repeated string ipFamilies = 19; optional bool allocateLoadBalancerNodePorts = 20;
  optional string loadBalancerClass = 21; optional string internalTrafficPolicy = 22;
}
message Service { optional ObjectMeta metadata = 1; optional ServiceSpec spec = 2; optional bytes status = 3; }

message RollingUpdateDaemonSet { optional IntOrString maxUnavailable = 1; optional IntOrString maxSurge = 2; }
message DaemonSetUpdateStrategy { optional string type = 1; optional RollingUpdateDaemonSet rollingUpdate = 2; }
message DaemonSetSpec { optional LabelSelector selector = 1; optional PodTemplateSpec template = 2; optional DaemonSetUpdateStrategy updateStrategy = 3; optional int32 minReadySeconds = 4; optional int32 revisionHistoryLimit = 6; }
message DaemonSet { optional ObjectMeta metadata = 1; optional DaemonSetSpec spec = 2; optional bytes status = 3; }
message ReplicaSetSpec { optional int32 replicas = 1; optional int32 minReadySeconds = 4; optional LabelSelector selector = 2; optional PodTemplateSpec template = 3; }
message ReplicaSet { optional ObjectMeta metadata = 1; optional ReplicaSetSpec spec = 2; optional bytes status = 3; }

message PolicyRule { repeated string verbs = 1; repeated string apiGroups = 2; repeated string resources = 3; repeated string resourceNames = 4; repeated string nonResourceURLs = 5; }
message AggregationRule { repeated LabelSelector clusterRoleSelectors = 1; }
message ClusterRole { optional ObjectMeta metadata = 1; repeated PolicyRule rules = 2; optional AggregationRule aggregationRule = 3; }
message Role { optional ObjectMeta metadata = 1; repeated PolicyRule rules = 2; }
message RoleRef { optional string apiGroup = 1; optional string kind = 2; optional string name = 3; }
message Subject { optional string kind = 1; optional string apiGroup = 2; optional string name = 3; optional string namespace = 4; }
message ClusterRoleBinding { optional ObjectMeta metadata = 1; repeated Subject subjects = 2; optional RoleRef roleRef = 3; }
message RoleBinding { optional ObjectMeta metadata = 1; repeated Subject subjects = 2; optional RoleRef roleRef = 3; }

message PodDisruptionBudgetSpec { optional IntOrString minAvailable = 1; optional LabelSelector selector = 2; optional IntOrString maxUnavailable = 3; optional string unhealthyPodEvictionPolicy = 4; }
message PodDisruptionBudget { optional ObjectMeta metadata = 1; optional PodDisruptionBudgetSpec spec = 2; optional bytes status = 3; }

message Preconditions { optional string uid = 1; optional string resourceVersion = 2; }
message DeleteOptions { optional int64 gracePeriodSeconds = 1; optional Preconditions preconditions = 2; optional bool orphanDependents = 3; optional string propagationPolicy = 4; repeated string dryRun = 5; }
message ResourceAttributes { optional string namespace = 1; optional string verb = 2; optional string group = 3; optional string version = 4; optional string resource = 5; optional string subresource = 6; optional string name = 7; }
message NonResourceAttributes { optional string path = 1; optional string verb = 2; }
message SelfSubjectAccessReviewSpec { optional ResourceAttributes resourceAttributes = 1; optional NonResourceAttributes nonResourceAttributes = 2; }
message SelfSubjectAccessReview { optional ObjectMeta metadata = 1; optional SelfSubjectAccessReviewSpec spec = 2; optional bytes status = 3; }
message SelfSubjectRulesReviewSpec { optional string namespace = 1; }
message SelfSubjectRulesReview { optional ObjectMeta metadata = 1; optional SelfSubjectRulesReviewSpec spec = 2; optional bytes status = 3; }
message SelfSubjectReview { optional ObjectMeta metadata = 1; optional bytes status = 2; }
message Eviction { optional ObjectMeta metadata = 1; optional DeleteOptions deleteOptions = 2; }
`;

/** Messages whose fields are pointers in Go: a zero value there was set on purpose and is kept. */
const POINTER_FIELDS = new Set([
  'DeploymentSpec.replicas', 'DeploymentSpec.revisionHistoryLimit', 'DeploymentSpec.progressDeadlineSeconds',
  'JobSpec.parallelism', 'JobSpec.completions', 'JobSpec.activeDeadlineSeconds', 'JobSpec.backoffLimit', 'JobSpec.ttlSecondsAfterFinished', 'JobSpec.manualSelector', 'JobSpec.suspend',
  'PodSpec.terminationGracePeriodSeconds', 'PodSpec.activeDeadlineSeconds', 'PodSpec.automountServiceAccountToken', 'PodSpec.priority', 'PodSpec.enableServiceLinks',
  'ObjectMeta.deletionGracePeriodSeconds', 'OwnerReference.controller', 'OwnerReference.blockOwnerDeletion',
  'ConfigMap.immutable', 'Secret.immutable', 'ServiceAccount.automountServiceAccountToken',
  'SecurityContext.privileged', 'SecurityContext.runAsUser', 'SecurityContext.runAsNonRoot', 'SecurityContext.readOnlyRootFilesystem', 'SecurityContext.allowPrivilegeEscalation', 'SecurityContext.runAsGroup',
  'PodSecurityContext.runAsUser', 'PodSecurityContext.runAsNonRoot', 'PodSecurityContext.fsGroup', 'PodSecurityContext.runAsGroup',
  'Toleration.tolerationSeconds', 'Probe.terminationGracePeriodSeconds', 'ConfigMapKeySelector.optional', 'SecretKeySelector.optional',
  'ConfigMapEnvSource.optional', 'SecretEnvSource.optional', 'SecretVolumeSource.defaultMode', 'SecretVolumeSource.optional',
  'DeleteOptions.gracePeriodSeconds', 'DeleteOptions.orphanDependents', 'ConfigMapVolumeSource.defaultMode', 'ConfigMapVolumeSource.optional', 'KeyToPath.mode', 'ServiceSpec.allocateLoadBalancerNodePorts',
]);

/** Pointer-to-struct fields whose mere presence means something (`emptyDir: {}`). */
const KEEP_EMPTY = new Set(['VolumeSource.emptyDir', 'Container.resources', 'PodSpec.securityContext']);

/** Structs embedded inline in Go (exported for the OpenAPI schemas): their fields appear at the parent's level in JSON. */
export const INLINE = new Set(['Volume.volumeSource', 'ConfigMapVolumeSource.localObjectReference', 'ConfigMapKeySelector.localObjectReference', 'SecretKeySelector.localObjectReference', 'ConfigMapEnvSource.localObjectReference', 'SecretEnvSource.localObjectReference', 'Probe.handler']);

/** Messages whose status the client cannot set (the server computes it). */
const STATUS_DROPPED = new Set(['PodDisruptionBudget', 'Namespace', 'Pod', 'Deployment', 'DaemonSet', 'ReplicaSet', 'Job', 'Service', 'SelfSubjectAccessReview', 'SelfSubjectRulesReview', 'SelfSubjectReview']);

/** Kinds decodable from protobuf, by `apiVersion|kind`. */
export const KINDS: Record<string, string> = {
  'v1|Namespace': 'Namespace',
  'v1|ConfigMap': 'ConfigMap',
  'v1|Secret': 'Secret',
  'v1|ServiceAccount': 'ServiceAccount',
  'v1|Pod': 'Pod',
  'v1|Service': 'Service',
  'apps/v1|Deployment': 'Deployment',
  'apps/v1|DaemonSet': 'DaemonSet',
  'apps/v1|ReplicaSet': 'ReplicaSet',
  'batch/v1|Job': 'Job',
  'policy/v1|PodDisruptionBudget': 'PodDisruptionBudget',
  'rbac.authorization.k8s.io/v1|ClusterRole': 'ClusterRole',
  'rbac.authorization.k8s.io/v1|Role': 'Role',
  'rbac.authorization.k8s.io/v1|ClusterRoleBinding': 'ClusterRoleBinding',
  'rbac.authorization.k8s.io/v1|RoleBinding': 'RoleBinding',
  'v1|DeleteOptions': 'DeleteOptions',
  'meta.k8s.io/v1|DeleteOptions': 'DeleteOptions',
  'policy/v1|Eviction': 'Eviction',
  'authorization.k8s.io/v1|SelfSubjectAccessReview': 'SelfSubjectAccessReview',
  'authorization.k8s.io/v1|SelfSubjectRulesReview': 'SelfSubjectRulesReview',
  'authentication.k8s.io/v1|SelfSubjectReview': 'SelfSubjectReview',
};

let root: protobuf.Root | undefined;
/** The parsed message definitions (also the source of the OpenAPI schemas of these kinds). */
export function types(): protobuf.Root {
  root ??= protobuf.parse(PROTO, { keepCase: true }).root;
  return root;
}

/** True when a Content-Type header names the Kubernetes protobuf encoding. */
export function isProtobuf(contentType: string): boolean {
  return contentType.split(';')[0].trim().toLowerCase() === PROTOBUF_MEDIA_TYPE;
}

function unsupported(message: string): ApiError {
  return new ApiError(415, 'UnsupportedMediaType', message);
}

/**
 * Decodes a protobuf request body into the object's JSON form. Throws a 415 for kinds or
 * fields this server cannot decode (the client can send JSON instead) and a 400 for bodies
 * that are not valid Kubernetes protobuf.
 */
export function decodeProtobufObject(body: Buffer): Record<string, unknown> {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) {
    throw new ApiError(400, 'BadRequest', 'provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]');
  }
  const root = types();
  let unknown: any;
  try {
    unknown = root.lookupType('k8s.Unknown').decode(body.subarray(4));
  } catch (e) {
    throw new ApiError(400, 'BadRequest', `error decoding request body: ${(e as Error).message}`);
  }
  const apiVersion: string = unknown.typeMeta?.apiVersion ?? '';
  const kind: string = unknown.typeMeta?.kind ?? '';
  if (unknown.contentEncoding) throw unsupported(`content encoding "${unknown.contentEncoding}" is not supported`);
  const messageName = KINDS[`${apiVersion}|${kind}`];
  if (!messageName) throw unsupported(`the sandbox API server cannot decode ${kind || 'this kind'} (${apiVersion}) from ${PROTOBUF_MEDIA_TYPE}; send it as application/json`);
  const type = root.lookupType(`k8s.${messageName}`);
  let msg: any;
  try {
    // Keep unknown fields (protobufjs drops them by default) so they can be refused below.
    const reader = protobuf.Reader.create(unknown.raw ?? new Uint8Array());
    reader.discardUnknown = false;
    msg = type.decode(reader);
  } catch (e) {
    throw new ApiError(400, 'BadRequest', `error decoding ${kind} from protobuf: ${(e as Error).message}`);
  }
  const obj = toJson(type, msg, kind) as Record<string, unknown>;
  obj.apiVersion = apiVersion;
  obj.kind = kind;
  return obj;
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof (v as any).toNumber === 'function') return (v as any).toNumber();
  return Number(v);
}

/** Converts one decoded message to JSON, refusing fields the definitions do not know. */
function toJson(type: protobuf.Type, msg: any, kind: string): unknown {
  const unknowns: Uint8Array[] | undefined = msg.$unknowns;
  if (unknowns?.length) {
    const r = protobuf.Reader.create(unknowns[0]);
    const fieldNo = r.uint32() >>> 3;
    throw unsupported(`the sandbox API server cannot decode field ${fieldNo} of ${type.name} in a ${kind} sent as ${PROTOBUF_MEDIA_TYPE}; send it as application/json`);
  }
  switch (type.name) {
    case 'Time': {
      const s = num(msg.seconds ?? 0);
      return s === 0 && !msg.nanos ? undefined : new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    }
    case 'Quantity':
      return msg.string ?? '';
    case 'IntOrString':
      return num(msg.type ?? 0) === 1 ? (msg.strVal ?? '') : (msg.intVal ?? 0);
  }
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    if (!Object.prototype.hasOwnProperty.call(msg, field.name)) continue;
    const key = `${type.name}.${field.name}`;
    let value = msg[field.name];
    if (STATUS_DROPPED.has(type.name)) {
      // Status is the server's to set on create; the bytes are dropped.
      if (field.name === 'status') continue;
    }
    if (key === 'ObjectMeta.managedFields') continue;
    const resolved = field.resolvedType;
    if (field.map) {
      const m: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (resolved instanceof protobuf.Type) m[k] = toJson(resolved, v, kind);
        else if (field.type === 'bytes') m[k] = Buffer.from(v as Uint8Array).toString('base64');
        else m[k] = v;
      }
      value = m;
    } else if (field.repeated) {
      value = (value as unknown[]).map((v) => (resolved instanceof protobuf.Type ? toJson(resolved, v, kind) : field.type === 'bytes' ? Buffer.from(v as Uint8Array).toString('base64') : typeof v === 'object' ? num(v) : v));
    } else if (resolved instanceof protobuf.Type) {
      value = toJson(resolved, value, kind);
      if (INLINE.has(key)) {
        Object.assign(out, value as object);
        continue;
      }
    } else if (field.type === 'int64') value = num(value);
    if (value === undefined) continue;
    if (isEmpty(value) && !POINTER_FIELDS.has(key) && !KEEP_EMPTY.has(key)) continue;
    out[field.name] = value;
  }
  return out;
}
