/**
 * OpenAPI schemas of the served kinds, for `kubectl explain` and for clients that compute
 * patches from the schema: built-in kinds from the message definitions the API server also
 * decodes protobuf with (field names and types, list-map keys and patch strategies), custom
 * resources from their CustomResourceDefinition's `openAPIV3Schema`.
 *
 * Every object schema keeps unknown fields (`x-kubernetes-preserve-unknown-fields`), since
 * the definitions cover the fields a migration and its rehearsals use, not every field of the
 * API: a client never fails on a field the sandbox does not describe.
 */
import protobuf from 'protobufjs';
import type { KObject, ObjectStore, ResourceType } from '../store.ts';
import { INLINE, KINDS, types } from './protobuf.ts';

/** List fields merged by key (strategic merge patch and server-side apply), by `Message.field`. */
export const LIST_MAP_KEYS: Record<string, string[]> = {
  'PodSpec.containers': ['name'],
  'PodSpec.initContainers': ['name'],
  'PodSpec.volumes': ['name'],
  'PodSpec.imagePullSecrets': ['name'],
  'Container.env': ['name'],
  'Container.ports': ['containerPort', 'protocol'],
  'Container.volumeMounts': ['mountPath'],
  'ServiceSpec.ports': ['port', 'protocol'],
  'ObjectMeta.ownerReferences': ['uid'],
};

/** Lists that are sets of scalars (`finalizers`). */
const LIST_SETS = new Set(['ObjectMeta.finalizers']);

