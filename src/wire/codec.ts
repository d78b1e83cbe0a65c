/**
 * The encoder and decoder of node messages, both driven by the layouts
 * computed from the message table. Encoding leaves driver objects as a
 * list beside the bytes; `serialization.ts` flattens them for a transport.
 */

import type { DriverObject } from '../drivers/driver';
import { IpczError } from '../errors';
import {
  ARRAY_HEADER_SIZE,
  HEADER_SIZE,
  NO_DRIVER_OBJECT,
  PARAMS_HEADER_SIZE,
  align8,
  checkArray,
  checkHeader,
  layoutMessage,
  type FieldLayout,
  type MessageLayout,
  type StructLayout,
} from './message-layout';
import { nodeMessages, type NodeMessage } from './messages';
import { NodeName } from './node-name';
import type { MessageSpec } from './types';

/**
 * A message before its driver objects are serialized: the bytes, and the
 * objects that driver object fields refer to by index. Relays forward this
 * form unchanged.
 */
export interface EncodedMessage {
  data: Uint8Array;
  objects: DriverObject[];
}

/** The reason a message was rejected, and where. */
export interface DecodeError {
  /** The message name, or `unknown message N` when the id is unknown. */
  messageName: string;
  /** Path of the offending field, such as `newRouters[2].flags`. */
  field: string | null;
  reason: string;
}

/**
 * The outcome of decoding. A message with an unknown id decodes to
 * `message: null` so callers can ignore it, as newer peers may add ids.
 */
export type DecodeResultOf<M> =
  | { ok: true; message: M }
  | { ok: true; message: null; id: number }
  | { ok: false; error: DecodeError };

/** The outcome of decoding a node message. */
export type DecodeResult = DecodeResultOf<NodeMessage>;

const MAX_U64 = 0xffff_ffff_ffff_ffffn;

type Fields = Record<string, unknown>;

function invalidValue(
  owner: string,
  field: FieldLayout,
  value: unknown,
  expected: string,
): IpczError {
  let shownValue = String(value);
  if (typeof value === 'bigint') shownValue = `${value}n`;
  if (typeof value === 'string') shownValue = JSON.stringify(value);
  if (typeof value === 'object' && value !== null) shownValue = 'an object';
  return new IpczError(
    'INVALID_ARGUMENT',
    `${owner}.${field.name} must be ${expected}, got ${shownValue}`,
  );
}

function checkUint(
  owner: string,
  field: FieldLayout,
  value: unknown,
  max: number,
): number {
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < 0 ||
    value > max
  ) {
    throw invalidValue(owner, field, value, `an integer from 0 to ${max}`);
  }
  return value;
}

function isNodeName(value: unknown): value is NodeName {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as NodeName).high === 'bigint' &&
    typeof (value as NodeName).low === 'bigint'
  );
}

/** Writes one inline value; `owner` names the message or struct. */
function writeValue(
  view: DataView,
  at: number,
  field: FieldLayout,
  value: unknown,
  owner: string,
): void {
  switch (field.kind) {
    case 'u8':
      view.setUint8(at, checkUint(owner, field, value, 0xff));
      return;
    case 'u16':
      view.setUint16(at, checkUint(owner, field, value, 0xffff), true);
      return;
    case 'u32':
      view.setUint32(at, checkUint(owner, field, value, 0xffff_ffff), true);
      return;
    case 'u64':
      if (typeof value !== 'bigint' || value < 0n || value > MAX_U64) {
        throw invalidValue(owner, field, value, 'a bigint from 0 to 2^64-1');
      }
      view.setBigUint64(at, value, true);
      return;
    case 'bool':
      if (typeof value !== 'boolean') {
        throw invalidValue(owner, field, value, 'a boolean');
      }
      view.setUint8(at, value ? 1 : 0);
      return;
    case 'nodeName':
      if (!isNodeName(value)) {
        throw invalidValue(owner, field, value, 'a NodeName');
      }
      view.setBigUint64(at, value.high, true);
      view.setBigUint64(at + 8, value.low, true);
      return;
    case 'enum': {
      const code =
        typeof value === 'string' ? field.codes!.get(value) : undefined;
      if (code === undefined) {
        throw invalidValue(owner, field, value, `one of ${field.names}`);
      }
      if (field.width === 1) view.setUint8(at, code);
      else view.setUint32(at, code, true);
      return;
    }
    case 'struct': {
      if (typeof value !== 'object' || value === null) {
        throw invalidValue(owner, field, value, `a ${field.struct!.name}`);
      }
      const struct = field.struct!;
      for (const member of struct.fields) {
        writeField(view, at + member.offset, member, value as Fields, struct);
      }
      return;
    }
    default:
      throw new Error(`${owner}.${field.name}: ${field.kind} is not inline`);
  }
}

