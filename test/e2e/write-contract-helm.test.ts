/**
 * The write contract on a Helm-installed Pod Identity (chart names, `kube-system`-style
 * install): every write a step sends is declared by its plan (see `write-contract-harness.ts`).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SCENARIO } from './steps-1-4-harness.ts';
import { contract } from './write-contract-harness.ts';

describe('every write a step sends is declared by its plan', () => {
  it('Helm-installed scenario: the same as on the default scenario', async () => {
    const helm = readFileSync(SCENARIO, 'utf8').replace(/^name: default$/m, 'name: helm').replace(/^ {2}install: raw$/m, '  install: helm');
    expect(helm).toContain('install: helm');
    const { mismatches, figures } = await contract(helm);
    console.log(`write contract (helm): ${figures.join('; ')}`);
    expect(mismatches).toEqual([]);
  }, 600_000);
});
