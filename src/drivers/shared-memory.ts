/**
 * Shared memory backed by a SharedArrayBuffer, used by every driver in this
 * folder. A SharedArrayBuffer is shared, not copied, when posted to another
 * thread, so one region can be mapped by nodes on any number of threads.
 */
import { IpczError } from '../errors';
import type { SharedMemory } from './driver';

/**
 * Largest region a driver allocates, in bytes (1 GiB). Larger requests
 * throw `RESOURCE_EXHAUSTED` instead of trying to reserve the memory.
 */
export const MAX_SHARED_MEMORY_SIZE = 2 ** 30;

/** A handle to a region; duplicates are further handles to one buffer. */
export class SharedBufferMemory implements SharedMemory {
  readonly kind = 'memory';
  readonly buffer: SharedArrayBuffer;
  readonly size: number;

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.size = buffer.byteLength;
  }

  map(): Uint8Array {
    return new Uint8Array(this.buffer);
  }

  /** Returns another handle to the same buffer. */
  duplicate(): SharedBufferMemory {
    return new SharedBufferMemory(this.buffer);
  }
}

/**
 * Allocates a zeroed region of exactly `size` bytes. Throws
 * `PERMISSION_DENIED` when `canAllocate` is false, `INVALID_ARGUMENT` for a
 * size that is not a positive integer, `RESOURCE_EXHAUSTED` above
 * `MAX_SHARED_MEMORY_SIZE` or when the platform refuses, and `UNAVAILABLE`
 * where SharedArrayBuffer is missing (a browser page that is not
 * cross-origin isolated).
 */
export function allocateSharedBufferMemory(
  size: number,
  canAllocate: boolean,
): SharedBufferMemory {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `shared memory size must be a positive integer, got ${String(size)}`,
    );
  }
  if (size > MAX_SHARED_MEMORY_SIZE) {
    throw new IpczError(
      'RESOURCE_EXHAUSTED',
      `shared memory size ${size} exceeds the maximum of ` +
        `${MAX_SHARED_MEMORY_SIZE} bytes`,
    );
  }
  if (!canAllocate) {
    throw new IpczError(
      'PERMISSION_DENIED',
      `this driver cannot allocate shared memory (requested ${size} ` +
        'bytes); delegate the allocation to another node',
    );
  }
  if (typeof SharedArrayBuffer !== 'function') {
    throw new IpczError(
      'UNAVAILABLE',
      'SharedArrayBuffer is not available; in a browser the page must be ' +
        'cross-origin isolated',
    );
  }

  let buffer: SharedArrayBuffer;
  try {
    buffer = new SharedArrayBuffer(size);
  } catch (error) {
    // The engine throws RangeError when it cannot reserve the memory.
    throw new IpczError(
      'RESOURCE_EXHAUSTED',
      `failed to allocate ${size} bytes of shared memory: ${String(error)}`,
    );
  }
  return new SharedBufferMemory(buffer);
}

/**
 * Tells whether `value` is a SharedArrayBuffer without `instanceof`, which
 * fails for buffers made in another realm.
 */
export function isSharedArrayBuffer(
  value: unknown,
): value is SharedArrayBuffer {
  return Object.prototype.toString.call(value) === '[object SharedArrayBuffer]';
}
