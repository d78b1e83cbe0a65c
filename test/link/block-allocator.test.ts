import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Worker,
  isMainThread,
  parentPort,
  workerData,
} from 'node:worker_threads';
import { BlockAllocator } from '../../src/link/block-allocator';

/** Input of the worker thread that this same file starts. */
interface StressInput {
  buffer: SharedArrayBuffer;
  blockSize: number;
  rounds: number;
  marker: number;
}

// Words of the control buffer that lines up the two threads.
const GO = 0;
const WORKER_STARTED = 1;
const MAIN_DONE = 2;

/** Runs in the worker: waits for the main thread's go, then stresses. */
function runWorker(input: StressInput & { control: SharedArrayBuffer }) {
  const control = new Int32Array(input.control);
  parentPort!.postMessage({ ready: true });
  Atomics.wait(control, GO, 0, 10_000);
  const mainDoneAtStart = Atomics.load(control, MAIN_DONE);
  Atomics.store(control, WORKER_STARTED, 1);
  const corrupted = runStress(input);
  parentPort!.postMessage({ corrupted, mainDoneAtStart });
}

/**
 * Allocates up to 16 blocks at a time, stamps each with `marker` and a
 * serial number, checks the stamps are intact before freeing, and returns
 * the number of corrupted blocks seen. Two threads running it on one
 * buffer catch a block handed out twice.
 */
function runStress(input: StressInput): number {
  const allocator = new BlockAllocator(
    new Uint8Array(input.buffer),
    input.blockSize,
  );
  let corrupted = 0;
  let serial = 0;
  const held: Array<{ index: number; serial: number }> = [];
  for (let round = 0; round < input.rounds; round++) {
    const target = 1 + (round % 16);
    while (held.length < target) {
      const index = allocator.allocateIndex();
      if (index < 0) break;
      serial += 1;
      const words = new Int32Array(input.buffer, index * input.blockSize, 2);
      Atomics.store(words, 0, input.marker);
      Atomics.store(words, 1, serial);
      held.push({ index, serial });
    }
    while (held.length > (round * 7) % 5) {
      const block = held.pop()!;
      const words = new Int32Array(
        input.buffer,
        block.index * input.blockSize,
        2,
      );
      if (Atomics.load(words, 0) !== input.marker) corrupted += 1;
      if (Atomics.load(words, 1) !== block.serial) corrupted += 1;
      if (!allocator.freeIndex(block.index)) corrupted += 1;
    }
  }
  for (const block of held) allocator.freeIndex(block.index);
  return corrupted;
}

/**
 * Starts a worker thread running the TypeScript module at `moduleUrl`.
 * Node 20 ignores `execArgv: ['--import', 'tsx']` for workers (the module
 * then fails with ERR_UNKNOWN_FILE_EXTENSION), so the worker registers
 * tsx's loader through its API before importing the module.
 */
function startTypeScriptWorker(moduleUrl: string, data: unknown): Worker {
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const code =
    `import(${JSON.stringify(tsxApi)})` +
    `.then((api) => { api.register(); ` +
    `return import(${JSON.stringify(moduleUrl)}); })`;
  return new Worker(code, { eval: true, workerData: data });
}

function createRegion(size: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(size));
}

const allocator = suite('BlockAllocator');

