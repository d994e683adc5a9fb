import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  findMicDeployments,
  findNmiDaemonSets,
  managedNmiArgs,
  nmiArgsAreManaged,
  parseImmutableUserMsis,
  versionFromImage,
  withImmutableUserMsis,
} from '../../src/steps/lib/pod-identity.ts';
import type { KubeObject } from '../../src/kube/gateway.ts';

const MANIFESTS = join(import.meta.dirname, '..', '..', 'src', 'sandbox', 'manifests');

function nmiOf(file: string): KubeObject {
  const docs = parseAllDocuments(readFileSync(join(MANIFESTS, file), 'utf8')).map((d) => d.toJS() as KubeObject);
  return docs.find((d) => d?.kind === 'DaemonSet')!;
}

function argsOf(ds: KubeObject): string[] {
  return (ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args;
}

describe('managed-mode NMI args', () => {
  it('turn the upstream v1.8.17 standard args into exactly the upstream managed-mode args', () => {
    const standard = findNmiDaemonSets([nmiOf('standard-v1.8.17.yaml')])[0];
    expect(standard.version).toBe('v1.8.17');
    expect(managedNmiArgs(standard.args, standard.version)).toEqual(argsOf(nmiOf('managed-v1.8.17.yaml')));
  });

  it('keep --host-ip on v1.6.0 and match the upstream v1.6.0 managed manifest', () => {
    const standard = findNmiDaemonSets([nmiOf('standard-v1.6.0.yaml')])[0];
    expect(standard.version).toBe('v1.6.0');
    const out = managedNmiArgs(standard.args, standard.version);
    expect(out).toContain('--host-ip=$(HOST_IP)');
    expect(out).toEqual(argsOf(nmiOf('managed-v1.6.0.yaml')));
  });

  it('drop --host-ip from v1.6.2 on (NMI exits on it) and keep it on v1.6.1', () => {
    const args = ['--host-ip=$(HOST_IP)', '--node=$(NODE_NAME)'];
    expect(managedNmiArgs(args, 'v1.6.2')).toEqual(['--node=$(NODE_NAME)', '--operation-mode=managed', '--forceNamespaced']);
    expect(managedNmiArgs(args, 'v1.6.1')).toEqual([...args, '--operation-mode=managed', '--forceNamespaced']);
    expect(managedNmiArgs(['--host-ip', '$(HOST_IP)', '--node=x'], 'v1.8.17')).toEqual(['--node=x', '--operation-mode=managed', '--forceNamespaced']);
  });

  it('replace a Helm --operation-mode=standard in place and add --forceNamespaced after it, keeping every other arg', () => {
    const helm = ['--node=$(NODE_NAME)', '--http-probe-port=8085', '--enableScaleFeatures=true', '--metadata-header-required=true', '--operation-mode=standard', '--kubelet-config=/etc/default/kubelet'];
    expect(managedNmiArgs(helm, 'v1.8.17')).toEqual([
      '--node=$(NODE_NAME)',
      '--http-probe-port=8085',
      '--enableScaleFeatures=true',
      '--metadata-header-required=true',
      '--operation-mode=managed',
      '--forceNamespaced',
      '--kubelet-config=/etc/default/kubelet',
    ]);
  });

  it('are idempotent and refuse an unknown version', () => {
    const once = managedNmiArgs(argsOf(nmiOf('standard-v1.8.17.yaml')), 'v1.8.17');
    expect(managedNmiArgs(once, 'v1.8.17')).toEqual(once);
    expect(nmiArgsAreManaged(once)).toBe(true);
    expect(nmiArgsAreManaged(['--forceNamespaced=false', '--operation-mode=managed'])).toBe(false);
    expect(managedNmiArgs(['--forceNamespaced=false', '--operation-mode=managed'], 'v1.8.17')).toEqual(['--forceNamespaced', '--operation-mode=managed']);
    expect(() => managedNmiArgs([], 'latest')).toThrow(/cannot tell the NMI version/);
  });
});

describe('versions from image tags', () => {
  it.each([
    ['mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17', 'v1.8.17'],
    ['mcr.microsoft.com/k8s/aad-pod-identity/nmi:1.6.0', 'v1.6.0'],
    ['registry.local:5000/mirror/nmi:v1.7.5-rc.1', 'v1.7.5'],
    ['mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17@sha256:abcd', 'v1.8.17'],
    ['registry.local:5000/nmi', undefined],
    ['nmi:latest', undefined],
  ])('%s -> %s', (image, version) => {
    expect(versionFromImage(image)).toBe(version);
  });
});

describe('MIC --immutable-user-msis', () => {
  it('merges new client ids after the ones already there, case-insensitively, in place', () => {
    const args = ['--cloudconfig=/etc/kubernetes/azure.json', '--immutable-user-msis=AAA,bbb', '--logtostderr'];
    const out = withImmutableUserMsis(args, ['aaa', 'ccc', 'ccc']);
    expect(out).toEqual(['--cloudconfig=/etc/kubernetes/azure.json', '--immutable-user-msis=AAA,bbb,ccc', '--logtostderr']);
    expect(parseImmutableUserMsis(out)).toEqual(['AAA', 'bbb', 'ccc']);
  });

  it('appends the flag when absent and reads a separate-value form', () => {
    expect(withImmutableUserMsis(['--logtostderr'], ['x', 'y'])).toEqual(['--logtostderr', '--immutable-user-msis=x,y']);
    expect(parseImmutableUserMsis(['--immutable-user-msis', 'p, q'])).toEqual(['p', 'q']);
    expect(withImmutableUserMsis(['--immutable-user-msis', 'p'], ['q'])).toEqual(['--immutable-user-msis=p,q']);
  });
});

describe('finding NMI and MIC', () => {
  it('finds a raw install by image and a Helm install by its labels, with the release named', () => {
    const raw = nmiOf('standard-v1.8.17.yaml');
    expect(findNmiDaemonSets([raw])[0]).toMatchObject({ name: 'nmi', namespace: 'default', install: 'raw', container: 'nmi', containerIndex: 0 });
    const helm = structuredClone(raw);
    helm.metadata = { name: 'aad-pod-identity-nmi', namespace: 'pod-identity', labels: { 'app.kubernetes.io/managed-by': 'Helm', 'helm.sh/chart': 'aad-pod-identity-4.1.18' }, annotations: { 'meta.helm.sh/release-name': 'pi', 'meta.helm.sh/release-namespace': 'pod-identity' } };
    expect(findNmiDaemonSets([helm])[0]).toMatchObject({ install: 'helm', helmRelease: { name: 'pi', namespace: 'pod-identity' } });
    const other: KubeObject = { kind: 'DaemonSet', metadata: { name: 'kube-proxy', namespace: 'kube-system' }, spec: { template: { spec: { containers: [{ name: 'kube-proxy', image: 'mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.32.4' }] } } } };
    expect(findNmiDaemonSets([other])).toEqual([]);
    const mic: KubeObject = { kind: 'Deployment', metadata: { name: 'mic', namespace: 'default' }, spec: { replicas: 2, template: { spec: { containers: [{ name: 'mic', image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/mic:v1.8.17', args: ['--logtostderr'] }] } } } };
    expect(findMicDeployments([mic])[0]).toMatchObject({ name: 'mic', replicas: 2, version: 'v1.8.17', args: ['--logtostderr'] });
  });
});
