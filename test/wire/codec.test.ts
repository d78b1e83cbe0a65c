import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { DriverObject } from '../../src/drivers/driver';
import { isIpczError } from '../../src/errors';
import {
  MessageCodec,
  decodeMessage,
  encodeMessage,
  type DecodeResult,
  type EncodedMessage,
} from '../../src/wire/codec';
import { HEADER_SIZE, layoutMessage } from '../../src/wire/message-layout';
import {
  NULL_BUFFER_ID,
  nodeMessages,
  type MessageOf,
  type NodeMessage,
} from '../../src/wire/messages';
import { NodeName } from '../../src/wire/node-name';
import {
  bool,
  field,
  message,
  u32,
  u64,
  type MessageSpec,
} from '../../src/wire/types';
import {
  createRandom,
  makeObject,
  mutate,
  randomInt,
  sampleMessage,
  sampleNodeMessage,
  type SampleShape,
} from './message-samples';

function specNamed(name: string): MessageSpec {
  const spec = nodeMessages.find((s) => s.name === name);
  if (spec === undefined) throw new Error(`no message ${name}`);
  return spec;
}

/** Returns the offset of a params field from the start of the message. */
function offsetOf(messageName: string, fieldName: string): number {
  const layout = layoutMessage(specNamed(messageName));
  const found = layout.fields.find((f) => f.name === fieldName);
  if (found === undefined) throw new Error(`no field ${fieldName}`);
  return HEADER_SIZE + found.offset;
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function expectError(result: DecodeResult, field: string | null): string {
  if (result.ok) {
    assert.unreachable(`decoded although ${field ?? 'the header'} is bad`);
    return '';
  }
  assert.is(result.error.field, field);
  assert.type(result.error.reason, 'string');
  return result.error.reason;
}

function expectMessage(result: DecodeResult): NodeMessage {
  if (!result.ok) {
    assert.unreachable(`decode failed: ${JSON.stringify(result.error)}`);
    throw new Error('unreachable');
  }
  if (result.message === null) {
    assert.unreachable(`unknown id ${result.id}`);
    throw new Error('unreachable');
  }
  return result.message;
}

/** Checks that every decoded object is the encoded object, not a copy. */
function assertSameObjects(
  decoded: NodeMessage,
  original: NodeMessage,
): void {
  const before = original as unknown as Record<string, unknown>;
  const after = decoded as unknown as Record<string, unknown>;
  for (const key of Object.keys(before)) {
    const value = before[key];
    if (Array.isArray(value)) {
      value.forEach((item, i) => {
        if (typeof item === 'object' && item !== null && 'kind' in item) {
          assert.ok((after[key] as unknown[])[i] === item, `${key}[${i}]`);
        }
      });
    } else if (typeof value === 'object' && value !== null && 'kind' in value) {
      assert.ok(after[key] === value, key);
    }
  }
}

const shapes: SampleShape[] = ['empty', 'full', 'random', 'random'];

test('table lists every ipcz node message', () => {
  const ids = nodeMessages.map((s) => s.id);
  assert.equal(ids, [
    0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 30, 31,
    32, 33, 34, 35, 36, 64, 65, 66, 67,
  ]);
  assert.is(new Set(nodeMessages.map((s) => s.name)).size, 29);
});

test('round trip of every message', () => {
  const random = createRandom(1);
  for (const spec of nodeMessages) {
    for (const shape of shapes) {
      const original = sampleNodeMessage(spec, random, shape);
      const encoded = encodeMessage(original);
      assert.is(encoded.data.length % 8, 0, `${spec.name} size`);
      assert.is(encoded.data[2], spec.id, `${spec.name} id`);

      const decoded = expectMessage(decodeMessage(encoded));
      assert.equal(decoded, original, `${spec.name} (${shape})`);
      assertSameObjects(decoded, original);
    }
  }
});

test('RequestMemory byte layout', () => {
  const encoded = encodeMessage({ type: 'RequestMemory', size: 0x1234 });
  assert.equal(
    Array.from(encoded.data),
    [
      ...[24, 0, 64, 0, 0, 0, 0, 0],
      ...[0, 0, 0, 0, 0, 0, 0, 0],
      ...[0, 0, 0, 0, 0, 0, 0, 0],
      ...[16, 0, 0, 0, 0, 0, 0, 0],
      ...[0x34, 0x12, 0, 0, 0, 0, 0, 0],
    ],
  );
  assert.equal(encoded.objects, []);
});

test('AcceptIntroduction field offsets', () => {
  const transport = makeObject();
  const memory = makeObject();
  const sent: MessageOf<'AcceptIntroduction'> = {
    type: 'AcceptIntroduction',
    name: new NodeName(0x0102n, 0x0304n),
    linkSide: 'B',
    remoteNodeType: 'normal',
    remoteProtocolVersion: 7,
    transport,
    memory,
  };
  const { data, objects } = encodeMessage(sent);
  const view = viewOf(data);
  assert.is(view.getUint32(24, true), 40, 'params size');
  assert.is(view.getBigUint64(32, true), 0x0102n, 'name high');
  assert.is(view.getBigUint64(40, true), 0x0304n, 'name low');
  assert.is(data[48], 1, 'linkSide');
  assert.is(data[49], 1, 'remoteNodeType');
  assert.is(view.getUint32(52, true), 7, 'remoteProtocolVersion');
  assert.is(view.getUint32(56, true), 0, 'transport index');
  assert.is(view.getUint32(60, true), 1, 'memory index');
  assert.ok(objects[0] === transport);
  assert.ok(objects[1] === memory);
});

test('AcceptParcel arrays and router descriptor', () => {
  const objects = [makeObject(), makeObject()];
  const router = {
    closedPeerSequenceLength: 1n,
    newSublink: 2n,
    newLinkStateFragment: { bufferId: 3n, offset: 4, size: 5 },
    newDecayingSublink: 6n,
    nextOutgoingSequenceNumber: 7n,
    numBytesProduced: 8n,
    nextIncomingSequenceNumber: 9n,
    decayingIncomingSequenceLength: 10n,
    numBytesConsumed: 11n,
    peerClosed: false,
    proxyAlreadyBypassed: true,
    proxyPeerNodeName: new NodeName(12n, 13n),
    proxyPeerSublink: 14n,
  };
  const sent: MessageOf<'AcceptParcel'> = {
    type: 'AcceptParcel',
    sublink: 40n,
    sequenceNumber: 41n,
    parcelData: new Uint8Array([9, 8, 7]),
    parcelFragment: { bufferId: NULL_BUFFER_ID, offset: 0, size: 0 },
    handleTypes: ['portal', 'relayedBox', 'box'],
    newRouters: [router],
    driverObjects: objects,
  };
  const encoded = encodeMessage(sent);
  const view = viewOf(encoded.data);

  const dataField = offsetOf('AcceptParcel', 'parcelData');
  const dataOffset = view.getUint32(dataField, true);
  assert.is(dataOffset, 24 + 64, 'parcel data follows the params');
  assert.is(view.getUint32(dataOffset, true), 16, 'parcel data numBytes');
  assert.is(view.getUint32(dataOffset + 4, true), 3, 'parcel data count');

  const routersOffset = view.getUint32(
    offsetOf('AcceptParcel', 'newRouters'),
    true,
  );
  assert.is(view.getUint32(routersOffset, true), 8 + 112, 'descriptor size');
  const descriptor = routersOffset + 8;
  assert.is(view.getBigUint64(descriptor + 16, true), 3n, 'fragment id');
  assert.is(encoded.data[descriptor + 80], 2, 'flags byte');
  assert.is(view.getBigUint64(descriptor + 88, true), 12n, 'peer name');
  assert.is(view.getBigUint64(descriptor + 104, true), 14n, 'peer sublink');

  const decoded = expectMessage(decodeMessage(encoded));
  assert.equal(decoded, sent);
});

test('encoder rejects invalid values', () => {
  const cases: [string, () => unknown][] = [
    ['u32 too large', () =>
      encodeMessage({ type: 'RequestMemory', size: 2 ** 32 })],
    ['negative u32', () => encodeMessage({ type: 'RequestMemory', size: -1 })],
    ['fractional u32', () =>
      encodeMessage({ type: 'RequestMemory', size: 1.5 })],
    ['u64 too large', () =>
      encodeMessage({ type: 'RouteDisconnected', sublink: 2n ** 64n })],
    ['unknown type', () =>
      encodeMessage({ type: 'Nope' } as unknown as NodeMessage)],
    ['required object null', () =>
      encodeMessage({
        type: 'AddBlockBuffer',
        id: 1n,
        blockSize: 64,
        buffer: null,
      })],
    ['unknown enum value', () =>
      encodeMessage({
        type: 'AcceptIntroduction',
        name: new NodeName(1n, 1n),
        linkSide: 'C' as 'A',
        remoteNodeType: 'broker',
        remoteProtocolVersion: 0,
        transport: makeObject(),
        memory: makeObject(),
      })],
  ];
  for (const [name, run] of cases) {
    let caught: unknown = null;
    try {
      run();
    } catch (error) {
      caught = error;
    }
    assert.ok(isIpczError(caught), name);
    assert.is((caught as { code: string }).code, 'INVALID_ARGUMENT', name);
  }
});

test('truncated messages are rejected', () => {
  const random = createRandom(2);
  for (const spec of nodeMessages) {
    const encoded = encodeMessage(sampleNodeMessage(spec, random, 'full'));
    for (let length = 0; length < encoded.data.length; length++) {
      const result = decodeMessage({
        data: encoded.data.subarray(0, length),
        objects: encoded.objects,
      });
      assert.is(result.ok, false, `${spec.name} cut to ${length} bytes`);
    }
  }
});

test('trailing bytes after a message are ignored', () => {
  const encoded = encodeMessage({ type: 'RequestMemory', size: 5 });
  const longer = new Uint8Array(encoded.data.length + 16);
  longer.set(encoded.data);
  longer.fill(0xee, encoded.data.length);
  const decoded = expectMessage(decodeMessage({ data: longer, objects: [] }));
  assert.equal(decoded, { type: 'RequestMemory', size: 5 });
});

test('oversized sizes are rejected', () => {
  const base = encodeMessage({
    type: 'RelayMessage',
    destination: new NodeName(1n, 2n),
    data: new Uint8Array(10),
    driverObjects: [],
  });
  const dataField = offsetOf('RelayMessage', 'data');
  const arrayOffset = viewOf(base.data).getUint32(dataField, true);
  const cases: [string, string | null, (view: DataView) => void][] = [
    ['header size past end', null, (v) => v.setUint8(0, 255)],
    ['params size past end', null, (v) => v.setUint32(24, 1000, true)],
    ['array numBytes past end', 'data', (v) =>
      v.setUint32(arrayOffset, 1000, true)],
    ['array count past numBytes', 'data', (v) =>
      v.setUint32(arrayOffset + 4, 17, true)],
    ['array offset past end', 'data', (v) =>
      v.setUint32(dataField, 4096, true)],
    ['array offset inside params', 'data', (v) =>
      v.setUint32(dataField, 32, true)],
    ['array numBytes below header', 'data', (v) =>
      v.setUint32(arrayOffset, 4, true)],
  ];
  for (const [name, field, change] of cases) {
    const data = base.data.slice();
    change(viewOf(data));
    const reason = expectError(decodeMessage({ data, objects: [] }), field);
    assert.ok(reason.length > 0, name);
  }
});

test('short params and headers are rejected', () => {
  const base = encodeMessage({
    type: 'RouteClosed',
    sublink: 1n,
    sequenceLength: 2n,
  });
  const cases: [string, (view: DataView) => void][] = [
    ['params smaller than its fields', (v) => v.setUint32(24, 16, true)],
    ['params smaller than its header', (v) => v.setUint32(24, 4, true)],
    ['header version 0 not 24 bytes', (v) => v.setUint8(0, 32)],
    ['header smaller than 24 bytes', (v) => {
      v.setUint8(0, 16);
      v.setUint8(1, 1);
    }],
  ];
  for (const [name, change] of cases) {
    const data = base.data.slice();
    change(viewOf(data));
    const result = decodeMessage({ data, objects: [] });
    assert.is(result.ok, false, name);
  }
});

test('newer header with extra bytes is accepted', () => {
  const base = encodeMessage({ type: 'RequestMemory', size: 77 });
  const data = new Uint8Array(base.data.length + 8);
  data.set(base.data.subarray(0, 24));
  data.set(base.data.subarray(24), 32);
  data[0] = 32;
  data[1] = 1;
  const decoded = expectMessage(decodeMessage({ data, objects: [] }));
  assert.equal(decoded, { type: 'RequestMemory', size: 77 });
});

// The same two messages as a newer peer would define them, with fields
// this version does not know.
const futureTable = [
  message('AcceptParcel', 20, 3, [
    ...specNamed('AcceptParcel').fields,
    field('futureCount', u64, 3),
  ]),
  message('ConnectFromNonBrokerToBroker', 1, 2, [
    field('protocolVersion', u32),
    field('numInitialPortals', u32),
    field('flags', u32, 1),
    field('futureLimit', u32, 2),
    field('futureName', u64, 2),
  ]),
];

// ConnectFromNonBrokerToBroker as plain ipcz defines it, before `flags`.
const pastTable = [
  message('ConnectFromNonBrokerToBroker', 1, 0, [
    field('protocolVersion', u32),
    field('numInitialPortals', u32),
  ]),
];

test('newer params: extra fields skipped', () => {
  const future = new MessageCodec(futureTable);
  const random = createRandom(3);
  for (const spec of futureTable) {
    for (const shape of shapes) {
      const sent = sampleMessage(spec, random, shape);
      const encoded = future.encode(sent);
      const decoded = expectMessage(decodeMessage(encoded));

      const expected: Record<string, unknown> = { ...sent };
      delete expected['futureCount'];
      delete expected['futureLimit'];
      delete expected['futureName'];
      assert.equal(decoded, expected, `${spec.name} (${shape})`);
    }
  }
});

test('older params: flags default to 0', () => {
  const past = new MessageCodec(pastTable);
  const encoded = past.encode({
    type: 'ConnectFromNonBrokerToBroker',
    protocolVersion: 0,
    numInitialPortals: 3,
  });
  assert.is(viewOf(encoded.data).getUint32(24, true), 16, 'v0 params size');

  const decoded = expectMessage(decodeMessage(encoded));
  assert.equal(decoded, {
    type: 'ConnectFromNonBrokerToBroker',
    protocolVersion: 0,
    numInitialPortals: 3,
    flags: 0,
  });
});

test('older reader ignores flags it does not know', () => {
  const past = new MessageCodec(pastTable);
  const encoded = encodeMessage({
    type: 'ConnectFromNonBrokerToBroker',
    protocolVersion: 0,
    numInitialPortals: 2,
    flags: 1,
  });
  const result = past.decode(encoded);
  assert.ok(result.ok);
  assert.equal(result.ok && result.message, {
    type: 'ConnectFromNonBrokerToBroker',
    protocolVersion: 0,
    numInitialPortals: 2,
  });
});

test('version 1 params too short for flags', () => {
  const encoded = encodeMessage({
    type: 'ConnectToReferredBroker',
    protocolVersion: 0,
    numInitialPortals: 2,
    flags: 1,
  });
  const data = encoded.data.slice();
  // Claim version 1 but give only the version 0 size of 16 bytes.
  viewOf(data).setUint32(24, 16, true);
  expectError(decodeMessage({ data, objects: [] }), null);
});

test('unknown message id decodes to null', () => {
  const data = encodeMessage({ type: 'RequestMemory', size: 1 }).data.slice();
  data[2] = 200;
  const result = decodeMessage({ data, objects: [] });
  assert.equal(result, { ok: true, message: null, id: 200 });

  data[0] = 200;
  const badHeader = decodeMessage({ data, objects: [] });
  expectError(badHeader, null);
  const name = !badHeader.ok && badHeader.error.messageName;
  assert.is(name, 'unknown message 200');
});

function encodeProvideMemory(buffer: DriverObject | null): EncodedMessage {
  return encodeMessage({ type: 'ProvideMemory', size: 64, buffer });
}

test('driver object index out of range', () => {
  const encoded = encodeProvideMemory(makeObject());
  viewOf(encoded.data).setUint32(offsetOf('ProvideMemory', 'buffer'), 1, true);
  const reason = expectError(decodeMessage(encoded), 'buffer');
  assert.match(reason, 'out of range');
});

test('driver object claimed twice', () => {
  const encoded = encodeMessage({
    type: 'ConnectToReferredNonBroker',
    name: new NodeName(1n, 1n),
    brokerName: new NodeName(2n, 2n),
    referrerName: new NodeName(3n, 3n),
    brokerProtocolVersion: 0,
    referrerProtocolVersion: 0,
    numInitialPortals: 1,
    brokerLinkBuffer: makeObject(),
    referrerLinkTransport: makeObject(),
    referrerLinkBuffer: makeObject(),
  });
  const at = offsetOf('ConnectToReferredNonBroker', 'referrerLinkBuffer');
  viewOf(encoded.data).setUint32(at, 0, true);
  const reason = expectError(decodeMessage(encoded), 'referrerLinkBuffer');
  assert.match(reason, 'claimed twice');
});

test('driver object array overlaps a claim', () => {
  const encoded = encodeMessage({
    type: 'AcceptParcelDriverObjects',
    sublink: 1n,
    sequenceNumber: 2n,
    driverObjects: [makeObject(), makeObject()],
  });
  const at = offsetOf('AcceptParcelDriverObjects', 'driverObjects');
  const view = viewOf(encoded.data);

  const overlapping = { data: encoded.data.slice(), objects: encoded.objects };
  viewOf(overlapping.data).setUint32(at, 1, true);
  expectError(decodeMessage(overlapping), 'driverObjects');

  view.setUint32(at + 4, 5, true);
  const reason = expectError(decodeMessage(encoded), 'driverObjects');
  assert.match(reason, 'out of range');
});

test('required driver object missing', () => {
  const encoded = encodeMessage({
    type: 'AddBlockBuffer',
    id: 1n,
    blockSize: 64,
    buffer: makeObject(),
  });
  const at = offsetOf('AddBlockBuffer', 'buffer');
  viewOf(encoded.data).setUint32(at, 0xffffffff, true);
  const reason = expectError(decodeMessage(encoded), 'buffer');
  assert.match(reason, 'missing');
});

test('optional driver object may be absent', () => {
  const decoded = expectMessage(decodeMessage(encodeProvideMemory(null)));
  assert.equal(decoded, { type: 'ProvideMemory', size: 64, buffer: null });
});

test('unclaimed driver objects are accepted', () => {
  const encoded = encodeProvideMemory(null);
  encoded.objects.push(makeObject());
  expectMessage(decodeMessage(encoded));
});

test('invalid enum values are rejected', () => {
  const introduction = encodeMessage({
    type: 'AcceptIntroduction',
    name: new NodeName(1n, 1n),
    linkSide: 'A',
    remoteNodeType: 'broker',
    remoteProtocolVersion: 0,
    transport: makeObject(),
    memory: makeObject(),
  });
  introduction.data[offsetOf('AcceptIntroduction', 'linkSide')] = 2;
  expectError(decodeMessage(introduction), 'linkSide');

  const parcel = encodeMessage({
    type: 'AcceptParcel',
    sublink: 1n,
    sequenceNumber: 0n,
    parcelData: new Uint8Array(0),
    parcelFragment: { bufferId: NULL_BUFFER_ID, offset: 0, size: 0 },
    handleTypes: ['box', 'box'],
    newRouters: [],
    driverObjects: [makeObject(), makeObject()],
  });
  const view = viewOf(parcel.data);
  const types = view.getUint32(offsetOf('AcceptParcel', 'handleTypes'), true);
  view.setUint32(types + 8 + 4, 3, true);
  expectError(decodeMessage(parcel), 'handleTypes[1]');
});

test('router descriptor flags are checked', () => {
  const random = createRandom(4);
  const sent = sampleNodeMessage(specNamed('AcceptParcel') as never, random);
  const parcel = sent as MessageOf<'AcceptParcel'>;
  parcel.newRouters = [parcel.newRouters[0] ?? sampleRouter(random)];
  const encoded = encodeMessage(parcel);
  const view = viewOf(encoded.data);
  const routers = view.getUint32(offsetOf('AcceptParcel', 'newRouters'), true);
  encoded.data[routers + 8 + 80] = 4;
  expectError(decodeMessage(encoded), 'newRouters[0].flags');
});

function sampleRouter(random: () => number) {
  const parcel = sampleNodeMessage(
    specNamed('AcceptParcel') as never,
    random,
    'full',
  ) as MessageOf<'AcceptParcel'>;
  return parcel.newRouters[0]!;
}

test('booleans other than 0 and 1 are rejected', () => {
  const codec = new MessageCodec([
    message('Toggle', 9, 0, [field('enabled', bool), field('count', u32)]),
  ]);
  const encoded = codec.encode({ type: 'Toggle', enabled: true, count: 3 });
  const decoded = codec.decode(encoded);
  assert.equal(decoded.ok && decoded.message, {
    type: 'Toggle',
    enabled: true,
    count: 3,
  });

  encoded.data[HEADER_SIZE + 8] = 2;
  const result = codec.decode(encoded);
  assert.is(result.ok, false);
  assert.is(!result.ok && result.error.field, 'enabled');
});

test('decoded byte arrays survive input reuse', () => {
  const shared = new Uint8Array(new SharedArrayBuffer(256));
  const encoded = encodeMessage({
    type: 'RelayMessage',
    destination: new NodeName(1n, 2n),
    data: new Uint8Array([1, 2, 3]),
    driverObjects: [],
  });
  shared.set(encoded.data);
  const view = shared.subarray(0, encoded.data.length);
  const decoded = expectMessage(decodeMessage({ data: view, objects: [] }));
  shared.fill(0);
  assert.equal(
    Array.from((decoded as MessageOf<'RelayMessage'>).data),
    [1, 2, 3],
  );
});

test('random mutations never throw', () => {
  const random = createRandom(5);
  const samples = nodeMessages.flatMap((spec) =>
    shapes.map((shape) =>
      encodeMessage(sampleNodeMessage(spec, random, shape)),
    ),
  );
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < 20000; i++) {
    const sample = samples[randomInt(random, samples.length)]!;
    const data = mutate(sample.data, random);
    const objects = sample.objects.slice(0, randomInt(random, 4));
    const result = decodeMessage({ data, objects });
    assert.type(result.ok, 'boolean');
    if (result.ok) {
      accepted++;
      if (result.message === null) assert.type(result.id, 'number');
      else assert.type(result.message.type, 'string');
    } else {
      rejected++;
      assert.type(result.error.messageName, 'string');
      assert.type(result.error.reason, 'string');
    }
  }
  // Both outcomes must occur, or the mutations test nothing.
  assert.ok(accepted > 100, `accepted ${accepted}`);
  assert.ok(rejected > 100, `rejected ${rejected}`);
});

test.run();