/** Writes a struct member or flags byte taken from the struct's object. */
function writeField(
  view: DataView,
  at: number,
  field: FieldLayout,
  owner: Fields,
  struct: StructLayout,
): void {
  if (field.kind === 'reserved') return;
  if (field.kind === 'flags') {
    writeFlags(view, at, field, owner, struct.name);
    return;
  }
  writeValue(view, at, field, owner[field.name], struct.name);
}

function writeFlags(
  view: DataView,
  at: number,
  field: FieldLayout,
  owner: Fields,
  ownerName: string,
): void {
  let byte = 0;
  for (const [bit, mask] of field.codes!) {
    const value = owner[bit];
    if (typeof value !== 'boolean') {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `${ownerName}.${bit} must be a boolean, got ${String(value)}`,
      );
    }
    if (value) byte |= mask;
  }
  view.setUint8(at, byte);
}

/** Number of elements in an array field's value, after checking its type. */
function arrayLength(owner: string, field: FieldLayout, value: unknown) {
  if (field.element!.kind === 'u8') {
    if (!(value instanceof Uint8Array)) {
      throw invalidValue(owner, field, value, 'a Uint8Array');
    }
    return value.length;
  }
  if (!Array.isArray(value)) {
    throw invalidValue(owner, field, value, 'an array');
  }
  return value.length;
}

/** Bytes an array takes after the params, header and padding included. */
function arrayBytes(field: FieldLayout, count: number): number {
  if (count === 0) return 0;
  return align8(ARRAY_HEADER_SIZE + count * field.element!.size);
}

/**
 * Encodes and decodes the messages of one table. `encodeMessage` and
 * `decodeMessage` share the instance for the node message table. Tests
 * build others to produce older or newer versions of a message.
 */
export class MessageCodec<
  M extends { type: string } = { type: string } & Record<string, unknown>,
