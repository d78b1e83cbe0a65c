import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Subject, Subscription, asyncScheduler } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import type { TransportListener } from '../../src/drivers/driver';
import { getBadActivityReports } from '../../src/drivers/in-process';
import { createAsyncDriver } from '../../src/drivers/async';
import { RecordingListener, bytes } from './fixtures/recording-listener';

const async = suite('async driver');
const nonBroker = { isBroker: false };
const decoder = new TextDecoder();

/** Resolves once `condition` holds, or rejects after `timeoutMs`. */
async function waitFor(condition: () => boolean, timeoutMs = 2000) {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`condition not met within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async('transmit delivers later in order', async () => {
  const driver = createAsyncDriver();
  const [a, b] = driver.createTransports();
  const listener = new RecordingListener();
  driver.activateTransport(a, new RecordingListener(), nonBroker);
  driver.activateTransport(b, listener, nonBroker);
  const expected: string[] = [];
  for (let i = 0; i < 100; i++) {
    driver.transmit(a, bytes(String(i)), []);
    expected.push(String(i));
  }
  assert.equal(listener.events, []);
  await waitFor(() => listener.texts.length === 100);
  assert.equal(listener.texts, expected);
});

async('transmissions before activation flush later', async () => {
  const driver = createAsyncDriver();
  const [a, b] = driver.createTransports();
  driver.transmit(a, bytes('1'), []);
  driver.transmit(a, bytes('2'), []);
  const listener = new RecordingListener();
  driver.activateTransport(b, listener, nonBroker);
  assert.equal(listener.events, []);
  await waitFor(() => listener.texts.length === 2);
  assert.equal(listener.texts, ['1', '2']);
});

async('one drain is scheduled per busy transport', async () => {
  const driver = createAsyncDriver();
  const [a, b] = driver.createTransports();
  const listener = new RecordingListener();
  driver.activateTransport(b, listener, nonBroker);
  const schedule = asyncScheduler.schedule;
  let scheduled = 0;
  asyncScheduler.schedule = function (...args: unknown[]): Subscription {
    scheduled += 1;
    return Reflect.apply(schedule, asyncScheduler, args) as Subscription;
  } as typeof schedule;
  try {
    for (let i = 0; i < 50; i++) driver.transmit(a, bytes(String(i)), []);
  } finally {
    asyncScheduler.schedule = schedule;
  }
  assert.is(scheduled, 1);
  await waitFor(() => listener.texts.length === 50);
  assert.is(listener.texts.at(-1), '49');
});

async('close posts onError to the peer', async () => {
  const driver = createAsyncDriver();
  const [a, b] = driver.createTransports();
  const listener = new RecordingListener();
  driver.activateTransport(b, listener, nonBroker);
  driver.transmit(a, bytes('kept'), []);
  driver.closeTransport(a);
  driver.transmit(a, bytes('dropped'), []);
  assert.equal(listener.events, []);
  await waitFor(() => listener.events.length === 2);
  assert.equal(listener.events, ['m:kept', 'e:peer transport closed']);
});

async('deactivate posts onDeactivated', async () => {
  const driver = createAsyncDriver();
  const [a, b] = driver.createTransports();
  const listenerA = new RecordingListener();
  const listenerB = new RecordingListener();
  driver.activateTransport(a, listenerA, nonBroker);
  driver.activateTransport(b, listenerB, nonBroker);
  driver.transmit(a, bytes('lost'), []);
  driver.deactivateTransport(b);
  assert.equal(listenerB.events, []);
  await waitFor(() => listenerB.events.length > 0);
  assert.equal(listenerB.events, ['deactivated']);

  driver.transmit(a, bytes('to deactivated'), []);
  driver.transmit(b, bytes('from deactivated'), []);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(listenerB.events, ['deactivated']);
  assert.equal(listenerA.events, []);
});

async('close after deactivate still deactivates', async () => {
  const driver = createAsyncDriver();
  const [a, b] = driver.createTransports();
  const listenerA = new RecordingListener();
  const listenerB = new RecordingListener();
  driver.activateTransport(a, listenerA, nonBroker);
  driver.activateTransport(b, listenerB, nonBroker);
  driver.deactivateTransport(b);
  driver.closeTransport(b);
  await waitFor(() => listenerB.events.length > 0);
  await waitFor(() => listenerA.events.length > 0);
  assert.equal(listenerB.events, ['deactivated']);
  assert.equal(listenerA.events, ['e:peer transport closed']);
});

async('rejected message reports and errors', async () => {
  const driver = createAsyncDriver();
  const [a, b] = driver.createTransports();
  const listener = new RecordingListener();
  listener.rejectText = 'bad';
  driver.activateTransport(b, listener, nonBroker);
  driver.transmit(a, bytes('bad'), []);
  driver.transmit(a, bytes('after'), []);
  await waitFor(() => listener.events.length >= 2);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(listener.events, ['m:bad', 'e:invalid message: rejected bad']);
  assert.equal(getBadActivityReports(b), ['rejected bad']);
});

async('sandboxed driver operates broker transports', async () => {
  const brokerDriver = createAsyncDriver();
  const sandboxDriver = createAsyncDriver({ canAllocate: false });
  const [brokerSide, sandboxSide] = brokerDriver.createTransports();
  const brokerListener = new RecordingListener();
  const sandboxListener = new RecordingListener();
  brokerDriver.activateTransport(brokerSide, brokerListener, {
    isBroker: true,
  });
  sandboxDriver.activateTransport(sandboxSide, sandboxListener, nonBroker);
  sandboxDriver.transmit(sandboxSide, bytes('hello broker'), []);
  brokerDriver.transmit(brokerSide, bytes('hello sandbox'), []);
  await waitFor(() => brokerListener.texts.length === 1);
  await waitFor(() => sandboxListener.texts.length === 1);
  assert.equal(brokerListener.texts, ['hello broker']);
  assert.equal(sandboxListener.texts, ['hello sandbox']);
});

function subjectListener(received: Subject<string>): TransportListener {
  return {
    onMessage: (data) => {
      received.next(decoder.decode(data));
      return true;
    },
    onError: (reason) => received.error(new Error(reason)),
    onDeactivated: () => received.complete(),
  };
}

async('exchange runs in virtual time', () => {
  const testScheduler = new TestScheduler((actual, expected) => {
    assert.equal(actual, expected);
  });
  const started = Date.now();

  testScheduler.run(({ hot, expectObservable }) => {
    const driver = createAsyncDriver();
    const [a, b] = driver.createTransports();
    const atA = new Subject<string>();
    const atB = new Subject<string>();
    driver.activateTransport(a, subjectListener(atA), nonBroker);
    driver.activateTransport(b, subjectListener(atB), nonBroker);

    // B echoes every message back, so each value makes a round trip.
    atB.subscribe((text) => driver.transmit(b, bytes(`echo ${text}`), []));
    hot('x 9s y 9s z').subscribe((text) => {
      driver.transmit(a, bytes(text), []);
    });
    const ended = hot('30s |');
    ended.subscribe({ complete: () => driver.deactivateTransport(a) });

    const values = { x: 'echo x', y: 'echo y', z: 'echo z' };
    expectObservable(atA).toBe('x 9s y 9s z 11997ms |', values);
    expectObservable(atB).toBe('x 9s y 9s z', { x: 'x', y: 'y', z: 'z' });
  });

  // Thirty virtual seconds must not take real ones.
  assert.ok(Date.now() - started < 5000);
});

async('delivery waits for the virtual clock', () => {
  const testScheduler = new TestScheduler((actual, expected) => {
    assert.equal(actual, expected);
  });
  testScheduler.run(({ expectObservable, flush }) => {
    const driver = createAsyncDriver();
    const [a, b] = driver.createTransports();
    const atB = new Subject<string>();
    const seen: string[] = [];
    atB.subscribe((text) => seen.push(text));
    driver.activateTransport(b, subjectListener(atB), nonBroker);
    expectObservable(atB).toBe('m', { m: 'm' });
    driver.transmit(a, bytes('m'), []);
    assert.equal(seen, []);
    flush();
    assert.equal(seen, ['m']);
  });
});

async.run();
