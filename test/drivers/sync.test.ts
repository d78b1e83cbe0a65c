import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isIpczError } from '../../src/errors';
import type { Transport } from '../../src/drivers/driver';
import { getBadActivityReports } from '../../src/drivers/in-process';
import { createAsyncDriver } from '../../src/drivers/async';
import { createSyncDriver } from '../../src/drivers/sync';
import { RecordingListener, bytes } from './fixtures/recording-listener';

const sync = suite('sync driver');
const nonBroker = { isBroker: false };

function throwsCode(run: () => unknown, code: string): void {
  try {
    run();
  } catch (error) {
    assert.ok(isIpczError(error), `expected IpczError, got ${String(error)}`);
    assert.is(error.code, code);
    return;
  }
  assert.unreachable(`expected IpczError ${code}`);
}

sync('creates two transport endpoints', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  assert.is(a.kind, 'transport');
  assert.is(b.kind, 'transport');
  assert.is.not(a, b);
  assert.is(driver.family, 'in-process');
  assert.is(driver.canAllocate, true);
});

sync('close notifies peer listener onError', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const listenerA = new RecordingListener();
  const listenerB = new RecordingListener();
  driver.activateTransport(a, listenerA, nonBroker);
  driver.activateTransport(b, listenerB, nonBroker);
  driver.closeTransport(a);
  assert.equal(listenerB.events, ['e:peer transport closed']);
  assert.equal(listenerA.events, []);
});

sync('transmissions before activation flush in order', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  driver.transmit(a, bytes('1'), []);
  driver.transmit(a, bytes('2'), []);
  const listener = new RecordingListener();
  driver.activateTransport(b, listener, nonBroker);
  assert.equal(listener.texts, ['1', '2']);
  driver.transmit(a, bytes('3'), []);
  assert.equal(listener.texts, ['1', '2', '3']);
});

sync('transmit delivers before returning', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const listener = new RecordingListener();
  driver.activateTransport(a, new RecordingListener(), nonBroker);
  driver.activateTransport(b, listener, nonBroker);
  for (let i = 0; i < 5; i++) {
    driver.transmit(a, bytes(String(i)), []);
    assert.is(listener.texts.length, i + 1);
  }
  assert.equal(listener.texts, ['0', '1', '2', '3', '4']);
});

sync('transmit copies the data', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const data = bytes('x');
  driver.transmit(a, data, []);
  data[0] = 'y'.charCodeAt(0);
  const listener = new RecordingListener();
  driver.activateTransport(b, listener, nonBroker);
  assert.equal(listener.texts, ['x']);
});

sync('nested deliveries wait for the outer call', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const listenerA = new RecordingListener();
  const listenerB = new RecordingListener();
  let depthB = 0;
  let maxDepthB = 0;
  const order: string[] = [];

  // B replies to each ping with a pong. A replies to the first pong with a
  // second ping, which reaches B while B's first onMessage still runs.
  listenerB.onRecorded = (text) => {
    depthB += 1;
    maxDepthB = Math.max(maxDepthB, depthB);
    order.push(`B got ${text}`);
    driver.transmit(b, bytes(`pong-${text}`), []);
    order.push(`B done ${text}`);
    depthB -= 1;
  };
  listenerA.onRecorded = (text) => {
    order.push(`A got ${text}`);
    if (text === 'pong-ping1') driver.transmit(a, bytes('ping2'), []);
  };
  driver.activateTransport(a, listenerA, nonBroker);
  driver.activateTransport(b, listenerB, nonBroker);

  driver.transmit(a, bytes('ping1'), []);
  assert.is(maxDepthB, 1);
  assert.equal(order, [
    'B got ping1',
    'A got pong-ping1',
    'B done ping1',
    'B got ping2',
    'A got pong-ping2',
    'B done ping2',
  ]);
});

sync('deactivate leads to onDeactivated', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const listener = new RecordingListener();
  driver.activateTransport(b, listener, nonBroker);
  driver.transmit(a, bytes('before'), []);
  driver.deactivateTransport(b);
  assert.equal(listener.events, ['m:before', 'deactivated']);
});

