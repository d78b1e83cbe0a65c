import { TestScheduler } from 'rxjs/testing';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type {
  Driver,
  Transport,
  TransportListener,
} from '../../src/drivers/driver';
import {
  createFaultInjectingDriver,
  type FaultPlan,
} from '../../src/drivers/fault-injecting';
import { getBadActivityReports } from '../../src/drivers/in-process';
import { createNode, drivers, isIpczError } from '../../src/index';

/** A listener that records what it receives, with the time it arrived. */
class Recorder implements TransportListener {
  readonly messages: number[] = [];
  readonly times: number[] = [];
  readonly errors: string[] = [];
  deactivated = false;
  reject: ((value: number) => string | null) | null = null;

  constructor(private readonly now: () => number = Date.now) {}

  onMessage(data: Uint8Array): true | string {
    const value = data[0] ?? -1;
    const rejection = this.reject?.(value) ?? null;
    if (rejection !== null) return rejection;
    this.messages.push(value);
    this.times.push(this.now());
    return true;
  }

  onError(reason: string): void {
    this.errors.push(reason);
  }

  onDeactivated(): void {
    this.deactivated = true;
  }
}

function connectedPair(
  driver: Driver,
  now?: () => number,
): { a: Transport; b: Transport; atA: Recorder; atB: Recorder } {
  const [a, b] = driver.createTransports();
  const atA = new Recorder(now);
  const atB = new Recorder(now);
  driver.activateTransport(a, atA, { isBroker: false });
  driver.activateTransport(b, atB, { isBroker: false });
  return { a, b, atA, atB };
}

function errorCode(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return isIpczError(error) ? error.code : `not an IpczError: ${error}`;
  }
  return 'no error';
}

test('empty plan keeps sync delivery on the stack', () => {
  const driver = createFaultInjectingDriver(drivers.sync(), {});
  const { a, atB } = connectedPair(driver);
  driver.transmit(a, new Uint8Array([1]), []);
  assert.equal(atB.messages, [1], 'delivered before transmit returned');
  assert.equal(driver.faults.delayedMessages, 0);
});

test('empty plan passes rejections to the inner driver', () => {
  const driver = createFaultInjectingDriver(drivers.sync(), {});
  const { a, b, atB } = connectedPair(driver);
  atB.reject = (value) => (value === 2 ? 'two is invalid' : null);
  for (const value of [1, 2, 3]) {
    driver.transmit(a, new Uint8Array([value]), []);
  }
  assert.equal(atB.messages, [1]);
  assert.equal(atB.errors, ['invalid message: two is invalid']);
  assert.equal(getBadActivityReports(b), ['two is invalid']);
});

test('delays keep per-transport order in virtual time', () => {
  const scheduler = new TestScheduler(assert.equal);
  scheduler.run(() => {
    const driver = createFaultInjectingDriver(drivers.async(), {
      seed: 42,
      delay: { probability: 0.7, minMs: 1, maxMs: 40 },
    });
    const now = () => scheduler.now();
    const { a, b, atA, atB } = connectedPair(driver, now);
    const values = Array.from({ length: 50 }, (_, i) => i);
    for (const value of values) {
      driver.transmit(a, new Uint8Array([value]), []);
      driver.transmit(b, new Uint8Array([value]), []);
    }
    scheduler.flush();
    assert.equal(atB.messages, values, 'a to b in order');
    assert.equal(atA.messages, values, 'b to a in order');
    assert.ok(driver.faults.delayedMessages > 40, 'most were delayed');
    assert.ok(driver.faults.delayedMessages < 100, 'some were not');
    const last = atB.times[atB.times.length - 1] ?? 0;
    assert.ok(last >= 1, `last delivery at ${last} ms`);
    assert.ok(last <= 40, `last delivery at ${last} ms`);
    for (let i = 1; i < atB.times.length; i++) {
      assert.ok(atB.times[i]! >= atB.times[i - 1]!, 'times never go back');
    }
  });
});

function delayTimes(seed: number): number[] {
  const scheduler = new TestScheduler(assert.equal);
  let times: number[] = [];
  scheduler.run(() => {
    const driver = createFaultInjectingDriver(drivers.sync(), {
      seed,
      delay: { maxMs: 1000 },
    });
    const { a, atB } = connectedPair(driver, () => scheduler.now());
    for (let i = 0; i < 20; i++) driver.transmit(a, new Uint8Array([i]), []);
    scheduler.flush();
    times = atB.times;
  });
  return times;
}

test('delays repeat for the same seed', () => {
  const first = delayTimes(7);
  assert.is(first.length, 20);
  assert.equal(delayTimes(7), first);
  assert.not.equal(delayTimes(8), first);
});

