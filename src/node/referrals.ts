import type { SharedMemory, Transport } from '../drivers/driver';
import { Channel } from '../link/channel';
import type { NodeLink } from '../link/node-link';
import type { Router } from '../router/router';
import type { MessageOf } from '../wire/messages';
import type { Node } from './node';
import { PROTOCOL_VERSION } from './node-connector';

interface PendingReferral {
  transport: Transport;
  routers: Router[];
}

/**
 * Non-broker referrals: a non-broker connected to a broker brings in a
 * new node by handing its transport to the broker (`shareBroker`), and
 * the broker links the new node to both itself and the referrer.
 */
export class Referrals {
  private readonly waitingForBroker: PendingReferral[] = [];
  private readonly pending = new Map<bigint, PendingReferral>();
  private nextReferralId = 0n;

  constructor(private readonly node: Node) {}

  /** Refers a node now, or once this node has a broker link. */
  refer(transport: Transport, routers: Router[]): void {
    const broker = this.node.brokerLink;
    if (broker === null) {
      this.waitingForBroker.push({ transport, routers });
      return;
    }
    this.send(broker, { transport, routers });
  }

  onBrokerLink(broker: NodeLink): void {
    const waiting = this.waitingForBroker.splice(0);
    for (const referral of waiting) this.send(broker, referral);
    broker.end$.subscribe(() => {
      for (const referral of this.pending.values()) {
        this.node.failInitialPortals(referral.routers);
      }
      this.pending.clear();
    });
  }

  /** The referrer's side: the broker linked the referred node. */
  onAccepted(
    message: MessageOf<'NonBrokerReferralAccepted'>,
  ): string | null {
    const referral = this.pending.get(message.referralId);
    if (referral === undefined) {
      return `referral ${message.referralId} is not pending`;
    }
    this.pending.delete(message.referralId);
    const { transport, buffer } = message;
    if (transport?.kind !== 'transport' || buffer?.kind !== 'memory') {
      this.node.failInitialPortals(referral.routers);
      return null;
    }
    if (!message.name.isValid()) {
      return 'NonBrokerReferralAccepted carries an invalid node name';
    }
    const channel = new Channel(this.node.driver, transport, false);
    const link = this.node.createLink({
      channel,
      memory: buffer,
      initialize: false,
      remoteName: message.name,
      remoteType: 'normal',
      remoteProtocolVersion: message.protocolVersion,
      side: 'A',
    });
    this.node.addLink(link, {});
    this.node.bindInitialPortals(
      link,
      referral.routers,
      message.numInitialPortals,
    );
    channel.activate();
    return null;
  }

  onRejected(referralId: bigint): string | null {
    const referral = this.pending.get(referralId);
    if (referral === undefined) return `referral ${referralId} is not pending`;
    this.pending.delete(referralId);
    this.node.failInitialPortals(referral.routers);
    return null;
  }

  /** The broker's side: a node refers another over `transport`. */
  acceptReferral(
    referrer: NodeLink,
    message: MessageOf<'ReferNonBroker'>,
  ): string | null {
    if (!this.node.isBroker) return 'ReferNonBroker sent to a non-broker';
    if (message.transport?.kind !== 'transport') {
      return 'ReferNonBroker carries no transport';
    }
    new ReferredBrokerHandshake(
      this.node,
      referrer,
      message,
      message.transport,
    ).start();
    return null;
  }

  private send(broker: NodeLink, referral: PendingReferral): void {
    const referralId = this.nextReferralId++;
    this.pending.set(referralId, referral);
    broker.send({
      type: 'ReferNonBroker',
      referralId,
      numInitialPortals: referral.routers.length,
      transport: referral.transport,
    });
  }
}

/**
 * The broker's handshake with a referred node: waits for
 * ConnectToReferredBroker on the referred transport, then links the node
 * to this broker and to its referrer.
 */
class ReferredBrokerHandshake {
  private readonly channel: Channel;
  private done = false;

  constructor(
    private readonly node: Node,
    private readonly referrer: NodeLink,
    private readonly referral: MessageOf<'ReferNonBroker'>,
    transport: Transport,
  ) {
    this.channel = new Channel(node.driver, transport, true);
  }

  start(): void {
    const subscription = this.channel.messages$.subscribe((message) => {
      if (this.done) return;
      this.done = true;
      subscription.unsubscribe();
      if (message.type !== 'ConnectToReferredBroker') {
        const reason = `expected ConnectToReferredBroker, got ${message.type}`;
        this.channel.reject(reason);
        this.reject();
        return;
      }
      this.accept(message);
    });
    this.channel.end$.subscribe(() => {
      if (!this.done) {
        this.done = true;
        this.reject();
      }
    });
    this.node.trackHandshake(this.channel);
    this.channel.activate();
  }

  private accept(message: MessageOf<'ConnectToReferredBroker'>): void {
    const node = this.node;
    const name = node.generateName();
    let brokerBuffer: SharedMemory;
    let referrerBuffer: SharedMemory;
    try {
      brokerBuffer = node.allocatePrimaryBuffer();
      referrerBuffer = node.allocatePrimaryBuffer();
    } catch {
      this.channel.close('the broker could not allocate link memory');
      this.reject();
      return;
    }
    node.initializeLinkMemory(brokerBuffer);
    node.initializeLinkMemory(referrerBuffer);
    const [forReferred, forReferrer] = node.driver.createTransports();
    const link = node.createLink({
      channel: this.channel,
      memory: brokerBuffer,
      initialize: false,
      remoteName: name,
      remoteType: 'normal',
      remoteProtocolVersion: message.protocolVersion,
      side: 'A',
    });
    const delegates = (message.flags & 1) !== 0;
    node.addLink(link, { servesAllocation: delegates });

    // The referred node learns of the broker before the referrer learns
    // of it, so the referrer cannot reach it through the broker first.
    this.channel.send({
      type: 'ConnectToReferredNonBroker',
      name,
      brokerName: node.requireName(),
      referrerName: this.referrer.remoteName,
      brokerProtocolVersion: PROTOCOL_VERSION,
      referrerProtocolVersion: this.referrer.remoteProtocolVersion,
      numInitialPortals: this.referral.numInitialPortals,
      brokerLinkBuffer: node.driver.duplicateSharedMemory(brokerBuffer),
      referrerLinkTransport: forReferred,
      referrerLinkBuffer: node.driver.duplicateSharedMemory(referrerBuffer),
    });
    this.referrer.send({
      type: 'NonBrokerReferralAccepted',
      referralId: this.referral.referralId,
      protocolVersion: message.protocolVersion,
      numInitialPortals: message.numInitialPortals,
      name,
      transport: forReferrer,
      buffer: referrerBuffer,
    });
  }

  private reject(): void {
    this.referrer.send({
      type: 'NonBrokerReferralRejected',
      referralId: this.referral.referralId,
    });
  }
}
