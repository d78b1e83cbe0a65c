/**
 * The browser scenario, run on a cross-origin isolated page: a broker on
 * the page, worker `a`, and worker `b`, which is sandboxed and delegates
 * allocation to the broker. A portal moves from `a` through the page to
 * `b`, and parcels and a shared memory region cross it. Terminating `a`
 * must then close the route's peer in `b`. Later tests start workers of their
 * own to check the other liveness paths. Tests run in order and build on
 * the state of earlier ones.
 */
import { filter, firstValueFrom, take, timeout, toArray } from 'rxjs';
import {
  connectToParent,
  createNode,
  createWebWorkerDriver,
  drivers,
  startWebNodeWorker,
  type Node,
  type Portal,
  type WebNodeWorker,
} from '../../src/web/index';
import { check, checkEqual, runTests, test, thrownCode } from './harness';

const WORKER_URL = '/dist/browser-pages/test/worker.js';
/** Time allowed for a reply from a worker, in ms. */
const REPLY_TIMEOUT_MS = 10_000;
/** Time allowed for a lost worker to show as peer closure, in ms. */
const CLOSURE_TIMEOUT_MS = 3_000;
const PARCEL_COUNT = 200;
/**
 * Heartbeats of workers whose termination a test waits for. Routes
 * reduce, so b links to a directly, and only a's heartbeats can tell b
 * that a was terminated.
 */
const FAST_HEARTBEAT = { intervalMs: 100, timeoutMs: 500 };
const ROUTE_PARCEL_COUNT = 50;

interface Reply {
  ok: boolean;
  error?: string;
  [key: string]: unknown;
}

let broker: Node;
let workerA: WebNodeWorker;
let workerB: WebNodeWorker;
const started: WebNodeWorker[] = [];

function start(
  label: string,
  options = {},
  url = WORKER_URL,
): WebNodeWorker {
  const nodeWorker = startWebNodeWorker(broker, url, {
    label,
    ...options,
  });
  started.push(nodeWorker);
  return nodeWorker;
}

function receive(portal: Portal, count: number) {
  return firstValueFrom(
    portal.parcels$.pipe(take(count), toArray(), timeout(REPLY_TIMEOUT_MS)),
  );
}

/** Sends a command on a worker's control portal; resolves with the reply. */
async function call(
  nodeWorker: WebNodeWorker,
  command: object,
  handles: Portal[] = [],
): Promise<{ reply: Reply; handles: unknown[] }> {
  const control = nodeWorker.portals[0]!;
  control.put(JSON.stringify(command), handles);
  const [parcel] = await receive(control, 1);
  const reply = JSON.parse(parcel!.text()) as Reply;
  if (!reply.ok) {
    throw new Error(`${JSON.stringify(command)} failed: ${reply.error}`);
  }
  return { reply, handles: parcel!.handles };
}

/** Resolves with the time until the peer of `portal` closes, in ms. */
async function timePeerClosure(portal: Portal): Promise<number> {
  const begin = performance.now();
  await firstValueFrom(
    portal.status$.pipe(
      filter((status) => status.peerClosed),
      timeout(CLOSURE_TIMEOUT_MS),
    ),
  );
  return Math.round(performance.now() - begin);
}

test('page is cross-origin isolated', async () => {
  check(globalThis.crossOriginIsolated === true, 'crossOriginIsolated');
  check(typeof SharedArrayBuffer === 'function', 'SharedArrayBuffer');
  broker = createNode({ driver: createWebWorkerDriver(), broker: true });
  check(broker.name !== null, 'the broker names itself');
});

test('invalid arguments are rejected', async () => {
  const inProcess = createNode({ driver: drivers.sync(), broker: true });
  checkEqual(
    thrownCode(() => startWebNodeWorker(inProcess, WORKER_URL)),
    'INVALID_ARGUMENT',
    'parent on another driver',
  );
  inProcess.close();
  checkEqual(
    thrownCode(() => startWebNodeWorker(broker, WORKER_URL, { portals: 0 })),
    'INVALID_ARGUMENT',
    'zero portals',
  );
  checkEqual(
    thrownCode(() => startWebNodeWorker(broker, WORKER_URL, { portals: 13 })),
    'OUT_OF_RANGE',
    'too many portals',
  );
  checkEqual(
    thrownCode(() =>
      createWebWorkerDriver({ heartbeat: { intervalMs: 100, timeoutMs: 50 } }),
    ),
    'INVALID_ARGUMENT',
    'heartbeat timeout below its interval',
  );
  checkEqual(
    thrownCode(() => connectToParent()),
    'FAILED_PRECONDITION',
    'connectToParent on the page',
  );
});

test('two workers connect to the broker', async () => {
  workerA = start('a', { heartbeat: FAST_HEARTBEAT });
  workerB = start('b', {
    canAllocate: false,
    allocationDelegate: true,
    heartbeat: FAST_HEARTBEAT,
  });
  await workerA.started;
  await workerB.started;
  const a = await call(workerA, { cmd: 'stats' });
  const b = await call(workerB, { cmd: 'stats' });
  check(/^[0-9a-f]{32}$/.test(String(a.reply.name)), 'a has a name');
  check(/^[0-9a-f]{32}$/.test(String(b.reply.name)), 'b has a name');
  check(a.reply.name !== b.reply.name, 'the names differ');
  checkEqual(broker.stats().links, 2, 'broker links');
});

