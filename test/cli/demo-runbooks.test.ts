/** `demo --runbook workload-identity` options: where it starts from, the uninstall flag, and what they refuse. */
import { describe, expect, it } from 'vitest';
import { demoDocument, parseRunbooks, type DemoReport } from '../../src/cli/actions/demo.ts';

describe('demo runbook options', () => {
  it('defaults to the managed-mode runbook first, and accepts standard as the start', () => {
    expect(parseRunbooks('workload-identity', {})).toEqual({ runbook: 'workload-identity', from: 'managed', uninstallPodIdentity: false });
    expect(parseRunbooks('workload-identity', { from: 'standard', uninstallPodIdentity: true })).toEqual({ runbook: 'workload-identity', from: 'standard', uninstallPodIdentity: true });
    expect(parseRunbooks('managed-mode', {})).toEqual({ runbook: 'managed-mode', uninstallPodIdentity: false });
  });

  it('refuses the workload identity options without that runbook, an unknown start, and the documented procedure with it', () => {
    expect(() => parseRunbooks('managed-mode', { from: 'standard' })).toThrow(/--from and --uninstall-pod-identity apply to --runbook workload-identity only/);
    expect(() => parseRunbooks('managed-mode', { uninstallPodIdentity: true })).toThrow(/apply to --runbook workload-identity only/);
    expect(() => parseRunbooks('workload-identity', { from: 'helm' })).toThrow(/--from: "helm" is not a starting mode/);
    expect(() => parseRunbooks('workload-identity', { procedure: 'upstream' })).toThrow(/--procedure upstream replays the documented managed-mode procedure/);
  });

  it('names the runbook and its start in the document only when the demo went on to workload identity', () => {
    const base = { procedure: 'in-place', scenario: 'default', timeScale: 15, pacing: { observeSeconds: 0, operatorPauseSeconds: 0 }, steps: [], totalMs: 1000, outage: { since: '', samples: 0, failingPodSeconds: 0, pods: [], windows: [], byCause: {} }, drainPools: [], podsEvicted: 0, dir: '/d', kept: false } as DemoReport;
    expect(demoDocument({ ...base, runbooks: { runbook: 'managed-mode', uninstallPodIdentity: false } })).not.toHaveProperty('runbook');
    expect(demoDocument({ ...base, runbooks: { runbook: 'workload-identity', from: 'standard', uninstallPodIdentity: true } })).toMatchObject({ runbook: 'workload-identity', from: 'standard', uninstallPodIdentity: true });
  });
});
