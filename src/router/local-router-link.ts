import {
  ROUTER_LINK_STATE_SIZE,
  RouterLinkState,
} from '../link/router-link-state';
import type { NodeName } from '../wire/node-name';
import type { Parcel } from './parcel';
import type { Router } from './router';
import {
  oppositeSide,
  type LinkSide,
  type LinkType,
  type QueueState,
  type RouterLink,
} from './router-link';

/**
 * A link between two routers on the same node. Calls reach the peer
 * router synchronously. Its RouterLinkState lives in ordinary memory,
 * since only this node's thread touches it.
 */
export class LocalRouterLink implements RouterLink {
  private peerLink!: LocalRouterLink;
  private active = true;

  private constructor(
    readonly type: LinkType,
    readonly side: LinkSide,
    private readonly state: RouterLinkState,
    private readonly peer: Router,
  ) {}

  /**
   * Creates both ends of a link: the first is for `a` (side A) and points
   * at `b`, the second for `b` (side B) and points at `a`. With `stable`,
   * both sides start stable, as a fresh portal pair does.
   */
  static createPair(
    type: 'central' | 'bridge',
    a: Router,
    b: Router,
    stable = true,
  ): [LocalRouterLink, LocalRouterLink] {
    const bytes = new Uint8Array(new ArrayBuffer(ROUTER_LINK_STATE_SIZE));
    const state = RouterLinkState.initialize(bytes);
    if (stable) {
      state.setSideStable('A');
      state.setSideStable('B');
    }
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
    parcel.ownData();
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
    return this.state.updateQueueState(
      this.side,
      BigInt(state.parcels),
      BigInt(state.bytes),
    );
  }

  readPeerQueueState(): QueueState {
    const peer = this.state.readQueueState(oppositeSide(this.side));
    return {
      parcels: Number(peer.numParcelsConsumed),
      bytes: Number(peer.numBytesConsumed),
    };
  }

  setMonitoring(enabled: boolean): void {
    this.state.setMonitoring(oppositeSide(this.side), enabled);
  }

  snapshotPeer(): void {
    if (this.active) this.peer.onRemoteActivity();
  }

  markSideStable(): void {
    this.state.setSideStable(this.side);
  }

  tryLockForBypass(source: NodeName): boolean {
    return this.state.tryLockForBypass(this.side, source);
  }

  unlock(): void {
    this.state.unlock(this.side);
  }

  canNodeRequestBypass(source: NodeName): boolean {
    return this.state.canNodeRequestBypass(this.side, source);
  }

  flushOtherSideIfWaiting(): void {
    if (this.active && this.state.resetWaitingBit(oppositeSide(this.side))) {
      this.peer.flush(true);
    }
  }

  deactivate(): void {
    this.active = false;
  }

  describe(): string {
    return `local ${this.type} link (side ${this.side})`;
  }
}
