/**
 * JUnit XML for the `test` step's results (`apply --junit FILE`), in the shape CI systems read
 * (Jenkins, GitLab, Azure Pipelines, GitHub test reporters): one `<testsuite>` per node pool,
 * one `<testcase>` per test case, `<failure>` with the reason. Only messages and claims checks
 * go in: never a token (every text is scrubbed of JWT-shaped strings once more).
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../../engine/atomic-file.ts';
import { scrubTokens } from './probe.ts';

/** One test case's outcome, as the `test` step records it in the journal. */
export interface TestResult {
  /** Stable id: `<namespace>/<service>/<pool>/<n>-<kind>`. */
  id: string;
  kind: 'nmi-health' | 'token' | 'http' | 'command';
  /** The operator's name for the case, if any. */
  name?: string;
  /** `<namespace>/<name>` of the service. */
  service: string;
  namespace: string;
  pool: string;
  node: string;
  /** AzureIdentity `<namespace>/<name>`. */
  identity: string;
  ok: boolean;
  /** What was proven, or why it failed (no token, ever). */
  message: string;
  attempts: number;
  durationMs: number;
  /** Captured (scrubbed, truncated) output of a `command` case. */
  output?: string;
}

/** XML 1.0 text: escapes markup and drops characters XML cannot carry. */
export function xmlEscape(text: string): string {
  return text
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function seconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(3);
}

/** Renders results as a JUnit XML document (deterministic order: pool, then case id). */
export function renderJunit(results: readonly TestResult[], opts: { suiteName?: string; timestamp?: string } = {}): string {
  const byPool = new Map<string, TestResult[]>();
  for (const r of [...results].sort((a, b) => a.pool.localeCompare(b.pool) || a.id.localeCompare(b.id))) {
    (byPool.get(r.pool) ?? byPool.set(r.pool, []).get(r.pool)!).push(r);
  }
  const suiteName = opts.suiteName ?? 'podid-migrate test';
  const total = results.length;
  const failures = results.filter((r) => !r.ok).length;
  const time = results.reduce((n, r) => n + r.durationMs, 0);
  const lines: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  lines.push(`<testsuites name="${xmlEscape(suiteName)}" tests="${total}" failures="${failures}" errors="0" time="${seconds(time)}">`);
  for (const [pool, cases] of byPool) {
    const f = cases.filter((r) => !r.ok).length;
    const t = cases.reduce((n, r) => n + r.durationMs, 0);
    const ts = opts.timestamp ? ` timestamp="${xmlEscape(opts.timestamp)}"` : '';
    lines.push(`  <testsuite name="${xmlEscape(`${suiteName} / pool ${pool}`)}" tests="${cases.length}" failures="${f}" errors="0" skipped="0" time="${seconds(t)}"${ts} hostname="${xmlEscape(cases[0].node)}">`);
    for (const r of cases) {
      const title = `${r.kind}${r.name ? ` ${r.name}` : ''} on ${r.node}`;
      lines.push(`    <testcase classname="${xmlEscape(`${r.namespace}.${r.service.split('/').pop()}`)}" name="${xmlEscape(title)}" time="${seconds(r.durationMs)}">`);
      lines.push(`      <properties>`);
      for (const [k, v] of [['service', r.service], ['pool', r.pool], ['node', r.node], ['identity', r.identity], ['attempts', String(r.attempts)]] as const) {
        lines.push(`        <property name="${k}" value="${xmlEscape(scrubTokens(v))}"/>`);
      }
      lines.push(`      </properties>`);
      if (!r.ok) {
        const msg = scrubTokens(r.message);
        lines.push(`      <failure message="${xmlEscape(msg.split('\n')[0].slice(0, 500))}" type="${xmlEscape(r.kind)}">${xmlEscape(`service ${r.service}, pool ${r.pool}, node ${r.node}, identity ${r.identity}: ${msg}`)}</failure>`);
      }
      const out = [r.ok ? scrubTokens(r.message) : '', r.output ? scrubTokens(r.output) : ''].filter(Boolean).join('\n');
      if (out) lines.push(`      <system-out>${xmlEscape(out)}</system-out>`);
      lines.push(`    </testcase>`);
    }
    lines.push(`  </testsuite>`);
  }
  lines.push(`</testsuites>`);
  return lines.join('\n') + '\n';
}

/** Writes the report atomically (a CI job never reads half a file), creating the directory. */
export async function writeJunit(path: string, results: readonly TestResult[], opts: { suiteName?: string; timestamp?: string } = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, renderJunit(results, opts), { mode: 0o644 });
}
