import { Observable, type Subscriber } from 'rxjs';
import { BlockAllocator } from './block-allocator';
import {
  Fragment,
  isNullDescriptor,
  type BufferId,
  type FragmentDescriptor,
} from './fragment';

interface Buffer {
  readonly mapping: Uint8Array;
  /** Allocators of this buffer by block size. */
  readonly allocators: Map<number, BlockAllocator>;
}

interface PoolEntry {
  readonly bufferId: BufferId;
  readonly allocator: BlockAllocator;
  /** Offset of the allocator's region within the buffer. */
  readonly regionOffset: number;
}

/** The allocators of one block size, across buffers. */
class BlockAllocatorPool {
  readonly entries: PoolEntry[] = [];
  /** Index of the entry that last allocated, tried first next time. */
  private lastGood = 0;

  add(entry: PoolEntry): void {
    this.entries.push(entry);
  }

  /** Total bytes that this size's allocators can hand out at once. */
  get capacityBytes(): number {
    let total = 0;
    for (const { allocator } of this.entries) {
      total += allocator.capacity * allocator.blockSize;
    }
    return total;
  }

  allocate(): { entry: PoolEntry; index: number } | null {
    const count = this.entries.length;
    for (let i = 0; i < count; i++) {
      const position = (this.lastGood + i) % count;
      const entry = this.entries[position]!;
      const index = entry.allocator.allocateIndex();
      if (index >= 0) {
        this.lastGood = position;
        return { entry, index };
      }
    }
    return null;
  }

  find(bufferId: BufferId): PoolEntry | undefined {
    return this.entries.find((entry) => entry.bufferId === bufferId);
  }
}

/**
 * The buffers of one node link's memory, by BufferId, and the block
 * allocators inside them, by block size. It maps descriptors to local
 * views and allocates and frees blocks; the allocators' state lives in
 * the shared buffers, so both ends of the link may free any block.
 */
export class BufferPool {
  private readonly buffers = new Map<BufferId, Buffer>();
  private readonly pools = new Map<number, BlockAllocatorPool>();
  /** Registered block sizes, ascending. */
  private blockSizes: number[] = [];
  private readonly waiters = new Map<BufferId, Set<Subscriber<void>>>();
  private closeError: unknown = null;
  private closed = false;

  /**
   * Registers a buffer and the allocators inside it. Returns false,
   * registering nothing, when `id` is already registered, when an
   * allocator's region lies outside `mapping`, or when a block size is not
   * a power of two or appears twice. Waiters for `id` are then notified.
   */
  addBlockBuffer(
    id: BufferId,
    mapping: Uint8Array,
    allocators: readonly BlockAllocator[],
  ): boolean {
    if (this.buffers.has(id)) return false;
    const byBlockSize = new Map<number, BlockAllocator>();
    for (const allocator of allocators) {
      if (!isPowerOfTwo(allocator.blockSize)) return false;
      if (byBlockSize.has(allocator.blockSize)) return false;
      if (regionOffsetIn(mapping, allocator.region) < 0) return false;
      byBlockSize.set(allocator.blockSize, allocator);
    }

    this.buffers.set(id, { mapping, allocators: byBlockSize });
    for (const allocator of allocators) {
      this.poolFor(allocator.blockSize).add({
        bufferId: id,
        allocator,
        regionOffset: regionOffsetIn(mapping, allocator.region),
      });
    }

    this.notifyWaiters(id);
    return true;
  }

  /** Whether buffer `id` is registered. */
  hasBuffer(id: BufferId): boolean {
    return this.buffers.has(id);
  }

  /** Returns the mapping of buffer `id`, or null when it is unknown. */
  getBufferMapping(id: BufferId): Uint8Array | null {
    return this.buffers.get(id)?.mapping ?? null;
  }

