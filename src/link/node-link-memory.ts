import {
  Observable,
  catchError,
  defaultIfEmpty,
  defer,
  map,
  mergeMap,
  of,
  take,
  throwError,
} from 'rxjs';
import { createCoalescer, type Coalescer } from '../../streams/coalesce-by-key';
import type { SharedMemory } from '../drivers/driver';
import { IpczError } from '../errors';
import { BlockAllocator, MAX_BLOCKS_PER_ALLOCATOR } from './block-allocator';
import { BufferPool } from './buffer-pool';
import {
  Fragment,
  FragmentRef,
  type BufferId,
  type FragmentDescriptor,
  type FragmentOwner,
} from './fragment';
import {
  ROUTER_LINK_STATE_SIZE,
  RouterLinkState,
} from './router-link-state';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Size of the primary buffer that every node link starts with. */
export const PRIMARY_BUFFER_SIZE = 2 * MiB;

/** BufferId of the primary buffer. */
export const PRIMARY_BUFFER_ID: BufferId = 0n;

/** Number of RouterLinkStates in the primary buffer for initial portals. */
export const MAX_INITIAL_PORTALS = 12;

/** Largest fragment that link memory allocates; bigger data goes inline. */
export const MAX_FRAGMENT_SIZE = 1 * MiB;

/** Smallest block size that fragments use. */
export const MIN_FRAGMENT_BLOCK_SIZE = 64;

/**
 * Capacity of one block size beyond which failed allocations stop
 * requesting more buffers, so link memory of one size stays bounded.
 */
export const MAX_CAPACITY_PER_BLOCK_SIZE = 2 * MiB;

/** Smallest fragment that `allocateFragmentBestEffort` falls back to. */
const MIN_BEST_EFFORT_SIZE = 4 * KiB;

/** Blocks in a buffer added by growth, before rounding up its size. */
const BLOCKS_PER_GROWTH = 8;

/** Buffers added by growth are a multiple of this size. */
const GROWTH_BUFFER_GRANULARITY = 64 * KiB;

// Primary buffer layout: two u64 counters padded to 256 bytes, the
// initial-portal states, then one region per block size. There are no
// 128-byte or 8 KiB regions; those sizes use the next larger blocks.
const NEXT_BUFFER_ID_INDEX = 0; // u64 index @0
const NEXT_SUBLINK_ID_INDEX = 1; // u64 index @8
const FIRST_DYNAMIC_BUFFER_ID = 1n;
const FIRST_DYNAMIC_SUBLINK_ID = BigInt(MAX_INITIAL_PORTALS);
const INITIAL_ROUTER_LINK_STATES_OFFSET = 256;

interface BlockRegion {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly offset: number;
}

const PRIMARY_BLOCK_REGIONS: readonly BlockRegion[] = [
  { blockSize: 64, numBlocks: 64, offset: 1024 },
  { blockSize: 256, numBlocks: 48, offset: 5120 },
  { blockSize: 512, numBlocks: 30, offset: 17408 },
  { blockSize: 1 * KiB, numBlocks: 11, offset: 32768 },
  { blockSize: 2 * KiB, numBlocks: 8, offset: 44032 },
  { blockSize: 4 * KiB, numBlocks: 16, offset: 60416 },
  { blockSize: 16 * KiB, numBlocks: 16, offset: 125952 },
  { blockSize: 32 * KiB, numBlocks: 8, offset: 388096 },
  { blockSize: 64 * KiB, numBlocks: 22, offset: 650240 },
];

/** Callbacks through which a NodeLinkMemory obtains and shares buffers. */
export interface NodeLinkMemoryOptions {
  /**
   * Allocates a zeroed region of at least `size` bytes through the node
   * (its driver or its allocation delegate). The first emission is used.
   * Without it, growth always fails.
   */
  allocate?: (size: number) => Observable<SharedMemory>;
  /**
   * Gives a new buffer to the peer, as an AddBlockBuffer message. It is
   * called before the buffer is used locally, so the peer can resolve
   * every fragment of it that this side sends later.
   */
  shareBuffer?: (
    id: BufferId,
    blockSize: number,
    memory: SharedMemory,
  ) => void;
}

/**
 * The memory pool that both ends of a node link share: the primary buffer
 * created with the link and the block buffers either side adds later.
 * Every buffer has the same BufferId on both ends, and either side may
 * allocate or free any block, because the allocators live in the shared
 * memory. BufferIds and SublinkIds come from counters in the primary
 * buffer, so both sides draw from them without messages.
 */
