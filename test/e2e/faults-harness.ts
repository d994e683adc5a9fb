/**
 * Shared harness of the fault matrix (`faults-*.test.ts`): the CLI (its `main()` in this process
 * with the production runtime, {@link runMain}; a child process through {@link runCli} where the
 * start-up is part of what is measured) against an in-process sandbox over HTTPS, with fault rules set through the
 * sandbox's control API (`POST /_sandbox/faults`, as an operator rehearsing would), and the
 * assertions every case shares: the exit code and message, a journal with no action left in
 * `intent`, no token in the output, and a plain `apply --yes` that succeeds once the fault is gone.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { FaultRule } from '../../src/sandbox/faults.ts';
import { controlRequest, type SandboxState } from '../../src/sandbox/lifecycle.ts';
import { runCli, runMain, startEnv, type Env } from './steps-1-4-harness.ts';
import { readJournalFile } from '../helpers/journal-file.ts';

export { runCli, runMain, startEnv, type Env };

/** One CLI run's outcome. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  all: string;
}

function state(env: Env): SandboxState {
  return {
    status: 'ready',
    pid: process.pid,
    startedAt: '',
    kubeUrl: env.sandbox.kubeUrl,
    files: { dir: join(env.dir, 'sandbox'), kubeconfig: env.kubeconfig, caFile: join(env.dir, 'sandbox', 'ca.crt'), armTokenFile: join(env.dir, 'sandbox', 'arm-token'), envFile: join(env.dir, 'sandbox', 'env') },
  };
}

/** Adds a fault rule through the control API; resolves to its id. */
export async function addFault(env: Env, rule: FaultRule): Promise<string> {
  const r = (await controlRequest(state(env), 'POST', '/_sandbox/faults', rule)) as { id: string };
  return r.id;
}

/** Removes a fault rule through the control API. */
export async function removeFault(env: Env, id: string): Promise<void> {
  await controlRequest(state(env), 'DELETE', `/_sandbox/faults/${encodeURIComponent(id)}`);
}

/** How many requests a rule acted on so far. */
export async function firedOf(env: Env, id: string): Promise<number> {
  const rules = (await controlRequest(state(env), 'GET', '/_sandbox/faults')) as { id: string; fired: number }[];
  return rules.find((r) => r.id === id)?.fired ?? 0;
}

interface JournalFile {
  steps: Record<string, { state: string; actions: { actionId: string; status: string }[] }>;
}

/** The journal as the CLI left it (undefined when none was written). */
export function readJournal(env: Env): JournalFile | undefined {
  try {
    return readJournalFile(env.journalPath) as unknown as JournalFile | undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** `step/actionId` of every action record still in `intent`: none may be left after a clean failure. */
export function pendingIntents(env: Env): string[] {
  const j = readJournal(env);
  if (!j) return [];
  return Object.entries(j.steps).flatMap(([id, s]) => s.actions.filter((a) => a.status === 'intent').map((a) => `${id}/${a.actionId}`));
}

/** States of the given steps in the journal. */
export function statesOf(env: Env, steps: readonly string[]): Record<string, string | undefined> {
  const j = readJournal(env);
  return Object.fromEntries(steps.map((s) => [s, j?.steps[s]?.state]));
}

/** What every failing run must show: the code, the message, no stack, no "unexpected", no token, no intent left. */
export function expectCleanFailure(env: Env, r: CliResult, code: number, message: RegExp): void {
  const context = `exit ${r.code}\n${r.all.slice(-4000)}`;
  expect(r.code, context).toBe(code);
  expect(r.stderr, context).toMatch(message);
  expect(r.stderr, context).not.toContain('This is unexpected');
  expect(r.stderr, context).not.toMatch(/\n\s+at .*\.ts:\d+/);
  expect(r.all).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
  expect(pendingIntents(env), context).toEqual([]);
}

/** A plain `apply --yes` (to `to`) once the fault is gone: exit 0, every step up to `to` checked. */
export async function expectResume(env: Env, to: string, steps: readonly string[]): Promise<CliResult> {
  // The fault matrix targets the in-place NMI rollout: its one DaemonSet PATCH and rolling update.
  const r = await runMain(env, ['apply', '--nmi-rollout', 'in-place', '--to', to, '--yes'], { timeoutMs: 150_000 });
  expect(r.code, r.all.slice(-4000)).toBe(0);
  const upTo = steps.slice(0, steps.indexOf(to) + 1);
  expect(statesOf(env, upTo)).toEqual(Object.fromEntries(upTo.map((s) => [s, 'checked'])));
  expect(pendingIntents(env)).toEqual([]);
  return r;
}

export const STEPS_1_4 = ['inventory', 'assign', 'nmi-managed', 'mic-scale'] as const;