sync('transmissions after deactivation are dropped', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const listenerA = new RecordingListener();
  const listenerB = new RecordingListener();
  driver.activateTransport(a, listenerA, nonBroker);
  driver.activateTransport(b, listenerB, nonBroker);
  driver.deactivateTransport(b);
  driver.transmit(a, bytes('to deactivated'), []);
  driver.transmit(b, bytes('from deactivated'), []);
  assert.equal(listenerB.events, ['deactivated']);
  assert.equal(listenerA.events, []);
});

sync('deactivate inside onMessage defers onDeactivated', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const listener = new RecordingListener();
  driver.transmit(a, bytes('1'), []);
  driver.transmit(a, bytes('2'), []);
  listener.onRecorded = (text) => {
    if (text === '1') driver.deactivateTransport(b);
    listener.events.push(`handled ${text}`);
  };
  driver.activateTransport(b, listener, nonBroker);
  assert.equal(listener.events, ['m:1', 'handled 1', 'deactivated']);
});

sync('transmissions after close are dropped', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const listenerB = new RecordingListener();
  driver.activateTransport(b, listenerB, nonBroker);
  driver.transmit(a, bytes('kept'), []);
  driver.closeTransport(a);
  driver.transmit(a, bytes('dropped'), []);
  assert.equal(listenerB.events, ['m:kept', 'e:peer transport closed']);
});

sync('close before peer activation errors after flush', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  driver.transmit(a, bytes('last words'), []);
  driver.closeTransport(a);
  const listener = new RecordingListener();
  driver.activateTransport(b, listener, nonBroker);
  assert.equal(listener.events, ['m:last words', 'e:peer transport closed']);
});

sync('rejected message reports and errors', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const listener = new RecordingListener();
  listener.rejectText = 'bad';
  driver.activateTransport(b, listener, nonBroker);
  driver.transmit(a, bytes('good'), []);
  driver.transmit(a, bytes('bad'), []);
  driver.transmit(a, bytes('after'), []);
  assert.equal(listener.events, [
    'm:good',
    'm:bad',
    'e:invalid message: rejected bad',
  ]);
  assert.equal(getBadActivityReports(b), ['rejected bad']);
  driver.deactivateTransport(b);
  assert.is(listener.events.at(-1), 'deactivated');
});

sync('reportBadTransportActivity records the reason', () => {
  const driver = createSyncDriver();
  const [a] = driver.createTransports();
  driver.reportBadTransportActivity(a, 'bad header');
  assert.equal(getBadActivityReports(a), ['bad header']);
});

sync('dropped message closes carried transport', () => {
  const driver = createSyncDriver();
  const [a, b] = driver.createTransports();
  const [carried, carriedPeer] = driver.createTransports();
  const peerListener = new RecordingListener();
  driver.activateTransport(carriedPeer, peerListener, nonBroker);
  driver.transmit(a, bytes('with transport'), [carried]);
  driver.closeTransport(b);
  assert.equal(peerListener.events, ['e:peer transport closed']);
});

sync('misuse throws with the ipcz code', () => {
  const driver = createSyncDriver();
  const [a] = driver.createTransports();
  const listener = new RecordingListener();
  throwsCode(() => driver.deactivateTransport(a), 'FAILED_PRECONDITION');
  driver.activateTransport(a, listener, nonBroker);
  throwsCode(
    () => driver.activateTransport(a, listener, nonBroker),
    'FAILED_PRECONDITION',
  );
  const foreign: Transport = { kind: 'transport' };
  throwsCode(
    () => driver.transmit(foreign, bytes('x'), []),
    'INVALID_ARGUMENT',
  );
});

sync('async driver operates sync transports', () => {
  const syncDriver = createSyncDriver();
  const asyncDriver = createAsyncDriver({ canAllocate: false });
  const [a, b] = syncDriver.createTransports();
  const listener = new RecordingListener();
  asyncDriver.activateTransport(b, listener, nonBroker);
  asyncDriver.transmit(a, bytes('now'), []);
  assert.equal(listener.texts, ['now']);
});

sync.run();
