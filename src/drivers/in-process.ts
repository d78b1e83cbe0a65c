/**
 * The shared base of the sync and async drivers, which connect nodes that
 * live in one JavaScript realm, as ipcz's single-process reference driver
 * base does. Each transport endpoint is an object that contains its own peer,
 * listener and queue, so any in-process driver instance can operate on a
 * transport made by another. Memory is a SharedArrayBuffer, and every
 * driver object crosses a transport as itself: zero bytes and one handle.
 */
import { IpczError } from '../errors';
import type {
  ActivationOptions,
  DriverObject,
  SerializedObject,
  Transport,
  TransmitCheck,
  TransportListener,
} from './driver';
import {
  DriverBase,
  checkLifecycleStep,
  type TransportState,
} from './driver-base';
import { SharedBufferMemory } from './shared-memory';

/** The `family` of the sync and async drivers, which interoperate. */
export const IN_PROCESS_FAMILY = 'in-process';

/** Options of `createSyncDriver` and `createAsyncDriver`. */
export interface InProcessDriverOptions {
  /**
   * Whether the driver may allocate shared memory (default `true`). False
   * models a sandboxed node, which must delegate every allocation.
   */
  canAllocate?: boolean;
  /**
   * Whether driver objects are denied between two non-broker nodes, so
   * that ipcz-rx must relay them through a broker (default `false`). This
   * is ipcz's "async with forced brokering" test driver.
   */
  forcedBrokering?: boolean;
}

/** Delivery policy of the two endpoints of one transport pair. */
export interface DeliveryMode {
  /** Runs `drain` on the caller's stack or schedules it for later. */
  schedule(drain: () => void): void;
  /**
   * Whether one drain delivers only what was queued when it began. Later
   * entries wait for a new drain, so busy transports take turns.
   */
  readonly batchPerDrain: boolean;
}

type Notification =
  | { type: 'message'; data: Uint8Array; handles: unknown[] }
  | { type: 'error'; reason: string }
  | { type: 'deactivated' };

/**
 * One endpoint of an in-process transport pair.
 *
 * Notifications for an endpoint (messages, the peer's closure, its own
 * deactivation) go through one FIFO queue, so they reach the listener in
 * the order they happened. Entries wait in the queue until activation.
 * Only one drain of an endpoint runs at a time: an entry queued while the
 * listener runs is delivered after the listener returns, never inside it.
 * After `onError` no further message or error reaches the listener; only
 * `onDeactivated` still does. Handles in a message that is dropped are
 * closed, so a transport lost this way still notifies its peer.
 */
export class InProcessTransport implements Transport {
  readonly kind = 'transport';
  readonly delivery: DeliveryMode;
  /** Whether the activating node is a broker; `null` before activation. */
  isBroker: boolean | null = null;
  /** Reasons given by `reportBadTransportActivity` and by rejections. */
  readonly badActivityReports: string[] = [];

  private peerEndpoint: InProcessTransport | null = null;
  private state: TransportState = 'inactive';
  private listener: TransportListener | null = null;
  private failed = false;
  private queue: Notification[] = [];
  private draining = false;
  private drainPending = false;

  private constructor(delivery: DeliveryMode) {
    this.delivery = delivery;
  }

  /** Creates two connected endpoints that deliver by `delivery`. */
  static createPair(
    delivery: DeliveryMode,
  ): [InProcessTransport, InProcessTransport] {
    const first = new InProcessTransport(delivery);
    const second = new InProcessTransport(delivery);
    first.peerEndpoint = second;
    second.peerEndpoint = first;
    return [first, second];
  }

  /** The other endpoint of the pair. */
  get peer(): InProcessTransport {
    // Both endpoints are linked in createPair before either escapes.
    return this.peerEndpoint as InProcessTransport;
  }

  /** Lifecycle state: inactive, active, deactivated or closed. */
  get currentState(): TransportState {
    return this.state;
  }

  activate(listener: TransportListener, isBroker: boolean): void {
    checkLifecycleStep(this.state, 'activate');
    this.state = 'active';
    this.listener = listener;
    this.isBroker = isBroker;
    this.requestDrain();
  }

