import { IpczError } from '../errors';

/**
 * Identifies a buffer of a node link's memory pool; both ends of the link
 * use the same id for the same buffer. The primary buffer is 0.
 */
export type BufferId = bigint;

/** The BufferId of a null fragment descriptor (all 64 bits set). */
export const NULL_BUFFER_ID: BufferId = 2n ** 64n - 1n;

/** The location of a span of link memory, as it travels between nodes. */
export interface FragmentDescriptor {
  readonly bufferId: BufferId;
  /** Byte offset of the span within its buffer. */
  readonly offset: number;
  /** Length of the span in bytes. */
  readonly size: number;
}

/** The descriptor that names no memory. */
export const NULL_FRAGMENT_DESCRIPTOR: FragmentDescriptor = Object.freeze({
  bufferId: NULL_BUFFER_ID,
  offset: 0,
  size: 0,
});

/** Whether `descriptor` names no memory. */
export function isNullDescriptor(descriptor: FragmentDescriptor): boolean {
  return descriptor.bufferId === NULL_BUFFER_ID;
}

/**
 * A span of link memory: a descriptor and, once its buffer is known
 * locally, a view of the bytes. A fragment is null (no memory), pending
 * (the buffer has not arrived yet, so `bytes` is null) or addressable.
 */
export class Fragment {
  readonly descriptor: FragmentDescriptor;
  /** View of the span's bytes; null while null or pending. */
  readonly bytes: Uint8Array | null;

  private constructor(
    descriptor: FragmentDescriptor,
    bytes: Uint8Array | null,
  ) {
    this.descriptor = descriptor;
    this.bytes = bytes;
  }

  static readonly null = new Fragment(NULL_FRAGMENT_DESCRIPTOR, null);

  /** Creates a fragment whose buffer is not mapped here yet. */
  static pending(descriptor: FragmentDescriptor): Fragment {
    return new Fragment(descriptor, null);
  }

  /** Creates a fragment over `bytes`, which must be `descriptor.size` long. */
  static addressable(
    descriptor: FragmentDescriptor,
    bytes: Uint8Array,
  ): Fragment {
    if (bytes.byteLength !== descriptor.size) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `fragment view of ${bytes.byteLength} bytes does not match ` +
          `descriptor size ${descriptor.size}`,
      );
    }
    return new Fragment(descriptor, bytes);
  }

  isNull(): boolean {
    return isNullDescriptor(this.descriptor);
  }

  isPending(): boolean {
    return !this.isNull() && this.bytes === null;
  }

  isAddressable(): boolean {
    return this.bytes !== null;
  }

  get bufferId(): BufferId {
    return this.descriptor.bufferId;
  }

  get offset(): number {
    return this.descriptor.offset;
  }

  get size(): number {
    return this.descriptor.size;
  }
}

/** Frees fragments; implemented by NodeLinkMemory. */
export interface FragmentOwner {
  freeFragment(fragment: Fragment): boolean;
}

/** Byte length of the reference count at the start of a counted fragment. */
export const REF_COUNT_SIZE = 4;

/**
 * One reference to a ref-counted fragment: a fragment whose first 4 bytes
 * are an i32 reference count shared by both ends of the link (ipcz's
 * RefCountedFragment and FragmentRef). The count starts at 1, and the
 * release that drops it to 0 frees the block through its owner. Sending
 * the descriptor to the peer transfers this reference with it.
 *
 * A ref over a pending fragment cannot reach the count: it neither adds
 * nor drops references until replaced by a ref over the resolved fragment.
 */
export class FragmentRef {
  readonly fragment: Fragment;
  private readonly owner: FragmentOwner | null;
  private count: Int32Array | null;
  private released = false;

  private constructor(owner: FragmentOwner | null, fragment: Fragment) {
    this.owner = owner;
    this.fragment = fragment;
    this.count = fragment.bytes === null ? null : countWordOf(fragment.bytes);
  }

  /** A ref that holds nothing. */
  static null(): FragmentRef {
    return new FragmentRef(null, Fragment.null);
  }

  /**
   * Sets the count of a newly allocated fragment to 1 and returns the
   * ref that holds that reference.
   */
  static initialize(owner: FragmentOwner, fragment: Fragment): FragmentRef {
    const ref = new FragmentRef(owner, fragment);
    if (ref.count === null) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        'cannot initialize the reference count of a fragment that is not ' +
          'addressable',
      );
    }
    Atomics.store(ref.count, 0, 1);
    return ref;
  }

  /**
   * Takes over a reference that already exists in the count, such as the
   * one transferred with a descriptor received from the peer.
   */
  static adopt(owner: FragmentOwner, fragment: Fragment): FragmentRef {
    return new FragmentRef(owner, fragment);
  }

  /**
   * Adds a reference and returns a ref that holds it. Throws
   * FAILED_PRECONDITION on a released ref, whose reference may be gone.
   */
  clone(): FragmentRef {
    if (this.released) {
      throw new IpczError(
        'FAILED_PRECONDITION',
        'cannot clone a fragment ref that was released',
      );
    }
    if (this.count !== null && this.owner !== null) {
      Atomics.add(this.count, 0, 1);
    }
    return new FragmentRef(this.owner, this.fragment);
  }

  /**
   * Drops this ref's reference; the last one frees the block. Later calls
   * on this ref do nothing.
   */
  release(): void {
    const count = this.count;
    const owner = this.owner;
    this.count = null;
    this.released = true;
    if (count === null || owner === null) return;
    if (Atomics.sub(count, 0, 1) === 1) owner.freeFragment(this.fragment);
  }

  /** Current reference count, or 0 for a null, pending or released ref. */
  get refCount(): number {
    return this.count === null ? 0 : Atomics.load(this.count, 0);
  }

  isNull(): boolean {
    return this.fragment.isNull();
  }

  isPending(): boolean {
    return this.fragment.isPending();
  }

  isAddressable(): boolean {
    return this.fragment.isAddressable();
  }
}

function countWordOf(bytes: Uint8Array): Int32Array {
  if (bytes.byteLength < REF_COUNT_SIZE || bytes.byteOffset % 4 !== 0) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `fragment at byte offset ${bytes.byteOffset} of ${bytes.byteLength} ` +
        'bytes cannot hold an aligned 4-byte reference count',
    );
  }
  return new Int32Array(bytes.buffer, bytes.byteOffset, 1);
}
