/**
 * Named hostile inputs from a fake peer that finished a real handshake.
 * Each case checks that nothing escapes the node, that the outcome is
 * right (the link dropped with a reason, or the message accepted or
 * ignored), and that another link of the same node keeps delivering.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MessageCodec, encodeMessage } from '../../src/wire/codec';
import {
  ARRAY_HEADER_SIZE,
  HEADER_SIZE,
  NO_DRIVER_OBJECT,
} from '../../src/wire/message-layout';
import { NodeLinkMemory } from '../../src/link/node-link-memory';
import {
  nodeMessages,
  type FragmentDescriptor,
  type NodeMessage,
} from '../../src/wire/messages';
import { field, message, u64 } from '../../src/wire/types';
import { NodeName } from '../../src/wire/node-name';
import { fieldOffset, readU32, withU32 } from './fixtures/bytes';
import {
  checkGoodLink,
  escapes,
  freshObject,
  inlineParcel,
  setUpBroker,
  setUpReferral,
  watchForEscapes,
  type BrokerWithFakeClient,
  type ReferralSetup,
} from './fixtures/fake-peer';

watchForEscapes();

const randomName = () => new NodeName(0x1234_5678n, 0x9abc_def0n);

function assertNoEscapes(): void {
  assert.equal(escapes, [], 'no exception escaped the node');
}

/** Asserts that the broker dropped the fake's link for `pattern`. */
function assertDropped(env: BrokerWithFakeClient, pattern: RegExp): void {
  assertNoEscapes();
  assert.is(env.badReasons.length, 1, 'one bad message reported');
  assert.match(env.badReasons[0] ?? '', pattern);
  assert.ok(env.fake.failed, 'the fake saw its transport fail');
  assert.is(env.brokerToFake.status().peerClosed, true);
  assert.is(env.broker.stats().links, 1);
  assert.is(checkGoodLink(env), null);
}

/** Asserts that the fake's link is up and its route carries parcels. */
function assertStillUp(env: BrokerWithFakeClient, sequence = 0n): void {
  assertNoEscapes();
  assert.equal(env.badReasons, [], 'no bad message reported');
  assert.not.ok(env.fake.failed, 'the fake transport is open');
  assert.is(env.broker.stats().links, 2);
  env.fake.send(inlineParcel(0n, sequence, 'still here'));
  assert.is(env.brokerToFake.get().text(), 'still here');
  assert.is(checkGoodLink(env), null);
}

// --- Memory requests. ---

test('unsolicited ProvideMemory drops the link', () => {
  const env = setUpBroker();
  env.fake.send({
    type: 'ProvideMemory',
    size: 4096,
    buffer: freshObject(env.driver, 'memory'),
  });
  assertDropped(env, /ProvideMemory of 4096 bytes answers no pending/);
  env.close();
});

test('unsolicited empty ProvideMemory drops the link', () => {
  const env = setUpBroker();
  env.fake.send({ type: 'ProvideMemory', size: 64, buffer: null });
  assertDropped(env, /ProvideMemory of 64 bytes answers no pending/);
  env.close();
});

for (const size of [0, 0xffff_ffff]) {
  test(`RequestMemory of ${size} is refused`, () => {
    const env = setUpBroker({ delegate: true });
    env.fake.send({ type: 'RequestMemory', size });
    const answers = env.fake.receivedOf('ProvideMemory');
    assert.is(answers.length, 1);
    assert.is(answers[0]?.size, size);
    assert.is(answers[0]?.buffer, null, 'refused with an absent buffer');
    assert.is(env.broker.stats().memoryRequestsRefused, 1);
    assertStillUp(env);
    env.close();
  });
}

test('RequestMemory past the link budget is refused', () => {
  const env = setUpBroker({
    delegate: true,
    memoryDelegation: { maxBytesPerLink: 3 * 4096 },
  });
  for (let i = 0; i < 5; i++) {
    env.fake.send({ type: 'RequestMemory', size: 4096 });
  }
  const answers = env.fake.receivedOf('ProvideMemory');
  assert.is(answers.length, 5);
  const served = answers.map((answer) => answer.buffer !== null);
  assert.equal(served, [true, true, true, false, false]);
  assert.is(answers[0]?.buffer?.kind, 'memory');
  assert.is(env.broker.stats().memoryRequestsServed, 3);
  assert.is(env.broker.stats().memoryRequestsRefused, 2);
  assertStillUp(env);
  env.close();
});

