// ConnectTest: how nodes connect to brokers, to each other through
// referrals and to other brokers, and how a failed or corrupted handshake
// ends in disconnection instead of a hang.
import { firstValueFrom } from 'rxjs';
import * as assert from 'uvu/assert';
import type { SharedMemory } from '../../src/index';
import {
  boxAt,
  GARBAGE,
  IN_PROCESS_MODES,
  multinodeSuite,
  portalAt,
  verifyEndToEnd,
  waitForDead,
  waitForPeerClosed,
  waitForTransportError,
  waitToGet,
  waitToGetText,
  withTimeout,
  type NodeContext,
} from './harness';

function requireTransport(ctx: NodeContext) {
  if (ctx.transport === null) throw new Error('expected a raw spawn');
  return ctx.transport;
}

export const nodes = {
  async endToEndThenPeerClosed(ctx: NodeContext) {
    const [broker] = ctx.portals;
    await verifyEndToEnd(broker!, 'client portal');
    await waitForPeerClosed(broker!, 'client portal');
    assert.ok(ctx.node.name?.isValid(), 'the broker named the client');
  },

  async fiveOfTwo(ctx: NodeContext) {
    assert.is(ctx.portals.length, 5);
    const [first, second, ...surplus] = ctx.portals;
    await verifyEndToEnd(first!, 'portal 0');
    await verifyEndToEnd(second!, 'portal 1');
    for (const [index, portal] of surplus.entries()) {
      const status = await waitForDead(portal, `surplus portal ${index + 2}`);
      assert.is(status.peerClosed, true);
    }
  },

  async expectDisconnect(ctx: NodeContext) {
    const status = await waitForDead(ctx.portals[0]!, 'client portal');
    assert.is(status.peerClosed, true);
  },

  async expectBadMessage(ctx: NodeContext) {
    await waitForDead(ctx.portals[0]!, 'client portal');
    const bad = await withTimeout(
      firstValueFrom(ctx.badMessages$),
      'a bad message report on the client',
    );
    assert.type(bad.reason, 'string');
  },

  async closeTransport(ctx: NodeContext) {
    ctx.node.driver.closeTransport(requireTransport(ctx));
  },

  async sendGarbage(ctx: NodeContext) {
    const transport = requireTransport(ctx);
    const failed = waitForTransportError(ctx.node.driver, transport);
    ctx.node.driver.transmit(transport, GARBAGE, []);
    await failed;
  },

  // Refers a child to the broker, then forwards to the main body a portal
  // whose other end the child holds.
  async referrer(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [child] = ctx.spawnReferred('referredChild');
    await verifyEndToEnd(child!, 'referrer-to-child portal');
    const fromChild = await waitToGet(child!, 'referrer-to-child portal');
    broker!.put('from my child', fromChild.handles);
    await waitForPeerClosed(broker!, 'referrer-to-broker portal');
    child!.close();
  },

  async referredChild(ctx: NodeContext) {
    const [parent] = ctx.portals;
    await verifyEndToEnd(parent!, 'child-to-referrer portal');
    assert.ok(ctx.node.name?.isValid(), 'the broker named the child');

    const [mine, theirs] = ctx.node.openPortals();
    parent!.put('', [theirs]);
    await verifyEndToEnd(mine, 'child-to-main portal');

    const memory = await firstValueFrom(ctx.node.allocateSharedMemory(64));
    new TextEncoder().encodeInto(ctx.node.name!.toString(), memory.map());
    mine.put('memory', [ctx.node.box(memory)]);
    await waitForDead(mine, 'child-to-main portal');
    await waitForPeerClosed(parent!, 'child-to-referrer portal');
  },

  async referGarbage(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [child] = ctx.spawnReferred('sendGarbage', { raw: true });
    await waitForDead(child!, 'portal to the bad referral');
    broker!.put('referral failed');
    await waitForPeerClosed(broker!, 'referrer-to-broker portal');
  },

  async referClosedTransport(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const [child] = ctx.spawnReferred('closeTransport', { raw: true });
    await waitForDead(child!, 'portal to the failed referral');
    broker!.put('referral failed');
    await waitForPeerClosed(broker!, 'referrer-to-broker portal');
  },

  async otherBroker(ctx: NodeContext) {
    const [broker] = ctx.portals;
    for (let i = 0; i < 10; i++) {
      const text = await waitToGetText(broker!, 'broker-to-broker portal');
      broker!.put(`pong ${text}`);
    }
    await waitForPeerClosed(broker!, 'broker-to-broker portal');
  },
};

