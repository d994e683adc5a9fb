/**
 * The write contract on the default (raw manifest) scenario: every write a step sends is
 * declared by its plan (see `write-contract-harness.ts`; the Helm install is in
 * `write-contract-helm.test.ts`).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SCENARIO } from './steps-1-4-harness.ts';
import { contract } from './write-contract-harness.ts';

describe('every write a step sends is declared by its plan', () => {
  it('default scenario: a full apply, step by step, sends exactly the declared writes', async () => {
    const { mismatches, figures } = await contract(readFileSync(SCENARIO, 'utf8'));
    console.log(`write contract (default): ${figures.join('; ')}`);
    expect(mismatches).toEqual([]);
  }, 600_000);
});
