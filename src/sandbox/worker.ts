/**
 * Entry point of a sandbox in a worker thread (`podid-migrate demo`): the simulated cluster gets
 * an event loop of its own, as a real cluster runs apart from the tool driving it. In the same
 * thread, every stretch of the tool's own work (planning every step, rendering a report) held
 * back the sandbox's controllers while its clock ran on at the time scale, so MIC fell seconds
 * behind the pods it had to assign; no real MIC waits for the migration tool's CPU.
 *
 * `workerData`: `{ scenarioFile, timeScale?, churn, dir, readyTimeoutMs }`. Messages to the
 * parent: `{ type: 'ready', info }`, `{ type: 'failed', message, hint? }`, `{ type: 'outage',
 * id, report }`, `{ type: 'stopped' }`; from the parent: `{ type: 'outage', id }`, `{ type: 'stop' }`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadScenarioFile } from './scenario.ts';
import { Sandbox } from './sandbox.ts';

/** What the worker is started with. */
export interface SandboxWorkerData {
  scenarioFile: string;
  timeScale?: number;
  churn: boolean;
  /** Where the client files go. */
  dir: string;
  readyTimeoutMs: number;
}

/** What the parent learns once the sandbox is ready. */
export interface SandboxWorkerInfo {
  kubeconfig: string;
  armTokenFile: string;
  caFile: string;
  envFile: string;
  armUrl: string;
  kubeUrl: string;
  aksResourceId: string;
  subscriptionId: string;
  clusterName: string;
  scenarioName: string;
  timeScale: number;
}

const port = parentPort!;
const data = workerData as SandboxWorkerData;
let sandbox: Sandbox | undefined;
try {
  const scenario = loadScenarioFile(data.scenarioFile);
  sandbox = await Sandbox.start({ scenario, timeScale: data.timeScale, churn: data.churn });
  await sandbox.waitReady(data.readyTimeoutMs);
  const files = sandbox.writeClientFiles(data.dir);
  const info: SandboxWorkerInfo = {
    kubeconfig: files.kubeconfig,
    armTokenFile: files.armTokenFile,
    caFile: files.caFile,
    envFile: files.envFile,
    armUrl: sandbox.armUrl,
    kubeUrl: sandbox.kubeUrl,
    aksResourceId: sandbox.aksResourceId,
    subscriptionId: scenario.subscriptionId,
    clusterName: scenario.cluster.name,
    scenarioName: scenario.name,
    timeScale: sandbox.clock.timeScale,
  };
  port.postMessage({ type: 'ready', info });
} catch (e) {
  const err = e as Error & { hint?: string };
  await sandbox?.stop().catch(() => {});
  port.postMessage({ type: 'failed', message: err.message, ...(err.hint ? { hint: err.hint } : {}) });
  port.close();
}

port.on('message', (m: { type: string; id?: number }) => {
  if (m.type === 'outage' && sandbox) port.postMessage({ type: 'outage', id: m.id, report: sandbox.meter.report() });
  if (m.type === 'stop') {
    void (async () => {
      await sandbox?.stop().catch(() => {});
      port.postMessage({ type: 'stopped' });
      port.close();
    })();
  }
});
