import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockAllocator } from '../../src/link/block-allocator';
import { BufferPool } from '../../src/link/buffer-pool';
import { Fragment, NULL_FRAGMENT_DESCRIPTOR } from '../../src/link/fragment';

function createMapping(size: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(size));
}

function createAllocator(
  mapping: Uint8Array,
  offset: number,
  blockSize: number,
  numBlocks: number,
): BlockAllocator {
  const region = mapping.subarray(offset, offset + blockSize * numBlocks);
  const allocator = new BlockAllocator(region, blockSize);
  allocator.initialize();
  return allocator;
}

const pool = suite('BufferPool');

pool('fragment covers an added buffer', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(4096);
  assert.ok(buffers.addBlockBuffer(0n, mapping, []));
  const whole = buffers.getFragment({ bufferId: 0n, offset: 0, size: 4096 });
  assert.ok(whole.isAddressable());
  assert.is(whole.bytes!.byteLength, 4096);
  mapping[100] = 42;
  assert.is(whole.bytes![100], 42);
});

pool('rejects a duplicate buffer id', () => {
  const buffers = new BufferPool();
  assert.ok(buffers.addBlockBuffer(1n, createMapping(64), []));
  assert.not.ok(buffers.addBlockBuffer(1n, createMapping(64), []));
});

pool('rejects repeated block sizes', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(4096);
  const first = createAllocator(mapping, 0, 64, 8);
  const second = createAllocator(mapping, 1024, 64, 8);
  assert.not.ok(buffers.addBlockBuffer(0n, mapping, [first, second]));
  assert.not.ok(buffers.hasBuffer(0n));
  assert.ok(buffers.addBlockBuffer(0n, mapping, [first]));
});

pool('requires power-of-two block sizes', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(4096);
  const odd = createAllocator(mapping, 0, 48, 8);
  assert.not.ok(buffers.addBlockBuffer(0n, mapping, [odd]));
  assert.not.ok(buffers.hasBuffer(0n));
});

pool('rejects an allocator outside the mapping', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(4096);
  const other = createAllocator(createMapping(4096), 0, 64, 8);
  assert.not.ok(buffers.addBlockBuffer(0n, mapping, [other]));
  const larger = createMapping(8192);
  const overhanging = createAllocator(larger, 2048, 64, 64);
  assert.not.ok(
    buffers.addBlockBuffer(0n, larger.subarray(0, 4096), [overhanging]),
  );
});

pool('resolves fragments of every kind', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(1024);
  buffers.addBlockBuffer(7n, mapping, []);

  const sub = buffers.getFragment({ bufferId: 7n, offset: 64, size: 32 });
  assert.ok(sub.isAddressable());
  assert.is(sub.bytes!.byteOffset, 64);
  assert.is(sub.bytes!.byteLength, 32);

  const pending = buffers.getFragment({ bufferId: 8n, offset: 0, size: 32 });
  assert.ok(pending.isPending());
  assert.is(pending.bytes, null);

  assert.ok(buffers.getFragment(NULL_FRAGMENT_DESCRIPTOR).isNull());
  const beyond = { bufferId: 7n, offset: 1000, size: 32 };
  assert.ok(buffers.getFragment(beyond).isNull());
  const negative = { bufferId: 7n, offset: -4, size: 32 };
  assert.ok(buffers.getFragment(negative).isNull());
});

pool('allocates up to capacity', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(64 * 4 + 256 * 4);
  const small = createAllocator(mapping, 0, 64, 4);
  const large = createAllocator(mapping, 256, 256, 4);
  assert.ok(buffers.addBlockBuffer(3n, mapping, [small, large]));
  assert.is(buffers.getTotalBlockCapacity(64), 3 * 64);
  assert.is(buffers.getTotalBlockCapacity(256), 3 * 256);
  assert.is(buffers.getTotalBlockCapacity(128), 0);

  const taken: Fragment[] = [];
  for (let i = 0; i < 3; i++) {
    const fragment = buffers.allocateBlock(64);
    assert.ok(fragment.isAddressable());
    assert.is(fragment.bufferId, 3n);
    assert.is(fragment.size, 64);
    taken.push(fragment);
  }
  assert.ok(buffers.allocateBlock(64).isNull());

  // The descriptor of an allocated block resolves to the same bytes.
  const resolved = buffers.getFragment(taken[0]!.descriptor);
  assert.is(resolved.bytes!.byteOffset, taken[0]!.bytes!.byteOffset);

  assert.not.ok(buffers.freeBlock({ bufferId: 3n, offset: 0, size: 64 }));
  assert.not.ok(buffers.freeBlock({ bufferId: 3n, offset: 96, size: 64 }));
  assert.not.ok(buffers.freeBlock({ bufferId: 9n, offset: 64, size: 64 }));
  assert.not.ok(buffers.freeBlock({ bufferId: 3n, offset: 64, size: 32 }));
  for (const fragment of taken) assert.ok(buffers.freeBlock(fragment));
  assert.ok(buffers.allocateBlock(64).isAddressable());
});

