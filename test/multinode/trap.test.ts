// TrapTest over remote routes: each condition fires when a parcel or the
// closure from another node makes it true, and not before. Traps here are
// edge-triggered observables, so a condition that holds at subscription
// fires at once instead of failing as an ipcz trap would.
import { firstValueFrom, type Observable } from 'rxjs';
import * as assert from 'uvu/assert';
import type { TrapEvent } from '../../src/index';
import {
  multinodeSuite,
  waitForPeerClosed,
  waitForStatus,
  waitToGetText,
  withTimeout,
  type NodeContext,
} from './harness';

/**
 * Serves commands from the broker on portal 1 by acting on portal 0:
 * `put X` puts X, `close` closes portal 0.
 */
async function serveCommands(ctx: NodeContext): Promise<void> {
  const [data, control] = ctx.portals;
  for (;;) {
    const command = await waitToGetText(control!, 'control portal');
    if (command === 'end') break;
    if (command === 'close') {
      data!.close();
    } else if (command.startsWith('put ')) {
      data!.put(command.slice(4));
    } else {
      throw new Error(`unknown command ${command}`);
    }
    control!.put('done');
  }
  await waitForPeerClosed(control!, 'control portal');
}

export const nodes = { serveCommands };

const multinodeTest = multinodeSuite('TrapTest', import.meta.url, nodes);

/** Collects a trap's events as they come. */
function record(events$: Observable<TrapEvent>) {
  const events: TrapEvent[] = [];
  const subscription = events$.subscribe((event) => events.push(event));
  return { events, stop: () => subscription.unsubscribe() };
}

multinodeTest('PeerClosed', async (t) => {
  const [data, control] = t.spawn('serveCommands', { portals: 2 });
  const trap = record(data!.trap({ peerClosed: true }));
  control!.put('put x');
  assert.is(await waitToGetText(control!, 'control portal'), 'done');
  assert.is(trap.events.length, 0, 'no closure yet');

  control!.put('close');
  assert.is(await waitToGetText(control!, 'control portal'), 'done');
  await waitForPeerClosed(data!, 'data portal');
  assert.is(trap.events.length, 1);
  assert.is(trap.events[0]!.conditions.peerClosed, true);

  // A new subscription fires at once, because the condition holds.
  const again = await firstValueFrom(data!.trap({ peerClosed: true }));
  assert.is(again.conditions.peerClosed, true);
  trap.stop();
  control!.put('end');
  control!.close();
  data!.close();
});

multinodeTest('MinLocalParcels', async (t) => {
  const [data, control] = t.spawn('serveCommands', { portals: 2 });
  const trap = record(data!.trap({ aboveMinLocalParcels: 2 }));
  for (const text of ['a', 'b']) {
    control!.put(`put ${text}`);
    assert.is(await waitToGetText(control!, 'control portal'), 'done');
  }
  await waitForStatus(data!, (s) => s.localParcels === 2, 'two parcels');
  assert.is(trap.events.length, 0, 'two parcels are not above 2');

  control!.put('put c');
  const status = await waitForStatus(
    data!,
    (s) => s.localParcels === 3,
    'three parcels',
  );
  assert.is(trap.events.length, 1);
  assert.is(trap.events[0]!.conditions.aboveMinLocalParcels, 2);
  assert.is(trap.events[0]!.status.localParcels, 3);
  assert.is(status.localBytes, 3);
  trap.stop();
  control!.put('end');
  control!.close();
  data!.close();
});

multinodeTest('MinLocalBytes', async (t) => {
  const [data, control] = t.spawn('serveCommands', { portals: 2 });
  const trap = record(data!.trap({ aboveMinLocalBytes: 3 }));
  control!.put('put ab');
  assert.is(await waitToGetText(control!, 'control portal'), 'done');
  await waitForStatus(data!, (s) => s.localBytes === 2, 'two bytes');
  assert.is(trap.events.length, 0, 'two bytes are not above 3');

  control!.put('put cd');
  await waitForStatus(data!, (s) => s.localBytes === 4, 'four bytes');
  assert.is(trap.events.length, 1);
  assert.is(trap.events[0]!.status.localBytes, 4);
  trap.stop();
  control!.put('end');
  control!.close();
  data!.close();
});

multinodeTest('NewLocalParcel', async (t) => {
  const [data, control] = t.spawn('serveCommands', { portals: 2 });
  const trap = record(data!.trap({ newLocalParcel: true }));
  for (const [index, text] of ['a', 'b', 'c'].entries()) {
    control!.put(`put ${text}`);
    await waitForStatus(
      data!,
      (s) => s.localParcels === index + 1,
      `parcel ${text}`,
    );
    assert.is(trap.events.length, index + 1, `one event per parcel`);
    assert.is(await waitToGetText(control!, 'control portal'), 'done');
  }
  // Reading a parcel is no new parcel.
  assert.is(data!.get().text(), 'a');
  assert.is(trap.events.length, 3);
  trap.stop();
  control!.put('end');
  control!.close();
  data!.close();
});

multinodeTest('DeadPortal', async (t) => {
  const [data, control] = t.spawn('serveCommands', { portals: 2 });
  const trap = record(data!.trap({ dead: true }));
  control!.put('put last');
  assert.is(await waitToGetText(control!, 'control portal'), 'done');
  control!.put('close');
  assert.is(await waitToGetText(control!, 'control portal'), 'done');

  const status = await waitForPeerClosed(data!, 'data portal');
  await waitForStatus(data!, (s) => s.localParcels === 1, 'the last parcel');
  assert.is(status.dead, false, 'a parcel is still queued');
  assert.is(trap.events.length, 0);

  assert.is(data!.get().text(), 'last');
  await waitForStatus(data!, (s) => s.dead, 'a dead portal');
  assert.is(trap.events.length, 1);
  assert.is(trap.events[0]!.conditions.dead, true);
  trap.stop();
  control!.put('end');
  control!.close();
  data!.close();
});

multinodeTest('MultipleTraps', async (t) => {
  const [data, control] = t.spawn('serveCommands', { portals: 2 });
  const parcels = record(data!.trap({ aboveMinLocalParcels: 0 }));
  const closure = record(data!.trap({ peerClosed: true }));
  const either = record(
    data!.trap({ aboveMinLocalParcels: 0, peerClosed: true }),
  );

  control!.put('put x');
  await waitForStatus(data!, (s) => s.localParcels === 1, 'a parcel');
  assert.is(await waitToGetText(control!, 'control portal'), 'done');
  assert.is(parcels.events.length, 1);
  assert.is(closure.events.length, 0);
  assert.is(either.events.length, 1);

  control!.put('close');
  assert.is(await waitToGetText(control!, 'control portal'), 'done');
  await withTimeout(
    firstValueFrom(data!.trap({ peerClosed: true })),
    'peer closure',
  );
  assert.is(parcels.events.length, 1, 'the parcel trap did not fire again');
  assert.is(closure.events.length, 1);
  assert.is(either.events.length, 2);
  assert.equal(either.events[1]!.conditions, { peerClosed: true });
  for (const trap of [parcels, closure, either]) trap.stop();
  control!.put('end');
  control!.close();
  data!.close();
});

multinodeTest.run();
