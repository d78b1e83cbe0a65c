import { Subject } from 'rxjs';
import { IpczError } from '../errors';
import type { NodeName } from '../wire/node-name';
import { LocalRouterLink } from './local-router-link';
import { Parcel } from './parcel';
import { RouteEdge } from './route-edge';
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

/** The cause of a status change, after ipcz's trap reasons. */
export type StatusReason =
  | 'new-local-parcel'
  | 'local-consumed'
  | 'peer-closed'
  | 'remote-activity';

export interface StatusChange {
  reason: StatusReason;
  status: PortalStatus;
}

/** Returns a reason when a peer has queued too much behind a gap. */
function checkWaiting(queue: SequencedQueue<Parcel>): RouterRejection {
  if (
    queue.waitingCount <= MAX_WAITING_PARCELS &&
    queue.waitingByteCount <= MAX_WAITING_BYTES
  ) {
    return null;
  }
  return (
    `${queue.waitingCount} parcels (${queue.waitingByteCount} bytes) wait ` +
    `behind sequence number ${queue.currentSequenceLength}, over the ` +
    `limit of ${MAX_WAITING_PARCELS} parcels or ${MAX_WAITING_BYTES} bytes`
  );
}

/**
 * A status change whose status is computed when first read: most
 * subscribers (parcels$) only need the reason, and computing the status
 * reads shared memory.
 */
class LazyStatusChange implements StatusChange {
  private computed: PortalStatus | null = null;

  constructor(
    readonly reason: StatusReason,
    private readonly router: Router,
  ) {}

  get status(): PortalStatus {
    this.computed ??= this.router.status();
    return this.computed;
  }
}

/**
 * The services a router needs from its node: registration, so the node
 * can count routers and proxies, and the start of route reduction, which
 * reaches into node links the router layer does not own.
 */
export interface RouterRegistry {
  add(router: Router): void;
  remove(router: Router): void;
  /** This node's name, once it has one. */
  readonly name: NodeName | null;
  /** Starts a bypass of `router` if it is a proxy that can be bypassed. */
  tryStartSelfBypass?(router: Router): void;
}

/**
 * Reasons a router refuses a message from a peer. The caller drops the
 * node link the message came over.
 */
export type RouterRejection = string | null;

/**
 * Maximum parcels and bytes a peer may queue at a router behind a
 * sequence gap. Honest peers leave gaps only while a route switches
 * links, for as many parcels as were in flight. Without a limit, a peer
 * that never fills a gap would make this node keep its parcels forever.
 */
export const MAX_WAITING_PARCELS = 100_000;
export const MAX_WAITING_BYTES = 256 * 1024 * 1024;

function isOutwardType(link: RouterLink): boolean {
  return link.type === 'central' || link.type === 'peripheral-outward';
}

/**
 * One end of a route as seen from one node: the router behind a portal
 * (terminal) or a proxy left behind when its portal moved to another node.
 *
 * A terminal router has an outward edge (toward the other portal) and
 * queues inbound parcels for its portal. A proxy also has an inward edge
 * toward the router that took its portal's place. It forwards inbound
 * parcels inward and outbound parcels outward, keeping their sequence
 * numbers. Route reduction replaces links: the old one decays while
 * parcels below a known sequence length still use it.
 *
 * Invariant: link and queue updates finish before any link is called or
 * any status subscriber runs, because under the sync driver a call into a
 * link can come back into this router on the same stack. `flush` is the
 * one place that moves parcels and closure along.
 */
export class Router {
  readonly outwardEdge = new RouteEdge();
  readonly inwardEdge = new RouteEdge();
  bridge: RouterLink | null = null;

  inbound = new SequencedQueue<Parcel>();
  outbound = new SequencedQueue<Parcel>();

  private closed = false;
  private movedAway = false;
  /** Joined to another route's router by a bridge (MergePortals). */
  private merged = false;
  /** The bridge pair asked to be bypassed; it ends once both edges went. */
  bridgeBypassStarted = false;
  /** A moved router got its inward link, so it may finish as a proxy. */
  private proxied = false;
  private disconnected = false;
  private closureSentOutward = false;
  private closureSentInward = false;
  /** Set from this router's bypass request until StopProxying arrives. */
  bypassInProgress = false;

