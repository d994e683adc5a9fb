import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadScenarioFile, SCENARIOS_DIR } from '../../src/sandbox/scenario.ts';

describe('scenarios/large.yaml', () => {
  it('validates and has the benchmark shape: 20 pools, 200 nodes, about 2,000 service pods, the default scenario\'s traps', () => {
    const s = loadScenarioFile(join(SCENARIOS_DIR, 'large.yaml'));
    expect(s.name).toBe('large');
    expect(s.pools).toHaveLength(20);
    expect(s.pools.reduce((a, p) => a + p.count, 0)).toBe(200);
    expect(s.pools.filter((p) => p.mode === 'System').map((p) => p.preassigned)).toEqual([['omsagent-prod-large']]);
    const servicePods = s.workloads.reduce((a, w) => a + w.replicas, 0);
    // Plus one NMI per node and MIC: about 2,200 pods.
    expect(servicePods + 200 + s.podIdentity.micReplicas).toBeGreaterThan(2100);
    expect(servicePods + 200 + s.podIdentity.micReplicas).toBeLessThan(2300);
    expect(s.identities).toHaveLength(40);
    // Like default.yaml: a binding used from another namespace, a workload on two pools, budgets, churn.
    const byBinding = new Map(s.identities.map((i) => [i.selector, i.namespace]));
    expect(s.workloads.some((w) => w.binding && byBinding.get(w.binding) !== w.namespace)).toBe(true);
    expect(s.workloads.some((w) => w.pools.length > 1)).toBe(true);
    expect(s.workloads.filter((w) => w.pdb).length).toBeGreaterThan(0);
    expect(s.churn.length).toBeGreaterThan(0);
  });
});
