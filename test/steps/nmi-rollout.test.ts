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
