import type { Subscription } from 'rxjs';
import type { SharedMemory, Transport } from '../drivers/driver';
import { IpczError } from '../errors';
import { Channel } from '../link/channel';
import { NodeLink } from '../link/node-link';
import { MAX_INITIAL_PORTALS } from '../link/node-link-memory';
import type { Router } from '../router/router';
import { ConnectFlags, type NodeMessage } from '../wire/messages';
import type { Node } from './node';

/** The protocol version this implementation speaks. */
export const PROTOCOL_VERSION = 0;

export interface ConnectOptions {
  portals: number;
  toBroker?: boolean;
  inheritBroker?: boolean;
  shareBroker?: boolean;
  allocationDelegate?: boolean;
}

/**
 * Runs one connection handshake over a new transport, as ipcz's
 * NodeConnector: it owns the channel until the handshake completes, then
 * hands it to a NodeLink and binds the initial portals. Any unexpected
 * message, or the transport failing first, rejects the connection: every
 * initial portal then sees its peer closed.
 */
export abstract class NodeConnector {
  protected readonly channel: Channel;
  private subscription: Subscription | null = null;
  private done = false;

  constructor(
    protected readonly node: Node,
    transport: Transport,
    protected readonly routers: Router[],
    protected readonly options: ConnectOptions,
  ) {
    this.channel = new Channel(node.driver, transport, node.isBroker);
  }

  /**
   * Sends this side's first message, then activates the transport: the
   * sync driver may deliver the peer's message during activation, and
   * handling it needs what sendFirstMessage prepared.
   */
  start(): void {
    this.subscription = this.channel.messages$.subscribe((message) =>
      this.onMessage(message),
    );
    this.channel.end$.subscribe((end) => {
      if (this.done) return;
      if (end.badMessage) this.node.reportBadMessage(null, end.reason);
      this.fail(`connection failed: ${end.reason}`);
    });
    this.node.trackHandshake(this.channel);
    this.sendFirstMessage();
    this.channel.activate();
  }

  protected abstract sendFirstMessage(): void;

  /** Returns a rejection reason, or null once handled. */
  protected abstract handle(message: NodeMessage): string | null;

  protected get flags(): number {
    return this.options.allocationDelegate
      ? ConnectFlags.allocationDelegate
      : 0;
  }

  /** Hands the channel to a new node link and binds initial portals. */
  protected complete(link: NodeLink, remotePortals: number): void {
    this.done = true;
    this.subscription?.unsubscribe();
    this.node.bindInitialPortals(link, this.routers, remotePortals);
  }

  protected fail(reason: string): void {
    if (this.done) return;
    this.done = true;
    this.subscription?.unsubscribe();
    this.channel.close(reason);
    this.node.failInitialPortals(this.routers);
  }

  private onMessage(message: NodeMessage): void {
    if (this.done) return;
    const rejection = this.handle(message);
    if (rejection !== null) {
      this.channel.reject(rejection);
      this.node.reportBadMessage(null, rejection);
      this.fail(rejection);
    }
  }
}

function checkPortalCount(count: number): string | null {
  if (count < 1 || count > MAX_INITIAL_PORTALS) {
    return (
      `initial portal count ${count} is outside ` +
      `[1, ${MAX_INITIAL_PORTALS}]`
    );
  }
  return null;
}

/** A broker accepting a non-broker: it names the node and makes the memory. */
export class BrokerToNonBrokerConnector extends NodeConnector {
  // Allocated on construction, before the transport is activated, so a
  // failure throws from connect() and leaves the transport untouched.
  private readonly primary: SharedMemory = this.node.allocatePrimaryBuffer();
  private readonly remoteName = this.node.generateName();

  protected sendFirstMessage(): void {
    const primary = this.primary;
    this.node.initializeLinkMemory(primary);
    this.channel.send({
      type: 'ConnectFromBrokerToNonBroker',
      brokerName: this.node.requireName(),
      receiverName: this.remoteName,
      protocolVersion: PROTOCOL_VERSION,
      numInitialPortals: this.routers.length,
      buffer: this.node.driver.duplicateSharedMemory(primary),
    });
  }

