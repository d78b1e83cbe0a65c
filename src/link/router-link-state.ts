import { IpczError } from '../errors';
import { NodeName } from '../wire/node-name';

/** One end of a link; side A and side B are the two opposite ends. */
export type LinkSide = 'A' | 'B';

/** Size in bytes of a RouterLinkState in link memory. */
export const ROUTER_LINK_STATE_SIZE = 64;

/** Bits of the `status` word. Waiting bits never prevent locking. */
export const RouterLinkStatus = {
  SideAStable: 1,
  SideBStable: 2,
  Stable: 3,
  SideAWaiting: 4,
  SideBWaiting: 8,
  LockedBySideA: 16,
  LockedBySideB: 32,
  LockedByEither: 48,
} as const;

/** A snapshot of one side's consumption counters. */
export interface QueueState {
  numParcelsConsumed: bigint;
  numBytesConsumed: bigint;
  /** Whether the peer requested notification of this side's next update. */
  monitored: boolean;
}

// Byte offsets of the fields. The region is 8-byte aligned, so the u64
// fields can be read with Atomics through a BigUint64Array.
const REF_COUNT_WORD = 0;
const STATUS_WORD = 1;
const BYPASS_SOURCE_HIGH = 1; // u64 index of the name's high half (@8)
const BYPASS_SOURCE_LOW = 2; // u64 index of the name's low half (@16)
const QUEUE_STATE_A = 3; // u64 index of side A's parcel count (@24)
const QUEUE_STATE_B = 5; // u64 index of side B's parcel count (@40)

/** The monitor flag, the top bit of a side's parcel count. */
const MONITOR_BIT = 1n << 63n;
const COUNT_MASK = MONITOR_BIT - 1n;

function bitsOf(side: LinkSide) {
  const a = side === 'A';
  return {
    stable: a ? RouterLinkStatus.SideAStable : RouterLinkStatus.SideBStable,
    otherStable: a
      ? RouterLinkStatus.SideBStable
      : RouterLinkStatus.SideAStable,
    waiting: a ? RouterLinkStatus.SideAWaiting : RouterLinkStatus.SideBWaiting,
    locked: a ? RouterLinkStatus.LockedBySideA : RouterLinkStatus.LockedBySideB,
    otherLocked: a
      ? RouterLinkStatus.LockedBySideB
      : RouterLinkStatus.LockedBySideA,
  };
}

/**
 * The state that the two ends of a central router link share in link
 * memory (64 bytes): stability and lock bits that coordinate route
 * reduction, the node allowed to request a bypass, and each side's queue
 * consumption for remote queue status. Every update is an Atomics
 * operation on the shared bytes, so both ends may act at once from
 * different threads.
 *
 * Layout: i32 reference count @0, u32 status @4, NodeName
 * allowedBypassRequestSource @8 (high, low), side A queue state @24 and
 * side B queue state @40 (u64 parcels consumed with the monitor flag in
 * its top bit, u64 bytes consumed), 8 reserved bytes @56.
 */
export class RouterLinkState {
  readonly bytes: Uint8Array;
  private readonly words: Int32Array;
  private readonly longs: BigUint64Array;

