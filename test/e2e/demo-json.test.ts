/**
 * `podid-migrate demo -o json` through the real entry point: stdout carries the report document
 * alone, and it validates against schemas/demo.schema.json. Runs the documented procedure (at a
 * high time scale) and the runbook with its defaults (procedure drain, at the scenario's 15x) on
 * fresh sandboxes.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { expectValidDocument } from '../helpers/schemas.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'podid-migrate');

async function demo(args: string[]) {
  const cwd = mkdtempSync(join(tmpdir(), 'podid-demo-json-'));
  return execa(process.execPath, [BIN, 'demo', '--dir', join(cwd, 'demo'), ...args], { cwd, env: { CI: 'true' }, reject: false, timeout: 200_000 });
}

interface Doc {
  kind: string;
  procedure: string;
  kept: boolean;
  steps: { id: string; state: string; armWrites: number; kubeCalls: number; checks: string[] }[];
  drain: { pools: { pool: string; node: string; seconds: number; evicted?: number }[] };
  podsEvicted: number;
  outage: { failingPodSeconds: number; windows: { cause: string }[]; byCause: Record<string, number> };
}

describe('podid-migrate demo -o json', () => {
  it('refuses an unknown procedure before starting anything', async () => {
    const bad = await demo(['--procedure', 'helm']);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/--procedure: "helm" is not a procedure[\s\S]*upstream, in-place, drain/);
    const pause = await demo(['--operator-pause', '60']);
    expect(pause.exitCode).not.toBe(0);
    expect(pause.stderr).toMatch(/--operator-pause applies to --procedure upstream only/);
    const observe = await demo(['--observe', '-3']);
    expect(observe.stderr).toMatch(/--observe: "-3" is not a number of seconds/);
  }, 30_000);

  it('documented procedure: a valid document with its four phases, ARM writes one per identity and scale set, and the outage it causes', async () => {
    const r = await demo(['--procedure', 'upstream', '-o', 'json', '--time-scale', '60', '--observe', '60']);
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
    const doc = JSON.parse(r.stdout) as Doc;
    expectValidDocument('demo', doc);
    expect(doc.kind).toBe('podid-migrate/demo');
    expect(doc.procedure).toBe('upstream');
    expect(doc).toMatchObject({ observeSeconds: 60, operatorPauseSeconds: 0 });
    expect(doc.steps.map((s) => [s.id, s.state])).toEqual([
      ['assign-identities', 'done'],
      ['delete-mic-nmi', 'done'],
      ['delete-assigned-identity-crd', 'done'],
      ['install-managed-nmi', 'done'],
    ]);
    // 8 identities on 5 scale sets; those MIC had already assigned need no PATCH.
    expect(doc.steps[0].armWrites).toBeGreaterThan(0);
    expect(doc.steps[0].armWrites).toBeLessThanOrEqual(40);
    expect(doc.drain.pools).toEqual([]);
    expect(doc.podsEvicted).toBe(0);
    // Between the NMI delete and the new NMI nothing intercepts IMDS; the binding left in another namespace stops working.
    expect(doc.outage.failingPodSeconds).toBeGreaterThan(0);
    expect(Object.keys(doc.outage.byCause).join('\n')).toMatch(/no-binding-in-namespace/);
    // Progress went to stderr.
    expect(r.stderr).toMatch(/az vmss identity assign -g MC_prod_prod-weu_westeurope -n aks-pay-12345678-vmss --identities api-id/);
  }, 210_000);

  it('runbook, default procedure drain: a valid document with every step, per-pool drain timing from the journal, the evictions, and no failing pod-second', async () => {
    // The scenario's own time scale: at 40x a loaded machine's scheduling delays alone add
    // seconds of simulated MIC latency to the pods that start before the cutover.
    const r = await demo(['-o', 'json']);
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
    const doc = JSON.parse(r.stdout) as Doc;
    expectValidDocument('demo', doc);
    expect(doc.kind).toBe('podid-migrate/demo');
    expect(doc.procedure).toBe('drain');
    // No service pod is on a node while its NMI restarts, and every pod evicted or created during
    // the rollout starts on a node already in managed mode: not one failing pod-second, churn on.
    expect(doc.outage.failingPodSeconds, JSON.stringify(doc.outage.windows.slice(0, 5))).toBe(0);
    expect(doc.steps.map((s) => s.id)).toEqual(['inventory', 'assign', 'nmi-managed', 'mic-scale', 'drain', 'test', 'cleanup']);
    expect(doc.steps.every((s) => s.state === 'checked')).toBe(true);
    expect(doc.steps.every((s) => s.checks.length > 0)).toBe(true);
    expect(doc.kept).toBe(false);
    expect(doc.drain.pools.map((p) => p.pool)).toEqual(['batch', 'pay', 'platform', 'reports', 'system']);
    for (const p of doc.drain.pools) {
      expect(p.node).toMatch(new RegExp(`^aks-${p.pool}-12345678-vmss`));
      expect(p.seconds).toBeGreaterThan(0);
    }
    const drainStep = doc.steps.find((s) => s.id === 'drain')!;
    // The drain step's evictions, plus the NMI rollout's (one per pod on every node).
    expect(doc.podsEvicted).toBeGreaterThan(doc.drain.pools.reduce((a, p) => a + (p.evicted ?? 0), 0));
    expect(drainStep.kubeCalls).toBeGreaterThan(0);
    // The plan table went to stderr with the progress: stdout is the document alone.
    expect(r.stderr).toMatch(/Step 5 drain/);
  }, 210_000);
});