allocator('allocates all then fails', () => {
  const blocks = new BlockAllocator(createRegion(64 * 10), 64);
  blocks.initialize();
  assert.is(blocks.numBlocks, 10);
  assert.is(blocks.capacity, 9);

  const taken: number[] = [];
  for (let i = 0; i < 9; i++) taken.push(blocks.allocateIndex());
  assert.equal(
    [...taken].sort((a, b) => a - b),
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.is(blocks.allocateIndex(), -1);

  for (const index of taken) assert.ok(blocks.freeIndex(index));
  const again: number[] = [];
  for (let i = 0; i < 9; i++) again.push(blocks.allocateIndex());
  assert.not.ok(again.includes(-1));
  assert.is(blocks.allocateIndex(), -1);
});

allocator('reuses the last freed block', () => {
  const blocks = new BlockAllocator(createRegion(32 * 8), 32);
  blocks.initialize();
  const first = blocks.allocateIndex();
  const second = blocks.allocateIndex();
  assert.ok(blocks.freeIndex(first));
  assert.is(blocks.allocateIndex(), first);
  assert.is.not(second, first);
});

allocator('initialize rewrites dirty memory', () => {
  const region = createRegion(16 * 5);
  region.fill(0xff);
  const blocks = new BlockAllocator(region, 16);
  blocks.initialize();
  const taken = [1, 2, 3, 4].map(() => blocks.allocateIndex());
  assert.equal(taken, [1, 2, 3, 4]);
  assert.is(blocks.allocateIndex(), -1);
});

allocator('corrupt link reports exhaustion', () => {
  const region = createRegion(16 * 4);
  const blocks = new BlockAllocator(region, 16);
  blocks.initialize();
  // Point block 2's link far past the end, as a hostile peer could.
  new Int16Array(region.buffer, 2 * 16, 2)[1] = 1000;
  assert.is(blocks.allocateIndex(), 1);
  assert.is(blocks.allocateIndex(), -1);
  assert.ok(blocks.freeIndex(1));
  assert.is(blocks.allocateIndex(), 1);
});

allocator('two views share one free list', () => {
  const region = createRegion(64 * 4);
  const mine = new BlockAllocator(region, 64);
  mine.initialize();
  const theirs = new BlockAllocator(region, 64);
  const a = mine.allocateIndex();
  const b = theirs.allocateIndex();
  const c = mine.allocateIndex();
  assert.equal([a, b, c].sort(), [1, 2, 3]);
  assert.is(theirs.allocateIndex(), -1);
  assert.ok(theirs.freeIndex(a));
  assert.is(mine.allocateIndex(), a);
});

allocator('rejects invalid frees', () => {
  const region = createRegion(64 * 4);
  const blocks = new BlockAllocator(region, 64);
  blocks.initialize();
  assert.not.ok(blocks.freeIndex(0));
  assert.not.ok(blocks.freeIndex(4));
  assert.not.ok(blocks.freeIndex(-1));
  assert.not.ok(blocks.freeIndex(1.5));
  assert.not.ok(blocks.free(region.subarray(0, 64)));
  assert.not.ok(blocks.free(region.subarray(65, 129)));
  assert.not.ok(blocks.free(createRegion(64)));

  const block = blocks.allocate()!;
  assert.is(block.byteLength, 64);
  assert.ok(blocks.free(block));
});

allocator('rejects invalid geometry', () => {
  assert.throws(() => new BlockAllocator(createRegion(64), 6), /INVALID/);
  assert.throws(() => new BlockAllocator(createRegion(64), 4), /INVALID/);
  assert.throws(() => new BlockAllocator(createRegion(4), 8), /INVALID/);
  assert.throws(
    () => new BlockAllocator(createRegion(8 * 32768), 8),
    /32767/,
  );
  const unaligned = createRegion(128).subarray(2, 66);
  assert.throws(() => new BlockAllocator(unaligned, 8), /aligned/);
});

allocator('handles the maximum block count', () => {
  const blocks = new BlockAllocator(createRegion(8 * 32767), 8);
  blocks.initialize();
  let count = 0;
  while (blocks.allocateIndex() >= 0) count += 1;
  assert.is(count, 32766);
});

allocator('worker and main thread lose no block', async () => {
  const blockSize = 64;
  const numBlocks = 256;
  const buffer = new SharedArrayBuffer(blockSize * numBlocks);
  new BlockAllocator(new Uint8Array(buffer), blockSize).initialize();
  const controlBuffer = new SharedArrayBuffer(3 * 4);
  const control = new Int32Array(controlBuffer);

  const rounds = 50_000;
  const worker = startTypeScriptWorker(import.meta.url, {
    buffer,
    blockSize,
    rounds,
    marker: 2,
    control: controlBuffer,
  });
  try {
    const messages: Array<Record<string, number>> = [];
    const nextMessage = () =>
      new Promise<Record<string, number>>((resolve, reject) => {
        if (messages.length > 0) return resolve(messages.shift()!);
        worker.once('error', reject);
        worker.once('message', () => resolve(messages.shift()!));
      });
    worker.on('message', (message) => messages.push(message));

    await nextMessage(); // the worker is ready
    Atomics.store(control, GO, 1);
    Atomics.notify(control, GO);
    const mainCorrupted = runStress({ buffer, blockSize, rounds, marker: 1 });
    const workerStartedBeforeMainDone = Atomics.load(control, WORKER_STARTED);
    Atomics.store(control, MAIN_DONE, 1);
    const result = await nextMessage();

    assert.is(mainCorrupted, 0);
    assert.is(result.corrupted, 0);
    // Both runs overlapped in time, so the check above saw real contention.
    assert.is(workerStartedBeforeMainDone, 1);
    assert.is(result.mainDoneAtStart, 0);
  } finally {
    await worker.terminate();
  }

  const check = new BlockAllocator(new Uint8Array(buffer), blockSize);
  const seen = new Set<number>();
  for (let index = check.allocateIndex(); index >= 0; ) {
    seen.add(index);
    index = check.allocateIndex();
  }
  assert.is(seen.size, numBlocks - 1);
});

if (isMainThread) {
  allocator.run();
} else {
  runWorker(workerData as StressInput & { control: SharedArrayBuffer });
}