  private bytesConsumed = 0;
  private bytesProduced = 0;
  private peerQueueState: QueueState | null = null;

  private flushing = false;
  private flushRequested = false;
  private bypassRequested = false;
  private readonly changes = new Subject<StatusChange>();
  private registered = true;

  constructor(readonly registry: RouterRegistry | null) {
    registry?.add(this);
  }

  /** The primary outward link, if any. */
  get outward(): RouterLink | null {
    return this.outwardEdge.primary;
  }

  /** The primary inward link of a proxy, if any. */
  get inward(): RouterLink | null {
    return this.inwardEdge.primary;
  }

  /** Status changes of a terminal router; completes when it closes. */
  get statusChanges() {
    return this.changes.asObservable();
  }

  get isTerminal(): boolean {
    return this.inwardEdge.isEmpty && !this.movedAway && !this.merged;
  }

  /** Whether this router only forwards: it moved away or was merged. */
  get isProxy(): boolean {
    return (this.movedAway || this.merged) && this.registered;
  }

  /** The router at the other end of this router's bridge, if merged. */
  get bridgePeer(): Router | null {
    return this.bridge?.localPeer() ?? null;
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
    const link = this.outwardEdge.linkFor(parcel.sequenceNumber);
    if (
      link !== null &&
      !this.flushing &&
      this.outbound.size === 0 &&
      this.outbound.skip()
    ) {
      link.acceptParcel(parcel);
      return;
    }
    parcel.ownData();
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
    this.bytesConsumed += parcel.byteLength;
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
    this.bytesConsumed += bytes;
    this.afterConsumption();
  }

