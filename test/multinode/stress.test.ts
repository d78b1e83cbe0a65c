// Heavy traffic across the broker and node loss in the middle of it.
import * as assert from 'uvu/assert';
import type { Portal, PortalStatus } from '../../src/index';
import {
  firstMismatch,
  multinodeSuite,
  numbered,
  portalAt,
  receiveTexts,
  waitForDead,
  waitForPeerClosed,
  waitToGet,
  waitToGetText,
  type NodeContext,
} from './harness';

const PARCEL_COUNT = 10_000;
const MID_STREAM_PARCELS = 200;

/**
 * Sends PARCEL_COUNT numbered parcels on `portal` and checks that the
 * peer's PARCEL_COUNT arrive complete and in order.
 */
async function exchange(portal: Portal, mine: string, theirs: string) {
  for (const text of numbered(mine, PARCEL_COUNT)) portal.put(text);
  const received = await receiveTexts(portal, PARCEL_COUNT, `${mine} portal`);
  assert.is(received.length, PARCEL_COUNT);
  assert.is(firstMismatch(received, numbered(theirs, PARCEL_COUNT)), -1);
}

/**
 * Records the status of `portal` until it is dead, then checks that the
 * peer closure was seen while a parcel was still queued, before death.
 */
async function expectPeerClosedThenDead(portal: Portal, label: string) {
  const statuses: PortalStatus[] = [];
  const subscription = portal.status$.subscribe((s) => statuses.push(s));
  const closed = await waitForPeerClosed(portal, label);
  assert.is(closed.dead, false, 'the farewell parcel is still queued');
  assert.is(await waitToGetText(portal, label), 'bye');
  await waitForDead(portal, label);
  subscription.unsubscribe();
  const firstClosed = statuses.findIndex((s) => s.peerClosed);
  const firstDead = statuses.findIndex((s) => s.dead);
  assert.ok(firstClosed >= 0, 'peerClosed was seen');
  assert.ok(firstDead > firstClosed, 'dead came after peerClosed');
}

export const nodes = {
  // Node B: creates the route, sends one end through the broker, and
  // exchanges parcels. The closing side sends a farewell parcel and closes.
  async routeCreator(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [mine, theirs] = ctx.node.openPortals();
    broker!.put('', [theirs]);
    const closer = await waitToGetText(broker!, 'B-to-broker portal');
    await exchange(mine, 'b', 'c');
    if (closer === 'B') {
      mine.put('bye');
      mine.close();
    } else {
      await expectPeerClosedThenDead(mine, 'B route portal');
    }
    broker!.put('B done');
    await waitForPeerClosed(broker!, 'B-to-broker portal');
  },

  async routeReceiver(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const parcel = await waitToGet(broker!, 'C-to-broker portal');
    const route = portalAt(parcel);
    await exchange(route, 'c', 'b');
    if (parcel.text() === 'C') {
      route.put('bye');
      route.close();
    } else {
      await expectPeerClosedThenDead(route, 'C route portal');
    }
    broker!.put('C done');
    await waitForPeerClosed(broker!, 'C-to-broker portal');
  },

  // Streams numbered parcels until the broker sends 'die', then closes
  // this node in the middle of the stream.
  async streamThenDie(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [mine, theirs] = ctx.node.openPortals();
    broker!.put('', [theirs]);
    let next = 0;
    while (broker!.status().localParcels === 0) {
      for (let i = 0; i < 20; i++) mine.put(`s${next++}`);
      // Yields to the event loop so that deliveries can run.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    assert.is(broker!.get().text(), 'die');
    ctx.node.close();
  },

  // Reads the stream in order, reports once MID_STREAM_PARCELS arrived,
  // and reads on until the route breaks.
  async readUntilBroken(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const route = portalAt(await waitToGet(broker!, 'reader portal'));
    let count = 0;
    await new Promise<void>((resolve, reject) => {
      route.parcels$.subscribe({
        next: (parcel) => {
          if (parcel.text() !== `s${count}`) {
            reject(new Error(`got ${parcel.text()}, expected s${count}`));
          }
          count++;
          if (count === MID_STREAM_PARCELS) broker!.put('midway');
        },
        error: reject,
        complete: resolve,
      });
    });
    assert.ok(route.status().dead);
    assert.ok(count >= MID_STREAM_PARCELS);
    broker!.put(`read ${count}`);
    await waitForPeerClosed(broker!, 'reader portal');
  },

  // Forwards one portal back to the broker, so the route crosses this
  // node, at least until route reduction bypasses it.
  async forwardOnce(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const parcel = await waitToGet(broker!, 'forwarder portal');
    broker!.put('', parcel.handles);
    await waitForPeerClosed(broker!, 'forwarder portal');
  },
};

const multinodeTest = multinodeSuite('StressTest', import.meta.url, nodes);

for (const closer of ['B', 'C']) {
  multinodeTest(`TenThousandParcelsViaBroker${closer}Closes`, async (t) => {
    const [b] = t.spawn('routeCreator');
    const [c] = t.spawn('routeReceiver');
    const route = await waitToGet(b!, 'broker-to-B portal');
    c!.put(closer, route.handles);
    b!.put(closer);
    assert.is(await waitToGetText(b!, 'broker-to-B portal'), 'B done');
    assert.is(await waitToGetText(c!, 'broker-to-C portal'), 'C done');
    b!.close();
    c!.close();
  });
}

multinodeTest('NodeClosedMidStream', async (t) => {
  const [streamer] = t.spawn('streamThenDie');
  const [forwarder] = t.spawn('forwardOnce');
  const [reader] = t.spawn('readUntilBroken');

  // The route starts as streamer -> broker -> forwarder -> broker ->
  // reader.
  const fromStreamer = await waitToGet(streamer!, 'broker-to-streamer portal');
  forwarder!.put('', fromStreamer.handles);
  const forwarded = await waitToGet(forwarder!, 'broker-to-forwarder portal');
  reader!.put('', forwarded.handles);

  assert.is(await waitToGetText(reader!, 'broker-to-reader portal'), 'midway');
  streamer!.put('die');
  const read = await waitToGetText(reader!, 'broker-to-reader portal');
  assert.ok(Number(read.split(' ')[1]) >= MID_STREAM_PARCELS);
  await waitForDead(streamer!, 'broker-to-streamer portal');
  for (const portal of [streamer!, forwarder!, reader!]) portal.close();
});

multinodeTest.run();
