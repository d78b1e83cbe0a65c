/**
 * The Driver methods that the Web Worker and worker_threads drivers share:
 * how their objects are checked, flattened and rebuilt. A transport
 * crosses as its MessagePort (transferred), memory as its
 * SharedArrayBuffer (shared) and an application value by structured
 * clone. The module imports no Node built-in and touches no platform
 * global at load.
 */
import { IpczError } from '../errors';
import type { DriverObject, SerializedObject, Transport } from './driver';
import { DriverBase } from './driver-base';
import type { PortLike, PortTransport } from './port-transport';
import { isMessagePort } from './port-transport';
import { SharedBufferMemory, isSharedArrayBuffer } from './shared-memory';

/** Object type codes in the first 32-bit word of a serialized object. */
const ObjectType = { transport: 1, memory: 2, application: 3 } as const;

/** Serialized object data: u32 type, then u32 size (memory only), LE. */
const SERIALIZED_SIZE = 8;

function encodeObjectHeader(type: number, size: number): Uint8Array {
  const data = new Uint8Array(SERIALIZED_SIZE);
  const view = new DataView(data.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, size, true);
  return data;
}

/**
 * A driver whose transports are `PortTransport`s over ports of type `P`.
 * Every endpoint can reach every other through a MessagePort, so these
 * drivers report nothing as `permission-denied`.
 */
export abstract class PortDriverBase<
  P extends PortLike,
  T extends PortTransport<P>,
> extends DriverBase<T> {
  /** The driver as error messages name it, such as 'the Web Worker driver'. */
  protected abstract readonly driverName: string;

  /** Creates a MessageChannel of this driver's platform. */
  protected abstract openChannel(): { port1: P; port2: P };

  /** Wraps a new port, or one that arrived as a serialized transport. */
  protected abstract createEndpoint(port: P): T;

  createTransports(): [Transport, Transport] {
    const channel = this.openChannel();
    return [
      this.createEndpoint(channel.port1),
      this.createEndpoint(channel.port2),
    ];
  }

  protected toEndpoint(transport: Transport): T {
    if (!this.isEndpoint(transport)) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `transport was not made by ${this.driverName}`,
      );
    }
    return transport;
  }

  /**
   * Rejects a transport that is active, closed or the carrier itself.
   * Application values cross by structured clone, so a value that cannot
   * be cloned (a function, a MessagePort, a DOM node) is rejected by
   * trying a clone.
   */
  protected findUnserializableReason(
    object: DriverObject,
    carrier: T,
  ): string | null {
    if (object instanceof SharedBufferMemory) return null;
    if (this.isEndpoint(object)) {
      if (object === carrier) return 'a transport cannot be sent over itself';
      if (object.currentState !== 'inactive') {
        return `cannot send a transport that is ${object.currentState}`;
      }
      return null;
    }
    if (object.kind === 'application') {
      try {
        structuredClone(object.value);
        return null;
      } catch (error) {
        return `application value cannot be cloned: ${String(error)}`;
      }
    }
    const kind = String((object as { kind?: unknown }).kind);
    return `object of kind ${kind} was not made by ${this.driverName}`;
  }

  protected flattenObject(object: DriverObject): SerializedObject {
    if (this.isEndpoint(object)) {
      object.markTransferred();
      return {
        data: encodeObjectHeader(ObjectType.transport, 0),
        handles: [object.port],
      };
    }
    if (object instanceof SharedBufferMemory) {
      return {
        data: encodeObjectHeader(ObjectType.memory, object.size),
        handles: [object.buffer],
      };
    }
    return {
      data: encodeObjectHeader(ObjectType.application, 0),
      handles: [(object as { value: unknown }).value],
    };
  }

  deserializeObject(serialized: SerializedObject): DriverObject | string {
    const { data, handles } = serialized;
    if (data.length !== SERIALIZED_SIZE) {
      return `object data must be ${SERIALIZED_SIZE} bytes, got ${data.length}`;
    }
    if (handles.length !== 1) {
      return `object needs exactly 1 handle, got ${handles.length}`;
    }
    return this.rebuildObject(data, handles[0]);
  }

  private rebuildObject(
    data: Uint8Array,
    handle: unknown,
  ): DriverObject | string {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const type = view.getUint32(0, true);
    const size = view.getUint32(4, true);
    switch (type) {
      case ObjectType.transport:
        if (!isMessagePort<P>(handle)) return 'transport handle is not a port';
        return this.createEndpoint(handle);
      case ObjectType.memory:
        if (!isSharedArrayBuffer(handle)) {
          return 'memory handle is not a SharedArrayBuffer';
        }
        if (handle.byteLength !== size) {
          return `memory size ${size} does not match its buffer of ` +
            `${handle.byteLength} bytes`;
        }
        return new SharedBufferMemory(handle);
      case ObjectType.application:
        return { kind: 'application', value: handle };
      default:
        return `unknown object type ${type}`;
    }
  }
}