test('RequestMemory without the delegate flag is refused', () => {
  const env = setUpBroker({ delegate: false });
  env.fake.send({ type: 'RequestMemory', size: 4096 });
  assert.is(env.fake.receivedOf('ProvideMemory')[0]?.buffer, null);
  assertStillUp(env);
  env.close();
});

// --- Driver object indexes. ---

test('driver object index out of range drops the link', () => {
  const env = setUpBroker();
  const encoded = withU32(
    {
      type: 'AddBlockBuffer',
      id: 1n,
      blockSize: 64,
      buffer: freshObject(env.driver, 'memory'),
    },
    'buffer',
    5,
  );
  env.fake.sendEncoded(encoded);
  assertDropped(env, /index 5 is out of range, the message has 1 objects/);
  env.close();
});

test('driver object array out of range drops the link', () => {
  const env = setUpBroker();
  const parcel = {
    ...inlineParcel(0n, 0n, 'boxed'),
    handleTypes: ['box' as const],
    driverObjects: [freshObject(env.driver, 'application')],
  };
  // The array claims objects 0 to 2, but one object travels.
  env.fake.sendEncoded(withU32(parcel, 'driverObjects', 3, 4));
  assertDropped(env, /driver objects 0 to 2 are out of range/);
  env.close();
});

test('driver object claimed twice drops the link', () => {
  const env = setUpBroker();
  const introduction: NodeMessage = {
    type: 'AcceptIntroduction',
    name: randomName(),
    linkSide: 'A',
    remoteNodeType: 'normal',
    remoteProtocolVersion: 0,
    transport: freshObject(env.driver, 'transport'),
    memory: freshObject(env.driver, 'memory'),
  };
  // The memory field names object 0, which the transport field claims.
  env.fake.sendEncoded(withU32(introduction, 'memory', 0));
  assertDropped(env, /driver object 0 is claimed twice/);
  env.close();
});

test('absent object in a required field drops the link', () => {
  const env = setUpBroker();
  const encoded = withU32(
    {
      type: 'AddBlockBuffer',
      id: 1n,
      blockSize: 64,
      buffer: freshObject(env.driver, 'memory'),
    },
    'buffer',
    NO_DRIVER_OBJECT,
  );
  env.fake.sendEncoded(encoded);
  assertDropped(env, /required driver object is missing/);
  env.close();
});

// --- Messages for the wrong role. ---

type RoleCase = [string, (setup: ReferralSetup) => NodeMessage, RegExp];

const brokerOnly: RoleCase[] = [
  [
    'RequestIntroduction',
    (s) => ({ type: 'RequestIntroduction', name: s.fakeName }),
    /RequestIntroduction sent to a non-broker/,
  ],
  [
    'ReferNonBroker',
    (s) => ({
      type: 'ReferNonBroker',
      referralId: 0n,
      numInitialPortals: 1,
      transport: freshObject(s.driver, 'transport'),
    }),
    /ReferNonBroker sent to a non-broker/,
  ],
  [
    'RelayMessage',
    (s) => ({
      type: 'RelayMessage',
      destination: s.fakeName,
      data: encodeMessage(inlineParcel(0n, 0n, 'relayed')).data,
      driverObjects: [],
    }),
    /RelayMessage sent to a non-broker/,
  ],
];

const brokerSent: RoleCase[] = [
  [
    'AcceptIntroduction',
    (s) => ({
      type: 'AcceptIntroduction',
      name: randomName(),
      linkSide: 'A',
      remoteNodeType: 'normal',
      remoteProtocolVersion: 0,
      transport: freshObject(s.driver, 'transport'),
      memory: freshObject(s.driver, 'memory'),
    }),
    /AcceptIntroduction must come from a broker/,
  ],
  [
    'NonBrokerReferralAccepted',
    (s) => ({
      type: 'NonBrokerReferralAccepted',
      referralId: 0n,
      protocolVersion: 0,
      numInitialPortals: 1,
      name: randomName(),
      transport: freshObject(s.driver, 'transport'),
      buffer: freshObject(s.driver, 'memory'),
    }),
    /NonBrokerReferralAccepted must come from a broker/,
  ],
  [
    'NonBrokerReferralRejected',
    () => ({ type: 'NonBrokerReferralRejected', referralId: 0n }),
    /NonBrokerReferralRejected must come from a broker/,
  ],
  [
    'AcceptRelayedMessage',
    (s) => ({
      type: 'AcceptRelayedMessage',
      source: s.fakeName,
      data: encodeMessage(inlineParcel(0n, 0n, 'relayed')).data,
      driverObjects: [],
    }),
    /AcceptRelayedMessage must come from a broker/,
  ],
];

