import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockAllocator } from '../../src/link/block-allocator';
import { BufferPool } from '../../src/link/buffer-pool';
import {
  Fragment,
  FragmentRef,
  NULL_BUFFER_ID,
  type FragmentOwner,
} from '../../src/link/fragment';

/** A pool of 64-byte blocks that counts frees, as a FragmentOwner. */
function createOwner(numBlocks: number) {
  const mapping = new Uint8Array(new SharedArrayBuffer(64 * numBlocks));
  const allocator = new BlockAllocator(mapping, 64);
  allocator.initialize();
  const pool = new BufferPool();
  pool.addBlockBuffer(0n, mapping, [allocator]);
  const owner = {
    frees: 0,
    freeFragment(fragment: Fragment): boolean {
      owner.frees += 1;
      return pool.freeBlock(fragment);
    },
  };
  return { owner: owner satisfies FragmentOwner, pool };
}

const refs = suite('FragmentRef');

refs('null ref holds nothing', () => {
  const ref = FragmentRef.null();
  assert.ok(ref.isNull());
  assert.not.ok(ref.isPending());
  assert.not.ok(ref.isAddressable());
  assert.is(ref.refCount, 0);
  assert.is(ref.fragment.bufferId, NULL_BUFFER_ID);
  ref.release();
});

refs('simple ref frees on release', () => {
  const { owner, pool } = createOwner(4);
  const ref = FragmentRef.initialize(owner, pool.allocateBlock(64));
  assert.is(ref.refCount, 1);
  ref.release();
  assert.is(owner.frees, 1);
  assert.is(ref.refCount, 0);
  ref.release();
  assert.is(owner.frees, 1);
});

refs('clone shares the count', () => {
  const { owner, pool } = createOwner(4);
  const ref = FragmentRef.initialize(owner, pool.allocateBlock(64));
  const copy = ref.clone();
  assert.is(ref.refCount, 2);
  assert.is(copy.refCount, 2);
  ref.release();
  assert.is(copy.refCount, 1);
  assert.is(owner.frees, 0);
  copy.release();
  assert.is(owner.frees, 1);
  assert.throws(() => copy.clone(), /FAILED_PRECONDITION/);
});

refs('adopt takes over a reference', () => {
  const { owner, pool } = createOwner(4);
  const fragment = pool.allocateBlock(64);
  const sent = FragmentRef.initialize(owner, fragment);
  // As when the descriptor crosses the link: the receiver resolves it and
  // adopts the reference, and the sender drops its ref without releasing it.
  const resolved = pool.getFragment(fragment.descriptor);
  const received = FragmentRef.adopt(owner, resolved);
  assert.is(received.refCount, 1);
  void sent;
  received.release();
  assert.is(owner.frees, 1);
});

refs('pending ref leaves the count alone', () => {
  const { owner } = createOwner(4);
  const pending = Fragment.pending({ bufferId: 9n, offset: 64, size: 64 });
  const ref = FragmentRef.adopt(owner, pending);
  assert.ok(ref.isPending());
  assert.is(ref.refCount, 0);
  ref.clone().release();
  ref.release();
  assert.is(owner.frees, 0);
  assert.throws(() => FragmentRef.initialize(owner, pending), /INVALID/);
});

refs('frees every one of many', () => {
  const { owner, pool } = createOwner(8);
  for (let i = 0; i < 100_000; i++) {
    const ref = FragmentRef.initialize(owner, pool.allocateBlock(64));
    const copy = ref.clone();
    ref.release();
    copy.release();
  }
  assert.is(owner.frees, 100_000);
  for (let i = 0; i < 7; i++) assert.ok(pool.allocateBlock(64).isAddressable());
  assert.ok(pool.allocateBlock(64).isNull());
});

refs('fragment kinds', () => {
  assert.ok(Fragment.null.isNull());
  const descriptor = { bufferId: 1n, offset: 0, size: 8 };
  assert.ok(Fragment.pending(descriptor).isPending());
  const bytes = new Uint8Array(8);
  assert.ok(Fragment.addressable(descriptor, bytes).isAddressable());
  assert.throws(
    () => Fragment.addressable(descriptor, new Uint8Array(4)),
    /does not match/,
  );
});

refs.run();
