/**
 * Strategic merge patch semantics for the fields a migration touches, plus JSON merge patch
 * (RFC 7386) and the table printer's durations.
 */
import { describe, expect, it } from 'vitest';
import { mergePatch, strategicMergePatch } from '../../../src/sandbox/kube-api/patch.ts';
import { humanDuration } from '../../../src/sandbox/kube-api/table.ts';
import type { KObject } from '../../../src/sandbox/store.ts';

function ds(): KObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'nmi', namespace: 'default', finalizers: ['a'] },
    spec: {
      template: {
        metadata: { labels: { component: 'nmi' } },
        spec: {
          tolerations: [{ operator: 'Exists' }],
          volumes: [{ name: 'iptableslock', hostPath: { path: '/run/xtables.lock' } }, { name: 'kubelet-config', hostPath: { path: '/etc/default/kubelet' } }],
          containers: [
            {
              name: 'nmi',
              image: 'mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17',
              args: ['--node=$(NODE_NAME)', '--http-probe-port=8085'],
              env: [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
              ports: [{ containerPort: 2579, name: 'http' }],
              volumeMounts: [{ mountPath: '/run/xtables.lock', name: 'iptableslock' }, { mountPath: '/etc/default/kubelet', name: 'kubelet-config', readOnly: true }],
            },
          ],
        },
      },
    },
  };
}

const podSpec = (o: KObject) => o.spec.template.spec;

describe('strategic merge patch', () => {
  it('merges containers by name, env by name, volumeMounts by mountPath and ports by containerPort', () => {
    const out = strategicMergePatch(
      ds(),
      {
        spec: {
          template: {
            spec: {
              containers: [
                {
                  name: 'nmi',
                  env: [{ name: 'FORCENAMESPACED', value: 'true' }],
                  volumeMounts: [{ mountPath: '/etc/default/kubelet', readOnly: false }],
                  ports: [{ containerPort: 2579, protocol: 'TCP' }, { containerPort: 9090, name: 'metrics' }],
                },
              ],
            },
          },
        },
      },
      'DaemonSet',
    );
    const c = podSpec(out).containers[0];
    expect(c.image).toBe('mcr.microsoft.com/oss/azure/aad-pod-identity/nmi:v1.8.17');
    expect(c.env.map((e: any) => e.name)).toEqual(['NODE_NAME', 'FORCENAMESPACED']);
    expect(c.volumeMounts).toEqual([{ mountPath: '/run/xtables.lock', name: 'iptableslock' }, { mountPath: '/etc/default/kubelet', name: 'kubelet-config', readOnly: false }]);
    expect(c.ports).toEqual([{ containerPort: 2579, name: 'http', protocol: 'TCP' }, { containerPort: 9090, name: 'metrics' }]);
  });

  it('replaces args, command and tolerations as atomic lists', () => {
    const out = strategicMergePatch(ds(), { spec: { template: { spec: { tolerations: [{ key: 'x', operator: 'Equal', value: 'y' }], containers: [{ name: 'nmi', args: ['--operation-mode=managed'] }] } } } }, 'DaemonSet');
    expect(podSpec(out).tolerations).toEqual([{ key: 'x', operator: 'Equal', value: 'y' }]);
    expect(podSpec(out).containers[0].args).toEqual(['--operation-mode=managed']);
  });

  it('honours $patch: delete on list items and maps, and $patch: replace on lists', () => {
    const del = strategicMergePatch(ds(), { spec: { template: { spec: { volumes: [{ name: 'kubelet-config', $patch: 'delete' }] } } } }, 'DaemonSet');
    expect(podSpec(del).volumes.map((v: any) => v.name)).toEqual(['iptableslock']);
    const rep = strategicMergePatch(ds(), { spec: { template: { spec: { volumes: [{ $patch: 'replace' }, { name: 'only', emptyDir: {} }] } } } }, 'DaemonSet');
    expect(podSpec(rep).volumes).toEqual([{ name: 'only', emptyDir: {} }]);
    const mapDel = strategicMergePatch(ds(), { spec: { template: { metadata: { $patch: 'delete' } } } }, 'DaemonSet');
    expect(mapDel.spec.template.metadata).toBeUndefined();
  });

  it('merges finalizers as a set, supports $deleteFromPrimitiveList and $retainKeys, and null deletes', () => {
    const fin = strategicMergePatch(ds(), { metadata: { finalizers: ['b', 'a'] } }, 'DaemonSet');
    expect(fin.metadata.finalizers).toEqual(['a', 'b']);
    const removed = strategicMergePatch(fin, { metadata: { '$deleteFromPrimitiveList/finalizers': ['a'] } }, 'DaemonSet');
    expect(removed.metadata.finalizers).toEqual(['b']);
    const retained = strategicMergePatch(ds(), { spec: { updateStrategy: { $retainKeys: ['type'], type: 'OnDelete' } } }, 'DaemonSet');
    expect(retained.spec.updateStrategy).toEqual({ type: 'OnDelete' });
    const nulled = strategicMergePatch(ds(), { metadata: { finalizers: null } }, 'DaemonSet');
    expect(nulled.metadata.finalizers).toBeUndefined();
  });

  it('rejects a merge-keyed list item without its key', () => {
    expect(() => strategicMergePatch(ds(), { spec: { template: { spec: { containers: [{ image: 'x' }] } } } }, 'DaemonSet')).toThrow(/does not contain declared merge key: name/);
  });
});

describe('JSON merge patch (RFC 7386)', () => {
  it('merges objects, deletes with null and replaces lists', () => {
    expect(mergePatch({ a: 'b', c: { d: 'e', f: 'g' }, l: [1, 2] }, { a: 'z', c: { f: null }, l: [3] })).toEqual({ a: 'z', c: { d: 'e' }, l: [3] });
    expect(mergePatch({ a: 1 }, 'x')).toBe('x');
  });
});

describe('humanDuration', () => {
  it('prints ages the way kubectl shows them', () => {
    expect(humanDuration(5_000)).toBe('5s');
    expect(humanDuration(200_000)).toBe('3m20s');
    expect(humanDuration(45 * 60_000)).toBe('45m');
    expect(humanDuration((5 * 60 + 3) * 60_000)).toBe('5h3m');
    expect(humanDuration(51 * 3600_000)).toBe('2d3h');
    expect(humanDuration(40 * 86400_000)).toBe('40d');
  });
});