export class NodeLinkMemory implements FragmentOwner {
  readonly primaryBuffer: Uint8Array;
  private readonly counters: BigUint64Array;
  private readonly pool = new BufferPool();
  private readonly growth: Coalescer<number, boolean>;
  private readonly options: NodeLinkMemoryOptions;
  private closed = false;

  private constructor(
    memory: SharedMemory,
    options: NodeLinkMemoryOptions,
    initialize: boolean,
  ) {
    if (memory.size < PRIMARY_BUFFER_SIZE) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `primary buffer of ${memory.size} bytes is too small; ` +
          `it needs ${PRIMARY_BUFFER_SIZE}`,
      );
    }
    const mapping = memory.map();
    if (mapping.byteOffset % 8 !== 0) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `primary buffer mapping at offset ${mapping.byteOffset} is not ` +
          '8-byte aligned',
      );
    }

    this.primaryBuffer = mapping;
    this.options = options;
    this.counters = new BigUint64Array(mapping.buffer, mapping.byteOffset, 2);
    this.growth = createCoalescer((blockSize) => this.grow(blockSize));

    const allocators = PRIMARY_BLOCK_REGIONS.map((region) => {
      const start = region.offset;
      const end = start + region.blockSize * region.numBlocks;
      return new BlockAllocator(mapping.subarray(start, end), region.blockSize);
    });
    if (initialize) {
      Atomics.store(
        this.counters,
        NEXT_BUFFER_ID_INDEX,
        FIRST_DYNAMIC_BUFFER_ID,
      );
      Atomics.store(
        this.counters,
        NEXT_SUBLINK_ID_INDEX,
        FIRST_DYNAMIC_SUBLINK_ID,
      );
      for (const allocator of allocators) allocator.initialize();
    }
    this.pool.addBlockBuffer(PRIMARY_BUFFER_ID, mapping, allocators);
  }

  /**
   * Initializes `memory` as a new primary buffer and returns its pool.
   * Use it on the side that created the link's memory; the peer calls
   * `adopt` once it receives the buffer. Throws INVALID_ARGUMENT when the
   * region is smaller than PRIMARY_BUFFER_SIZE.
   */
  static create(
    memory: SharedMemory,
    options: NodeLinkMemoryOptions = {},
  ): NodeLinkMemory {
    return new NodeLinkMemory(memory, options, true);
  }

  /** Wraps a primary buffer that the peer already initialized. */
  static adopt(
    memory: SharedMemory,
    options: NodeLinkMemoryOptions = {},
  ): NodeLinkMemory {
    return new NodeLinkMemory(memory, options, false);
  }

  /** Reserves `count` consecutive SublinkIds and returns the first. */
  allocateSublinkIds(count: number): bigint {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `sublink id count ${count} must be a non-negative integer`,
      );
    }
    return Atomics.add(this.counters, NEXT_SUBLINK_ID_INDEX, BigInt(count));
  }

  /** Reserves a new BufferId. */
  allocateBufferId(): BufferId {
    return Atomics.add(this.counters, NEXT_BUFFER_ID_INDEX, 1n);
  }

  /**
   * Returns the RouterLinkState of initial portal `index`, which lives in
   * the primary buffer and is not reference counted.
   */
  getInitialRouterLinkState(index: number): RouterLinkState {
    if (!Number.isInteger(index) || index < 0 || index >= MAX_INITIAL_PORTALS) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `initial portal index ${index} is out of range 0 to ` +
          `${MAX_INITIAL_PORTALS - 1}`,
      );
    }
    const start =
      INITIAL_ROUTER_LINK_STATES_OFFSET + index * ROUTER_LINK_STATE_SIZE;
    const end = start + ROUTER_LINK_STATE_SIZE;
    return new RouterLinkState(this.primaryBuffer.subarray(start, end));
  }

  /**
   * Allocates a block of at least `size` bytes: max(64, next power of
   * two). Returns the null fragment when `size` is 0 or above
   * MAX_FRAGMENT_SIZE, or when no block is free. A failure below
   * MAX_CAPACITY_PER_BLOCK_SIZE also starts growth for that size, which
   * only later calls benefit from.
   */
  allocateFragment(size: number): Fragment {
    const blockSize = blockSizeFor(size);
    if (blockSize === null) return Fragment.null;

    const fragment = this.pool.allocateBlock(blockSize);
    if (fragment.isNull() && this.canGrow(blockSize)) {
      this.requestBlockCapacity(blockSize).subscribe();
    }
    return fragment;
  }

  /**
   * Allocates the largest block it can for `size` bytes: it tries
   * min(size rounded up, MAX_FRAGMENT_SIZE) and halves down to 4 KiB.
   * Returns the null fragment when all fail or the ideal size is under
   * 4 KiB, since small data is cheaper to send inline.
   */
  allocateFragmentBestEffort(size: number): Fragment {
    const ideal = blockSizeFor(Math.min(size, MAX_FRAGMENT_SIZE));
    if (ideal === null) return Fragment.null;
    for (let blockSize = ideal; blockSize >= MIN_BEST_EFFORT_SIZE; ) {
      const fragment = this.allocateFragment(blockSize);
      if (!fragment.isNull()) return fragment;
      blockSize /= 2;
    }
    return Fragment.null;
  }

  /**
   * Returns a cold Observable that allocates like `allocateFragment` and,
   * when no block is free, waits for growth and tries again. It emits one
   * addressable fragment and completes. It errors with INVALID_ARGUMENT
   * for a size of 0 or above MAX_FRAGMENT_SIZE, with RESOURCE_EXHAUSTED
   * when growth fails or the size's capacity reached
   * MAX_CAPACITY_PER_BLOCK_SIZE, and with UNAVAILABLE after `close`.
   */
  allocateFragmentAsync(size: number): Observable<Fragment> {
    return defer(() => {
      const blockSize = blockSizeFor(size);
      if (blockSize === null) {
        return throwError(
          () =>
            new IpczError(
              'INVALID_ARGUMENT',
              `fragment size ${size} must be 1 to ${MAX_FRAGMENT_SIZE}`,
            ),
        );
      }
      return this.allocateOrGrow(blockSize, () => this.canGrow(blockSize));
    });
  }

  /**
   * Allocates a RouterLinkState with reference count 1 and returns the
   * ref that holds it, or null when no 64-byte block is free. A failure
   * always requests more capacity, whatever the size's capacity.
   */
  tryAllocateRouterLinkState(): FragmentRef | null {
    const fragment = this.pool.allocateBlock(ROUTER_LINK_STATE_SIZE);
    if (fragment.isNull()) {
      this.requestBlockCapacity(ROUTER_LINK_STATE_SIZE).subscribe();
      return null;
    }
    RouterLinkState.initialize(fragment.bytes!);
    return FragmentRef.adopt(this, fragment);
  }

  /**
   * Returns a cold Observable that allocates a RouterLinkState, waiting
   * for growth when none is free. It emits the ref holding the new state
   * and completes, or errors with RESOURCE_EXHAUSTED when growth fails.
   */
  allocateRouterLinkState(): Observable<FragmentRef> {
    return defer(() => {
      let attempts = 0;
      // Growth is requested whatever the capacity, but one successful
      // growth that another allocation drained is not retried forever.
      return this.allocateOrGrow(
        ROUTER_LINK_STATE_SIZE,
        () => attempts++ < 2,
      );
    }).pipe(
      map((fragment) => {
        RouterLinkState.initialize(fragment.bytes!);
        return FragmentRef.adopt(this, fragment);
      }),
    );
  }

  /**
   * Frees the block of `fragment`. Returns false when it is not exactly
   * one allocated-size block of a known buffer.
   */
  freeFragment(fragment: Fragment): boolean {
    return this.pool.freeBlock(fragment);
  }

  /**
   * Resolves a descriptor received from the peer: null, pending (buffer
   * not yet added here) or addressable.
   */
  getFragment(descriptor: FragmentDescriptor): Fragment {
    return this.pool.getFragment(descriptor);
  }

  /** Takes over the reference that came with a received descriptor. */
  adoptFragmentRef(fragment: Fragment): FragmentRef {
    return FragmentRef.adopt(this, fragment);
  }

  /**
   * Returns an Observable that emits once and completes when buffer `id`
   * is added, at once if it is known; it errors after `close`.
   */
  waitForBuffer(id: BufferId): Observable<void> {
    return this.pool.waitForBuffer(id);
  }

  /**
   * Adds a block buffer that the peer shared (AddBlockBuffer). Its
   * allocator was initialized by the peer. Returns false when `blockSize`
   * is not a power of two of at least 8, when the buffer holds no block
   * or more than 32767 blocks, or when `id` is already in use; the caller
   * should then drop the link.
   */
  addBlockBuffer(
    id: BufferId,
    blockSize: number,
    memory: SharedMemory,
  ): boolean {
    if (!isValidBlockSize(blockSize)) return false;
    const numBlocks = Math.floor(memory.size / blockSize);
    if (numBlocks < 1 || numBlocks > MAX_BLOCKS_PER_ALLOCATOR) return false;
    if (this.pool.hasBuffer(id)) return false;

    const mapping = memory.map();
    if (mapping.byteLength < memory.size) return false;
    const allocator = new BlockAllocator(
      mapping.subarray(0, numBlocks * blockSize),
      blockSize,
    );
    return this.pool.addBlockBuffer(id, mapping, [allocator]);
  }

  /**
   * Returns a cold Observable that adds a buffer of `blockSize` blocks
   * and emits true once they can be allocated here, or false when that
   * failed, then completes; it never errors. Concurrent requests for one
   * block size share one growth, which continues when its subscribers
   * leave. A failed growth may be retried by a later request.
   */
  requestBlockCapacity(blockSize: number): Observable<boolean> {
    return this.growth.run(blockSize).pipe(
      take(1),
      defaultIfEmpty(false),
      catchError(() => of(false)),
    );
  }

  /** Bytes that blocks of exactly `blockSize` can hold, in use or free. */
  getBlockCapacity(blockSize: number): number {
    return this.pool.getTotalBlockCapacity(blockSize);
  }

  /**
   * Stops growth (its waiters get false) and errors `waitForBuffer`
   * subscribers, as when the link is lost. Memory already mapped stays
   * readable.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = closedError();
    this.growth.close(error);
    this.pool.close(error);
  }

  private canGrow(blockSize: number): boolean {
    return (
      this.pool.getTotalBlockCapacity(blockSize) < MAX_CAPACITY_PER_BLOCK_SIZE
    );
  }

  /**
   * Allocates a block of `blockSize`; while none is free and `mayGrow()`
   * allows it, grows and tries again.
   */
  private allocateOrGrow(
    blockSize: number,
    mayGrow: () => boolean,
  ): Observable<Fragment> {
    const fragment = this.pool.allocateBlock(blockSize);
    if (!fragment.isNull()) return of(fragment);
    if (!mayGrow()) return throwError(() => exhausted(blockSize));

    return this.requestBlockCapacity(blockSize).pipe(
      mergeMap((grown) => {
        if (grown) return this.allocateOrGrow(blockSize, mayGrow);
        if (this.closed) return throwError(() => closedError());
        return throwError(() => exhausted(blockSize));
      }),
    );
  }

  /**
   * Adds one buffer of `blockSize` blocks: allocate, initialize its
   * allocator, share it with the peer, and only then register it here.
   */
  private grow(blockSize: number): Observable<boolean> {
    const allocate = this.options.allocate;
    if (allocate === undefined || !isValidBlockSize(blockSize)) {
      return of(false);
    }
    return defer(() => allocate(growthBufferSize(blockSize))).pipe(
      take(1),
      map((memory) => this.installBuffer(blockSize, memory)),
      defaultIfEmpty(false),
      catchError(() => of(false)),
    );
  }

  private installBuffer(blockSize: number, memory: SharedMemory): boolean {
    if (this.closed) return false;
    const numBlocks = Math.floor(memory.size / blockSize);
    if (numBlocks < 2 || numBlocks > MAX_BLOCKS_PER_ALLOCATOR) return false;

    const mapping = memory.map();
    const allocator = new BlockAllocator(
      mapping.subarray(0, numBlocks * blockSize),
      blockSize,
    );
    allocator.initialize();
    const id = this.allocateBufferId();

    // The peer must have the buffer before any fragment of it is sent, so
    // it is shared before local allocations may use it.
    this.options.shareBuffer?.(id, blockSize, memory);
    return this.pool.addBlockBuffer(id, mapping, [allocator]);
  }
}

