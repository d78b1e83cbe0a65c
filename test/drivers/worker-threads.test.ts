import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MessageChannel, Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { Driver, Transport } from '../../src/drivers/driver';
import {
  WorkerTransport,
  createWorkerDriver,
  wrapPort,
} from '../../src/drivers/worker-threads';
import { RecordingListener, bytes } from './fixtures/recording-listener';

const test = suite('worker_threads driver');
const nonBroker = { isBroker: false };
const bootstrap = fileURLToPath(
  new URL('./fixtures/ts-worker.mjs', import.meta.url),
);
const echoScript = fileURLToPath(
  new URL('./fixtures/echo-worker.ts', import.meta.url),
);
// Command bytes understood by fixtures/echo-worker.ts.
const Command = { echo: 0, adopt: 1, count: 2, exit: 3 } as const;

const workers: Worker[] = [];
const transports: Transport[] = [];
let driver: Driver = createWorkerDriver();

test.before.each(() => {
  driver = createWorkerDriver();
});

test.after.each(async () => {
  for (const transport of transports.splice(0)) {
    driver.closeTransport(transport);
  }
  await Promise.all(workers.splice(0).map((worker) => worker.terminate()));
});

/** Starts an echo worker and returns the main thread's transport to it. */
function startEchoWorker(count = 0): { worker: Worker; transport: Transport } {
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(bootstrap, {
    workerData: { script: echoScript, port: port2, count },
    transferList: [port2],
  });
  workers.push(worker);
  const transport = wrapPort(port1);
  transports.push(transport);
  return { worker, transport };
}

