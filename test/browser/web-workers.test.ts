/**
 * Checks the Web Worker driver under Node, whose global MessageChannel
 * follows the web API. Node is not cross-origin isolated, so the tests
 * mark it isolated after checking that the driver refuses to start.
 * The browser itself is tested by test/browser/run.mjs.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { filter, firstValueFrom, take, timeout, toArray } from 'rxjs';
import type { TransportListener } from '../../src/drivers/driver';
import {
  WebWorkerTransport,
  createWebWorkerDriver,
  wrapWebPort,
} from '../../src/drivers/web-workers';
import { createNode, type Node } from '../../src/index';

const test = suite('web workers driver');
const isolation = globalThis as { crossOriginIsolated?: boolean };
/** Time allowed for a message or failure to arrive, in ms. */
const WAIT_MS = 2_000;

interface Recorded {
  messages: string[];
  errors: string[];
  listener: TransportListener;
}

function record(): Recorded {
  const recorded: Recorded = {
    messages: [],
    errors: [],
    listener: {
      onMessage: (data) => {
        recorded.messages.push(new TextDecoder().decode(data));
        return true;
      },
      onError: (reason) => recorded.errors.push(reason),
      onDeactivated: () => undefined,
    },
  };
  return recorded;
}

async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const nodes: Node[] = [];

test.after.each(() => {
  for (const node of nodes.splice(0)) node.close();
});

test('driver refuses a context without isolation', () => {
  delete isolation.crossOriginIsolated;
  try {
    createWebWorkerDriver();
    assert.unreachable('the driver started without isolation');
  } catch (error) {
    const { code, message } = error as { code: string; message: string };
    assert.is(code, 'FAILED_PRECONDITION');
    assert.match(message, 'Cross-Origin-Opener-Policy: same-origin');
    assert.match(message, 'Cross-Origin-Embedder-Policy: require-corp');
  }
  isolation.crossOriginIsolated = true;
});

test('transport delivers in order after activation', async () => {
  const driver = createWebWorkerDriver();
  const [a, b] = driver.createTransports();
  const received = record();
  for (let i = 0; i < 20; i++) {
    driver.transmit(a, new TextEncoder().encode(`m${i}`), []);
  }
  driver.activateTransport(b, received.listener, { isBroker: false });
  driver.activateTransport(a, record().listener, { isBroker: false });
  await waitFor(() => received.messages.length === 20);
  assert.equal(
    received.messages,
    Array.from({ length: 20 }, (_, i) => `m${i}`),
  );
  assert.equal(received.errors, []);
  driver.closeTransport(a);
  driver.closeTransport(b);
});

test('close fails the peer at once', async () => {
  const driver = createWebWorkerDriver();
  const [a, b] = driver.createTransports();
  const peer = record();
  driver.activateTransport(a, record().listener, { isBroker: false });
  driver.activateTransport(b, peer.listener, { isBroker: false });
  driver.transmit(a, new TextEncoder().encode('last'), []);
  driver.closeTransport(a);
  await waitFor(() => peer.errors.length > 0);
  assert.equal(peer.messages, ['last']);
  assert.match(peer.errors[0]!, 'peer transport closed');
  driver.closeTransport(b);
});

test('silent heartbeat peer fails transport', async () => {
  const beating = createWebWorkerDriver({
    heartbeat: { intervalMs: 20, timeoutMs: 100 },
  });
  const watching = createWebWorkerDriver();
  const [a, b] = beating.createTransports();
  const watcher = record();
  beating.activateTransport(a, record().listener, { isBroker: false });
  watching.activateTransport(b, watcher.listener, { isBroker: false });

  try {
    // Heartbeats keep an idle transport alive well past the timeout.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(watcher.errors, []);

    // Deactivation stops the heartbeats without a close message, as a
    // terminated worker would.
    beating.deactivateTransport(a);
    await waitFor(() => watcher.errors.length > 0);
    assert.match(watcher.errors[0]!, 'heartbeat timeout of 100 ms');
  } finally {
    // Closed on failure too, so no heartbeat timer keeps the process up.
    beating.closeTransport(a);
    watching.closeTransport(b);
  }
});

test('invalid port messages are rejected', async () => {
  const driver = createWebWorkerDriver();
  const cases: [unknown, string][] = [
    ['not an array', 'not an array of transmissions'],
    [[{ data: 'text', handles: [] }], 'lacks data or handles'],
    [{ ipczRxControl: 'heartbeat', timeoutMs: -1 }, 'heartbeat timeout -1'],
  ];
  for (const [payload, expected] of cases) {
    const channel = new MessageChannel();
    const transport = wrapWebPort(channel.port1);
    const recorded = record();
    driver.activateTransport(transport, recorded.listener, {
      isBroker: false,
    });
    channel.port2.postMessage(payload);
    await waitFor(() => recorded.errors.length > 0);
    assert.match(recorded.errors[0]!, expected);
    assert.match(
      (transport as WebWorkerTransport).badActivityReports[0]!,
      expected,
    );
    driver.closeTransport(transport);
    channel.port2.close();
  }
});

test('invalid heartbeat options are rejected', () => {
  for (const heartbeat of [
    { intervalMs: 0, timeoutMs: 100 },
    { intervalMs: 100, timeoutMs: 100 },
    { intervalMs: 100, timeoutMs: Number.NaN },
  ]) {
    try {
      createWebWorkerDriver({ heartbeat });
      assert.unreachable(`accepted ${JSON.stringify(heartbeat)}`);
    } catch (error) {
      assert.is((error as { code: string }).code, 'INVALID_ARGUMENT');
    }
  }
});

test('nodes exchange parcels and memory', async () => {
  const broker = createNode({
    driver: createWebWorkerDriver(),
    broker: true,
  });
  const sandboxed = createNode({
    driver: createWebWorkerDriver({ canAllocate: false }),
  });
  nodes.push(broker, sandboxed);
  const [toSandboxed, toBroker] = broker.driver.createTransports();
  const [brokerPortal] = broker.connect(toSandboxed, { portals: 1 });
  const [nodePortal] = sandboxed.connect(toBroker, {
    portals: 1,
    toBroker: true,
    allocationDelegate: true,
  });
  await firstValueFrom(
    sandboxed.allocationDelegate$.pipe(
      filter((name) => name !== null),
      timeout(WAIT_MS),
    ),
  );
  const memory = await firstValueFrom(sandboxed.allocateSharedMemory(1024));
  memory.map()[7] = 42;
  for (let i = 0; i < 10; i++) nodePortal!.put(`p${i}`);
  nodePortal!.put('memory', [sandboxed.box(memory)]);

  const parcels = await firstValueFrom(
    brokerPortal!.parcels$.pipe(take(11), toArray(), timeout(WAIT_MS)),
  );
  assert.equal(
    parcels.slice(0, 10).map((parcel) => parcel.text()),
    Array.from({ length: 10 }, (_, i) => `p${i}`),
  );
  const box = parcels[10]!.handles[0] as { unbox(): unknown };
  const received = box.unbox() as typeof memory;
  assert.is(received.map()[7], 42);
  received.map()[8] = 43;
  assert.is(memory.map()[8], 43);
  assert.is(sandboxed.stats().directAllocations, 0);
  assert.ok(broker.stats().memoryRequestsServed >= 1);
});

test.run();