/**
 * Returns the block size for a fragment of `size` bytes, max(64, next
 * power of two), or null when `size` is not 1 to MAX_FRAGMENT_SIZE.
 */
function blockSizeFor(size: number): number | null {
  if (!Number.isInteger(size) || size <= 0 || size > MAX_FRAGMENT_SIZE) {
    return null;
  }
  let blockSize = MIN_FRAGMENT_BLOCK_SIZE;
  while (blockSize < size) blockSize *= 2;
  return blockSize;
}

/** Size of a growth buffer: 8 blocks, rounded up to a multiple of 64 KiB. */
function growthBufferSize(blockSize: number): number {
  const size = blockSize * BLOCKS_PER_GROWTH;
  return (
    Math.ceil(size / GROWTH_BUFFER_GRANULARITY) * GROWTH_BUFFER_GRANULARITY
  );
}

function isValidBlockSize(blockSize: number): boolean {
  return (
    Number.isInteger(blockSize) &&
    blockSize >= 8 &&
    Number.isInteger(Math.log2(blockSize))
  );
}

function closedError(): IpczError {
  return new IpczError('UNAVAILABLE', 'node link memory is closed');
}

function exhausted(blockSize: number): IpczError {
  return new IpczError(
    'RESOURCE_EXHAUSTED',
    `no ${blockSize}-byte block is free and link memory could not grow`,
  );
}