> {
  private readonly byName = new Map<string, MessageLayout>();
  private readonly byId: (MessageLayout | undefined)[] = [];

  constructor(table: readonly MessageSpec[]) {
    for (const spec of table) {
      const layout = layoutMessage(spec);
      if (this.byId[layout.id] !== undefined || this.byName.has(spec.name)) {
        throw new Error(`duplicate message ${spec.name} (id ${spec.id})`);
      }
      this.byId[layout.id] = layout;
      this.byName.set(layout.name, layout);
    }
  }

  /** Returns the name of message `id`, or null when the table lacks it. */
  nameOf(id: number): string | null {
    return this.byId[id]?.name ?? null;
  }

  /**
   * Encodes a message with the newest params version of its table row.
   * Driver objects go to `objects`, in field order. Throws
   * `IpczError('INVALID_ARGUMENT')` for an unknown type, a value out of
   * its field's range or a missing required driver object.
   */
  encode(message: M): EncodedMessage {
    const layout = this.byName.get(message.type);
    if (layout === undefined) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `unknown message type ${JSON.stringify(message.type)}`,
      );
    }
    const values = message as unknown as Fields;

    const paramsEnd = HEADER_SIZE + layout.paramsSize;
    let size = paramsEnd;
    for (const f of layout.arrayFields) {
      size += arrayBytes(f, arrayLength(layout.name, f, values[f.name]));
    }

    const data = new Uint8Array(size);
    const view = new DataView(data.buffer);
    data[0] = HEADER_SIZE;
    data[2] = layout.id;
    view.setUint32(HEADER_SIZE, layout.paramsSize, true);
    view.setUint32(HEADER_SIZE + 4, layout.version, true);

    const objects: DriverObject[] = [];
    let tail = paramsEnd;
    for (const f of layout.fields) {
      const at = HEADER_SIZE + f.offset;
      const value = values[f.name];
      switch (f.kind) {
        case 'reserved':
          break;
        case 'flags':
          writeFlags(view, at, f, values, layout.name);
          break;
        case 'array':
          tail = writeArray(data, view, at, tail, f, value, layout.name);
          break;
        case 'driverObject':
          writeDriverObject(view, at, f, value, objects, layout.name);
          break;
        case 'driverObjectArray':
          writeDriverObjectArray(view, at, f, value, objects, layout.name);
          break;
        default:
          writeValue(view, at, f, value, layout.name);
      }
    }
    return { data, objects };
  }

  /**
   * Decodes and validates a message, returning a failure for invalid
   * bytes rather than throwing. Every size, offset, count, enum, boolean
   * and driver object index is checked, and no driver object may be
   * claimed twice. Unclaimed objects are not
   * an error, and the caller must close them along with every object of
   * a rejected message.
   *
   * Byte array fields are views into `encoded.data` (copied first when
   * its buffer is not a plain ArrayBuffer, such as shared memory), so the
   * caller must not modify `encoded.data` while the message is in use.
   */
  decode(encoded: EncodedMessage): DecodeResultOf<M> {
    let bytes = encoded.data;
    if (!(bytes.buffer instanceof ArrayBuffer)) bytes = bytes.slice();
    if (bytes.length < HEADER_SIZE) {
      return failure(
        'unknown message',
        null,
        `message has ${bytes.length} bytes, fewer than the ` +
          `${HEADER_SIZE}-byte header`,
      );
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    const id = bytes[2]!;
    const layout = this.byId[id];
    const name = layout?.name ?? `unknown message ${id}`;

    const headerSize = checkHeader(view);
    if (typeof headerSize === 'string') return failure(name, null, headerSize);
    if (layout === undefined) return { ok: true, message: null, id };

    const params = checkParams(view, headerSize, layout);
    if (typeof params === 'string') return failure(name, null, params);

    const reader = new MessageReader(
      view,
      bytes,
      encoded.objects,
      name,
      headerSize + params.size,
    );
    const out: Fields = { type: layout.name };
    for (const f of layout.fields) {
      if (f.since > params.version) {
        writeDefault(f, out);
      } else if (!reader.readField(f, headerSize + f.offset, out)) {
        return { ok: false, error: reader.error! };
      }
    }
    return { ok: true, message: out as unknown as M };
  }
}

function failure(
  messageName: string,
  field: string | null,
  reason: string,
): { ok: false; error: DecodeError } {
  return { ok: false, error: { messageName, field, reason } };
}

/**
 * Checks the params header: its size must cover every field of the params
 * version read, which is the sender's version clamped to the newest known
 * one, and must end inside the message. Returns the size and the version
 * read, or a reason string.
 */
function checkParams(
  view: DataView,
  at: number,
  layout: MessageLayout,
): { size: number; version: number } | string {
  const length = view.byteLength;
  if (at + PARAMS_HEADER_SIZE > length) {
    return `params header at ${at} extends past the message end (${length})`;
  }
  const size = view.getUint32(at, true);
  const sentVersion = view.getUint32(at + 4, true);
  if (size > length - at) {
    return `params size ${size} extends past the message end (${length})`;
  }
  const version = Math.min(sentVersion, layout.version);
  const minSize = layout.paramsSizeByVersion[version]!;
  if (size < minSize) {
    return `params version ${sentVersion} has ${size} bytes, ` +
      `expected at least ${minSize}`;
  }
  return { size, version };
}

function writeArray(
  data: Uint8Array,
  view: DataView,
  at: number,
  tail: number,
  field: FieldLayout,
  value: unknown,
  owner: string,
): number {
  const count = (value as ArrayLike<unknown>).length;
  if (count === 0) {
    view.setUint32(at, 0, true);
    return tail;
  }
  const element = field.element!;
  const numBytes = arrayBytes(field, count);
  view.setUint32(at, tail, true);
  view.setUint32(tail, numBytes, true);
  view.setUint32(tail + 4, count, true);

  const start = tail + ARRAY_HEADER_SIZE;
  if (element.kind === 'u8') {
    data.set(value as Uint8Array, start);
  } else {
    const values = value as readonly unknown[];
    for (let i = 0; i < count; i++) {
      writeValue(view, start + i * element.size, element, values[i], owner);
    }
  }
  return tail + numBytes;
}

function isDriverObject(value: unknown): value is DriverObject {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as DriverObject).kind === 'string'
  );
}

