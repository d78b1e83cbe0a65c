import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Observable, Subject, map, of, throwError, EMPTY } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import type { SharedMemory } from '../../src/drivers/driver';
import { IpczError } from '../../src/errors';
import type { BufferId, Fragment } from '../../src/link/fragment';
import {
  MAX_CAPACITY_PER_BLOCK_SIZE,
  MAX_INITIAL_PORTALS,
  NodeLinkMemory,
  PRIMARY_BUFFER_SIZE,
  type NodeLinkMemoryOptions,
} from '../../src/link/node-link-memory';
import { NodeName } from '../../src/wire/node-name';

function createMemory(size: number): SharedMemory {
  const buffer = new SharedArrayBuffer(size);
  return { kind: 'memory', size, map: () => new Uint8Array(buffer) };
}

/**
 * Two NodeLinkMemory objects over one primary buffer, as the two ends of
 * a link see it. Growth on either side shares the new buffer with the
 * other synchronously, the way an AddBlockBuffer message would, and the
 * test supplies the result of each allocation.
 */
function createLinkedPair(
  allocate: (size: number) => Observable<SharedMemory> = (size) =>
    of(createMemory(size)),
) {
  const primary = createMemory(PRIMARY_BUFFER_SIZE);
  const shared: Array<{ id: BufferId; blockSize: number; size: number }> = [];
  const requestedSizes: number[] = [];
  const usableWhenShared: boolean[] = [];
  let sideB: NodeLinkMemory | null = null;
  const optionsA: NodeLinkMemoryOptions = {
    allocate: (size) => {
      requestedSizes.push(size);
      return allocate(size);
    },
    shareBuffer: (id, blockSize, memory) => {
      shared.push({ id, blockSize, size: memory.size });
      const probe = { bufferId: id, offset: 0, size: blockSize };
      usableWhenShared.push(!sideA.getFragment(probe).isPending());
      if (!sideB!.addBlockBuffer(id, blockSize, memory)) {
        throw new Error(`peer rejected buffer ${id}`);
      }
    },
  };
  const sideA = NodeLinkMemory.create(primary, optionsA);
  sideB = NodeLinkMemory.adopt(primary);
  return { sideA, sideB, shared, requestedSizes, usableWhenShared };
}

/** Allocates `size`-byte fragments until one fails; returns the others. */
function exhaust(memory: NodeLinkMemory, size: number): Fragment[] {
  const taken: Fragment[] = [];
  for (;;) {
    const fragment = memory.allocateFragment(size);
    if (fragment.isNull()) return taken;
    taken.push(fragment);
  }
}

function collect<T>(source: Observable<T>) {
  const result = {
    values: [] as T[],
    error: null as unknown,
    done: false,
  };
  source.subscribe({
    next: (value) => result.values.push(value),
    error: (error) => {
      result.error = error;
      result.done = true;
    },
    complete: () => {
      result.done = true;
    },
  });
  return result;
}

const memory = suite('NodeLinkMemory');

memory('basic alloc and free', () => {
  const { sideA } = createLinkedPair();
  const fragment = sideA.allocateFragment(100);
  assert.ok(fragment.isAddressable());
  // 100 bytes need a 128-byte block, and the primary buffer has none, so
  // the next size up serves it.
  assert.is(fragment.size, 256);
  const wrongSize = sideA.getFragment({ ...fragment.descriptor, size: 64 });
  assert.not.ok(sideA.freeFragment(wrongSize));
  assert.ok(sideA.freeFragment(fragment));
});

memory('zero size fails', () => {
  const { sideA, requestedSizes } = createLinkedPair();
  assert.ok(sideA.allocateFragment(0).isNull());
  assert.ok(sideA.allocateFragment(-1).isNull());
  assert.ok(sideA.allocateFragment(1.5).isNull());
  assert.equal(requestedSizes, []);
});

memory('minimum size is 64', () => {
  const { sideA } = createLinkedPair();
  assert.is(sideA.allocateFragment(1).size, 64);
  assert.is(sideA.allocateFragment(64).size, 64);
});

memory('rounds 250 up to 256', () => {
  const { sideA } = createLinkedPair();
  assert.is(sideA.allocateFragment(250).size, 256);
});

