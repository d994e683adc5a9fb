/**
 * The Kubernetes resource types the migration reads or writes, as `{apiVersion, kind}`
 * references for the gateway. Plain data with no SDK behind it, so steps import it freely.
 */
import type { ResourceRef } from './client.ts';

export const KINDS = {
  Namespace: { apiVersion: 'v1', kind: 'Namespace' },
  Node: { apiVersion: 'v1', kind: 'Node' },
  Pod: { apiVersion: 'v1', kind: 'Pod' },
  ServiceAccount: { apiVersion: 'v1', kind: 'ServiceAccount' },
  ConfigMap: { apiVersion: 'v1', kind: 'ConfigMap' },
  Secret: { apiVersion: 'v1', kind: 'Secret' },
  Endpoints: { apiVersion: 'v1', kind: 'Endpoints' },
  Event: { apiVersion: 'v1', kind: 'Event' },
  Deployment: { apiVersion: 'apps/v1', kind: 'Deployment' },
  ReplicaSet: { apiVersion: 'apps/v1', kind: 'ReplicaSet' },
  DaemonSet: { apiVersion: 'apps/v1', kind: 'DaemonSet' },
  StatefulSet: { apiVersion: 'apps/v1', kind: 'StatefulSet' },
  Job: { apiVersion: 'batch/v1', kind: 'Job' },
  CronJob: { apiVersion: 'batch/v1', kind: 'CronJob' },
  PodDisruptionBudget: { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget' },
  ClusterRole: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole' },
  ClusterRoleBinding: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding' },
  Role: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role' },
  RoleBinding: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding' },
  CustomResourceDefinition: { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition' },
  AzureIdentity: { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentity' },
  AzureIdentityBinding: { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureIdentityBinding' },
  AzureAssignedIdentity: { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzureAssignedIdentity' },
  AzurePodIdentityException: { apiVersion: 'aadpodidentity.k8s.io/v1', kind: 'AzurePodIdentityException' },
} as const satisfies Record<string, ResourceRef>;
