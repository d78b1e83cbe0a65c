/**
 * The second encoding stage: driver objects flattened into the message
 * for one transport, and rebuilt on arrival.
 *
 * The header's driver object data array offset points to an array with
 * one 8-byte entry per object, `{u32 dataArrayOffset, u16 firstHandle,
 * u16 numHandles}`. `dataArrayOffset` locates a byte array holding what
 * the driver serialized for the object (0 when that is empty). Handles
 * travel beside the bytes, and each object's handles follow the previous
 * object's.
 */

import type {
  Driver,
  DriverObject,
  SerializedObject,
  Transport,
} from '../drivers/driver';
import { IpczError } from '../errors';
import {
  ARRAY_HEADER_SIZE,
  DRIVER_OBJECT_DATA_OFFSET,
  HEADER_SIZE,
  align8,
  checkArray,
  checkHeader,
} from './message-layout';
import {
  nodeMessageName,
  type DecodeError,
  type EncodedMessage,
} from './codec';

/** Size of one `{u32 dataArrayOffset, u16 firstHandle, u16 numHandles}`. */
const OBJECT_ENTRY_SIZE = 8;
/** Handle positions are u16 on the wire. */
const MAX_HANDLES = 0xffff;

/** A message ready for `Driver.transmit`. */
export interface SerializedMessage {
  data: Uint8Array;
  handles: unknown[];
}

/** The outcome of `deserializeMessage`. */
export type DeserializeResult =
  | { ok: true; encoded: EncodedMessage }
  | { ok: false; error: DecodeError };

/**
 * Serializes every object of `encoded` for `transport` with
 * `driver.serializeObject`, which consumes it, and appends the driver
 * object data array. Without objects, `encoded.data` itself is returned.
 *
 * If `serializeObject` throws, the objects after the failing one are
 * closed and the error is rethrown. Throws `IpczError('OUT_OF_RANGE')`
 * when the handles exceed the 65535 that u16 positions can address.
 */
export function serializeMessage(
  encoded: EncodedMessage,
  driver: Driver,
  transport: Transport,
): SerializedMessage {
  const objects = encoded.objects;
  if (objects.length === 0) return { data: encoded.data, handles: [] };

  const serialized = serializeAll(objects, driver, transport);

  // Layout: message bytes, padding, entry array, then each object's data.
  const arrayOffset = align8(encoded.data.length);
  let size =
    arrayOffset + ARRAY_HEADER_SIZE + objects.length * OBJECT_ENTRY_SIZE;
  let handleCount = 0;
  for (const object of serialized) {
    if (object.data.length > 0) {
      size += align8(ARRAY_HEADER_SIZE + object.data.length);
    }
    handleCount += object.handles.length;
  }
  if (handleCount > MAX_HANDLES) {
    // NOTE: the objects are consumed by now, so their handles are lost.
    throw new IpczError(
      'OUT_OF_RANGE',
      `message has ${handleCount} driver handles, more than ${MAX_HANDLES}`,
    );
  }

  const data = new Uint8Array(size);
  data.set(encoded.data);
  const view = new DataView(data.buffer);
  view.setUint32(DRIVER_OBJECT_DATA_OFFSET, arrayOffset, true);
  const entriesSize = ARRAY_HEADER_SIZE + objects.length * OBJECT_ENTRY_SIZE;
  view.setUint32(arrayOffset, entriesSize, true);
  view.setUint32(arrayOffset + 4, objects.length, true);

  const handles: unknown[] = [];
  let tail = arrayOffset + entriesSize;
  for (let i = 0; i < serialized.length; i++) {
    const object = serialized[i]!;
    const entry = arrayOffset + ARRAY_HEADER_SIZE + i * OBJECT_ENTRY_SIZE;
    if (object.data.length > 0) {
      const numBytes = align8(ARRAY_HEADER_SIZE + object.data.length);
      view.setUint32(entry, tail, true);
      view.setUint32(tail, numBytes, true);
      view.setUint32(tail + 4, object.data.length, true);
      data.set(object.data, tail + ARRAY_HEADER_SIZE);
      tail += numBytes;
    }
    view.setUint16(entry + 4, handles.length, true);
    view.setUint16(entry + 6, object.handles.length, true);
    for (const handle of object.handles) handles.push(handle);
  }
  return { data, handles };
}

function serializeAll(
  objects: readonly DriverObject[],
  driver: Driver,
  transport: Transport,
): SerializedObject[] {
  const serialized: SerializedObject[] = [];
  for (let i = 0; i < objects.length; i++) {
    try {
      serialized.push(driver.serializeObject(objects[i]!, transport));
    } catch (error) {
      // The failing object and those before it belong to the driver now.
      for (let j = i + 1; j < objects.length; j++) {
        driver.closeObject(objects[j]!);
      }
      throw error;
    }
  }
  return serialized;
}

