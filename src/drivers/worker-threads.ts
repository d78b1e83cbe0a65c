/**
 * A driver for nodes on different Node.js threads. A transport is one
 * `MessagePort` of a `MessageChannel`, so it works between the main thread
 * and any worker, and it can be sent to a third thread through another
 * transport. Shared memory is a SharedArrayBuffer, which `postMessage`
 * shares instead of copying. This is the only module that imports
 * `node:worker_threads`.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
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
import { generateRandomBytes } from './driver-base';
import {
  SharedBufferMemory,
  allocateSharedBufferMemory,
  isSharedArrayBuffer,
} from './shared-memory';

/** The `family` of the worker_threads driver. */
export const WORKER_THREADS_FAMILY = 'worker-threads';

/** Options of `createWorkerDriver`. */
export interface WorkerDriverOptions {
  /**
   * Whether the driver may allocate shared memory (default `true`). False
   * models a sandboxed node, which must delegate every allocation.
   */
  canAllocate?: boolean;
}

/** One transmission waiting to be posted. */
interface PortMessage {
  data: Uint8Array;
  handles: unknown[];
}

/**
 * What crosses the port: every transmission of one task packed into one
 * byte array, so structured clone copies one buffer instead of one
 * object per message. `ends[i]` is where message i's bytes end;
 * `handleEnds[i]` where its handles end in `handles`.
 */
interface PortBatch {
  bytes: Uint8Array;
  ends: Uint32Array;
  handles: unknown[];
  handleEnds: Uint32Array;
}

/**
 * Largest batch posted at once. Measured with 1 KiB parcels between two
 * threads on a 2-core machine: 64 to 256 messages let the receiver work while
 * the sender fills the next batch.
 */
const MAX_BATCH_MESSAGES = 128;
const MAX_BATCH_BYTES = 256 * 1024;

type TransportState = 'inactive' | 'active' | 'deactivated' | 'closed';

/**
 * One endpoint of a transport: a wrapped `MessagePort`.
 *
 * Transmissions made in one task are posted together as one array at the
 * end of the task, in order. We measured this on a shared 2-core machine
 * with Node 20.20 and a worker echoing 50,000 messages of 32 bytes. A
 * round took about 220 ms batched and 270 ms with one `postMessage` per
 * transmission. Batched with each message's buffer transferred instead of
 * cloned, it took about 800 ms.
 * The peer's port closing (a `close()` call, or its
 * worker exiting or crashing) reaches the listener as `onError`, after
 * every message sent before it.
 */
export class WorkerTransport implements Transport {
  readonly kind = 'transport';
  readonly port: MessagePort;
  /** Reasons given by `reportBadTransportActivity` and by rejections. */
  readonly badActivityReports: string[] = [];

  private state: TransportState = 'inactive';
  private listener: TransportListener | null = null;
  private failed = false;
  private outgoing: PortMessage[] = [];
  private outgoingPorts: MessagePort[] = [];
  private flushScheduled = false;
  private outgoingBytes = 0;

  constructor(port: MessagePort) {
    this.port = port;
  }

  /** Lifecycle state: inactive, active, deactivated or closed. */
  get currentState(): TransportState {
    return this.state;
  }

  activate(listener: TransportListener): void {
    if (this.state !== 'inactive') {
      throw new IpczError(
        'FAILED_PRECONDITION',
        `cannot activate a transport that is ${this.state}`,
      );
    }
    this.state = 'active';
    this.listener = listener;
    this.port.on('close', this.onPortClose);
    this.port.on('messageerror', this.onPortMessageError);
    // Adding a 'message' listener starts the port, which then delivers
    // the messages that arrived before activation.
    this.port.on('message', this.onPortMessage);
  }

  deactivate(): void {
    if (this.state !== 'active') {
      throw new IpczError(
        'FAILED_PRECONDITION',
        `cannot deactivate a transport that is ${this.state}`,
      );
    }
    this.state = 'deactivated';
    this.flush();
    this.stopListening();
    const listener = this.listener;
    this.listener = null;
    // Deactivation finishes after the current call returns, as it does
    // in other drivers, so a listener may deactivate from onMessage.
    queueMicrotask(() => listener?.onDeactivated());
  }

  /** Closes this endpoint; closing it again does nothing. */
  close(): void {
    if (this.state === 'closed') return;
    this.flush();
    this.state = 'closed';
    this.listener = null;
    this.stopListening();
    this.port.close();
  }

  /**
   * Marks this endpoint as sent to another thread. Its port now belongs to
   * the message that carries it, so this object must not touch it again.
   */
  markTransferred(): void {
    this.state = 'closed';
    this.listener = null;
  }

