/**
 * A driver for nodes on different Node.js threads. A transport is one
 * `MessagePort` of a `MessageChannel`, so it works between the main thread
 * and any worker, and it can be sent to a third thread through another
 * transport. Shared memory is a SharedArrayBuffer, which `postMessage`
 * shares instead of copying. This is the only module that imports
 * `node:worker_threads`.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type {
  ActivationOptions,
  Driver,
  DriverObject,
  Transport,
  TransportListener,
} from './driver';
import { PortDriverBase } from './port-driver';
import {
  PortTransport,
  checkMessagePort,
  closePortHandles,
  type BatchPolicy,
  type PortMessage,
} from './port-transport';

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

// The driver owns `data` once transmitted, so no copy is needed before
// the batch is posted (postMessage clones it).
const workerBatchPolicy: BatchPolicy = {
  copyData: false,
  maxMessages: MAX_BATCH_MESSAGES,
  maxBytes: MAX_BATCH_BYTES,
};

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
export class WorkerTransport extends PortTransport<MessagePort> {
  constructor(port: MessagePort) {
    super(port, workerBatchPolicy);
  }

  activate(listener: TransportListener): void {
    this.enterActiveState(listener);
    this.port.on('close', this.onPortClose);
    this.port.on('messageerror', this.onPortMessageError);
    // Adding a 'message' listener starts the port, which then delivers
    // the messages that arrived before activation.
    this.port.on('message', this.onPortMessage);
  }

  protected postBatch(batch: PortMessage[], transfer: MessagePort[]): void {
    // Message bytes are cloned, not transferred: transferring many small
    // buffers was slower than copying them (see the class comment).
    this.port.postMessage(packBatch(batch), transfer);
  }

  /**
   * Posts a close notice before closing. Node 20 does not emit 'close' on
   * a port whose peer closed before it started listening, so without the
   * notice a transport closed before its peer was activated would leave
   * the peer waiting forever.
   */
  protected override announceClose(): void {
    try {
      this.port.postMessage(CLOSE_NOTICE);
    } catch {
      // The port is already unusable; the peer gets its 'close' event.
    }
  }

  private readonly onPortMessage = (payload: unknown): void => {
    if (isCloseNotice(payload)) {
      this.fail('peer transport closed');
      return;
    }
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
      this.deliver(data, handles);
    }
  };

  private readonly onPortClose = (): void => {
    this.fail('peer transport closed');
  };

  private readonly onPortMessageError = (error: unknown): void => {
    this.fail(`failed to deserialize a message: ${String(error)}`);
  };

  protected stopListening(): void {
    this.port.off('message', this.onPortMessage);
    this.port.off('close', this.onPortClose);
    this.port.off('messageerror', this.onPortMessageError);
  }
}

/** The message a closing endpoint posts last. */
const CLOSE_NOTICE = { ipczRxClose: true } as const;

function isCloseNotice(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { ipczRxClose?: unknown }).ipczRxClose === true
  );
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
 * Wraps a `MessagePort` as a transport, for example a port that a worker
 * received through `workerData`. The other port of its channel must be
 * wrapped on the other side.
 */
export function wrapPort(port: MessagePort): Transport {
  checkMessagePort(port);
  return new WorkerTransport(port);
}

/**
 * A driver whose transports are MessagePorts. Transports interoperate
 * with every other instance of this driver, on any thread.
 */
class WorkerDriver extends PortDriverBase<MessagePort, WorkerTransport> {
  readonly family = WORKER_THREADS_FAMILY;
  protected readonly driverName = 'the worker_threads driver';

  constructor(options: WorkerDriverOptions) {
    super(options.canAllocate ?? true);
  }

  activateTransport(
    transport: Transport,
    listener: TransportListener,
    _options: ActivationOptions,
  ): void {
    this.toEndpoint(transport).activate(listener);
  }

  protected isEndpoint(object: DriverObject): object is WorkerTransport {
    return object instanceof WorkerTransport;
  }

  protected openChannel(): MessageChannel {
    return new MessageChannel();
  }

  protected createEndpoint(port: MessagePort): WorkerTransport {
    return new WorkerTransport(port);
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