  deactivate(): void {
    checkLifecycleStep(this.state, 'deactivate');
    this.state = 'deactivated';
    this.discardQueue();
    this.queue.push({ type: 'deactivated' });
    this.requestDrain();
  }

  /**
   * Closes this endpoint; closing it again does nothing. A deactivation
   * still pending completes, because a node deactivates and then closes.
   */
  close(): void {
    if (this.state === 'closed') return;
    if (this.state !== 'deactivated') {
      this.listener = null;
      this.discardQueue();
    }
    this.state = 'closed';
    this.peer.post({ type: 'error', reason: 'peer transport closed' });
  }

  transmit(data: Uint8Array, handles: readonly unknown[]): void {
    if (this.state === 'deactivated' || this.state === 'closed') {
      discardHandles(handles);
      return;
    }
    // Copies, because a real transport copies too: the caller may reuse
    // its buffer and array as soon as transmit returns.
    this.peer.post({
      type: 'message',
      data: data.slice(),
      handles: [...handles],
    });
  }

  private post(notification: Notification): void {
    if (this.state === 'deactivated' || this.state === 'closed') {
      discardNotification(notification);
      return;
    }
    this.queue.push(notification);
    this.requestDrain();
  }

  private discardQueue(): void {
    const dropped = this.queue;
    this.queue = [];
    dropped.forEach(discardNotification);
  }

  private requestDrain(): void {
    // A drain in progress picks up new entries itself, which is what makes
    // nested transmissions safe in sync mode.
    if (this.queue.length === 0 || this.listener === null) return;
    if (this.draining || this.drainPending) return;
    this.drainPending = true;
    this.delivery.schedule(this.drain);
  }

  private readonly drain = (): void => {
    this.drainPending = false;
    this.draining = true;
    try {
      do {
        this.deliverBatch();
      } while (
        !this.delivery.batchPerDrain &&
        this.queue.length > 0 &&
        this.listener !== null
      );
    } finally {
      this.draining = false;
    }
    this.requestDrain();
  };

  private deliverBatch(): void {
    const batch = this.queue;
    this.queue = [];
    let next = 0;
    try {
      while (next < batch.length) {
        const notification = batch[next] as Notification;
        next += 1;
        this.deliver(notification);
      }
    } finally {
      // A listener threw: keep what it did not see, in order.
      if (next < batch.length) {
        this.queue = batch.slice(next).concat(this.queue);
      }
    }
  }

  private deliver(notification: Notification): void {
    const listener = this.listener;
    const open = listener !== null && this.state === 'active' && !this.failed;
    switch (notification.type) {
      case 'message': {
        if (!open) {
          discardNotification(notification);
          return;
        }
        const result = listener.onMessage(
          notification.data,
          notification.handles,
        );
        if (result !== true) this.rejectMessage(String(result));
        return;
      }
      case 'error':
        if (!open) return;
        this.failed = true;
        listener.onError(notification.reason);
        return;
      case 'deactivated':
        this.listener = null;
        listener?.onDeactivated();
        return;
    }
  }

  private rejectMessage(reason: string): void {
    this.badActivityReports.push(reason);
    // The listener may have deactivated or closed the transport while it
    // handled the message; then it expects no error.
    const listener = this.listener;
    if (listener === null || this.state !== 'active' || this.failed) return;
    this.failed = true;
    listener.onError(`invalid message: ${reason}`);
  }
}

function discardNotification(notification: Notification): void {
  if (notification.type === 'message') discardHandles(notification.handles);
}

function discardHandles(handles: readonly unknown[]): void {
  for (const handle of handles) {
    if (handle instanceof InProcessTransport) handle.close();
  }
}

/**
 * Returns the reasons recorded on an in-process transport: those passed to
 * `reportBadTransportActivity` and those returned by its listener's
 * `onMessage`, oldest first.
 */
export function getBadActivityReports(transport: Transport): readonly string[] {
  return toInProcessTransport(transport).badActivityReports;
}

