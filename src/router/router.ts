import { Subject } from 'rxjs';
import { IpczError } from '../errors';
import { Parcel } from './parcel';
import type { QueueState, RouterLink } from './router-link';
import { SequencedQueue } from './sequenced-queue';

/** A portal's view of its route; see `portal.status()`. */
export interface PortalStatus {
  peerClosed: boolean;
  dead: boolean;
  localParcels: number;
  localBytes: number;
  remoteParcels: number;
  remoteBytes: number;
}

/** Why a router's status changed, as ipcz's trap reasons. */
export type StatusReason =
  | 'new-local-parcel'
  | 'local-consumed'
  | 'peer-closed'
  | 'remote-activity';

export interface StatusChange {
  reason: StatusReason;
  status: PortalStatus;
}

/** The routers of one node, so the node can count them and proxies. */
export interface RouterRegistry {
  add(router: Router): void;
  remove(router: Router): void;
}

/**
 * Reasons a router refuses a message from a peer. The caller drops the
 * node link the message came over.
 */
export type RouterRejection = string | null;

function isOutwardType(link: RouterLink): boolean {
  return link.type === 'central' || link.type === 'peripheral-outward';
}

/**
 * One end of a route as seen from one node: the router behind a portal
 * (terminal) or a proxy left behind when its portal moved to another node.
 *
 * A terminal router has an outward link (toward the other portal) and
 * queues inbound parcels for its portal. A proxy also has an inward link
 * to the router that took its portal's place; it forwards inbound parcels
 * inward and outbound parcels outward, keeping their sequence numbers.
 *
 * Invariant: link and queue updates finish before any link is called or
 * any status subscriber runs, because under the sync driver a call into a
 * link can come back into this router on the same stack. `flush` is the
 * one place that moves parcels and closure along.
 */
export class Router {
  outward: RouterLink | null = null;
  inward: RouterLink | null = null;
  bridge: RouterLink | null = null;

  inbound = new SequencedQueue<Parcel>();
  outbound = new SequencedQueue<Parcel>();

  /** The portal was closed (terminal) or the router was sent away. */
  private closed = false;
  private movedAway = false;
  /** A moved router got its inward link, so it may finish as a proxy. */
  private proxied = false;
  private disconnected = false;
  private closureSentOutward = false;
  private closureSentInward = false;

  private parcelsSent = 0;
  private bytesSent = 0;
  private parcelsConsumed = 0;
  private bytesConsumed = 0;
  private bytesProduced = 0;
  private peerQueueState: QueueState | null = null;

  private flushing = false;
  private flushRequested = false;
  private readonly changes = new Subject<StatusChange>();
  private registered = true;

  constructor(private readonly registry: RouterRegistry | null) {
    registry?.add(this);
  }

  /** Status changes of a terminal router; completes when it closes. */
  get statusChanges() {
    return this.changes.asObservable();
  }

  get isTerminal(): boolean {
    return this.inward === null && !this.movedAway;
  }

