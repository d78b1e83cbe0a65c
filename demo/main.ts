/**
 * The ipcz-rx demo: a broker on the main thread and worker nodes on real
 * threads. One worker is sandboxed: its driver cannot allocate, so its
 * shared memory comes from the broker through RequestMemory. A portal
 * opened in one worker moves through the broker to the sandboxed worker,
 * and parcels, shared memory regions and optionally a file stream over
 * every route. The run ends with a report and exit code 0 when every
 * check passed, 1 when one failed and 2 for invalid options.
 */

import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createNode, type Node, type Parcel, type Portal } from '../src/index';
import {
  createWorkerDriver,
  startNodeWorker,
  type NodeWorker,
} from '../src/workers';
import {
  RouteEndpoint,
  type StreamPlan,
  type StreamReport,
} from './route-endpoint';
import type { WorkerCommand } from './worker';

const MIB = 1024 * 1024;
/** Time allowed for one worker command, in milliseconds. */
const COMMAND_TIMEOUT_MS = 60_000;
/** Runs longer than this print a progress line each second, in ms. */
const PROGRESS_AFTER_MS = 3_000;

const USAGE = `Usage: npm start -- [options]

Runs a broker on the main thread and worker nodes on worker threads,
streams parcels and shared memory over their routes and prints a report.

  --workers N     worker nodes, 2 to 8 (default 3); the first is sandboxed
  --parcels N     small parcels per direction on each route (default
                  2000); the report's counts also include 200 round-trip
                  probes and the shared memory regions
  --payload SIZE  bytes in each shared memory region, e.g. 4194304, 512K
                  or 4M (default 4M)
  --regions N     shared memory regions per direction on each route
                  (default 3)
  --file PATH     also stream the file at PATH through the moved portal
                  and check its SHA-256 at the far end
  --help          print this help`;

interface DemoOptions {
  workers: number;
  parcels: number;
  payloadBytes: number;
  regions: number;
  file: string | undefined;
}

class UsageError extends Error {}

function parseCount(name: string, text: string, min: number, max: number) {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UsageError(
      `invalid ${name} value ${JSON.stringify(text)}: expected an integer ` +
        `from ${min} to ${max}`,
    );
  }
  return value;
}

function parseSize(text: string): number {
  const match = /^(\d+)([KkMm]?)$/.exec(text);
  const scale = { '': 1, k: 1024, m: MIB }[match?.[2]?.toLowerCase() ?? ''];
  const value = match === null ? NaN : Number(match[1]) * (scale ?? 1);
  if (!(value >= 1 && value <= 256 * MIB)) {
    throw new UsageError(
      `invalid --payload value ${JSON.stringify(text)}: expected a size ` +
        'from 1 byte to 256M, such as 4194304, 512K or 4M',
    );
  }
  return value;
}

function parseOptions(argv: readonly string[]): DemoOptions | 'help' {
  const options: DemoOptions = {
    workers: 3,
    parcels: 2000,
    payloadBytes: 4 * MIB,
    regions: 3,
    file: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    const [name, inline] = arg.split(/=(.*)/s, 2) as [string, string?];
    const takesValue = [
      '--workers',
      '--parcels',
      '--payload',
      '--regions',
      '--file',
    ].includes(name);
    if (!takesValue) throw new UsageError(`unknown option ${arg}; see --help`);
    const value = inline ?? argv[++i];
    if (value === undefined || value === '') {
      throw new UsageError(`missing value after ${name}; see --help`);
    }
    if (name === '--workers') options.workers = parseCount(name, value, 2, 8);
    if (name === '--parcels') {
      options.parcels = parseCount(name, value, 0, 1_000_000);
    }
    if (name === '--regions') options.regions = parseCount(name, value, 0, 64);
    if (name === '--payload') options.payloadBytes = parseSize(value);
    if (name === '--file') options.file = value;
  }
  if (options.file !== undefined) checkFile(options.file);
  return options;
}

function checkFile(path: string): void {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch (error) {
    const code = (error as { code?: string }).code ?? String(error);
    throw new UsageError(`cannot read --file ${path}: ${code}`);
  }
  if (!isFile) throw new UsageError(`--file ${path} is not a regular file`);
}

/** Sends commands to one worker and reads its replies in order. */
class WorkerControl {
  private readonly queued: Parcel[] = [];
  /** Callers of `next` waiting for a parcel, oldest first. */
  private readonly waiting: ((parcel: Parcel) => void)[] = [];