/** Asserts that the node dropped the fake's link and kept the broker's. */
function assertNodeDropped(setup: ReferralSetup, pattern: RegExp): void {
  assertNoEscapes();
  assert.is(setup.nodeBadReasons.length, 1, 'one bad message reported');
  assert.match(setup.nodeBadReasons[0] ?? '', pattern);
  assert.ok(setup.fakeToNode.failed, 'the fake saw its transport fail');
  assert.is(setup.nodeToFake.status().peerClosed, true);
  assert.is(setup.node.stats().links, 1);
  setup.brokerPortal.put('to node');
  assert.is(setup.nodePortal.get().text(), 'to node');
  setup.nodePortal.put('to broker');
  assert.is(setup.brokerPortal.get().text(), 'to broker');
  // The fake's own broker link is not affected.
  assert.not.ok(setup.fakeToBroker.failed);
  assert.equal(setup.brokerBadReasons, []);
}

test('referral link carries parcels before any case', () => {
  const setup = setUpReferral();
  setup.fakeToNode.send(inlineParcel(0n, 0n, 'from the fake'));
  assert.is(setup.nodeToFake.get().text(), 'from the fake');
  setup.nodeToFake.put('to the fake');
  const parcels = setup.fakeToNode.receivedOf('AcceptParcel');
  assert.is(parcels.length, 1);
  assert.is(setup.node.stats().links, 2);
  assertNoEscapes();
  setup.close();
});

for (const [name, build, pattern] of [...brokerOnly, ...brokerSent]) {
  test(`${name} between non-brokers drops the link`, () => {
    const setup = setUpReferral();
    setup.fakeToNode.send(build(setup));
    assertNodeDropped(setup, pattern);
    setup.close();
  });
}

for (const [name, build, pattern] of brokerSent) {
  test(`${name} sent to the broker drops the link`, () => {
    const env = setUpBroker();
    const setupLike = { driver: env.driver, fakeName: env.fakeName };
    env.fake.send(build(setupLike as ReferralSetup));
    assertDropped(env, pattern);
    env.close();
  });
}

// --- Sublinks and sequence numbers. ---

test('messages for unknown sublinks are ignored', () => {
  const env = setUpBroker();
  env.fake.send({ type: 'RouteClosed', sublink: 999n, sequenceLength: 0n });
  env.fake.send({ type: 'RouteDisconnected', sublink: 999n });
  env.fake.send({ type: 'SnapshotPeerQueueState', sublink: 999n });
  env.fake.send(inlineParcel(999n, 0n, 'lost'));
  env.fake.send(inlineParcel(0xffff_ffff_ffff_ffffn, 0n, 'lost'));
  assertStillUp(env);
  env.close();
});

test('parcel just inside the sequence window is kept', () => {
  const env = setUpBroker();
  env.fake.send(inlineParcel(0n, 999_999n, 'far ahead'));
  assert.is(env.brokerToFake.status().localParcels, 0, 'waits for the gap');
  assertStillUp(env);
  env.close();
});

for (const sequence of [1_000_001n, 2n ** 53n, 2n ** 64n - 1n]) {
  test(`parcel ${sequence} ahead of the window drops the link`, () => {
    const env = setUpBroker();
    env.fake.send(inlineParcel(0n, sequence, 'too far'));
    assertDropped(env, /out of (sequence|range)/);
    env.close();
  });
}

test('route closure far beyond the window drops the link', () => {
  const env = setUpBroker();
  env.fake.send({
    type: 'RouteClosed',
    sublink: 0n,
    sequenceLength: 5_000_000n,
  });
  assertDropped(env, /invalid final sequence length 5000000/);
  env.close();
});

// --- Sizes that disagree with the bytes. ---

/** The byte offset of the parcel data array of an encoded AcceptParcel. */
function parcelArrayOffset(data: Uint8Array): number {
  return readU32(data, fieldOffset('AcceptParcel', 'parcelData'));
}