  protected handle(message: NodeMessage): string | null {
    if (message.type !== 'ConnectFromNonBrokerToBroker') {
      return `expected ConnectFromNonBrokerToBroker, got ${message.type}`;
    }
    const bad = checkPortalCount(message.numInitialPortals);
    if (bad !== null) return bad;
    const link = this.node.createLink({
      channel: this.channel,
      memory: this.primary,
      initialize: false,
      remoteName: this.remoteName,
      remoteType: 'normal',
      remoteProtocolVersion: message.protocolVersion,
      side: 'A',
    });
    const delegates = (message.flags & ConnectFlags.allocationDelegate) !== 0;
    this.node.addLink(link, { servesAllocation: delegates });
    this.complete(link, message.numInitialPortals);
    return null;
  }
}

/** A non-broker joining a broker: it takes its name from the broker. */
export class NonBrokerToBrokerConnector extends NodeConnector {
  protected sendFirstMessage(): void {
    this.channel.send({
      type: 'ConnectFromNonBrokerToBroker',
      protocolVersion: PROTOCOL_VERSION,
      numInitialPortals: this.routers.length,
      flags: this.flags,
    });
  }

  protected handle(message: NodeMessage): string | null {
    if (message.type !== 'ConnectFromBrokerToNonBroker') {
      return `expected ConnectFromBrokerToNonBroker, got ${message.type}`;
    }
    const bad = checkPortalCount(message.numInitialPortals);
    if (bad !== null) return bad;
    if (!message.brokerName.isValid() || !message.receiverName.isValid()) {
      return 'ConnectFromBrokerToNonBroker carries an invalid node name';
    }
    if (message.buffer === null || message.buffer.kind !== 'memory') {
      return 'ConnectFromBrokerToNonBroker carries no link buffer';
    }
    this.node.assignName(message.receiverName);
    const link = this.node.createLink({
      channel: this.channel,
      memory: message.buffer,
      initialize: false,
      remoteName: message.brokerName,
      remoteType: 'broker',
      remoteProtocolVersion: message.protocolVersion,
      side: 'B',
    });
    this.node.addLink(link, {
      asBroker: true,
      delegate: this.options.allocationDelegate === true,
    });
    this.complete(link, message.numInitialPortals);
    return null;
  }
}

/**
 * Two brokers joining: both send their name and a buffer; the one with
 * the greater name is side A and its buffer becomes the primary buffer.
 */
export class BrokerToBrokerConnector extends NodeConnector {
  // Allocated before activation, as for a non-broker connection.
  private readonly buffer: SharedMemory = this.node.allocatePrimaryBuffer();

  protected sendFirstMessage(): void {
    const buffer = this.buffer;
    this.node.initializeLinkMemory(buffer);
    this.channel.send({
      type: 'ConnectFromBrokerToBroker',
      name: this.node.requireName(),
      protocolVersion: PROTOCOL_VERSION,
      numInitialPortals: this.routers.length,
      buffer: this.node.driver.duplicateSharedMemory(buffer),
    });
  }

  protected handle(message: NodeMessage): string | null {
    if (message.type !== 'ConnectFromBrokerToBroker') {
      return `expected ConnectFromBrokerToBroker, got ${message.type}`;
    }
    const bad = checkPortalCount(message.numInitialPortals);
    if (bad !== null) return bad;
    if (message.buffer === null || message.buffer.kind !== 'memory') {
      return 'ConnectFromBrokerToBroker carries no link buffer';
    }
    const localName = this.node.requireName();
    const order = localName.compare(message.name);
    if (!message.name.isValid() || order === 0) {
      return `broker name ${message.name} is invalid or equals this broker's`;
    }
    const sideA = order > 0;
    const link = this.node.createLink({
      channel: this.channel,
      memory: sideA ? this.buffer : message.buffer,
      initialize: false,
      remoteName: message.name,
      remoteType: 'broker',
      remoteProtocolVersion: message.protocolVersion,
      side: sideA ? 'A' : 'B',
    });
    this.node.addLink(link, { otherBroker: true });
    this.complete(link, message.numInitialPortals);
    return null;
  }
}