  constructor(
    readonly label: string,
    private readonly portal: Portal,
  ) {
    portal.parcels$.subscribe((parcel) => {
      const waiting = this.waiting.shift();
      if (waiting === undefined) this.queued.push(parcel);
      else waiting(parcel);
    });
  }

  /**
   * Returns the next parcel from the worker. Concurrent calls get the
   * parcels in call order, so replies match commands because the worker
   * replies in command order.
   */
  next(): Promise<Parcel> {
    const parcel = this.queued.shift();
    if (parcel !== undefined) return Promise.resolve(parcel);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`worker ${this.label} did not reply in time`));
      }, COMMAND_TIMEOUT_MS);
      // Stays queued after a timeout, so later replies keep their order.
      this.waiting.push((arrived) => {
        clearTimeout(timer);
        resolve(arrived);
      });
    });
  }

  send(command: WorkerCommand): void {
    this.portal.put(JSON.stringify(command));
  }

  /** Forwards a portal to the worker, which adopts it as its moved route. */
  forward(portal: Portal): void {
    this.portal.put('route', [portal]);
  }

  async result<T>(): Promise<T> {
    const reply = JSON.parse((await this.next()).text()) as
      | { ok: true; result: T }
      | { ok: false; error: string };
    if (!reply.ok) throw new Error(`worker ${this.label}: ${reply.error}`);
    return reply.result;
  }

  async run<T>(command: WorkerCommand): Promise<T> {
    this.send(command);
    return this.result<T>();
  }
}

interface DemoWorker {
  label: string;
  started: NodeWorker;
  control: WorkerControl;
  /** The broker's end of the data route to this worker. */
  route: RouteEndpoint;
}

/** A progress line on stderr, once a run is longer than a few seconds. */
class Progress {
  private phase = 'starting';
  private readonly started = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly parcelsSent: () => number) {
    this.timer = setInterval(() => this.print(), 1_000);
  }

  set(phase: string): void {
    this.phase = phase;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private print(): void {
    const elapsed = Date.now() - this.started;
    if (elapsed < PROGRESS_AFTER_MS) return;
    process.stderr.write(
      `progress: ${this.phase}, ${(elapsed / 1000).toFixed(0)} s, ` +
        `${this.parcelsSent()} parcels sent by the broker\n`,
    );
  }
}

function startWorkers(broker: Node, count: number): DemoWorker[] {
  const script = fileURLToPath(new URL('./worker.ts', import.meta.url));
  return Array.from({ length: count }, (_, index) => {
    const sandboxed = index === 0;
    const label = sandboxed ? 'worker-0 (sandboxed)' : `worker-${index}`;
    const started = startNodeWorker(broker, script, {
      portals: 2,
      label,
      canAllocate: !sandboxed,
      allocationDelegate: sandboxed,
    });
    const [commands, route] = started.portals as [Portal, Portal];
    return {
      label,
      started,
      control: new WorkerControl(label, commands),
      route: new RouteEndpoint(broker, route),
    };
  });
}

/** Streams both ways on every route at once and returns the reports. */
async function streamEverywhere(
  workers: DemoWorker[],
  plan: StreamPlan,
): Promise<Map<string, StreamReport>> {
  const [sandboxed, opener] = workers as [DemoWorker, DemoWorker];
  const jobs: [string, Promise<StreamReport>][] = [];
  for (const worker of workers) {
    jobs.push([`broker -> ${worker.label}`, worker.route.stream(plan)]);
    jobs.push([
      `${worker.label} -> broker`,
      worker.control.run({ op: 'stream', route: 'broker', plan }),
    ]);
  }
  jobs.push([
    `${opener.label} -> ${sandboxed.label} (moved)`,
    opener.control.run({ op: 'stream', route: 'moved', plan }),
  ]);
  jobs.push([
    `${sandboxed.label} -> ${opener.label} (moved)`,
    sandboxed.control.run({ op: 'stream', route: 'moved', plan }),
  ]);
  const reports = await Promise.all(jobs.map(([, job]) => job));
  return new Map(jobs.map(([name], index) => [name, reports[index]!]));
}

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(Math.ceil((p / 100) * sorted.length), 1);
  return sorted[rank - 1]!;
}

