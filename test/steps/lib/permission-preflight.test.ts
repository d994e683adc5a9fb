/**
 * The permission table and its preflight: README.md lists exactly the table's permissions, the
 * sandbox's `operator` user gets exactly them, and every denied one becomes a blocker naming
 * the verb, the resource, the namespace and the step.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kubePermissionBlockers, permissionBlockers, requiredPermissions, STEP_PERMISSIONS, type AccessReviewRequest } from '../../../src/steps/lib/permission-preflight.ts';
import { STEP_IDS } from '../../../src/engine/step.ts';
import { operatorRules } from '../../../src/sandbox/kube-api/users.ts';

const README = readFileSync(join(import.meta.dirname, '..', '..', '..', 'README.md'), 'utf8');

/** `group|resource` -> sorted verbs, from the README's "Kubernetes permissions" table. */
function readmeTable(): Map<string, string[]> {
  const section = README.slice(README.indexOf('### Kubernetes permissions'));
  const rows = new Map<string, string[]>();
  for (const line of section.split('\n')) {
    const m = /^\| `([^`]+)` \| `([^`]+)` \| ([^|]+) \|/.exec(line);
    if (m) rows.set(`${m[1] === 'core' ? '' : m[1]}|${m[2]}`, m[3].split(',').map((v) => v.trim()).sort());
    else if (rows.size > 0 && !line.startsWith('|')) break;
  }
  return rows;
}

function tableOf(perms: { group: string; resource: string; verb: string }[]): Map<string, string[]> {
  const out = new Map<string, Set<string>>();
  for (const p of perms) {
    const k = `${p.group}|${p.resource}`;
    if (!out.has(k)) out.set(k, new Set());
    out.get(k)!.add(p.verb);
  }
  return new Map([...out].map(([k, v]) => [k, [...v].sort()]));
}

describe('permission table', () => {
  it('covers every step id and nothing else', () => {
    expect(Object.keys(STEP_PERMISSIONS).sort()).toEqual([...STEP_IDS].sort());
  });

  it('is what README.md lists, resource by resource and verb by verb', () => {
    const readme = readmeTable();
    expect(readme.size).toBeGreaterThan(10);
    expect(Object.fromEntries([...readme].sort())).toEqual(Object.fromEntries([...tableOf(requiredPermissions())].sort()));
  });

  it('is exactly what the sandbox operator ClusterRole grants', () => {
    const granted = operatorRules().flatMap((r) => r.verbs!.map((verb) => ({ group: r.apiGroups![0], resource: r.resources![0], verb })));
    expect(Object.fromEntries([...tableOf(granted)].sort())).toEqual(Object.fromEntries([...tableOf(requiredPermissions())].sort()));
  });
});

describe('permissionBlockers', () => {
  it('names verb, resource, namespace and step for each denied permission, and asks each question once', async () => {
    const asked: AccessReviewRequest[] = [];
    const review = async (r: AccessReviewRequest) => {
      asked.push(r);
      const denied = (r.verb === 'patch' && r.resource === 'daemonsets') || (r.verb === 'create' && r.subresource === 'eviction');
      return { allowed: !denied };
    };
    const cache = new Map();
    const nmi = await permissionBlockers('nmi-managed', review, { nmi: 'kube-system', mic: 'kube-system' }, cache);
    expect(nmi.map((b) => b.subject)).toEqual(['patch daemonsets.apps namespace kube-system']);
    expect(nmi[0].code).toBe('kube-permission-missing');
    expect(nmi[0].message).toContain('step nmi-managed needs to patch daemonsets (API group apps) in namespace "kube-system"');
    expect(nmi[0].fix).toContain('kubectl auth can-i patch daemonsets.apps -n kube-system');
    const drain = await permissionBlockers('drain', review, {}, cache);
    expect(drain.map((b) => b.subject)).toEqual(['create pods/eviction (all namespaces)']);
    expect(drain[0].fix).toContain('kubectl auth can-i create pods --subresource=eviction --all-namespaces');
    // The reads both steps share were asked once.
    const keys = asked.map((r) => JSON.stringify(r));
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('does not block on a review the server would not answer, and skips gateways without accessReview', async () => {
    expect(await permissionBlockers('drain', async () => ({ allowed: false, unknown: true }))).toEqual([]);
    expect(await kubePermissionBlockers('drain', {})).toEqual([]);
    expect((await kubePermissionBlockers('drain', { accessReview: async () => ({ allowed: false }) })).length).toBe(new Set(STEP_PERMISSIONS.drain.map((p) => `${p.verb} ${p.resource}`)).size);
  });
});
