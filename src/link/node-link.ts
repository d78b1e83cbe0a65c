import { Observable } from 'rxjs';
import { createReplyMatcher, type ReplyMatcher } from '../../streams';
import type { SharedMemory } from '../drivers/driver';
import { IpczError } from '../errors';
import type { EncodedMessage } from '../wire/codec';
import { encodeMessage } from '../wire/codec';
import type { LinkSide, NodeMessage, NodeType } from '../wire/messages';
import type { NodeName } from '../wire/node-name';
import type { Channel, ChannelEnd } from './channel';
import type { NodeLinkMemory } from './node-link-memory';

/** Something bound to a sublink: the router layer's remote router link. */
export interface SublinkBinding {
  /** Called when the node link is lost with the binding still in place. */
  onNodeLinkLost(): void;
}

/** Sender for messages whose objects the transport cannot carry. */
export type Relay = (encoded: EncodedMessage) => boolean;

export interface NodeLinkParams {
  channel: Channel;
  memory: NodeLinkMemory;
  localName: NodeName;
  remoteName: NodeName;
  remoteType: NodeType;
  remoteProtocolVersion: number;
  side: LinkSide;
}

/**
 * A live connection between two nodes, after their handshake: one driver
 * transport, the shared memory pool both ends use, and the sublinks that
 * multiplex routes over it.
 *
 * Incoming messages are `messages$`; the node dispatches them. The link
 * ends when its channel ends. `end$` gives the reason, and every pending
 * memory request errors with `UNAVAILABLE` at that point.
 */
export class NodeLink {
  readonly channel: Channel;
  readonly memory: NodeLinkMemory;
  readonly localName: NodeName;
  readonly remoteName: NodeName;
  readonly remoteType: NodeType;
  readonly remoteProtocolVersion: number;
  readonly side: LinkSide;
  readonly messages$: Observable<NodeMessage>;
  readonly end$: Observable<ChannelEnd>;

  /** Set by the node when this link's objects may need the broker. */
  relay: Relay | null = null;
  /** Messages this link carried, by direction; tests count them. */
  readonly counters = { sent: 0, received: 0 };

  private readonly sublinks = new Map<bigint, SublinkBinding>();
  private readonly memoryRequests: ReplyMatcher<number, SharedMemory>;
  private lost = false;

  constructor(params: NodeLinkParams) {
    this.channel = params.channel;
    this.memory = params.memory;
    this.localName = params.localName;
    this.remoteName = params.remoteName;
    this.remoteType = params.remoteType;
    this.remoteProtocolVersion = params.remoteProtocolVersion;
    this.side = params.side;
    this.messages$ = this.channel.messages$;
    this.end$ = this.channel.end$;
    this.memoryRequests = createReplyMatcher<number, SharedMemory>({
      release: (memory) => this.channel.driver.closeObject(memory),
      onUnmatched: (size) =>
        this.channel.reject(
          `ProvideMemory of ${size} bytes answers no pending RequestMemory`,
        ),
    });
    this.end$.subscribe((end) => this.onEnd(end));
    // ProvideMemory replies are matched here, where the requests were sent.
    this.messages$.subscribe((message) => {
      if (message.type !== 'ProvideMemory') return;
      if (message.buffer !== null && message.buffer.kind !== 'memory') {
        this.channel.driver.closeObject(message.buffer);
        this.reject('ProvideMemory carries an object that is not memory');
        return;
      }
      this.acceptProvidedMemory(message.size, message.buffer);
    });
  }

  get isActive(): boolean {
    return !this.lost && this.channel.isActive;
  }

  /**
   * Sends a message. When the driver cannot carry one of its objects over
   * this transport, the message goes through `relay` instead.
   */
  send(message: NodeMessage): void {
    if (this.lost) {
      this.releaseObjectsOf(encodeMessage(message));
      return;
    }
    const encoded = encodeMessage(message);
    this.counters.sent++;
    if (this.needsRelay(encoded) && this.relay !== null) {
      if (this.relay(encoded)) return;
    }
    this.channel.sendEncoded(encoded);
  }

  /**
   * Asks the remote node, as this node's allocation delegate, for a
   * shared memory region of `size` bytes. Cold: `RequestMemory` is sent
   * on subscription. Emits the region and completes. Errors with
   * `RESOURCE_EXHAUSTED` when the delegate replies with no buffer, and
   * with `UNAVAILABLE` when the link is lost first.
   *
   * Answers carry no request id: the first `ProvideMemory` of a size
   * answers the oldest request of that size. A request unsubscribed
   * before its answer keeps its place, and its region is released when it
   * arrives.
   */
  requestMemory(size: number): Observable<SharedMemory> {
    return this.memoryRequests.request(size, () =>
      this.send({ type: 'RequestMemory', size }),
    );
  }

  /**
   * Completes the oldest request of `size` with `memory`, or fails it when
   * `memory` is null. Returns false, after rejecting the message, when
   * no request of that size was pending.
   */
  private acceptProvidedMemory(
    size: number,
    memory: SharedMemory | null,
  ): boolean {
    if (memory === null) {
      return this.memoryRequests.fail(
        size,
        new IpczError(
          'RESOURCE_EXHAUSTED',
          `the allocation delegate refused ${size} bytes`,
        ),
      );
    }
    return this.memoryRequests.reply(size, memory);
  }

  /** Number of memory requests of `size` still waiting for an answer. */
  pendingMemoryRequests(size: number): number {
    return this.memoryRequests.pendingCount(size);
  }

  bindSublink(sublink: bigint, binding: SublinkBinding): void {
    this.sublinks.set(sublink, binding);
  }

  getSublink(sublink: bigint): SublinkBinding | undefined {
    return this.sublinks.get(sublink);
  }

  unbindSublink(sublink: bigint, binding: SublinkBinding): void {
    if (this.sublinks.get(sublink) === binding) this.sublinks.delete(sublink);
  }

  get sublinkCount(): number {
    return this.sublinks.size;
  }

  /** Rejects the message being handled, or drops the link for bad input. */
  reject(reason: string): void {
    this.channel.reject(reason);
  }

  /** Closes the link; the remote node's end fails. */
  close(reason: string): void {
    this.channel.close(reason);
  }

  private needsRelay(encoded: EncodedMessage): boolean {
    const { driver, transport } = this.channel;
    for (const object of encoded.objects) {
      if (driver.checkTransmit(object, transport) === 'permission-denied') {
        return true;
      }
    }
    return false;
  }

  private releaseObjectsOf(encoded: EncodedMessage): void {
    for (const object of encoded.objects) {
      this.channel.driver.closeObject(object);
    }
  }

  private onEnd(end: ChannelEnd): void {
    if (this.lost) return;
    this.lost = true;
    this.memoryRequests.close(
      new IpczError(
        'UNAVAILABLE',
        `the link to node ${this.remoteName} was lost: ${end.reason}`,
      ),
    );
    this.memory.close();
    const bindings = [...this.sublinks.values()];
    this.sublinks.clear();
    for (const binding of bindings) binding.onNodeLinkLost();
  }
}