  /**
   * Resolves a descriptor: the null fragment for a null descriptor or one
   * out of its buffer's bounds, a pending fragment when the buffer is not
   * registered yet, and an addressable one otherwise.
   */
  getFragment(descriptor: FragmentDescriptor): Fragment {
    if (isNullDescriptor(descriptor)) return Fragment.null;
    const buffer = this.buffers.get(descriptor.bufferId);
    if (buffer === undefined) return Fragment.pending(descriptor);

    const { offset, size } = descriptor;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size)) {
      return Fragment.null;
    }
    if (offset < 0 || size < 0 || offset + size > buffer.mapping.byteLength) {
      return Fragment.null;
    }
    const bytes = buffer.mapping.subarray(offset, offset + size);
    return Fragment.addressable(descriptor, bytes);
  }

  /**
   * Allocates a block from the smallest registered block size that is at
   * least `size`, without falling back to bigger sizes when that one is
   * exhausted. Returns the null fragment on failure.
   */
  allocateBlock(size: number): Fragment {
    const blockSize = this.blockSizes.find((candidate) => candidate >= size);
    if (blockSize === undefined) return Fragment.null;
    return this.allocateFromPool(blockSize);
  }

  /**
   * Allocates a block of the smallest registered size that is at least
   * `preferredSize`, or else of the largest smaller size that has a free
   * block. Returns the null fragment when every candidate is exhausted.
   */
  allocateBlockBestEffort(preferredSize: number): Fragment {
    const fitting = this.blockSizes.find((size) => size >= preferredSize);
    if (fitting !== undefined) {
      const fragment = this.allocateFromPool(fitting);
      if (!fragment.isNull()) return fragment;
    }
    for (let i = this.blockSizes.length - 1; i >= 0; i--) {
      const blockSize = this.blockSizes[i]!;
      if (blockSize >= preferredSize) continue;
      const fragment = this.allocateFromPool(blockSize);
      if (!fragment.isNull()) return fragment;
    }
    return Fragment.null;
  }

  /**
   * Frees the block that `fragment` covers. Returns false, changing
   * nothing, when it is not exactly one block of a registered allocator.
   */
  freeBlock(fragment: Fragment | FragmentDescriptor): boolean {
    const descriptor =
      fragment instanceof Fragment ? fragment.descriptor : fragment;
    const entry = this.pools.get(descriptor.size)?.find(descriptor.bufferId);
    if (entry === undefined) return false;

    const relative = descriptor.offset - entry.regionOffset;
    if (!Number.isSafeInteger(relative) || relative % descriptor.size !== 0) {
      return false;
    }
    return entry.allocator.freeIndex(relative / descriptor.size);
  }

  /**
   * Returns how many bytes the allocators of exactly `blockSize` can hand
   * out at once, counting blocks in use.
   */
  getTotalBlockCapacity(blockSize: number): number {
    return this.pools.get(blockSize)?.capacityBytes ?? 0;
  }

  /**
   * Returns an Observable that emits once and completes when buffer `id`
   * is registered, at once if it already is. It errors with the error
   * given to `close` if the pool closes first.
   */
  waitForBuffer(id: BufferId): Observable<void> {
    return new Observable<void>((subscriber) => {
      if (this.buffers.has(id)) {
        subscriber.next();
        subscriber.complete();
        return;
      }
      if (this.closed) {
        subscriber.error(this.closeError);
        return;
      }
      let waiting = this.waiters.get(id);
      if (waiting === undefined) {
        waiting = new Set();
        this.waiters.set(id, waiting);
      }
      const set = waiting;
      set.add(subscriber);
      return () => {
        set.delete(subscriber);
        if (set.size === 0 && this.waiters.get(id) === set) {
          this.waiters.delete(id);
        }
      };
    });
  }

  /**
   * Errors every `waitForBuffer` subscriber still waiting, and later
   * ones for unknown buffers, with `error`. Registered buffers stay usable.
   */
  close(error: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = error;
    const waiting = [...this.waiters.values()].flatMap((set) => [...set]);
    this.waiters.clear();
    for (const subscriber of waiting) subscriber.error(error);
  }

  private allocateFromPool(blockSize: number): Fragment {
    const allocation = this.pools.get(blockSize)?.allocate();
    if (allocation === undefined || allocation === null) return Fragment.null;

    const { entry, index } = allocation;
    const descriptor: FragmentDescriptor = {
      bufferId: entry.bufferId,
      offset: entry.regionOffset + index * blockSize,
      size: blockSize,
    };
    return Fragment.addressable(descriptor, entry.allocator.blockAt(index));
  }

  private poolFor(blockSize: number): BlockAllocatorPool {
    let pool = this.pools.get(blockSize);
    if (pool === undefined) {
      pool = new BlockAllocatorPool();
      this.pools.set(blockSize, pool);
      this.blockSizes = [...this.pools.keys()].sort((a, b) => a - b);
    }
    return pool;
  }

  private notifyWaiters(id: BufferId): void {
    const waiting = this.waiters.get(id);
    if (waiting === undefined) return;
    this.waiters.delete(id);
    for (const subscriber of [...waiting]) {
      subscriber.next();
      subscriber.complete();
    }
  }
}

function isPowerOfTwo(value: number): boolean {
  return value > 0 && Number.isInteger(Math.log2(value));
}

/**
 * Returns the offset of `region` within `mapping`, or -1 when it is not
 * entirely inside it.
 */
function regionOffsetIn(mapping: Uint8Array, region: Uint8Array): number {
  if (region.buffer !== mapping.buffer) return -1;
  const offset = region.byteOffset - mapping.byteOffset;
  if (offset < 0) return -1;
  if (offset + region.byteLength > mapping.byteLength) return -1;
  return offset;
}