  /** Wraps the 64 bytes of `bytes`, which must be 8-byte aligned. */
  constructor(bytes: Uint8Array) {
    if (bytes.byteLength < ROUTER_LINK_STATE_SIZE || bytes.byteOffset % 8) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `RouterLinkState needs ${ROUTER_LINK_STATE_SIZE} bytes at an ` +
          `8-byte aligned offset; got ${bytes.byteLength} bytes at ` +
          `offset ${bytes.byteOffset}`,
      );
    }
    this.bytes = bytes.subarray(0, ROUTER_LINK_STATE_SIZE);
    this.words = new Int32Array(bytes.buffer, bytes.byteOffset, 16);
    this.longs = new BigUint64Array(bytes.buffer, bytes.byteOffset, 8);
  }

  /**
   * Resets a newly allocated state: reference count 1 and every other
   * field zero (both sides unstable, unlocked, counts zero).
   */
  static initialize(bytes: Uint8Array): RouterLinkState {
    const state = new RouterLinkState(bytes);
    for (let i = 1; i < 8; i++) Atomics.store(state.longs, i, 0n);
    Atomics.store(state.words, STATUS_WORD, 0);
    Atomics.store(state.words, REF_COUNT_WORD, 1);
    return state;
  }

  /** The current status bits. */
  get status(): number {
    return Atomics.load(this.words, STATUS_WORD);
  }

  /** Marks `side` stable: it has no decaying links. */
  setSideStable(side: LinkSide): void {
    Atomics.or(this.words, STATUS_WORD, bitsOf(side).stable);
  }

  /**
   * Locks the link for `side` if both sides are stable and no lock is
   * held. When `side` is stable but the other side is not, sets the
   * waiting bit of `side`, so the other side retries on its behalf once
   * stable, and fails. Returns whether the lock was taken.
   */
  tryLock(side: LinkSide): boolean {
    const bits = bitsOf(side);
    for (;;) {
      const status = Atomics.load(this.words, STATUS_WORD);
      if (status & RouterLinkStatus.LockedByEither) return false;
      if (!(status & bits.stable)) return false;

      let desired: number;
      if (status & bits.otherStable) desired = status | bits.locked;
      else if (status & bits.waiting) return false;
      else desired = status | bits.waiting;

      if (this.compareExchangeStatus(status, desired)) {
        return (desired & bits.locked) !== 0;
      }
    }
  }

  /** Releases the lock of `side`. */
  unlock(side: LinkSide): void {
    Atomics.and(this.words, STATUS_WORD, ~bitsOf(side).locked);
  }

  /**
   * Clears the waiting bit of `side` if it is set, both sides are stable
   * and no lock is held. Returns whether it cleared the bit; the caller
   * then prompts that side to retry its lock.
   */
  resetWaitingBit(side: LinkSide): boolean {
    const bits = bitsOf(side);
    for (;;) {
      const status = Atomics.load(this.words, STATUS_WORD);
      if (!(status & bits.waiting)) return false;
      if ((status & RouterLinkStatus.Stable) !== RouterLinkStatus.Stable) {
        return false;
      }
      if (status & RouterLinkStatus.LockedByEither) return false;
      if (this.compareExchangeStatus(status, status & ~bits.waiting)) {
        return true;
      }
    }
  }

  /** Whether `side` holds the lock. */
  isLockedBy(side: LinkSide): boolean {
    return (this.status & bitsOf(side).locked) !== 0;
  }

  /**
   * Locks the link for `side` like `tryLock` and, on success, records
   * `source` as the only node allowed to ask the other side to bypass it.
   */
  tryLockForBypass(side: LinkSide, source: NodeName): boolean {
    if (!this.tryLock(side)) return false;
    // Stored after the lock so a failed attempt never overwrites the name
    // that the current holder recorded. The requester learns of the lock
    // only through messages sent after this store.
    Atomics.store(this.longs, BYPASS_SOURCE_HIGH, source.high);
    Atomics.store(this.longs, BYPASS_SOURCE_LOW, source.low);
    return true;
  }

  /**
   * Whether `name` may ask `side` to bypass the other side: true when the
   * other side holds the lock and recorded `name` as the source.
   */
  canNodeRequestBypass(side: LinkSide, name: NodeName): boolean {
    if (!(this.status & bitsOf(side).otherLocked)) return false;
    return this.allowedBypassRequestSource.equals(name);
  }

  /** The node recorded by the last successful `tryLockForBypass`. */
  get allowedBypassRequestSource(): NodeName {
    return new NodeName(
      Atomics.load(this.longs, BYPASS_SOURCE_HIGH),
      Atomics.load(this.longs, BYPASS_SOURCE_LOW),
    );
  }

  /** Reads the queue state that `side` last wrote. */
  readQueueState(side: LinkSide): QueueState {
    const index = queueIndex(side);
    const parcels = Atomics.load(this.longs, index);
    return {
      numParcelsConsumed: parcels & COUNT_MASK,
      numBytesConsumed: Atomics.load(this.longs, index + 1) & COUNT_MASK,
      monitored: (parcels & MONITOR_BIT) !== 0n,
    };
  }

  /**
   * Writes the consumption counters of `side` (each masked to 63 bits)
   * and clears its monitor flag. Returns whether the flag was set, in
   * which case the caller must send the peer a queue state snapshot.
   */
  updateQueueState(
    side: LinkSide,
    numParcelsConsumed: bigint,
    numBytesConsumed: bigint,
  ): boolean {
    const index = queueIndex(side);
    Atomics.store(this.longs, index + 1, numBytesConsumed & COUNT_MASK);
    const previous = Atomics.exchange(
      this.longs,
      index,
      numParcelsConsumed & COUNT_MASK,
    );
    return (previous & MONITOR_BIT) !== 0n;
  }

  /**
   * Sets or clears the monitor flag on the queue state of `side`; the
   * peer sets it to be notified of the next update by `side`. Returns whether
   * the flag was set before.
   */
  setMonitoring(side: LinkSide, monitoring: boolean): boolean {
    const index = queueIndex(side);
    const previous = monitoring
      ? Atomics.or(this.longs, index, MONITOR_BIT)
      : Atomics.and(this.longs, index, COUNT_MASK);
    return (previous & MONITOR_BIT) !== 0n;
  }

  private compareExchangeStatus(expected: number, desired: number): boolean {
    return (
      Atomics.compareExchange(this.words, STATUS_WORD, expected, desired) ===
      expected
    );
  }
}

function queueIndex(side: LinkSide): number {
  return side === 'A' ? QUEUE_STATE_A : QUEUE_STATE_B;
}