const DESCRIPTIONS: Record<string, string> = {
  ObjectMeta: 'ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.',
  PodSpec: 'PodSpec is a description of a pod.',
  Container: 'A single application container that you want to run within a pod.',
  'PodSpec.nodeName': 'NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod.',
  'PodSpec.hostNetwork': "Host networking requested for this pod. Use the host's network namespace. Default to false.",
  'PodSpec.serviceAccountName': 'ServiceAccountName is the name of the ServiceAccount to use to run this pod.',
  'PodSpec.containers': 'List of containers belonging to the pod. Containers cannot currently be added or removed. There must be at least one container in a Pod. Cannot be updated.',
  'PodSpec.volumes': 'List of volumes that can be mounted by containers belonging to the pod.',
  'PodSpec.nodeSelector': "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node.",
  'Container.args': "Arguments to the entrypoint. The container image's CMD is used if this is not provided.",
  'Container.image': 'Container image name.',
  'DeploymentSpec.replicas': 'Number of desired pods. This is a pointer to distinguish between explicit zero and not specified. Defaults to 1.',
  'DeploymentSpec.template': 'Template describes the pods that will be created. The only allowed template.spec.restartPolicy value is "Always".',
  'DeploymentSpec.strategy': 'The deployment strategy to use to replace existing pods with new ones.',
  'DaemonSetSpec.updateStrategy': 'An update strategy to replace existing DaemonSet pods with new pods.',
  'ConfigMap.data': "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
  'Secret.data': 'Data contains the secret data. Each key must consist of alphanumeric characters, \'-\', \'_\' or \'.\'. The serialized form of the secret data is a base64 encoded string.',
  'Secret.stringData': 'stringData allows specifying non-binary secret data in string form. It is provided as a write-only input field for convenience. All keys and values are merged into the data field on write, overwriting any existing values.',
  'Secret.type': 'Used to facilitate programmatic handling of secret data.',
  PodTemplateSpec: 'PodTemplateSpec describes the data a pod should have when created from a template',
  DeploymentSpec: 'DeploymentSpec is the specification of the desired behavior of the Deployment.',
  DaemonSetSpec: 'DaemonSetSpec is the specification of a daemon set.',
  LabelSelector: 'A label selector is a label query over a set of resources. An empty label selector matches all objects. A null label selector matches no objects.',
  'ObjectMeta.name': 'Name must be unique within a namespace. Cannot be updated.',
  'ObjectMeta.namespace': 'Namespace defines the space within which each name must be unique. Cannot be updated.',
  'ObjectMeta.labels': 'Map of string keys and values that can be used to organize and categorize (scope and select) objects.',
  'ObjectMeta.annotations': 'Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata.',
  'ObjectMeta.ownerReferences': 'List of objects depended by this object. If ALL objects in the list have been deleted, this object will be garbage collected.',
  'ObjectMeta.finalizers': 'Must be empty before the object is deleted from the registry. Each entry is an identifier for the responsible component that will remove the entry from the list.',
  'ObjectMeta.managedFields': 'ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow.',
  'ObjectMeta.creationTimestamp': 'CreationTimestamp is a timestamp representing the server time when this object was created. Populated by the system. Read-only.',
  'ObjectMeta.deletionTimestamp': 'DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted. Set by the server when a graceful deletion is requested by the user.',
  'ObjectMeta.resourceVersion': 'An opaque value that represents the internal version of this object that can be used by clients to determine when objects have changed.',
  'ObjectMeta.uid': 'UID is the unique in time and space value for this object. Populated by the system. Read-only.',
  'PodSpec.restartPolicy': 'Restart policy for all containers within the pod. One of Always, OnFailure, Never. Default to Always.',
  'PodSpec.terminationGracePeriodSeconds': 'Optional duration in seconds the pod needs to terminate gracefully. Defaults to 30 seconds.',
  'PodSpec.dnsPolicy': "Set DNS policy for the pod. Defaults to \"ClusterFirst\". Valid values are 'ClusterFirstWithHostNet', 'ClusterFirst', 'Default' or 'None'.",
  'PodSpec.tolerations': "If specified, the pod's tolerations.",
  'PodSpec.initContainers': 'List of initialization containers belonging to the pod. Init containers are executed in order prior to containers being started.',
  'PodSpec.schedulerName': 'If specified, the pod will be dispatched by specified scheduler. If not specified, the pod will be dispatched by default scheduler.',
  'PodSpec.priorityClassName': 'If specified, indicates the pod\'s priority.',
  'PodSpec.automountServiceAccountToken': 'AutomountServiceAccountToken indicates whether a service account token should be automatically mounted.',
  'PodSpec.securityContext': 'SecurityContext holds pod-level security attributes and common container settings.',
  'Container.name': 'Name of the container specified as a DNS_LABEL. Each container in a pod must have a unique name (DNS_LABEL). Cannot be updated.',
  'Container.command': "Entrypoint array. Not executed within a shell. The container image's ENTRYPOINT is used if this is not provided.",
  'Container.env': 'List of environment variables to set in the container. Cannot be updated.',
  'Container.ports': 'List of ports to expose from the container.',
  'Container.resources': 'Compute Resources required by this container. Cannot be updated.',
  'Container.volumeMounts': "Pod volumes to mount into the container's filesystem. Cannot be updated.",
  'Container.imagePullPolicy': 'Image pull policy. One of Always, Never, IfNotPresent. Defaults to Always if :latest tag is specified, or IfNotPresent otherwise.',
  'Container.livenessProbe': 'Periodic probe of container liveness. Container will be restarted if the probe fails.',
  'Container.readinessProbe': 'Periodic probe of container service readiness. Container will be removed from service endpoints if the probe fails.',
  'Volume.name': "name of the volume. Must be a DNS_LABEL and unique within the pod.",
  'VolumeSource.emptyDir': "emptyDir represents a temporary directory that shares a pod's lifetime.",
  'VolumeSource.hostPath': 'hostPath represents a pre-existing file or directory on the host machine that is directly exposed to the container.',
  'DeploymentSpec.selector': 'Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template\'s labels.',
  'DeploymentSpec.revisionHistoryLimit': 'The number of old ReplicaSets to retain to allow rollback. Defaults to 10.',
  'DeploymentSpec.paused': 'Indicates that the deployment is paused.',
  'DeploymentSpec.progressDeadlineSeconds': 'The maximum time in seconds for a deployment to make progress before it is considered to be failed. Defaults to 600s.',
  'DaemonSetSpec.selector': 'A label query over pods that are managed by the daemon set. Must match in order to be controlled.',
  'DaemonSetSpec.template': 'An object that describes the pod that will be created. The DaemonSet will create exactly one copy of this pod on every node that matches the template\'s node selector.',
  'JobSpec.backoffLimit': 'Specifies the number of retries before marking this job failed. Defaults to 6.',
  'JobSpec.completions': 'Specifies the desired number of successfully finished pods the job should be run with.',
  'JobSpec.template': 'Describes the pod that will be created when executing a job. The only allowed template.spec.restartPolicy values are "Never" or "OnFailure".',
  'ServiceSpec.selector': 'Route service traffic to pods with label keys and values matching this selector.',
  'ServiceSpec.ports': 'The list of ports that are exposed by this service.',
  'ServiceSpec.type': 'type determines how the Service is exposed. Defaults to ClusterIP.',
  'ConfigMap.binaryData': 'BinaryData contains the binary data. Each key must consist of alphanumeric characters, \'-\', \'_\' or \'.\'.',
};

