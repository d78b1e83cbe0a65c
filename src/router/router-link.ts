import type { Parcel } from './parcel';
import type { Router } from './router';

/**
 * A link's role in its route. A central link joins the two halves of a
 * route; peripheral links extend it to proxies left behind by moved
 * portals; a bridge joins two routes after a merge.
 */
export type LinkType =
  | 'central'
  | 'peripheral-inward'
  | 'peripheral-outward'
  | 'bridge';

/** Which end of a link this is; the two ends have opposite sides. */
export type LinkSide = 'A' | 'B';

export function oppositeSide(side: LinkSide): LinkSide {
  return side === 'A' ? 'B' : 'A';
}

/** What one side of a route has consumed, as its peer sees it. */
export interface QueueState {
  parcels: number;
  bytes: number;
}

/**
 * One end of a connection from a router to another router, on this node
 * (LocalRouterLink) or across a node link (RemoteRouterLink). Each call
 * delivers to the router at the other end.
 */
export interface RouterLink {
  readonly type: LinkType;
  readonly side: LinkSide;

  /** The router at the other end when it lives on this node. */
  localPeer(): Router | null;

  acceptParcel(parcel: Parcel): void;
  acceptRouteClosure(sequenceLength: number): void;
  acceptRouteDisconnected(): void;

  /**
   * Stores what this side has consumed. Returns true when the other side
   * asked to be told (its monitor bit was set); the caller then calls
   * `snapshotPeer`.
   */
  updateQueueState(state: QueueState): boolean;
  /** What the other side has consumed, or null when unknown. */
  readPeerQueueState(): QueueState | null;
  /** Asks the other side to report each consumption from now on. */
  setMonitoring(enabled: boolean): void;
  /** Tells the other side to refresh its view of this side's queue. */
  snapshotPeer(): void;

  /** Releases the link; nothing is delivered through it afterwards. */
  deactivate(): void;
  describe(): string;
}
