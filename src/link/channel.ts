import { Observable, ReplaySubject, Subject } from 'rxjs';
import type { Driver, DriverObject, Transport } from '../drivers/driver';
import {
  decodeMessage,
  encodeMessage,
  type EncodedMessage,
} from '../wire/codec';
import { deserializeMessage, serializeMessage } from '../wire/serialization';
import type { NodeMessage } from '../wire/messages';

/** The reason a channel ended. */
export interface ChannelEnd {
  reason: string;
  /** True when the peer sent something invalid. */
  badMessage: boolean;
}

/**
 * A node's end of one driver transport, from activation until it is
 * closed: decodes and validates what arrives, and encodes what is sent.
 * The handshake runs over it first; the node link takes it over after.
 *
 * Incoming messages are emitted by `messages$` one at a time. A
 * subscriber that finds a message invalid calls `reject(reason)` while
 * handling it; the channel then ends with that reason, closes the
 * transport and reports the message to the driver.
 */
export class Channel {
  private readonly incoming = new Subject<NodeMessage>();
  private readonly ended = new ReplaySubject<ChannelEnd>(1);
  private state: 'new' | 'active' | 'ended' = 'new';
  private dispatching = false;
  private rejection: string | null = null;
  /** Decoded incoming messages, one at a time; hot, nothing is replayed. */
  readonly messages$: Observable<NodeMessage> = this.incoming.asObservable();
  /** Emits once when the channel ends; replays it to late subscribers. */
  readonly end$: Observable<ChannelEnd> = this.ended.asObservable();

  constructor(
    readonly driver: Driver,
    readonly transport: Transport,
    private readonly isBroker: boolean,
  ) {}

  get isActive(): boolean {
    return this.state === 'active';
  }

  /**
   * Starts delivery from the transport. Throws what the driver throws
   * when the transport cannot be activated.
   */
  activate(): void {
    if (this.state !== 'new') return;
    this.state = 'active';
    this.driver.activateTransport(
      this.transport,
      {
        onMessage: (data, handles) => this.onMessage(data, handles),
        onError: (reason) => this.finish({ reason, badMessage: false }),
        onDeactivated: () =>
          this.finish({ reason: 'transport deactivated', badMessage: false }),
      },
      { isBroker: this.isBroker },
    );
  }

  /** Encodes and transmits a message; does nothing once ended. */
  send(message: NodeMessage): void {
    this.sendEncoded(encodeMessage(message));
  }

  /** Transmits an already encoded message, such as a relayed one. */
  sendEncoded(encoded: EncodedMessage): void {
    if (this.state === 'ended') {
      for (const object of encoded.objects) this.driver.closeObject(object);
      return;
    }
    const { data, handles } = serializeMessage(
      encoded,
      this.driver,
      this.transport,
    );
    this.driver.transmit(this.transport, data, handles);
  }

  /**
   * Rejects the message being handled, or drops the channel for bad input
   * found later (a parcel rejected by the application).
   */
  reject(reason: string): void {
    if (this.dispatching) {
      this.rejection ??= reason;
      return;
    }
    if (this.state === 'ended') return;
    this.driver.reportBadTransportActivity(this.transport, reason);
    this.finish({ reason, badMessage: true });
    this.driver.closeTransport(this.transport);
  }

  /**
   * Delivers a message that arrived by another route (a relay through
   * the broker) as if this channel received it. Returns the rejection.
   */
  deliver(message: NodeMessage): string | null {
    if (this.state !== 'active') return null;
    const outer = this.dispatching;
    const outerRejection = this.rejection;
    this.dispatching = true;
    this.rejection = null;
    try {
      this.incoming.next(message);
    } catch (error) {
      this.rejection ??= `handling ${message.type} failed: ${String(error)}`;
    } finally {
      this.dispatching = outer;
    }
    const rejection = this.rejection;
    this.rejection = outerRejection;
    return rejection;
  }

  /** Ends the channel and closes the transport; the peer gets an error. */
  close(reason: string): void {
    if (this.state === 'ended') return;
    this.finish({ reason, badMessage: false });
    this.driver.closeTransport(this.transport);
  }

  private onMessage(data: Uint8Array, handles: readonly unknown[]) {
    if (this.state !== 'active') return true;
    const unpacked = deserializeMessage(data, handles, this.driver);
    if (!unpacked.ok) return this.rejectNow(describeError(unpacked.error));
    const objects = unpacked.encoded.objects;
    const decoded = decodeMessage(unpacked.encoded);
    if (!decoded.ok) {
      this.closeObjects(objects);
      return this.rejectNow(describeError(decoded.error));
    }
    // An unknown message id is ignored once its header and objects are
    // valid, so that newer peers can add messages. Its objects are closed
    // so that, say, the peer of a transport in it gets closure.
    if (decoded.message === null) {
      this.closeObjects(objects);
      return true;
    }
    const rejection = this.deliver(decoded.message);
    if (rejection === null) return true;
    // A rejected message's handler took no lasting ownership of its
    // objects; closing twice is harmless for drivers.
    this.closeObjects(objects);
    return this.rejectNow(rejection);
  }

  private closeObjects(objects: readonly DriverObject[]): void {
    for (const object of objects) this.driver.closeObject(object);
  }

  private rejectNow(reason: string): string {
    this.finish({ reason, badMessage: true });
    this.driver.closeTransport(this.transport);
    return reason;
  }

  private finish(end: ChannelEnd): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.ended.next(end);
    this.ended.complete();
    this.incoming.complete();
  }
}

function describeError(error: {
  messageName: string;
  field: string | null;
  reason: string;
}): string {
  const where = error.field === null ? '' : ` field ${error.field}`;
  return `invalid ${error.messageName}${where}: ${error.reason}`;
}