test('delayed sync message leaves the sender stack', async () => {
  const driver = createFaultInjectingDriver(drivers.sync(), {
    delay: { minMs: 1, maxMs: 2 },
  });
  const { a, atB } = connectedPair(driver);
  driver.transmit(a, new Uint8Array([9]), []);
  assert.equal(atB.messages, [], 'not delivered on the sender stack');
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(atB.messages, [9]);
});

test('delayed rejection fails the transport as the driver would', () => {
  const scheduler = new TestScheduler(assert.equal);
  scheduler.run(() => {
    const driver = createFaultInjectingDriver(drivers.async(), {
      delay: { minMs: 5, maxMs: 5 },
    });
    const { a, b, atB } = connectedPair(driver);
    atB.reject = (value) => (value === 2 ? 'two is invalid' : null);
    for (const value of [1, 2, 3]) {
      driver.transmit(a, new Uint8Array([value]), []);
    }
    scheduler.flush();
    assert.equal(atB.messages, [1], 'nothing after the rejected message');
    assert.equal(atB.errors, ['invalid message: two is invalid']);
    assert.equal(getBadActivityReports(b), ['two is invalid']);
  });
});

test('peer closure waits behind delayed messages', () => {
  const scheduler = new TestScheduler(assert.equal);
  scheduler.run(() => {
    const driver = createFaultInjectingDriver(drivers.sync(), {
      delay: { minMs: 10, maxMs: 10 },
    });
    const { a, atB } = connectedPair(driver);
    driver.transmit(a, new Uint8Array([1]), []);
    driver.closeTransport(a);
    assert.equal(atB.errors, [], 'the error waits for the message');
    scheduler.flush();
    assert.equal(atB.messages, [1]);
    assert.equal(atB.errors, ['peer transport closed']);
  });
});

test('sever after N messages fails both ends', () => {
  const scheduler = new TestScheduler(assert.equal);
  scheduler.run(() => {
    const driver = createFaultInjectingDriver(drivers.sync(), {
      sever: { afterMessages: 3 },
    });
    const { a, atA, atB } = connectedPair(driver);
    for (let i = 0; i < 6; i++) driver.transmit(a, new Uint8Array([i]), []);
    scheduler.flush();
    // Each message counts at both ends, so the receiving end reaches 3
    // first: it gets the third message, then the error.
    assert.equal(atB.messages, [0, 1, 2]);
    assert.is(atA.errors.length, 1, 'the sending end sees an error');
    assert.is(atB.errors.length, 1, 'the receiving end sees an error');
    assert.match(atB.errors[0] ?? '', /after 3 messages|peer transport/);
    assert.ok(driver.faults.severedTransports >= 1);
  });
});

test('sever of one end makes the plain peer fail', () => {
  const scheduler = new TestScheduler(assert.equal);
  scheduler.run(() => {
    const plain = drivers.sync();
    const faulty = createFaultInjectingDriver(plain, {
      sever: { afterMessages: 2 },
    });
    const [a, b] = plain.createTransports();
    const atA = new Recorder();
    const atB = new Recorder();
    faulty.activateTransport(a, atA, { isBroker: false });
    plain.activateTransport(b, atB, { isBroker: false });
    for (let i = 0; i < 4; i++) faulty.transmit(a, new Uint8Array([i]), []);
    plain.transmit(b, new Uint8Array([9]), []);
    scheduler.flush();
    assert.equal(atB.messages, [0, 1]);
    assert.equal(atB.errors, ['peer transport closed']);
    assert.equal(atA.messages, [], 'nothing arrives after the sever');
    assert.equal(atA.errors, [
      'transport severed by fault plan after 2 messages',
    ]);
    assert.is(faulty.faults.severedTransports, 1);
  });
});

test('sever picks transports by first use', () => {
  const scheduler = new TestScheduler(assert.equal);
  scheduler.run(() => {
    const plain = drivers.sync();
    const faulty = createFaultInjectingDriver(plain, {
      sever: { afterMessages: 1, transports: [1] },
    });
    const first = plain.createTransports();
    const second = plain.createTransports();
    const atFirst = new Recorder();
    const atSecond = new Recorder();
    faulty.activateTransport(first[0], atFirst, { isBroker: false });
    faulty.activateTransport(second[0], atSecond, { isBroker: false });
    plain.activateTransport(first[1], new Recorder(), { isBroker: false });
    plain.activateTransport(second[1], new Recorder(), { isBroker: false });
    faulty.transmit(first[0], new Uint8Array([1]), []);
    faulty.transmit(second[0], new Uint8Array([1]), []);
    scheduler.flush();
    assert.equal(atFirst.errors, [], 'transport 0 is spared');
    assert.is(atSecond.errors.length, 1, 'transport 1 is severed');
  });
});