async function waitFor(condition: () => boolean, timeoutMs = 10000) {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`condition not met within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function withCommand(command: number, rest: Uint8Array): Uint8Array {
  const data = new Uint8Array(rest.length + 1);
  data[0] = command;
  data.set(rest, 1);
  return data;
}

test('10,000 messages echo in order', async () => {
  const { transport } = startEchoWorker();
  const received: number[] = [];
  driver.activateTransport(
    transport,
    {
      onMessage: (data) => {
        received.push(new DataView(data.buffer, data.byteOffset).getUint32(1));
        return true;
      },
      onError: (reason) => assert.unreachable(reason),
      onDeactivated: () => {},
    },
    nonBroker,
  );
  for (let i = 0; i < 10000; i++) {
    // A new buffer each time: transmit takes ownership of what it gets.
    const message = new Uint8Array(5);
    message[0] = Command.echo;
    new DataView(message.buffer).setUint32(1, i);
    driver.transmit(transport, message, []);
  }
  await waitFor(() => received.length === 10000);
  const outOfOrder = received.findIndex((value, index) => value !== index);
  assert.is(outOfOrder, -1);
});

test('shared memory is shared with Atomics', async () => {
  const count = 100000;
  const { transport } = startEchoWorker(count);
  const listener = new RecordingListener();
  driver.activateTransport(transport, listener, nonBroker);
  const memory = driver.allocateSharedMemory(64);
  const words = new Int32Array(memory.map().buffer);

  const serialized = driver.serializeObject(
    driver.duplicateSharedMemory(memory),
    transport,
  );
  assert.is(serialized.handles[0], memory.map().buffer);
  driver.transmit(
    transport,
    withCommand(Command.count, serialized.data),
    serialized.handles,
  );
  for (let i = 0; i < count; i++) Atomics.add(words, 0, 1);

  await waitFor(() => listener.events.length === 1);
  assert.is(listener.events[0], `m:${String.fromCharCode(Command.count)}`);
  assert.is(Atomics.load(words, 0), 2 * count);
});

test('transport crosses another transport', async () => {
  const { transport } = startEchoWorker();
  driver.activateTransport(transport, new RecordingListener(), nonBroker);
  const [ours, theirs] = driver.createTransports();
  assert.is(driver.checkTransmit(theirs, transport), 'ok');

  const serialized = driver.serializeObject(theirs, transport);
  assert.is(serialized.handles[0], (theirs as WorkerTransport).port);
  driver.transmit(
    transport,
    withCommand(Command.adopt, serialized.data),
    serialized.handles,
  );
  const listener = new RecordingListener();
  driver.activateTransport(ours, listener, nonBroker);
  transports.push(ours);
  driver.transmit(ours, withCommand(Command.echo, bytes('via new')), []);
  await waitFor(() => listener.events.length === 1);
  assert.is(listener.texts[0]?.slice(1), 'via new');
});

test('memory and values cross and return', async () => {
  const { transport } = startEchoWorker();
  const listener = new RecordingListener();
  driver.activateTransport(transport, listener, nonBroker);
  const memory = driver.allocateSharedMemory(16);
  const value = { list: [1, 2, 3], name: 'box' };
  const objects = [
    driver.serializeObject(memory, transport),
    driver.serializeObject({ kind: 'application', value }, transport),
  ];
  for (const object of objects) {
    driver.transmit(
      transport,
      withCommand(Command.echo, object.data),
      object.handles,
    );
  }
  await waitFor(() => listener.handles.length === 2);

  const [memoryData, valueData] = objects.map((object) => object.data);
  const returnedMemory = driver.deserializeObject({
    data: memoryData as Uint8Array,
    handles: listener.handles[0] as unknown[],
  });
  assert.is.not(typeof returnedMemory, 'string');
  assert.is((returnedMemory as { kind: string }).kind, 'memory');
  memory.map()[5] = 77;
  if (typeof returnedMemory !== 'string' && returnedMemory.kind === 'memory') {
    assert.is(returnedMemory.map()[5], 77);
  }

  const returnedValue = driver.deserializeObject({
    data: valueData as Uint8Array,
    handles: listener.handles[1] as unknown[],
  });
  assert.equal(returnedValue, { kind: 'application', value });
  assert.is.not((returnedValue as { value: unknown }).value, value);
});

test('worker terminate errors the transport', async () => {
  const { worker, transport } = startEchoWorker();
  const listener = new RecordingListener();
  driver.activateTransport(transport, listener, nonBroker);
  driver.transmit(transport, withCommand(Command.echo, bytes('up')), []);
  await waitFor(() => listener.events.length === 1);
  await worker.terminate();
  await waitFor(() => listener.events.length === 2);
  assert.equal(listener.events[1], 'e:peer transport closed');
});

test('worker exit errors the transport', async () => {
  const { transport } = startEchoWorker();
  const listener = new RecordingListener();
  driver.activateTransport(transport, listener, nonBroker);
  driver.transmit(transport, new Uint8Array([Command.exit]), []);
  await waitFor(() => listener.events.length === 1);
  assert.equal(listener.events, ['e:peer transport closed']);
});

test('rejected message reports and errors', async () => {
  const { transport } = startEchoWorker();
  const listener = new RecordingListener();
  listener.rejectText = `${String.fromCharCode(Command.echo)}bad`;
  driver.activateTransport(transport, listener, nonBroker);
  driver.transmit(transport, withCommand(Command.echo, bytes('bad')), []);
  driver.transmit(transport, withCommand(Command.echo, bytes('after')), []);
  await waitFor(() => listener.events.length === 2);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.is(listener.events.length, 2);
  assert.match(listener.events[1] as string, /^e:invalid message: rejected/);
  const reports = (transport as WorkerTransport).badActivityReports;
  assert.is(reports.length, 1);
});

test('same-thread pair delivers, deactivates, closes', async () => {
  const [a, b] = driver.createTransports();
  transports.push(a, b);
  driver.transmit(a, bytes('early'), []);
  const listenerA = new RecordingListener();
  const listenerB = new RecordingListener();
  driver.activateTransport(a, listenerA, nonBroker);
  driver.activateTransport(b, listenerB, nonBroker);
  driver.transmit(a, bytes('late'), []);
  await waitFor(() => listenerB.texts.length === 2);
  assert.equal(listenerB.texts, ['early', 'late']);

  driver.deactivateTransport(b);
  await waitFor(() => listenerB.events.length === 3);
  assert.is(listenerB.events[2], 'deactivated');
  driver.transmit(b, bytes('dropped'), []);

  driver.closeTransport(b);
  await waitFor(() => listenerA.events.length === 1);
  assert.equal(listenerA.events, ['e:peer transport closed']);
});

test('one batch keeps transmission order', async () => {
  const [a, b] = driver.createTransports();
  transports.push(a, b);
  const listener = new RecordingListener();
  driver.activateTransport(b, listener, nonBroker);
  const expected: string[] = [];
  for (let i = 0; i < 100; i++) {
    expected.push(String(i));
    driver.transmit(a, bytes(String(i)), []);
  }
  await waitFor(() => listener.texts.length === 100);
  assert.equal(listener.texts, expected);
});

test('checkTransmit rejects what cannot cross', () => {
  const [carrier, other] = driver.createTransports();
  const [active] = driver.createTransports();
  transports.push(carrier, other, active);
  driver.activateTransport(active, new RecordingListener(), nonBroker);
  const unclonable = { kind: 'application', value: () => 1 } as const;
  assert.is(driver.checkTransmit(unclonable, carrier), 'unserializable');
  assert.is(driver.checkTransmit(active, carrier), 'unserializable');
  assert.is(driver.checkTransmit(carrier, carrier), 'unserializable');
  const memory = driver.allocateSharedMemory(8);
  assert.is(driver.checkTransmit(memory, carrier), 'ok');
  assert.is(
    driver.checkTransmit({ kind: 'application', value: [1] }, carrier),
    'ok',
  );
});

test('deserialize rejects invalid input', () => {
  const [carrier] = driver.createTransports();
  transports.push(carrier);
  const memory = driver.allocateSharedMemory(8);
  const good = driver.serializeObject(memory, carrier);
  const badType = good.data.slice();
  badType[0] = 9;
  const cases: [Uint8Array, unknown[], string][] = [
    [new Uint8Array(3), good.handles, 'must be 8 bytes'],
    [good.data, [], 'got 0'],
    [badType, good.handles, 'unknown object type 9'],
    [good.data, [new SharedArrayBuffer(4)], 'does not match'],
    [good.data, [new ArrayBuffer(8)], 'not a SharedArrayBuffer'],
  ];
  for (const [data, handles, text] of cases) {
    const result = driver.deserializeObject({ data, handles });
    assert.type(result, 'string');
    assert.ok(String(result).includes(text), `${String(result)} vs ${text}`);
  }
});

test('wrapPort rejects a non-port', () => {
  assert.throws(
    () => wrapPort({} as never),
    (error: Error) => error.message.includes('expected a MessagePort'),
  );
});

test.run();