/**
 * The referred side of a non-broker referral (`inheritBroker`): the
 * transport leads to the referrer's broker, which names this node and
 * links it to both the broker and the referrer. Initial portals bind to
 * the referrer.
 */
export class ReferredNonBrokerConnector extends NodeConnector {
  protected sendFirstMessage(): void {
    this.channel.send({
      type: 'ConnectToReferredBroker',
      protocolVersion: PROTOCOL_VERSION,
      numInitialPortals: this.routers.length,
      flags: this.flags,
    });
  }

  protected handle(message: NodeMessage): string | null {
    if (message.type !== 'ConnectToReferredNonBroker') {
      return `expected ConnectToReferredNonBroker, got ${message.type}`;
    }
    const bad = checkPortalCount(message.numInitialPortals);
    if (bad !== null) return bad;
    const { brokerLinkBuffer, referrerLinkTransport, referrerLinkBuffer } =
      message;
    if (
      brokerLinkBuffer?.kind !== 'memory' ||
      referrerLinkBuffer?.kind !== 'memory' ||
      referrerLinkTransport?.kind !== 'transport'
    ) {
      return 'ConnectToReferredNonBroker is missing a buffer or transport';
    }
    if (
      !message.name.isValid() ||
      !message.brokerName.isValid() ||
      !message.referrerName.isValid()
    ) {
      return 'ConnectToReferredNonBroker carries an invalid node name';
    }
    this.node.assignName(message.name);
    const brokerLink = this.node.createLink({
      channel: this.channel,
      memory: brokerLinkBuffer,
      initialize: false,
      remoteName: message.brokerName,
      remoteType: 'broker',
      remoteProtocolVersion: message.brokerProtocolVersion,
      side: 'B',
    });
    this.node.addLink(brokerLink, {
      asBroker: true,
      delegate: this.options.allocationDelegate === true,
    });

    const referrerChannel = new Channel(
      this.node.driver,
      referrerLinkTransport,
      false,
    );
    const referrerLink = this.node.createLink({
      channel: referrerChannel,
      memory: referrerLinkBuffer,
      initialize: false,
      remoteName: message.referrerName,
      remoteType: 'normal',
      remoteProtocolVersion: message.referrerProtocolVersion,
      side: 'B',
    });
    this.node.addLink(referrerLink, {});
    this.complete(referrerLink, message.numInitialPortals);
    referrerChannel.activate();
    return null;
  }
}

export function checkConnectOptions(
  options: ConnectOptions,
  isBroker: boolean,
): void {
  if (typeof options !== 'object' || options === null) {
    throw new IpczError('INVALID_ARGUMENT', 'connect options are required');
  }
  const { portals, toBroker, inheritBroker, shareBroker } = options;
  for (const flag of [
    'toBroker',
    'inheritBroker',
    'shareBroker',
    'allocationDelegate',
  ] as const) {
    const value = options[flag];
    if (value !== undefined && typeof value !== 'boolean') {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `options.${flag} must be a boolean, got ${String(value)}`,
      );
    }
  }
  if (!Number.isSafeInteger(portals) || portals < 1) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `options.portals must be a positive integer, got ${portals}`,
    );
  }
  if (portals > MAX_INITIAL_PORTALS) {
    throw new IpczError(
      'OUT_OF_RANGE',
      `options.portals is ${portals}; at most ${MAX_INITIAL_PORTALS} ` +
        'initial portals are supported',
    );
  }
  if (shareBroker && (isBroker || toBroker || inheritBroker)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'shareBroker excludes broker nodes, toBroker and inheritBroker',
    );
  }
  if (isBroker && inheritBroker) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'a broker node cannot connect with inheritBroker',
    );
  }
  if (toBroker && inheritBroker) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'toBroker and inheritBroker exclude each other',
    );
  }
  if (!isBroker && !toBroker && !shareBroker && !inheritBroker) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'a non-broker node must connect with toBroker, shareBroker or ' +
        'inheritBroker',
    );
  }
}