const KIND_DESCRIPTIONS: Record<string, string> = {
  Pod: 'Pod is a collection of containers that can run on a host. This resource is created by clients and scheduled onto hosts.',
  Deployment: 'Deployment enables declarative updates for Pods and ReplicaSets.',
  DaemonSet: 'DaemonSet represents the configuration of a daemon set.',
  ReplicaSet: 'ReplicaSet ensures that a specified number of pod replicas are running at any given time.',
  Job: 'Job represents the configuration of a single job.',
  ConfigMap: 'ConfigMap holds configuration data for pods to consume.',
  Secret: 'Secret holds secret data of a certain type. The total bytes of the values in the Data field must be less than MaxSecretSize bytes.',
  Service: 'Service is a named abstraction of software service (for example, mysql) consisting of local port (for example 3306) that the proxy listens on, and the selector that determines which pods will answer requests sent through the proxy.',
  ServiceAccount: 'ServiceAccount binds together: * a name, understood by users, and perhaps by peripheral systems, for an identity * a principal that can be authenticated and authorized * a set of secrets',
  Namespace: 'Namespace provides a scope for Names. Use of multiple namespaces is optional.',
};

type Schema = Record<string, unknown>;

function scalar(type: string): Schema {
  switch (type) {
    case 'string':
      return { type: 'string' };
    case 'bool':
      return { type: 'boolean' };
    case 'int32':
      return { type: 'integer', format: 'int32' };
    case 'int64':
      return { type: 'integer', format: 'int64' };
    case 'bytes':
      return { type: 'string', format: 'byte' };
    default:
      return { type: 'string' };
  }
}

function special(name: string): Schema | undefined {
  if (name === 'Time') return { type: 'string', format: 'date-time', description: 'Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.' };
  if (name === 'Quantity') return { 'x-kubernetes-int-or-string': true, description: 'Quantity is a fixed-point representation of a number.' };
  if (name === 'IntOrString') return { 'x-kubernetes-int-or-string': true, description: 'IntOrString is a type that can hold an int32 or a string.' };
  return undefined;
}

/** `k8s.Message` schema names in components/definitions. */
function schemaName(message: string): string {
  return `io.k8s.sandbox.${message}`;
}

