import type { NodeName } from '../wire/node-name';
import type { Parcel } from './parcel';
import type { Router } from './router';

/**
 * A link's role in its route. A central link joins the two halves of a
 * route. Peripheral links extend it to proxies left behind by moved
 * portals. A bridge joins two routes after a merge.
 */
export type LinkType =
  | 'central'
  | 'peripheral-inward'
  | 'peripheral-outward'
  | 'bridge';

/** The end of a link; the two ends of one link have opposite sides. */
export type LinkSide = 'A' | 'B';

export function oppositeSide(side: LinkSide): LinkSide {
  return side === 'A' ? 'B' : 'A';
}

/** Parcels and bytes one side of a route has consumed. */
export interface QueueState {
  parcels: number;
  bytes: number;
}

/**
 * One end of a connection from a router to another router, on this node
 * (LocalRouterLink) or across a node link (RemoteRouterLink). Each call
 * delivers to the router at the other end.
 *
 * Central links also carry the state that coordinates route reduction:
 * each side marks itself stable when it has no decaying link, and a
 * proxy locks the link before it requests a bypass, so that the two
 * sides never both start a bypass.
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
   * set its monitor bit, in which case the caller calls `snapshotPeer`.
   */
  updateQueueState(state: QueueState): boolean;
  /** Returns what the other side has consumed, or null when unknown. */
  readPeerQueueState(): QueueState | null;
  /** Asks the other side to report each consumption from now on. */
  setMonitoring(enabled: boolean): void;
  /** Tells the other side to refresh its view of this side's queue. */
  snapshotPeer(): void;

  /** Marks this side stable; central links only. */
  markSideStable(): void;
  /**
   * Locks the link for a bypass requested by node `source`. Fails unless
   * both sides are stable and no side holds the lock; when only this side
   * is stable it leaves a waiting mark, so the other side flushes this
   * router once it is stable.
   */
  tryLockForBypass(source: NodeName): boolean;
  /** Releases a lock this side holds. */
  unlock(): void;
  /** Whether the other side locked the link for a bypass by `source`. */
  canNodeRequestBypass(source: NodeName): boolean;
  /** Flushes the other side if it waits for this side to be stable. */
  flushOtherSideIfWaiting(): void;

  /** Releases the link; nothing is delivered through it afterwards. */
  deactivate(): void;
  describe(): string;
}
