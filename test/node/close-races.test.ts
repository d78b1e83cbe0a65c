import { TestScheduler } from 'rxjs/testing';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createFaultInjectingDriver } from '../../src/drivers/fault-injecting';
import { createNode, drivers, type Portal } from '../../src/index';

function virtualTime(body: (flush: () => void) => void): void {
  new TestScheduler(() => {}).run(({ flush }) => body(flush));
}

test('portal queued on a failed connection closes', () => {
  virtualTime((flush) => {
    const driver = createFaultInjectingDriver(drivers.async(), {});
    const broker = createNode({ driver, broker: true });
    const [toNowhere] = driver.createTransports();
    const [toClient] = broker.connect(toNowhere, { portals: 1 });
    const [kept, sent] = broker.openPortals();
    toClient.put('x', [sent]);
    kept.put('hello');
    driver.sever(toNowhere);
    flush();
    assert.is(toClient.status().peerClosed, true);
    assert.is(kept.status().peerClosed, true, 'the carried portal closed');
    broker.close();
  });
});

test('node closed mid-handshake leaves no link', () => {
  virtualTime((flush) => {
    const driver = drivers.async();
    const broker = createNode({ driver, broker: true });
    const client = createNode({ driver });
    const [t0, t1] = driver.createTransports();
    broker.connect(t0, { portals: 1 });
    const [portal] = client.connect(t1, { portals: 1, toBroker: true });
    client.close();
    flush();
    assert.is(client.stats().links, 0);
    assert.is(broker.stats().links, 0);
    assert.is((portal as Portal).status().peerClosed, true);
    broker.close();
  });
});

test('sync brokers introduce each other on request', () => {
  const driver = drivers.sync();
  const first = createNode({ driver, broker: true, label: 'K0' });
  const second = createNode({ driver, broker: true, label: 'K1' });
  const [k0, k1] = driver.createTransports();
  first.connect(k0, { portals: 1, toBroker: true });
  second.connect(k1, { portals: 1, toBroker: true });
  const client = createNode({ driver, label: 'B' });
  const [t0, t1] = driver.createTransports();
  second.connect(t0, { portals: 1 });
  client.connect(t1, { portals: 1, toBroker: true });

  const names: string[] = [];
  first.establishLink(client.name!).subscribe({
    next: (link) => names.push(link.remoteName.toString()),
  });
  assert.equal(names, [client.name!.toString()]);
  for (const node of [first, second, client]) node.close();
});

test.run();
