/**
 * A 128-bit node name: two unsigned 64-bit halves, compared high then low.
 * Zero is invalid. Brokers name themselves and name every node that
 * connects to them.
 */
export class NodeName {
  readonly high: bigint;
  readonly low: bigint;

  constructor(high: bigint, low: bigint) {
    this.high = BigInt.asUintN(64, high);
    this.low = BigInt.asUintN(64, low);
  }

  static readonly invalid = new NodeName(0n, 0n);

  /** Builds a name from 16 bytes: the high, then the low half (LE). */
  static fromBytes(bytes: Uint8Array): NodeName {
    const view = new DataView(bytes.buffer, bytes.byteOffset, 16);
    return new NodeName(view.getBigUint64(0, true), view.getBigUint64(8, true));
  }

  isValid(): boolean {
    return this.high !== 0n || this.low !== 0n;
  }

  equals(other: NodeName | null | undefined): boolean {
    return (
      other !== null &&
      other !== undefined &&
      this.high === other.high &&
      this.low === other.low
    );
  }

  /** Returns -1, 0 or 1, ordering by the high half first. */
  compare(other: NodeName): number {
    if (this.high !== other.high) return this.high < other.high ? -1 : 1;
    if (this.low !== other.low) return this.low < other.low ? -1 : 1;
    return 0;
  }

  /** A string usable as a Map key; also the hex form users see. */
  toString(): string {
    return (
      this.high.toString(16).padStart(16, '0') +
      this.low.toString(16).padStart(16, '0')
    );
  }
}
