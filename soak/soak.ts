/**
 * The ipcz-rx soak: a broker on the main thread and four worker nodes
 * on worker threads (worker-0 sandboxed) that open, move, merge and
 * close routes at random and send checksummed parcels on all of them.
 * After `--seconds` the workers close every route with a fin handshake,
 * and the main thread gathers every route end's counts and reports
 * loss, reordering, corruption, leftover proxies and heap growth. See
 * `USAGE` in options.ts for the command line and exit codes.
 */
import { randomInt } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createNode, type Node, type Portal } from '../src/index';
import {
  createWorkerDriver,
  startNodeWorker,
  type NodeWorker,
} from '../src/workers';
import { tallyRoutes, type Tally } from './accounting';
import { measureHeap } from './heap';
import { USAGE, UsageError, parseOptions, type SoakOptions } from './options';
import {
  WORKER_COUNT,
  zeroCounters,
  type FromWorker,
  type ToWorker,
  type WorkerCounters,
  type WorkerReport,
  type WorkerStatus,
} from './protocol';
import { deriveSeed } from './random';

const MIB = 1024 * 1024;
/** Milliseconds between progress lines. */
const PROGRESS_MS = 5_000;
/** Time a worker has to reply to its first status request (tsx startup). */
const STARTUP_TIMEOUT_MS = 60_000;
/** Time a running worker has to reply to a status or report request. */
const REQUEST_TIMEOUT_MS = 15_000;
/** A run where no parcel arrives anywhere for this long is hung. */
const NO_PROGRESS_TIMEOUT_MS = 20_000;
/** Time allowed after the stop for every route end to close. */
const SETTLE_TIMEOUT_MS = 30_000;
/** Time allowed after that for route reduction to remove every proxy. */
const PROXY_TIMEOUT_MS = 10_000;
/** Time between polls while settling. */
const POLL_MS = 250;

/** A check that ends the run at once: a crash or a hang. */
class FatalError extends Error {}

type Request = 'status' | 'report';

/** The main thread's side of one worker's control portal. */
class WorkerControl {
  private nextId = 0;
  private readonly pending = new Map<number, (message: FromWorker) => void>();

  constructor(
    readonly label: string,
    readonly started: NodeWorker,
    private readonly portal: Portal,
    onMessage: (message: FromWorker, portal: Portal | undefined) => void,
    onClosed: () => void,
  ) {
    portal.parcels$.subscribe({
      next: (parcel) => {
        const message = JSON.parse(parcel.text()) as FromWorker;
        const handle = parcel.handles[0] as Portal | undefined;
        if (message.type === 'status' || message.type === 'report') {
          this.pending.get(message.id)?.(message);
          this.pending.delete(message.id);
        } else {
          onMessage(message, handle);
        }
      },
      complete: onClosed,
    });
  }

  /**
   * Sends a control message. Throws `FatalError` when the control route
   * is closed, which happens only when the link to the worker is gone.
   */
  send(message: ToWorker, portal?: Portal): void {
    try {
      this.portal.put(JSON.stringify(message), portal ? [portal] : []);
    } catch (error) {
      throw new FatalError(
        `cannot send ${message.type} to ${this.label}: ${String(error)}`,
      );
    }
  }

  status(timeoutMs = REQUEST_TIMEOUT_MS): Promise<WorkerStatus> {
    return this.request('status', timeoutMs).then((message) => {
      if (message.type !== 'status') throw new Error('mismatched reply');
      return message.status;
    });
  }

  report(): Promise<WorkerReport> {
    return this.request('report', REQUEST_TIMEOUT_MS).then((message) => {
      if (message.type !== 'report') throw new Error('mismatched reply');
      return message.report;
    });
  }

  private request(type: Request, timeoutMs: number): Promise<FromWorker> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new FatalError(
            `${this.label} did not reply to a ${type} request within ` +
              `${timeoutMs / 1000} s: it is hung or its event loop is blocked`,
          ),
        );
      }, timeoutMs);
      this.pending.set(id, (message) => {
        clearTimeout(timer);
        resolve(message);
      });
      this.send({ type, id });
    });
  }
}

function sumCounters(statuses: readonly WorkerStatus[]): WorkerCounters {
  const total = zeroCounters();
  for (const { counters } of statuses) {
    for (const key of Object.keys(total) as (keyof WorkerCounters)[]) {
      total[key] += counters[key];
    }
  }
  return total;
}