function formatBytes(bytes: number): string {
  if (bytes >= MIB) return `${(bytes / MIB).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function printReport(
  reports: Map<string, StreamReport>,
  lines: string[],
): boolean {
  let ok = true;
  // Pings run while every other stream is busy, so the round trips
  // include queueing behind that traffic.
  console.log(
    'route'.padEnd(42) +
      'parcels       bytes   rtt p50/p90/p99 us   received',
  );
  for (const [name, report] of reports) {
    const rtt = [...report.roundTripsUs].sort((a, b) => a - b);
    const received = report.received;
    const complete =
      received.parcels === report.parcelsSent - report.roundTripsUs.length &&
      received.badRegions === 0;
    ok &&= complete;
    const percentiles = [50, 90, 99]
      .map((p) => percentile(rtt, p).toFixed(0))
      .join('/');
    console.log(
      `${name.padEnd(41)} ${String(report.parcelsSent).padStart(7)} ` +
        `${formatBytes(report.bytesSent).padStart(11)} ` +
        `${percentiles.padStart(20)}   ` +
        `${complete ? 'all' : 'MISSING'}` +
        (received.badRegions > 0 ? `, ${received.badRegions} bad regions` : ''),
    );
  }
  for (const line of lines) console.log(line);
  return ok;
}

async function runDemo(options: DemoOptions): Promise<boolean> {
  const broker = createNode({
    driver: createWorkerDriver(),
    broker: true,
    label: 'broker',
  });
  const started = Date.now();
  const workers = startWorkers(broker, options.workers);
  const progress = new Progress(() =>
    workers.reduce((sum, worker) => sum + worker.route.sentParcels, 0),
  );
  try {
    const [sandboxed, opener] = workers as [DemoWorker, DemoWorker];
    progress.set('moving a portal through the broker');
    opener.control.send({ op: 'open-route' });
    const routeParcel = await opener.control.next();
    sandboxed.control.forward(routeParcel.handles[0] as Portal);
    await opener.control.result();

    progress.set('streaming on every route');
    const plan: StreamPlan = {
      parcels: options.parcels,
      parcelBytes: 64,
      pings: 200,
      regions: options.regions,
      regionBytes: options.payloadBytes,
    };
    const reports = await streamEverywhere(workers, plan);

    const lines: string[] = [''];
    let fileOk = true;
    if (options.file !== undefined) {
      progress.set(`streaming ${options.file} through the moved portal`);
      const [local, remote] = await Promise.all([
        hashFile(options.file),
        opener.control.run<{ digest: string }>({
          op: 'send-file',
          path: options.file,
        }),
      ]);
      fileOk = local === remote.digest;
      lines.push(
        `file ${options.file}: ${formatBytes(statSync(options.file).size)}, ` +
          `SHA-256 at the far end ${remote.digest} ` +
          (fileOk ? '(matches)' : `(MISMATCH, local ${local})`),
      );
    }

    progress.set('collecting stats');
    const sandboxStats = await sandboxed.control.run<{
      memoryRequestsSent: number;
      directAllocations: number;
    }>({ op: 'stats' });
    const brokerStats = broker.stats();
    lines.push(
      `memory requests: broker served ${brokerStats.memoryRequestsServed}, ` +
        `sandboxed worker sent ${sandboxStats.memoryRequestsSent} ` +
        `(direct allocations there: ${sandboxStats.directAllocations})`,
      `proxies left on the broker: ${brokerStats.proxies} ` +
        '(from broker.stats())',
      `links on the broker: ${brokerStats.links}, ` +
        `${options.workers} workers, ` +
        `${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    const streamsOk = printReport(reports, lines);

    progress.set('closing');
    await Promise.all(workers.map((worker) => worker.control.run({ op: 'close' })));
    const codes = await Promise.all(
      workers.map((worker) => worker.started.exited),
    );
    const exitedOk = codes.every((code) => code === 0);
    if (!exitedOk) console.log(`worker exit codes: ${codes.join(', ')}`);
    return streamsOk && fileOk && exitedOk;
  } finally {
    progress.stop();
    broker.close();
    await Promise.all(workers.map((worker) => worker.started.worker.terminate()));
  }
}

async function main(): Promise<number> {
  let options: DemoOptions | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`error: ${error.message}`);
    return 2;
  }
  if (options === 'help') {
    console.log(USAGE);
    return 0;
  }
  return (await runDemo(options)) ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    process.exitCode = 1;
  },
);
