/** The scenario's `workloadIdentity` section: defaults, and every bad field named at once. */
import { describe, expect, it } from 'vitest';
import { parseScenario, ScenarioError } from '../../../src/sandbox/scenario.ts';
import { WI_SCENARIO } from './helpers.ts';

function problems(text: string): string[] {
  try {
    parseScenario(text, 'wi.yaml');
  } catch (e) {
    if (e instanceof ScenarioError) return e.problems;
    throw e;
  }
  return [];
}

describe('scenario: workloadIdentity', () => {
  it('defaults to both switches off, 60 s propagation, 90 s enable, 2 s per credential write', () => {
    expect(parseScenario(WI_SCENARIO(), 'wi.yaml').workloadIdentity).toEqual({ oidcIssuerEnabled: false, enabled: false, propagationSeconds: 60, enableSeconds: 90, credentialWriteSeconds: 2, federatedCredentials: [] });
  });

  it('reads pre-existing credentials and adds their namespaces', () => {
    const s = parseScenario(WI_SCENARIO('workloadIdentity:\n  oidcIssuerEnabled: true\n  federatedCredentials: [{ identity: app-id, name: batch-job, namespace: batch, serviceAccount: runner }]\n'), 'wi.yaml');
    expect(s.workloadIdentity.federatedCredentials).toEqual([{ identity: 'app-id', name: 'batch-job', namespace: 'batch', serviceAccount: 'runner', issuer: undefined, audience: 'api://AzureADTokenExchange' }]);
    expect(s.namespaces).toContain('batch');
  });

  it('names workload identity without the issuer, unknown identities, duplicates and more than 20 per identity', () => {
    const many = Array.from({ length: 21 }, (_, i) => `    - { identity: other-id, name: fic-${i}, namespace: apps, serviceAccount: sa-${i} }`).join('\n');
    const p = problems(WI_SCENARIO(`workloadIdentity:\n  enabled: true\n  federatedCredentials:\n    - { identity: nope, name: fic-a, namespace: apps, serviceAccount: a }\n    - { identity: app-id, name: fic-b, namespace: apps, serviceAccount: b }\n    - { identity: app-id, name: fic-c, namespace: apps, serviceAccount: b }\n${many}\n`));
    expect(p).toContain('workloadIdentity.enabled: workload identity needs the OIDC issuer; set workloadIdentity.oidcIssuerEnabled: true');
    expect(p).toContain('workloadIdentity.federatedCredentials[0].identity: no identity named "nope" is declared under identities');
    expect(p).toContain('workloadIdentity.federatedCredentials[2]: identity "app-id" already has a credential for issuer and subject system:serviceaccount:apps:b');
    expect(p).toContain('workloadIdentity.federatedCredentials[23]: identity "other-id" would have more than 20 federated identity credentials (Azure\'s limit)');
    expect(problems(WI_SCENARIO('workloadIdentity: { propagationSeconds: -1, bogus: 1 }\n')).join('\n')).toMatch(/propagationSeconds[\s\S]*bogus|bogus[\s\S]*propagationSeconds/);
  });
});