  /**
   * Closes the route from this end. The peer gets closure after every
   * parcel put so far.
   */
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
    // Remote counts are what the peer has not consumed: parcels sent
    // minus what the peer reported, plus parcels still queued here (put
    // before the route had a link), which the peer has yet to receive.
    const sentParcels = this.outbound.currentSequenceNumber;
    const unsentBytes = this.outbound.queuedByteCount;
    const sentBytes = this.bytesProduced - unsentBytes;
    const closed = this.isPeerClosed;
    const inFlightParcels = peer ? Math.max(0, sentParcels - peer.parcels) : 0;
    const inFlightBytes = peer ? Math.max(0, sentBytes - peer.bytes) : 0;
    return {
      peerClosed: closed,
      dead: this.isDead,
      localParcels: this.inbound.availableCount,
      localBytes: this.inbound.availableByteCount,
      remoteParcels: closed ? 0 : inFlightParcels + this.outbound.size,
      remoteBytes: closed ? 0 : inFlightBytes + unsentBytes,
    };
  }

  /** Parcels put but not yet handed to the outward link. */
  get unsentParcels(): number {
    return this.outbound.size;
  }

  get unsentBytes(): number {
    return this.outbound.queuedByteCount;
  }

  private monitoring = false;

  /** Asks the peer to report consumption while traps watch it. */
  setRemoteMonitoring(enabled: boolean): void {
    this.monitoring = enabled;
    this.outward?.setMonitoring(enabled);
  }

  // --- Called by links. ---

  /**
   * Accepts a parcel from `link`: inbound when it came over an outward
   * link, outbound when it came from an inward link or a bridge. Returns
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
    const overflow = checkWaiting(this.outbound);
    if (overflow !== null) return overflow;
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
   * Handles an abrupt loss of `link`: ends each sequence at what has
   * arrived, sends RouteDisconnected over every other link, and drops them.
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

    const others = [
      ...this.outwardEdge.release(),
      ...this.inwardEdge.release(),
      ...(this.bridge === null ? [] : [this.bridge]),
    ];
    this.bridge = null;
    for (const other of others) {
      if (other !== link) other.acceptRouteDisconnected();
      other.deactivate();
    }
    link?.deactivate();

    // With every link gone nothing queued can leave. Closing what the
    // parcels carry lets the peers of portals inside them see closure.
    for (const parcel of this.outbound.drain()) parcel.closeObjects();
    if (!this.isTerminal) {
      for (const parcel of this.inbound.drain()) parcel.closeObjects();
    }

    if (this.isTerminal && !this.closed) this.emit('peer-closed');
    this.flush();
  }

  /**
   * Ends the route with nothing from the peer: used for a surplus initial
   * portal whose connection has no portal to pair with.
   */
  markPeerClosed(): void {
    const length = this.inbound.currentSequenceLength;
    if (!this.inbound.setFinalSequenceLength(length)) return;
    for (const parcel of this.outbound.drain()) parcel.closeObjects();
    if (this.isTerminal && !this.closed) this.emit('peer-closed');
    this.flush();
  }

  /** Refreshes remote counts for traps after the peer consumed parcels. */
  onRemoteActivity(): void {
    // The peer clears the monitor bit when it reports, so set it again
    // while traps still watch.
    if (this.monitoring) this.outward?.setMonitoring(true);
    if (this.isTerminal && !this.closed) this.emit('remote-activity');
  }

  // --- Moving and linking. ---

  /** Sets the primary outward link and flushes. */
  setOutwardLink(link: RouterLink): void {
    if (this.disconnected) {
      link.acceptRouteDisconnected();
      link.deactivate();
      return;
    }
    this.outwardEdge.primary = link;
    if (this.monitoring) link.setMonitoring(true);
    this.flush(true);
  }

  /**
   * Makes `link` the primary outward link without flushing, for a bypass
   * that must send the message introducing the link before any parcel.
   */
  adoptOutwardLink(link: RouterLink): void {
    this.outwardEdge.primary = link;
    if (this.monitoring) link.setMonitoring(true);
  }

  /** Makes this router a proxy: its portal now lives behind `link`. */
  beginProxying(link: RouterLink): void {
    this.proxied = true;
    if (this.disconnected) {
      link.acceptRouteDisconnected();
      link.deactivate();
      this.flush();
      return;
    }
    this.inwardEdge.primary = link;
    this.flush(true);
  }

  /**
   * Joins this route and `other`'s into one, as ipcz's MergePortals: a
   * bridge link carries each router's inbound parcels out through the
   * other. Both stop being terminal. The caller checked that neither has
   * sent or taken a parcel, so both sequences start at zero and continue
   * unchanged across the bridge.
   */
  mergeWith(other: Router): void {
    const [forThis, forOther] = LocalRouterLink.createPair(
      'bridge',
      this,
      other,
      false,
    );
    for (const [router, link] of [
      [this, forThis],
      [other, forOther],
    ] as const) {
      router.merged = true;
      router.bridge = link;
      router.changes.complete();
    }
    this.flush(true);
    other.flush(true);
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
      // The portal is closed, so only the sequence number is checked.
      const valid = this.inbound.canPush(parcel.sequenceNumber);
      parcel.closeObjects();
      return valid
        ? null
        : `inbound parcel ${parcel.sequenceNumber} is out of sequence`;
    }
    if (!this.inbound.push(parcel.sequenceNumber, parcel)) {
      parcel.closeObjects();
      return `inbound parcel ${parcel.sequenceNumber} is out of sequence`;
    }
    const overflow = checkWaiting(this.inbound);
    if (overflow !== null) return overflow;
    if (this.isTerminal) {
      // Decaying links finish on counts of received parcels.
      if (!this.outwardEdge.isStable) this.flush();
      this.emit('new-local-parcel');
      return null;
    }
    this.flush();
    return null;
  }

  private afterConsumption(): void {
    this.publishQueueState();
    this.emit('local-consumed');
    if (this.isDead) this.flush();
  }

  private publishQueueState(): void {
    const link = this.outward;
    if (link === null || link.type !== 'central') return;
    const state = {
      parcels: this.inbound.currentSequenceNumber,
      bytes: this.bytesConsumed,
    };
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
    this.changes.next(new LazyStatusChange(reason, this));
  }

  /**
   * Moves parcels and closure along every link, finishes decaying links
   * and, for a proxy, tries route reduction. Safe to call re-entrantly: a
   * nested call only makes the running one loop again. `tryBypass`
   * forces a bypass attempt even if no link decayed in this flush.
   */
  flush(tryBypass = false): void {
    if (tryBypass) this.bypassRequested = true;
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
    this.maybeReduce();
  }

  private flushOnce(): void {
    this.forwardOutbound();
    this.forwardInbound();
    const decayed = this.finishDecay();
    this.propagateClosureOutward();
    this.propagateClosureInward();
    if (decayed) this.bypassRequested = true;
    this.dropBypassedBridge();
    this.unregisterIfDone();
  }

  /** Once both halves of a bypassed bridge lost their links, drop it. */
  private dropBypassedBridge(): void {
    const bridge = this.bridge;
    const peer = this.bridgePeer;
    if (bridge === null || peer === null || !this.bridgeBypassStarted) return;
    if (!this.outwardEdge.isEmpty || !peer.outwardEdge.isEmpty) return;
    this.bridge = null;
    bridge.deactivate();
    peer.flush();
  }

  private forwardOutbound(): void {
    for (;;) {
      const parcel = this.outbound.peek();
      if (parcel === undefined) return;
      const link = this.outwardEdge.linkFor(parcel.sequenceNumber);
      if (link === null) return;
      this.outbound.pop();
      link.acceptParcel(parcel);
    }
  }

  private forwardInbound(): void {
    if (this.bridge === null && this.inwardEdge.isEmpty) return;
    let forwarded = false;
    for (;;) {
      const parcel = this.inbound.peek();
      if (parcel === undefined) break;
      const link =
        this.bridge ?? this.inwardEdge.linkFor(parcel.sequenceNumber);
      if (link === null) break;
      this.inbound.pop();
      this.bytesConsumed += parcel.byteLength;
      forwarded = true;
      link.acceptParcel(parcel);
    }
    if (forwarded) this.publishQueueState();
  }

  /** Drops decaying links whose traffic is complete; true if any went. */
  private finishDecay(): boolean {
    const outward = this.outwardEdge.tryFinishDecay(
      this.outbound.currentSequenceNumber,
      this.inbound.currentSequenceLength,
    );
    const inward = this.inwardEdge.tryFinishDecay(
      this.inbound.currentSequenceNumber,
      this.outbound.currentSequenceLength,
    );
    outward?.deactivate();
    inward?.deactivate();
    return outward !== null || inward !== null;
  }

  private propagateClosureOutward(): void {
    const link = this.outwardEdge.anyLink;
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

    // The outward links have no use left once nothing more goes out, or
    // once nothing more can come in (a router whose peer closed puts
    // nothing). A decaying link whose limits are still unknown may yet
    // carry parcels, so a bypass in progress keeps them.
    if (this.closureSentOutward || this.inbound.isComplete()) {
      for (const dropped of this.outwardEdge.release()) dropped.deactivate();
      for (const parcel of this.outbound.drain()) parcel.closeObjects();
    }
  }

  private propagateClosureInward(): void {
    const link = this.bridge ?? this.inwardEdge.anyLink;
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
      for (const dropped of this.inwardEdge.release()) dropped.deactivate();
      this.bridge?.deactivate();
      this.bridge = null;
    }
  }

  /**
   * After a flush: marks this side of a stable central link stable, lets
   * a waiting peer retry its lock, and starts a bypass of this proxy.
   */
  private maybeReduce(): void {
    if (this.deferred.length > 0 && this.outwardEdge.isStable) {
      const deferred = this.deferred.splice(0);
      for (const action of deferred) action();
    }
    if (!this.bypassRequested) return;
    this.bypassRequested = false;
    if (this.disconnected || !this.registered) return;
    if (!this.outwardEdge.isStable || !this.inwardEdge.isStable) return;
    const outward = this.outward;
    if (outward === null || outward.type !== 'central') return;
    outward.markSideStable();
    if (this.isTerminal) {
      outward.flushOtherSideIfWaiting();
      return;
    }
    if (
      (this.inward !== null || this.bridge !== null) &&
      !this.bypassInProgress
    ) {
      this.registry?.tryStartSelfBypass?.(this);
    }
  }

  private readonly deferred: (() => unknown)[] = [];

  /**
   * Runs `action` once the outward edge has no decaying link: a bypass
   * request that arrives while an earlier one is finishing waits for it.
   */
  deferUntilStable(action: () => unknown): void {
    this.deferred.push(action);
  }

  private unregisterIfDone(): void {
    if (!this.registered) return;
    const hasLinks =
      !this.outwardEdge.isEmpty ||
      !this.inwardEdge.isEmpty ||
      this.bridge !== null;
    if (hasLinks) return;
    const finished =
      this.closed ||
      this.disconnected ||
      this.merged ||
      (this.movedAway && this.proxied);
    if (!finished) return;
    this.registered = false;
    this.registry?.remove(this);
  }
}
