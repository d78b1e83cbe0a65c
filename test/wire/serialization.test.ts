import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type {
  Driver,
  DriverObject,
  SerializedObject,
  Transport,
} from '../../src/drivers/driver';
import { IpczError, isIpczError } from '../../src/errors';
import {
  decodeMessage,
  encodeMessage,
  type EncodedMessage,
} from '../../src/wire/codec';
import { NULL_BUFFER_ID, nodeMessages } from '../../src/wire/messages';
import { NodeName } from '../../src/wire/node-name';
import {
  deserializeMessage,
  serializeMessage,
} from '../../src/wire/serialization';
import {
  createRandom,
  makeObject,
  mutate,
  randomInt,
  sampleNodeMessage,
} from './message-samples';

/**
 * A driver whose objects cross as one handle, the object itself, and no
 * bytes. With `withData`, application objects also carry their value as
 * bytes so the per-object byte arrays get exercised.
 */
class FakeDriver {
  readonly closed: DriverObject[] = [];
  /** deserializeObject rejects these handles. */
  readonly rejected = new Set<unknown>();
  /** serializeObject throws for these objects. */
  readonly unserializable = new Set<DriverObject>();

  constructor(private readonly withData = false) {}

  serializeObject(object: DriverObject): SerializedObject {
    if (this.unserializable.has(object)) {
      throw new IpczError('INVALID_ARGUMENT', 'object is not serializable');
    }
    let data = new Uint8Array(0);
    if (this.withData && object.kind === 'application') {
      data = new TextEncoder().encode(`value ${String(object.value)}`);
    }
    return { data, handles: [object] };
  }

  deserializeObject(serialized: SerializedObject): DriverObject | string {
    if (serialized.handles.length !== 1) {
      return `expected 1 handle, got ${serialized.handles.length}`;
    }
    const object = serialized.handles[0] as DriverObject;
    if (this.rejected.has(object)) return 'handle rejected by the test';
    if (this.withData && object.kind === 'application') {
      const text = new TextDecoder().decode(serialized.data);
      if (text !== `value ${String(object.value)}`) {
        return `data ${JSON.stringify(text)} does not match the handle`;
      }
    }
    return object;
  }

  closeObject(object: DriverObject): void {
    this.closed.push(object);
  }

  asDriver(): Driver {
    return this as unknown as Driver;
  }
}

const transport: Transport = { kind: 'transport' };

function send(encoded: EncodedMessage, driver: FakeDriver) {
  return serializeMessage(encoded, driver.asDriver(), transport);
}

function receive(
  data: Uint8Array,
  handles: readonly unknown[],
  driver: FakeDriver,
) {
  return deserializeMessage(data, handles, driver.asDriver());
}

