import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { filter, firstValueFrom, take, timeout, toArray } from 'rxjs';
import {
  createNode,
  drivers,
  IpczError,
  type Node,
  type Portal,
  type SharedMemory,
} from '../../src/index';
import {
  connectToParent,
  createWorkerDriver,
  startNodeWorker,
  type NodeWorker,
} from '../../src/workers';

const test = suite('node workers');
const fixture = new URL('./fixtures/node-worker-fixture.ts', import.meta.url);
/** Time allowed for a worker to start, connect and reply, in ms. */
const REPLY_TIMEOUT_MS = 10_000;
/** Time allowed for a lost worker to show as peer closure, in ms. */
const CLOSURE_TIMEOUT_MS = 2_000;

let broker: Node;
const started: NodeWorker[] = [];

test.before.each(() => {
  broker = createNode({ driver: createWorkerDriver(), broker: true });
});

test.after.each(async () => {
  broker.close();
  await Promise.all(started.splice(0).map(({ worker }) => worker.terminate()));
});

function start(workerData: unknown, options = {}): NodeWorker {
  const nodeWorker = startNodeWorker(broker, fixture, {
    workerData,
    ...options,
  });
  started.push(nodeWorker);
  return nodeWorker;
}

function nextParcels(portal: Portal, count: number) {
  return firstValueFrom(
    portal.parcels$.pipe(take(count), toArray(), timeout(REPLY_TIMEOUT_MS)),
  );
}

function waitForPeerClosed(portal: Portal, timeoutMs: number) {
  return firstValueFrom(
    portal.status$.pipe(
      filter((status) => status.peerClosed),
      timeout(timeoutMs),
    ),
  );
}

test('ts worker echoes parcels in order', async () => {
  const { portals } = start({ mode: 'echo' });
  const portal = portals[0]!;
  for (let i = 0; i < 100; i++) portal.put(`parcel ${i}`);
  const echoed = await nextParcels(portal, 100);
  assert.equal(
    echoed.map((parcel) => parcel.text()),
    Array.from({ length: 100 }, (_, i) => `parcel ${i}`),
  );
  assert.is(broker.stats().links, 1);
});

test('echoed portal crosses the worker and back', async () => {
  const { portals } = start({ mode: 'echo' });
  const [local, travelling] = broker.openPortals();
  portals[0]!.put('carrier', [travelling]);
  const [carrier] = await nextParcels(portals[0]!, 1);
  const returned = carrier!.handles[0] as Portal;
  local.put('through');
  const [through] = await nextParcels(returned, 1);
  assert.is(through!.text(), 'through');
});

test('sandboxed worker gets memory from parent', async () => {
  const size = 3 * 1024 * 1024;
  const { portals } = start(
    { mode: 'memory', size },
    { canAllocate: false, allocationDelegate: true },
  );
  const [parcel] = await nextParcels(portals[0]!, 1);
  assert.not.match(parcel!.text(), /^error/, parcel!.text());
  const workerStats = JSON.parse(parcel!.text()) as Record<string, number>;
  const memory = (parcel!.handles[0] as { unbox(): unknown }).unbox();
  const bytes = (memory as SharedMemory).map();
  assert.ok(bytes.length >= size);
  let mismatches = 0;
  for (let i = 0; i < size; i++) if (bytes[i] !== ((i * 7) & 0xff)) mismatches++;
  assert.is(mismatches, 0);
  assert.ok(workerStats.memoryRequestsSent! >= 1);
  assert.is(workerStats.directAllocations, 0);
  assert.ok(broker.stats().memoryRequestsServed >= 1);
});

test('sandboxed worker without delegate is denied', async () => {
  const { portals } = start(
    { mode: 'memory', size: 1024 },
    { canAllocate: false },
  );
  const [parcel] = await nextParcels(portals[0]!, 1);
  assert.match(parcel!.text(), /PERMISSION_DENIED|permission/i);
  assert.is(broker.stats().memoryRequestsServed, 0);
});

test('terminated worker closes peer mid-stream', async () => {
  const nodeWorker = start({ mode: 'stream' });
  const portal = nodeWorker.portals[0]!;
  await nextParcels(portal, 20);
  const terminatedAt = Date.now();
  void nodeWorker.worker.terminate();
  const status = await waitForPeerClosed(portal, CLOSURE_TIMEOUT_MS);
  assert.ok(status.peerClosed);
  assert.ok(Date.now() - terminatedAt < CLOSURE_TIMEOUT_MS);
  assert.is(await nodeWorker.exited, 1);
  assert.throws(() => portal.put('late'), /peer|closed|NOT_FOUND/i);
});

test('crashed worker closes peer and records error', async () => {
  const nodeWorker = start({ mode: 'crash' });
  const portal = nodeWorker.portals[0]!;
  portal.put('crash now');
  const status = await waitForPeerClosed(portal, REPLY_TIMEOUT_MS);
  assert.ok(status.peerClosed);
  assert.is(await nodeWorker.exited, 1);
  assert.match(String(nodeWorker.error), /fixture crash on request/);
});

test('nested worker shares the broker', async () => {
  const { portals } = start({ mode: 'relay' }, { label: 'relay' });
  const portal = portals[0]!;
  portal.put('ping');
  const [reply] = await nextParcels(portal, 1);
  const [relayName, echoed] = reply!.text().split(' ');
  assert.is(echoed, 'ping');
  assert.match(relayName!, /^[0-9a-f]{32}$/);
  // The broker links the relay and, by referral, the nested worker.
  assert.is(broker.stats().links, 2);
});

test('startNodeWorker rejects invalid arguments', () => {
  const inProcess = createNode({ driver: drivers.sync(), broker: true });
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return error instanceof IpczError ? error.code : String(error);
    }
    return 'no error';
  };
  assert.is(code(() => startNodeWorker(inProcess, fixture)), 'INVALID_ARGUMENT');
  assert.is(
    code(() => startNodeWorker(broker, fixture, { portals: 0 })),
    'INVALID_ARGUMENT',
  );
  assert.is(
    code(() => startNodeWorker(broker, fixture, { portals: 13 })),
    'OUT_OF_RANGE',
  );
  assert.is(code(() => startNodeWorker(broker, '')), 'INVALID_ARGUMENT');
  assert.is(code(() => connectToParent()), 'FAILED_PRECONDITION');
  inProcess.close();
});

test.run();
