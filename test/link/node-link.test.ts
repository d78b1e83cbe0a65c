import { map } from 'rxjs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Driver, SharedMemory, Transport } from '../../src/drivers/driver';
import { drivers } from '../../src/index';
import { Channel } from '../../src/link/channel';
import { NodeLink } from '../../src/link/node-link';
import {
  NodeLinkMemory,
  PRIMARY_BUFFER_SIZE,
} from '../../src/link/node-link-memory';
import { encodeMessage } from '../../src/wire/codec';
import type { NodeMessage } from '../../src/wire/messages';
import { NodeName } from '../../src/wire/node-name';
import { serializeMessage } from '../../src/wire/serialization';
import { createScheduler } from '../support/marbles';

/**
 * A NodeLink on one end of an async transport pair, and a hand-driven
 * peer on the other end that records what the link sends.
 */
function createLinkWithPeer(driver: Driver) {
  const [local, remote] = driver.createTransports();
  const primary = driver.allocateSharedMemory(PRIMARY_BUFFER_SIZE);
  const channel = new Channel(driver, local, false);
  const link = new NodeLink({
    channel,
    memory: NodeLinkMemory.create(primary),
    localName: new NodeName(1n, 1n),
    remoteName: new NodeName(2n, 2n),
    remoteType: 'broker',
    remoteProtocolVersion: 0,
    side: 'B',
  });
  const sent: number[] = [];
  driver.activateTransport(
    remote,
    {
      onMessage: (data) => {
        sent.push(data[2]);
        return true;
      },
      onError: () => {},
      onDeactivated: () => {},
    },
    { isBroker: true },
  );
  channel.activate();
  const peerSend = (message: NodeMessage) => sendRaw(driver, remote, message);
  const provide = (size: number, memory: SharedMemory | null) =>
    peerSend({ type: 'ProvideMemory', size, buffer: memory });
  return { link, remote, sent, peerSend, provide };
}

function sendRaw(driver: Driver, transport: Transport, message: NodeMessage) {
  const { data, handles } = serializeMessage(
    encodeMessage(message),
    driver,
    transport,
  );
  driver.transmit(transport, data, handles);
}

const requestMemory = suite('requestMemory');

requestMemory('matches answers by size, oldest first', () => {
  createScheduler().run(({ cold, expectObservable }) => {
    const driver = drivers.async();
    const { link, provide } = createLinkWithPeer(driver);
    const small1 = driver.allocateSharedMemory(64);
    const small2 = driver.allocateSharedMemory(64);
    const large = driver.allocateSharedMemory(128);
    cold('--a-b-c|', { a: large, b: small1, c: small2 }).subscribe((m) =>
      provide(m.size, m),
    );
    expectObservable(link.requestMemory(64)).toBe('----(x|)', { x: small1 });
    expectObservable(link.requestMemory(128)).toBe('--(y|)', { y: large });
    expectObservable(link.requestMemory(64)).toBe('------(z|)', { z: small2 });
  });
});

requestMemory('absent buffer fails the request', () => {
  createScheduler().run(({ cold, expectObservable }) => {
    const { link, provide } = createLinkWithPeer(drivers.async());
    cold('---a|').subscribe(() => provide(256, null));
    expectObservable(link.requestMemory(256)).toBe('---#', undefined, {
      code: 'RESOURCE_EXHAUSTED',
    });
  });
});

requestMemory('link loss errors every pending request', () => {
  createScheduler().run(({ cold, expectObservable }) => {
    const driver = drivers.async();
    const { link, remote } = createLinkWithPeer(driver);
    cold('--a|').subscribe(() => driver.closeTransport(remote));
    const unavailable = { code: 'UNAVAILABLE' };
    expectObservable(link.requestMemory(64)).toBe('--#', undefined, unavailable);
    expectObservable(link.requestMemory(64)).toBe('--#', undefined, unavailable);
    expectObservable(link.requestMemory(512)).toBe('--#', undefined, unavailable);
  });
});

requestMemory('cancelled request keeps its place in line', () => {
  createScheduler().run(({ cold, expectObservable }) => {
    const driver = drivers.async();
    const { link, provide } = createLinkWithPeer(driver);
    const first = driver.allocateSharedMemory(64);
    const second = driver.allocateSharedMemory(64);
    cold('---a-b|', { a: first, b: second }).subscribe((m) => provide(64, m));
    expectObservable(link.requestMemory(64), '^-!').toBe('---');
    expectObservable(link.requestMemory(64)).toBe('-----(x|)', { x: second });
  });
});

requestMemory('unsolicited answer drops the link', () => {
  createScheduler().run(({ cold, expectObservable }) => {
    const driver = drivers.async();
    const { link, provide } = createLinkWithPeer(driver);
    cold('--a|').subscribe(() =>
      provide(4096, driver.allocateSharedMemory(4096)),
    );
    expectObservable(link.end$.pipe(map((end) => end.badMessage))).toBe(
      '--(t|)',
      { t: true },
    );
  });
});

requestMemory('sends RequestMemory only on subscription', () => {
  const { link, sent } = createLinkWithPeer(drivers.sync());
  const request = link.requestMemory(64);
  assert.equal(sent, []);
  request.subscribe({ error: () => {} });
  assert.equal(sent, [64]);
});

requestMemory.run();