function mib(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

function signedMib(bytes: number): string {
  return `${bytes >= 0 ? '+' : ''}${mib(bytes)}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One soak run; `run()` resolves with the exit code. */
class Soak {
  private readonly broker: Node;
  private readonly workers: WorkerControl[] = [];
  private readonly failures: string[] = [];
  private brokerBadMessages = 0;
  private exiting = false;
  /** Set once the run has failed fatally, to stop the remaining steps. */
  private failedFatally = false;
  private rejectFatal: (error: FatalError) => void = () => {};
  /** Rejects when a worker crashes; raced against every step. */
  private readonly fatal = new Promise<never>((_, reject) => {
    this.rejectFatal = reject;
  });

  constructor(private readonly options: SoakOptions) {
    this.fatal.catch(() => {
      this.failedFatally = true;
    });
    this.broker = createNode({
      driver: createWorkerDriver(),
      broker: true,
      label: 'broker',
    });
    this.broker.badMessages$.subscribe((bad) => {
      this.brokerBadMessages++;
      this.fail(`broker dropped a message: ${bad.reason}`);
    });
  }

  async run(): Promise<number> {
    try {
      return await Promise.race([this.steps(), this.fatal]);
    } catch (error) {
      if (!(error instanceof FatalError)) throw error;
      console.error(`soak: FAILED: ${error.message}`);
      return 1;
    } finally {
      await this.shutDown();
    }
  }

  private fail(message: string): void {
    this.failures.push(message);
    console.error(`soak: failure: ${message}`);
  }

  private startWorkers(): void {
    const script = fileURLToPath(new URL('./worker.ts', import.meta.url));
    for (let index = 0; index < WORKER_COUNT; index++) {
      const sandboxed = index === 0;
      const label = `worker-${index}`;
      const started = startNodeWorker(this.broker, script, {
        label,
        canAllocate: !sandboxed,
        allocationDelegate: sandboxed,
        workerData: {
          index,
          seed: deriveSeed(this.options.seed, index),
          mergeDelayMs: this.options.mergeDelayMs,
        },
      });
      const control = new WorkerControl(
        label,
        started,
        started.portals[0]!,
        (message, portal) => this.onWorkerMessage(message, portal),
        () => this.onControlClosed(label),
      );
      this.workers.push(control);
      void started.exited.then((code) => {
        if (this.exiting) return;
        const error = started.error;
        const reason = error instanceof Error ? error.stack : error;
        this.rejectFatal(
          new FatalError(
            `${label} exited with code ${code}` +
              (reason === undefined ? '' : `: ${String(reason)}`),
          ),
        );
      });
    }
  }

  private onControlClosed(label: string): void {
    if (this.exiting) return;
    this.rejectFatal(
      new FatalError(
        `the control route to ${label} closed: the worker exited or its ` +
          'link to the broker was dropped',
      ),
    );
  }

  private onWorkerMessage(message: FromWorker, portal?: Portal): void {
    if (message.type === 'failure') {
      this.fail(message.message);
      return;
    }
    if (message.type !== 'forward') return;
    const target = this.workers[message.to];
    if (target === undefined || portal === undefined) {
      this.fail(`invalid forward to worker ${message.to}`);
      portal?.close();
      return;
    }
    try {
      target.send({ type: 'adopt', state: message.state }, portal);
    } catch (error) {
      if (!(error instanceof FatalError)) throw error;
      this.rejectFatal(error);
    }
  }

  private statuses(timeoutMs?: number): Promise<WorkerStatus[]> {
    return Promise.all(this.workers.map((worker) => worker.status(timeoutMs)));
  }

  private async steps(): Promise<number> {
    const started = Date.now();
    console.log(
      `soak: seed ${this.options.seed}, ${this.options.seconds} s, ` +
        `${WORKER_COUNT} workers (worker-0 sandboxed)`,
    );
    this.startWorkers();
    const first = await this.statuses(STARTUP_TIMEOUT_MS);
    const heapBefore = {
      main: measureHeap(),
      workers: first.map((status) => status.heapUsed),
    };

    await this.runTraffic();

    const stopped = Date.now();
    for (const worker of this.workers) worker.send({ type: 'stop' });
    await this.waitForSettled();
    const reports = await Promise.all(this.workers.map((w) => w.report()));
    const tally = tallyRoutes(reports.flatMap((report) => report.records));
    console.log(
      `soak: every route end closed ${((Date.now() - stopped) / 1000).toFixed(1)} s ` +
        'after the stop',
    );
    const proxies = await this.waitForNoProxies();
    const last = await this.statuses();
    const heapAfter = {
      main: measureHeap(),
      workers: last.map((status) => status.heapUsed),
    };

    const heapGrowth =
      heapAfter.main -
      heapBefore.main +
      heapAfter.workers.reduce(
        (sum, after, i) => sum + after - heapBefore.workers[i]!,
        0,
      );
    this.printWorkers(last, heapBefore, heapAfter);
    const total = sumCounters(last);
    this.printTotals(total, tally, proxies, heapGrowth);
    this.checkResults(total, tally, proxies, heapGrowth);
    console.log(`soak: total time ${((Date.now() - started) / 1000).toFixed(1)} s`);
    for (const failure of this.failures) console.log(`soak: FAILED: ${failure}`);
    const growthMib = Math.max(0, Math.round(heapGrowth / MIB));
    console.log(
      `soak: sent ${total.parcelsSent}, received ${total.parcelsReceived}, ` +
        `lost ${tally.lost}, reordered ${total.reordered}, ` +
        `heap +${growthMib} MiB`,
    );
    return this.failures.length === 0 ? 0 : 1;
  }

  /** Lets the workers run for `--seconds`, printing progress lines. */
  private async runTraffic(): Promise<void> {
    const started = Date.now();
    const endAt = started + this.options.seconds * 1000;
    let lastReceived = -1;
    let lastChange = Date.now();
    while (Date.now() < endAt && !this.failedFatally) {
      await Promise.race([
        delay(Math.min(PROGRESS_MS, endAt - Date.now())),
        this.fatal,
      ]);
      if (this.failedFatally) return;
      const statuses = await this.statuses();
      const total = sumCounters(statuses);
      if (total.parcelsReceived !== lastReceived) {
        lastReceived = total.parcelsReceived;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > NO_PROGRESS_TIMEOUT_MS) {
        throw new FatalError(
          `no parcel was received on any route for ` +
            `${NO_PROGRESS_TIMEOUT_MS / 1000} s: the routes are hung`,
        );
      }
      this.printProgress(Date.now() - started, statuses, total);
    }
  }

  private printProgress(
    elapsedMs: number,
    statuses: readonly WorkerStatus[],
    total: WorkerCounters,
  ): void {
    const live = statuses.reduce((sum, status) => sum + status.liveEnds, 0);
    const workerHeap = statuses.reduce((sum, s) => sum + s.heapUsed, 0);
    console.log(
      `soak: ${(elapsedMs / 1000).toFixed(0)} s, sent ` +
        `${total.parcelsSent}, received ${total.parcelsReceived}, ` +
        `${live} route ends held, ${total.routesOpened} opened, ` +
        `${total.merges} merged, ` +
        `${total.movesThroughBroker + total.movesOverRoutes} moved, ` +
        `${total.closesAbrupt + total.closesHandshake} closed, ` +
        `reordered ${total.reordered}, corrupted ${total.corrupted}, ` +
        `heap ${mib(measureHeap())} MiB main, ${mib(workerHeap)} MiB workers`,
    );
  }

  /** Waits until every route end created has been closed. */
  private async waitForSettled(): Promise<void> {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const total = sumCounters(await this.statuses());
      if (total.endsCreated === total.endsFinished) return;
      if (Date.now() > deadline) break;
      await delay(POLL_MS);
    }
    const reports = await Promise.all(this.workers.map((w) => w.report()));
    const total = sumCounters(reports);
    const held = reports.flatMap((report, index) =>
      report.live.map(
        (end) =>
          `${end.route}${end.side} (${end.kind}) on worker-${index}: ` +
          `sent ${end.sent}, received ${end.received}, fin ` +
          `${end.finSent ? 'sent' : 'not sent'}/` +
          `${end.finReceived ? 'received' : 'not received'}`,
      ),
    );
    const unaccounted = total.endsCreated - total.endsFinished - held.length;
    throw new FatalError(
      `${total.endsCreated - total.endsFinished} route ends were still ` +
        `open ${SETTLE_TIMEOUT_MS / 1000} s after the stop ` +
        `(${unaccounted} of them in transit or lost): ` +
        (held.slice(0, 10).join('; ') || 'none held by a worker'),
    );
  }

  /**
   * Waits for route reduction to remove every proxy. Returns the proxies
   * left on each node, the broker first.
   */
  private async waitForNoProxies(): Promise<number[]> {
    const deadline = Date.now() + PROXY_TIMEOUT_MS;
    for (;;) {
      const statuses = await this.statuses();
      const proxies = [
        this.broker.stats().proxies,
        ...statuses.map((status) => status.stats.proxies),
      ];
      if (proxies.every((count) => count === 0) || Date.now() > deadline) {
        return proxies;
      }
      await delay(POLL_MS);
    }
  }

  private printWorkers(
    statuses: readonly WorkerStatus[],
    before: { main: number; workers: number[] },
    after: { main: number; workers: number[] },
  ): void {
    statuses.forEach((status, index) => {
      const { counters: c, stats } = status;
      const growth = after.workers[index]! - before.workers[index]!;
      console.log(
        `${this.workers[index]!.label}${index === 0 ? ' (sandboxed)' : ''}: ` +
          `sent ${c.parcelsSent}, received ${c.parcelsReceived}, ` +
          `regions ${c.regionsSent}/${c.regionsReceived} sent/received, ` +
          `refused puts ${c.putsRefused}, ` +
          `memory requests ${stats.memoryRequestsSent}, direct ` +
          `allocations ${stats.directAllocations}, routers ${stats.routers}, ` +
          `proxies ${stats.proxies}, heap ${mib(before.workers[index]!)} -> ` +
          `${mib(after.workers[index]!)} MiB (${signedMib(growth)})`,
      );
    });
    const stats = this.broker.stats();
    console.log(
      `broker: memory requests served ${stats.memoryRequestsServed}, ` +
        `links ${stats.links}, routers ${stats.routers}, proxies ` +
        `${stats.proxies}, heap ${mib(before.main)} -> ${mib(after.main)} ` +
        `MiB (${signedMib(after.main - before.main)})`,
    );
  }

  private printTotals(
    total: WorkerCounters,
    tally: Tally,
    proxies: readonly number[],
    heapGrowth: number,
  ): void {
    console.log(
      `routes: ${tally.routes} (${total.routesOpened} opened, ` +
        `${total.merges} merged), moves ${total.movesThroughBroker} ` +
        `through the broker and ${total.movesOverRoutes} over routes, ` +
        `closes ${total.closesAbrupt} abrupt and ${total.closesHandshake} ` +
        'by handshake at random, the rest by handshake at the stop',
    );
    console.log(
      `parcels: sent ${total.parcelsSent}, received ` +
        `${total.parcelsReceived}, checked for loss ${tally.checkedParcels}, ` +
        `lost ${tally.lost}, discarded by abrupt closes ${tally.discarded}, ` +
        `reordered ${total.reordered}, corrupted ${total.corrupted}, ` +
        `${(total.bytesSent / MIB).toFixed(0)} MiB sent`,
    );
    console.log(
      `proxies after settling: ${proxies.reduce((a, b) => a + b, 0)} ` +
        `(broker ${proxies[0]}, workers ${proxies.slice(1).join('/')}), ` +
        `heap growth ${signedMib(heapGrowth)} MiB (main thread and workers)`,
    );
  }

  private checkResults(
    total: WorkerCounters,
    tally: Tally,
    proxies: readonly number[],
    heapGrowth: number,
  ): void {
    if (tally.lost > 0) this.fail(`${tally.lost} parcels were lost`);
    if (total.reordered > 0) {
      this.fail(`${total.reordered} parcels arrived out of order`);
    }
    if (total.corrupted > 0) {
      this.fail(`${total.corrupted} parcels failed their checksum`);
    }
    if (tally.surplus > 0) {
      this.fail(`${tally.surplus} route directions received more than sent`);
    }
    if (tally.incomplete.length > 0) {
      this.fail(
        `${tally.incomplete.length} routes lack an end record: ` +
          tally.incomplete.slice(0, 10).join(', '),
      );
    }
    const leftover = proxies.reduce((a, b) => a + b, 0);
    if (leftover > 0) {
      this.fail(
        `${leftover} proxies were left ${PROXY_TIMEOUT_MS / 1000} s after ` +
          'every route closed',
      );
    }
    if (total.badMessages > 0) {
      this.fail(`workers dropped ${total.badMessages} bad messages`);
    }
    if (heapGrowth > this.options.maxHeapGrowthMib * MIB) {
      this.fail(
        `heap grew by ${mib(heapGrowth)} MiB, more than the limit of ` +
          `${this.options.maxHeapGrowthMib} MiB (--max-heap-growth)`,
      );
    }
  }

  /** Lets the workers exit, or terminates those that do not. */
  private async shutDown(): Promise<void> {
    this.exiting = true;
    for (const worker of this.workers) {
      try {
        worker.send({ type: 'exit' });
      } catch {
        // Its control route is already gone; terminate() below ends it.
      }
    }
    await Promise.all(
      this.workers.map(async ({ started }) => {
        const code = await Promise.race([started.exited, delay(5_000)]);
        if (code === undefined) await started.worker.terminate();
      }),
    );
    this.broker.close();
  }
}

async function main(): Promise<number> {
  let options: SoakOptions | 'help';
  try {
    options = parseOptions(process.argv.slice(2), () =>
      randomInt(0, 0xffffffff),
    );
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`soak: ${error.message}`);
    return 2;
  }
  if (options === 'help') {
    console.log(USAGE);
    return 0;
  }
  const deadlineMs =
    (options.seconds + 180) * 1000 + SETTLE_TIMEOUT_MS + PROXY_TIMEOUT_MS;
  const watchdog = setTimeout(() => {
    console.error(
      `soak: FAILED: the run did not finish within ${deadlineMs / 1000} s`,
    );
    process.exit(1);
  }, deadlineMs);
  try {
    return await new Soak(options).run();
  } finally {
    clearTimeout(watchdog);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`soak: FAILED: ${error instanceof Error ? error.stack : error}`);
    process.exitCode = 1;
  },
);
