import { asyncScheduler } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createNode, drivers, type Node, type Portal } from '../../src/index';

/**
 * Node A sends one end of two portal pairs to B through the broker and
 * merges the two ends it kept, `turns` scheduler turns later, while the
 * proxies on the broker may be bypassing themselves. Returns every
 * dropped-link reason. Runs in virtual time, so each case is exact.
 */
function mergeWhileBypassing(turns: number): string[] {
  const dropped: string[] = [];
  new TestScheduler(() => {}).run(({ flush }) => {
    const driver = drivers.async();
    const broker = createNode({ driver, broker: true, label: 'broker' });
    const a = createNode({ driver, label: 'A' });
    const b = createNode({ driver, label: 'B' });
    for (const node of [broker, a, b]) {
      node.badMessages$.subscribe((bad) => {
        dropped.push(`${node.label}: ${bad.reason}`);
      });
    }
    const connect = (node: Node): [Portal, Portal] => {
      const [brokerSide, nodeSide] = driver.createTransports();
      const [atBroker] = broker.connect(brokerSide, { portals: 1 });
      const [atNode] = node.connect(nodeSide, { portals: 1, toBroker: true });
      return [atBroker, atNode];
    };
    const [brokerToA, aToBroker] = connect(a);
    const [brokerToB] = connect(b);
    brokerToA.parcels$.subscribe((parcel) => {
      brokerToB.put('forwarded', parcel.handles);
    });
    flush();

    const [left, leftPeer] = a.openPortals();
    const [right, rightPeer] = a.openPortals();
    aToBroker.put('to B', [leftPeer]);
    aToBroker.put('to B', [rightPeer]);
    const mergeAfter = (remaining: number): void => {
      if (remaining === 0) left.merge(right);
      else asyncScheduler.schedule(() => mergeAfter(remaining - 1));
    };
    mergeAfter(turns);
    flush();
    for (const node of [broker, a, b]) node.close();
    flush();
  });
  return dropped;
}

test('merge during a neighbour bypass drops nothing', () => {
  for (let turns = 0; turns <= 8; turns++) {
    assert.equal(mergeWhileBypassing(turns), [], `merge after ${turns} turns`);
  }
});

test.run();
