import { firstValueFrom } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createNode,
  drivers,
  IpczError,
  type Node,
  type NodeName,
  type Portal,
} from '../../src/index';
import { until } from '../support/wait';

function connectSandboxed(broker: Node): {
  client: Node;
  brokerPortal: Portal;
  clientPortal: Portal;
} {  const client = createNode({
    driver: drivers.async({ canAllocate: false }),
    label: 'sandboxed',
  });
  const [t0, t1] = broker.driver.createTransports();
  const [brokerPortal] = broker.connect(t0, { portals: 1 });
  const [clientPortal] = client.connect(t1, {
    portals: 1,
    toBroker: true,
    allocationDelegate: true,
  });
  return { client, brokerPortal, clientPortal };
}

async function errorCodeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as IpczError).code;
  }
  return 'no error';
}

test('sandboxed node grows link memory through its delegate', async () => {
  const broker = createNode({ driver: drivers.async(), broker: true });
  const { client, brokerPortal, clientPortal } = connectSandboxed(broker);
  await until(() => client.name !== null, 'the handshake');

  const count = 200;
  const payload = (i: number) => new Uint8Array(20_000).fill(i % 251);
  for (let i = 0; i < count; i++) clientPortal.put(payload(i));
  await until(() => brokerPortal.status().localParcels === count, 'parcels');
  for (let i = 0; i < count; i++) {
    const parcel = brokerPortal.get();
    assert.is(parcel.data.length, 20_000);
    assert.is(parcel.data[0], i % 251, `parcel ${i} content`);
  }
  const clientStats = client.stats();
  const brokerStats = broker.stats();
  assert.ok(clientStats.memoryRequestsSent > 0, 'client sent requests');
  assert.ok(brokerStats.memoryRequestsServed > 0, 'broker served requests');
  assert.is(clientStats.directAllocations, 0);
  client.close();
  broker.close();
});

test('allocateSharedMemory goes through the delegate', async () => {
  const broker = createNode({ driver: drivers.async(), broker: true });
  const { client } = connectSandboxed(broker);
  const delegate = await firstValueFrom(client.allocationDelegate$);
  assert.is(delegate, null);
  await until(() => client.name !== null, 'the handshake');
  const named = await firstValueFrom(client.allocationDelegate$);
  assert.ok(named?.equals(broker.name));

  const memory = await firstValueFrom(client.allocateSharedMemory(4096));
  assert.ok(memory.size >= 4096);
  memory.map()[0] = 7;
  assert.is(client.stats().memoryRequestsSent, 1);
  assert.is(broker.stats().memoryRequestsServed, 1);
  assert.is(client.stats().directAllocations, 0);
  client.close();
  broker.close();
});

test('node without delegate or permission is denied', async () => {
  const node = createNode({ driver: drivers.sync({ canAllocate: false }) });
  const code = await errorCodeOf(firstValueFrom(node.allocateSharedMemory(64)));
  assert.is(code, 'PERMISSION_DENIED');
  node.close();
});

test('delegate refuses sizes over its limits', async () => {
  const broker = createNode({
    driver: drivers.async(),
    broker: true,
    memoryDelegation: { maxRequestBytes: 1 << 20, maxBytesPerLink: 3 << 20 },
  });
  const { client } = connectSandboxed(broker);
  await until(() => client.name !== null, 'the handshake');
  const tooBig = client.allocateSharedMemory((1 << 20) + 1);
  assert.is(await errorCodeOf(firstValueFrom(tooBig)), 'RESOURCE_EXHAUSTED');
  for (let i = 0; i < 3; i++) {
    await firstValueFrom(client.allocateSharedMemory(1 << 20));
  }
  const overBudget = client.allocateSharedMemory(1 << 20);
  assert.is(await errorCodeOf(firstValueFrom(overBudget)), 'RESOURCE_EXHAUSTED');
  assert.is(broker.stats().memoryRequestsRefused, 2);
  assert.is(broker.stats().memoryRequestsServed, 3);
  client.close();
  broker.close();
});

