/**
 * Byte layouts computed once from a message table, and the checks on the
 * message header and on arrays that every reader of wire bytes shares.
 *
 * Messages are little-endian. The 24-byte header is u8 size, u8 version,
 * u8 message id, 5 reserved bytes, u64 sequence number, u32 offset of the
 * driver object data array and u32 reserved. The params follow at offset
 * `header.size`, opening with `{u32 size, u32 version}`, and the arrays
 * follow the params. Each array is `{u32 numBytes, u32 numElements}`
 * followed by its elements, and `numBytes` counts the array header and the
 * padding that keeps the next array 8-aligned.
 */

import type { FieldSpec, FieldType, MessageSpec, StructType } from './types';

/** Size of the message header this code writes (header version 0). */
export const HEADER_SIZE = 24;
/** Size of the `{u32 size, u32 version}` header opening the params. */
export const PARAMS_HEADER_SIZE = 8;
/** Size of the `{u32 numBytes, u32 numElements}` header of an array. */
export const ARRAY_HEADER_SIZE = 8;
/** Offset in the message header of the driver object data array offset. */
export const DRIVER_OBJECT_DATA_OFFSET = 16;
/** Driver object index meaning "no object". */
export const NO_DRIVER_OBJECT = 0xffff_ffff;

/** Offset, size and type details of one field, built once per table. */
export interface FieldLayout {
  readonly name: string;
  readonly kind: FieldType['kind'];
  /** Byte offset from the start of the params or the struct. */
  readonly offset: number;
  readonly size: number;
  readonly align: number;
  readonly since: number;
  /** Enum wire width in bytes, else 0. */
  readonly width: number;
  /** Enum values by wire value, or flag names by bit; else empty. */
  readonly names: readonly string[];
  /** Wire value of each enum value, or bit mask of each flag name. */
  readonly codes: ReadonlyMap<string, number> | null;
  readonly struct: StructLayout | null;
  /** Element layout of an array field (offset 0), else null. */
  readonly element: FieldLayout | null;
  /** For driver objects: whether 0xffffffff (absent) is rejected. */
  readonly required: boolean;
}

/** Field offsets and total size of a struct. */
export interface StructLayout {
  readonly name: string;
  readonly fields: readonly FieldLayout[];
  readonly size: number;
}

/** Everything the codec needs to read or write one message. */
export interface MessageLayout {
  readonly name: string;
  readonly id: number;
  readonly version: number;
  readonly fields: readonly FieldLayout[];
  /**
   * Smallest acceptable params size for each params version: the end of
   * the last field of that version, rounded up to 8.
   */
  readonly paramsSizeByVersion: readonly number[];
  /** Params size this code writes (its newest version). */
  readonly paramsSize: number;
  readonly arrayFields: readonly FieldLayout[];
}

/** Rounds `n` up to a multiple of 8. */
export function align8(n: number): number {
  return (n + 7) & ~7;
}