const multinodeTest = multinodeSuite('ConnectTest', import.meta.url, nodes);

/**
 * Options of scenarios that run in the in-process modes only, with the
 * reason in a comment at each. Most read other nodes' objects through
 * `t.nodes`, which only the in-process modes have.
 */
const IN_PROCESS_ONLY = { modes: IN_PROCESS_MODES };

multinodeTest('BrokerToNonBroker', async (t) => {
  const [client] = t.spawn('endToEndThenPeerClosed');
  await verifyEndToEnd(client!, 'broker portal');
  client!.close();
});

multinodeTest('SurplusPortals', async (t) => {
  const portals = t.spawn('fiveOfTwo', { portals: 2, childPortals: 5 });
  assert.is(portals.length, 2);
  await verifyEndToEnd(portals[0]!, 'broker portal 0');
  await verifyEndToEnd(portals[1]!, 'broker portal 1');
  for (const portal of portals) portal.close();
});

// The broker closes its end before the child's worker activates the
// other; the worker_threads driver's close notice must still reach it.
multinodeTest('DisconnectWithoutBrokerHandshake', async (t) => {
  const transport = t.spawnWithTransport('expectDisconnect');
  t.driver.closeTransport(transport);
});

multinodeTest('DisconnectWithoutNonBrokerHandshake', async (t) => {
  const [client] = t.spawn('closeTransport', { raw: true });
  const status = await waitForDead(client!, 'broker portal');
  assert.is(status.peerClosed, true);
});

multinodeTest('DisconnectOnBadBrokerMessage', async (t) => {
  const transport = t.spawnWithTransport('expectBadMessage');
  t.driver.transmit(transport, GARBAGE, []);
  // The client rejects the garbage and closes its end.
  await waitForTransportError(t.driver, transport, 'broker transport');
});

multinodeTest('DisconnectOnBadNonBrokerMessage', async (t) => {
  const [client] = t.spawn('sendGarbage', { raw: true });
  await waitForDead(client!, 'broker portal');
  const bad = await withTimeout(
    firstValueFrom(t.badMessages$),
    'a bad message report on the broker',
  );
  assert.is(bad.remote, null, 'the sender had no name yet');
});

// Counts the nodes in t.nodes.
multinodeTest('NonBrokerToNonBroker', IN_PROCESS_ONLY, async (t) => {
  const referrers = [t.spawn('referrer'), t.spawn('referrer')];
  const childNames = new Set<string>();
  for (const [index, [referrer]] of referrers.entries()) {
    const label = `portal to referrer ${index}`;
    const forwarded = await waitToGet(referrer!, label);
    assert.is(forwarded.text(), 'from my child');
    const child = portalAt(forwarded);
    await verifyEndToEnd(child, `portal to child ${index}`);

    const parcel = await waitToGet(child, `portal to child ${index}`);
    assert.is(parcel.text(), 'memory');
    const memory = boxAt(parcel).unbox() as SharedMemory;
    const name = new TextDecoder().decode(memory.map().subarray(0, 32));
    childNames.add(name);
    child.close();
    referrer!.close();
  }
  assert.is(childNames.size, 2, 'each child has its own name');
  // Broker, two referrers and two children.
  assert.is(t.nodes.length, 5);
});

multinodeTest('BadNonBrokerReferral', async (t) => {
  const [referrer] = t.spawn('referGarbage');
  assert.is(await waitToGetText(referrer!, 'broker portal'), 'referral failed');
  referrer!.close();
});

multinodeTest('FailedNonBrokerReferral', async (t) => {
  const [referrer] = t.spawn('referClosedTransport');
  assert.is(await waitToGetText(referrer!, 'broker portal'), 'referral failed');
  referrer!.close();
});

// Reads the other broker's node through t.nodes.
multinodeTest('BrokerToBroker', IN_PROCESS_ONLY, async (t) => {
  const [other] = t.spawnBroker('otherBroker');
  for (let i = 0; i < 10; i++) {
    other!.put(`${i}`);
    assert.is(await waitToGetText(other!, 'broker portal'), `pong ${i}`);
  }
  const otherNode = t.nodes[1]!;
  assert.ok(otherNode.isBroker);
  assert.not.equal(otherNode.name?.toString(), t.node.name?.toString());
  other!.close();
});

multinodeTest.run();
