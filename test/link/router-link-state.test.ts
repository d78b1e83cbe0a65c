import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  RouterLinkState,
  RouterLinkStatus as Status,
} from '../../src/link/router-link-state';
import { NodeName } from '../../src/wire/node-name';

function createState(): RouterLinkState {
  const bytes = new Uint8Array(new SharedArrayBuffer(64));
  return RouterLinkState.initialize(bytes);
}

const state = suite('RouterLinkState');

state('initialize sets count and zeroes', () => {
  const bytes = new Uint8Array(new SharedArrayBuffer(64)).fill(0xff);
  const fresh = RouterLinkState.initialize(bytes);
  assert.is(new Int32Array(bytes.buffer, 0, 1)[0], 1);
  assert.is(fresh.status, 0);
  assert.ok(fresh.allowedBypassRequestSource.equals(NodeName.invalid));
  assert.equal(fresh.readQueueState('B'), {
    numParcelsConsumed: 0n,
    numBytesConsumed: 0n,
    monitored: false,
  });
});

state('locking needs both sides stable', () => {
  const link = createState();
  assert.not.ok(link.tryLock('A'));
  assert.is(link.status, 0);

  link.setSideStable('A');
  assert.not.ok(link.tryLock('A'));
  assert.is(link.status, Status.SideAStable | Status.SideAWaiting);
  assert.not.ok(link.tryLock('B'));
  assert.is(link.status, Status.SideAStable | Status.SideAWaiting);

  link.setSideStable('B');
  assert.ok(link.tryLock('A'));
  assert.is(
    link.status,
    Status.Stable | Status.SideAWaiting | Status.LockedBySideA,
  );
  assert.ok(link.isLockedBy('A'));
  assert.not.ok(link.isLockedBy('B'));
  assert.not.ok(link.tryLock('B'));
  assert.not.ok(link.tryLock('A'));

  link.unlock('A');
  assert.is(link.status, Status.Stable | Status.SideAWaiting);
  assert.ok(link.tryLock('B'));
  assert.is(
    link.status,
    Status.Stable | Status.SideAWaiting | Status.LockedBySideB,
  );
  link.unlock('B');
  assert.is(link.status, Status.Stable | Status.SideAWaiting);
});

state('waiting bit resets when stable', () => {
  const link = createState();
  link.setSideStable('B');
  assert.not.ok(link.tryLock('B'));
  assert.is(link.status, Status.SideBStable | Status.SideBWaiting);
  assert.not.ok(link.resetWaitingBit('B'));
  assert.not.ok(link.resetWaitingBit('A'));

  link.setSideStable('A');
  assert.ok(link.tryLock('A'));
  assert.not.ok(link.resetWaitingBit('B'));
  link.unlock('A');
  assert.ok(link.resetWaitingBit('B'));
  assert.is(link.status, Status.Stable);
  assert.not.ok(link.resetWaitingBit('B'));
});

state('bypass lock stores the source', () => {
  const link = createState();
  const source = new NodeName(5n, 6n);
  const other = new NodeName(5n, 7n);
  link.setSideStable('A');
  link.setSideStable('B');

  assert.ok(link.tryLockForBypass('A', source));
  assert.ok(link.allowedBypassRequestSource.equals(source));
  assert.ok(link.canNodeRequestBypass('B', source));
  assert.not.ok(link.canNodeRequestBypass('B', other));
  assert.not.ok(link.canNodeRequestBypass('A', source));

  // A failed attempt by the other side leaves the stored source alone.
  assert.not.ok(link.tryLockForBypass('B', other));
  assert.ok(link.canNodeRequestBypass('B', source));

  link.unlock('A');
  assert.not.ok(link.canNodeRequestBypass('B', source));
});

state('queue state and monitor bit', () => {
  const link = createState();
  assert.not.ok(link.updateQueueState('A', 3n, 300n));
  assert.equal(link.readQueueState('A'), {
    numParcelsConsumed: 3n,
    numBytesConsumed: 300n,
    monitored: false,
  });

  // B requests notification of A's next update.
  assert.not.ok(link.setMonitoring('A', true));
  assert.ok(link.readQueueState('A').monitored);
  assert.is(link.readQueueState('A').numParcelsConsumed, 3n);
  assert.ok(link.setMonitoring('A', true));

  assert.ok(link.updateQueueState('A', 4n, 400n));
  assert.not.ok(link.readQueueState('A').monitored);
  assert.not.ok(link.updateQueueState('A', 5n, 500n));
  assert.equal(link.readQueueState('B').numParcelsConsumed, 0n);

  link.setMonitoring('B', true);
  assert.ok(link.setMonitoring('B', false));
  assert.not.ok(link.updateQueueState('B', 1n, 1n));

  const huge = (1n << 64n) - 1n;
  link.updateQueueState('B', huge, huge);
  assert.is(link.readQueueState('B').numParcelsConsumed, (1n << 63n) - 1n);
  assert.is(link.readQueueState('B').numBytesConsumed, (1n << 63n) - 1n);
});

state('rejects short or unaligned bytes', () => {
  const buffer = new SharedArrayBuffer(128);
  assert.throws(() => new RouterLinkState(new Uint8Array(buffer, 0, 32)));
  assert.throws(() => new RouterLinkState(new Uint8Array(buffer, 4, 64)));
});

state.run();
