// Seeded sample messages for the wire tests: one value of the right type
// for every field of a table row.

import type { DriverObject } from '../../src/drivers/driver';
import { nodeMessages, type NodeMessage } from '../../src/wire/messages';
import { NodeName } from '../../src/wire/node-name';
import type { FieldSpec, FieldType, MessageSpec } from '../../src/wire/types';

/** Returns a mulberry32 generator of numbers in [0, 1) for `seed`. */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns an integer in [0, limit). */
export function randomInt(random: () => number, limit: number): number {
  return Math.floor(random() * limit);
}

function randomU64(random: () => number): bigint {
  const high = BigInt(randomInt(random, 2 ** 32));
  const low = BigInt(randomInt(random, 2 ** 32));
  return (high << 32n) | low;
}

let nextObjectId = 0;

/** Creates a distinct application driver object. */
export function makeObject(): DriverObject {
  return { kind: 'application', value: nextObjectId++ };
}

/**
 * Options for samples: `empty` makes every array empty and every optional
 * object null, `full` gives every array elements and every object a value.
 */
export type SampleShape = 'random' | 'empty' | 'full';

function sampleValue(
  type: FieldType,
  random: () => number,
  shape: SampleShape,
): unknown {
  switch (type.kind) {
    case 'u8':
      return randomInt(random, 0x100);
    case 'u16':
      return randomInt(random, 0x10000);
    case 'u32':
      return randomInt(random, 2 ** 32);
    case 'u64':
      return randomU64(random);
    case 'bool':
      return random() < 0.5;
    case 'nodeName':
      return new NodeName(randomU64(random), randomU64(random));
    case 'enum':
      return type.values[randomInt(random, type.values.length)];
    case 'struct':
      return sampleFields(type.fields, random, shape);
    case 'array': {
      const count = arrayCount(random, shape, type.element.kind === 'u8');
      if (type.element.kind === 'u8') {
        const bytes = new Uint8Array(count);
        for (let i = 0; i < count; i++) bytes[i] = randomInt(random, 256);
        return bytes;
      }
      const element = type.element;
      return Array.from({ length: count }, () =>
        sampleValue(element, random, shape),
      );
    }
    case 'driverObject':
      if (type.required || shape === 'full') return makeObject();
      if (shape === 'empty') return null;
      return random() < 0.5 ? null : makeObject();
    case 'driverObjectArray': {
      const count = arrayCount(random, shape, false);
      return Array.from({ length: count }, makeObject);
    }
    case 'flags':
    case 'reserved':
      throw new Error(`${type.kind} has no value of its own`);
  }
}

function arrayCount(
  random: () => number,
  shape: SampleShape,
  bytes: boolean,
): number {
  if (shape === 'empty') return 0;
  const limit = bytes ? 40 : 4;
  if (shape === 'full') return 1 + randomInt(random, limit);
  return randomInt(random, limit + 1);
}

/** Builds an object with a sample value for each of `fields`. */
export function sampleFields(
  fields: readonly FieldSpec[],
  random: () => number,
  shape: SampleShape,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { name, type } of fields) {
    if (type.kind === 'reserved') continue;
    if (type.kind === 'flags') {
      for (const bit of type.bits) out[bit] = random() < 0.5;
      continue;
    }
    out[name] = sampleValue(type, random, shape);
  }
  return out;
}

/** Builds a sample message for one table row. */
export function sampleMessage(
  spec: MessageSpec,
  random: () => number,
  shape: SampleShape = 'random',
): { type: string } & Record<string, unknown> {
  return { type: spec.name, ...sampleFields(spec.fields, random, shape) };
}

/** Builds a sample node message for one row of the node message table. */
export function sampleNodeMessage(
  spec: (typeof nodeMessages)[number],
  random: () => number,
  shape: SampleShape = 'random',
): NodeMessage {
  return sampleMessage(spec, random, shape) as unknown as NodeMessage;
}

/** Returns a copy of `data` with random bytes changed, cut or appended. */
export function mutate(
  data: Uint8Array,
  random: () => number,
): Uint8Array {
  let out = data.slice();
  const edits = 1 + randomInt(random, 4);
  for (let e = 0; e < edits; e++) {
    const choice = randomInt(random, 10);
    if (choice < 6 && out.length > 0) {
      out[randomInt(random, out.length)] = randomInt(random, 256);
    } else if (choice < 8 && out.length > 0) {
      // Small values hit sizes, counts and indices near their limits.
      const at = randomInt(random, out.length);
      out[at] = [0, 1, 2, 0xff, 0x18, 0x7f][randomInt(random, 6)]!;
    } else if (choice === 8) {
      out = out.slice(0, randomInt(random, out.length + 1));
    } else {
      const longer = new Uint8Array(out.length + randomInt(random, 24));
      longer.set(out);
      out = longer;
    }
  }
  return out;
}
