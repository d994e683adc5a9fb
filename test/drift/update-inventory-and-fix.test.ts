/**
 * `--update-inventory` keeps the operator's edits (comments, order, test cases) and only adds;
 * the fix executors add identities as a delta and their undo removes only what they added,
 * journalled under the journal's `drift-fix` extension (the steps' records untouched). Over the
 * in-memory gateway fakes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rollbackDriftFixes, runDriftFixes, DRIFT_FIX_JOURNAL_KEY } from '../../src/drift/fix.ts';
import type { DriftAction, InventoryUpdateDetails } from '../../src/drift/model.ts';
import { mergeInventoryText } from '../../src/drift/update-inventory.ts';
import { Journal } from '../../src/engine/journal.ts';
import { parseInventory, renderInventory, type InventoryDocument } from '../../src/steps/lib/inventory-model.ts';
import { CLUSTER, FakeAzure, FakeKube, idOf, KUBELET_ID, NODE_RG, tempDir } from '../steps/fakes.ts';

const INVENTORY: InventoryDocument = {
  apiVersion: 'podid-migrate/v1',
  kind: 'Inventory',
  cluster: { name: 'prod-weu', kubeSystemUid: 'ks-uid' },
  identities: [
    {
      name: 'api-id',
      namespace: 'payments',
      type: 0,
      resourceId: idOf('api-id'),
      clientId: 'client-api-id',
      pools: ['pay'],
      namespaces: ['payments'],
      bindings: [{ name: 'api-id-binding', namespace: 'payments', selector: 'api' }],
      services: [{ name: 'payments/api', kind: 'Deployment', selector: 'api', pools: ['pay'], testCases: [{ kind: 'token' }] }],
    },
  ],
  pools: [{ name: 'pay', scaleSet: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pay-12345678-vmss', nodes: 1, identitiesBefore: [KUBELET_ID] }],
};

const UPDATE: InventoryUpdateDetails = {
  path: 'inventory.yaml',
  pools: [{ name: 'gpu', scaleSet: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-gpu-12345678-vmss', nodes: 2, identitiesBefore: [KUBELET_ID] }],
  identityPools: [{ identity: idOf('api-id').toLowerCase(), name: 'api-id', namespace: 'payments', pools: ['gpu'] }],
  identityBindings: [],
  identities: [{ name: 'ml-id', namespace: 'ml', type: 0, resourceId: idOf('ml-id'), clientId: 'client-ml', pools: ['gpu'], namespaces: ['ml'], bindings: [{ name: 'ml-binding', namespace: 'ml', selector: 'ml' }], services: [{ name: 'ml/trainer', kind: 'Deployment', selector: 'ml', pools: ['gpu'] }] }],
};

describe('drift --update-inventory', () => {
  it('adds the pool, the pool of a known identity and a new identity, keeping comments and the operator\'s test cases', () => {
    const text = renderInventory(INVENTORY).replace('  - name: api-id\n', '  # owned by the payments team\n  - name: api-id\n').replace('        testCases:\n          - kind: token\n', '        testCases:\n          - kind: token\n          - kind: http # the health page\n            url: http://api.payments.svc/healthz\n');
    expect(text).toContain('# owned by the payments team');
    const { text: out, added } = mergeInventoryText(text, UPDATE, 'inventory.yaml');
    expect(added).toEqual(['pool gpu', 'identity api-id: pool gpu', 'identity ml/ml-id']);
    expect(out).toContain('# owned by the payments team');
    expect(out).toContain('# the health page');
    expect(out.startsWith('# podid-migrate inventory')).toBe(true);
    const doc = parseInventory(out, 'out');
    expect(doc.identities[0].pools).toEqual(['pay', 'gpu']);
    expect(doc.identities[0].services[0].testCases).toEqual([{ kind: 'token' }, { kind: 'http', url: 'http://api.payments.svc/healthz' }]);
    expect(doc.identities[1]).toMatchObject({ name: 'ml-id', pools: ['gpu'], services: [{ name: 'ml/trainer', testCases: [{ kind: 'token' }] }] });
    expect(doc.pools.map((p) => p.name)).toEqual(['pay', 'gpu']);
    // Again: nothing more to add, the text is unchanged.
    expect(mergeInventoryText(out, UPDATE, 'inventory.yaml')).toEqual({ text: out, added: [] });
  });

  it('refuses a result that would not validate and names the field', () => {
    const bad: InventoryUpdateDetails = { ...UPDATE, pools: [], identityPools: [], identities: [{ ...UPDATE.identities[0], type: 7 as 0 }] };
    expect(() => mergeInventoryText(renderInventory(INVENTORY), bad, 'inv.yaml')).toThrow(/identities\[1\]\.type/);
  });
});

describe('drift --fix and --rollback executors', () => {
  const action = (ids: string[]): DriftAction => ({
    id: 'vmss/aks-pay-12345678-vmss/add-identities',
    kind: 'vmss-add-identities',
    op: '~',
    target: 'vmss aks-pay-12345678-vmss',
    summary: 'identities: + …',
    api: 'arm',
    writes: { kube: 0, arm: 1 },
    details: { resourceGroup: NODE_RG, scaleSet: 'aks-pay-12345678-vmss', pool: 'pay', identities: ids.map((id) => ({ id, name: id.split('/').pop()! })) },
  });

  it('adds only the delta; rollback removes only what the fixes added, never the kubelet or a hand-assigned identity', async () => {
    const dir = tempDir();
    const azure = new FakeAzure();
    const handAssigned = idOf('legacy-id');
    azure.addSet('pay', [KUBELET_ID, handAssigned]);
    const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
    const ctx = { kube: new FakeKube(), azure, journal: journal.forExtension(DRIFT_FIX_JOURNAL_KEY), deadline: Date.now() + 10_000, progress: () => {} };
    // The hand-assigned one is asked for too (the inventory needs it): it must not count as ours.
    await runDriftFixes(ctx, [action([idOf('api-id'), handAssigned])], 'run-1');
    await runDriftFixes(ctx, [action([idOf('worker-id')])], 'run-2');
    expect(azure.patches).toEqual([
      { vmss: 'aks-pay-12345678-vmss', add: [idOf('api-id')], remove: [] },
      { vmss: 'aks-pay-12345678-vmss', add: [idOf('worker-id')], remove: [] },
    ]);
    const doc = JSON.parse(readFileSync(join(dir, 'journal.json'), 'utf8'));
    // One record per action (intent written first, then marked done), keyed by the fix run.
    expect(doc.extensions['drift-fix'].actions.map((r: { actionId: string; status: string }) => `${r.actionId} ${r.status}`)).toEqual([
      'run-1/vmss/aks-pay-12345678-vmss/add-identities done',
      'run-2/vmss/aks-pay-12345678-vmss/add-identities done',
    ]);
    expect(doc.extensions['drift-fix'].actions[0].preState.before).toEqual([KUBELET_ID, handAssigned]);
    expect(Object.values(doc.steps).every((s) => (s as { actions: unknown[] }).actions.length === 0)).toBe(true);

    const lines = await rollbackDriftFixes(ctx);
    expect(lines.filter((l) => !l.startsWith('  verified: '))).toHaveLength(2);
    expect(lines).toContain('  verified: vmss aks-pay-12345678-vmss: the 2 identities it carried before, none the fix added');
    expect(azure.patches.slice(2)).toEqual([
      { vmss: 'aks-pay-12345678-vmss', add: [], remove: [idOf('worker-id')] },
      { vmss: 'aks-pay-12345678-vmss', add: [], remove: [idOf('api-id')] },
    ]);
    expect(Object.keys(azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities).sort()).toEqual([KUBELET_ID, handAssigned].sort());
    // Undone and archived: a second rollback has nothing to do.
    expect(await rollbackDriftFixes(ctx)).toEqual([]);
  });

  it('the inventory update is journalled with the previous text; rollback restores it, unless the operator edited the file since', async () => {
    const dir = tempDir();
    const path = join(dir, 'inventory.yaml');
    const original = `# mine\n${renderInventory(INVENTORY)}`;
    writeFileSync(path, original);
    const journal = await Journal.open(join(dir, 'journal.json'), CLUSTER);
    const ctx = { kube: new FakeKube(), azure: new FakeAzure(), journal: journal.forExtension(DRIFT_FIX_JOURNAL_KEY), deadline: Date.now() + 10_000, progress: () => {} };
    const update: DriftAction = { id: 'inventory/update', kind: 'inventory-update', op: '~', target: `file ${path}`, summary: '+ pool gpu', api: 'none', writes: { kube: 0, arm: 0 }, details: { ...UPDATE, path } };
    await runDriftFixes(ctx, [update], 'run-1');
    expect(readFileSync(path, 'utf8')).toContain('- name: gpu');
    await rollbackDriftFixes(ctx);
    expect(readFileSync(path, 'utf8')).toBe(original);

    await runDriftFixes(ctx, [update], 'run-2');
    writeFileSync(path, `${readFileSync(path, 'utf8')}# edited afterwards\n`);
    const [line] = (await rollbackDriftFixes(ctx)).filter((l) => !l.startsWith('  verified: '));
    expect(line).toContain('edited since the update, left as it is');
    expect(readFileSync(path, 'utf8')).toContain('# edited afterwards');
  });
});
