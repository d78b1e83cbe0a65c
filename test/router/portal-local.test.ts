import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { IpczError } from '../../src/errors';
import { Box } from '../../src/router/box';
import { openPortalPair, Portal } from '../../src/router/portal';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return (error as IpczError).code;
  }
  return undefined;
}

test('local pair delivers in order', () => {
  const [a, b] = openPortalPair(null);
  a.put('one');
  a.put('two');
  assert.is(b.get().text(), 'one');
  assert.is(b.get().text(), 'two');
  assert.is(codeOf(() => b.get()), 'UNAVAILABLE');
});

test('closing shows peer closed then dead', () => {
  const [a, b] = openPortalPair(null);
  a.put('last');
  a.close();
  assert.equal(b.status().peerClosed, true);
  assert.equal(b.status().dead, false);
  assert.is(b.get().text(), 'last');
  assert.equal(b.status().dead, true);
  assert.is(codeOf(() => b.get()), 'NOT_FOUND');
  assert.is(codeOf(() => b.put('x')), 'NOT_FOUND');
});

test('portal travels through a local pair', () => {
  const [a, b] = openPortalPair(null);
  const [c, d] = openPortalPair(null);
  a.put('here', [d]);
  assert.is(codeOf(() => d.put('x')), 'INVALID_ARGUMENT');
  const parcel = b.get();
  const moved = parcel.handles[0] as Portal;
  c.put('through');
  assert.is(moved.get().text(), 'through');
});

test('put rejects self, peer and duplicates', () => {
  const [a, b] = openPortalPair(null);
  const [c] = openPortalPair(null);
  assert.is(codeOf(() => a.put('', [a])), 'INVALID_ARGUMENT');
  assert.is(codeOf(() => a.put('', [b])), 'INVALID_ARGUMENT');
  assert.is(codeOf(() => a.put('', [c, c])), 'INVALID_ARGUMENT');
  assert.is(c.isOpen, true);
});

test('two-phase partial get leaves the rest', () => {
  const [a, b] = openPortalPair(null);
  const put = a.beginPut(5);
  assert.is(codeOf(() => a.beginPut(1)), 'ALREADY_EXISTS');
  put.data.set([1, 2, 3, 4, 5]);
  put.commit(5);
  const get = b.beginGet();
  assert.is(get.data.length, 5);
  get.commit(1);
  assert.equal([...b.get().data], [2, 3, 4, 5]);
});

test('box round trip', () => {
  const [a, b] = openPortalPair(null);
  const box = new Box({ kind: 'application', value: { x: 1 } });
  a.put('', [box]);
  assert.is(box.isSpent, true);
  const received = b.get().handles[0] as Box;
  assert.equal(received.peek(), { x: 1 });
  assert.equal(received.unbox(), { x: 1 });
  assert.is(codeOf(() => received.unbox()), 'INVALID_ARGUMENT');
});

test('trap fires on new parcel and peer closed', () => {
  const [a, b] = openPortalPair(null);
  const events: string[] = [];
  const sub = b
    .trap({ newLocalParcel: true, peerClosed: true, aboveMinLocalParcels: 1 })
    .subscribe({
      next: (e) => events.push(Object.keys(e.conditions).sort().join('+')),
      complete: () => events.push('complete'),
    });
  a.put('1');
  a.put('2');
  a.close();
  b.close();
  sub.unsubscribe();
  assert.equal(events, [
    'newLocalParcel',
    'aboveMinLocalParcels+newLocalParcel',
    'peerClosed',
    'complete',
  ]);
});

test('parcels$ completes after peer closes', () => {
  const [a, b] = openPortalPair(null);
  const seen: string[] = [];
  let completed = false;
  a.put('early');
  b.parcels$.subscribe({
    next: (p) => seen.push(p.text()),
    complete: () => (completed = true),
  });
  a.put('late');
  assert.is(completed, false);
  a.close();
  assert.equal(seen, ['early', 'late']);
  assert.is(completed, true);
});

test('put limits reject past max parcels', () => {
  const [a, b] = openPortalPair(null);
  const limits = { maxQueuedParcels: 2 };
  a.put('1', [], { limits });
  a.put('2', [], { limits });
  assert.is(codeOf(() => a.put('3', [], { limits })), 'RESOURCE_EXHAUSTED');
  b.get();
  a.put('3', [], { limits });
  assert.is(a.status().remoteParcels, 2);
});

test('beginPut over the limit leaves no pending put', () => {
  const [a] = openPortalPair(null);
  assert.is(codeOf(() => a.beginPut(2 ** 40)), 'RESOURCE_EXHAUSTED');
  const put = a.beginPut(4);
  put.abort();
});

test('trap and limit misuse is rejected', () => {
  const [a] = openPortalPair(null);
  const bad: unknown[] = [{}, { bogus: true }, { peerClosed: false }];
  for (const conditions of bad) {
    assert.is(
      codeOf(() => a.trap(conditions as object)),
      'INVALID_ARGUMENT',
      JSON.stringify(conditions),
    );
  }
  const limits: unknown[] = [5, { maxQueuedParcels: -1 }, { maxQueuedBytes: NaN }];
  for (const value of limits) {
    assert.is(
      codeOf(() => a.put('x', [], { limits: value as object })),
      'INVALID_ARGUMENT',
      String(value),
    );
  }
  a.close();
  assert.is(codeOf(() => a.trap({ peerClosed: true })), 'INVALID_ARGUMENT');
});

test.run();
