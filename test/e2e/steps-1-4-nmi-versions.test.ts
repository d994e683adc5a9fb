/**
 * The `--host-ip` rule on real NMI versions: the sandbox installs the upstream standard-mode
 * manifest of v1.6.0 (which passes `--host-ip`) or v1.6.3 (which does not, and whose NMI exits
 * when given it); after `apply --to mic-scale` the v1.6.0 args equal the upstream v1.6.0
 * managed manifest's, the v1.6.3 args carry no `--host-ip`, and in both the sandbox's NMI runs
 * in managed mode with its chain in place (`Active`) on every node, which proves the args are
 * acceptable to that NMI version.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nmiRegistry } from '../../src/sandbox/podidentity/common.ts';
import { nmiProbePort } from '../../src/steps/03-nmi-managed.ts';
import { healthBodies, podSelectorOf } from '../../src/steps/lib/pod-identity.ts';
import { SCENARIO, startEnv, upstreamManagedArgs, type Env } from './steps-1-4-harness.ts';

const MANIFESTS = join(import.meta.dirname, '..', '..', 'src', 'sandbox', 'manifests');
const DS = { apiVersion: 'apps/v1', kind: 'DaemonSet' };

function scenarioWithVersion(version: string): string {
  const text = readFileSync(SCENARIO, 'utf8');
  expect(text).toContain('version: v1.8.17');
  return text.replace('version: v1.8.17', `version: ${version}`);
}

async function nmiArgs(env: Env): Promise<string[]> {
  const ds = (await env.kube.get(DS, 'default', 'nmi'))!;
  return (ds.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0].args;
}

/** Every node's NMI, as the sandbox runs it: managed mode, chain in place, not terminating; and its /healthz body through the API server. */
async function expectManagedActiveEverywhere(env: Env): Promise<void> {
  const nodes = (await env.kube.list({ apiVersion: 'v1', kind: 'Node' })).map((n) => n.metadata!.name!).sort();
  const registry = nmiRegistry(env.sandbox.network);
  expect(nodes.map((n) => [n, registry.get(n)?.mode, registry.get(n)?.chainActive, registry.get(n)?.terminating])).toEqual(nodes.map((n) => [n, 'managed', true, false]));
  const ds = (await env.kube.get(DS, 'default', 'nmi'))!;
  const pods = await env.kube.list({ apiVersion: 'v1', kind: 'Pod' }, { namespace: 'default', labelSelector: podSelectorOf(ds) });
  const bodies = await healthBodies(env.kube, pods, nmiProbePort(await nmiArgs(env)));
  expect(bodies.length).toBe(nodes.length);
  expect(bodies.filter((b) => b.body !== 'Active')).toEqual([]);
}

describe('NMI managed-mode args per version', () => {
  let env: Env | undefined;
  afterEach(async () => {
    await env?.stop();
    env = undefined;
  });

  it('v1.6.0 keeps --host-ip (NMI < 1.6.2) and ends with the upstream v1.6.0 managed args', async () => {
    env = await startEnv({ timeScale: 100, churn: false, scenarioText: scenarioWithVersion('v1.6.0') });
    expect(await nmiArgs(env)).toContain('--host-ip=$(HOST_IP)');
    await env.runner({ nmiRollout: 'in-place' }).apply({ to: 'mic-scale' });
    const args = await nmiArgs(env);
    expect(args).toEqual(upstreamManagedArgs(join(MANIFESTS, 'managed-v1.6.0.yaml')));
    expect(args).toContain('--host-ip=$(HOST_IP)');
    await expectManagedActiveEverywhere(env);
  }, 60_000);

  it('v1.6.3 gets no --host-ip and runs Active in managed mode on every node', async () => {
    env = await startEnv({ timeScale: 100, churn: false, scenarioText: scenarioWithVersion('v1.6.3') });
    const before = await nmiArgs(env);
    await env.runner({ nmiRollout: 'in-place' }).apply({ to: 'mic-scale' });
    const args = await nmiArgs(env);
    expect(args.filter((a) => a.startsWith('--host-ip'))).toEqual([]);
    // Everything the operator had is kept, in place, with the two managed-mode flags after --node.
    expect(args).toEqual(['--node=$(NODE_NAME)', '--operation-mode=managed', '--forceNamespaced', ...before.slice(1)]);
    await expectManagedActiveEverywhere(env);
  }, 60_000);
});
