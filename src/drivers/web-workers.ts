/**
 * A driver for nodes on a browser page and in its Web Workers. A transport
 * is one `MessagePort` of a `MessageChannel`, so it can be sent to any
 * worker through another transport, and shared memory is a
 * SharedArrayBuffer, which `postMessage` shares instead of copying.
 *
 * Browsers give SharedArrayBuffer only to cross-origin isolated contexts,
 * so creating the driver fails at once on a page that is not isolated.
 *
 * Liveness: a browser fires no event on a MessagePort when the worker at
 * the other end is terminated (unless it supports the `close` event), so
 * this driver detects a lost peer in these ways, and only these:
 * - a transport closed by its owner (`node.close()`, a dropped link)
 *   posts a close message first, so the peer fails at once;
 * - the `close` event of MessagePort, where the browser fires it;
 * - with the `heartbeat` option, an endpoint posts a heartbeat every
 *   `intervalMs`, and its peer fails the transport after `timeoutMs`
 *   without any message (node workers send them by default);
 * - `terminate()` of a `WebNodeWorker` fails the parent's transport
 *   itself (see src/web/node-worker.ts).
 * A worker that is terminated by other means, or that calls
 * `self.close()`, goes unnoticed when no heartbeat runs and the browser
 * fires no `close` event (Chromium 156 fires none). Its routes then stay
 * open. A heartbeat timeout is delayed, never hastened, while the
 * watching thread itself stalls.
 *
 * This module uses web messaging only and imports no Node built-in.
 */
import { asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';
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

/** The `family` of the Web Worker driver. */
export const WEB_WORKERS_FAMILY = 'web-workers';

/** Heartbeats that an endpoint sends so its peer can detect its loss. */
export interface HeartbeatOptions {
  /** Time between two heartbeats, in milliseconds. */
  intervalMs: number;
  /**
   * Silence after which the peer fails the transport, in milliseconds.
   * It must exceed `intervalMs`. A worker that blocks its event loop
   * for longer than this is treated as gone.
   */
  timeoutMs: number;
}

/** Options of `createWebWorkerDriver`. */
export interface WebWorkerDriverOptions {
  /**
   * Whether the driver may allocate shared memory (default `true`). False
   * models a sandboxed node, which must delegate every allocation.
   */
  canAllocate?: boolean;
  /**
   * Heartbeats sent on every transport this driver activates (default:
   * none). A peer watches for silence only after its first heartbeat, so
   * the two ends of a transport may differ.
   */
  heartbeat?: HeartbeatOptions;
  /** Scheduler of heartbeats and their timeouts (default asyncScheduler). */
  scheduler?: SchedulerLike;
}

/** Largest heartbeat timeout accepted from a peer, in ms (one day). */
const MAX_HEARTBEAT_TIMEOUT_MS = 24 * 60 * 60 * 1000;

/** One transmission as it crosses the port. */
interface PortMessage {
  data: Uint8Array;
  handles: unknown[];
}

/**
 * A message of the driver itself, posted alone instead of in a batch:
 * `close` precedes a deliberate close of the port, and `heartbeat`
 * promises another message within `timeoutMs`.
 */
type ControlMessage =
  | { ipczRxControl: 'close' }
  | { ipczRxControl: 'heartbeat'; timeoutMs: number };

type TransportState = 'inactive' | 'active' | 'deactivated' | 'closed';

/** Liveness settings an endpoint takes from the driver that activates it. */
interface LivenessSettings {
  heartbeat: HeartbeatOptions | undefined;
  scheduler: SchedulerLike;
}

/**
 * One endpoint of a transport: a wrapped `MessagePort`.
 *
 * Transmissions made in one task are posted together as one array when
 * the current microtasks have run, in order, which costs one structured
 * clone per task instead of one per message. Control messages follow the
 * batch that was pending when they were posted.
 */
export class WebWorkerTransport implements Transport {
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
  private scheduler: SchedulerLike = asyncScheduler;
  private heartbeats: Subscription | null = null;
  private watchdog: Subscription | null = null;
  private lastHeardAt = 0;
  private peerTimeoutMs = 0;

  constructor(port: MessagePort) {
    this.port = port;
  }

  /** Lifecycle state: inactive, active, deactivated or closed. */
  get currentState(): TransportState {
    return this.state;
  }

  activate(listener: TransportListener, settings: LivenessSettings): void {
    if (this.state !== 'inactive') {
      throw new IpczError(
        'FAILED_PRECONDITION',
        `cannot activate a transport that is ${this.state}`,
      );
    }
    this.state = 'active';
    this.listener = listener;
    this.scheduler = settings.scheduler;
    this.port.addEventListener('message', this.onPortMessage);
    this.port.addEventListener('messageerror', this.onPortMessageError);
    this.port.addEventListener('close', this.onPortClose);
    // A port queues what arrives before start(), so messages sent before
    // activation are delivered now, in order.
    this.port.start();
    if (settings.heartbeat !== undefined) {
      this.startHeartbeats(settings.heartbeat);
    }
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

  /**
   * Closes this endpoint after telling the peer, whose listener then gets
   * `onError`. Closing it again does nothing.
   */
  close(): void {
    if (this.state === 'closed') return;
    this.flush();
    this.postControl({ ipczRxControl: 'close' });
    this.state = 'closed';
    this.listener = null;
    this.stopListening();
    this.port.close();
  }

  /**
   * Fails this endpoint as if its peer had gone, then closes it. The
   * owner of a worker calls this when it terminates the worker, because
   * the port cannot observe the termination.
   */
  disconnect(reason: string): void {
    this.fail(reason);
    this.close();
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
    // Copies now, because the caller may reuse its buffer before the
    // batch is posted.
    this.outgoing.push({ data: data.slice(), handles: [...handles] });
    for (const handle of handles) {
      if (isMessagePort(handle)) this.outgoingPorts.push(handle);
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
    const transfer = this.outgoingPorts;
    this.outgoing = [];
    this.outgoingPorts = [];
    try {
      this.port.postMessage(batch, transfer);
    } catch (error) {
      // checkTransmit rejects what cannot be cloned, so this means a
      // caller skipped it. The batch is lost, so the transport fails.
      this.fail(`failed to post a message: ${String(error)}`);
    }
  };

  private postControl(message: ControlMessage): void {
    try {
      this.port.postMessage(message);
    } catch {
      // A control message contains no handles and clones without fail,
      // so a failed post leaves nothing to recover.
    }
  }

  private readonly onPortMessage = (event: MessageEvent): void => {
    this.lastHeardAt = this.scheduler.now();
    const payload: unknown = event.data;
    if (isControlMessage(payload)) {
      this.onControlMessage(payload);
      return;
    }
    if (!Array.isArray(payload)) {
      this.rejectMessage('port message is not an array of transmissions');
      return;
    }
    for (const entry of payload) {
      if (this.state !== 'active' || this.failed) {
        closePortHandles(isPortMessage(entry) ? entry.handles : []);
        continue;
      }
      if (!isPortMessage(entry)) {
        this.rejectMessage('port message entry lacks data or handles');
        continue;
      }
      const listener = this.listener as TransportListener;
      const result = listener.onMessage(entry.data, entry.handles);
      if (result !== true) this.rejectMessage(String(result));
    }
  };

  private onControlMessage(message: ControlMessage): void {
    if (message.ipczRxControl === 'close') {
      this.fail('peer transport closed');
      return;
    }
    const { timeoutMs } = message;
    if (
      !Number.isFinite(timeoutMs) ||
      timeoutMs <= 0 ||
      timeoutMs > MAX_HEARTBEAT_TIMEOUT_MS
    ) {
      this.rejectMessage(`heartbeat timeout ${String(timeoutMs)} is invalid`);
      return;
    }
    this.peerTimeoutMs = timeoutMs;
    if (this.watchdog === null) this.armWatchdog(timeoutMs);
  }

  private readonly onPortClose = (): void => {
    this.fail('peer transport closed');
  };

  private readonly onPortMessageError = (event: MessageEvent): void => {
    this.fail(`failed to deserialize a message: ${String(event.data)}`);
  };

  /** Posts a heartbeat now, so the peer starts watching, then repeatedly. */
  private startHeartbeats(options: HeartbeatOptions): void {
    const beat: ControlMessage = {
      ipczRxControl: 'heartbeat',
      timeoutMs: options.timeoutMs,
    };
    this.postControl(beat);
    const post = () => this.postControl(beat);
    this.heartbeats = this.scheduler.schedule(function repeat() {
      post();
      this.schedule(undefined, options.intervalMs);
    }, options.intervalMs);
  }

  /**
   * Checks after `delayMs` whether the peer kept its last heartbeat's
   * promise. Any message counts, so a busy transport needs no heartbeats.
   */
  private armWatchdog(delayMs: number): void {
    const dueAt = this.scheduler.now() + delayMs;
    this.watchdog = this.scheduler.schedule(() => {
      this.watchdog = null;
      if (this.state !== 'active' || this.failed) return;
      const now = this.scheduler.now();
      // A check that runs far past its time means this thread stalled
      // (a long task, a throttled background tab). The peer's heartbeats
      // may still wait in the port's queue, so the watch starts over.
      if (now - dueAt > this.peerTimeoutMs / 2) {
        this.lastHeardAt = now;
      }
      const silentMs = now - this.lastHeardAt;
      if (silentMs >= this.peerTimeoutMs) {
        this.fail(
          `peer sent nothing for ${silentMs} ms, past its heartbeat ` +
            `timeout of ${this.peerTimeoutMs} ms; its worker was probably ` +
            'terminated',
        );
        return;
      }
      this.armWatchdog(this.peerTimeoutMs - silentMs);
    }, delayMs);
  }

  private rejectMessage(reason: string): void {
    this.badActivityReports.push(reason);
    this.fail(`invalid message: ${reason}`);
  }

  private fail(reason: string): void {
    const listener = this.listener;
    if (listener === null || this.state !== 'active' || this.failed) return;
    this.failed = true;
    this.stopTimers();
    listener.onError(reason);
  }

  private stopTimers(): void {
    this.heartbeats?.unsubscribe();
    this.heartbeats = null;
    this.watchdog?.unsubscribe();
    this.watchdog = null;
  }

  private stopListening(): void {
    this.stopTimers();
    this.port.removeEventListener('message', this.onPortMessage);
    this.port.removeEventListener('messageerror', this.onPortMessageError);
    this.port.removeEventListener('close', this.onPortClose);
  }
}

function isControlMessage(value: unknown): value is ControlMessage {
  if (typeof value !== 'object' || value === null) return false;
  const control = (value as { ipczRxControl?: unknown }).ipczRxControl;
  if (control === 'close') return true;
  return (
    control === 'heartbeat' &&
    typeof (value as { timeoutMs?: unknown }).timeoutMs === 'number'
  );
}

function isPortMessage(value: unknown): value is PortMessage {
  if (typeof value !== 'object' || value === null) return false;
  const { data, handles } = value as Partial<PortMessage>;
  return data instanceof Uint8Array && Array.isArray(handles);
}

/**
 * Tells whether `value` is a MessagePort by its shape and constructor
 * name, because `instanceof` fails for values from another realm.
 */
export function isMessagePort(value: unknown): value is MessagePort {
  return (
    typeof value === 'object' &&
    value !== null &&
    value.constructor?.name === 'MessagePort' &&
    typeof (value as { postMessage?: unknown }).postMessage === 'function'
  );
}

/** Closes the ports among dropped handles. */
function closePortHandles(handles: readonly unknown[]): void {
  for (const handle of handles) {
    if (isMessagePort(handle)) handle.close();
  }
}

/**
 * Throws unless this context can run the Web Worker driver: it needs
 * MessageChannel (`UNIMPLEMENTED` when missing) and a cross-origin
 * isolated context with SharedArrayBuffer (`FAILED_PRECONDITION`).
 */
export function checkWebWorkerSupport(): void {
  if (typeof MessageChannel !== 'function') {
    throw new IpczError(
      'UNIMPLEMENTED',
      'the Web Worker driver needs MessageChannel, which this JavaScript ' +
        'environment does not provide',
    );
  }
  const isolated =
    (globalThis as { crossOriginIsolated?: unknown }).crossOriginIsolated;
  if (isolated !== true || typeof SharedArrayBuffer !== 'function') {
    const found =
      typeof SharedArrayBuffer === 'function'
        ? `crossOriginIsolated is ${String(isolated)}`
        : 'SharedArrayBuffer is missing';
    throw new IpczError(
      'FAILED_PRECONDITION',
      `the Web Worker driver needs shared memory, but ${found}. Browsers ` +
        'provide SharedArrayBuffer only to cross-origin isolated pages: ' +
        'serve the page and its worker scripts with the headers ' +
        '"Cross-Origin-Opener-Policy: same-origin" and ' +
        '"Cross-Origin-Embedder-Policy: require-corp"',
    );
  }
}

/**
 * Wraps a `MessagePort` as a transport of the Web Worker driver. The
 * other port of its channel must be wrapped on the other side. Throws
 * `INVALID_ARGUMENT` for anything but a MessagePort.
 */
export function wrapWebPort(port: MessagePort): WebWorkerTransport {
  if (!isMessagePort(port)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `expected a MessagePort, got ${describeValue(port)}`,
    );
  }
  return new WebWorkerTransport(port);
}

function describeValue(value: unknown): string {
  if (typeof value !== 'object' || value === null) return String(value);
  return value.constructor?.name ?? 'an object without a constructor';
}

function toWebTransport(transport: Transport): WebWorkerTransport {
  if (!(transport instanceof WebWorkerTransport)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'transport was not made by the Web Worker driver',
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
 * cloned (a function, a DOM node) is rejected by trying a clone.
 */
function findUnserializableReason(
  object: DriverObject,
  carrier: WebWorkerTransport,
): string | null {
  if (object instanceof SharedBufferMemory) return null;
  if (object instanceof WebWorkerTransport) {
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
  return `object of kind ${kind} was not made by the Web Worker driver`;
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
      return new WebWorkerTransport(handle);
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

function checkHeartbeat(heartbeat: HeartbeatOptions | undefined): void {
  if (heartbeat === undefined) return;
  const { intervalMs, timeoutMs } = heartbeat;
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `heartbeat.intervalMs must be a positive number, got ${intervalMs}`,
    );
  }
  if (
    !Number.isFinite(timeoutMs) ||
    timeoutMs <= intervalMs ||
    timeoutMs > MAX_HEARTBEAT_TIMEOUT_MS
  ) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `heartbeat.timeoutMs must exceed intervalMs (${intervalMs}) and be ` +
        `at most ${MAX_HEARTBEAT_TIMEOUT_MS}, got ${timeoutMs}`,
    );
  }
}

/**
 * A driver whose transports are MessagePorts. Transports interoperate
 * with every other instance of this driver, on the page or in a worker.
 */
class WebWorkerDriver implements Driver {
  readonly family = WEB_WORKERS_FAMILY;
  readonly canAllocate: boolean;
  private readonly liveness: LivenessSettings;

  constructor(options: WebWorkerDriverOptions) {
    this.canAllocate = options.canAllocate ?? true;
    this.liveness = {
      heartbeat: options.heartbeat,
      scheduler: options.scheduler ?? asyncScheduler,
    };
  }

  createTransports(): [Transport, Transport] {
    const channel = new MessageChannel();
    return [
      new WebWorkerTransport(channel.port1),
      new WebWorkerTransport(channel.port2),
    ];
  }

  activateTransport(
    transport: Transport,
    listener: TransportListener,
    _options: ActivationOptions,
  ): void {
    toWebTransport(transport).activate(listener, this.liveness);
  }

  deactivateTransport(transport: Transport): void {
    toWebTransport(transport).deactivate();
  }

  closeTransport(transport: Transport): void {
    toWebTransport(transport).close();
  }

  transmit(transport: Transport, data: Uint8Array, handles: unknown[]): void {
    toWebTransport(transport).transmit(data, handles);
  }

  reportBadTransportActivity(transport: Transport, reason: string): void {
    toWebTransport(transport).badActivityReports.push(reason);
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
   * structured clone rejects. The page and its workers can all reach each
   * other through MessagePorts, so nothing is `permission-denied`.
   */
  checkTransmit(object: DriverObject, transport: Transport): TransmitCheck {
    const carrier = toWebTransport(transport);
    const reason = findUnserializableReason(object, carrier);
    return reason === null ? 'ok' : 'unserializable';
  }

  serializeObject(
    object: DriverObject,
    transport: Transport,
  ): SerializedObject {
    const reason = findUnserializableReason(
      object,
      toWebTransport(transport),
    );
    if (reason !== null) throw new IpczError('INVALID_ARGUMENT', reason);

    if (object instanceof WebWorkerTransport) {
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
    if (object instanceof WebWorkerTransport) object.close();
  }

  generateRandomBytes(length: number): Uint8Array {
    return generateRandomBytes(length);
  }
}

/**
 * Creates a driver for nodes on a browser page and in its Web Workers.
 * The page and each worker make their own driver. Throws
 * `FAILED_PRECONDITION` when the context is not cross-origin isolated
 * (no SharedArrayBuffer), `UNIMPLEMENTED` without MessageChannel, and
 * `INVALID_ARGUMENT` for invalid heartbeat options.
 */
export function createWebWorkerDriver(
  options: WebWorkerDriverOptions = {},
): Driver {
  checkWebWorkerSupport();
  checkHeartbeat(options.heartbeat);
  return new WebWorkerDriver(options);
}
