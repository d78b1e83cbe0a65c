// QueueingTest: put limits and remote-queue traps that follow the state
// of the peer's inbound queue on another node, and two-phase operations
// on remote routes.
import { firstValueFrom, skip } from 'rxjs';
import * as assert from 'uvu/assert';
import { IpczError, type Portal } from '../../src/index';
import {
  expectIpczError,
  multinodeSuite,
  waitForDead,
  waitForPeerClosed,
  waitForStatus,
  waitToGetText,
  withTimeout,
  type NodeContext,
} from './harness';

const STRESS_TOTAL_BYTES = 64 * 1024;
const STRESS_MAX_QUEUED_BYTES = 256;
const STRESS_MAX_CHUNK = 64;

export const nodes = {
  // Lets two parcels queue up unread on portal 0, reports on portal 1,
  // then reads one on request.
  async slowReader(ctx: NodeContext) {
    const [data, control] = ctx.portals;
    await waitForStatus(data!, (s) => s.localParcels === 2, 'two parcels');
    control!.put('queued 2');
    assert.is(await waitToGetText(control!, 'control portal'), 'read one');
    assert.is(data!.get().text(), 'a');
    await waitForStatus(data!, (s) => s.peerClosed, 'peer closure');
    assert.is(data!.get().text(), 'b');
    assert.is(data!.get().text(), 'c');
    await waitForDead(data!, 'data portal');
    await waitForPeerClosed(control!, 'control portal');
  },

  async twoPhaseWriter(ctx: NodeContext) {
    const [broker] = ctx.portals;
    const put = broker!.beginPut(5);
    expectIpczError(() => broker!.beginPut(1), 'ALREADY_EXISTS', 'beginPut');
    put.data.set(new TextEncoder().encode('hello'));
    put.commit(3);
    const second = broker!.beginPut(5);
    second.data.set(new TextEncoder().encode('world'));
    second.commit(5);
    await waitForPeerClosed(broker!, 'client portal');
  },

  // Reads parcels as they come and checks that the sender's limit held:
  // no more than STRESS_MAX_QUEUED_BYTES were ever queued here.
  async limitedReader(ctx: NodeContext) {
    const [broker] = ctx.portals;
    broker!.put('ready');
    let received = 0;
    let expectedByte = 0;
    while (received < STRESS_TOTAL_BYTES) {
      await withTimeout(
        firstValueFrom(broker!.trap({ aboveMinLocalBytes: 0 })),
        'bytes on the reader portal',
      );
      const status = broker!.status();
      assert.ok(
        status.localBytes <= STRESS_MAX_QUEUED_BYTES,
        `${status.localBytes} bytes were queued, over the limit`,
      );
      for (let i = 0; i < status.localParcels; i++) {
        const parcel = broker!.get();
        for (const byte of parcel.data) {
          assert.is(byte, expectedByte, `byte ${received} is out of order`);
          expectedByte = (expectedByte + 1) & 0xff;
          received++;
        }
      }
    }
    broker!.put('received all');
    await waitForPeerClosed(broker!, 'reader portal');
  },
};

const multinodeTest = multinodeSuite('QueueingTest', import.meta.url, nodes);

multinodeTest('RemoteQueueFeedback', async (t) => {
  const [data, control] = t.spawn('slowReader', { portals: 2 });
  const limits = { maxQueuedParcels: 2 };
  data!.put('a', [], { limits });
  data!.put('b', [], { limits });
  assert.is(await waitToGetText(control!, 'control portal'), 'queued 2');

  const status = data!.status();
  assert.is(status.remoteParcels, 2);
  assert.is(status.remoteBytes, 2);
  expectIpczError(
    () => data!.put('c', [], { limits }),
    'RESOURCE_EXHAUSTED',
    'a put over maxQueuedParcels',
  );
  expectIpczError(
    () => data!.put('c', [], { limits: { maxQueuedBytes: 2 } }),
    'RESOURCE_EXHAUSTED',
    'a put over maxQueuedBytes',
  );

  // The trap fires once the reader has taken a parcel.
  const below = firstValueFrom(data!.trap({ belowMaxRemoteParcels: 2 }));
  control!.put('read one');
  const event = await withTimeout(below, 'belowMaxRemoteParcels');
  assert.ok(event.conditions.belowMaxRemoteParcels !== undefined);
  assert.ok(event.status.remoteParcels < 2);
  data!.put('c', [], { limits });
  data!.close();
  control!.close();
});

multinodeTest('TwoPhaseQueueing', async (t) => {
  const [client] = t.spawn('twoPhaseWriter');
  assert.is(await waitToGetText(client!, 'broker portal'), 'hel');
  await waitForStatus(client!, (s) => s.localParcels === 1, 'second parcel');

  // A partial two-phase get leaves the rest of the parcel queued.
  const get = client!.beginGet();
  expectIpczError(() => client!.beginGet(), 'ALREADY_EXISTS', 'beginGet');
  expectIpczError(() => client!.get(), 'ALREADY_EXISTS', 'get while pending');
  assert.is(new TextDecoder().decode(get.data), 'world');
  expectIpczError(() => get.commit(6), 'OUT_OF_RANGE', 'commit of 6 bytes');
  get.commit(2);
  assert.is(client!.status().localBytes, 3);
  assert.is(client!.get().text(), 'rld');
  expectIpczError(() => client!.get(), 'UNAVAILABLE', 'get of an empty queue');
  client!.close();
});

multinodeTest('RemoteQueueFeedbackStressTest', async (t) => {
  const [reader] = t.spawn('limitedReader');
  // NOTE: parcels put before the connection is up count against the
  // limit, but neither status$ nor the remote traps change when they
  // are sent. Starting after a first parcel from the reader avoids that.
  assert.is(await waitToGetText(reader!, 'broker portal'), 'ready');
  const limits = { maxQueuedBytes: STRESS_MAX_QUEUED_BYTES };
  let sent = 0;
  let chunkSize = 1;
  while (sent < STRESS_TOTAL_BYTES) {
    const size = Math.min(chunkSize, STRESS_TOTAL_BYTES - sent);
    const chunk = Uint8Array.from({ length: size }, (_, i) => (sent + i) & 0xff);
    if (tryPut(reader!, chunk, limits)) {
      sent += size;
      chunkSize = (chunkSize % STRESS_MAX_CHUNK) + 1;
      continue;
    }
    // Waits for the next status change instead of retrying at once. The
    // trap turns on remote monitoring, so consumption by the reader is
    // a status change here.
    const monitor = reader!.trap({ belowMaxRemoteBytes: 1 }).subscribe();
    try {
      await withTimeout(
        firstValueFrom(reader!.status$.pipe(skip(1))),
        'a change of the remote queue',
      );
    } finally {
      monitor.unsubscribe();
    }
  }
  assert.is(await waitToGetText(reader!, 'broker portal'), 'received all');
  reader!.close();
});

/** Puts `chunk` within `limits`; returns false when the limit refused it. */
function tryPut(
  portal: Portal,
  chunk: Uint8Array,
  limits: { maxQueuedBytes: number },
): boolean {
  try {
    portal.put(chunk, [], { limits });
    return true;
  } catch (error) {
    if (error instanceof IpczError && error.code === 'RESOURCE_EXHAUSTED') {
      return false;
    }
    throw error;
  }
}

multinodeTest.run();
