/**
 * The ipcz-rx benchmark: portal round trip, 1 KiB parcel throughput and
 * 16 MiB payload bandwidth between two worker nodes, side by side with
 * the platform baselines of `baselines.ts` (raw MessagePort ping-pong and
 * throughput, SharedArrayBuffer + Atomics ping-pong, in-thread copy).
 *
 * Topology: a broker node on the main thread, a client worker and a
 * server worker, each connected to the broker. Two routes join client and
 * server:
 *
 * - proxied: the client opens a portal pair and sends one end through the
 *   broker to the server. Parcels first pass the broker's proxy on the
 *   main thread (two MessagePort hops each way) until route reduction
 *   replaces it with a link between the workers;
 * - direct: initial portals between the client and a second server that
 *   the client started itself, sharing its broker, so parcels cross one
 *   MessagePort between the two workers.
 *
 * Usage: npm run bench -- [--json PATH] [--quick]
 */

import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { firstValueFrom, from, timeout } from 'rxjs';
import { createNode, type Parcel, type Portal } from '../src/index';
import { createWorkerDriver, startNodeWorker } from '../src/workers';
import {
  atomicsRoundTrip,
  copyBandwidth,
  messagePortRoundTrip,
  messagePortThroughput,
  type BandwidthFigures,
  type LatencyFigures,
  type ThroughputFigures,
} from './baselines';
import type { ClientCommand, RouteName } from './fixtures/node-bench-worker';
import {
  describeEnvironment,
  formatFixed,
  formatSi,
  formatTable,
  parseJsonPath,
  writeJson,
} from './harness';

const MIB = 1024 * 1024;
const BANDWIDTH_BYTES = 16 * MIB;
const PAYLOAD_BYTES = 1024;
/** Time allowed for one command to the client worker, in milliseconds. */
const COMMAND_TIMEOUT_MS = 120_000;

const USAGE = `Usage: npm run bench -- [--json PATH] [--quick]

Measures ipcz-rx portals between two worker nodes against raw
MessagePort, SharedArrayBuffer + Atomics and in-thread copy baselines.

  --json PATH  also write the figures and ratios to PATH as JSON
  --quick      shorter runs (noisier figures), for a smoke test
  --help       print this help`;

interface BenchOptions {
  jsonPath: string | undefined;
  quick: boolean;
}

function parseOptions(argv: readonly string[]): BenchOptions {
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
  }
  const known = new Set(['--json', '--quick']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') i++;
    else if (!known.has(arg) && !arg.startsWith('--json=')) {
      throw new UsageError(`unknown option ${arg}; see --help`);
    }
  }
  let jsonPath: string | undefined;
  try {
    jsonPath = parseJsonPath(argv);
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  // A path that cannot be written fails now, not after the whole run.
  if (jsonPath !== undefined && !existsSync(dirname(resolve(jsonPath)))) {
    throw new UsageError(
      `--json: the folder of ${jsonPath} does not exist`,
    );
  }
  return { jsonPath, quick: argv.includes('--quick') };
}

/**
 * Sends commands to the client worker and reads its replies: JSON
 * results, and the route end that `open-proxied` sends before its result.
 */
/** A bad command line: printed as one line, exit code 2. */
class UsageError extends Error {}

class ClientControl {
  private readonly queued: Parcel[] = [];
  private waiting: ((parcel: Parcel) => void) | null = null;

  constructor(private readonly portal: Portal) {
    portal.parcels$.subscribe((parcel) => {
      const waiting = this.waiting;
      this.waiting = null;
      if (waiting === null) this.queued.push(parcel);
      else waiting(parcel);
    });
  }

  /** Sends `command` without waiting for its result. */
  send(command: ClientCommand): void {
    this.portal.put(JSON.stringify(command));
  }

  /** Returns the next parcel from the client, in arrival order. */
  next(): Promise<Parcel> {
    const parcel = this.queued.shift();
    if (parcel !== undefined) return Promise.resolve(parcel);
    const arrival = new Promise<Parcel>((resolve) => (this.waiting = resolve));
    return firstValueFrom(from(arrival).pipe(timeout(COMMAND_TIMEOUT_MS)));
  }

  async run<T>(command: ClientCommand): Promise<T> {
    this.send(command);
    return this.result<T>(command);
  }

  /** Reads the result of `command`, which must be the next parcel. */
  async result<T>(command: ClientCommand): Promise<T> {
    const parcel = await this.next();
    const result = JSON.parse(parcel.text()) as
      | { ok: true; result: T }
      | { ok: false; error: string };
    if (!result.ok) {
      throw new Error(`${command.op} failed in the client: ${result.error}`);
    }
    return result.result;
  }
}

interface PortalFigures {
  roundTrip: Record<RouteName, LatencyFigures>;
  throughput: Record<RouteName, ThroughputFigures>;
  bandwidthReused: Record<RouteName, BandwidthFigures>;
  bandwidthFresh: BandwidthFigures;
}

