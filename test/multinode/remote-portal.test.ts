// RemotePortalTest: routes whose portals live on different nodes, portals
// that travel between nodes, and closure or node loss along such routes.
// No scenario here depends on when route reduction removes proxies.
import * as assert from 'uvu/assert';
import type { Portal } from '../../src/index';
import {
  boxAt,
  firstMismatch,
  multinodeSuite,
  nextParcelOrDead,
  numbered,
  portalAt,
  receiveTexts,
  verifyEndToEnd,
  waitForDead,
  waitForPeerClosed,
  waitToGet,
  waitToGetText,
  type NodeContext,
} from './harness';

const HOP_MESSAGES = 100;
const BACK_AND_FORTH_ROUNDS = 100;
const HUGE_PORTAL_COUNT = 1000;
const STRESS_CLIENTS = 6;
const STRESS_ROUNDS = 3;
const STRESS_MESSAGES_PER_HOP = 5;

/**
 * Takes each portal the broker sends on `broker`, puts a few numbered
 * parcels into it and sends it back on `broker`, until the broker closes.
 */
async function relayTravellers(broker: Portal, lane: number): Promise<void> {
  for (;;) {
    const parcel = await nextParcelOrDead(broker, `relay portal ${lane}`);
    if (parcel === null) return;
    const portal = portalAt(parcel);
    const [tag, nextText] = parcel.text().split(':') as [string, string];
    let next = Number(nextText);
    for (let i = 0; i < STRESS_MESSAGES_PER_HOP; i++) {
      portal.put(`${tag}${next++}`);
    }
    broker.put(`${tag}:${next}`, [portal]);
  }
}

export const nodes = {
  async basicClient(ctx: NodeContext) {
    const [broker] = ctx.portals;
    assert.is(await waitToGetText(broker!, 'client portal'), 'hello client');
    broker!.put('hello broker');
    await waitForPeerClosed(broker!, 'client portal');
  },

  async endToEndOnReceivedPortal(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const parcel = await waitToGet(broker!, 'client portal');
    const portal = portalAt(parcel);
    await verifyEndToEnd(portal, 'received portal');
    await waitForDead(portal, 'received portal');
    await waitForPeerClosed(broker!, 'client portal');
  },

  // Creates a pair, sends one end through the broker to the other client
  // and exchanges HOP_MESSAGES parcels each way on it.
  async hopSource(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [mine, theirs] = ctx.node.openPortals();
    broker!.put('for the other client', [theirs]);
    for (const text of numbered('from source ', HOP_MESSAGES)) mine.put(text);
    const received = await receiveTexts(mine, HOP_MESSAGES, 'source portal');
    assert.equal(received, numbered('from sink ', HOP_MESSAGES));
    mine.close();
    await waitForPeerClosed(broker!, 'source-to-broker portal');
  },

  async hopSink(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const portal = portalAt(await waitToGet(broker!, 'sink-to-broker portal'));
    for (const text of numbered('from sink ', HOP_MESSAGES)) portal.put(text);
    const received = await receiveTexts(portal, HOP_MESSAGES, 'sink portal');
    assert.equal(received, numbered('from source ', HOP_MESSAGES));
    await waitForDead(portal, 'sink portal');
    broker!.put('sink done');
    await waitForPeerClosed(broker!, 'sink-to-broker portal');
  },

  async bounceBack(ctx: NodeContext) {
    const [broker] = ctx.portals;
    for (let i = 0; i < BACK_AND_FORTH_ROUNDS; i++) {
      const parcel = await waitToGet(broker!, 'client portal');
      broker!.put(parcel.text(), parcel.handles);
    }
    await waitForPeerClosed(broker!, 'client portal');
  },

  // Opens HUGE_PORTAL_COUNT pairs and sends one end of each, with a box,
  // to the other client; then waits for a reply on every pair.
  async portalSource(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [route] = (await waitToGet(broker!, 'source portal')).handles;
    const toSink = route as Portal;
    const locals: Portal[] = [];
    for (let i = 0; i < HUGE_PORTAL_COUNT; i++) {
      const [local, remote] = ctx.node.openPortals();
      locals.push(local);
      toSink.put(`${i}`, [remote, ctx.node.box({ index: i })]);
    }
    for (const [i, local] of locals.entries()) {
      const reply = await waitToGetText(local, `local portal ${i}`);
      assert.is(reply, `reply ${i}`);
      local.close();
    }
    toSink.close();
    await waitForPeerClosed(broker!, 'source portal');
  },

  async portalSink(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const fromSource = portalAt(await waitToGet(broker!, 'sink portal'));
    const closures: Promise<unknown>[] = [];
    for (let i = 0; i < HUGE_PORTAL_COUNT; i++) {
      const parcel = await waitToGet(fromSource, 'portal from source');
      assert.is(parcel.text(), `${i}`);
      const box = boxAt(parcel, 1);
      assert.equal(box.unbox(), { index: i });
      const portal = portalAt(parcel, 0);
      portal.put(`reply ${i}`);
      closures.push(waitForDead(portal, `received portal ${i}`));
    }
    await Promise.all(closures);
    await waitForDead(fromSource, 'portal from source');
    broker!.put('sink done');
    await waitForPeerClosed(broker!, 'sink portal');
  },

  // Relays travellers on each of its initial portals until the broker
  // closes them. Each traveller has its own initial portal, because two
  // may stop here at once and each waiter must get its own one back.
  async stressRelay(ctx: NodeContext) {
    await Promise.all(
      ctx.portals.map((broker, lane) => relayTravellers(broker, lane)),
    );
  },

  async holdRouteThenWaitForClosure(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const portal = portalAt(await waitToGet(broker!, 'client portal'));
    await verifyEndToEnd(portal, 'held portal');
    await waitForDead(portal, 'held portal');
    broker!.put('saw closure');
    await waitForPeerClosed(broker!, 'client portal');
  },

  async forwardOnce(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const parcel = await waitToGet(broker!, 'proxy client portal');
    broker!.put('forwarded', parcel.handles);
    await waitForPeerClosed(broker!, 'proxy client portal');
  },

  async endToEndThenDie(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const portal = portalAt(await waitToGet(broker!, 'dying client portal'));
    await verifyEndToEnd(portal, 'portal on the dying node');
    ctx.node.close();
  },
};