function writeDriverObject(
  view: DataView,
  at: number,
  field: FieldLayout,
  value: unknown,
  objects: DriverObject[],
  owner: string,
): void {
  if (value === null || value === undefined) {
    if (field.required) {
      throw invalidValue(owner, field, value, 'a driver object (required)');
    }
    view.setUint32(at, NO_DRIVER_OBJECT, true);
    return;
  }
  if (!isDriverObject(value)) {
    throw invalidValue(owner, field, value, 'a driver object or null');
  }
  view.setUint32(at, objects.length, true);
  objects.push(value);
}

function writeDriverObjectArray(
  view: DataView,
  at: number,
  field: FieldLayout,
  value: unknown,
  objects: DriverObject[],
  owner: string,
): void {
  if (!Array.isArray(value) || !value.every(isDriverObject)) {
    throw invalidValue(owner, field, value, 'an array of driver objects');
  }
  view.setUint32(at, objects.length, true);
  view.setUint32(at + 4, value.length, true);
  for (const object of value) objects.push(object);
}

/** Stores the value a field takes when the sender's params predate it. */
function writeDefault(field: FieldLayout, out: Fields): void {
  switch (field.kind) {
    case 'reserved':
      return;
    case 'flags':
      for (const bit of field.names) out[bit] = false;
      return;
    case 'u8':
    case 'u16':
    case 'u32':
      out[field.name] = 0;
      return;
    case 'u64':
      out[field.name] = 0n;
      return;
    case 'bool':
      out[field.name] = false;
      return;
    case 'nodeName':
      out[field.name] = NodeName.invalid;
      return;
    case 'enum':
      out[field.name] = field.names[0];
      return;
    case 'struct': {
      const value: Fields = {};
      for (const member of field.struct!.fields) writeDefault(member, value);
      out[field.name] = value;
      return;
    }
    case 'array':
      out[field.name] = field.element!.kind === 'u8' ? new Uint8Array(0) : [];
      return;
    case 'driverObject':
      out[field.name] = null;
      return;
    case 'driverObjectArray':
      out[field.name] = [];
      return;
  }
}

const NO_CLAIMS = new Uint8Array(0);

/**
 * Reads the fields of one message. Each read method returns false, or
 * undefined for a value, after storing the first error in `error`; no
 * method throws.
 */
class MessageReader {
  error: DecodeError | null = null;
  private readonly claimed: Uint8Array;

  constructor(
    private readonly view: DataView,
    private readonly bytes: Uint8Array,
    private readonly objects: readonly DriverObject[],
    private readonly messageName: string,
    /** Arrays must start after the params. */
    private readonly minArrayOffset: number,
  ) {
    this.claimed =
      objects.length === 0 ? NO_CLAIMS : new Uint8Array(objects.length);
  }

  private fail(field: string, reason: string): undefined {
    this.error = { messageName: this.messageName, field, reason };
    return undefined;
  }

  /** Reads a params field or struct member into `out`. */
  readField(field: FieldLayout, at: number, out: Fields): boolean {
    switch (field.kind) {
      case 'reserved':
        return true;
      case 'flags':
        return this.readFlags(field, at, out);
      case 'array':
        return this.readArray(field, at, out);
      case 'driverObject':
        return this.readDriverObject(field, at, out);
      case 'driverObjectArray':
        return this.readDriverObjectArray(field, at, out);
      default: {
        const value = this.readValue(field, at);
        if (this.error !== null) return false;
        out[field.name] = value;
        return true;
      }
    }
  }

  /** Reads an inline value: a scalar, node name, enum or struct. */
  private readValue(field: FieldLayout, at: number): unknown {
    const view = this.view;
    switch (field.kind) {
      case 'u8':
        return view.getUint8(at);
      case 'u16':
        return view.getUint16(at, true);
      case 'u32':
        return view.getUint32(at, true);
      case 'u64':
        return view.getBigUint64(at, true);
      case 'bool': {
        const byte = view.getUint8(at);
        if (byte > 1) {
          return this.fail(field.name, `boolean is ${byte}, expected 0 or 1`);
        }
        return byte === 1;
      }
      case 'nodeName':
        return new NodeName(
          view.getBigUint64(at, true),
          view.getBigUint64(at + 8, true),
        );
      case 'enum': {
        const code =
          field.width === 1 ? view.getUint8(at) : view.getUint32(at, true);
        if (code >= field.names.length) {
          return this.fail(
            field.name,
            `enum value ${code} is invalid, expected 0 to ` +
              `${field.names.length - 1}`,
          );
        }
        return field.names[code];
      }
      case 'struct':
        return this.readStruct(field, at);
      default:
        return this.fail(field.name, `${field.kind} is not an inline type`);
    }
  }