interface BaselineFigures {
  messagePortRoundTrip: LatencyFigures;
  atomicsRoundTripWait: LatencyFigures;
  messagePortThroughput: ThroughputFigures;
  copyBandwidth: BandwidthFigures;
}

function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function measurePortals(quick: boolean): Promise<{
  figures: PortalFigures;
  brokerProxies: number;
}> {
  const broker = createNode({
    driver: createWorkerDriver(),
    broker: true,
    label: 'bench broker',
  });
  const script = fileURLToPath(
    new URL('./fixtures/node-bench-worker.ts', import.meta.url),
  );
  const client = startNodeWorker(broker, script, {
    workerData: { role: 'client' },
    label: 'client',
  });
  const server = startNodeWorker(broker, script, {
    workerData: { role: 'server' },
    label: 'proxied server',
  });
  const workers = [client, server];

  const control = new ClientControl(client.portals[0]!);
  try {
    // The client sends one end of the proxied route here, for the server.
    const openProxied: ClientCommand = { op: 'open-proxied' };
    control.send(openProxied);
    const routeParcel = await control.next();
    server.portals[0]!.put('route', routeParcel.handles);
    await control.result(openProxied);
    await control.run({ op: 'open-direct' });

    const roundTripRun = quick
      ? { warmupMs: 200, runMs: 600 }
      : { warmupMs: 500, runMs: 2_000 };
    const stream = {
      payloadBytes: PAYLOAD_BYTES,
      count: quick ? 10_000 : 50_000,
      rounds: quick ? 2 : 5,
      ackEvery: 256,
      window: 1024,
    };
    const bandwidthRun = quick
      ? { warmupMs: 200, runMs: 600 }
      : { warmupMs: 300, runMs: 1_500 };

    const figures: Partial<PortalFigures> = {
      roundTrip: {} as Record<RouteName, LatencyFigures>,
      throughput: {} as Record<RouteName, ThroughputFigures>,
      bandwidthReused: {} as Record<RouteName, BandwidthFigures>,
    };
    for (const route of ['direct', 'proxied'] as const) {
      progress(`running portal round trip (${route})`);
      figures.roundTrip![route] = await control.run({
        op: 'round-trip',
        route,
        ...roundTripRun,
      });
      progress(`running portal throughput (${route})`);
      figures.throughput![route] = await control.run({
        op: 'throughput',
        route,
        ...stream,
      });
      progress(`running portal bandwidth, reused region (${route})`);
      figures.bandwidthReused![route] = await control.run({
        op: 'bandwidth',
        route,
        mode: 'reused',
        bytes: BANDWIDTH_BYTES,
        ...bandwidthRun,
      });
    }
    progress('running portal bandwidth, fresh region (direct)');
    figures.bandwidthFresh = await control.run({
      op: 'bandwidth',
      route: 'direct',
      mode: 'fresh',
      bytes: BANDWIDTH_BYTES,
      ...bandwidthRun,
    });
    return {
      figures: figures as PortalFigures,
      brokerProxies: broker.stats().proxies,
    };
  } finally {
    broker.close();
    await Promise.all(workers.map(({ worker }) => worker.terminate()));
  }
}

async function measureBaselines(quick: boolean): Promise<BaselineFigures> {
  progress('running messagePortRoundTrip');
  const messagePortRoundTripFigures = await messagePortRoundTrip(
    quick ? { warmupMs: 200, maxRunMs: 600 } : {},
  );
  progress('running atomicsRoundTripWait');
  const atomicsRoundTripWait = await atomicsRoundTrip(
    quick ? { mode: 'wait', warmupMs: 200, maxRunMs: 600 } : { mode: 'wait' },
  );
  progress('running messagePortThroughput');
  const messagePortThroughputFigures = await messagePortThroughput({
    payloadBytes: PAYLOAD_BYTES,
    count: quick ? 10_000 : 50_000,
    rounds: quick ? 2 : 5,
    ackEvery: 256,
    window: 1024,
  });
  progress('running copyBandwidth');
  const copy = await copyBandwidth({
    bytes: BANDWIDTH_BYTES,
    ...(quick ? { warmupMs: 100, runMs: 400 } : {}),
  });
  return {
    messagePortRoundTrip: messagePortRoundTripFigures,
    atomicsRoundTripWait,
    messagePortThroughput: messagePortThroughputFigures,
    copyBandwidth: copy,
  };
}

type Row = [string, LatencyFigures | ThroughputFigures | BandwidthFigures];