const sizeCases: [string, (data: Uint8Array) => void, RegExp][] = [
  [
    'more parcel bytes than the array holds',
    (data) => {
      const at = parcelArrayOffset(data);
      new DataView(data.buffer).setUint32(at + 4, 4096, true);
    },
    /invalid AcceptParcel field parcelData/,
  ],
  [
    'an array size past the message end',
    (data) => {
      const at = parcelArrayOffset(data);
      new DataView(data.buffer).setUint32(at, 1 << 20, true);
    },
    /invalid AcceptParcel field parcelData/,
  ],
  [
    'an array size smaller than its header',
    (data) => {
      const at = parcelArrayOffset(data);
      new DataView(data.buffer).setUint32(at, ARRAY_HEADER_SIZE - 1, true);
    },
    /invalid AcceptParcel field parcelData/,
  ],
  [
    'an array inside the params',
    (data) => {
      const at = fieldOffset('AcceptParcel', 'parcelData');
      new DataView(data.buffer).setUint32(at, HEADER_SIZE, true);
    },
    /invalid AcceptParcel field parcelData/,
  ],
  [
    'params larger than the message',
    (data) => {
      new DataView(data.buffer).setUint32(HEADER_SIZE, 1 << 16, true);
    },
    /params size 65536 extends past the message end/,
  ],
  [
    'params smaller than version 0 needs',
    (data) => {
      new DataView(data.buffer).setUint32(HEADER_SIZE, 16, true);
    },
    /params version 0 has 16 bytes/,
  ],
];

for (const [name, mutate, pattern] of sizeCases) {
  test(`parcel with ${name} drops the link`, () => {
    const env = setUpBroker();
    const encoded = encodeMessage(inlineParcel(0n, 0n, 'sized parcel'));
    mutate(encoded.data);
    env.fake.sendEncoded(encoded);
    assertDropped(env, pattern);
    env.close();
  });
}

/**
 * Allocates a block in the fake's view of the link memory and writes
 * `declaredSize` as the parcel fragment's size header.
 */
function fragmentDeclaring(
  env: BrokerWithFakeClient,
  declaredSize: number,
): FragmentDescriptor {
  const hello = env.fake.receivedOf('ConnectFromBrokerToNonBroker')[0];
  const buffer = hello?.buffer;
  if (buffer?.kind !== 'memory') throw new Error('no primary buffer');
  const memory = NodeLinkMemory.adopt(buffer);
  const fragment = memory.allocateFragment(64);
  if (fragment.bytes === null) throw new Error('no free 64-byte block');
  const header = new Int32Array(fragment.bytes.buffer, fragment.bytes.byteOffset, 2);
  fragment.bytes.fill(7, 8);
  Atomics.store(header, 0, declaredSize);
  return fragment.descriptor;
}

test('parcel fragment within its block is accepted', () => {
  const env = setUpBroker();
  const descriptor = fragmentDeclaring(env, 5);
  env.fake.send({ ...inlineParcel(0n, 0n, ''), parcelFragment: descriptor });
  assert.equal([...env.brokerToFake.get().data], [7, 7, 7, 7, 7]);
  assertStillUp(env, 1n);
  env.close();
});

test('parcel fragment larger than its block drops the link', () => {
  const env = setUpBroker();
  const descriptor = fragmentDeclaring(env, 1000);
  env.fake.send({ ...inlineParcel(0n, 0n, ''), parcelFragment: descriptor });
  assertDropped(env, /parcel fragment declares 1000 bytes in a 64-byte block/);
  env.close();
});

test('parcel fragment of negative size drops the link', () => {
  const env = setUpBroker();
  const descriptor = fragmentDeclaring(env, -1);
  env.fake.send({ ...inlineParcel(0n, 0n, ''), parcelFragment: descriptor });
  assertDropped(env, /parcel fragment declares -1 bytes/);
  env.close();
});

test('fragment descriptor past its buffer drops the link', () => {
  const env = setUpBroker();
  const descriptor = fragmentDeclaring(env, 5);
  env.fake.send({
    ...inlineParcel(0n, 0n, ''),
    parcelFragment: { ...descriptor, offset: 0x7fff_fff0, size: 64 },
  });
  assertDropped(env, /parcel fragment in buffer 0 is invalid/);
  env.close();
});

test('parcel with inline data and a fragment drops the link', () => {
  const env = setUpBroker();
  const descriptor = fragmentDeclaring(env, 5);
  env.fake.send({ ...inlineParcel(0n, 0n, 'both'), parcelFragment: descriptor });
  assertDropped(env, /both inline data and a fragment/);
  env.close();
});

// --- Introductions. ---

test('introduction to an unknown name is rejected', () => {
  const env = setUpBroker();
  const unknown = randomName();
  env.fake.send({ type: 'RequestIntroduction', name: unknown });
  const rejections = env.fake.receivedOf('RejectIntroduction');
  assert.is(rejections.length, 1);
  assert.ok(rejections[0]?.name.equals(unknown));
  assert.is(env.fake.receivedOf('AcceptIntroduction').length, 0);
  assertStillUp(env);
  env.close();
});

