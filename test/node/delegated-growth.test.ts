import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createNode,
  drivers,
  type Node,
  type Portal,
} from '../../src/index';
import { nextParcel, until } from '../support/wait';

for (const forcedBrokering of [false, true]) {
  const mode = forcedBrokering
    ? 'async-delegated-forced-brokering'
    : 'async-delegated';
  test(`many portals grow link memory through the delegate (${mode})`, async () => {
    const broker = createNode({
      driver: drivers.async({ forcedBrokering }),
      broker: true,
    });
    const clients = ['B', 'C'].map((label) => {
      const node = createNode({
        driver: drivers.async({ canAllocate: false, forcedBrokering }),
        label,
      });
      const [t0, t1] = broker.driver.createTransports();
      const [fromBroker] = broker.connect(t0, { portals: 1 });
      const [toBroker] = node.connect(t1, {
        portals: 1,
        toBroker: true,
        allocationDelegate: true,
      });
      return { node, fromBroker, toBroker };
    });
    const [b, c] = clients;
    const nodes: Node[] = [broker, b.node, c.node];

    // 300 portal pairs opened on B; one end of each goes to C through the
    // broker, with a 20 KB parcel already queued in it.
    const count = 300;
    const kept: Portal[] = [];
    for (let i = 0; i < count; i++) {
      const [here, there] = b.node.openPortals();
      here.put(new Uint8Array(20_000).fill(i % 251));
      b.toBroker.put(`${i}`, [there]);
      kept.push(here);
    }
    const arrived: Portal[] = [];
    for (let i = 0; i < count; i++) {
      const parcel = await nextParcel(b.fromBroker, 'portal at the broker');
      c.fromBroker.put(parcel.text(), parcel.handles);
    }
    for (let i = 0; i < count; i++) {
      const parcel = await nextParcel(c.toBroker, 'portal at C');
      assert.is(parcel.text(), `${i}`);
      arrived.push(parcel.handles[0] as Portal);
    }
    for (let i = 0; i < count; i++) {
      const data = (await nextParcel(arrived[i], `data on portal ${i}`)).data;
      assert.is(data.length, 20_000);
      assert.is(data[19_999], i % 251, `content on portal ${i}`);
      arrived[i].put('ack');
    }
    for (let i = 0; i < count; i++) {
      assert.is((await nextParcel(kept[i], `ack ${i}`)).text(), 'ack');
    }
    await until(
      () => nodes.every((node) => node.stats().proxies === 0),
      'proxies to go',
    );

    for (const client of [b.node, c.node]) {
      const stats = client.stats();
      assert.is(stats.directAllocations, 0, `${client.label} allocated`);
    }
    const sent = b.node.stats().memoryRequestsSent + c.node.stats().memoryRequestsSent;
    assert.ok(sent > 0, 'the clients asked their delegate for memory');
    assert.ok(broker.stats().memoryRequestsServed > 0, 'the broker served');
    for (const node of nodes) node.close();
  });
}

test.run();
