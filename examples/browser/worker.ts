/**
 * One node of the browser example, in a Web Worker. The page gives each
 * worker a role in `workerData`:
 * - `producer` opens a portal pair, sends one end to the page, and puts a
 *   parcel into the other every `intervalMs`. It also stores its count
 *   in a shared memory region that the consumer sends it.
 * - `consumer` adopts the end that the page forwards, replies to each
 *   parcel with an acknowledgement, and allocates that shared region
 *   through its allocation delegate, the page's broker.
 * Both report their `stats()` to the page on the control portal.
 */
import { firstValueFrom, interval } from 'rxjs';
import {
  connectToParent,
  type Box,
  type Parcel,
  type Portal,
  type SharedMemory,
} from '../../src/web/worker';

interface ExampleWorkerData {
  role: 'producer' | 'consumer';
  intervalMs: number;
}

/** Time between two stats reports to the page, in ms. */
const REPORT_INTERVAL_MS = 250;
/** Size of the shared region that carries the producer's count. */
const COUNTER_REGION_BYTES = 4096;

const link = await connectToParent();
await link.delegateReady;
const { node } = link;
const control = link.portals[0]!;
const { role, intervalMs } = link.workerData as ExampleWorkerData;
let sent = 0;
let received = 0;
let lastText = '';
let counter: Int32Array | null = null;

function report(): void {
  control.put(
    JSON.stringify({
      role,
      sent,
      received,
      lastText,
      sharedCount: counter === null ? null : Atomics.load(counter, 0),
      stats: node.stats(),
    }),
  );
}

function produce(route: Portal): void {
  route.parcels$.subscribe((parcel: Parcel) => {
    if (parcel.handles.length > 0) {
      const memory = (parcel.handles[0] as Box).unbox() as SharedMemory;
      const bytes = memory.map();
      counter = new Int32Array(bytes.buffer, bytes.byteOffset, 1);
      return;
    }
    received++;
    lastText = parcel.text();
  });
  interval(intervalMs).subscribe(() => {
    sent++;
    route.put(`parcel ${sent} from the producer`);
    if (counter !== null) Atomics.store(counter, 0, sent);
  });
}

async function consume(route: Portal): Promise<void> {
  const memory = await firstValueFrom(
    node.allocateSharedMemory(COUNTER_REGION_BYTES),
  );
  const bytes = memory.map();
  counter = new Int32Array(bytes.buffer, bytes.byteOffset, 1);
  route.put('counter region', [node.box(memory)]);
  route.parcels$.subscribe((parcel) => {
    received++;
    lastText = parcel.text();
    sent++;
    route.put(`ack ${received}`);
  });
}

if (role === 'producer') {
  const [kept, given] = node.openPortals();
  control.put('route', [given]);
  produce(kept);
} else {
  const parcel = await firstValueFrom(control.parcels$);
  await consume(parcel.handles[0] as Portal);
}
interval(REPORT_INTERVAL_MS).subscribe(report);