test('introduction to itself is rejected', () => {
  const env = setUpBroker();
  env.fake.send({ type: 'RequestIntroduction', name: env.fakeName });
  assert.is(env.fake.receivedOf('RejectIntroduction').length, 1);
  assertStillUp(env);
  env.close();
});

// --- Versions and unknown messages. ---

test('newer params version with extra fields is accepted', () => {
  const env = setUpBroker();
  // A peer whose AcceptParcel gained a field in params version 1.
  const newer = nodeMessages.map((row) =>
    row.name === 'AcceptParcel'
      ? message('AcceptParcel', row.id, 1, [
          ...row.fields,
          field('futureField', u64, 1),
        ])
      : row,
  );
  const codec = new MessageCodec(newer);
  const encoded = codec.encode({
    ...inlineParcel(0n, 0n, 'from the future'),
    futureField: 77n,
  } as never);
  assert.is(readU32(encoded.data, HEADER_SIZE + 4), 1, 'params version 1');
  env.fake.sendEncoded(encoded);
  assert.is(env.brokerToFake.get().text(), 'from the future');
  assertStillUp(env, 1n);
  env.close();
});

test('newer header version with a longer header is accepted', () => {
  const env = setUpBroker();
  const plain = encodeMessage({
    type: 'RouteClosed',
    sublink: 0n,
    sequenceLength: 0n,
  }).data;
  // Header version 1, eight bytes longer; the params move with it.
  const longer = new Uint8Array(plain.length + 8);
  longer.set(plain.subarray(0, HEADER_SIZE));
  longer.set(plain.subarray(HEADER_SIZE), HEADER_SIZE + 8);
  longer[0] = HEADER_SIZE + 8;
  longer[1] = 1;
  env.fake.sendRaw(longer);
  assertNoEscapes();
  assert.equal(env.badReasons, []);
  assert.is(env.brokerToFake.status().peerClosed, true, 'closure applied');
  assert.is(env.broker.stats().links, 2);
  assert.is(checkGoodLink(env), null);
  env.close();
});

test('unknown message id is ignored', () => {
  const env = setUpBroker();
  const bytes = encodeMessage(inlineParcel(0n, 0n, 'x')).data;
  bytes[2] = 200;
  env.fake.sendRaw(bytes);
  assertStillUp(env);
  env.close();
});

test('unknown message id with valid objects is ignored', () => {
  const env = setUpBroker();
  const encoded = encodeMessage({
    type: 'AddBlockBuffer',
    id: 1n,
    blockSize: 64,
    buffer: freshObject(env.driver, 'memory'),
  });
  encoded.data[2] = 201;
  env.fake.sendEncoded(encoded);
  assertStillUp(env);
  env.close();
});

test('unknown message id with stray handles drops the link', () => {
  const env = setUpBroker();
  const bytes = encodeMessage(inlineParcel(0n, 0n, 'x')).data;
  bytes[2] = 200;
  env.fake.sendRaw(bytes, [freshObject(env.driver, 'memory')]);
  assertDropped(env, /1 handles arrived with a message that has no driver/);
  env.close();
});

test('unknown message id with a bad header drops the link', () => {
  const env = setUpBroker();
  const bytes = encodeMessage(inlineParcel(0n, 0n, 'x')).data;
  bytes[2] = 200;
  bytes[0] = 8;
  env.fake.sendRaw(bytes);
  assertDropped(env, /header version 0 has size 8/);
  env.close();
});

// --- The same checks on the async driver. ---

test('async broker drops a hostile link and keeps the other', async () => {
  const { drivers } = await import('../../src/index');
  const env = setUpBroker({ driver: drivers.async() });
  await settle(() => env.fake.receivedOf('ConnectFromBrokerToNonBroker').length === 1);
  await settle(() => env.broker.stats().links === 2);
  env.fake.send(inlineParcel(0n, 1_000_001n, 'too far'));
  await settle(() => env.fake.failed);
  assertNoEscapes();
  assert.is(env.badReasons.length, 1);
  assert.match(env.badReasons[0] ?? '', /out of sequence/);
  env.brokerToGood.put('async');
  await settle(() => env.goodToBroker.status().localParcels === 1);
  assert.is(env.goodToBroker.get().text(), 'async');
  assert.is(env.brokerToFake.status().peerClosed, true);
  env.close();
});

function settle(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (condition()) return resolve();
      if (Date.now() - started > timeoutMs) {
        return reject(new Error('timed out waiting for the condition'));
      }
      setTimeout(check, 1);
    };
    check();
  });
}

test.run();