test('manual sever closes the transport', () => {
  const scheduler = new TestScheduler(assert.equal);
  scheduler.run(() => {
    const driver = createFaultInjectingDriver(drivers.async(), {});
    const { a, atA, atB } = connectedPair(driver);
    driver.transmit(a, new Uint8Array([1]), []);
    driver.sever(a, 'cable cut');
    driver.sever(a, 'again');
    scheduler.flush();
    assert.equal(atA.errors, ['cable cut']);
    assert.equal(atB.errors, ['peer transport closed']);
    assert.equal(atB.messages, [1], 'sent before the sever, delivered');
    assert.is(driver.faults.severedTransports, 1);
    // The node closes what it owns afterwards; that must not throw.
    driver.closeTransport(a);
  });
});

test('deactivating a severed transport completes', () => {
  const scheduler = new TestScheduler(assert.equal);
  scheduler.run(() => {
    const driver = createFaultInjectingDriver(drivers.sync(), {});
    const { a, atA } = connectedPair(driver);
    driver.sever(a);
    driver.deactivateTransport(a);
    scheduler.flush();
    assert.is(atA.deactivated, true);
  });
});

test('allocations fail after the planned count', () => {
  const driver = createFaultInjectingDriver(drivers.sync(), {
    allocation: { failAfter: 2 },
  });
  assert.is(driver.allocateSharedMemory(64).size, 64);
  assert.is(driver.allocateSharedMemory(64).size, 64);
  assert.is(errorCode(() => driver.allocateSharedMemory(64)), 'RESOURCE_EXHAUSTED');
  assert.is(errorCode(() => driver.allocateSharedMemory(64)), 'RESOURCE_EXHAUSTED');
  assert.is(driver.faults.allocations, 2);
  assert.is(driver.faults.refusedAllocations, 2);
});

function refusalPattern(seed: number): boolean[] {
  const driver = createFaultInjectingDriver(drivers.sync(), {
    seed,
    allocation: { probability: 0.3 },
  });
  return Array.from({ length: 200 }, () => {
    return errorCode(() => driver.allocateSharedMemory(8)) === 'no error';
  });
}

test('allocations fail by seeded probability', () => {
  const pattern = refusalPattern(3);
  const refused = pattern.filter((ok) => !ok).length;
  assert.ok(refused > 30, `${refused} of 200 refused`);
  assert.ok(refused < 90, `${refused} of 200 refused`);
  assert.equal(refusalPattern(3), pattern, 'same seed, same refusals');
  assert.not.equal(refusalPattern(4), pattern);
});

test('inner driver errors pass through', () => {
  const driver = createFaultInjectingDriver(drivers.sync(), {});
  assert.is(errorCode(() => driver.allocateSharedMemory(0)), 'INVALID_ARGUMENT');
  assert.is(driver.faults.refusedAllocations, 0);
});

const invalidPlans: [string, unknown][] = [
  ['no plan', null],
  ['fractional seed', { seed: 1.5 }],
  ['negative delay', { delay: { minMs: -1, maxMs: 5 } }],
  ['max below min', { delay: { minMs: 5, maxMs: 1 } }],
  ['infinite delay', { delay: { maxMs: Infinity } }],
  ['probability above 1', { delay: { maxMs: 1, probability: 2 } }],
  ['sever after 0', { sever: { afterMessages: 0 } }],
  ['negative index', { sever: { afterMessages: 1, transports: [-1] } }],
  ['negative count', { allocation: { failAfter: -1 } }],
  ['NaN probability', { allocation: { probability: NaN } }],
];

for (const [name, plan] of invalidPlans) {
  test(`plan with ${name} is invalid`, () => {
    const create = () =>
      createFaultInjectingDriver(drivers.sync(), plan as FaultPlan);
    assert.is(errorCode(create), 'INVALID_ARGUMENT');
  });
}

test('nodes exchange parcels in order despite delays', async () => {
  const inner = drivers.async();
  const broker = createNode({
    driver: createFaultInjectingDriver(inner, {
      seed: 11,
      delay: { probability: 0.5, maxMs: 3 },
    }),
    broker: true,
  });
  const client = createNode({
    driver: createFaultInjectingDriver(inner, {
      seed: 12,
      delay: { probability: 0.5, maxMs: 3 },
    }),
  });
  const [t0, t1] = inner.createTransports();
  const [b] = broker.connect(t0, { portals: 1 });
  const [c] = client.connect(t1, { portals: 1, toBroker: true });
  const count = 200;
  for (let i = 0; i < count; i++) b.put(`parcel ${i}`);
  const started = Date.now();
  while (c.status().localParcels < count && Date.now() - started < 5000) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.is(c.status().localParcels, count);
  for (let i = 0; i < count; i++) assert.is(c.get().text(), `parcel ${i}`);
  client.close();
  broker.close();
});

test.run();
