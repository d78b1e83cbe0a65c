import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createNode, drivers, type Portal } from '../../src/index';

test('broker and non-broker exchange parcels', () => {
  const driver = drivers.sync();
  const broker = createNode({ driver, broker: true });
  const client = createNode({ driver });
  const [t0, t1] = driver.createTransports();
  const [b] = broker.connect(t0, { portals: 1 });
  const [c] = client.connect(t1, { portals: 1, toBroker: true });
  b.put('hello');
  assert.is(c.get().text(), 'hello');
  c.put('back');
  assert.is(b.get().text(), 'back');
  assert.ok(client.name?.isValid());
  const [p, q] = client.openPortals();
  c.put('portal', [q]);
  const moved = b.get().handles[0] as Portal;
  p.put('through');
  assert.is(moved.get().text(), 'through');
  moved.put('reply');
  assert.is(p.get().text(), 'reply');
  // The proxy left on the client was bypassed at once (sync driver).
  assert.is(client.stats().proxies, 0);
  p.close();
  assert.is(moved.status().peerClosed, true);
  b.close();
  assert.is(c.status().peerClosed, true);
  broker.close();
  client.close();
});

test('limits and status agree before the handshake', () => {
  const driver = drivers.async();
  const broker = createNode({ driver, broker: true });
  const client = createNode({ driver });
  const [t0, t1] = driver.createTransports();
  broker.connect(t0, { portals: 1 });
  const [c] = client.connect(t1, { portals: 1, toBroker: true });
  const limits = { maxQueuedParcels: 2 };
  c.put('1', [], { limits });
  c.put('2', [], { limits });
  assert.is(c.status().remoteParcels, 2);
  assert.is(c.status().remoteBytes, 2);
  let code: string | undefined;
  try {
    c.put('3', [], { limits });
  } catch (error) {
    code = (error as { code?: string }).code;
  }
  assert.is(code, 'RESOURCE_EXHAUSTED');
  broker.close();
  client.close();
});

test('createNode and connect check option types', () => {
  const driver = drivers.sync();
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return (error as { code?: string }).code;
    }
    return undefined;
  };
  const yes = 'yes' as unknown as boolean;
  assert.is(codeOf(() => createNode({ driver, broker: yes })), 'INVALID_ARGUMENT');
  const node = createNode({ driver });
  const [t] = driver.createTransports();
  assert.is(
    codeOf(() => node.connect(t, { portals: 1, toBroker: yes })),
    'INVALID_ARGUMENT',
  );
  assert.is(
    codeOf(() => node.connect(t, { portals: 13, toBroker: true })),
    'OUT_OF_RANGE',
  );
  node.close();
});

test.run();