test('delegate refuses links that did not choose it', async () => {
  const broker = createNode({ driver: drivers.async(), broker: true });
  const client = createNode({ driver: drivers.async() });
  const [t0, t1] = broker.driver.createTransports();
  broker.connect(t0, { portals: 1 });
  client.connect(t1, { portals: 1, toBroker: true });
  await until(() => client.name !== null, 'the handshake');
  const link = client.brokerLink!;
  const code = await errorCodeOf(firstValueFrom(link.requestMemory(4096)));
  assert.is(code, 'RESOURCE_EXHAUSTED');
  assert.is(broker.stats().memoryRequestsRefused, 1);
  const zero = await errorCodeOf(firstValueFrom(link.requestMemory(0)));
  assert.is(zero, 'RESOURCE_EXHAUSTED');
  client.close();
  broker.close();
});

test('pending requests error when the delegate link is lost', async () => {
  const broker = createNode({ driver: drivers.async(), broker: true });
  const { client } = connectSandboxed(broker);
  await until(() => client.name !== null, 'the handshake');
  const pending = [1, 2, 3].map((i) =>
    errorCodeOf(firstValueFrom(client.allocateSharedMemory(i * 4096))),
  );
  broker.close();
  const codes = await Promise.all(pending);
  assert.equal(codes, ['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
  const after = await firstValueFrom(client.allocationDelegate$);
  assert.is(after, null);
  const denied = await errorCodeOf(firstValueFrom(client.allocateSharedMemory(64)));
  assert.is(denied, 'PERMISSION_DENIED');
  client.close();
});

test('delegate fails over to the next flagged link', async () => {
  const first = createNode({ driver: drivers.async(), broker: true, label: 'first' });
  const second = createNode({ driver: drivers.async(), broker: true, label: 'second' });
  const client = createNode({ driver: drivers.async({ canAllocate: false }) });
  for (const broker of [first, second]) {
    const [t0, t1] = broker.driver.createTransports();
    broker.connect(t0, { portals: 1 });
    client.connect(t1, { portals: 1, toBroker: true, allocationDelegate: true });
  }
  const seen: (NodeName | null)[] = [];
  client.allocationDelegate$.subscribe((name) => seen.push(name));
  await until(() => seen.length >= 2, 'the first delegate');
  assert.ok(seen[1]?.equals(first.name));
  await until(() => second.stats().links === 1, 'the second link');
  first.close();
  await until(() => seen.length >= 3, 'failover');
  assert.ok(seen[2]?.equals(second.name));
  const memory = await firstValueFrom(client.allocateSharedMemory(1024));
  assert.ok(memory.size >= 1024);
  assert.is(second.stats().memoryRequestsServed, 1);
  second.close();
  await until(() => seen.length >= 4, 'no delegate');
  assert.is(seen[3], null);
  client.close();
});

test('unsolicited ProvideMemory drops the link', async () => {
  const broker = createNode({ driver: drivers.async(), broker: true });
  const { client, clientPortal } = connectSandboxed(broker);
  const other = connectSandboxed(broker);
  await until(() => client.name !== null && other.client.name !== null, 'handshakes');
  const bad: string[] = [];
  client.badMessages$.subscribe((event) => bad.push(event.reason));
  const brokerSide = broker.getLink(client.name!)!;
  brokerSide.send({
    type: 'ProvideMemory',
    size: 4096,
    buffer: broker.driver.allocateSharedMemory(4096),
  });
  await until(() => bad.length === 1, 'the bad message report');
  assert.match(bad[0], /ProvideMemory/);
  await until(() => clientPortal.status().peerClosed, 'peer closure');
  // Another link of the broker keeps working.
  other.brokerPortal.put('still here');
  await until(() => other.clientPortal.status().localParcels === 1, 'parcel');
  assert.is(other.clientPortal.get().text(), 'still here');
  client.close();
  other.client.close();
  broker.close();
});

test.run();