test('parcels flow both ways in order', async () => {
  const control = workerA.portals[0]!;
  const sent = Array.from({ length: PARCEL_COUNT }, (_, i) => `page ${i}`);
  for (const text of sent) control.put(text);
  const echoed = await receive(control, PARCEL_COUNT);
  checkEqual(echoed.map((parcel) => parcel.text()), sent, 'echoed parcels');

  control.put(JSON.stringify({ cmd: 'burst', count: PARCEL_COUNT }));
  const burst = await receive(control, PARCEL_COUNT + 1);
  checkEqual(
    burst.slice(0, PARCEL_COUNT).map((parcel) => parcel.text()),
    Array.from({ length: PARCEL_COUNT }, (_, i) => `worker ${i}`),
    'parcels from the worker',
  );
  checkEqual(JSON.parse(burst[PARCEL_COUNT]!.text()), { ok: true }, 'reply');
});

test('portal moves from a through page to b', async () => {
  const opened = await call(workerA, { cmd: 'open' });
  checkEqual(opened.handles.length, 1, 'handles from a');
  const moving = opened.handles[0] as Portal;
  await call(workerB, { cmd: 'adopt' }, [moving]);

  await call(workerA, { cmd: 'send', count: ROUTE_PARCEL_COUNT });
  const atB = await call(workerB, {
    cmd: 'receive',
    count: ROUTE_PARCEL_COUNT,
  });
  checkEqual(
    atB.reply.texts,
    Array.from({ length: ROUTE_PARCEL_COUNT }, (_, i) => `a ${i}`),
    'parcels from a at b',
  );

  await call(workerB, { cmd: 'send', count: ROUTE_PARCEL_COUNT });
  const atA = await call(workerA, {
    cmd: 'receive',
    count: ROUTE_PARCEL_COUNT,
  });
  checkEqual(
    atA.reply.texts,
    Array.from({ length: ROUTE_PARCEL_COUNT }, (_, i) => `b ${i}`),
    'parcels from b at a',
  );
  const links = await call(workerB, { cmd: 'stats' });
  const bLinks = (links.reply.stats as Record<string, number>).links;
  return `page proxies: ${broker.stats().proxies}, links of b: ${bLinks}`;
});

test('sandboxed b shares delegated memory with a', async () => {
  const size = 64 * 1024;
  const served = broker.stats().memoryRequestsServed;
  const write = await call(workerB, { cmd: 'memory-write', size });
  const stats = write.reply.stats as Record<string, number>;
  check(Number(write.reply.size) >= size, `region of ${write.reply.size}`);
  check(stats.memoryRequestsSent! >= 1, 'b sent a memory request');
  checkEqual(stats.directAllocations, 0, 'direct allocations in b');
  check(
    broker.stats().memoryRequestsServed > served,
    'the broker served the request',
  );

  const read = await call(workerA, { cmd: 'memory-read' });
  checkEqual(read.reply.size, write.reply.size, 'region size at a');
  checkEqual(read.reply.mismatches, 0, 'bytes from b that a read');
  const back = await call(workerB, { cmd: 'memory-check' });
  checkEqual(back.reply.mismatches, 0, 'bytes from a that b read');
});

test('terminating a closes its peers', async () => {
  const waiting = call(workerB, {
    cmd: 'wait-peer-closed',
    timeoutMs: CLOSURE_TIMEOUT_MS,
  });
  const pageClosure = timePeerClosure(workerA.portals[0]!);
  workerA.terminate();
  const pageMs = await pageClosure;
  const { reply } = await waiting;
  checkEqual(broker.stats().links, 1, 'broker links after terminate');
  check(
    thrownCode(() => workerA.portals[0]!.put('late')) !== 'no error',
    'put after peer closure throws',
  );
  return `peer closed after ${pageMs} ms on the page, ${reply.afterMs} ms in b`;
});

test('closed worker node closes page peer', async () => {
  const nodeWorker = start('c');
  await call(nodeWorker, { cmd: 'stats' });
  const closure = timePeerClosure(nodeWorker.portals[0]!);
  await call(nodeWorker, { cmd: 'close-node' });
  return `peer closed after ${await closure} ms`;
});

test('heartbeat detects a raw terminate', async () => {
  const nodeWorker = start('d', { heartbeat: FAST_HEARTBEAT });
  await call(nodeWorker, { cmd: 'stats' });
  const closure = timePeerClosure(nodeWorker.portals[0]!);
  // Bypasses the helper, so only the heartbeat timeout can notice.
  nodeWorker.worker.terminate();
  return `peer closed after ${await closure} ms`;
});

test('missing worker script fails start', async () => {
  const nodeWorker = start('missing', {}, '/dist/browser-pages/none.js');
  const closure = timePeerClosure(nodeWorker.portals[0]!);
  let code = 'resolved';
  try {
    await nodeWorker.started;
  } catch (error) {
    code = String((error as { code?: unknown }).code);
  }
  checkEqual(code, 'UNAVAILABLE', 'started of a missing script');
  return `peer closed after ${await closure} ms`;
});

test('raw terminate matches close event support', async () => {
  // Without a heartbeat, only MessagePort's close event can reveal a
  // worker terminated behind the helper's back.
  const closeEventSupported = 'onclose' in MessagePort.prototype;
  const nodeWorker = start('e', { heartbeat: null });
  await call(nodeWorker, { cmd: 'stats' });
  nodeWorker.worker.terminate();
  let detected = true;
  try {
    await timePeerClosure(nodeWorker.portals[0]!);
  } catch {
    detected = false;
  }
  checkEqual(detected, closeEventSupported, 'detected without heartbeat');
  return `MessagePort close event supported: ${closeEventSupported}`;
});

test('closing the broker ends the workers', async () => {
  broker.close();
  for (const nodeWorker of started) nodeWorker.terminate();
  checkEqual(broker.stats().links, 0, 'broker links after close');
});

runTests();
