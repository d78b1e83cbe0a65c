import type { Box } from './box';
import type { Router } from './router';

/** Something a parcel carries besides bytes: a router or a box. */
export type ParcelObject = Router | Box;

/** Where a parcel came from, so that the receiver can reject it. */
export interface ParcelSource {
  reject(reason: string): void;
}

/**
 * One message on a route: bytes plus objects, numbered by the terminal
 * router that sent it. Sequence numbers stay the same through proxies.
 */
export class Parcel {
  sequenceNumber = 0;
  data: Uint8Array;
  objects: ParcelObject[];
  /** Set on parcels that arrived over a node link. */
  source: ParcelSource | null = null;
  /**
   * True while `data` is still the caller's own array, which it may change
   * after `put` returns. Whoever keeps the parcel beyond the call copies
   * it first (`ownData`); a remote link copies the bytes out at once.
   */
  borrowed = false;

  constructor(data: Uint8Array, objects: ParcelObject[] = []) {
    this.data = data;
    this.objects = objects;
  }

  get byteLength(): number {
    return this.data.byteLength;
  }

  /** Replaces borrowed data by a private copy. */
  ownData(): void {
    if (!this.borrowed) return;
    this.data = this.data.slice();
    this.borrowed = false;
  }

  /** Closes every object the parcel still carries. */
  closeObjects(): void {
    const objects = this.objects;
    this.objects = [];
    for (const object of objects) object.close();
  }
}