function alignTo(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

const structCache = new WeakMap<StructType, StructLayout>();

function layoutStruct(type: StructType): StructLayout {
  const cached = structCache.get(type);
  if (cached !== undefined) return cached;

  const fields = layoutFields(type.name, type.fields, 0);
  const end = fields.reduce((max, f) => Math.max(max, f.offset + f.size), 0);
  const layout = { name: type.name, fields, size: alignTo(end, 8) };
  structCache.set(type, layout);
  return layout;
}

/** Size and alignment of a field type, as ipcz's padded structs have. */
function sizeAndAlign(type: FieldType): [number, number] {
  switch (type.kind) {
    case 'u8':
    case 'bool':
    case 'flags':
      return [1, 1];
    case 'u16':
      return [2, 2];
    case 'u32':
    case 'array':
    case 'driverObject':
      return [4, 4];
    case 'driverObjectArray':
      return [8, 4];
    case 'u64':
      return [8, 8];
    case 'nodeName':
      return [16, 8];
    case 'enum':
      return [type.width, type.width];
    case 'reserved':
      return [type.size, type.size];
    case 'struct':
      return [layoutStruct(type).size, 8];
  }
}

function layoutField(
  spec: FieldSpec,
  offset: number,
  owner: string,
): FieldLayout {
  const type = spec.type;
  const [size, align] = sizeAndAlign(type);
  let names: readonly string[] = [];
  let codes: Map<string, number> | null = null;
  if (type.kind === 'enum') {
    names = type.values;
    codes = new Map(type.values.map((value, i) => [value, i]));
  } else if (type.kind === 'flags') {
    if (type.bits.length > 8) {
      throw new Error(`${owner}.${spec.name}: more than 8 flags in a byte`);
    }
    names = type.bits;
    codes = new Map(type.bits.map((bit, i) => [bit, 1 << i]));
  }

  let element: FieldLayout | null = null;
  if (type.kind === 'array') {
    element = layoutField(
      { name: spec.name, type: type.element, since: 0 },
      0,
      owner,
    );
  }

  return {
    name: spec.name,
    kind: type.kind,
    offset: alignTo(offset, align),
    size,
    align,
    since: spec.since,
    width: type.kind === 'enum' ? type.width : 0,
    names,
    codes,
    struct: type.kind === 'struct' ? layoutStruct(type) : null,
    element,
    required: type.kind === 'driverObject' && type.required,
  };
}

function layoutFields(
  owner: string,
  specs: readonly FieldSpec[],
  start: number,
): FieldLayout[] {
  const fields: FieldLayout[] = [];
  let offset = start;
  let since = 0;
  for (const spec of specs) {
    // Older readers know only a prefix of the params, so a field may never
    // precede one from an older version.
    if (spec.since < since) {
      throw new Error(`${owner}.${spec.name}: version ${spec.since} field ` +
        `after a version ${since} field`);
    }
    since = spec.since;
    const layout = layoutField(spec, offset, owner);
    fields.push(layout);
    offset = layout.offset + layout.size;
  }
  return fields;
}

/**
 * Computes the layout of one table row. Throws a plain Error for a
 * malformed table, which is a programming error caught at module load.
 */
export function layoutMessage(spec: MessageSpec): MessageLayout {
  if (!Number.isInteger(spec.id) || spec.id < 0 || spec.id > 255) {
    throw new Error(`${spec.name}: message id ${spec.id} is not a u8`);
  }
  const fields = layoutFields(spec.name, spec.fields, PARAMS_HEADER_SIZE);
  for (const f of fields) {
    if (f.since > spec.version) {
      throw new Error(`${spec.name}.${f.name}: since ${f.since} is newer ` +
        `than the message version ${spec.version}`);
    }
  }

  const paramsSizeByVersion: number[] = [];
  for (let version = 0; version <= spec.version; version++) {
    let end = PARAMS_HEADER_SIZE;
    for (const f of fields) {
      if (f.since <= version) end = f.offset + f.size;
    }
    paramsSizeByVersion.push(align8(end));
  }

  return {
    name: spec.name,
    id: spec.id,
    version: spec.version,
    fields,
    paramsSizeByVersion,
    paramsSize: paramsSizeByVersion[spec.version]!,
    arrayFields: fields.filter((f) => f.kind === 'array'),
  };
}

/** Position and count of an array's elements after a header check. */
export interface ArrayBounds {
  /** Offset of the first element from the start of the message. */
  start: number;
  count: number;
}

/**
 * Checks the array whose header is at `offset`: the header and
 * `numBytes` must lie inside the message after `minOffset`, and
 * `numBytes` must hold `numElements` elements of `elementSize` bytes.
 * Returns the bounds, or a reason string when the array is invalid.
 */
export function checkArray(
  view: DataView,
  offset: number,
  elementSize: number,
  minOffset: number,
): ArrayBounds | string {
  const length = view.byteLength;
  if (offset < minOffset) {
    return `array offset ${offset} is before the end of the params ` +
      `(${minOffset})`;
  }
  if (offset + ARRAY_HEADER_SIZE > length) {
    return `array header at ${offset} extends past the message end (${length})`;
  }
  const numBytes = view.getUint32(offset, true);
  const count = view.getUint32(offset + 4, true);
  if (numBytes < ARRAY_HEADER_SIZE) {
    return `array size ${numBytes} is smaller than its 8-byte header`;
  }
  if (offset + numBytes > length) {
    return `array of ${numBytes} bytes at ${offset} extends past the ` +
      `message end (${length})`;
  }
  // count < 2^32 and element sizes are small, so the product is exact.
  if (count * elementSize > numBytes - ARRAY_HEADER_SIZE) {
    return `array of ${numBytes} bytes cannot hold ${count} elements of ` +
      `${elementSize} bytes`;
  }
  return { start: offset + ARRAY_HEADER_SIZE, count };
}

/**
 * Checks the message header and returns its size, or a reason string. A
 * header of version 0 is exactly 24 bytes; a newer header may be longer
 * and its extra bytes are skipped. Callers have checked that the message
 * has at least 24 bytes.
 */
export function checkHeader(view: DataView): number | string {
  const size = view.getUint8(0);
  const version = view.getUint8(1);
  if (version === 0 && size !== HEADER_SIZE) {
    return `header version 0 has size ${size}, expected ${HEADER_SIZE}`;
  }
  if (size < HEADER_SIZE) {
    return `header size ${size} is smaller than ${HEADER_SIZE} bytes`;
  }
  if (size > view.byteLength) {
    return `header size ${size} exceeds the message size ${view.byteLength}`;
  }
  return size;
}
