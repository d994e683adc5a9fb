/**
 * `rollback --all` right after `apply --to nmi-managed` (default scenario, churn, real gateways):
 * the cluster and every scale set's identities are back to the starting state.
 */
import { expect, it } from 'vitest';
import { rollbackRoundTrip } from './steps-1-4-harness.ts';

it('rollback --all from after nmi-managed restores the starting state', async () => {
  const differences = await rollbackRoundTrip('nmi-managed', (before, after) => {
    // NMI runs managed mode until the rollback.
    expect(JSON.stringify(before['DaemonSet/default/nmi'])).not.toContain('--operation-mode=managed');
    expect(JSON.stringify(after['DaemonSet/default/nmi'])).toContain('--operation-mode=managed');
  });
  expect(differences).toEqual([]);
}, 60_000);