  transmit(data: Uint8Array, handles: readonly unknown[]): void {
    if (this.state === 'deactivated' || this.state === 'closed') {
      closePortHandles(handles);
      return;
    }
    // The driver owns `data` once transmitted, so no copy is needed
    // before the batch is posted (postMessage clones it).
    this.outgoing.push({ data, handles: [...handles] });
    for (const handle of handles) {
      if (isMessagePort(handle)) this.outgoingPorts.push(handle);
    }
    this.outgoingBytes += data.byteLength;
    // A full batch goes out at once, so the peer starts on it while this
    // side keeps producing; one batch per task would alternate the two.
    if (
      this.outgoing.length >= MAX_BATCH_MESSAGES ||
      this.outgoingBytes >= MAX_BATCH_BYTES
    ) {
      this.flush();
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.outgoing.length === 0) return;
    const batch = this.outgoing;
    const transferList = this.outgoingPorts;
    this.outgoing = [];
    this.outgoingPorts = [];
    this.outgoingBytes = 0;
    // Message bytes are cloned, not transferred: transferring many small
    // buffers was slower than copying them (see the class comment).
    try {
      this.port.postMessage(packBatch(batch), transferList);
    } catch (error) {
      // checkTransmit rejects what cannot be cloned, so this means a
      // caller skipped it. The batch is lost, so the transport fails.
      this.fail(`failed to post a message: ${String(error)}`);
    }
  };

  private readonly onPortMessage = (payload: unknown): void => {
    const batch = checkBatch(payload);
    if (typeof batch === 'string') {
      if (isBatchShaped(payload)) closePortHandles(payload.handles);
      this.rejectMessage(batch);
      return;
    }
    let start = 0;
    let handleStart = 0;
    for (let i = 0; i < batch.ends.length; i++) {
      const end = batch.ends[i]!;
      const handleEnd = batch.handleEnds[i]!;
      const handles = batch.handles.slice(handleStart, handleEnd);
      const data = batch.bytes.subarray(start, end);
      start = end;
      handleStart = handleEnd;
      if (this.state !== 'active' || this.failed) {
        closePortHandles(handles);
        continue;
      }
      const listener = this.listener as TransportListener;
      const result = listener.onMessage(data, handles);
      if (result !== true) this.rejectMessage(String(result));
    }
  };

  private readonly onPortClose = (): void => {
    this.fail('peer transport closed');
  };

  private readonly onPortMessageError = (error: unknown): void => {
    this.fail(`failed to deserialize a message: ${String(error)}`);
  };

  private rejectMessage(reason: string): void {
    this.badActivityReports.push(reason);
    this.fail(`invalid message: ${reason}`);
  }

  private fail(reason: string): void {
    const listener = this.listener;
    if (listener === null || this.state !== 'active' || this.failed) return;
    this.failed = true;
    listener.onError(reason);
  }

  private stopListening(): void {
    this.port.off('message', this.onPortMessage);
    this.port.off('close', this.onPortClose);
    this.port.off('messageerror', this.onPortMessageError);
  }
}

function packBatch(messages: PortMessage[]): PortBatch {
  let total = 0;
  for (const message of messages) total += message.data.byteLength;
  const bytes = new Uint8Array(total);
  const ends = new Uint32Array(messages.length);
  const handleEnds = new Uint32Array(messages.length);
  const handles: unknown[] = [];
  let offset = 0;
  messages.forEach((message, i) => {
    bytes.set(message.data, offset);
    offset += message.data.byteLength;
    ends[i] = offset;
    for (const handle of message.handles) handles.push(handle);
    handleEnds[i] = handles.length;
  });
  return { bytes, ends, handles, handleEnds };
}

function isBatchShaped(value: unknown): value is PortBatch {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as { handles?: unknown }).handles)
  );
}

/** Validates a batch from the peer; returns a reason when it is malformed. */
function checkBatch(value: unknown): PortBatch | string {
  if (!isBatchShaped(value)) return 'port message is not a batch';
  const { bytes, ends, handleEnds, handles } = value;
  if (
    !(bytes instanceof Uint8Array) ||
    !(ends instanceof Uint32Array) ||
    !(handleEnds instanceof Uint32Array) ||
    ends.length !== handleEnds.length
  ) {
    return 'port message batch has missing or mismatched arrays';
  }
  let previous = 0;
  let previousHandle = 0;
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i]!;
    const handleEnd = handleEnds[i]!;
    if (end < previous || end > bytes.byteLength) {
      return `port message batch entry ${i} ends outside its bytes`;
    }
    if (handleEnd < previousHandle || handleEnd > handles.length) {
      return `port message batch entry ${i} ends outside its handles`;
    }
    previous = end;
    previousHandle = handleEnd;
  }
  return value;
}

/**
 * Tells whether `value` is a MessagePort by its shape and constructor
 * name, because `instanceof` fails for values from another realm.
 */
