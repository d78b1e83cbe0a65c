import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Driver } from '../../src/drivers/driver';
import { createNode, drivers, type Node, type Portal } from '../../src/index';
import { nextParcel, until } from '../support/wait';


/** Connects a new non-broker node to `broker` with one portal pair. */
function join(driver: Driver, broker: Node, label: string) {
  const node = createNode({ driver, label });
  const [t0, t1] = driver.createTransports();
  const [atBroker] = broker.connect(t0, { portals: 1 });
  const [atNode] = node.connect(t1, { portals: 1, toBroker: true });
  return { node, atBroker, atNode };
}

/** Exchanges 20 round trips in order, then waits for every proxy to go. */
async function exchangeUntilDirect(
  local: Portal,
  remote: Portal,
  nodes: Node[],
): Promise<void> {
  for (let i = 0; i < 20; i++) {
    local.put(`${i}`);
    assert.is((await nextParcel(remote, 'parcel')).text(), `${i}`);
    remote.put(`reply ${i}`);
    assert.is((await nextParcel(local, 'reply')).text(), `reply ${i}`);
  }
  await until(
    () => nodes.every((node) => node.stats().proxies === 0),
    'proxies to go: ' +
      nodes.map((n) => `${n.label}=${n.stats().proxies}`).join(' '),
  );
}

for (const mode of ['sync', 'async'] as const) {
  test(`clients of two brokers get a direct link (${mode})`, async () => {
    const driver: Driver = mode === 'sync' ? drivers.sync() : drivers.async();
    const first = createNode({ driver, broker: true, label: 'K1' });
    const second = createNode({ driver, broker: true, label: 'K2' });
    const [k0, k1] = driver.createTransports();
    const [fromFirst] = second.connect(k1, { portals: 1, toBroker: true });
    const [fromSecond] = first.connect(k0, { portals: 1, toBroker: true });

    const a = join(driver, first, 'A');
    const b = join(driver, second, 'B');
    const nodes = [first, second, a.node, b.node];

    // A opens a pair and sends one end to B through K1 and K2.
    const [local, travelling] = a.node.openPortals();
    a.atNode.put('', [travelling]);
    let portal = (await nextParcel(a.atBroker, 'at K1')).handles[0] as Portal;
    fromSecond.put('', [portal]);
    portal = (await nextParcel(fromFirst, 'at K2')).handles[0] as Portal;
    b.atBroker.put('', [portal]);
    const remote = (await nextParcel(b.atNode, 'at B')).handles[0] as Portal;

    await exchangeUntilDirect(local, remote, nodes);
    assert.ok(a.node.getLink(b.node.name!), 'A links to B directly');
    local.close();
    await until(() => remote.status().dead, 'peer closure');
    for (const node of nodes) node.close();
  });
}

for (const mode of ['sync', 'async'] as const) {
  test(`clients across a chain of three brokers (${mode})`, async () => {
    const driver: Driver = mode === 'sync' ? drivers.sync() : drivers.async();
    const brokers = ['K1', 'K2', 'K3'].map((label) =>
      createNode({ driver, broker: true, label }),
    );
    // K1 - K2 - K3: each pair gets one portal, used to pass the portal on.
    const hops: [Portal, Portal][] = [];
    for (let i = 0; i < 2; i++) {
      const [left, right] = driver.createTransports();
      const [fromLeft] = brokers[i + 1].connect(right, {
        portals: 1,
        toBroker: true,
      });
      const [toRight] = brokers[i].connect(left, { portals: 1, toBroker: true });
      hops.push([toRight, fromLeft]);
    }
    const a = join(driver, brokers[0], 'A');
    const b = join(driver, brokers[2], 'B');
    const nodes = [...brokers, a.node, b.node];

    const [local, travelling] = a.node.openPortals();
    a.atNode.put('', [travelling]);
    let portal = (await nextParcel(a.atBroker, 'at K1')).handles[0] as Portal;
    for (const [toRight, fromLeft] of hops) {
      toRight.put('', [portal]);
      portal = (await nextParcel(fromLeft, 'next broker')).handles[0] as Portal;
    }
    b.atBroker.put('', [portal]);
    const remote = (await nextParcel(b.atNode, 'at B')).handles[0] as Portal;

    await exchangeUntilDirect(local, remote, nodes);
    assert.ok(a.node.getLink(b.node.name!), 'A links to B directly');
    for (const node of nodes) node.close();
  });
}

test.run();
