import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PreconditionError } from '../../src/engine/errors.ts';
import { KubeClient } from '../../src/kube/client.ts';

const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));

function loadError(opts: { kubeconfig?: string; context?: string }): PreconditionError {
  try {
    KubeClient.load(opts);
  } catch (e) {
    expect(e).toBeInstanceOf(PreconditionError);
    return e as PreconditionError;
  }
  throw new Error('expected the kubeconfig to be refused');
}

describe('kubeconfig problems are named, with what to do', () => {
  it('a missing file', () => {
    const e = loadError({ kubeconfig: join(dir, 'missing') });
    expect(e.message).toBe(`cannot load the kubeconfig (--kubeconfig ${join(dir, 'missing')}): the file does not exist.`);
    expect(e.hint).toContain('--kubeconfig or KUBECONFIG');
  });

  it('a file that is not YAML, in one line', () => {
    writeFileSync(join(dir, 'bad'), 'garbage: [\n');
    const e = loadError({ kubeconfig: join(dir, 'bad') });
    expect(e.message).toMatch(/^cannot load the kubeconfig \(--kubeconfig .*bad\): it is not a valid kubeconfig \([^\n]+\)\.$/);
  });

  it('an unknown --context lists the known ones', () => {
    writeFileSync(
      join(dir, 'ok'),
      'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: ctx, context: {cluster: c, user: u}}]\ncurrent-context: ctx\n',
    );
    const e = loadError({ kubeconfig: join(dir, 'ok'), context: 'prod' });
    expect(e.message).toMatch(/^--context prod is not in the kubeconfig \(--kubeconfig .*; contexts: ctx\)\.$/);
  });
});
