import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isIpczError } from '../../src/errors';
import type {
  ApplicationObject,
  Driver,
  DriverObject,
  SharedMemory,
} from '../../src/drivers/driver';
import { createAsyncDriver } from '../../src/drivers/async';
import { createSyncDriver } from '../../src/drivers/sync';
import { RecordingListener, bytes } from './fixtures/recording-listener';

const nonBroker = { isBroker: false };
const broker = { isBroker: true };

function throwsCode(run: () => unknown, code: string, text: string): void {
  try {
    run();
  } catch (error) {
    assert.ok(isIpczError(error), `expected IpczError, got ${String(error)}`);
    assert.is(error.code, code);
    assert.ok(
      error.message.includes(text),
      `expected "${text}" in "${error.message}"`,
    );
    return;
  }
  assert.unreachable(`expected IpczError ${code}`);
}

function application(value: unknown): ApplicationObject {
  return { kind: 'application', value };
}

const setups: [string, (forcedBrokering?: boolean) => Driver][] = [
  ['sync', (forcedBrokering) => createSyncDriver({ forcedBrokering })],
  ['async', (forcedBrokering) => createAsyncDriver({ forcedBrokering })],
];

for (const [name, createDriver] of setups) {
  const test = suite(`in-process ${name}`);

  test('allocates zeroed shared memory', () => {
    const memory = createDriver().allocateSharedMemory(4096);
    assert.is(memory.kind, 'memory');
    assert.is(memory.size, 4096);
    const view = memory.map();
    assert.is(view.length, 4096);
    assert.ok(view.buffer instanceof SharedArrayBuffer);
    assert.ok(view.every((byte) => byte === 0));
  });

  test('duplicate maps see each other', () => {
    const driver = createDriver();
    const memory = driver.allocateSharedMemory(64);
    const copy = driver.duplicateSharedMemory(memory);
    assert.is.not(copy, memory);
    assert.is(copy.size, 64);

    memory.map()[3] = 42;
    assert.is(copy.map()[3], 42);
    const words = new Int32Array(copy.map().buffer);
    Atomics.store(words, 4, 7);
    assert.is(Atomics.load(new Int32Array(memory.map().buffer), 4), 7);
  });

  test('another instance duplicates memory', () => {
    const memory = createDriver().allocateSharedMemory(16);
    const copy = createAsyncDriver({ canAllocate: false })
      .duplicateSharedMemory(memory);
    copy.map()[0] = 9;
    assert.is(memory.map()[0], 9);
  });

  test('canAllocate false denies allocation', () => {
    const driver = createSyncDriver({ canAllocate: false });
    assert.is(driver.canAllocate, false);
    throwsCode(
      () => driver.allocateSharedMemory(1234),
      'PERMISSION_DENIED',
      '1234',
    );
  });

  test('invalid sizes throw', () => {
    const driver = createDriver();
    for (const size of [0, -5, 1.5, NaN]) {
      throwsCode(
        () => driver.allocateSharedMemory(size),
        'INVALID_ARGUMENT',
        String(size),
      );
    }
    const tooLarge = 2 ** 30 + 1;
    throwsCode(
      () => driver.allocateSharedMemory(tooLarge),
      'RESOURCE_EXHAUSTED',
      String(tooLarge),
    );
  });

  test('objects serialize as zero bytes and themselves', () => {
    const driver = createDriver();
    const [carrier] = driver.createTransports();
    const [transport] = driver.createTransports();
    const objects: DriverObject[] = [
      driver.allocateSharedMemory(8),
      transport,
      application({ answer: 42 }),
    ];
    for (const object of objects) {
      const serialized = driver.serializeObject(object, carrier);
      assert.is(serialized.data.length, 0);
      assert.is(serialized.handles.length, 1);
      assert.is(serialized.handles[0], object);
      assert.is(driver.deserializeObject(serialized), object);
    }
  });

  test('deserialize rejects invalid input', () => {
    const driver = createDriver();
    const memory = driver.allocateSharedMemory(8);
    const [active] = driver.createTransports();
    driver.activateTransport(active, new RecordingListener(), nonBroker);
    const cases: [unknown[], Uint8Array, string][] = [
      [[memory], new Uint8Array(1), 'must be empty'],
      [[], new Uint8Array(0), 'got 0'],
      [[memory, memory], new Uint8Array(0), 'got 2'],
      [[{ kind: 'memory' }], new Uint8Array(0), 'not a memory'],
      [[null], new Uint8Array(0), 'not a memory'],
      [[active], new Uint8Array(0), 'is active'],
    ];
    for (const [handles, data, text] of cases) {
      const result = driver.deserializeObject({ data, handles });
      assert.type(result, 'string');
      assert.ok(String(result).includes(text), `${String(result)} vs ${text}`);
    }
  });

  test('handles cross a transport unchanged', async () => {
    const driver = createDriver();
    const [a, b] = driver.createTransports();
    const listener = new RecordingListener();
    driver.activateTransport(b, listener, nonBroker);
    const memory = driver.allocateSharedMemory(8);
    const [transport] = driver.createTransports();
    const value = application(new Map([[1, 'one']]));
    driver.transmit(a, bytes('objects'), [memory, transport, value]);
    await waitForMessages(listener, 1);
    assert.is(listener.handles[0]?.[0], memory);
    assert.is(listener.handles[0]?.[1], transport);
    assert.is(listener.handles[0]?.[2], value);
  });

  test('checkTransmit accepts and rejects objects', () => {
    const driver = createDriver();
    const [carrier, carrierPeer] = driver.createTransports();
    const [fresh] = driver.createTransports();
    const [active] = driver.createTransports();
    driver.activateTransport(active, new RecordingListener(), nonBroker);
    const foreign = { kind: 'memory', size: 1, map: () => new Uint8Array(1) };

    const memory = driver.allocateSharedMemory(8);
    assert.is(driver.checkTransmit(memory, carrier), 'ok');
    assert.is(driver.checkTransmit(fresh, carrier), 'ok');
    assert.is(driver.checkTransmit(application(1), carrier), 'ok');
    assert.is(driver.checkTransmit(active, carrier), 'unserializable');
    assert.is(driver.checkTransmit(carrier, carrier), 'unserializable');
    assert.is(driver.checkTransmit(carrierPeer, carrier), 'unserializable');
    assert.is(
      driver.checkTransmit(foreign as SharedMemory, carrier),
      'unserializable',
    );
  });

  test('forced brokering denies between non-brokers', () => {
    const driver = createDriver(true);
    const [a, b] = driver.createTransports();
    const [fresh] = driver.createTransports();
    const memory = driver.allocateSharedMemory(8);
    const objects: DriverObject[] = [memory, fresh, application('x')];

    // The peer is not active yet, so it counts as a non-broker.
    driver.activateTransport(a, new RecordingListener(), nonBroker);
    for (const object of objects) {
      assert.is(driver.checkTransmit(object, a), 'permission-denied');
    }
    driver.activateTransport(b, new RecordingListener(), nonBroker);
    for (const object of objects) {
      assert.is(driver.checkTransmit(object, a), 'permission-denied');
      assert.is(driver.checkTransmit(object, b), 'permission-denied');
    }
  });

  test('forced brokering allows a broker end', () => {
    const driver = createDriver(true);
    const [a, b] = driver.createTransports();
    const memory = driver.allocateSharedMemory(8);
    driver.activateTransport(a, new RecordingListener(), nonBroker);
    driver.activateTransport(b, new RecordingListener(), broker);
    assert.is(driver.checkTransmit(memory, a), 'ok');
    assert.is(driver.checkTransmit(memory, b), 'ok');
  });

  test('no forced brokering allows non-brokers', () => {
    const driver = createDriver(false);
    const [a, b] = driver.createTransports();
    driver.activateTransport(a, new RecordingListener(), nonBroker);
    driver.activateTransport(b, new RecordingListener(), nonBroker);
    assert.is(driver.checkTransmit(driver.allocateSharedMemory(8), a), 'ok');
  });

  test('closeObject closes a transport', async () => {
    const driver = createDriver();
    const [a, b] = driver.createTransports();
    const listener = new RecordingListener();
    driver.activateTransport(b, listener, nonBroker);
    driver.closeObject(a);
    await waitForEvents(listener, 1);
    assert.equal(listener.events, ['e:peer transport closed']);
  });

  test('generates random bytes', () => {
    const driver = createDriver();
    assert.is(driver.generateRandomBytes(0).length, 0);
    const large = driver.generateRandomBytes(70000);
    assert.is(large.length, 70000);
    // 2^-8 per byte of being zero: a zero tail means a chunk was skipped.
    assert.ok(large.subarray(65536).some((byte) => byte !== 0));
    assert.ok(large.subarray(0, 1000).some((byte) => byte !== 0));
    throwsCode(() => driver.generateRandomBytes(-1), 'INVALID_ARGUMENT', '-1');
  });

  test.run();
}

async function waitForEvents(listener: RecordingListener, count: number) {
  const started = Date.now();
  while (listener.events.length < count) {
    if (Date.now() - started > 2000) {
      throw new Error(`expected ${count} events, got ${listener.events}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async function waitForMessages(listener: RecordingListener, count: number) {
  await waitForEvents(listener, count);
  assert.is(listener.texts.length, count);
}