function toInProcessTransport(transport: Transport): InProcessTransport {
  if (!(transport instanceof InProcessTransport)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'transport was not made by an in-process (sync or async) driver',
    );
  }
  return transport;
}

function isApplicationObject(value: unknown): value is DriverObject {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { kind?: unknown }).kind === 'application' &&
    'value' in value
  );
}

/**
 * A driver for nodes in one realm; `delivery` makes it the sync or the
 * async driver. The delivery mode belongs to each transport pair, so a
 * transport made by the sync driver delivers synchronously even when a
 * node built on the async driver activates it, and the reverse.
 */
export class InProcessDriver extends DriverBase<InProcessTransport> {
  readonly family = IN_PROCESS_FAMILY;
  readonly forcedBrokering: boolean;
  private readonly delivery: DeliveryMode;

  constructor(delivery: DeliveryMode, options: InProcessDriverOptions = {}) {
    super(options.canAllocate ?? true);
    this.delivery = delivery;
    this.forcedBrokering = options.forcedBrokering ?? false;
  }

  createTransports(): [Transport, Transport] {
    return InProcessTransport.createPair(this.delivery);
  }

  activateTransport(
    transport: Transport,
    listener: TransportListener,
    options: ActivationOptions,
  ): void {
    toInProcessTransport(transport).activate(listener, options.isBroker);
  }

  /**
   * Returns `unserializable` for a foreign object and for a transport that
   * is active, closed or the carrier itself. With `forcedBrokering`, as in
   * ipcz, every driver object (application objects too) is
   * `permission-denied` unless one endpoint of `transport` was activated
   * by a broker. An endpoint not yet activated counts as a non-broker,
   * which errs towards a relay through the broker, and a relay always
   * works.
   */
  override checkTransmit(
    object: DriverObject,
    transport: Transport,
  ): TransmitCheck {
    const check = super.checkTransmit(object, transport);
    if (check !== 'ok' || !this.forcedBrokering) return check;
    const carrier = toInProcessTransport(transport);
    const hasBroker =
      carrier.isBroker === true || carrier.peer.isBroker === true;
    return hasBroker ? 'ok' : 'permission-denied';
  }

  deserializeObject(serialized: SerializedObject): DriverObject | string {
    const { data, handles } = serialized;
    if (data.length !== 0) {
      return `in-process object data must be empty, got ${data.length} bytes`;
    }
    if (handles.length !== 1) {
      return `in-process object needs exactly 1 handle, got ${handles.length}`;
    }
    const handle = handles[0];
    if (handle instanceof SharedBufferMemory) return handle;
    if (handle instanceof InProcessTransport) {
      if (handle.currentState !== 'inactive') {
        return `received a transport that is ${handle.currentState}`;
      }
      return handle;
    }
    if (isApplicationObject(handle)) return handle;
    return 'handle is not a memory, transport or application object';
  }

  protected toEndpoint(transport: Transport): InProcessTransport {
    return toInProcessTransport(transport);
  }

  protected isEndpoint(object: DriverObject): object is InProcessTransport {
    return object instanceof InProcessTransport;
  }

  /** A transport can cross only before activation, never over itself. */
  protected findUnserializableReason(
    object: DriverObject,
    carrier: InProcessTransport,
  ): string | null {
    if (object instanceof SharedBufferMemory) return null;
    if (object instanceof InProcessTransport) {
      if (object === carrier || object === carrier.peer) {
        return 'a transport cannot be sent over itself';
      }
      if (object.currentState !== 'inactive') {
        return `cannot send a transport that is ${object.currentState}`;
      }
      return null;
    }
    if (isApplicationObject(object)) return null;
    const kind = String((object as { kind?: unknown }).kind);
    return `object of kind ${kind} was not made by an in-process driver`;
  }

  /** Flattens any object to zero bytes and one handle: the object. */
  protected flattenObject(object: DriverObject): SerializedObject {
    return { data: new Uint8Array(0), handles: [object] };
  }
}
