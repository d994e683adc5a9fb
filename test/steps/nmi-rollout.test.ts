import { describe, expect, it } from 'vitest';
import { estimateRollout, parseMaxUnavailable, parseNmiRollout, resolveMaxUnavailable, rolloutNotes, rolloutWaves, type NmiNode } from '../../src/steps/lib/nmi-rollout.ts';

function node(pool: string, i: number, stablePods = 2, servicePods = 1): NmiNode {
  return { name: `${pool}-${i}`, pool, cordoned: false, nmiArgs: [], stablePods, servicePods, unreplicated: [] };
}

describe('NMI rollout settings and estimates', () => {
  it('validates --nmi-rollout and --nmi-max-unavailable, naming the flag', () => {
    expect(parseNmiRollout('drain')).toBe('drain');
    expect(() => parseNmiRollout('surge')).toThrow(/--nmi-rollout: "surge"/);
    expect(parseMaxUnavailable('3')).toBe(3);
    expect(parseMaxUnavailable('25%')).toBe('25%');
    expect(() => parseMaxUnavailable('0')).toThrow(/--nmi-max-unavailable/);
    expect(() => parseMaxUnavailable('150%')).toThrow(/--nmi-max-unavailable/);
  });

  it('resolves a percentage like the DaemonSet controller (rounded up, at least 1)', () => {
    expect(resolveMaxUnavailable('25%', 10)).toBe(3);
    expect(resolveMaxUnavailable('1%', 10)).toBe(1);
    expect(resolveMaxUnavailable(2, 10)).toBe(2);
  });

  it('waves take maxUnavailable nodes of every pool at a time', () => {
    const byPool = new Map([
      ['a', [node('a', 0), node('a', 1), node('a', 2)]],
      ['b', [node('b', 0)]],
    ]);
    expect(rolloutWaves(byPool, 1).map((w) => w.map((n) => n.name))).toEqual([['a-0', 'b-0'], ['a-1'], ['a-2']]);
    expect(rolloutWaves(byPool, 2).map((w) => w.map((n) => n.name))).toEqual([['a-0', 'a-1', 'b-0'], ['a-2']]);
    expect(rolloutWaves(byPool, 1, new Set(['a-2', 'b-0'])).map((w) => w.map((n) => n.name))).toEqual([['a-2', 'b-0']]);
  });

  it('puts the nodes that run MIC last in their pool, so MIC keeps assigning while pods still start in standard mode', () => {
    const byPool = new Map([['a', [{ ...node('a', 0), micPods: 1 }, node('a', 1), node('a', 2)]], ['b', [node('b', 0), { ...node('b', 1), micPods: 1 }]]]);
    expect(rolloutWaves(byPool, 1).map((w) => w.map((n) => n.name))).toEqual([['a-1', 'b-0'], ['a-2', 'b-1'], ['a-0']]);
  });

  it('estimates a drain wave as the longer of its cluster waits and its requests at the client rate limit', () => {
    // The default scenario's shape at its 15x: 5 pools, 13 nodes, 2 pods to evict on each.
    const pools = [['system', 3], ['pay', 3], ['batch', 3], ['reports', 2], ['platform', 2]] as const;
    const small = new Map(pools.map(([p, n]) => [p, Array.from({ length: n }, (_, i) => node(p, i))]));
    const waves = rolloutWaves(small, 1);
    const sandbox = estimateRollout('drain', waves, 1, { clusterTimeScale: 15 });
    // 3 waves; each is request-bound at 15x (the cluster's 22 s pass in 1.5 s).
    expect(sandbox.requestBound).toBe(true);
    // The first wave's 10 pods are evicted twice (they move to their pools' later nodes first).
    expect(sandbox.durationMs).toBeCloseTo((((26 + 10) * 3.3 + 13 * 14) / 20) * 1000, -2);
    // On a real cluster the same waves wait for NMI's restart: 22 s each at least.
    expect(estimateRollout('drain', waves, 1).durationMs).toBe(3 * 22_000);
    // 20 pools x 10 nodes with 11 pods each: 10 waves of 20 nodes, each ~(20 x (11 x 3.3 + 14)) / 20 s, and the first wave's 220 pods once more.
    const large = new Map(Array.from({ length: 20 }, (_, p) => [`p${p}`, Array.from({ length: 10 }, (_, i) => node(`p${p}`, i, 11, 10))]));
    const big = estimateRollout('drain', rolloutWaves(large, 1), 1, { clusterTimeScale: 20 });
    expect(Math.round(big.durationMs / 1000)).toBe(Math.round(10 * ((20 * (11 * 3.3 + 14)) / 20) + (220 * 3.3) / 20));
    // Beyond --step-timeout: the warning names a fix that works (more nodes at once would not).
    const notes = rolloutNotes('drain', 1, big, 5 * 60_000);
    expect(notes.at(-1)).toMatch(/^warning: the estimated 8m\d+s exceeds --step-timeout 5m0s; raise --step-timeout \(e\.g\. --step-timeout 14m\) or use --nmi-rollout in-place/);
  });

  it('states the trade-off and warns when the estimate exceeds the step timeout', () => {
    const nodes = Array.from({ length: 200 }, (_, i) => node(`p${i % 20}`, i));
    const inPlace = estimateRollout('in-place', [nodes], 1);
    expect(inPlace.gapPodSeconds).toBe(200 * 12);
    expect(inPlace.durationMs).toBe(200 * 16_000);
    const notes = rolloutNotes('in-place', 1, inPlace, 30 * 60_000);
    expect(notes[0]).toMatch(/~2400 pod-seconds of NMI gap for 200 service pods on 200 nodes \(--nmi-rollout drain: 0, for 400 evictions\)/);
    expect(notes.at(-1)).toMatch(/^warning: .* exceeds --step-timeout 30m/);
    const faster = estimateRollout('in-place', [nodes], '10%');
    expect(rolloutNotes('in-place', '10%', faster, 30 * 60_000).some((n) => n.startsWith('warning'))).toBe(false);
  });
});