memory('oversized allocation fails', () => {
  const { sideA, requestedSizes } = createLinkedPair();
  assert.ok(sideA.allocateFragment(64 * 1024 * 1024).isNull());
  assert.ok(sideA.allocateFragment(1024 * 1024 + 1).isNull());
  assert.equal(requestedSizes, []);
});

memory('counters start after reserved ids', () => {
  const { sideA, sideB } = createLinkedPair();
  assert.is(sideA.allocateBufferId(), 1n);
  assert.is(sideB.allocateBufferId(), 2n);
  assert.is(sideB.allocateSublinkIds(3), 12n);
  assert.is(sideA.allocateSublinkIds(1), 15n);
  assert.is(sideB.allocateSublinkIds(0), 16n);
  assert.throws(() => sideA.allocateSublinkIds(-1), /INVALID_ARGUMENT/);
});

memory('initial router link states are shared', () => {
  const { sideA, sideB } = createLinkedPair();
  const mine = sideA.getInitialRouterLinkState(3);
  const theirs = sideB.getInitialRouterLinkState(3);
  assert.is(mine.bytes.byteOffset, 256 + 3 * 64);
  assert.is(mine.status, 0);
  mine.setSideStable('A');
  theirs.setSideStable('B');
  assert.ok(theirs.tryLockForBypass('B', new NodeName(1n, 2n)));
  assert.ok(mine.canNodeRequestBypass('A', new NodeName(1n, 2n)));
  assert.is(sideB.getInitialRouterLinkState(4).status, 0);
  assert.throws(
    () => sideA.getInitialRouterLinkState(MAX_INITIAL_PORTALS),
    /INVALID_ARGUMENT/,
  );
});

memory('rejects a small primary buffer', () => {
  assert.throws(
    () => NodeLinkMemory.create(createMemory(PRIMARY_BUFFER_SIZE / 2)),
    /INVALID_ARGUMENT/,
  );
});

memory('shared primary buffer', () => {
  const { sideA, sideB } = createLinkedPair();
  const fromA = sideA.allocateFragment(64);
  const fromB = sideB.allocateFragment(64);
  assert.ok(fromA.isAddressable());
  assert.ok(fromB.isAddressable());
  assert.is.not(fromA.offset, fromB.offset);

  const seenByB = sideB.getFragment(fromA.descriptor);
  const seenByA = sideA.getFragment(fromB.descriptor);
  fromA.bytes![5] = 42;
  fromB.bytes![6] = 43;
  assert.is(seenByB.bytes![5], 42);
  assert.is(seenByA.bytes![6], 43);

  // Each side frees the other's block, and the block comes back.
  assert.ok(sideB.freeFragment(seenByB));
  assert.ok(sideA.freeFragment(seenByA));
  const reused = [sideA.allocateFragment(64), sideA.allocateFragment(64)];
  const offsets = reused.map((fragment) => fragment.offset).sort();
  assert.equal(offsets, [fromA.offset, fromB.offset].sort());
});

memory('shared primary block accounting', () => {
  const { sideA, sideB } = createLinkedPair(() => EMPTY);
  const fromA = exhaust(sideA, 64);
  assert.is(fromA.length, 63);
  assert.ok(sideB.allocateFragment(64).isNull());
  for (const fragment of fromA) {
    assert.ok(sideB.freeFragment(sideB.getFragment(fragment.descriptor)));
  }
  assert.is(exhaust(sideB, 64).length, 63);
});

memory('expands capacity past primary', () => {
  const { sideA, sideB, shared, requestedSizes, usableWhenShared } =
    createLinkedPair();
  const primaryBlocks = exhaust(sideA, 64);
  assert.is(primaryBlocks.length, 63);
  // The failed allocation started growth, which finished synchronously.
  assert.equal(requestedSizes, [64 * 1024]);
  assert.equal(shared, [{ id: 1n, blockSize: 64, size: 64 * 1024 }]);
  // The buffer was shared before this side could allocate from it.
  assert.equal(usableWhenShared, [false]);
  assert.is(sideA.getBlockCapacity(64), 63 * 64 + 1023 * 64);

  const grown = sideA.allocateFragment(64);
  assert.is(grown.bufferId, 1n);
  grown.bytes!.fill(7);
  const seenByB = sideB.getFragment(grown.descriptor);
  assert.ok(seenByB.isAddressable());
  assert.is(seenByB.bytes![63], 7);
  assert.ok(sideB.freeFragment(seenByB));

  // The peer allocates from the shared buffer too.
  const fromB = sideB.allocateFragment(64);
  assert.is(fromB.bufferId, 1n);
  assert.ok(sideA.getFragment(fromB.descriptor).isAddressable());
});

