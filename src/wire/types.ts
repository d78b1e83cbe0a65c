/**
 * Field type descriptors for the node message table, and the type-level
 * mapping from a descriptor to the TypeScript value it encodes. The codec
 * reads the same descriptors at run time, so the table is the only place
 * a message layout is written down.
 */

import type { DriverObject } from '../drivers/driver';
import type { NodeName } from './node-name';

/** An unsigned integer or boolean stored inline. */
export interface ScalarType<K extends 'u8' | 'u16' | 'u32' | 'u64' | 'bool'> {
  readonly kind: K;
}

/** A 128-bit node name: the high u64, then the low u64. */
export interface NodeNameType {
  readonly kind: 'nodeName';
}

/**
 * An enumeration stored as an unsigned integer of `width` bytes. The wire
 * value of `values[i]` is `i`; any other wire value is invalid.
 */
export interface EnumType<V extends readonly string[] = readonly string[]> {
  readonly kind: 'enum';
  readonly width: 1 | 4;
  readonly values: V;
}

/**
 * One byte of single-bit booleans, bit `i` holding `bits[i]`, as ipcz
 * stores C++ bitfields (least significant bit first). Each name becomes a
 * boolean property of the enclosing struct; other bits must be zero.
 */
export interface FlagsType<B extends readonly string[] = readonly string[]> {
  readonly kind: 'flags';
  readonly bits: B;
}

/** Padding that ipcz names in its layout: written as zero, never read. */
export interface ReservedType {
  readonly kind: 'reserved';
  readonly size: 1 | 2 | 4 | 8;
}

/** A fixed-size struct stored inline, with every field inline too. */
export interface StructType<
  F extends readonly FieldSpec<string, FixedType>[] = readonly FieldSpec<
    string,
    FixedType
  >[],
> {
  readonly kind: 'struct';
  readonly name: string;
  readonly fields: F;
}

/** A type with a fixed size, usable in structs and as an array element. */
export type FixedType =
  | ScalarType<'u8' | 'u16' | 'u32' | 'u64' | 'bool'>
  | NodeNameType
  | EnumType
  | FlagsType
  | ReservedType
  | StructType;

/** Element types of arrays: bytes, u32 enumerations or structs. */
export type ArrayElementType = ScalarType<'u8'> | EnumType | StructType;

/**
 * A variable-length array stored after the params; the params hold its
 * u32 offset from the start of the message, or 0 when it is empty.
 */
export interface ArrayType<E extends ArrayElementType = ArrayElementType> {
  readonly kind: 'array';
  readonly element: E;
}

/**
 * A u32 index into the message's driver object list; 0xffffffff means
 * absent, which the decoder rejects when `required` is set.
 */
export interface DriverObjectType {
  readonly kind: 'driverObject';
  readonly required: boolean;
}

/** A run of driver objects stored as `{u32 firstIndex, u32 count}`. */
export interface DriverObjectArrayType {
  readonly kind: 'driverObjectArray';
}

/** Any field type a message param may have. */
export type FieldType =
  | FixedType
  | ArrayType
  | DriverObjectType
  | DriverObjectArrayType;

/**
 * One field of a message's params or of a struct. `since` is the params
 * version that added it: a reader given older params uses the field's
 * default (zero, false, empty, null or the first enum value).
 */
export interface FieldSpec<N extends string = string, T = FieldType> {
  readonly name: N;
  readonly type: T;
  readonly since: number;
}

/** One row of a message table. */
export interface MessageSpec<
  N extends string = string,
  F extends readonly FieldSpec[] = readonly FieldSpec[],
> {
  readonly name: N;
  readonly id: number;
  /** The newest params version; fields carry the version they appeared in. */
  readonly version: number;
  readonly fields: F;
}

export const u8: ScalarType<'u8'> = { kind: 'u8' };
export const u16: ScalarType<'u16'> = { kind: 'u16' };
export const u32: ScalarType<'u32'> = { kind: 'u32' };
export const u64: ScalarType<'u64'> = { kind: 'u64' };
export const bool: ScalarType<'bool'> = { kind: 'bool' };
export const nodeName: NodeNameType = { kind: 'nodeName' };
export const driverObjectArray: DriverObjectArrayType = {
  kind: 'driverObjectArray',
};

/** Builds a one-byte enumeration; the wire value is the index in `values`. */
export function enumU8<const V extends readonly string[]>(
  values: V,
): EnumType<V> {
  return { kind: 'enum', width: 1, values };
}

/** Builds a four-byte enumeration; the wire value is the index in `values`. */
export function enumU32<const V extends readonly string[]>(
  values: V,
): EnumType<V> {
  return { kind: 'enum', width: 4, values };
}

/** Builds a byte of named single-bit flags, bit 0 first. */
export function flags<const B extends readonly string[]>(
  bits: B,
): FlagsType<B> {
  return { kind: 'flags', bits };
}

/** Builds unnamed padding of `size` bytes. */
export function reserved(size: 1 | 2 | 4 | 8): ReservedType {
  return { kind: 'reserved', size };
}

/** Builds an inline struct type. */
export function struct<
  const F extends readonly FieldSpec<string, FixedType>[],
>(name: string, fields: F): StructType<F> {
  return { kind: 'struct', name, fields };
}

/** Builds an array type. */
export function arrayOf<const E extends ArrayElementType>(
  element: E,
): ArrayType<E> {
  return { kind: 'array', element };
}

/** Builds a driver object field type. */
export function driverObject(options: {
  required: boolean;
}): DriverObjectType {
  return { kind: 'driverObject', required: options.required };
}

/** Builds a field; `since` defaults to params version 0. */
export function field<const N extends string, const T extends FieldType>(
  name: N,
  type: T,
  since = 0,
): FieldSpec<N, T> {
  return { name, type, since };
}

/** Builds a message table row. */
export function message<
  const N extends string,
  const F extends readonly FieldSpec[],
>(name: N, id: number, version: number, fields: F): MessageSpec<N, F> {
  return { name, id, version, fields };
}

/** The TypeScript value of a field of type `T`. */
export type ValueOf<T> = T extends ScalarType<'u8' | 'u16' | 'u32'>
  ? number
  : T extends ScalarType<'u64'>
    ? bigint
    : T extends ScalarType<'bool'>
      ? boolean
      : T extends NodeNameType
        ? NodeName
        : T extends EnumType<infer V>
          ? V[number]
          : T extends StructType<infer F>
            ? FieldsObject<F>
            : T extends ArrayType<infer E>
              ? ArrayValueOf<E>
              : T extends DriverObjectType
                ? DriverObject | null
                : T extends DriverObjectArrayType
                  ? DriverObject[]
                  : never;

type ArrayValueOf<E> = E extends ScalarType<'u8'> ? Uint8Array : ValueOf<E>[];

/** The properties one field contributes: none for padding, one per flag. */
type FieldProperties<F> =
  F extends FieldSpec<string, ReservedType>
    ? unknown
    : F extends FieldSpec<string, FlagsType<infer B>>
      ? { [K in B[number]]: boolean }
      : F extends FieldSpec<infer N, infer T>
        ? { [K in N]: ValueOf<T> }
        : never;

type Flatten<T> = { [K in keyof T]: T[K] } & {};

type Intersect<F extends readonly unknown[]> = F extends readonly [
  infer Head,
  ...infer Rest,
]
  ? FieldProperties<Head> & Intersect<Rest>
  : unknown;

/** The object type whose properties are the fields `F`. */
export type FieldsObject<F extends readonly unknown[]> = Flatten<Intersect<F>>;
