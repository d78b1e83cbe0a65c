/**
 * The Driver methods that the in-process, Web Worker and worker_threads
 * drivers share: transport calls forwarded to the driver's own endpoint
 * class, SharedArrayBuffer memory, the checks before an object crosses a
 * transport, and random bytes. It uses only the language and
 * `globalThis.crypto` (at call time), so it loads in Node and in browsers.
 */
import { IpczError } from '../errors';
import type {
  ActivationOptions,
  Driver,
  DriverObject,
  SerializedObject,
  SharedMemory,
  Transport,
  TransmitCheck,
  TransportListener,
} from './driver';
import {
  SharedBufferMemory,
  allocateSharedBufferMemory,
} from './shared-memory';

/** Lifecycle state of a transport endpoint. */
export type TransportState = 'inactive' | 'active' | 'deactivated' | 'closed';

/** The state an endpoint must be in for each lifecycle step. */
const REQUIRED_STATE = { activate: 'inactive', deactivate: 'active' } as const;

/**
 * Throws `FAILED_PRECONDITION` unless an endpoint in `state` may take
 * `step`: only an inactive endpoint activates, only an active one
 * deactivates.
 */
export function checkLifecycleStep(
  state: TransportState,
  step: keyof typeof REQUIRED_STATE,
): void {
  if (state !== REQUIRED_STATE[step]) {
    throw new IpczError(
      'FAILED_PRECONDITION',
      `cannot ${step} a transport that is ${state}`,
    );
  }
}

/** An endpoint of a driver's transports, as `DriverBase` uses it. */
export interface DriverEndpoint extends Transport {
  /** Reasons given by `reportBadTransportActivity` and by rejections. */
  readonly badActivityReports: string[];
  deactivate(): void;
  close(): void;
  transmit(data: Uint8Array, handles: readonly unknown[]): void;
}

/**
 * A driver whose transports are endpoints of type `T`. A subclass makes
 * and activates transports and defines how its objects are checked,
 * flattened and rebuilt. The base implements the other Driver methods in
 * the same way for every subclass.
 */
export abstract class DriverBase<T extends DriverEndpoint> implements Driver {
  abstract readonly family: string;
  readonly canAllocate: boolean;

  protected constructor(canAllocate: boolean) {
    this.canAllocate = canAllocate;
  }

  abstract createTransports(): [Transport, Transport];

  abstract activateTransport(
    transport: Transport,
    listener: TransportListener,
    options: ActivationOptions,
  ): void;

  abstract deserializeObject(
    serialized: SerializedObject,
  ): DriverObject | string;

  /**
   * Returns `transport` as an endpoint of this driver. Throws
   * `INVALID_ARGUMENT` for a transport made by another kind of driver.
   */
  protected abstract toEndpoint(transport: Transport): T;

  /** Tells whether `object` is an endpoint of this driver's transports. */
  protected abstract isEndpoint(object: DriverObject): object is T;

  /** Returns why `object` cannot cross `carrier`, or `null` when it can. */
  protected abstract findUnserializableReason(
    object: DriverObject,
    carrier: T,
  ): string | null;

  /** Flattens an object that `findUnserializableReason` accepted. */
  protected abstract flattenObject(object: DriverObject): SerializedObject;

  deactivateTransport(transport: Transport): void {
    this.toEndpoint(transport).deactivate();
  }

  closeTransport(transport: Transport): void {
    this.toEndpoint(transport).close();
  }

  transmit(transport: Transport, data: Uint8Array, handles: unknown[]): void {
    this.toEndpoint(transport).transmit(data, handles);
  }

  reportBadTransportActivity(transport: Transport, reason: string): void {
    this.toEndpoint(transport).badActivityReports.push(reason);
  }

  allocateSharedMemory(size: number): SharedMemory {
    return allocateSharedBufferMemory(size, this.canAllocate);
  }

  duplicateSharedMemory(memory: SharedMemory): SharedMemory {
    if (!(memory instanceof SharedBufferMemory)) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        'memory was not allocated by an ipcz-rx driver',
      );
    }
    return memory.duplicate();
  }

  /**
   * Returns `unserializable` when `findUnserializableReason` gives a
   * reason, else `ok`. A driver that denies some objects on some
   * transports refines this.
   */
  checkTransmit(object: DriverObject, transport: Transport): TransmitCheck {
    const carrier = this.toEndpoint(transport);
    const reason = this.findUnserializableReason(object, carrier);
    return reason === null ? 'ok' : 'unserializable';
  }

  serializeObject(
    object: DriverObject,
    transport: Transport,
  ): SerializedObject {
    const reason = this.findUnserializableReason(
      object,
      this.toEndpoint(transport),
    );
    if (reason !== null) throw new IpczError('INVALID_ARGUMENT', reason);
    return this.flattenObject(object);
  }

  /** Closes a transport; memory and application objects need no release. */
  closeObject(object: DriverObject): void {
    if (this.isEndpoint(object)) object.close();
  }

  generateRandomBytes(length: number): Uint8Array {
    return generateRandomBytes(length);
  }
}

/**
 * Fills a new array with `length` cryptographically random bytes from
 * `globalThis.crypto`. Throws `INVALID_ARGUMENT` for a negative or
 * non-integer length.
 */
export function generateRandomBytes(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `random byte count must be a non-negative integer, got ${length}`,
    );
  }
  const bytes = new Uint8Array(length);
  // getRandomValues fills at most 65536 bytes per call.
  const chunkSize = 65536;
  for (let offset = 0; offset < length; offset += chunkSize) {
    globalThis.crypto.getRandomValues(
      bytes.subarray(offset, Math.min(offset + chunkSize, length)),
    );
  }
  return bytes;
}
