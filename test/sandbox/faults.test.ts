/** Fault rule matching (pure): the Nth write across both APIs, and holding a request until its client goes. */
import { describe, expect, it } from 'vitest';
import { FaultInjector } from '../../src/sandbox/faults.ts';

describe('fault rules', () => {
  it('`api: any, mutating: true, after: N-1, times: 1` acts on the Nth write of either API only', () => {
    const f = new FaultInjector();
    const id = f.add({ api: 'any', mutating: true, after: 2, times: 1, action: { kind: 'hold-response' } });
    const fired: string[] = [];
    f.on('fired', (e: { ruleId: string; method: string; path: string }) => fired.push(`${e.ruleId} ${e.method} ${e.path}`));
    const requests: [api: 'kube' | 'arm', method: string, path: string, mutating: boolean][] = [
      ['kube', 'GET', '/api/v1/pods', false],
      ['kube', 'POST', '/api/v1/namespaces/a/configmaps', true],
      ['arm', 'GET', '/subscriptions/s/x', false],
      ['arm', 'PATCH', '/subscriptions/s/vmss/a', true],
      ['kube', 'PATCH', '/apis/apps/v1/namespaces/default/daemonsets/nmi', true],
      ['arm', 'POST', '/subscriptions/s/vmss/a/reimage', true],
    ];
    const matched = requests.map(([api, method, path, mutating]) => f.match(api, method, path, { mutating })?.id);
    expect(matched).toEqual([undefined, undefined, undefined, undefined, id, undefined]);
    expect(fired).toEqual([`${id} PATCH /apis/apps/v1/namespaces/default/daemonsets/nmi`]);
  });

  it('hold-request: released when the rule is removed, dropped (and told) as soon as the client is gone', async () => {
    const f = new FaultInjector();
    const dropped: string[] = [];
    f.on('dropped', (e: { ruleId: string }) => dropped.push(e.ruleId));
    const a = f.add({ api: 'kube', action: { kind: 'hold-request' } });
    const released = f.holdRequest(a, { method: 'DELETE', path: '/x' }, new Promise(() => {}));
    f.remove(a);
    expect(await released).toBe('released');
    const b = f.add({ api: 'kube', action: { kind: 'hold-request' } });
    let gone!: () => void;
    const outcome = f.holdRequest(b, { method: 'DELETE', path: '/y' }, new Promise<void>((r) => (gone = r)));
    gone();
    expect(await outcome).toBe('dropped');
    expect(dropped).toEqual([b]);
  });
});
