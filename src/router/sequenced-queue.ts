/**
 * Maximum distance past the current sequence number that a queue accepts.
 * A peer that numbers a parcel further ahead is misbehaving, and keeping
 * room for it would let the peer grow the queue without bound.
 */
export const MAX_SEQUENCE_GAP = 1_000_000;

export interface Sized {
  readonly byteLength: number;
}

/**
 * Orders elements by sequence number, as ipcz's SequencedQueue does:
 * elements arrive in any order and leave strictly in order. The queue may
 * learn a final sequence length, after which nothing at or past it is
 * accepted and the queue is complete once everything before it has left.
 *
 * Invariant: every key of `entries` is in [current, limit), where `limit`
 * is the final length when known and `current + MAX_SEQUENCE_GAP`
 * otherwise.
 */
export class SequencedQueue<T extends Sized> {
  private current = 0;
  private contiguousEnd = 0;
  private finalLength: number | null = null;
  private readonly entries = new Map<number, T>();
  private available = 0;
  private availableBytes = 0;
  private queuedBytes = 0;

  constructor(start = 0) {
    this.current = start;
    this.contiguousEnd = start;
  }

  /** Next sequence number to leave the queue. */
  get currentSequenceNumber(): number {
    return this.current;
  }

  /** Current sequence number plus the run of elements ready after it. */
  get currentSequenceLength(): number {
    return this.contiguousEnd;
  }

  get finalSequenceLength(): number | null {
    return this.finalLength;
  }

  /** Number of elements ready to leave, in order. */
  get availableCount(): number {
    return this.available;
  }

  /** Sum of `byteLength` over the elements ready to leave. */
  get availableByteCount(): number {
    return this.availableBytes;
  }

  /** Elements queued behind a gap: they cannot leave until it fills. */
  get waitingCount(): number {
    return this.entries.size - this.available;
  }

  /** Sum of `byteLength` over the elements queued behind a gap. */
  get waitingByteCount(): number {
    return this.queuedBytes - this.availableBytes;
  }

  /** Sum of `byteLength` over every queued element, ready or not. */
  get queuedByteCount(): number {
    return this.queuedBytes;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Returns whether a final length is known and every element left. */
  isFullyConsumed(): boolean {
    return this.finalLength !== null && this.current >= this.finalLength;
  }

  /** Returns whether every element up to the final length has arrived. */
  isComplete(): boolean {
    return (
      this.finalLength !== null && this.contiguousEnd >= this.finalLength
    );
  }

  /** Whether an element with this number would be accepted now. */
  canPush(sequenceNumber: number): boolean {
    if (!Number.isSafeInteger(sequenceNumber)) return false;
    if (sequenceNumber < this.current) return false;
    if (this.finalLength !== null && sequenceNumber >= this.finalLength) {
      return false;
    }
    if (sequenceNumber >= this.current + MAX_SEQUENCE_GAP) return false;
    return !this.entries.has(sequenceNumber);
  }

  /**
   * Adds an element. Returns false, keeping nothing, for a number already
   * consumed or queued, at or past the final length, or too far ahead.
   */
  push(sequenceNumber: number, element: T): boolean {
    if (!this.canPush(sequenceNumber)) return false;
    this.entries.set(sequenceNumber, element);
    this.queuedBytes += element.byteLength;
    this.extendContiguousRun();
    return true;
  }

  /** Takes the next element in sequence, if it has arrived. */
  pop(): T | undefined {
    const element = this.entries.get(this.current);
    if (element === undefined) return undefined;
    this.entries.delete(this.current);
    this.current++;
    this.available--;
    this.availableBytes -= element.byteLength;
    this.queuedBytes -= element.byteLength;
    return element;
  }

  /** Returns the next element in sequence without taking it. */
  peek(): T | undefined {
    return this.entries.get(this.current);
  }

  /**
   * Marks the next number as consumed without an element, so that an
   * element sent directly (never queued) still advances the sequence.
   * Returns false when an element is queued at that number or the
   * sequence has ended.
   */
  skip(): boolean {
    if (this.entries.has(this.current)) return false;
    if (this.finalLength !== null && this.current >= this.finalLength) {
      return false;
    }
    this.current++;
    if (this.contiguousEnd < this.current) this.contiguousEnd = this.current;
    this.extendContiguousRun();
    return true;
  }

  /**
   * Replaces the front element's byte count after a partial consumption.
   */
  adjustFrontBytes(delta: number): void {
    this.availableBytes += delta;
    this.queuedBytes += delta;
  }

  /**
   * Sets the final length. Returns false when it is below what was already
   * accepted or consumed, or when a different final length is known.
   */
  setFinalSequenceLength(length: number): boolean {
    if (!Number.isSafeInteger(length) || length < 0) return false;
    if (this.finalLength !== null) return this.finalLength === length;
    if (length < this.contiguousEnd) return false;
    for (const key of this.entries.keys()) {
      if (key >= length) return false;
    }
    if (length > this.current + MAX_SEQUENCE_GAP) return false;
    this.finalLength = length;
    return true;
  }

  /**
   * Ends the sequence at whatever has arrived contiguously, dropping
   * anything queued past a gap. Returns the dropped elements so their
   * contents can be released.
   */
  forceTerminate(): T[] {
    const dropped: T[] = [];
    for (const [key, element] of this.entries) {
      if (key >= this.contiguousEnd) {
        dropped.push(element);
        this.entries.delete(key);
        this.queuedBytes -= element.byteLength;
      }
    }
    this.finalLength = this.contiguousEnd;
    return dropped;
  }

  /** Removes and returns every queued element, in sequence order. */
  drain(): T[] {
    const keys = [...this.entries.keys()].sort((a, b) => a - b);
    const elements = keys.map((key) => this.entries.get(key) as T);
    this.entries.clear();
    this.available = 0;
    this.availableBytes = 0;
    this.queuedBytes = 0;
    return elements;
  }

  private extendContiguousRun(): void {
    for (;;) {
      const element = this.entries.get(this.contiguousEnd);
      if (element === undefined) return;
      this.contiguousEnd++;
      this.available++;
      this.availableBytes += element.byteLength;
    }
  }
}
