/**
 * Entry point of a detached sandbox process (`podid-migrate sandbox up`).
 *
 * Arguments: `--dir D --scenario FILE [--time-scale X] [--no-churn]`. Progress is reported
 * through `D/sandbox.json` (`starting` -> `ready` | `failed`), which `sandbox up` polls; the
 * process runs until SIGTERM/SIGINT, then stops the sandbox and marks the state `stopped`.
 */
import { parseArgs } from 'node:util';
import { loadScenarioFile } from './scenario.ts';
import { Sandbox } from './sandbox.ts';
import { writeState } from './lifecycle.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    scenario: { type: 'string' },
    'time-scale': { type: 'string' },
    'no-churn': { type: 'boolean' },
    'ready-timeout': { type: 'string' },
  },
});
const dir = values.dir!;
const started = new Date().toISOString();
writeState(dir, { status: 'starting', pid: process.pid, startedAt: started });

let sandbox: Sandbox | undefined;
try {
  const scenario = loadScenarioFile(values.scenario!);
  sandbox = await Sandbox.start({
    scenario,
    timeScale: values['time-scale'] ? Number(values['time-scale']) : undefined,
    churn: !values['no-churn'],
  });
  const files = sandbox.writeClientFiles(dir);
  // While it settles, say what is not ready yet (in sandbox.json for `sandbox up`, and in the log).
  let lastMissing = '';
  const progress = setInterval(() => {
    const missing = sandbox!.notReadyReasons().slice(0, 20);
    writeState(dir, { status: 'starting', pid: process.pid, startedAt: started, notReady: missing });
    const text = missing.join('; ');
    if (text && text !== lastMissing) console.log(`not ready yet: ${text}`);
    lastMissing = text;
  }, 2000);
  try {
    await sandbox.waitReady(Number(values['ready-timeout'] ?? 120_000));
  } finally {
    clearInterval(progress);
  }
  writeState(dir, {
    status: 'ready',
    pid: process.pid,
    startedAt: started,
    readyAt: new Date().toISOString(),
    scenario: scenario.name,
    scenarioFile: scenario.source,
    timeScale: sandbox.clock.timeScale,
    kubeUrl: sandbox.kubeUrl,
    armUrl: sandbox.armUrl,
    aksResourceId: sandbox.aksResourceId,
    files,
  });
  console.log(`sandbox ready: kube ${sandbox.kubeUrl}, arm ${sandbox.armUrl}`);
} catch (e) {
  const err = e as Error & { problems?: string[]; hint?: string };
  writeState(dir, { status: 'failed', pid: process.pid, startedAt: started, error: err.message, hint: err.hint });
  console.error(err.stack ?? err.message);
  await sandbox?.stop();
  process.exit(1);
}

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`sandbox stopping (${signal})`);
  await sandbox?.stop();
  writeState(dir, { status: 'stopped', pid: process.pid, startedAt: started, stoppedAt: new Date().toISOString() });
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
// The sandbox's own timers are unref'd; this keeps the process alive until it is told to stop.
setInterval(() => {}, 1 << 30);
