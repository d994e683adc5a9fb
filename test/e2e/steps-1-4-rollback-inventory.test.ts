/**
 * `rollback --all` right after `apply --to inventory` (default scenario, churn, real gateways):
 * the cluster and every scale set's identities are back to the starting state.
 */
import { expect, it } from 'vitest';
import { rollbackRoundTrip } from './steps-1-4-harness.ts';

it('rollback --all from after inventory restores the starting state', async () => {
  const differences = await rollbackRoundTrip('inventory', (before, after) => {
    // The copies of platform/shared-storage-id into batch exist until the rollback.
    expect(before['AzureIdentity/batch/shared-storage-id']).toBeUndefined();
    expect(after['AzureIdentity/batch/shared-storage-id']).toBeDefined();
    expect(after['AzureIdentityBinding/batch/shared-storage-id-binding']).toBeDefined();
  });
  expect(differences).toEqual([]);
}, 60_000);
