/**
 * A node worker driven by the test page. Its first portal to the page is
 * the control portal: a parcel whose text is a JSON command gets one
 * JSON reply, and any other parcel is echoed back as it came. The worker
 * keeps at most one more portal, `route`, which it opens or adopts on
 * command and which tests parcels and memory between two workers.
 */
import { filter, firstValueFrom, take, timeout, toArray } from 'rxjs';
import {
  connectToParent,
  type Box,
  type Parcel,
  type Portal,
  type SharedMemory,
} from '../../src/web/worker';

type Command =
  | { cmd: 'burst'; count: number }
  | { cmd: 'open' }
  | { cmd: 'adopt' }
  | { cmd: 'send'; count: number }
  | { cmd: 'receive'; count: number }
  | { cmd: 'memory-write'; size: number }
  | { cmd: 'memory-read' }
  | { cmd: 'memory-check' }
  | { cmd: 'stats' }
  | { cmd: 'wait-peer-closed'; timeoutMs: number }
  | { cmd: 'close-node' };

/** Time allowed for parcels that a command waits for, in ms. */
const RECEIVE_TIMEOUT_MS = 5_000;

const link = await connectToParent();
await link.delegateReady;
const { node } = link;
const control = link.portals[0]!;
let route: Portal | null = null;
let written: Uint8Array | null = null;

/** First-half byte pattern written by the worker that allocates. */
function writerByte(i: number): number {
  return (i * 7 + 3) & 0xff;
}

/** Second-half byte pattern written by the worker that reads. */
function readerByte(i: number): number {
  return (i * 13 + 1) & 0xff;
}

function requireRoute(): Portal {
  if (route === null) throw new Error('no route portal; send open or adopt');
  return route;
}

function receive(portal: Portal, count: number): Promise<Parcel[]> {
  return firstValueFrom(
    portal.parcels$.pipe(take(count), toArray(), timeout(RECEIVE_TIMEOUT_MS)),
  );
}

function countMismatches(
  bytes: Uint8Array,
  from: number,
  to: number,
  pattern: (i: number) => number,
): number {
  let mismatches = 0;
  for (let i = from; i < to; i++) if (bytes[i] !== pattern(i)) mismatches++;
  return mismatches;
}

async function run(command: Command, parcel: Parcel): Promise<object> {
  switch (command.cmd) {
    case 'burst':
      for (let i = 0; i < command.count; i++) control.put(`worker ${i}`);
      return {};
    case 'open': {
      const [kept, sent] = node.openPortals();
      route = kept;
      return { handles: [sent] };
    }
    case 'adopt':
      route = parcel.handles[0] as Portal;
      return {};
    case 'send':
      for (let i = 0; i < command.count; i++) {
        requireRoute().put(`${node.label} ${i}`);
      }
      return {};
    case 'receive': {
      const parcels = await receive(requireRoute(), command.count);
      return { texts: parcels.map((received) => received.text()) };
    }
    case 'memory-write': {
      const memory = await firstValueFrom(
        node.allocateSharedMemory(command.size),
      );
      written = memory.map();
      const half = written.length >> 1;
      for (let i = 0; i < half; i++) written[i] = writerByte(i);
      requireRoute().put('memory', [node.box(memory)]);
      return { size: memory.size, stats: node.stats() };
    }
    case 'memory-read': {
      const [received] = await receive(requireRoute(), 1);
      const box = received!.handles[0] as Box;
      const bytes = (box.unbox() as SharedMemory).map();
      const half = bytes.length >> 1;
      const mismatches = countMismatches(bytes, 0, half, writerByte);
      for (let i = half; i < bytes.length; i++) bytes[i] = readerByte(i);
      return { size: bytes.length, mismatches };
    }
    case 'memory-check': {
      if (written === null) throw new Error('no memory was written');
      const half = written.length >> 1;
      return {
        mismatches: countMismatches(written, half, written.length, readerByte),
      };
    }
    case 'stats':
      return { stats: node.stats(), name: node.name?.toString() ?? null };
    case 'wait-peer-closed': {
      const started = performance.now();
      await firstValueFrom(
        requireRoute().status$.pipe(
          filter((status) => status.peerClosed),
          timeout(command.timeoutMs),
        ),
      );
      return { afterMs: Math.round(performance.now() - started) };
    }
    case 'close-node':
      return { closing: true };
  }
}

async function handle(parcel: Parcel): Promise<void> {
  const text = parcel.text();
  if (!text.startsWith('{')) {
    control.put(text);
    return;
  }
  const command = JSON.parse(text) as Command;
  try {
    const { handles, ...reply } = (await run(command, parcel)) as {
      handles?: Portal[];
    };
    control.put(JSON.stringify({ ok: true, ...reply }), handles ?? []);
  } catch (error) {
    control.put(JSON.stringify({ ok: false, error: String(error) }));
  }
  if (command.cmd === 'close-node') node.close();
}

// Commands run one at a time, in arrival order, so replies keep order.
let queue = Promise.resolve();
control.parcels$.subscribe((parcel) => {
  queue = queue.then(() => handle(parcel));
});
