/**
 * `podid-migrate drift` through `main()` over the in-memory gateway fakes: exit codes 0/3/1,
 * the table, Markdown and JSON renderings, flag errors before anything is read, `--fix` refused
 * without a terminal or --yes, and `--fix --yes` repairing then checking again.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { RuntimeFactory } from '../../src/cli/context.ts';
import type { CliDeps } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { renderInventory } from '../../src/steps/lib/inventory-model.ts';
import { migrated } from '../drift/fake-cluster.ts';
import { AKS_ID, CLUSTER, idOf, tempDir } from '../steps/fakes.ts';

async function run(args: string[], c: ReturnType<typeof migrated>, opts: { env?: Record<string, string>; write?: boolean } = {}) {
  const dir = tempDir();
  if (opts.write !== false) {
    mkdirSync(join(dir, 'inventory'), { recursive: true });
    writeFileSync(join(dir, 'inventory', 'prod-weu.yaml'), renderInventory(c.inventory));
  }
  let stdout = '';
  let stderr = '';
  let connects = 0;
  const createRuntime: RuntimeFactory = async () => {
    connects++;
    return { steps: [], executors: {}, kube: c.kube, azure: c.azure, cluster: CLUSTER, close: async () => {} };
  };
  const deps: Partial<CliDeps> = {
    stdout: { write: (s: string) => ((stdout += s), true), isTTY: false },
    stderr: { write: (s: string) => ((stderr += s), true), isTTY: false },
    env: { PODID_MIGRATE_AKS_ID: AKS_ID, ...opts.env },
    interactive: false,
    cwd: dir,
    createRuntime,
    confirm: async () => false,
    onInterrupt: () => () => {},
  };
  const code = await main(['node', 'podid-migrate', 'drift', ...args], deps);
  return { code, stdout, stderr, connects, dir };
}

describe('podid-migrate drift (CLI)', () => {
  it('exit 0 and "No drift" when the cluster matches; markdown and json render the same report', async () => {
    const ok = await run([], migrated());
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('No drift. Exit 0.');
    const md = await run(['-o', 'markdown'], migrated());
    expect(md.stdout).toMatch(/^### podid-migrate drift: `prod-weu`/);
    const json = JSON.parse((await run(['-o', 'json'], migrated())).stdout);
    expect(json).toMatchObject({ kind: 'DriftReport', schemaVersion: 1, findings: [], totals: { drift: 0 } });
    expect(parseYaml((await run(['-o', 'yaml'], migrated())).stdout)).toMatchObject({ kind: 'DriftReport', schemaVersion: 1 });
  });

  it('exit 3 with the object and the fix; --fix without a terminal or --yes is refused and changes nothing', async () => {
    const c = migrated();
    delete c.azure.sets.get('aks-pay-12345678-vmss')!.userAssignedIdentities[idOf('api-id')];
    const r = await run([], c);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('! vmss aks-pay-12345678-vmss   missing identity api-id');
    expect(r.stdout).toContain('fix: podid-migrate drift --fix   (1 PATCH: + api-id)');
    const refused = await run(['--fix'], c);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('needs confirmation, but there is no terminal');
    expect(c.azure.patches).toEqual([]);
    const fixed = await run(['--fix', '--yes'], c);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.stderr).toContain('~ vmss aks-pay-12345678-vmss  identities: + api-id');
    expect(c.azure.patches).toEqual([{ vmss: 'aks-pay-12345678-vmss', add: [idOf('api-id')], remove: [] }]);
  });

  it('bad flags and a missing inventory are named errors (exit 1)', async () => {
    const both = await run(['--fix', '--rollback'], migrated());
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('--rollback cannot be combined with --fix');
    expect(both.connects).toBe(0);
    const none = await run([], migrated(), { write: false });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`there is no inventory at ${join(none.dir, 'inventory', 'prod-weu.yaml')}`);
  });
});