/** Builds the schemas of `type` and every message it reaches into `out`. */
function messageSchema(type: protobuf.Type, out: Record<string, Schema>, ref: (name: string) => string): void {
  const key = schemaName(type.name);
  if (out[key]) return;
  const properties: Record<string, Schema> = {};
  const description = DESCRIPTIONS[type.name] ?? KIND_DESCRIPTIONS[type.name];
  const schema: Schema = { type: 'object', ...(description ? { description } : {}), properties, 'x-kubernetes-preserve-unknown-fields': true };
  out[key] = schema;
  const add = (t: protobuf.Type) => {
    for (const f of t.fieldsArray) {
      const fk = `${t.name}.${f.name}`;
      const resolved = f.resolve().resolvedType;
      if (resolved instanceof protobuf.Type && INLINE.has(fk)) {
        add(resolved);
        continue;
      }
      let value: Schema;
      const elem = (): Schema => {
        if (resolved instanceof protobuf.Type) {
          const sp = special(resolved.name);
          if (sp) return sp;
          messageSchema(resolved, out, ref);
          return { $ref: ref(schemaName(resolved.name)) };
        }
        return scalar(f.type);
      };
      if (f.name === 'status' && f.type === 'bytes') value = { type: 'object', description: 'Most recently observed status. Populated by the system. Read-only.', 'x-kubernetes-preserve-unknown-fields': true };
      else if (f.map) value = { type: 'object', additionalProperties: elem() };
      else if (f.repeated) {
        value = { type: 'array', items: elem() };
        const keys = LIST_MAP_KEYS[fk];
        if (keys) Object.assign(value, { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': keys, 'x-kubernetes-patch-strategy': 'merge', 'x-kubernetes-patch-merge-key': keys[0] });
        else if (LIST_SETS.has(fk)) Object.assign(value, { 'x-kubernetes-list-type': 'set', 'x-kubernetes-patch-strategy': 'merge' });
        else value['x-kubernetes-list-type'] = 'atomic';
      } else value = elem();
      const desc = DESCRIPTIONS[fk];
      if (desc) value = value.$ref ? { allOf: [value], description: desc } : { ...value, description: desc };
      properties[f.name] = value;
    }
  };
  add(type);
}

/** The definition of one served kind: its schema name and the schemas it needs. */
export interface KindSchemas {
  name: string;
  schemas: Record<string, Schema>;
}

function crdSchema(store: ObjectStore, t: ResourceType): Schema | undefined {
  const crdType = store.type('apiextensions.k8s.io', 'customresourcedefinitions');
  const crd = crdType && (store.peek(crdType, undefined, `${t.resource}.${t.group}`) as Readonly<KObject> | undefined);
  if (!crd) return undefined;
  const version = (crd.spec?.versions ?? []).find((v: any) => v.name === t.version);
  const s = version?.schema?.openAPIV3Schema;
  return s ? structuredClone(s) : { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
}

/**
 * The schemas for one served type, with `x-kubernetes-group-version-kind` on the kind's own
 * schema. `ref` turns a schema name into a reference (`#/components/schemas/...` in v3,
 * `#/definitions/...` in v2).
 */
export function kindSchemas(store: ObjectStore, t: ResourceType, ref: (name: string) => string): KindSchemas {
  const gvk = [{ group: t.group, version: t.version, kind: t.kind }];
  const apiVersion = t.group ? `${t.group}/${t.version}` : t.version;
  const common = {
    apiVersion: { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' },
    kind: { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' },
  };
  const message = KINDS[`${apiVersion}|${t.kind}`];
  const schemas: Record<string, Schema> = {};
  if (message) {
    messageSchema(types().lookupType(`k8s.${message}`), schemas, ref);
    const name = schemaName(message);
    const s = schemas[name];
    s.properties = { ...common, ...(s.properties as object) };
    s['x-kubernetes-group-version-kind'] = gvk;
    return { name, schemas };
  }
  const name = `io.k8s.sandbox.${t.group || 'core'}.${t.version}.${t.kind}`;
  const custom = crdSchema(store, t);
  if (custom) {
    const props = (custom.properties ?? {}) as Record<string, Schema>;
    if (!props.metadata) {
      messageSchema(types().lookupType('k8s.ObjectMeta'), schemas, ref);
      props.metadata = { $ref: ref(schemaName('ObjectMeta')) };
    }
    schemas[name] = { ...custom, properties: { ...common, ...props }, 'x-kubernetes-group-version-kind': gvk };
    return { name, schemas };
  }
  // Kinds without definitions here: metadata is described, the rest is kept as sent.
  messageSchema(types().lookupType('k8s.ObjectMeta'), schemas, ref);
  schemas[name] = {
    type: 'object',
    description: `${t.kind} (the sandbox describes its metadata only).`,
    properties: { ...common, metadata: { $ref: ref(schemaName('ObjectMeta')) } },
    'x-kubernetes-preserve-unknown-fields': true,
    'x-kubernetes-group-version-kind': gvk,
  };
  return { name, schemas };
}