  private readStruct(field: FieldLayout, at: number): Fields | undefined {
    const out: Fields = {};
    for (const member of field.struct!.fields) {
      if (!this.readField(member, at + member.offset, out)) {
        this.error!.field = `${field.name}.${this.error!.field}`;
        return undefined;
      }
    }
    return out;
  }

  private readFlags(field: FieldLayout, at: number, out: Fields): boolean {
    const byte = this.view.getUint8(at);
    const names = field.names;
    for (let i = 0; i < names.length; i++) {
      out[names[i]!] = (byte & (1 << i)) !== 0;
    }
    if (byte >> names.length !== 0) {
      this.fail(
        field.name,
        `flags byte ${byte} sets bits other than ${names.join(', ')}`,
      );
      return false;
    }
    return true;
  }

  private readArray(field: FieldLayout, at: number, out: Fields): boolean {
    const offset = this.view.getUint32(at, true);
    const element = field.element!;
    if (offset === 0) {
      out[field.name] = element.kind === 'u8' ? new Uint8Array(0) : [];
      return true;
    }
    const bounds = checkArray(
      this.view,
      offset,
      element.size,
      this.minArrayOffset,
    );
    if (typeof bounds === 'string') {
      this.fail(field.name, bounds);
      return false;
    }

    const { start, count } = bounds;
    if (element.kind === 'u8') {
      out[field.name] = this.bytes.subarray(start, start + count);
      return true;
    }
    const values: unknown[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const value = this.readValue(element, start + i * element.size);
      if (this.error !== null) {
        // Name the element: `newRouters.flags` becomes `newRouters[3].flags`.
        const path = this.error.field!;
        this.error.field =
          `${field.name}[${i}]` + path.slice(field.name.length);
        return false;
      }
      values[i] = value;
    }
    out[field.name] = values;
    return true;
  }

  private claim(index: number, field: string): DriverObject | undefined {
    const count = this.objects.length;
    if (index >= count) {
      return this.fail(
        field,
        `driver object index ${index} is out of range, the message ` +
          `has ${count} objects`,
      );
    }
    if (this.claimed[index] !== 0) {
      return this.fail(field, `driver object ${index} is claimed twice`);
    }
    this.claimed[index] = 1;
    return this.objects[index];
  }

  private readDriverObject(
    field: FieldLayout,
    at: number,
    out: Fields,
  ): boolean {
    const index = this.view.getUint32(at, true);
    if (index === NO_DRIVER_OBJECT) {
      if (field.required) {
        this.fail(field.name, 'required driver object is missing');
        return false;
      }
      out[field.name] = null;
      return true;
    }
    const object = this.claim(index, field.name);
    if (object === undefined) return false;
    out[field.name] = object;
    return true;
  }

  private readDriverObjectArray(
    field: FieldLayout,
    at: number,
    out: Fields,
  ): boolean {
    const first = this.view.getUint32(at, true);
    const count = this.view.getUint32(at + 4, true);
    if (first + count > this.objects.length) {
      this.fail(
        field.name,
        `driver objects ${first} to ${first + count - 1} are out of ` +
          `range, the message has ${this.objects.length} objects`,
      );
      return false;
    }
    const values: DriverObject[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const object = this.claim(first + i, field.name);
      if (object === undefined) return false;
      values[i] = object;
    }
    out[field.name] = values;
    return true;
  }
}

const nodeCodec = new MessageCodec<NodeMessage>(nodeMessages);

/** Returns the name of node message `id`, or null for an unknown id. */
export function nodeMessageName(id: number): string | null {
  return nodeCodec.nameOf(id);
}

/**
 * Encodes a node message; see `MessageCodec.encode`. The header's
 * sequence number and driver object data array offset are written as 0.
 */
export function encodeMessage(message: NodeMessage): EncodedMessage {
  return nodeCodec.encode(message);
}

/** Decodes and validates a node message; see `MessageCodec.decode`. */
export function decodeMessage(encoded: EncodedMessage): DecodeResult {
  return nodeCodec.decode(encoded);
}
