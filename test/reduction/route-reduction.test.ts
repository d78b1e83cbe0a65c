import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Driver } from '../../src/drivers/driver';
import {
  createNode,
  drivers,
  type Node,
  type Portal,
} from '../../src/index';
import { nextParcel, until } from '../support/wait';

type Mode = 'sync' | 'async';
const modes: Mode[] = ['sync', 'async'];

function driverFor(mode: Mode): Driver {
  return mode === 'sync' ? drivers.sync() : drivers.async();
}

/** A broker A and clients, each with one portal pair to A. */
function network(mode: Mode, clients: string[]) {
  const driver = driverFor(mode);
  const broker = createNode({ driver, broker: true, label: 'A' });
  const nodes: Record<string, { node: Node; toBroker: Portal; fromBroker: Portal }> = {};
  for (const label of clients) {
    const node = createNode({ driver: driverFor(mode), label });
    const [t0, t1] = driver.createTransports();
    const [fromBroker] = broker.connect(t0, { portals: 1 });
    const [toBroker] = node.connect(t1, { portals: 1, toBroker: true });
    nodes[label] = { node, toBroker, fromBroker };
  }
  const all = () => [broker, ...Object.values(nodes).map((n) => n.node)];
  const close = () => all().forEach((node) => node.close());
  return { broker, nodes, all, close };
}

function brokerMessageCount(broker: Node): number {
  let total = 0;
  for (const name of [...broker['links'].keys()]) {
    const link = broker['links'].get(name);
    if (link) total += link.counters.received + link.counters.sent;
  }
  return total;
}

for (const mode of modes) {
  test(`B to A to C leaves no proxies (${mode})`, async () => {
    const net = network(mode, ['B', 'C']);
    const { B, C } = net.nodes;
    const [pb, travelling] = B.node.openPortals();
    B.toBroker.put('take this', [travelling]);
    const atA = (await nextParcel(B.fromBroker, 'portal at A')).handles[0] as Portal;
    C.fromBroker.put('take this too', [atA]);
    const pc = (await nextParcel(C.toBroker, 'portal at C')).handles[0] as Portal;

    pb.put('warm up');
    assert.is((await nextParcel(pc, 'first parcel')).text(), 'warm up');
    pc.put('and back');
    assert.is((await nextParcel(pb, 'first reply')).text(), 'and back');
    await until(
      () => net.all().every((node) => node.stats().proxies === 0),
      'proxies to go',
    );

    const before = brokerMessageCount(net.broker);
    pb.put('direct');
    assert.is((await nextParcel(pc, 'direct parcel')).text(), 'direct');
    assert.is(brokerMessageCount(net.broker), before, 'A saw no message');
    net.close();
  });

  test(`bypass keeps every parcel in order (${mode})`, async () => {
    const net = network(mode, ['B', 'C']);
    const { B, C } = net.nodes;
    const [pb, travelling] = B.node.openPortals();
    const count = 2000;
    let sent = 0;
    const sendSome = (n: number) => {
      for (let i = 0; i < n && sent < count; i++) pb.put(`${sent++}`);
    };
    sendSome(100);
    B.toBroker.put('', [travelling]);
    sendSome(100);
    const atA = (await nextParcel(B.fromBroker, 'portal at A')).handles[0] as Portal;
    C.fromBroker.put('', [atA]);
    sendSome(100);
    const pc = (await nextParcel(C.toBroker, 'portal at C')).handles[0] as Portal;
    const received: string[] = [];
    const replies: string[] = [];
    const done = new Promise<void>((resolve) => {
      pc.parcels$.subscribe((parcel) => {
        received.push(parcel.text());
        pc.put(`reply ${parcel.text()}`);
        if (received.length === count) resolve();
      });
    });
    pb.parcels$.subscribe((parcel) => replies.push(parcel.text()));
    while (sent < count) {
      sendSome(50);
      await new Promise((r) => setTimeout(r, 0));
    }
    await done;
    await until(() => replies.length === count, 'every reply');
    assert.equal(received, Array.from({ length: count }, (_, i) => `${i}`));
    assert.equal(
      replies,
      Array.from({ length: count }, (_, i) => `reply ${i}`),
    );
    await until(
      () => net.all().every((node) => node.stats().proxies === 0),
      'proxies to go',
    );
    pb.close();
    await until(() => pc.status().dead, 'peer closure');
    net.close();
  });

  test(`portal back and forth ends local (${mode})`, async () => {
    const net = network(mode, ['B']);
    const { B } = net.nodes;
    const [local, travelling] = net.broker.openPortals();
    let portal = travelling;
    for (let i = 0; i < 20; i++) {
      B.fromBroker.put('', [portal]);
      portal = (await nextParcel(B.toBroker, 'at B')).handles[0] as Portal;
      B.toBroker.put('', [portal]);
      portal = (await nextParcel(B.fromBroker, 'back at A')).handles[0] as Portal;
    }
    local.put('hello');
    assert.is((await nextParcel(portal, 'hello')).text(), 'hello');
    await until(
      () => net.all().every((node) => node.stats().proxies === 0),
      'proxies to go',
    );
    net.close();
  });
}

test.run();
