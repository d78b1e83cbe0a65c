import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createNode,
  drivers,
  type IpczError,
  type Node,
  type Portal,
} from '../../src/index';
import { nextParcel, until } from '../support/wait';

type Mode = 'sync' | 'async';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return (error as IpczError).code;
  }
  return undefined;
}

function pair(mode: Mode) {
  const driver = mode === 'sync' ? drivers.sync() : drivers.async();
  const broker = createNode({ driver, broker: true, label: 'A' });
  const client = createNode({ driver, label: 'B' });
  const [t0, t1] = driver.createTransports();
  const [atBroker] = broker.connect(t0, { portals: 1 });
  const [atClient] = client.connect(t1, { portals: 1, toBroker: true });
  const nodes: Node[] = [broker, client];
  const noProxies = () => nodes.every((node) => node.stats().proxies === 0);
  const close = () => nodes.forEach((node) => node.close());
  return { broker, client, atBroker, atClient, noProxies, close };
}

test('merge misuse throws ipcz codes', () => {
  const node = createNode({ driver: drivers.sync() });
  const [a, b] = node.openPortals();
  const [c, d] = node.openPortals();
  assert.is(codeOf(() => a.merge(a)), 'INVALID_ARGUMENT');
  assert.is(codeOf(() => a.merge(b)), 'INVALID_ARGUMENT');
  c.put('used');
  assert.is(codeOf(() => a.merge(c)), 'FAILED_PRECONDITION');
  d.get();
  assert.is(codeOf(() => a.merge(d)), 'FAILED_PRECONDITION');
  assert.is(a.isOpen, true);
  node.close();
});

test('merge joins two local routes', () => {
  const node = createNode({ driver: drivers.sync() });
  const [a, b] = node.openPortals();
  const [c, d] = node.openPortals();
  a.put('before merge');
  b.merge(c);
  assert.is(d.get().text(), 'before merge');
  d.put('reply');
  assert.is(a.get().text(), 'reply');
  assert.is(node.stats().proxies, 0);
  assert.is(node.stats().routers, 2);
  a.close();
  assert.is(d.status().peerClosed, true);
  node.close();
});

for (const mode of ['sync', 'async'] as const) {
  test(`merge with an initial portal (${mode})`, async () => {
    const net = pair(mode);
    const [q0, q1] = net.client.openPortals();
    q1.merge(net.atClient);
    net.atBroker.put('from the broker');
    assert.is((await nextParcel(q0, 'parcel at q0')).text(), 'from the broker');
    q0.put('from q0');
    assert.is((await nextParcel(net.atBroker, 'parcel')).text(), 'from q0');
    await until(net.noProxies, 'the merged routers to go');
    net.close();
  });

  test(`merge with a closed local peer (${mode})`, async () => {
    const net = pair(mode);
    const [q0, q1] = net.client.openPortals();
    q0.close();
    q1.merge(net.atClient);
    await until(() => net.atBroker.status().peerClosed, 'peer closure');
    net.close();
  });

  test(`merge with a closed remote peer (${mode})`, async () => {
    const net = pair(mode);
    net.atBroker.close();
    const [q0, q1] = net.client.openPortals();
    net.atClient.merge(q1);
    await until(() => q0.status().peerClosed, 'peer closure');
    net.close();
  });

  test(`merge complex routes collapses them (${mode})`, async () => {
    const net = pair(mode);
    // Two routes whose ends were moved back and forth, then merged.
    const ends: Portal[] = [];
    for (let r = 0; r < 2; r++) {
      const [keep, travel] = net.client.openPortals();
      let portal = travel;
      for (let i = 0; i < 10; i++) {
        net.atClient.put('', [portal]);
        portal = (await nextParcel(net.atBroker, 'at broker')).handles[0] as Portal;
        net.atBroker.put('', [portal]);
        portal = (await nextParcel(net.atClient, 'at client')).handles[0] as Portal;
      }
      ends.push(keep, portal);
    }
    const [keep0, moved0, keep1, moved1] = ends;
    net.atClient.put('', [moved1]);
    const atBroker1 = (await nextParcel(net.atBroker, 'moved')).handles[0] as Portal;
    net.atClient.put('', [moved0]);
    const atBroker0 = (await nextParcel(net.atBroker, 'moved')).handles[0] as Portal;
    atBroker0.merge(atBroker1);
    for (let i = 0; i < 50; i++) keep0.put(`${i}`);
    for (let i = 0; i < 50; i++) {
      assert.is((await nextParcel(keep1, 'merged traffic')).text(), `${i}`);
    }
    keep1.put('back');
    assert.is((await nextParcel(keep0, 'reply')).text(), 'back');
    await until(net.noProxies, 'routes to collapse');
    keep0.close();
    await until(() => keep1.status().dead, 'closure through the merge');
    net.close();
  });
}

test.run();
