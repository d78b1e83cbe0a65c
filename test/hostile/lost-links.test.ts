/**
 * Links lost mid-stream: a transport severed by the fault-injecting
 * driver, and an allocation delegate that goes away with requests
 * pending. Every affected portal must see peer closure within a bound,
 * and nothing else may be disturbed.
 */
import { firstValueFrom } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createFaultInjectingDriver } from '../../src/drivers/fault-injecting';
import {
  createNode,
  drivers,
  isIpczError,
  type Node,
  type Portal,
} from '../../src/index';
import { escapes, watchForEscapes } from './fixtures/fake-peer';

watchForEscapes();

/** Time within which a lost link must reach every affected portal. */
const CLOSURE_BOUND_MS = 1000;

function until(condition: () => boolean, what: string): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (condition()) return resolve(Date.now() - started);
      if (Date.now() - started > CLOSURE_BOUND_MS) {
        return reject(new Error(`timed out waiting for ${what}`));
      }
      setTimeout(check, 1);
    };
    check();
  });
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return isIpczError(error) ? error.code : String(error);
  }
  return 'no error';
}

/** Connects a plain async client to `broker` and returns both portals. */
function connectBystander(broker: Node) {
  const client = createNode({ driver: drivers.async(), label: 'bystander' });
  const [t0, t1] = broker.driver.createTransports();
  const [brokerPortal] = broker.connect(t0, { portals: 1 });
  const [clientPortal] = client.connect(t1, {
    portals: 1,
    toBroker: true,
    allocationDelegate: true,
  });
  return { client, brokerPortal, clientPortal };
}

async function checkBystander(
  bystander: ReturnType<typeof connectBystander>,
  text: string,
): Promise<void> {
  bystander.brokerPortal.put(text);
  await until(
    () => bystander.clientPortal.status().localParcels === 1,
    'the bystander parcel',
  );
  assert.is(bystander.clientPortal.get().text(), text);
  bystander.clientPortal.put(`${text} back`);
  await until(
    () => bystander.brokerPortal.status().localParcels === 1,
    'the bystander reply',
  );
  assert.is(bystander.brokerPortal.get().text(), `${text} back`);
}

test('severed transport closes every portal on it', async () => {
  const broker = createNode({ driver: drivers.async(), broker: true });
  const bystander = connectBystander(broker);
  // Transport 0 of the client's driver is its broker link. The handshake
  // takes two messages and the client's 30 parcels go out at once when
  // it ends, so the sever cuts that stream.
  const driver = createFaultInjectingDriver(drivers.async(), {
    seed: 5,
    delay: { probability: 0.3, maxMs: 2 },
    sever: { afterMessages: 20, transports: [0] },
  });
  const client = createNode({ driver, label: 'severed' });
  const [t0, t1] = broker.driver.createTransports();
  const brokerPortals = broker.connect(t0, { portals: 3 });
  const clientPortals = client.connect(t1, { portals: 3, toBroker: true });

  // A portal that moved over the link before the sever: its route runs
  // through the link too, so its far end must see closure as well.
  const [kept, moved] = broker.openPortals();
  brokerPortals[0]!.put('a portal', [moved]);
  for (let i = 0; i < 30; i++) {
    brokerPortals[i % 3]!.put(`down ${i}`);
    clientPortals[i % 3]!.put(`up ${i}`);
  }

  const affected: Portal[] = [...brokerPortals, ...clientPortals, kept];
  const elapsed = await until(
    () => affected.every((portal) => portal.status().peerClosed),
    'peer closure on every affected portal',
  );
  assert.ok(elapsed <= CLOSURE_BOUND_MS);
  assert.is(driver.faults.severedTransports, 1);

  // What arrived before the sever arrived in order, with no gaps.
  let received = 0;
  for (const portal of brokerPortals) {
    received += portal.status().localParcels;
    const texts: string[] = [];
    while (portal.status().localParcels > 0) texts.push(portal.get().text());
    const numbers = texts.map((text) => Number(text.slice(3)));
    for (let i = 1; i < numbers.length; i++) {
      assert.is(numbers[i]! - numbers[i - 1]!, 3, `gap in ${texts}`);
    }
  }
  assert.ok(received > 0, 'some parcels arrived before the sever');
  assert.ok(received < 30, `the sever cut the stream after ${received}`);

  await checkBystander(bystander, 'after the sever');
  assert.is(broker.stats().links, 1, 'only the bystander link is left');
  assert.equal(escapes, []);
  client.close();
  bystander.client.close();
  broker.close();
});

test('lost delegate fails pending requests', async () => {
  const broker = createNode({ driver: drivers.async(), broker: true });
  const bystander = connectBystander(broker);
  // Delays on the sandboxed side hold the replies back long enough for
  // the sever to find the requests pending.
  const driver = createFaultInjectingDriver(
    drivers.async({ canAllocate: false }),
    { delay: { minMs: 30, maxMs: 30 } },
  );
  const client = createNode({ driver, label: 'sandboxed' });
  const [t0, t1] = broker.driver.createTransports();
  const [brokerPortal] = broker.connect(t0, { portals: 1 });
  client.connect(t1, { portals: 1, toBroker: true, allocationDelegate: true });
  await until(() => client.name !== null, 'the handshake');

  const pending = [1, 2, 3].map((i) =>
    codeOf(firstValueFrom(client.allocateSharedMemory(i * 4096))),
  );
  await until(
    () => broker.stats().memoryRequestsServed === 3,
    'the broker to serve the requests',
  );
  driver.sever(t1, 'the delegate vanished');

  const codes = await Promise.all(pending);
  assert.equal(codes, ['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
  assert.is(await firstValueFrom(client.allocationDelegate$), null);
  await until(() => brokerPortal.status().peerClosed, 'broker-side closure');

  // The bystander still allocates through the same broker and delivers.
  const memory = await firstValueFrom(
    bystander.client.allocateSharedMemory(4096),
  );
  assert.ok(memory.size >= 4096);
  await checkBystander(bystander, 'after the delegate loss');
  assert.equal(escapes, []);
  client.close();
  bystander.client.close();
  broker.close();
});

test('delegate that refuses memory keeps the link', async () => {
  // Two primary buffers and two requests succeed, then the broker's
  // driver refuses every allocation.
  const brokerDriver = createFaultInjectingDriver(drivers.async(), {
    allocation: { failAfter: 4 },
  });
  const broker = createNode({ driver: brokerDriver, broker: true });
  const bystander = connectBystander(broker);
  const client = createNode({ driver: drivers.async({ canAllocate: false }) });
  const [t0, t1] = broker.driver.createTransports();
  const [brokerPortal] = broker.connect(t0, { portals: 1 });
  const [clientPortal] = client.connect(t1, {
    portals: 1,
    toBroker: true,
    allocationDelegate: true,
  });
  await until(() => client.name !== null, 'the handshake');

  const codes: string[] = [];
  for (let i = 0; i < 4; i++) {
    codes.push(await codeOf(firstValueFrom(client.allocateSharedMemory(4096))));
  }
  assert.equal(codes, [
    'no error',
    'no error',
    'RESOURCE_EXHAUSTED',
    'RESOURCE_EXHAUSTED',
  ]);
  assert.is(brokerDriver.faults.refusedAllocations, 2);
  clientPortal.put('still linked');
  await until(() => brokerPortal.status().localParcels === 1, 'the parcel');
  assert.is(brokerPortal.get().text(), 'still linked');
  await checkBystander(bystander, 'after the refusals');
  assert.equal(escapes, []);
  client.close();
  bystander.client.close();
  broker.close();
});

test.run();