function parcelWithObjects(count: number): EncodedMessage {
  return encodeMessage({
    type: 'AcceptParcel',
    sublink: 3n,
    sequenceNumber: 9n,
    parcelData: new Uint8Array([1, 2, 3, 4, 5]),
    parcelFragment: { bufferId: NULL_BUFFER_ID, offset: 0, size: 0 },
    handleTypes: Array.from({ length: count }, () => 'box' as const),
    newRouters: [],
    driverObjects: Array.from({ length: count }, makeObject),
  });
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

test('round trip through serialization', () => {
  for (const withData of [false, true]) {
    const driver = new FakeDriver(withData);
    const encoded = parcelWithObjects(3);
    const sent = send(encoded, driver);
    assert.equal(sent.handles, encoded.objects);
    assert.is(sent.data.length % 8, 0, 'size is a multiple of 8');

    const received = receive(sent.data, sent.handles, driver);
    assert.ok(received.ok, 'deserialized');
    if (!received.ok) return;
    assert.equal(received.encoded.objects, encoded.objects);
    const view = viewOf(received.encoded.data);
    assert.is(view.getUint32(16, true), 0, 'data array offset cleared');

    const decoded = decodeMessage(received.encoded);
    const original = decodeMessage(encoded);
    assert.equal(decoded, original);
    assert.equal(driver.closed, []);
  }
});

test('round trip of every message', () => {
  const random = createRandom(11);
  const driver = new FakeDriver(true);
  for (const spec of nodeMessages) {
    const message = sampleNodeMessage(spec, random, 'full');
    const sent = send(encodeMessage(message), driver);
    const received = receive(sent.data, sent.handles, driver);
    assert.ok(received.ok, spec.name);
    if (!received.ok) return;
    const decoded = decodeMessage(received.encoded);
    assert.equal(decoded, { ok: true, message }, spec.name);
  }
});

test('message without objects passes through', () => {
  const driver = new FakeDriver();
  const encoded = encodeMessage({ type: 'RequestMemory', size: 8 });
  const sent = send(encoded, driver);
  assert.ok(sent.data === encoded.data);
  assert.equal(sent.handles, []);

  // The receiver owns delivered bytes, so plain memory is used in place.
  const received = receive(sent.data, [], driver);
  assert.ok(received.ok);
  if (received.ok) assert.ok(received.encoded.data === sent.data, 'in place');

  // Bytes in shared memory could change under the checks: they are copied.
  const shared = new Uint8Array(new SharedArrayBuffer(sent.data.length));
  shared.set(sent.data);
  const fromShared = receive(shared, [], driver);
  assert.ok(fromShared.ok);
  if (fromShared.ok) assert.ok(fromShared.encoded.data !== shared, 'copied');
});

test('handle count mismatches are rejected', () => {
  const driver = new FakeDriver();
  const sent = send(parcelWithObjects(2), driver);
  const extra = deserializeMessage(
    sent.data,
    [...sent.handles, makeObject()],
    driver.asDriver(),
  );
  assert.is(extra.ok, false, 'extra handle');
  const missing = deserializeMessage(
    sent.data,
    sent.handles.slice(0, 1),
    driver.asDriver(),
  );
  assert.is(missing.ok, false, 'missing handle');

  const plain = encodeMessage({ type: 'RequestMemory', size: 8 });
  const stray = receive(plain.data, [makeObject()], driver);
  assert.is(stray.ok, false, 'handle without objects');
});

test('corrupt object entries are rejected', () => {
  const driver = new FakeDriver(true);
  const sent = send(parcelWithObjects(2), driver);
  const arrayOffset = viewOf(sent.data).getUint32(16, true);
  const firstEntry = arrayOffset + 8;
  const cases: [string, (view: DataView) => void][] = [
    ['array offset past end', (v) => v.setUint32(16, 1 << 20, true)],
    ['array offset inside header', (v) => v.setUint32(16, 8, true)],
    ['entry count too large', (v) => v.setUint32(arrayOffset + 4, 9, true)],
    ['first handle skips one', (v) => v.setUint16(firstEntry + 4, 1, true)],
    ['too many handles', (v) => v.setUint16(firstEntry + 6, 3, true)],
    ['data offset past end', (v) => v.setUint32(firstEntry, 1 << 20, true)],
    ['data does not match', (v) => v.setUint32(firstEntry, 0, true)],
  ];
  for (const [name, change] of cases) {
    const data = sent.data.slice();
    change(viewOf(data));
    const result = receive(data, sent.handles, driver);
    assert.is(result.ok, false, name);
    if (!result.ok) assert.is(result.error.messageName, 'AcceptParcel', name);
  }
});

test('driver rejection closes rebuilt objects', () => {
  const driver = new FakeDriver();
  const encoded = parcelWithObjects(3);
  const sent = send(encoded, driver);
  driver.rejected.add(encoded.objects[1]);

  const result = receive(sent.data, sent.handles, driver);
  assert.is(result.ok, false);
  if (!result.ok) assert.match(result.error.reason, 'driver object 1');
  assert.equal(driver.closed, [encoded.objects[0], encoded.objects[2]]);
});

test('serialize failure closes the rest', () => {
  const driver = new FakeDriver();
  const encoded = parcelWithObjects(4);
  driver.unserializable.add(encoded.objects[1]!);
  let caught: unknown = null;
  try {
    send(encoded, driver);
  } catch (error) {
    caught = error;
  }
  assert.ok(isIpczError(caught));
  assert.equal(driver.closed, [encoded.objects[2], encoded.objects[3]]);
});

test('short message is rejected', () => {
  const result = receive(new Uint8Array(10), [], new FakeDriver());
  assert.is(result.ok, false);
});

test('relayed message survives two hops', () => {
  const driver = new FakeDriver();
  const inner = encodeMessage({
    type: 'AddBlockBuffer',
    id: 5n,
    blockSize: 256,
    buffer: makeObject(),
  });
  const relay = encodeMessage({
    type: 'RelayMessage',
    destination: new NodeName(7n, 8n),
    data: inner.data,
    driverObjects: inner.objects,
  });
  const sent = send(relay, driver);
  const atBroker = receive(sent.data, sent.handles, driver);
  assert.ok(atBroker.ok);
  if (!atBroker.ok) return;
  const relayed = decodeMessage(atBroker.encoded);
  if (!relayed.ok || relayed.message?.type !== 'RelayMessage') {
    assert.unreachable('RelayMessage did not decode');
    return;
  }

  const forward = encodeMessage({
    type: 'AcceptRelayedMessage',
    source: new NodeName(1n, 1n),
    data: relayed.message.data,
    driverObjects: relayed.message.driverObjects,
  });
  const sent2 = send(forward, driver);
  const atTarget = receive(sent2.data, sent2.handles, driver);
  if (!atTarget.ok) {
    assert.unreachable('AcceptRelayedMessage did not deserialize');
    return;
  }
  const accepted = decodeMessage(atTarget.encoded);
  if (!accepted.ok || accepted.message?.type !== 'AcceptRelayedMessage') {
    assert.unreachable('AcceptRelayedMessage did not decode');
    return;
  }
  const original = decodeMessage({
    data: accepted.message.data,
    objects: accepted.message.driverObjects,
  });
  assert.equal(original, {
    ok: true,
    message: {
      type: 'AddBlockBuffer',
      id: 5n,
      blockSize: 256,
      buffer: inner.objects[0],
    },
  });
});

test('random mutations never throw', () => {
  const random = createRandom(12);
  const driver = new FakeDriver(true);
  const samples = nodeMessages.map((spec) =>
    send(encodeMessage(sampleNodeMessage(spec, random, 'full')), driver),
  );
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < 10000; i++) {
    const sample = samples[randomInt(random, samples.length)]!;
    const data = mutate(sample.data, random);
    const received = receive(data, sample.handles, driver);
    if (!received.ok) {
      rejected++;
      assert.type(received.error.reason, 'string');
      continue;
    }
    const decoded = decodeMessage(received.encoded);
    assert.type(decoded.ok, 'boolean');
    if (decoded.ok) accepted++;
    else rejected++;
  }
  assert.ok(accepted > 100, `accepted ${accepted}`);
  assert.ok(rejected > 100, `rejected ${rejected}`);
});

test.run();
