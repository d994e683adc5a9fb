/**
 * The outage meter on the workload identity path: pods labelled `azure.workload.identity/use`
 * are judged by whether their exchange would succeed now, with a cause when not.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startSandbox, until, type SandboxHarness } from '../../helpers/sandbox.ts';
import { WI_SCENARIO } from './helpers.ts';

let h: SandboxHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function runningPod(h: SandboxHarness, name: string, serviceAccountName: string): Promise<void> {
  await h.core.createNamespacedPod({
    namespace: 'apps',
    body: { metadata: { name, labels: { 'azure.workload.identity/use': 'true', app: name } }, spec: { serviceAccountName, containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }] } },
  });
  await until(`pod ${name} running`, async () => (await h.core.readNamespacedPod({ name, namespace: 'apps' })).status?.phase === 'Running', 30_000);
}

function verdict(h: SandboxHarness, name: string) {
  const pod = h.sb.store.peek(h.sb.store.typeOrThrow('', 'pods'), 'apps', name)!;
  return h.sb.meter.evaluate(pod);
}

describe('outage meter: workload identity pods', () => {
  it('names why a pod would fail: webhook not applied, no client id, no credential, propagating; then counts it as working', async () => {
    h = await startSandbox({ scenario: WI_SCENARIO('workloadIdentity: { oidcIssuerEnabled: true, enableSeconds: 10, propagationSeconds: 60, credentialWriteSeconds: 1 }\n'), timeScale: 20, churn: false });
    const app = h.sb.arm.identity('app-id')!;
    await h.core.createNamespacedServiceAccount({ namespace: 'apps', body: { metadata: { name: 'app', annotations: { 'azure.workload.identity/client-id': app.clientId } } } });
    await h.core.createNamespacedServiceAccount({ namespace: 'apps', body: { metadata: { name: 'noid' } } });

    // Labelled before the webhook exists: never mutated.
    await runningPod(h, 'early', 'app');
    expect(verdict(h, 'early')).toEqual({ ok: false, cause: 'wi-webhook-not-applied' });

    const mc = await h.arm.aks.managedClusters.get('rg', 'wi');
    await h.arm.aks.managedClusters.createOrUpdate('rg', 'wi', { ...mc, securityProfile: { workloadIdentity: { enabled: true } } }, { updateIntervalInMs: 50 }).pollUntilDone();
    await runningPod(h, 'noid', 'noid');
    await runningPod(h, 'app', 'app');
    expect(verdict(h, 'noid')).toEqual({ ok: false, cause: 'wi-missing-client-id' });
    expect(verdict(h, 'app')).toEqual({ ok: false, cause: 'wi-no-federated-credential' });

    h.sb.meter.reset();
    await h.arm.msi.federatedIdentityCredentials.createOrUpdate('ids', 'app-id', 'apps-app', { issuer: h.sb.workloadIdentity!.state.issuerUrl!, subject: 'system:serviceaccount:apps:app', audiences: ['api://AzureADTokenExchange'] });
    expect(verdict(h, 'app')).toEqual({ ok: false, cause: 'wi-credential-propagating' });
    await until('the credential to propagate', () => verdict(h!, 'app').ok === true, 30_000);
    await until('the meter to close the propagation window', () => h!.sb.meter.report().windows.some((w) => w.pod === 'apps/app' && w.cause === 'wi-credential-propagating' && w.end !== null), 10_000);
    const report = h.sb.meter.report();
    // The sample taken between the reset and the write may still see no credential.
    const causes = Object.keys(report.byCause).filter((c) => c !== 'wi-no-federated-credential').sort();
    expect(causes, JSON.stringify(report.windows)).toEqual(['wi-credential-propagating', 'wi-missing-client-id', 'wi-webhook-not-applied']);
    const propagating = report.windows.find((w) => w.pod === 'apps/app' && w.cause === 'wi-credential-propagating')!;
    expect(propagating.end).not.toBeNull();
    // 60 simulated seconds of propagation (the sampler may skip a tick when the machine is busy).
    const span = (Date.parse(propagating.end!) - Date.parse(propagating.start)) / 1000;
    expect(span, JSON.stringify(propagating)).toBeGreaterThanOrEqual(58);
    expect(span, JSON.stringify(propagating)).toBeLessThanOrEqual(63);
  });

  it('a Deployment rolled onto workload identity (credential propagated, pods keep aadpodidbinding) fails no pod-second', async () => {
    h = await startSandbox({
      scenario: WI_SCENARIO('workloadIdentity:\n  oidcIssuerEnabled: true\n  enabled: true\n  federatedCredentials: [{ identity: app-id, name: apps-app, namespace: apps, serviceAccount: app }]\n'),
      timeScale: 20,
      churn: false,
    });
    const app = h.sb.arm.identity('app-id')!;
    await h.core.createNamespacedServiceAccount({ namespace: 'apps', body: { metadata: { name: 'app', annotations: { 'azure.workload.identity/client-id': app.clientId } } } });
    h.sb.meter.reset();
    await h.kubectl(['patch', 'deployment', 'app', '-n', 'apps', '--type', 'strategic', '-p', JSON.stringify({ spec: { template: { metadata: { labels: { 'azure.workload.identity/use': 'true' } }, spec: { serviceAccountName: 'app' } } } })]);
    await h.kubectl(['rollout', 'status', 'deployment/app', '-n', 'apps', '--timeout=60s'], { timeoutMs: 70_000 });
    const pods = (await h.core.listNamespacedPod({ namespace: 'apps', labelSelector: 'azure.workload.identity/use=true' })).items.filter((p) => !p.metadata!.deletionTimestamp);
    expect(pods.length).toBeGreaterThanOrEqual(1);
    const env = Object.fromEntries((pods[0].spec!.containers[0].env ?? []).map((e) => [e.name, e.value]));
    expect(env.AZURE_CLIENT_ID).toBe(app.clientId);
    expect(pods[0].metadata!.labels!.aadpodidbinding).toBe('app');
    expect(verdict(h, pods[0].metadata!.name!)).toEqual({ ok: true });
    await h.sb.clock.sleep(5_000);
    expect(h.sb.meter.report().failingPodSeconds, JSON.stringify(h.sb.meter.report().windows)).toBe(0);
  });
});

describe('outage meter: which path a labelled pod is on', () => {
  it('keeps the Pod Identity verdict for a labelled pod with a binding but no client id (the SDK falls back to IMDS)', async () => {
    h = await startSandbox({ scenario: WI_SCENARIO('workloadIdentity: { oidcIssuerEnabled: true, enabled: true }\n'), timeScale: 20, churn: false });
    await h.core.createNamespacedServiceAccount({ namespace: 'apps', body: { metadata: { name: 'noid' } } });
    await h.kubectl(['patch', 'deployment', 'app', '-n', 'apps', '--type', 'strategic', '-p', JSON.stringify({ spec: { template: { metadata: { labels: { 'azure.workload.identity/use': 'true' } }, spec: { serviceAccountName: 'noid' } } } })]);
    await h.kubectl(['rollout', 'status', 'deployment/app', '-n', 'apps', '--timeout=60s'], { timeoutMs: 70_000 });
    const pod = (await h.core.listNamespacedPod({ namespace: 'apps', labelSelector: 'azure.workload.identity/use=true' })).items.find((p) => !p.metadata!.deletionTimestamp)!;
    expect((pod.spec!.containers[0].env ?? []).map((e) => e.name)).not.toContain('AZURE_CLIENT_ID');
    await until('MIC to assign the new pod', () => h!.sb.notReadyReasons().length === 0, 30_000);
    expect(verdict(h, pod.metadata!.name!)).toEqual({ ok: true });
  });
});