function formatRows(rows: Row[]): string[][] {
  return rows.map(([name, figures]) => {
    const latency = 'p50Us' in figures ? figures : undefined;
    const rate = 'messagesPerSecond' in figures ? figures : undefined;
    const bytesPerSecond =
      'bytesPerSecond' in figures ? figures.bytesPerSecond : undefined;
    return [
      name,
      formatFixed(latency?.p50Us, 1),
      formatFixed(latency?.p90Us, 1),
      formatFixed(latency?.p99Us, 1),
      formatSi(rate?.messagesPerSecond),
      formatFixed(
        bytesPerSecond === undefined ? undefined : bytesPerSecond / MIB,
        0,
      ),
    ];
  });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const environment = describeEnvironment();
  const { figures, brokerProxies } = await measurePortals(options.quick);
  const baselines = await measureBaselines(options.quick);

  const ratios = {
    roundTripVsMessagePort:
      figures.roundTrip.direct.p50Us / baselines.messagePortRoundTrip.p50Us,
    throughputVsMessagePort:
      figures.throughput.direct.messagesPerSecond /
      baselines.messagePortThroughput.messagesPerSecond,
    bandwidth16MiBVsCopy:
      figures.bandwidthReused.direct.bytesPerSecond /
      baselines.copyBandwidth.bytesPerSecond,
    proxiedRoundTripVsMessagePort:
      figures.roundTrip.proxied.p50Us / baselines.messagePortRoundTrip.p50Us,
    proxiedThroughputVsMessagePort:
      figures.throughput.proxied.messagesPerSecond /
      baselines.messagePortThroughput.messagesPerSecond,
    freshRegionBandwidth16MiBVsCopy:
      figures.bandwidthFresh.bytesPerSecond /
      baselines.copyBandwidth.bytesPerSecond,
  };

  const load = environment.loadAverage.map((value) => value.toFixed(2));
  console.log(
    `ipcz-rx benchmark on Node ${environment.node}, ${environment.cpuCount} ` +
      `x ${environment.cpuModel}, load average ${load.join(' ')} at start\n`,
  );
  const rows: Row[] = [
    ['portal round trip, direct link', figures.roundTrip.direct],
    ['portal round trip, moved via broker', figures.roundTrip.proxied],
    ['raw MessagePort round trip', baselines.messagePortRoundTrip],
    ['SAB + Atomics.wait round trip', baselines.atomicsRoundTripWait],
    ['portal 1 KiB stream, direct link', figures.throughput.direct],
    ['portal 1 KiB stream, moved via broker', figures.throughput.proxied],
    ['raw MessagePort 1 KiB stream', baselines.messagePortThroughput],
    ['portal 16 MiB, reused region, direct', figures.bandwidthReused.direct],
    ['portal 16 MiB, reused region, moved', figures.bandwidthReused.proxied],
    ['portal 16 MiB, fresh region, direct', figures.bandwidthFresh],
    ['in-thread copy of 16 MiB', baselines.copyBandwidth],
  ];
  console.log(
    formatTable(
      ['benchmark', 'p50 us', 'p90 us', 'p99 us', 'msg/s', 'MiB/s'],
      formatRows(rows),
    ),
  );
  console.log(`
Round trips are p50 of a 16-byte ping; portal ones run between two
workers, raw ones between the main thread and a worker. Streams send
${PAYLOAD_BYTES}-byte records with an ack every 256 and at most 1024 in flight.
16 MiB path: the sender copies the bytes into a shared memory region from
node.allocateSharedMemory, the receiver copies them out and checks them.
"Reused region": the region travels once in a Box and each transfer is
announced by a 5-byte parcel. "Fresh region": each transfer allocates a
new region and sends it in a Box. Proxies left on the broker after the
runs (0 once route reduction bypassed the moved portal): ${brokerProxies}.
`);
  console.log(
    formatTable(
      ['ratio (direct link, reused region)', 'value', 'target', 'met'],
      [
        [
          'round trip / MessagePort (lower is better)',
          ratios.roundTripVsMessagePort.toFixed(2),
          '<= 1.5',
          ratios.roundTripVsMessagePort <= 1.5 ? 'yes' : 'NO',
        ],
        [
          'throughput / MessagePort (higher is better)',
          ratios.throughputVsMessagePort.toFixed(2),
          '>= 1.0',
          ratios.throughputVsMessagePort >= 1.0 ? 'yes' : 'NO',
        ],
        [
          '16 MiB bandwidth / copy (higher is better)',
          ratios.bandwidth16MiBVsCopy.toFixed(2),
          '>= 0.25',
          ratios.bandwidth16MiBVsCopy >= 0.25 ? 'yes' : 'NO',
        ],
        [
          'proxied round trip / MessagePort',
          ratios.proxiedRoundTripVsMessagePort.toFixed(2),
          '-',
          '-',
        ],
        [
          'proxied throughput / MessagePort',
          ratios.proxiedThroughputVsMessagePort.toFixed(2),
          '-',
          '-',
        ],
        [
          'fresh-region 16 MiB bandwidth / copy',
          ratios.freshRegionBandwidth16MiBVsCopy.toFixed(2),
          '-',
          '-',
        ],
      ],
    ),
  );

  if (options.jsonPath !== undefined) {
    writeJson(options.jsonPath, {
      environment,
      bandwidthPath:
        'shared memory region from node.allocateSharedMemory, sent once ' +
        'in a Box and refilled per transfer; sender copies in, receiver ' +
        'copies out',
      portals: figures,
      baselines,
      brokerProxies,
      ratios,
    });
    progress(`wrote ${options.jsonPath}`);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = error instanceof UsageError ? 2 : 1;
});
