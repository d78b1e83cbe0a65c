import { IpczError } from '../errors';

/** Maximum number of blocks one allocator manages, set by the i16 links. */
export const MAX_BLOCKS_PER_ALLOCATOR = 32767;

/** Smallest block size: the 4-byte free-list header plus room to use. */
export const MIN_BLOCK_SIZE = 8;

/**
 * A lock-free allocator of equal-sized blocks inside a region of shared
 * memory. Its whole state lives in that memory, so every holder of the
 * region (on any thread, on either side of a node link) may allocate and
 * free blocks through its own BlockAllocator over the same bytes.
 *
 * Each free block starts with a 4-byte header `{u16 version, i16 next}`,
 * stored as one little-endian i32 word so that Atomics can swap it whole.
 * Block 0 is never handed out: its header is the head of the free list.
 * `next` is relative to the block after the one holding it (absolute
 * index = own index + 1 + next), which makes a zeroed region a full free
 * list in index order. Index 0 in a link means the end of the list.
 * Every change of the head increments its version, so a stale
 * compare-and-swap fails even when the same block came back (ABA).
 */
export class BlockAllocator {
  readonly region: Uint8Array;
  readonly blockSize: number;
  readonly numBlocks: number;
  private readonly words: Int32Array;
  private readonly wordsPerBlock: number;

  /**
   * Wraps `region` without writing to it. The creator of the region calls
   * `initialize` once; every other holder only wraps it. Throws
   * INVALID_ARGUMENT when `blockSize` is not a multiple of 4 of at least
   * 8, when the region is not 4-byte aligned, or when it holds fewer than
   * 1 or more than 32767 blocks.
   */
  constructor(region: Uint8Array, blockSize: number) {
    if (
      !Number.isInteger(blockSize) ||
      blockSize < MIN_BLOCK_SIZE ||
      blockSize % 4 !== 0
    ) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `blockSize ${blockSize} is invalid: use a multiple of 4 of at least ` +
          `${MIN_BLOCK_SIZE}`,
      );
    }
    if (region.byteOffset % 4 !== 0) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `region offset ${region.byteOffset} is not 4-byte aligned`,
      );
    }
    const numBlocks = Math.floor(region.byteLength / blockSize);
    if (numBlocks < 1 || numBlocks > MAX_BLOCKS_PER_ALLOCATOR) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `region of ${region.byteLength} bytes holds ${numBlocks} blocks of ` +
          `${blockSize} bytes; expected 1 to ${MAX_BLOCKS_PER_ALLOCATOR}`,
      );
    }

    this.region = region.subarray(0, numBlocks * blockSize);
    this.blockSize = blockSize;
    this.numBlocks = numBlocks;
    this.wordsPerBlock = blockSize / 4;
    this.words = new Int32Array(
      region.buffer,
      region.byteOffset,
      (numBlocks * blockSize) / 4,
    );
  }

  /** Number of blocks that can be allocated at once: all but block 0. */
  get capacity(): number {
    return this.numBlocks - 1;
  }

  /**
   * Puts every block except block 0 on the free list, in index order. Call
   * it once, from the side that created the region, before anyone
   * allocates from it. It rewrites every header, so the region need not
   * be zeroed, although a zeroed region differs only in its last header.
   */
  initialize(): void {
    const last = this.numBlocks - 1;
    for (let index = 0; index < last; index++) {
      Atomics.store(this.words, this.headerWord(index), 0);
    }
    Atomics.store(
      this.words,
      this.headerWord(last),
      encodeHeader(0, -(last + 1)),
    );
  }

  /**
   * Takes a block off the free list and returns its index (1 or more), or
   * -1 when every block is in use or the free list is corrupt.
   */
  allocateIndex(): number {
    for (;;) {
      const head = Atomics.load(this.words, 0);
      const first = 1 + headerNext(head);
      if (first === 0) return -1;
      if (first < 0 || first >= this.numBlocks) return -1;

      // The block may be allocated and overwritten by another thread right
      // now, in which case `second` is garbage. The version check in the
      // compare-and-swap below then fails, so garbage is never installed.
      const firstHeader = Atomics.load(this.words, this.headerWord(first));
      const second = first + 1 + headerNext(firstHeader);
      if (second < 0 || second >= this.numBlocks) {
        if (Atomics.load(this.words, 0) === head) return -1;
        continue;
      }

      const newHead = encodeHeader(headerVersion(head) + 1, second - 1);
      if (Atomics.compareExchange(this.words, 0, head, newHead) === head) {
        return first;
      }
    }
  }

  /**
   * Returns block `index` to the free list. Returns false, changing
   * nothing, when `index` is not a block this allocator hands out.
   */
  freeIndex(index: number): boolean {
    if (!Number.isInteger(index) || index < 1 || index >= this.numBlocks) {
      return false;
    }
    const word = this.headerWord(index);
    for (;;) {
      const head = Atomics.load(this.words, 0);
      const first = 1 + headerNext(head);
      Atomics.store(this.words, word, encodeHeader(0, first - (index + 1)));
      const newHead = encodeHeader(headerVersion(head) + 1, index - 1);
      if (Atomics.compareExchange(this.words, 0, head, newHead) === head) {
        return true;
      }
    }
  }

  /** Allocates a block and returns a view of it, or null when none is free. */
  allocate(): Uint8Array | null {
    const index = this.allocateIndex();
    return index < 0 ? null : this.blockAt(index);
  }

  /**
   * Frees the block that `block` views. Returns false when it is not
   * exactly one block of this allocator (other than block 0).
   */
  free(block: Uint8Array): boolean {
    const index = this.indexOf(block);
    return index < 0 ? false : this.freeIndex(index);
  }

  /** Returns a view of block `index`. */
  blockAt(index: number): Uint8Array {
    const start = index * this.blockSize;
    return this.region.subarray(start, start + this.blockSize);
  }

  /**
   * Returns the index of the block that `block` views exactly, or -1 when
   * it views anything else (including block 0 or another buffer).
   */
  indexOf(block: Uint8Array): number {
    if (block.buffer !== this.region.buffer) return -1;
    if (block.byteLength !== this.blockSize) return -1;
    const offset = block.byteOffset - this.region.byteOffset;
    if (offset <= 0 || offset % this.blockSize !== 0) return -1;
    const index = offset / this.blockSize;
    return index < this.numBlocks ? index : -1;
  }

  private headerWord(index: number): number {
    return index * this.wordsPerBlock;
  }
}

/** Packs a header as the little-endian word `{u16 version, i16 next}`. */
function encodeHeader(version: number, next: number): number {
  return (version & 0xffff) | (next << 16);
}

function headerVersion(word: number): number {
  return word & 0xffff;
}

/** Reads the signed 16-bit `next` field, sign-extended by `>>`. */
function headerNext(word: number): number {
  return word >> 16;
}
