import type { RouterLink } from './router-link';

/**
 * One side of a router (toward the other portal, or toward the router
 * that took its portal's place): a primary link and, while route
 * reduction replaces a link, the decaying link it replaces.
 *
 * Parcels numbered below `lengthToDecaying` leave through the decaying
 * link; later ones through the primary. Parcels numbered below
 * `lengthFromDecaying` arrive through the decaying link. An unknown
 * length keeps the decaying link in use. Once both lengths are known and
 * met, the decaying link is dropped.
 */
export class RouteEdge {
  primary: RouterLink | null = null;
  decaying: RouterLink | null = null;
  lengthToDecaying: number | null = null;
  lengthFromDecaying: number | null = null;

  /** Stable: no link is decaying. */
  get isStable(): boolean {
    return this.decaying === null;
  }

  /** The link that carries the parcel numbered `sequenceNumber` out. */
  linkFor(sequenceNumber: number): RouterLink | null {
    const decaying = this.decaying;
    if (
      decaying !== null &&
      (this.lengthToDecaying === null ||
        sequenceNumber < this.lengthToDecaying)
    ) {
      return decaying;
    }
    return this.primary;
  }

  /** Any link of the edge, primary first. */
  get anyLink(): RouterLink | null {
    return this.primary ?? this.decaying;
  }

  /**
   * Turns the primary link into the decaying link. Returns false when a
   * link is already decaying or there is no primary.
   */
  startDecay(lengthTo: number | null = null, lengthFrom: number | null = null) {
    if (this.decaying !== null || this.primary === null) return false;
    this.decaying = this.primary;
    this.primary = null;
    this.lengthToDecaying = lengthTo;
    this.lengthFromDecaying = lengthFrom;
    return true;
  }

  /**
   * Drops the decaying link once both lengths are known, `sent` parcels
   * left through it and `received` arrived. Returns the dropped link.
   */
  tryFinishDecay(sent: number, received: number): RouterLink | null {
    const decaying = this.decaying;
    if (decaying === null) return null;
    const to = this.lengthToDecaying;
    const from = this.lengthFromDecaying;
    if (to === null || from === null || sent < to || received < from) {
      return null;
    }
    this.decaying = null;
    this.lengthToDecaying = null;
    this.lengthFromDecaying = null;
    return decaying;
  }

  /** Removes and returns every link of the edge. */
  release(): RouterLink[] {
    const links = [this.primary, this.decaying].filter(
      (link): link is RouterLink => link !== null,
    );
    this.primary = null;
    this.decaying = null;
    this.lengthToDecaying = null;
    this.lengthFromDecaying = null;
    return links;
  }

  get isEmpty(): boolean {
    return this.primary === null && this.decaying === null;
  }
}
