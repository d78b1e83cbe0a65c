/**
 * The transport endpoint that the Web Worker and worker_threads drivers
 * share: a wrapped `MessagePort` with the driver lifecycle, outgoing
 * batches and delivery to the listener. A browser's MessagePort and
 * Node's differ in their types and in how listeners are added, so the
 * port type is a parameter and subclasses listen and post. The module
 * imports no Node built-in and touches no platform global at load.
 */
import { IpczError } from '../errors';
import type { TransportListener } from './driver';
import {
  checkLifecycleStep,
  type DriverEndpoint,
  type TransportState,
} from './driver-base';

/** The part of a MessagePort, a browser's or Node's, used here. */
export interface PortLike {
  close(): void;
}

/** One transmission waiting to be posted. */
export interface PortMessage {
  data: Uint8Array;
  handles: unknown[];
}

/** Batching rules for the transmissions an endpoint collects in a task. */
export interface BatchPolicy {
  /** Whether `transmit` copies the bytes before they wait for the post. */
  copyData: boolean;
  /** Message count at which a batch is posted without waiting. */
  maxMessages: number;
  /** Total message bytes at which a batch is posted without waiting. */
  maxBytes: number;
}

/**
 * One endpoint of a transport: a wrapped MessagePort of type `P`.
 *
 * Transmissions made in one task are posted together when the current
 * microtasks have run, in order, unless the batch fills first. Messages
 * of a batch that arrive after the endpoint stopped delivering have their
 * ports closed, so the transports they carried still notify their peers.
 */
export abstract class PortTransport<P extends PortLike>
  implements DriverEndpoint
{
  readonly kind = 'transport';
  readonly port: P;
  /** Reasons given by `reportBadTransportActivity` and by rejections. */
  readonly badActivityReports: string[] = [];

  protected state: TransportState = 'inactive';
  protected listener: TransportListener | null = null;
  protected failed = false;
  private readonly batchPolicy: BatchPolicy;
  private outgoing: PortMessage[] = [];
  private outgoingPorts: P[] = [];
  private outgoingBytes = 0;
  private flushScheduled = false;

  protected constructor(port: P, batchPolicy: BatchPolicy) {
    this.port = port;
    this.batchPolicy = batchPolicy;
  }

  /** Lifecycle state: inactive, active, deactivated or closed. */
  get currentState(): TransportState {
    return this.state;
  }

  /** Posts one batch with the ports it transfers; throws when it fails. */
  protected abstract postBatch(batch: PortMessage[], transfer: P[]): void;

  /** Removes what activation added to the port: listeners and timers. */
  protected abstract stopListening(): void;

  /** Tells the peer of a deliberate close; the base posts nothing. */
  protected announceClose(): void {}

  /** Runs once when the endpoint fails, before its listener's `onError`. */
  protected onFail(): void {}

  /**
   * Moves an inactive endpoint to active. Throws `FAILED_PRECONDITION` in
   * any other state. The subclass starts listening afterwards.
   */
  protected enterActiveState(listener: TransportListener): void {
    checkLifecycleStep(this.state, 'activate');
    this.state = 'active';
    this.listener = listener;
  }

  deactivate(): void {
    checkLifecycleStep(this.state, 'deactivate');
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
    this.announceClose();
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
    const policy = this.batchPolicy;
    this.outgoing.push({
      data: policy.copyData ? data.slice() : data,
      handles: [...handles],
    });
    for (const handle of handles) {
      if (isMessagePort<P>(handle)) this.outgoingPorts.push(handle);
    }
    this.outgoingBytes += data.byteLength;
    // A full batch goes out at once, so the peer starts on it while this
    // side keeps producing. One batch per task would alternate the two.
    if (
      this.outgoing.length >= policy.maxMessages ||
      this.outgoingBytes >= policy.maxBytes
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
    const transfer = this.outgoingPorts;
    this.outgoing = [];
    this.outgoingPorts = [];
    this.outgoingBytes = 0;
    try {
      this.postBatch(batch, transfer);
    } catch (error) {
      // checkTransmit rejects what cannot be cloned, so this means a
      // caller skipped it. The batch is lost, so the transport fails.
      this.fail(`failed to post a message: ${String(error)}`);
    }
  };

  /** Whether received messages still reach the listener. */
  protected get delivering(): boolean {
    return this.state === 'active' && !this.failed;
  }

  /**
   * Passes one received message to the listener, or closes the ports among
   * its handles once the endpoint no longer delivers.
   */
  protected deliver(data: Uint8Array, handles: unknown[]): void {
    if (!this.delivering) {
      closePortHandles(handles);
      return;
    }
    const listener = this.listener as TransportListener;
    const result = listener.onMessage(data, handles);
    if (result !== true) this.rejectMessage(String(result));
  }

  protected rejectMessage(reason: string): void {
    this.badActivityReports.push(reason);
    this.fail(`invalid message: ${reason}`);
  }

  protected fail(reason: string): void {
    const listener = this.listener;
    if (listener === null || this.state !== 'active' || this.failed) return;
    this.failed = true;
    this.onFail();
    listener.onError(reason);
  }
}

/**
 * Tells whether `value` is a MessagePort by its shape and constructor
 * name, because `instanceof` fails for values from another realm. The
 * caller names its platform's port type as `P`.
 */
export function isMessagePort<P extends PortLike = PortLike>(
  value: unknown,
): value is P {
  return (
    typeof value === 'object' &&
    value !== null &&
    value.constructor?.name === 'MessagePort' &&
    typeof (value as { postMessage?: unknown }).postMessage === 'function'
  );
}

/** Closes the ports among dropped handles, so their peers see a close. */
export function closePortHandles(handles: readonly unknown[]): void {
  for (const handle of handles) {
    if (isMessagePort(handle)) handle.close();
  }
}

/** Throws `INVALID_ARGUMENT` unless `value` is a MessagePort. */
export function checkMessagePort(value: unknown): void {
  if (!isMessagePort(value)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `expected a MessagePort, got ${describeValue(value)}`,
    );
  }
}

function describeValue(value: unknown): string {
  if (typeof value !== 'object' || value === null) return String(value);
  return value.constructor?.name ?? 'an object without a constructor';
}
