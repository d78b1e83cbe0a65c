import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createNode, drivers } from '../../src/index';
import { until } from '../support/wait';

test('bypass link states are freed', async () => {
  const driver = drivers.async();
  const broker = createNode({ driver, broker: true });
  const client = createNode({ driver });
  const [t0, t1] = driver.createTransports();
  const [b] = broker.connect(t0, { portals: 1 });
  const [c] = client.connect(t1, { portals: 1, toBroker: true });
  // The client closes every portal it gets, often before the bypass
  // offer for it arrives.
  c.parcels$.subscribe((parcel) => {
    for (const handle of parcel.handles) handle.close();
  });
  await until(() => client.name !== null, 'the handshake');
  const link = broker.getLink(client.name!)!;

  const capacities: number[] = [];
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 2000; i++) {
      const [kept, sent] = broker.openPortals();
      kept.put('data');
      b.put('portal', [sent]);
      kept.close();
    }
    await until(() => broker.stats().routers === 1, 'routes to close');
    await new Promise((resolve) => setTimeout(resolve, 50));
    capacities.push(link.memory.getBlockCapacity(64));
  }
  // Growth may happen while the first round is in flight; after that the
  // freed blocks must cover every later round.
  assert.is(capacities[3], capacities[0], `capacities ${capacities}`);
  broker.close();
  client.close();
});

test.run();
