/**
 * The driver interface: everything ipcz-rx needs from the platform it runs
 * on. A node reaches threads, processes and memory only through it, as an
 * ipcz node reaches the OS only through its `IpczDriver` table.
 *
 * Driver objects are transports, shared memory regions and boxed
 * application values. They cross a transport in two parts: bytes that the
 * wire layer stores inside the message, and platform handles (a
 * `MessagePort`, a `SharedArrayBuffer`, an in-process reference) that the
 * transport carries beside the bytes.
 */

/** A region of shared memory. */
export interface SharedMemory {
  readonly kind: 'memory';
  /** Size of the region in bytes. */
  readonly size: number;
  /**
   * Returns a view of the whole region. Its `buffer` is a
   * SharedArrayBuffer, so Atomics work on it and writes are seen by every
   * holder of the region, on any thread.
   */
  map(): Uint8Array;
}

/** One endpoint of a bidirectional, ordered message channel. */
export interface Transport {
  readonly kind: 'transport';
}

/** An application value carried in a box; drivers decide how it crosses. */
export interface ApplicationObject {
  readonly kind: 'application';
  readonly value: unknown;
}

export type DriverObject = SharedMemory | Transport | ApplicationObject;

/** A driver object flattened for transmission. */
export interface SerializedObject {
  data: Uint8Array;
  handles: unknown[];
}

/**
 * Receives what arrives on an activated transport. Calls for one transport
 * never overlap, but `onMessage` may run inside the sender's `transmit`
 * call (the sync driver does this), so a listener must tolerate
 * re-entrancy.
 */
export interface TransportListener {
  /**
   * Handles one message. Returns `true` when accepted; returns a reason
   * string when the message is invalid, after which the driver reports an
   * error on the transport (ipcz's INVALID_ARGUMENT result followed by an
   * IPCZ_TRANSPORT_ACTIVITY_ERROR notification).
   */
  onMessage(data: Uint8Array, handles: readonly unknown[]): true | string;
  /** The transport failed or its peer went away; no more messages come. */
  onError(reason: string): void;
  /** Deactivation finished; the listener is released. */
  onDeactivated(): void;
}

/** What a node tells its driver about itself when it activates a transport. */
export interface ActivationOptions {
  /** Whether the activating node is a broker. */
  isBroker: boolean;
}

/** Outcome of asking whether an object may cross a transport. */
export type TransmitCheck = 'ok' | 'permission-denied' | 'unserializable';

export interface Driver {
  /**
   * Drivers with the same `family` interoperate: a transport or memory
   * object made by one works with a node built on another.
   */
  readonly family: string;
  /** False for a sandboxed node, which must delegate allocation. */
  readonly canAllocate: boolean;

  /** Creates two connected transport endpoints. */
  createTransports(): [Transport, Transport];
  /**
   * Starts delivery to `listener`. Messages transmitted before activation
   * are kept and delivered after it, in order.
   */
  activateTransport(
    transport: Transport,
    listener: TransportListener,
    options: ActivationOptions,
  ): void;
  /** Stops delivery; the listener gets `onDeactivated` afterwards. */
  deactivateTransport(transport: Transport): void;
  /**
   * Closes the endpoint: the peer's listener gets `onError`. A closed
   * transport drops later transmissions.
   */
  closeTransport(transport: Transport): void;
  /**
   * Sends bytes and handles; delivery order is transmission order. The
   * driver takes ownership of `data`: the caller does not touch it again,
   * and the receiving listener may keep or change what it gets.
   */
  transmit(transport: Transport, data: Uint8Array, handles: unknown[]): void;
  /** Tells the driver that a message from this transport was invalid. */
  reportBadTransportActivity(transport: Transport, reason: string): void;

  /**
   * Allocates a zeroed region of at least `size` bytes. Throws
   * `IpczError('PERMISSION_DENIED')` when `canAllocate` is false and
   * `IpczError('RESOURCE_EXHAUSTED')` when the platform refuses.
   */
  allocateSharedMemory(size: number): SharedMemory;
  /** Returns another handle to the same region. */
  duplicateSharedMemory(memory: SharedMemory): SharedMemory;

  /**
   * Tells whether `object` can be sent over `transport`: `permission-denied`
   * means it can be serialized but not across this transport (a relay
   * through the broker is needed), as ipcz's forced brokering does.
   */
  checkTransmit(object: DriverObject, transport: Transport): TransmitCheck;
  /** Flattens an object for `transport`; the object is consumed. */
  serializeObject(object: DriverObject, transport: Transport): SerializedObject;
  /**
   * Rebuilds an object from what `serializeObject` produced on the peer.
   * Returns a reason string when the data or handles are invalid.
   */
  deserializeObject(serialized: SerializedObject): DriverObject | string;
  /**
   * Releases an object that will not be used or sent; closing a transport
   * makes its peer see an error. Closing an object twice does nothing.
   */
  closeObject(object: DriverObject): void;

  /** Fills a new array with cryptographically random bytes. */
  generateRandomBytes(length: number): Uint8Array;
}
