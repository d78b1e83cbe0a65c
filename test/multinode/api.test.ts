// API misuse on nodes and remote portals: each throws the IpczError code
// that ipcz returns for it, and a put that throws sends nothing.
import { firstValueFrom } from 'rxjs';
import * as assert from 'uvu/assert';
import { IpczError } from '../../src/index';
import {
  expectIpczError,
  IN_PROCESS_MODES,
  multinodeSuite,
  nextParcelOrDead,
  waitForDead,
  waitForPeerClosed,
  waitToGet,
  waitToGetText,
  withTimeout,
  type NodeContext,
} from './harness';

export const nodes = {
  async echoUntilClosed(ctx: NodeContext) {
    const [broker] = ctx.portals;
    for (;;) {
      const parcel = await nextParcelOrDead(broker!, 'echo portal');
      if (parcel === null) return;
      broker!.put(parcel.data, parcel.handles);
    }
  },

  async putThenClose(ctx: NodeContext) {
    const [broker] = ctx.portals;
    broker!.put('only');
    broker!.close();
  },

  async sendForRejection(ctx: NodeContext) {
    const [broker] = ctx.portals;
    broker!.put('bad');
    await waitForDead(broker!, 'client portal');
  },
};

const multinodeTest = multinodeSuite('APITest', import.meta.url, nodes);

/**
 * Options of scenarios whose main body reads other nodes' objects through
 * `t.nodes`, which only the in-process modes have.
 */
const IN_PROCESS_ONLY = { modes: IN_PROCESS_MODES };

multinodeTest('PutMisuse', async (t) => {
  const [remote] = t.spawn('echoUntilClosed');
  const [a, b] = t.node.openPortals();
  expectIpczError(() => remote!.put('x', [remote!]), 'INVALID_ARGUMENT', 'self');
  expectIpczError(() => a.put('x', [b]), 'INVALID_ARGUMENT', 'local peer');
  expectIpczError(
    () => remote!.put('x', [a, a]),
    'INVALID_ARGUMENT',
    'a portal listed twice',
  );
  expectIpczError(
    () => remote!.put(42 as unknown as string),
    'INVALID_ARGUMENT',
    'a number as data',
  );
  const pending = b.beginPut(1);
  expectIpczError(
    () => remote!.put('x', [a, b]),
    'FAILED_PRECONDITION',
    'a portal with a pending put',
  );
  pending.abort();

  // Nothing was sent and both handles still work.
  a.put('still usable');
  assert.is(b.get().text(), 'still usable');
  remote!.put('echo', [b]);
  const echoed = await waitToGet(remote!, 'echo portal');
  assert.is(echoed.text(), 'echo');
  expectIpczError(() => b.put('x'), 'INVALID_ARGUMENT', 'put on a sent portal');

  remote!.close();
  expectIpczError(() => remote!.put('x'), 'INVALID_ARGUMENT', 'put after close');
  expectIpczError(() => remote!.close(), 'INVALID_ARGUMENT', 'a second close');
  a.close();
});

multinodeTest('GetMisuse', async (t) => {
  const [remote] = t.spawn('putThenClose');
  await waitForPeerClosed(remote!, 'broker portal');
  expectIpczError(
    () => remote!.beginPut(1),
    'NOT_FOUND',
    'beginPut with a closed peer',
  );
  expectIpczError(() => remote!.put('x'), 'NOT_FOUND', 'put to a closed peer');

  assert.is(remote!.get().text(), 'only');
  expectIpczError(() => remote!.get(), 'NOT_FOUND', 'get from a dead portal');
  expectIpczError(() => remote!.beginGet(), 'NOT_FOUND', 'beginGet when dead');
  remote!.close();

  const [a] = t.node.openPortals();
  expectIpczError(() => a.get(), 'UNAVAILABLE', 'get of an empty queue');
  expectIpczError(() => a.beginGet(), 'UNAVAILABLE', 'beginGet when empty');

  const subscription = a.parcels$.subscribe();
  const second = firstValueFrom(a.parcels$).then(
    () => null,
    (error: unknown) => error,
  );
  const error = await withTimeout(second, 'a second parcels$ subscriber');
  assert.ok(error instanceof IpczError);
  assert.is(error.code, 'FAILED_PRECONDITION');
  subscription.unsubscribe();
});

multinodeTest('NodeMisuse', async (t) => {
  const [transport] = t.driver.createTransports();
  expectIpczError(
    () => t.node.connect(transport, { portals: 0 }),
    'INVALID_ARGUMENT',
    'connect with no portals',
  );
  expectIpczError(
    () => t.node.connect(transport, { portals: 1, inheritBroker: true }),
    'INVALID_ARGUMENT',
    'a broker connecting with inheritBroker',
  );
  expectIpczError(
    () => t.node.allocateSharedMemory(0),
    'INVALID_ARGUMENT',
    'allocation of 0 bytes',
  );
  expectIpczError(
    () => t.node.box(undefined),
    'INVALID_ARGUMENT',
    'a box of nothing',
  );
  expectIpczError(
    () => t.node.openPortals()[0].trap({ aboveMinLocalParcels: -1 }),
    'INVALID_ARGUMENT',
    'a negative trap threshold',
  );
});

// Compares the bad message's sender with the name of t.nodes[1].
multinodeTest('RejectParcels', IN_PROCESS_ONLY, async (t) => {
  const [a, b] = t.node.openPortals();
  a.put('local');
  expectIpczError(
    () => b.get().reject('no reason'),
    'FAILED_PRECONDITION',
    'rejecting a local parcel',
  );

  const [remote] = t.spawn('sendForRejection');
  const parcel = await waitToGet(remote!, 'broker portal');
  parcel.reject('the test rejects this parcel');
  const bad = await withTimeout(
    firstValueFrom(t.badMessages$),
    'a bad message report',
  );
  assert.is(bad.reason, 'the test rejects this parcel');
  assert.is(bad.remote?.toString(), t.nodes[1]!.name?.toString());
  // Rejection drops the link, so the route dies at both ends.
  await waitForDead(remote!, 'broker portal');
  a.close();
  b.close();
});

multinodeTest('ClosedNodeMisuse', async (t) => {
  const [remote] = t.spawn('echoUntilClosed');
  remote!.put('ping');
  assert.is(await waitToGetText(remote!, 'broker portal'), 'ping');
  t.node.close();
  expectIpczError(
    () => t.node.openPortals(),
    'FAILED_PRECONDITION',
    'openPortals on a closed node',
  );
  expectIpczError(
    () => t.node.box({}),
    'FAILED_PRECONDITION',
    'box on a closed node',
  );
  await waitForDead(remote!, 'broker portal');
});

multinodeTest.run();
