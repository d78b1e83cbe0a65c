// Tests of the harness's worker modes: a node body that fails in a worker,
// nested or not, fails its scenario with the body's message and stack,
// and teardown ends every worker, nested ones included. One scenario runs
// a referral across nested workers in every mode.
import { isMainThread } from 'node:worker_threads';
import { firstValueFrom } from 'rxjs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { SharedMemory } from '../../src/index';
import {
  boxAt,
  multinodeSuite,
  portalAt,
  runScenario,
  verifyEndToEnd,
  waitForDead,
  waitForPeerClosed,
  waitToGet,
  WAIT_TIMEOUT_MS,
  WORKER_MODES,
  type DriverMode,
  type MainBody,
  type NodeContext,
} from './harness';

/** Period of the heartbeat written into shared memory, in ms. */
const HEARTBEAT_MS = 5;
/** Beats the main body waits for before it ends the scenario. */
const HEARTBEATS_BEFORE_TEARDOWN = 3;
/** Time after teardown in which no beat may come, in ms. */
const SILENCE_MS = 200;

/** Returns the shared 32-bit counter at the start of `memory`. */
function counterOf(memory: SharedMemory): Int32Array {
  const bytes = memory.map();
  return new Int32Array(bytes.buffer, bytes.byteOffset, 1);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export const nodes = {
  async failAssertion(ctx: NodeContext) {
    assert.is(ctx.portals.length, 3, 'deliberate failure: portal count');
  },

  // Returns at once; the subscription throws when a parcel comes.
  async throwInSubscription(ctx: NodeContext) {
    ctx.portals[0]!.parcels$.subscribe(() => {
      throw new Error('deliberate failure in a subscription');
    });
  },

  async referFailingChild(ctx: NodeContext) {
    const [child] = ctx.spawnReferred('failAssertion');
    await waitForPeerClosed(child!, 'referrer-to-child portal');
  },

  // Passes the shared memory from the broker on to a referred child,
  // which beats on it.
  async referHeartbeat(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [child] = ctx.spawnReferred('heartbeat');
    const parcel = await waitToGet(broker!, 'referrer-to-broker portal');
    child!.put('memory', parcel.handles);
  },

  // Adds one to the shared counter every HEARTBEAT_MS until its thread
  // ends, long after the body returned.
  async heartbeat(ctx: NodeContext) {
    const [parent] = ctx.portals;
    const parcel = await waitToGet(parent!, 'child-to-referrer portal');
    const counter = counterOf(boxAt(parcel).unbox() as SharedMemory);
    setInterval(() => Atomics.add(counter, 0, 1), HEARTBEAT_MS);
  },

  async referrer(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [child] = ctx.spawnReferred('referredChild');
    const fromChild = await waitToGet(child!, 'referrer-to-child portal');
    broker!.put('from my child', fromChild.handles);
    await waitForPeerClosed(broker!, 'referrer-to-broker portal');
  },

  async referredChild(ctx: NodeContext) {
    const [parent] = ctx.portals;
    const [mine, theirs] = ctx.node.openPortals();
    parent!.put('', [theirs]);
    await verifyEndToEnd(mine, 'child-to-main portal');
    const memory = await firstValueFrom(ctx.node.allocateSharedMemory(8));
    mine.put('memory', [ctx.node.box(memory)]);
    await waitForDead(mine, 'child-to-main portal');
  },
};

const multinodeTest = multinodeSuite(
  'WorkerModesTest',
  import.meta.url,
  nodes,
);

multinodeTest('ReferredChildEndToEnd', async (t) => {
  const [referrer] = t.spawn('referrer');
  const forwarded = await waitToGet(referrer!, 'broker-to-referrer portal');
  assert.is(forwarded.text(), 'from my child');
  const child = portalAt(forwarded);
  await verifyEndToEnd(child, 'main-to-child portal');
  const parcel = await waitToGet(child, 'main-to-child portal');
  const memory = boxAt(parcel).unbox() as SharedMemory;
  assert.ok(memory.size >= 8);
  child.close();
  referrer!.close();
});

multinodeTest.run();

/** Runs `body` as a scenario in `mode`. */
function run(name: string, mode: DriverMode, body: MainBody): Promise<void> {
  const scenario = `WorkerModes.${name}/${mode}`;
  return runScenario(scenario, mode, body, import.meta.url);
}

/** Runs `body` as a scenario in `mode` and returns how it failed. */
async function expectScenarioFailure(
  name: string,
  mode: DriverMode,
  body: MainBody,
): Promise<Error & { details?: unknown }> {
  try {
    await run(name, mode, body);
  } catch (error) {
    assert.instance(error, Error);
    return error as Error;
  }
  throw new Error(`scenario ${name}/${mode} passed, expected a failure`);
}

const spawnFailing: MainBody = async (t) => {
  t.spawn('failAssertion');
};

const triggerUncaught: MainBody = async (t) => {
  const [client] = t.spawn('throwInSubscription');
  client!.put('trigger');
  await waitToGet(client!, 'broker portal');
};

const spawnFailingNested: MainBody = async (t) => {
  t.spawn('referFailingChild');
};

/**
 * Starts a heartbeat in a nested worker and waits for a few beats, then
 * throws when `fail` is set. Returns the shared counter of beats.
 */
function runHeartbeat(mode: DriverMode, fail: boolean) {
  let counter: Int32Array | undefined;
  const finished = run('Heartbeat', mode, async (t) => {
    const memory = await firstValueFrom(t.node.allocateSharedMemory(8));
    counter = counterOf(memory);
    const [referrer] = t.spawn('referHeartbeat');
    referrer!.put('memory', [t.node.box(memory)]);
    // Bounded, so the loop ends even when the scenario failed without it.
    const deadline = Date.now() + WAIT_TIMEOUT_MS;
    while (Atomics.load(counter, 0) < HEARTBEATS_BEFORE_TEARDOWN) {
      if (Date.now() > deadline) throw new Error('timed out waiting for beats');
      await sleep(HEARTBEAT_MS);
    }
    if (fail) throw new Error('deliberate failure of the main body');
  });
  return { finished, counter: () => counter! };
}

/** Checks that no beat comes for SILENCE_MS. */
async function expectNoMoreBeats(counter: Int32Array): Promise<void> {
  const afterTeardown = Atomics.load(counter, 0);
  assert.ok(afterTeardown >= HEARTBEATS_BEFORE_TEARDOWN);
  await sleep(SILENCE_MS);
  assert.is(Atomics.load(counter, 0), afterTeardown, 'a beat after teardown');
}

// Workers import this module for its node bodies, and only the main
// thread may run these tests: in a worker they would start more workers.
if (isMainThread) {
  const test = suite('worker mode failures');
  for (const mode of WORKER_MODES) {
    test(`failed body fails scenario/${mode}`, async () => {
      const failure = await expectScenarioFailure('Failed', mode, spawnFailing);
      assert.match(
        failure.message,
        'node body failAssertion on node-2 (in a worker) failed: ' +
          'deliberate failure: portal count',
      );
      assert.match(failure.stack ?? '', 'worker-modes.test.ts');
      assert.type(failure.details, 'string', 'the assertion diff');
    });

    test(`uncaught worker error fails scenario/${mode}`, async () => {
      const failure = await expectScenarioFailure(
        'Uncaught',
        mode,
        triggerUncaught,
      );
      assert.match(failure.message, 'throwInSubscription on node-2');
      assert.match(failure.message, 'deliberate failure in a subscription');
    });

    test(`nested body failure fails scenario/${mode}`, async () => {
      const failure = await expectScenarioFailure(
        'Nested',
        mode,
        spawnFailingNested,
      );
      assert.match(
        failure.message,
        'node body failAssertion on node-2.1 (in a worker) failed',
      );
    });

    test(`teardown ends nested workers/${mode}`, async () => {
      const heartbeat = runHeartbeat(mode, false);
      await heartbeat.finished;
      await expectNoMoreBeats(heartbeat.counter());
    });

    test(`teardown after failure ends workers/${mode}`, async () => {
      const heartbeat = runHeartbeat(mode, true);
      const error = await heartbeat.finished.then(() => null, (e) => e);
      assert.instance(error, Error);
      assert.match(String(error), 'deliberate failure of the main body');
      await expectNoMoreBeats(heartbeat.counter());
    });
  }

  test.run();
}