pool('uses only the smallest fitting size', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(64 * 2 + 256 * 2);
  buffers.addBlockBuffer(0n, mapping, [
    createAllocator(mapping, 0, 64, 2),
    createAllocator(mapping, 128, 256, 2),
  ]);
  assert.is(buffers.allocateBlock(1).size, 64);
  assert.ok(buffers.allocateBlock(64).isNull());
  assert.is(buffers.allocateBlock(65).size, 256);
  assert.ok(buffers.allocateBlock(200).isNull());
  assert.ok(buffers.allocateBlock(257).isNull());
});

pool('spreads one size across buffers', () => {
  const buffers = new BufferPool();
  const first = createMapping(64 * 2);
  const second = createMapping(64 * 2);
  buffers.addBlockBuffer(1n, first, [createAllocator(first, 0, 64, 2)]);
  buffers.addBlockBuffer(2n, second, [createAllocator(second, 0, 64, 2)]);
  assert.is(buffers.getTotalBlockCapacity(64), 128);
  const ids = [buffers.allocateBlock(64), buffers.allocateBlock(64)].map(
    (fragment) => fragment.bufferId,
  );
  assert.equal(ids.sort(), [1n, 2n]);
  assert.ok(buffers.allocateBlock(64).isNull());
});

pool('best effort falls back to smaller', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(64 * 2 + 256 * 2 + 1024 * 2);
  buffers.addBlockBuffer(0n, mapping, [
    createAllocator(mapping, 0, 64, 2),
    createAllocator(mapping, 128, 256, 2),
    createAllocator(mapping, 640, 1024, 2),
  ]);
  assert.is(buffers.allocateBlockBestEffort(300).size, 1024);
  assert.is(buffers.allocateBlockBestEffort(300).size, 256);
  assert.is(buffers.allocateBlockBestEffort(300).size, 64);
  assert.ok(buffers.allocateBlockBestEffort(300).isNull());
  assert.ok(buffers.allocateBlockBestEffort(4096).isNull());
});

pool('best effort never grows past need', () => {
  const buffers = new BufferPool();
  const mapping = createMapping(64 * 2 + 1024 * 2);
  buffers.addBlockBuffer(0n, mapping, [
    createAllocator(mapping, 0, 64, 2),
    createAllocator(mapping, 128, 1024, 2),
  ]);
  assert.is(buffers.allocateBlockBestEffort(64).size, 64);
  assert.ok(buffers.allocateBlockBestEffort(64).isNull());
  assert.is(buffers.allocateBlockBestEffort(4096).size, 1024);
});

pool('waitForBuffer fires on add', () => {
  const buffers = new BufferPool();
  const events: string[] = [];
  buffers.waitForBuffer(5n).subscribe({
    next: () => events.push('next'),
    complete: () => events.push('complete'),
  });
  const cancelled = buffers.waitForBuffer(5n).subscribe(() => {
    events.push('cancelled');
  });
  cancelled.unsubscribe();
  assert.equal(events, []);

  buffers.addBlockBuffer(5n, createMapping(64), []);
  assert.equal(events, ['next', 'complete']);

  buffers.waitForBuffer(5n).subscribe(() => events.push('known'));
  assert.equal(events, ['next', 'complete', 'known']);
});

pool('close errors buffer waiters', () => {
  const buffers = new BufferPool();
  const errors: unknown[] = [];
  buffers.waitForBuffer(5n).subscribe({ error: (e) => errors.push(e) });
  buffers.close('gone');
  assert.equal(errors, ['gone']);
  buffers.waitForBuffer(6n).subscribe({ error: (e) => errors.push(e) });
  assert.equal(errors, ['gone', 'gone']);
});

pool.run();