memory('limited capacity expansion', () => {
  const { sideA, requestedSizes } = createLinkedPair();
  const blockSize = 32 * 1024;
  let failures = 0;
  let allocated = 0;
  // Keep allocating; each failure grows by 8 blocks until the capacity of
  // the size reaches its limit, after which failures stay failures.
  while (failures < 20) {
    if (sideA.allocateFragment(blockSize).isNull()) failures += 1;
    else allocated += 1;
  }
  const capacity = sideA.getBlockCapacity(blockSize);
  assert.ok(capacity >= MAX_CAPACITY_PER_BLOCK_SIZE);
  assert.is(allocated * blockSize, capacity);
  // The primary buffer and each growth give 7 usable blocks (224 KiB),
  // so 9 growths take the capacity from 224 KiB past 2 MiB.
  const growths = requestedSizes.length;
  assert.is(growths, 9);
  assert.ok(sideA.allocateFragment(blockSize).isNull());
  assert.is(requestedSizes.length, growths);

  const result = collect(sideA.allocateFragmentAsync(blockSize));
  assert.is((result.error as IpczError).code, 'RESOURCE_EXHAUSTED');
});

memory('new block sizes appear', () => {
  const { sideA, sideB, shared } = createLinkedPair();
  const size = 512 * 1024;
  assert.ok(sideA.allocateFragment(size).isNull());
  assert.equal(shared, [{ id: 1n, blockSize: size, size: 8 * size }]);
  const fragment = sideA.allocateFragment(size);
  assert.ok(fragment.isAddressable());
  assert.is(fragment.size, size);
  assert.ok(sideB.getFragment(fragment.descriptor).isAddressable());
});

memory('best effort falls back', () => {
  const { sideA, shared } = createLinkedPair(() => EMPTY);
  assert.ok(sideA.allocateFragmentBestEffort(100).isNull());
  const fragment = sideA.allocateFragmentBestEffort(2 * 1024 * 1024);
  assert.is(fragment.size, 64 * 1024);
  assert.equal(shared, []);
});

memory('async allocation waits for growth', () => {
  const scheduler = new TestScheduler((actual, expected) => {
    assert.equal(actual, expected);
  });
  scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
    const allocation = cold('---(m|)', { m: createMemory(64 * 1024) });
    const { sideA, requestedSizes } = createLinkedPair(() => allocation);
    exhaust(sideA, 64);
    const bufferIdOf = map((fragment: Fragment) => fragment.bufferId);

    expectObservable(sideA.allocateFragmentAsync(64).pipe(bufferIdOf)).toBe(
      '---(b|)',
      { b: 1n },
    );
    expectObservable(
      sideA.allocateFragmentAsync(50).pipe(bufferIdOf),
      '-^',
    ).toBe('---(b|)', { b: 1n });
    expectObservable(
      sideA.allocateFragmentAsync(64).pipe(bufferIdOf),
      '-----^',
    ).toBe('-----(b|)', { b: 1n });
    // The exhausting call and both waiters share one allocation.
    expectSubscriptions(allocation.subscriptions).toBe('^--!');
    scheduler.flush();
    assert.equal(requestedSizes, [64 * 1024]);
  });
});

