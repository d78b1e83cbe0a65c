// BoxTest: boxed shared memory and application values, kept locally and
// sent between nodes, alone or beside portals.
import { firstValueFrom } from 'rxjs';
import * as assert from 'uvu/assert';
import type { Node, SharedMemory } from '../../src/index';
import {
  boxAt,
  expectIpczError,
  multinodeSuite,
  portalAt,
  verifyEndToEnd,
  waitForDead,
  waitForPeerClosed,
  waitToGet,
  waitToGetText,
  type NodeContext,
} from './harness';

const BOX_ROUND_TRIPS = 50;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function allocateText(node: Node, text: string): Promise<SharedMemory> {
  const memory = await firstValueFrom(node.allocateSharedMemory(64));
  encoder.encodeInto(text, memory.map());
  return memory;
}

function readText(memory: SharedMemory, length: number): string {
  return decoder.decode(memory.map().subarray(0, length));
}

export const nodes = {
  // Reads the memory in the box it gets, writes a reply into the same
  // region and reports to the broker.
  async answerInMemory(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const parcel = await waitToGet(broker!, 'client portal');
    const memory = boxAt(parcel).unbox() as SharedMemory;
    assert.is(readText(memory, 5), 'hello');
    encoder.encodeInto('reply', memory.map());
    broker!.put('written');
    await waitForPeerClosed(broker!, 'client portal');
  },

  async replyOnSentPortal(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const parcel = await waitToGet(broker!, 'client portal');
    assert.is(parcel.handles.length, 2);
    const value = boxAt(parcel, 0).unbox() as { greeting: string };
    const portal = portalAt(parcel, 1);
    portal.put(`${value.greeting} back`);
    await waitForDead(portal, 'received portal');
    await waitForPeerClosed(broker!, 'client portal');
  },

  // Bounces every box that arrives on the route from the broker back to
  // where it came from, after adding one to its counter.
  async bounceBoxes(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const route = portalAt(await waitToGet(broker!, 'bouncer portal'));
    for (let i = 0; i < BOX_ROUND_TRIPS; i++) {
      const parcel = await waitToGet(route, 'route to the sender');
      const contents = boxAt(parcel).unbox();
      if (parcel.text() === 'memory') {
        const memory = contents as SharedMemory;
        memory.map()[0]! += 1;
        route.put('memory', [ctx.node.box(memory)]);
      } else {
        const { count } = contents as { count: number };
        route.put('value', [ctx.node.box({ count: count + 1 })]);
      }
    }
    await verifyEndToEnd(route, 'route to the sender');
    await waitForDead(route, 'route to the sender');
    await waitForPeerClosed(broker!, 'bouncer portal');
  },

  async sendBoxes(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const route = portalAt(await waitToGet(broker!, 'sender portal'));
    const memory = await firstValueFrom(ctx.node.allocateSharedMemory(16));
    let count = 0;
    for (let i = 0; i < BOX_ROUND_TRIPS; i++) {
      // Alternates driver objects and application values, which cross a
      // transport differently.
      if (i % 2 === 0) {
        route.put('memory', [ctx.node.box(memory)]);
        const back = boxAt(await waitToGet(route, 'route to the bouncer'));
        const returned = back.unbox() as SharedMemory;
        assert.is(returned.map()[0], i / 2 + 1);
      } else {
        route.put('value', [ctx.node.box({ count })]);
        const back = boxAt(await waitToGet(route, 'route to the bouncer'));
        count = (back.unbox() as { count: number }).count;
        assert.is(count, (i + 1) / 2);
      }
    }
    await verifyEndToEnd(route, 'route to the bouncer');
    route.close();
    broker!.put('done');
    await waitForPeerClosed(broker!, 'sender portal');
  },
};

const multinodeTest = multinodeSuite('BoxTest', import.meta.url, nodes);

multinodeTest('BoxAndUnbox', async (t) => {
  const memory = await allocateText(t.node, 'blob');
  const box = t.node.box(memory);
  const unboxed = box.unbox() as SharedMemory;
  assert.is(readText(unboxed, 4), 'blob');
  expectIpczError(() => box.unbox(), 'INVALID_ARGUMENT', 'a second unbox');
  assert.equal(t.node.box({ a: [1, 2] }).unbox(), { a: [1, 2] });
});

multinodeTest('CloseBox', async (t) => {
  const box = t.node.box(await allocateText(t.node, 'blob'));
  box.close();
  expectIpczError(() => box.peek(), 'INVALID_ARGUMENT', 'peek after close');
  expectIpczError(() => box.unbox(), 'INVALID_ARGUMENT', 'unbox after close');
  const [a, b] = t.node.openPortals();
  expectIpczError(
    () => a.put('closed box', [box]),
    'INVALID_ARGUMENT',
    'put of a closed box',
  );
  assert.is(b.status().localParcels, 0, 'the failed put sent nothing');
});

multinodeTest('Peek', async (t) => {
  const box = t.node.box(await allocateText(t.node, 'peek'));
  for (let i = 0; i < 3; i++) {
    assert.is(readText(box.peek() as SharedMemory, 4), 'peek');
  }
  assert.is(readText(box.unbox() as SharedMemory, 4), 'peek');
  expectIpczError(() => box.peek(), 'INVALID_ARGUMENT', 'peek after unbox');
});

multinodeTest('TransferBox', async (t) => {
  const [client] = t.spawn('answerInMemory');
  const memory = await allocateText(t.node, 'hello');
  const box = t.node.box(memory);
  client!.put('', [box]);
  expectIpczError(() => box.unbox(), 'INVALID_ARGUMENT', 'unbox of a sent box');
  assert.is(await waitToGetText(client!, 'broker portal'), 'written');
  // Both nodes mapped the same region, so the client's write shows here.
  assert.is(readText(memory, 5), 'reply');
  client!.close();
});

multinodeTest('TransferBoxAndPortal', async (t) => {
  const [client] = t.spawn('replyOnSentPortal');
  const [mine, theirs] = t.node.openPortals();
  client!.put('', [t.node.box({ greeting: 'hi' }), theirs]);
  assert.is(await waitToGetText(mine, 'kept portal'), 'hi back');
  mine.close();
  client!.close();
});

multinodeTest('TransferBoxBetweenNonBrokers', async (t) => {
  const [sender] = t.spawn('sendBoxes');
  const [bouncer] = t.spawn('bounceBoxes');
  const [a, b] = t.node.openPortals();
  sender!.put('', [a]);
  bouncer!.put('', [b]);
  assert.is(await waitToGetText(sender!, 'broker-to-sender portal'), 'done');
  sender!.close();
  bouncer!.close();
});

multinodeTest.run();