  get isProxy(): boolean {
    return this.movedAway && this.registered;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get isPeerClosed(): boolean {
    return this.inbound.finalSequenceLength !== null;
  }

  get isDead(): boolean {
    return this.isPeerClosed && this.inbound.isFullyConsumed();
  }

  get isDisconnected(): boolean {
    return this.disconnected;
  }

  /** Parcels this router put or forwarded outward so far. */
  get outboundSequenceLength(): number {
    return this.outbound.currentSequenceLength;
  }

  get totalBytesProduced(): number {
    return this.bytesProduced;
  }

  get totalBytesConsumed(): number {
    return this.bytesConsumed;
  }

  // --- Terminal operations, called by the portal. ---

  /**
   * Sends a parcel toward the other portal. Throws `NOT_FOUND` when the
   * peer has closed.
   */
  put(parcel: Parcel): void {
    if (this.isPeerClosed) {
      throw new IpczError('NOT_FOUND', 'the portal\'s peer is closed');
    }
    parcel.sequenceNumber = this.outbound.currentSequenceLength;
    this.bytesProduced += parcel.byteLength;
    const link = this.outward;
    if (link !== null && this.outbound.size === 0 && this.outbound.skip()) {
      this.countSent(parcel);
      link.acceptParcel(parcel);
      return;
    }
    this.outbound.push(parcel.sequenceNumber, parcel);
    this.flush();
  }

  /** Returns the next inbound parcel without taking it. */
  peekInbound(): Parcel | undefined {
    return this.inbound.peek();
  }

  /** Takes the next inbound parcel, if one is ready. */
  takeInbound(): Parcel | undefined {
    const parcel = this.inbound.pop();
    if (parcel === undefined) return undefined;
    this.noteConsumed(1, parcel.byteLength);
    this.afterConsumption();
    return parcel;
  }

  /**
   * Takes `bytes` from the front parcel, leaving the rest of its data
   * (and none of its objects) at the front: ipcz's partial get.
   */
  consumePartial(bytes: number): void {
    const parcel = this.inbound.peek();
    if (parcel === undefined) return;
    parcel.data = parcel.data.subarray(bytes);
    parcel.objects = [];
    this.inbound.adjustFrontBytes(-bytes);
    this.noteConsumed(0, bytes);
    this.afterConsumption();
  }

  /** Closes the route from this end; the peer sees closure after every
   * parcel put so far. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.outbound.setFinalSequenceLength(this.outbound.currentSequenceLength);
    for (const parcel of this.inbound.drain()) parcel.closeObjects();
    this.changes.complete();
    this.flush();
  }

  status(): PortalStatus {
    this.refreshPeerQueueState();
    const peer = this.peerQueueState;
    const remoteParcels = peer ? Math.max(0, this.parcelsSent - peer.parcels) : 0;
    const remoteBytes = peer ? Math.max(0, this.bytesSent - peer.bytes) : 0;
    return {
      peerClosed: this.isPeerClosed,
      dead: this.isDead,
      localParcels: this.inbound.availableCount,
      localBytes: this.inbound.availableByteCount,
      remoteParcels: this.isPeerClosed ? 0 : remoteParcels,
      remoteBytes: this.isPeerClosed ? 0 : remoteBytes,
    };
  }

  /** Parcels put but not yet handed to the outward link. */
  get unsentParcels(): number {
    return this.outbound.size;
  }

  get unsentBytes(): number {
    return this.outbound.queuedByteCount;
  }

  /** Asks the peer to report consumption while traps watch it. */
  setRemoteMonitoring(enabled: boolean): void {
    this.outward?.setMonitoring(enabled);
  }

  // --- Called by links. ---

  /**
   * Accepts a parcel from `link`: inbound when it came over the outward
   * link, outbound when it came from the inward link or a bridge. Returns
   * a reason when the sequence number is invalid.
   */
  acceptParcelFrom(link: RouterLink, parcel: Parcel): RouterRejection {
    // The link's type decides the direction, not whether this router has
    // adopted the link yet: a proxy accepts parcels on its new inward
    // sublink as soon as the descriptor naming it has been sent.
    if (isOutwardType(link)) return this.acceptInbound(parcel);
    if (this.closureSentOutward || this.inbound.isComplete()) {
      // The far end closed or will read nothing more: drop the parcel.
      parcel.closeObjects();
      return null;
    }
    if (!this.outbound.push(parcel.sequenceNumber, parcel)) {
      parcel.closeObjects();
      return `outbound parcel ${parcel.sequenceNumber} is out of sequence`;
    }
    this.flush();
    return null;
  }

  acceptRouteClosureFrom(
    link: RouterLink,
    sequenceLength: number,
  ): RouterRejection {
    if (isOutwardType(link)) {
      if (!this.inbound.setFinalSequenceLength(sequenceLength)) {
        return `invalid final sequence length ${sequenceLength}`;
      }
      this.flush();
      if (this.isTerminal && !this.closed) this.emit('peer-closed');
      return null;
    }
    if (!this.outbound.setFinalSequenceLength(sequenceLength)) {
      return `invalid final sequence length ${sequenceLength}`;
    }
    this.flush();
    return null;
  }

  /**
   * Handles an abrupt loss of `link`: ends each sequence where it stands,
   * tells every other link, and drops them all.
   */
  acceptRouteDisconnectedFrom(link: RouterLink | null): void {
    if (this.disconnected) return;
    this.disconnected = true;
    const fromInward = link !== null && !isOutwardType(link);
    const queue = fromInward ? this.outbound : this.inbound;
    for (const parcel of queue.forceTerminate()) parcel.closeObjects();
    if (!fromInward && this.outbound.finalSequenceLength === null) {
      this.outbound.forceTerminate();
    }

    const others = [this.outward, this.inward, this.bridge];
    this.outward = this.inward = this.bridge = null;
    for (const other of others) {
      if (other === null) continue;
      if (other !== link) other.acceptRouteDisconnected();
      other.deactivate();
    }
    link?.deactivate();

    if (this.isTerminal && !this.closed) this.emit('peer-closed');
    this.flush();
  }

  /**
   * Ends the route with nothing from the peer: used for a surplus initial
   * portal whose connection has no portal to pair with.
   */
  markPeerClosed(): void {
    if (!this.inbound.setFinalSequenceLength(this.inbound.currentSequenceLength)) {
      return;
    }
    for (const parcel of this.outbound.drain()) parcel.closeObjects();
    if (this.isTerminal && !this.closed) this.emit('peer-closed');
    this.flush();
  }

  /** The peer consumed parcels; refresh remote counts and tell traps. */
  onRemoteActivity(): void {
    if (this.isTerminal && !this.closed) this.emit('remote-activity');
  }

  // --- Moving and linking. ---

  /** Sets the outward link once the route has one, and flushes. */
  setOutwardLink(link: RouterLink): void {
    if (this.disconnected) {
      link.acceptRouteDisconnected();
      link.deactivate();
      return;
    }
    this.outward = link;
    this.flush();
  }

  /** Makes this router a proxy: its portal now lives behind `link`. */
  beginProxying(link: RouterLink): void {
    this.proxied = true;
    this.inward = link;
    if (this.disconnected) {
      this.inward = null;
      link.acceptRouteDisconnected();
      link.deactivate();
    }
    this.flush();
  }

  /** Marks this router as sent in a parcel; it stops being terminal. */
  markMovedAway(): void {
    this.movedAway = true;
    this.changes.complete();
  }

  /**
   * Restarts the queues at the positions a moved router had, so that the
   * sequence continues across the move.
   */
  resetQueues(nextIncoming: number, nextOutgoing: number): void {
    this.inbound = new SequencedQueue<Parcel>(nextIncoming);
    this.outbound = new SequencedQueue<Parcel>(nextOutgoing);
  }

  restoreByteCounts(produced: number, consumed: number): void {
    this.bytesProduced = produced;
    this.bytesConsumed = consumed;
  }

  // --- Internals. ---

  private acceptInbound(parcel: Parcel): RouterRejection {
    if (this.closed && this.isTerminal) {
      // Nobody will read it, but its sequence slot still counts.
      if (!this.inbound.canPush(parcel.sequenceNumber)) {
        parcel.closeObjects();
        return `inbound parcel ${parcel.sequenceNumber} is out of sequence`;
      }
      parcel.closeObjects();
      return null;
    }
    if (!this.inbound.push(parcel.sequenceNumber, parcel)) {
      parcel.closeObjects();
      return `inbound parcel ${parcel.sequenceNumber} is out of sequence`;
    }
    if (this.isTerminal) {
      this.emit('new-local-parcel');
      return null;
    }
    this.flush();
    return null;
  }

  private countSent(parcel: Parcel): void {
    this.parcelsSent++;
    this.bytesSent += parcel.byteLength;
  }

  private noteConsumed(parcels: number, bytes: number): void {
    this.parcelsConsumed += parcels;
    this.bytesConsumed += bytes;
  }

  private afterConsumption(): void {
    this.publishQueueState();
    this.emit('local-consumed');
    if (this.isDead) this.flush();
  }

  private publishQueueState(): void {
    const link = this.outward;
    if (link === null || link.type !== 'central') return;
    const state = { parcels: this.parcelsConsumed, bytes: this.bytesConsumed };
    if (link.updateQueueState(state)) link.snapshotPeer();
  }

  private refreshPeerQueueState(): void {
    const link = this.outward;
    if (link !== null && link.type === 'central') {
      this.peerQueueState = link.readPeerQueueState();
    }
  }

  private emit(reason: StatusReason): void {
    if (this.changes.closed || !this.changes.observed) return;
    this.changes.next({ reason, status: this.status() });
  }

  /**
   * Moves parcels and closure along every link. Safe to call re-entrantly:
   * a nested call only asks the running one to loop again.
   */
  flush(): void {
    if (this.flushing) {
      this.flushRequested = true;
      return;
    }
    this.flushing = true;
    try {
      do {
        this.flushRequested = false;
        this.flushOnce();
      } while (this.flushRequested);
    } finally {
      this.flushing = false;
    }
  }

  private flushOnce(): void {
    this.forwardOutbound();
    this.forwardInbound();
    this.propagateClosureOutward();
    this.propagateClosureInward();
    this.unregisterIfDone();
  }

  private forwardOutbound(): void {
    const link = this.outward;
    if (link === null) return;
    for (let parcel = this.outbound.pop(); parcel; parcel = this.outbound.pop()) {
      this.countSent(parcel);
      link.acceptParcel(parcel);
    }
  }

  private forwardInbound(): void {
    const link = this.inward ?? this.bridge;
    if (link === null) return;
    for (let parcel = this.inbound.pop(); parcel; parcel = this.inbound.pop()) {
      this.noteConsumed(1, parcel.byteLength);
      link.acceptParcel(parcel);
    }
    this.publishQueueState();
  }

  private propagateClosureOutward(): void {
    const link = this.outward;
    if (link === null) return;
    const final = this.outbound.finalSequenceLength;
    if (
      !this.closureSentOutward &&
      final !== null &&
      this.outbound.isFullyConsumed()
    ) {
      this.closureSentOutward = true;
      link.acceptRouteClosure(final);
    }

    // The outward link has no use left once nothing more goes out, or once
    // nothing more can come in (a router whose peer closed puts nothing).
    if (this.closureSentOutward || this.inbound.isComplete()) {
      this.outward = null;
      link.deactivate();
      for (const parcel of this.outbound.drain()) parcel.closeObjects();
    }
  }

  private propagateClosureInward(): void {
    const link = this.inward ?? this.bridge;
    if (link === null) return;
    const final = this.inbound.finalSequenceLength;
    if (
      !this.closureSentInward &&
      final !== null &&
      this.inbound.isFullyConsumed()
    ) {
      this.closureSentInward = true;
      link.acceptRouteClosure(final);
    }
    if (this.closureSentInward || this.closureSentOutward) {
      this.inward = null;
      this.bridge = null;
      link.deactivate();
    }
  }

  private unregisterIfDone(): void {
    if (!this.registered) return;
    const hasLinks =
      this.outward !== null || this.inward !== null || this.bridge !== null;
    if (hasLinks) return;
    const finished =
      this.closed || this.disconnected || (this.movedAway && this.proxied);
    if (!finished) return;
    this.registered = false;
    this.registry?.remove(this);
  }
}