function isMessagePort(value: unknown): value is MessagePort {
  return (
    typeof value === 'object' &&
    value !== null &&
    value.constructor?.name === 'MessagePort' &&
    typeof (value as { postMessage?: unknown }).postMessage === 'function'
  );
}

/** Closes the ports among dropped handles, so their peers get `close`. */
function closePortHandles(handles: readonly unknown[]): void {
  for (const handle of handles) {
    if (isMessagePort(handle)) handle.close();
  }
}

/**
 * Wraps a `MessagePort` as a transport, for example a port that a worker
 * received through `workerData`. The other port of its channel must be
 * wrapped on the other side.
 */
export function wrapPort(port: MessagePort): Transport {
  if (!isMessagePort(port)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `expected a MessagePort, got ${describeValue(port)}`,
    );
  }
  return new WorkerTransport(port);
}

function describeValue(value: unknown): string {
  if (typeof value !== 'object' || value === null) return String(value);
  return value.constructor?.name ?? 'an object without a constructor';
}

function toWorkerTransport(transport: Transport): WorkerTransport {
  if (!(transport instanceof WorkerTransport)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'transport was not made by the worker_threads driver',
    );
  }
  return transport;
}

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
 * Returns why `object` cannot cross `carrier`, or `null` when it can.
 * Application values cross by structured clone, so a value that cannot be
 * cloned (a function, a MessagePort) is rejected by trying a clone.
 */
function findUnserializableReason(
  object: DriverObject,
  carrier: WorkerTransport,
): string | null {
  if (object instanceof SharedBufferMemory) return null;
  if (object instanceof WorkerTransport) {
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
  return `object of kind ${kind} was not made by the worker_threads driver`;
}

function deserializeObject(
  data: Uint8Array,
  handle: unknown,
): DriverObject | string {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const type = view.getUint32(0, true);
  const size = view.getUint32(4, true);
  switch (type) {
    case ObjectType.transport:
      if (!isMessagePort(handle)) return 'transport handle is not a port';
      return new WorkerTransport(handle);
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

/**
 * A driver whose transports are MessagePorts. Transports interoperate
 * with every other instance of this driver, on any thread.
 */
class WorkerDriver implements Driver {
  readonly family = WORKER_THREADS_FAMILY;
  readonly canAllocate: boolean;

  constructor(options: WorkerDriverOptions) {
    this.canAllocate = options.canAllocate ?? true;
  }

  createTransports(): [Transport, Transport] {
    const channel = new MessageChannel();
    return [
      new WorkerTransport(channel.port1),
      new WorkerTransport(channel.port2),
    ];
  }

  activateTransport(
    transport: Transport,
    listener: TransportListener,
    _options: ActivationOptions,
  ): void {
    toWorkerTransport(transport).activate(listener);
  }

  deactivateTransport(transport: Transport): void {
    toWorkerTransport(transport).deactivate();
  }

  closeTransport(transport: Transport): void {
    toWorkerTransport(transport).close();
  }

  transmit(transport: Transport, data: Uint8Array, handles: unknown[]): void {
    toWorkerTransport(transport).transmit(data, handles);
  }

  reportBadTransportActivity(transport: Transport, reason: string): void {
    toWorkerTransport(transport).badActivityReports.push(reason);
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
   * Returns `unserializable` for a foreign object, a transport that is
   * active, closed or the carrier itself, and an application value that
   * structured clone rejects. Every thread can reach every other through
   * a MessagePort, so nothing is `permission-denied`.
   */
  checkTransmit(object: DriverObject, transport: Transport): TransmitCheck {
    const carrier = toWorkerTransport(transport);
    const reason = findUnserializableReason(object, carrier);
    return reason === null ? 'ok' : 'unserializable';
  }

  serializeObject(
    object: DriverObject,
    transport: Transport,
  ): SerializedObject {
    const reason = findUnserializableReason(
      object,
      toWorkerTransport(transport),
    );
    if (reason !== null) throw new IpczError('INVALID_ARGUMENT', reason);

    if (object instanceof WorkerTransport) {
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
    return deserializeObject(data, handles[0]);
  }

  /** Closes a transport; memory and application objects need no release. */
  closeObject(object: DriverObject): void {
    if (object instanceof WorkerTransport) object.close();
  }

  generateRandomBytes(length: number): Uint8Array {
    return generateRandomBytes(length);
  }
}

/**
 * Creates a driver whose transports are MessagePorts, for nodes on the
 * main thread and in `worker_threads` workers. Each thread makes its own
 * driver. A worker turns a port it was given into a transport with
 * `wrapPort`.
 */
export function createWorkerDriver(options: WorkerDriverOptions = {}): Driver {
  return new WorkerDriver(options);
}
