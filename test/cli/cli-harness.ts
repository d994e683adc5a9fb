/** Runs `main()` with captured streams and a fake runtime over {@link fakeSteps}. */
import { main } from '../../src/cli/main.ts';
import type { RuntimeFactory } from '../../src/cli/context.ts';
import type { CliDeps } from '../../src/cli/io.ts';
import { CLUSTER, fakeExecutors, fakeSteps, type FakeCluster } from '../engine/fake-steps.ts';
import { stepIdsOf } from '../../src/engine/step.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  connects: number;
}

export async function runCli(args: string[], options: { cluster: FakeCluster; cwd: string; env?: Record<string, string>; interactive?: boolean; confirm?: (q: string) => Promise<boolean> }): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  let connects = 0;
  const createRuntime: RuntimeFactory = async (globals) => {
    connects += 1;
    // The fake steps of the runbook the command runs, as the production factory picks its registry.
    return { steps: fakeSteps(options.cluster, stepIdsOf(globals.runbook)), executors: fakeExecutors(options.cluster), kube: options.cluster, azure: null, cluster: CLUSTER, close: async () => {} };
  };
  const deps: Partial<CliDeps> = {
    stdout: { write: (s: string) => ((stdout += s), true), isTTY: false },
    stderr: { write: (s: string) => ((stderr += s), true), isTTY: false },
    env: { CI: 'true', ...options.env },
    interactive: options.interactive ?? false,
    cwd: options.cwd,
    createRuntime,
    confirm: options.confirm ?? (async () => false),
    onInterrupt: () => () => {},
  };
  const code = await main(['node', 'podid-migrate', ...args], deps);
  return { code, stdout, stderr, connects };
}