/** An object's serialized bytes and handle range, checked but not rebuilt. */
interface ObjectEntry {
  dataStart: number;
  dataLength: number;
  firstHandle: number;
  numHandles: number;
}

/**
 * Checks a received message's header and driver object data array and
 * rebuilds its objects with `driver.deserializeObject`. The result has the
 * form `encodeMessage` produces: the objects, and a private copy of
 * `data` whose header no longer points at the data array.
 *
 * Every handle must belong to exactly one object, in order. Each object is
 * attempted even after one fails; on any failure the rebuilt objects are
 * closed. Unknown message ids pass, so callers can ignore them. Never
 * throws unless the driver does.
 */
export function deserializeMessage(
  data: Uint8Array,
  handles: readonly unknown[],
  driver: Driver,
): DeserializeResult {
  if (data.length < HEADER_SIZE) {
    return failure('unknown message', `message has ${data.length} bytes, ` +
      `fewer than the ${HEADER_SIZE}-byte header`);
  }
  // Bytes in shared memory are copied, so a sender sharing the buffer
  // cannot change them between their check and their use. Otherwise the
  // receiver owns the bytes (drivers hand them over), and a copy would
  // only cost time on every message.
  const bytes = data.buffer instanceof ArrayBuffer ? data : data.slice();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const id = bytes[2]!;
  const name = nodeMessageName(id) ?? `unknown message ${id}`;

  const headerSize = checkHeader(view);
  if (typeof headerSize === 'string') return failure(name, headerSize);

  const entries = readObjectEntries(view, headerSize, handles.length);
  if (typeof entries === 'string') return failure(name, entries);

  const objects: DriverObject[] = [];
  let firstError: string | null = null;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    const start = entry.dataStart;
    const object = driver.deserializeObject({
      data: bytes.slice(start, start + entry.dataLength),
      handles: handles.slice(
        entry.firstHandle,
        entry.firstHandle + entry.numHandles,
      ),
    });
    if (typeof object === 'string') {
      firstError ??= `driver object ${i} is invalid: ${object}`;
    } else {
      objects.push(object);
    }
  }
  if (firstError !== null) {
    for (const object of objects) driver.closeObject(object);
    return failure(name, firstError);
  }

  view.setUint32(DRIVER_OBJECT_DATA_OFFSET, 0, true);
  return { ok: true, encoded: { data: bytes, objects } };
}

function failure(messageName: string, reason: string): DeserializeResult {
  return { ok: false, error: { messageName, field: null, reason } };
}

/** Reads and checks every entry, or returns a reason string. */
function readObjectEntries(
  view: DataView,
  headerSize: number,
  handleCount: number,
): ObjectEntry[] | string {
  const arrayOffset = view.getUint32(DRIVER_OBJECT_DATA_OFFSET, true);
  if (arrayOffset === 0) {
    if (handleCount !== 0) {
      return `${handleCount} handles arrived with a message that has ` +
        'no driver objects';
    }
    return [];
  }
  const bounds = checkArray(view, arrayOffset, OBJECT_ENTRY_SIZE, headerSize);
  if (typeof bounds === 'string') return `driver object data: ${bounds}`;

  const entries: ObjectEntry[] = [];
  let nextHandle = 0;
  for (let i = 0; i < bounds.count; i++) {
    const at = bounds.start + i * OBJECT_ENTRY_SIZE;
    const dataOffset = view.getUint32(at, true);
    const firstHandle = view.getUint16(at + 4, true);
    const numHandles = view.getUint16(at + 6, true);
    if (firstHandle !== nextHandle) {
      return `driver object ${i} starts at handle ${firstHandle}, ` +
        `expected ${nextHandle}`;
    }
    nextHandle += numHandles;
    if (nextHandle > handleCount) {
      return `driver object ${i} needs handles up to ${nextHandle}, ` +
        `but ${handleCount} arrived`;
    }

    let dataStart = 0;
    let dataLength = 0;
    if (dataOffset !== 0) {
      const data = checkArray(view, dataOffset, 1, headerSize);
      if (typeof data === 'string') return `driver object ${i}: ${data}`;
      dataStart = data.start;
      dataLength = data.count;
    }
    entries.push({ dataStart, dataLength, firstHandle, numHandles });
  }
  if (nextHandle !== handleCount) {
    return `${handleCount - nextHandle} of ${handleCount} handles belong ` +
      'to no driver object';
  }
  return entries;
}