const multinodeTest = multinodeSuite(
  'RemotePortalTest',
  import.meta.url,
  nodes,
);

multinodeTest('BasicConnection', async (t) => {
  const [client] = t.spawn('basicClient');
  client!.put('hello client');
  assert.is(await waitToGetText(client!, 'broker portal'), 'hello broker');
  client!.close();
});

multinodeTest('PortalTransfer', async (t) => {
  const [client] = t.spawn('endToEndOnReceivedPortal');
  const [mine, theirs] = t.node.openPortals();
  client!.put('', [theirs]);
  await verifyEndToEnd(mine, 'kept portal');
  mine.close();
  client!.close();
});

multinodeTest('MultipleHops', async (t) => {
  const [source] = t.spawn('hopSource');
  const [sink] = t.spawn('hopSink');
  const parcel = await waitToGet(source!, 'broker-to-source portal');
  sink!.put('', [portalAt(parcel)]);
  assert.is(await waitToGetText(sink!, 'broker-to-sink portal'), 'sink done');
  source!.close();
  sink!.close();
});

multinodeTest('TransferBackAndForth', async (t) => {
  const [client] = t.spawn('bounceBack');
  const [kept, moving] = t.node.openPortals();
  let traveller = moving;
  for (let i = 0; i < BACK_AND_FORTH_ROUNDS; i++) {
    client!.put(`${i}`, [traveller]);
    const parcel = await waitToGet(client!, 'broker portal');
    assert.is(parcel.text(), `${i}`);
    traveller = portalAt(parcel);
  }
  // Both ends are on the broker again.
  await Promise.all([
    verifyEndToEnd(kept, 'kept portal'),
    verifyEndToEnd(traveller, 'travelled portal'),
  ]);
  kept.close();
  await waitForDead(traveller, 'travelled portal');
  client!.close();
});

multinodeTest('HugeNumberOfPortals', async (t) => {
  const [source] = t.spawn('portalSource');
  const [sink] = t.spawn('portalSink');
  const [a, b] = t.node.openPortals();
  source!.put('', [a]);
  sink!.put('', [b]);
  assert.is(await waitToGetText(sink!, 'broker-to-sink portal'), 'sink done');
  source!.close();
  sink!.close();
});

multinodeTest('RoutingStressTest', async (t) => {
  // One initial portal per traveller on each relay: p's stops use
  // portal 0 and q's portal 1.
  const relays = Array.from({ length: STRESS_CLIENTS }, () =>
    t.spawn('stressRelay', { portals: 2 }),
  );
  const [p, q] = t.node.openPortals();
  const hops = STRESS_CLIENTS * STRESS_ROUNDS;
  const total = hops * STRESS_MESSAGES_PER_HOP;

  // Each portal visits every relay STRESS_ROUNDS times, one at a time,
  // and puts numbered parcels at each stop.
  const travel = async (
    portal: Portal,
    tag: string,
    offset: number,
    lane: number,
  ) => {
    let traveller = portal;
    let next = 0;
    for (let hop = 0; hop < hops; hop++) {
      const index = (hop + offset) % STRESS_CLIENTS;
      const relay = relays[index]![lane]!;
      relay.put(`${tag}:${next}`, [traveller]);
      const parcel = await waitToGet(relay, `relay ${index} portal ${lane}`);
      const [, nextText] = parcel.text().split(':') as [string, string];
      next = Number(nextText);
      traveller = portalAt(parcel);
    }
    return traveller;
  };
  // The two portals travel at the same time over different relays, so
  // every stop of one sees the other's route change under it.
  const [homeP, homeQ] = await Promise.all([
    travel(p, 'p', 0, 0),
    travel(q, 'q', STRESS_CLIENTS / 2, 1),
  ]);

  const fromP = await receiveTexts(homeQ, total, 'q at home');
  const fromQ = await receiveTexts(homeP, total, 'p at home');
  assert.is(firstMismatch(fromP, numbered('p', total)), -1);
  assert.is(firstMismatch(fromQ, numbered('q', total)), -1);
  homeP.close();
  await waitForDead(homeQ, 'q at home');
  for (const portal of relays.flat()) portal.close();
});

multinodeTest('DisconnectThroughProxy', async (t) => {
  const [holder] = t.spawn('holdRouteThenWaitForClosure');
  const [proxy] = t.spawn('forwardOnce');
  const [dying] = t.spawn('endToEndThenDie');
  const [x, y] = t.node.openPortals();
  holder!.put('', [x]);
  // y reaches the dying node by way of the proxy client, which leaves
  // proxies there and on the broker until route reduction removes them.
  proxy!.put('', [y]);
  const forwarded = await waitToGet(proxy!, 'broker-to-proxy portal');
  dying!.put('', forwarded.handles);
  assert.is(await waitToGetText(holder!, 'broker-to-holder portal'), 'saw closure');
  for (const portal of [holder!, proxy!, dying!]) portal.close();
});

multinodeTest.run();
