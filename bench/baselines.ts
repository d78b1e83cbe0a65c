/**
 * Baselines: what the platform alone achieves moving bytes between a main
 * thread and a worker, so the library's own figures can be read against
 * them. Each function starts its worker from `fixtures/`, measures one
 * mechanism and terminates the worker.
 *
 * Run `npx tsx bench/baselines.ts [--json PATH]` to print the table and
 * optionally write the figures as JSON.
 */

import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { SharedRing } from './fixtures/shared-ring';
import {
  CONTROL_SLOTS,
  ROUNDS_DONE,
  ROUND_END,
  ROUND_MISORDERED,
  ROUND_RECORDS,
  STOP,
} from './fixtures/ring-protocol';
import {
  describeEnvironment,
  elapsedSinceNs,
  formatFixed,
  formatSi,
  formatTable,
  measure,
  nowNs,
  parseJsonPath,
  ratePerSecond,
  summarize,
  withWorker,
  writeJson,
} from './harness';
import type { Measurement } from './harness';

const MIB = 1024 * 1024;

/** Latency of one round trip, in microseconds. */
export interface LatencyFigures {
  p50Us: number;
  p90Us: number;
  p99Us: number;
  meanUs: number;
  /** Round trips timed. */
  samples: number;
}

/**
 * Rate of a one-way stream of records, measured end to end, from the
 * median of several timed rounds.
 */
export interface ThroughputFigures {
  messagesPerSecond: number;
  /** Payload bytes per second, not counting headers or acks. */
  bytesPerSecond: number;
  /** Records in each timed round. */
  messages: number;
  rounds: number;
  /** Slowest and fastest round, in records per second. */
  minMessagesPerSecond: number;
  maxMessagesPerSecond: number;
}

/** Rate of moving one large buffer, from the median time per move. */
export interface BandwidthFigures {
  bytesPerSecond: number;
  /** Moves timed. */
  iterations: number;
}

/** Options of the round-trip baselines. */
export interface RoundTripOptions {
  /** Round trips to time, unless `maxRunMs` runs out first. */
  iterations?: number;
  warmupMs?: number;
  maxRunMs?: number;
}

/** Options of the streaming baselines. */
export interface StreamOptions {
  payloadBytes?: number;
  /** Records in each round. One untimed warm-up round comes first. */
  count?: number;
  /** Timed rounds; the figures come from the median one. */
  rounds?: number;
}

/** Options of the bandwidth baselines. */
export interface BandwidthOptions {
  bytes?: number;
  warmupMs?: number;
  runMs?: number;
}

function fixture(name: string): URL {
  return new URL(`./fixtures/${name}.ts`, import.meta.url);
}

function latencyFigures(measurement: Measurement): LatencyFigures {
  const summary = summarize(measurement.samplesNs);
  return {
    p50Us: summary.p50 / 1e3,
    p90Us: summary.p90 / 1e3,
    p99Us: summary.p99 / 1e3,
    meanUs: summary.mean / 1e3,
    samples: summary.count,
  };
}

function bandwidthFigures(
  bytes: number,
  measurement: Measurement,
): BandwidthFigures {
  // The median resists the stalls that other processes on a shared
  // machine add to a few samples.
  const summary = summarize(measurement.samplesNs);
  return {
    bytesPerSecond: ratePerSecond(bytes, summary.p50),
    iterations: summary.count,
  };
}

/**
 * Runs `round` once untimed and then `rounds` times timed, and returns the
 * median rate. The median keeps one round slowed by another process on a
 * shared machine from moving the figure.
 */
async function timeRounds(
  rounds: number,
  count: number,
  payloadBytes: number,
  round: () => Promise<void> | void,
): Promise<ThroughputFigures> {
  await round();
  const rates: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = nowNs();
    await round();
    rates.push(ratePerSecond(count, elapsedSinceNs(start)));
  }

  const summary = summarize(rates);
  return {
    messagesPerSecond: summary.p50,
    bytesPerSecond: summary.p50 * payloadBytes,
    messages: count,
    rounds,
    minMessagesPerSecond: summary.min,
    maxMessagesPerSecond: summary.max,
  };
}

function checkPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer: ${value}`);
  }
}

/** Writes `sequence` into the first four bytes of `payload`, if it fits. */
function stampSequence(payload: Uint8Array, sequence: number): void {
  if (payload.byteLength < 4) return;
  new DataView(payload.buffer, payload.byteOffset, 4).setUint32(
    0,
    sequence >>> 0,
    true,
  );
}

/**
 * Measures ping-pong latency of a 16-byte Uint8Array between the main
 * thread and a worker over a dedicated MessagePort. Each sample is one
 * post, the worker's echo, and the main thread's `message` event.
 */
export async function messagePortRoundTrip(
  options: RoundTripOptions = {},
): Promise<LatencyFigures> {
  const iterations = options.iterations ?? 20_000;
  checkPositiveInteger('iterations', iterations);
  const { port1, port2 } = new MessageChannel();

  return withWorker(
    fixture('port-echo'),
    { workerData: { port: port2 }, transferList: [port2] },
    async ({ failure }) => {
      let onReply: (() => void) | undefined;
      port1.on('message', () => {
        const resolve = onReply;
        onReply = undefined;
        resolve?.();
      });
      const message = new Uint8Array(16);
      const roundTrip = (): Promise<void> =>
        new Promise((resolve) => {
          onReply = resolve;
          port1.postMessage(message);
        });

      try {
        const measurement = await Promise.race([
          measure('messagePortRoundTrip', roundTrip, {
            warmupMs: options.warmupMs ?? 200,
            runMs: options.maxRunMs ?? 2_000,
            maxSamples: iterations,
          }),
          failure,
        ]);
        return latencyFigures(measurement);
      } finally {
        port1.close();
      }
    },
  );
}

/** Options of `messagePortThroughput`, beyond the stream's size. */
export interface PortStreamOptions extends StreamOptions {
  /** Records the worker receives between two acks. */
  ackEvery?: number;
  /** Records the sender lets be unacknowledged before it waits. */
  window?: number;
}

/**
 * Measures a one-way stream of Uint8Array records (copied, not
 * transferred) from the main thread to a worker over a dedicated
 * MessagePort. The worker acks every `ackEvery` records and the sender
 * keeps at most `window` unacknowledged, so the port's queue stays
 * bounded. The time runs from the first post to the worker's reply to a
 * flush message sent after the last record.
 */
export async function messagePortThroughput(
  options: PortStreamOptions = {},
): Promise<ThroughputFigures> {
  const payloadBytes = options.payloadBytes ?? 1024;
  const count = options.count ?? 100_000;
  const rounds = options.rounds ?? 5;
  const ackEvery = options.ackEvery ?? 256;
  const window = options.window ?? 4 * ackEvery;
  checkPositiveInteger('payloadBytes', payloadBytes);
  checkPositiveInteger('count', count);
  checkPositiveInteger('rounds', rounds);
  checkPositiveInteger('ackEvery', ackEvery);
  if (window < 2 * ackEvery) {
    // With fewer than two ack intervals in flight the sender would stall
    // on every ack, and below one it would wait for an ack never sent.
    throw new RangeError(
      `window must be at least 2 * ackEvery (${2 * ackEvery}): ${window}`,
    );
  }
  const { port1, port2 } = new MessageChannel();

  return withWorker(
    fixture('port-sink'),
    { workerData: { port: port2, ackEvery }, transferList: [port2] },
    async ({ failure }) => {
      const stream = new PortStream(port1, payloadBytes, window);
      try {
        return await timeRounds(rounds, count, payloadBytes, () =>
          Promise.race([stream.send(count), failure]),
        );
      } finally {
        port1.close();
      }
    },
  );
}

interface SinkReply {
  type: 'ack' | 'flushed';
  received: number;
  bytes?: number;
  misordered?: number;
}

/** The sending side of `messagePortThroughput`, with its flow control. */
class PortStream {
  private readonly payload: Uint8Array;
  private sent = 0;
  private acked = 0;
  private onAck: (() => void) | undefined;
  private onFlushed: ((reply: SinkReply) => void) | undefined;

  constructor(
    private readonly port: MessagePortLike,
    payloadBytes: number,
    private readonly window: number,
  ) {
    this.payload = new Uint8Array(payloadBytes).fill(0x5a);
    port.on('message', (reply: SinkReply) => this.handleReply(reply));
  }

  /** Sends `count` records and a flush, and checks the worker's totals. */
  async send(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      while (this.sent - this.acked >= this.window) {
        await new Promise<void>((resolve) => (this.onAck = resolve));
      }
      stampSequence(this.payload, this.sent);
      this.port.postMessage(this.payload);
      this.sent++;
    }

    const flushed = new Promise<SinkReply>((resolve) => {
      this.onFlushed = resolve;
    });
    this.port.postMessage('flush');
    const reply = await flushed;
    if (reply.received !== this.sent || reply.misordered !== 0) {
      throw new Error(
        `port sink received ${reply.received} of ${this.sent} records, ` +
          `${reply.misordered} out of order`,
      );
    }
  }

  private handleReply(reply: SinkReply): void {
    if (reply.type === 'ack') {
      this.acked = reply.received;
      const resolve = this.onAck;
      this.onAck = undefined;
      resolve?.();
    } else {
      const resolve = this.onFlushed;
      this.onFlushed = undefined;
      resolve?.(reply);
    }
  }
}

/** The part of a MessagePort that `PortStream` uses. */
interface MessagePortLike {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (message: SinkReply) => void): void;
}

/** Options of `atomicsRoundTrip`. */
export interface AtomicsRoundTripOptions extends RoundTripOptions {
  /**
   * Waiting primitive of the main thread. `'wait'` blocks it in
   * `Atomics.wait`, which Node allows on the main thread but which
   * stalls its event loop for the whole measurement. `'waitAsync'` uses
   * `Atomics.waitAsync`, whose wake-up goes through the event loop.
   */
  mode?: 'wait' | 'waitAsync';
  /**
   * Times each side polls the slot before it waits. Polling trades a busy
   * core for skipping the wake-up, which dominates the round trip when
   * both sides sleep.
   */
  spin?: number;
  /** Fails the benchmark when one reply takes longer than this. */
  timeoutMs?: number;
}

/** `Atomics.waitAsync`, which the ES2022 library typings lack. */
type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs?: number,
) => {
  async: boolean;
  value: 'ok' | 'not-equal' | 'timed-out' | Promise<'ok' | 'timed-out'>;
};

/**
 * Measures ping-pong latency between the main thread and a worker over
 * one Int32 slot of a SharedArrayBuffer, using Atomics.notify to wake the
 * other side. The worker always waits with `Atomics.wait`, and the main
 * thread waits with the primitive that `options.mode` selects.
 */
export async function atomicsRoundTrip(
  options: AtomicsRoundTripOptions = {},
): Promise<LatencyFigures> {
  const iterations = options.iterations ?? 20_000;
  const mode = options.mode ?? 'wait';
  const timeoutMs = options.timeoutMs ?? 5_000;
  const spin = options.spin ?? 0;
  checkPositiveInteger('iterations', iterations);
  if (!Number.isInteger(spin) || spin < 0) {
    throw new RangeError(`spin must be a non-negative integer: ${spin}`);
  }
  const waitAsync = (Atomics as unknown as { waitAsync?: WaitAsync })
    .waitAsync;
  if (mode === 'waitAsync' && waitAsync === undefined) {
    throw new Error('Atomics.waitAsync is missing in this runtime');
  }
  const state = new Int32Array(new SharedArrayBuffer(4));

  return withWorker(
    fixture('atomics-echo'),
    { workerData: { state: state.buffer, spin } },
    async ({ failure }) => {
      // Pings are odd (1, 3, 5, ...) and the worker replies with ping + 1.
      let ping = -1;
      const sendPing = (): number => {
        ping += 2;
        Atomics.store(state, 0, ping);
        Atomics.notify(state, 0);
        for (let i = 0; i < spin && Atomics.load(state, 0) === ping; i++) {
          // Polling only, as in the worker.
        }
        return ping;
      };
      const timedOut = (): Error =>
        new Error(
          `atomics echo sent no reply to ping ${ping} within ${timeoutMs} ms`,
        );

      const blockingRoundTrip = (): void => {
        const sent = sendPing();
        while (Atomics.load(state, 0) === sent) {
          if (Atomics.wait(state, 0, sent, timeoutMs) === 'timed-out') {
            throw timedOut();
          }
        }
      };
      const asyncRoundTrip = async (): Promise<void> => {
        const sent = sendPing();
        while (Atomics.load(state, 0) === sent) {
          const result = waitAsync!(state, 0, sent, timeoutMs);
          const outcome = result.async ? await result.value : result.value;
          if (outcome === 'timed-out') throw timedOut();
        }
      };

      try {
        const measurement = await Promise.race([
          measure(
            `atomicsRoundTrip ${mode}`,
            mode === 'wait' ? blockingRoundTrip : asyncRoundTrip,
            {
              warmupMs: options.warmupMs ?? 200,
              runMs: options.maxRunMs ?? 2_000,
              maxSamples: iterations,
            },
          ),
          failure,
        ]);
        return latencyFigures(measurement);
      } finally {
        Atomics.store(state, 0, -1);
        Atomics.notify(state, 0);
      }
    },
  );
}

/** Options of `sharedRingThroughput`, beyond the stream's size. */
export interface RingStreamOptions extends StreamOptions {
  /** Slots in the ring; a power of two. */
  capacity?: number;
  /** Fails the benchmark when either side waits longer than this. */
  timeoutMs?: number;
}

/**
 * Measures a one-way stream of records from the main thread to a worker
 * through a single-producer single-consumer ring in a SharedArrayBuffer.
 * The producer copies each record into a slot and the consumer copies it
 * out, so bytes are copied twice as with structured clone. The main
 * thread blocks in `Atomics.wait` whenever the ring is full and until the
 * consumer confirms the end of the stream, so its event loop is stalled
 * for the whole measurement.
 */
export async function sharedRingThroughput(
  options: RingStreamOptions = {},
): Promise<ThroughputFigures> {
  const payloadBytes = options.payloadBytes ?? 1024;
  const count = options.count ?? 400_000;
  const rounds = options.rounds ?? 5;
  const capacity = options.capacity ?? 256;
  const timeoutMs = options.timeoutMs ?? 10_000;
  checkPositiveInteger('payloadBytes', payloadBytes);
  checkPositiveInteger('count', count);
  checkPositiveInteger('rounds', rounds);
  const ring = SharedRing.create(capacity, payloadBytes);
  const control = new Int32Array(new SharedArrayBuffer(4 * CONTROL_SLOTS));
  const payload = new Uint8Array(payloadBytes).fill(0x5a);

  // Sends one round of `records` records and blocks until the consumer
  // has counted them all.
  const sendRound = (records: number): void => {
    const roundsDone = Atomics.load(control, ROUNDS_DONE);
    for (let i = 0; i < records; i++) {
      stampSequence(payload, i);
      ring.write(payload, timeoutMs);
    }
    ring.writeMarker(ROUND_END, timeoutMs);
    while (Atomics.load(control, ROUNDS_DONE) === roundsDone) {
      const outcome = Atomics.wait(control, ROUNDS_DONE, roundsDone, timeoutMs);
      if (outcome === 'timed-out') {
        throw new Error(`ring consumer did not finish within ${timeoutMs} ms`);
      }
    }
    const received = Atomics.load(control, ROUND_RECORDS);
    const misordered = Atomics.load(control, ROUND_MISORDERED);
    if (received !== records || misordered !== 0) {
      throw new Error(
        `ring consumer received ${received} of ${records} records, ` +
          `${misordered} out of order`,
      );
    }
  };

  return withWorker(
    fixture('ring-consumer'),
    {
      workerData: {
        ring: ring.buffer,
        capacity,
        maxRecordBytes: payloadBytes,
        control: control.buffer,
        timeoutMs,
      },
    },
    async () => {
      const figures = await timeRounds(rounds, count, payloadBytes, () =>
        sendRound(count),
      );
      ring.writeMarker(STOP, timeoutMs);
      return figures;
    },
  );
}

/**
 * Measures an in-thread copy of `bytes` bytes with `target.set(source)`,
 * the floor under any mechanism that copies.
 */
export async function copyBandwidth(
  options: BandwidthOptions = {},
): Promise<BandwidthFigures> {
  const bytes = options.bytes ?? 16 * MIB;
  checkPositiveInteger('bytes', bytes);
  const source = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) source[i] = i & 0xff;
  const target = new Uint8Array(bytes);

  const measurement = await measure('copyBandwidth', () => target.set(source), {
    warmupMs: options.warmupMs ?? 200,
    runMs: options.runMs ?? 1_000,
  });
  if (target[bytes - 1] !== source[bytes - 1]) {
    throw new Error('copyBandwidth: the target does not match the source');
  }
  return bandwidthFigures(bytes, measurement);
}

/**
 * Measures posting a Uint8Array of `bytes` bytes to a worker without
 * transferring it, so structured clone copies it, and waiting for the
 * worker's reply with the length it received.
 */
export async function structuredCloneBandwidth(
  options: BandwidthOptions = {},
): Promise<BandwidthFigures> {
  const bytes = options.bytes ?? 16 * MIB;
  checkPositiveInteger('bytes', bytes);
  const source = new Uint8Array(bytes).fill(0x5a);

  return withWorker(fixture('clone-sink'), {}, async ({ worker, failure }) => {
    const postAndWait = (): Promise<void> =>
      new Promise((resolve, reject) => {
        worker.once('message', (received: number) => {
          if (received === bytes) {
            resolve();
          } else {
            reject(new Error(`clone sink received ${received} of ${bytes} B`));
          }
        });
        worker.postMessage(source);
      });

    const measurement = await Promise.race([
      measure('structuredCloneBandwidth', postAndWait, {
        warmupMs: options.warmupMs ?? 300,
        runMs: options.runMs ?? 1_500,
      }),
      failure,
    ]);
    return bandwidthFigures(bytes, measurement);
  });
}

/** Figures of every baseline, under the names the table prints. */
export interface BaselineResults {
  messagePortRoundTrip: LatencyFigures;
  atomicsRoundTripWait: LatencyFigures;
  atomicsRoundTripWaitAsync: LatencyFigures;
  atomicsRoundTripSpin: LatencyFigures;
  messagePortThroughput: ThroughputFigures;
  sharedRingThroughput: ThroughputFigures;
  copyBandwidth: BandwidthFigures;
  structuredCloneBandwidth: BandwidthFigures;
}

/**
 * Polls per wait in the `atomicsRoundTripSpin` row. NOTE: picked by hand
 * to cover a reply that takes a few microseconds; a reply slower than the
 * polls still pays for the wake-up. With fewer idle cores than spinning
 * threads, a poller delays its partner, and on a loaded 2-core VM this
 * row's p90 reached about 180 us.
 */
const SPIN_POLLS = 20_000;

/**
 * Runs every baseline once with its default options, one after another,
 * calling `onStart` with each name before it runs.
 */
export async function runBaselines(
  onStart: (name: keyof BaselineResults) => void = () => undefined,
): Promise<BaselineResults> {
  const run = async <T>(
    name: keyof BaselineResults,
    benchmark: () => Promise<T>,
  ): Promise<T> => {
    onStart(name);
    return benchmark();
  };
  return {
    messagePortRoundTrip: await run('messagePortRoundTrip', () =>
      messagePortRoundTrip(),
    ),
    atomicsRoundTripWait: await run('atomicsRoundTripWait', () =>
      atomicsRoundTrip({ mode: 'wait' }),
    ),
    atomicsRoundTripWaitAsync: await run('atomicsRoundTripWaitAsync', () =>
      atomicsRoundTrip({ mode: 'waitAsync' }),
    ),
    atomicsRoundTripSpin: await run('atomicsRoundTripSpin', () =>
      atomicsRoundTrip({ mode: 'wait', spin: SPIN_POLLS }),
    ),
    messagePortThroughput: await run('messagePortThroughput', () =>
      messagePortThroughput(),
    ),
    sharedRingThroughput: await run('sharedRingThroughput', () =>
      sharedRingThroughput(),
    ),
    copyBandwidth: await run('copyBandwidth', () => copyBandwidth()),
    structuredCloneBandwidth: await run('structuredCloneBandwidth', () =>
      structuredCloneBandwidth(),
    ),
  };
}

/** Column headers of `baselineRows`. */
export const BASELINE_HEADERS = [
  'benchmark',
  'p50 us',
  'p90 us',
  'p99 us',
  'mean us',
  'msg/s',
  'MiB/s',
] as const;

/** Formats figures as table rows under `BASELINE_HEADERS`. */
export function baselineRows(results: BaselineResults): string[][] {
  return Object.entries(results).map(([name, figures]) => {
    const latency = 'p50Us' in figures ? figures : undefined;
    const rate = 'messagesPerSecond' in figures ? figures : undefined;
    return [
      name,
      formatFixed(latency?.p50Us, 1),
      formatFixed(latency?.p90Us, 1),
      formatFixed(latency?.p99Us, 1),
      formatFixed(latency?.meanUs, 1),
      formatSi(rate?.messagesPerSecond),
      'bytesPerSecond' in figures
        ? formatFixed(figures.bytesPerSecond / MIB, 0)
        : '-',
    ];
  });
}

/** Ratios between baselines that show the headroom of each mechanism. */
export function baselineRatios(
  results: BaselineResults,
): Record<string, number> {
  const portRtt = results.messagePortRoundTrip.p50Us;
  const portRate = results.messagePortThroughput;
  return {
    'MessagePort RTT / Atomics.wait RTT (p50)':
      portRtt / results.atomicsRoundTripWait.p50Us,
    'MessagePort RTT / Atomics.waitAsync RTT (p50)':
      portRtt / results.atomicsRoundTripWaitAsync.p50Us,
    'Atomics.wait RTT / Atomics spin RTT (p50)':
      results.atomicsRoundTripWait.p50Us / results.atomicsRoundTripSpin.p50Us,
    'shared ring / MessagePort (records per second)':
      results.sharedRingThroughput.messagesPerSecond /
      portRate.messagesPerSecond,
    'copy / structured clone (16 MiB bandwidth)':
      results.copyBandwidth.bytesPerSecond /
      results.structuredCloneBandwidth.bytesPerSecond,
    'structured clone (16 MiB) / MessagePort stream (1 KiB records)':
      results.structuredCloneBandwidth.bytesPerSecond / portRate.bytesPerSecond,
  };
}

function isMainModule(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    // argv[1] is not a file (a REPL or an eval), so this is no entry point.
    return false;
  }
}

async function main(): Promise<void> {
  const jsonPath = parseJsonPath(process.argv.slice(2));
  const environment = describeEnvironment();
  const results = await runBaselines((name) =>
    process.stderr.write(`running ${name}\n`),
  );

  const load = environment.loadAverage.map((value) => value.toFixed(2));
  console.log(
    `Baselines on Node ${environment.node}, ${environment.cpuCount} x ` +
      `${environment.cpuModel}, load average ${load.join(' ')} at start\n`,
  );
  console.log(formatTable(BASELINE_HEADERS, baselineRows(results)));
  console.log();
  const ratios = Object.entries(baselineRatios(results)).map(
    ([name, ratio]) => [name, ratio.toFixed(2)],
  );
  console.log(formatTable(['ratio', 'value'], ratios));

  if (jsonPath !== undefined) {
    writeJson(jsonPath, { environment, results });
    process.stderr.write(`wrote ${jsonPath}\n`);
  }
}

if (isMainModule()) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
