/**
 * `rollback --all` right after `apply --to assign` (default scenario, churn, real gateways):
 * the cluster and every scale set's identities are back to the starting state.
 */
import { expect, it } from 'vitest';
import { rollbackRoundTrip } from './steps-1-4-harness.ts';

it('rollback --all from after assign restores the starting state', async () => {
  const differences = await rollbackRoundTrip('assign', (before, after) => {
    // MIC carries the protected ids, and the pool reporting/exporter does not run on gained exporter-id, until the rollback.
    expect(JSON.stringify(after['Deployment/default/mic'])).toContain('--immutable-user-msis=');
    const grown = Object.keys(after).filter((k) => k.startsWith('vmss/') && JSON.stringify(after[k]) !== JSON.stringify(before[k]));
    expect(grown).toHaveLength(1);
    expect(after[grown[0]]).toContainEqual(expect.stringMatching(/exporter-id$/));
  });
  expect(differences).toEqual([]);
}, 60_000);
