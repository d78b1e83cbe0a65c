/**
 * A reduced reproduction of a route reduction race that the soak hits
 * within seconds: a merge that starts while the far side of one of the
 * merged portals' central links is a proxy about to bypass itself.
 *
 * Node A opens two portal pairs, sends one end of each to the broker,
 * which forwards both to node B, and then merges the two ends it kept.
 * Everything runs on `drivers.async()` inside `TestScheduler.run`, so the
 * timing is deterministic: the merge is deferred by N scheduler turns
 * for N = 0 to 8. With N = 2 the merged pair's bridge bypass locks only
 * its link toward P but starts decaying its link toward T too. The proxy
 * at the far end of that second link (on the broker) locks it for its
 * own bypass. Node B's AcceptBypassLink then reaches A for a link that is
 * already decaying, and A drops its link to B as a protocol violation.
 *
 * Usage: npx tsx soak/merge-bypass-repro.ts. It prints one line per N
 * and exits with 1 when any node dropped a message, else 0.
 */
import { asyncScheduler } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { createNode, drivers, type Node, type Portal } from '../src/index';

/** Runs the scenario with the merge deferred by `turns` scheduler turns. */
function runScenario(turns: number): string[] {
  const dropped: string[] = [];
  const scheduler = new TestScheduler(() => {});
  scheduler.run(({ flush }) => {
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
      return [atBroker!, atNode!];
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

let failed = false;
for (let turns = 0; turns <= 8; turns++) {
  const dropped = runScenario(turns);
  failed ||= dropped.length > 0;
  const outcome = dropped.length === 0 ? 'clean' : dropped.join('; ');
  console.log(`merge after ${turns} scheduler turns: ${outcome}`);
}
process.exitCode = failed ? 1 : 0;