memory('allocate failure does not hang', () => {
  let fail = true;
  const { sideA, requestedSizes } = createLinkedPair((size) =>
    fail
      ? throwError(() => new IpczError('PERMISSION_DENIED', 'sandboxed'))
      : of(createMemory(size)),
  );
  const taken = exhaust(sideA, 256);
  assert.is(taken.length, 47);
  assert.is(requestedSizes.length, 1);

  const growth = collect(sideA.requestBlockCapacity(256));
  assert.equal(growth.values, [false]);
  assert.ok(growth.done);
  const result = collect(sideA.allocateFragmentAsync(256));
  assert.is((result.error as IpczError).code, 'RESOURCE_EXHAUSTED');

  // A later request tries again.
  fail = false;
  const retried = collect(sideA.allocateFragmentAsync(256));
  assert.is(retried.values.length, 1);
  assert.is(retried.values[0]!.bufferId, 1n);
});

memory('empty allocation reports failure', () => {
  const { sideA } = createLinkedPair(() => EMPTY);
  const growth = collect(sideA.requestBlockCapacity(1024));
  assert.equal(growth.values, [false]);
});

memory('close fails pending growth', () => {
  const pending = new Subject<SharedMemory>();
  const { sideA, shared } = createLinkedPair(() => pending);
  const growth = collect(sideA.requestBlockCapacity(1024));
  const fragment = collect(sideA.allocateFragmentAsync(64 * 1024 + 1));
  const waiting = collect(sideA.waitForBuffer(9n));
  assert.not.ok(growth.done);
  assert.not.ok(fragment.done);

  sideA.close();
  assert.equal(growth.values, [false]);
  assert.is((fragment.error as IpczError).code, 'UNAVAILABLE');
  assert.is((waiting.error as IpczError).code, 'UNAVAILABLE');
  assert.not.ok(pending.observed);
  assert.equal(shared, []);
  assert.equal(collect(sideA.requestBlockCapacity(64)).values, [false]);
});

memory('rejects invalid peer buffers', () => {
  const { sideB } = createLinkedPair();
  assert.not.ok(sideB.addBlockBuffer(5n, 48, createMemory(48 * 16)));
  assert.not.ok(sideB.addBlockBuffer(5n, 4, createMemory(64)));
  assert.not.ok(sideB.addBlockBuffer(5n, 8, createMemory(8 * 32768)));
  assert.not.ok(sideB.addBlockBuffer(5n, 1024, createMemory(512)));
  assert.not.ok(sideB.addBlockBuffer(0n, 64, createMemory(64 * 16)));
  assert.ok(sideB.addBlockBuffer(5n, 8, createMemory(8 * 32767)));
  assert.not.ok(sideB.addBlockBuffer(5n, 64, createMemory(64 * 16)));
});

memory('pending fragment resolves on add', () => {
  const { sideB } = createLinkedPair();
  const descriptor = { bufferId: 3n, offset: 128, size: 64 };
  assert.ok(sideB.getFragment(descriptor).isPending());
  const arrived = collect(sideB.waitForBuffer(3n));
  assert.not.ok(arrived.done);
  assert.ok(sideB.addBlockBuffer(3n, 64, createMemory(64 * 1024)));
  assert.ok(arrived.done);
  assert.ok(sideB.getFragment(descriptor).isAddressable());
});

memory('router link state allocation', () => {
  const { sideA, sideB } = createLinkedPair(() => EMPTY);
  const ref = sideA.tryAllocateRouterLinkState()!;
  assert.is(ref.refCount, 1);
  assert.is(ref.fragment.size, 64);

  const adopted = sideB.adoptFragmentRef(
    sideB.getFragment(ref.fragment.descriptor),
  );
  const copy = adopted.clone();
  assert.is(ref.refCount, 2);
  adopted.release();
  copy.release();
  // The block was freed, so the next state reuses it.
  const again = sideA.tryAllocateRouterLinkState()!;
  assert.is(again.fragment.offset, ref.fragment.offset);

  exhaust(sideA, 64);
  assert.is(sideA.tryAllocateRouterLinkState(), null);
  const failed = collect(sideA.allocateRouterLinkState());
  assert.is((failed.error as IpczError).code, 'RESOURCE_EXHAUSTED');
});

memory('router link state waits for growth', () => {
  const { sideA } = createLinkedPair();
  exhaust(sideA, 64);
  const state = collect(sideA.allocateRouterLinkState());
  assert.ok(state.done);
  assert.is(state.values[0]!.refCount, 1);
  assert.is(state.values[0]!.fragment.bufferId, 1n);
});

memory.run();
