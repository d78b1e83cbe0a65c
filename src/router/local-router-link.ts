import type { Parcel } from './parcel';
import type { Router } from './router';
import type {
  LinkSide,
  LinkType,
  QueueState,
  RouterLink,
} from './router-link';

/** State both ends of a local link share, kept on the heap. */
class LocalLinkState {
  readonly consumed: Record<LinkSide, QueueState> = {
    A: { parcels: 0, bytes: 0 },
    B: { parcels: 0, bytes: 0 },
  };
  readonly monitoring: Record<LinkSide, boolean> = { A: false, B: false };
}

/**
 * A link between two routers on the same node. Calls reach the peer
 * router synchronously.
 */
export class LocalRouterLink implements RouterLink {
  private peerLink!: LocalRouterLink;
  private active = true;

  private constructor(
    readonly type: LinkType,
    readonly side: LinkSide,
    private readonly state: LocalLinkState,
    private readonly peer: Router,
  ) {}

  /**
   * Creates both ends of a link: the first is for `a` (side A) and points
   * at `b`, the second for `b` (side B) and points at `a`.
   */
  static createPair(
    type: 'central' | 'bridge',
    a: Router,
    b: Router,
  ): [LocalRouterLink, LocalRouterLink] {
    const state = new LocalLinkState();
    const forA = new LocalRouterLink(type, 'A', state, b);
    const forB = new LocalRouterLink(type, 'B', state, a);
    forA.peerLink = forB;
    forB.peerLink = forA;
    return [forA, forB];
  }

  localPeer(): Router {
    return this.peer;
  }

  acceptParcel(parcel: Parcel): void {
    if (!this.active) {
      parcel.closeObjects();
      return;
    }
    this.peer.acceptParcelFrom(this.peerLink, parcel);
  }

  acceptRouteClosure(sequenceLength: number): void {
    if (this.active) {
      this.peer.acceptRouteClosureFrom(this.peerLink, sequenceLength);
    }
  }

  acceptRouteDisconnected(): void {
    if (this.active) this.peer.acceptRouteDisconnectedFrom(this.peerLink);
  }

  updateQueueState(state: QueueState): boolean {
    this.state.consumed[this.side] = { ...state };
    return this.state.monitoring[this.otherSide];
  }

  readPeerQueueState(): QueueState {
    return this.state.consumed[this.otherSide];
  }

  setMonitoring(enabled: boolean): void {
    this.state.monitoring[this.side] = enabled;
  }

  snapshotPeer(): void {
    if (this.active) this.peer.onRemoteActivity();
  }

  deactivate(): void {
    this.active = false;
  }

  describe(): string {
    return `local ${this.type} link (side ${this.side})`;
  }

  private get otherSide(): LinkSide {
    return this.side === 'A' ? 'B' : 'A';
  }
}
