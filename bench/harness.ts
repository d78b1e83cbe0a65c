/**
 * Small helpers shared by the benchmarks: timing with
 * `process.hrtime.bigint`, percentiles, rates, a fixed-width table, a
 * `--json PATH` writer and worker lifecycle.
 */

import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { TransferListItem } from 'node:worker_threads';

/** How long `measure` warms up and then samples, in milliseconds. */
export interface MeasureOptions {
  warmupMs: number;
  runMs: number;
  /** Sample count at which sampling stops even if `runMs` remains. */
  maxSamples?: number;
}

/** Per-call durations collected by `measure`. */
export interface Measurement {
  name: string;
  /** Duration of each timed call, in nanoseconds, in call order. */
  samplesNs: number[];
  /** Wall time of the timed phase, in nanoseconds. */
  elapsedNs: number;
}

/** Order statistics of a sample set, in the samples' own unit. */
export interface Summary {
  count: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Returns the current monotonic time in nanoseconds. */
export function nowNs(): bigint {
  return process.hrtime.bigint();
}

/** Returns the nanoseconds elapsed since `startNs` as a number. */
export function elapsedSinceNs(startNs: bigint): number {
  return Number(process.hrtime.bigint() - startNs);
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * Calls `fn` repeatedly for `warmupMs` without recording, then times each
 * call for `runMs` (or until `maxSamples`). A call that returns a promise
 * is awaited, and its sample includes the wait. A synchronous `fn` is
 * never awaited, so its samples contain no microtask hop.
 */
export async function measure(
  name: string,
  fn: () => unknown,
  options: MeasureOptions,
): Promise<Measurement> {
  const maxSamples = options.maxSamples ?? Number.POSITIVE_INFINITY;
  const warmupEnd = nowNs() + BigInt(Math.round(options.warmupMs * 1e6));
  while (nowNs() < warmupEnd) {
    const result = fn();
    if (isPromiseLike(result)) await result;
  }

  const samplesNs: number[] = [];
  const start = nowNs();
  const runEnd = start + BigInt(Math.round(options.runMs * 1e6));
  let callEnd = start;
  while (callEnd < runEnd && samplesNs.length < maxSamples) {
    const callStart = nowNs();
    const result = fn();
    if (isPromiseLike(result)) await result;
    callEnd = nowNs();
    samplesNs.push(Number(callEnd - callStart));
  }

  return { name, samplesNs, elapsedNs: Number(callEnd - start) };
}

/**
 * Returns the nearest-rank percentile `p` (0 to 100) of `sorted`, which
 * must be in ascending order and not empty.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) {
    throw new RangeError('percentile of an empty sample set is undefined');
  }
  if (!(p >= 0 && p <= 100)) {
    throw new RangeError(`percentile must be in 0..100, received ${p}`);
  }
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.max(rank, 1) - 1]!;
}

/** Computes min, p50, p90, p99, max and mean of a non-empty sample set. */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  let total = 0;
  for (const sample of sorted) total += sample;
  return {
    count: sorted.length,
    min: percentile(sorted, 0),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1]!,
    mean: total / sorted.length,
  };
}

/** Returns `count` units over `elapsedNs` nanoseconds as units per second. */
export function ratePerSecond(count: number, elapsedNs: number): number {
  if (!(elapsedNs > 0)) {
    throw new RangeError(
      `elapsed time must be positive, received ${elapsedNs} ns`,
    );
  }
  return (count * 1e9) / elapsedNs;
}

/** Formats `value` with `digits` decimals, or `-` when it is undefined. */
export function formatFixed(value: number | undefined, digits: number): string {
  return value === undefined ? '-' : value.toFixed(digits);
}

/** Formats a count or rate with an SI suffix (k, M, G), e.g. `1.23 M`. */
export function formatSi(value: number | undefined): string {
  if (value === undefined) return '-';
  const units: [number, string][] = [
    [1e9, ' G'],
    [1e6, ' M'],
    [1e3, ' k'],
  ];
  for (const [scale, suffix] of units) {
    if (Math.abs(value) >= scale) return (value / scale).toFixed(2) + suffix;
  }
  return value.toFixed(2);
}

/**
 * Formats rows as a fixed-width text table. The first column is
 * left-aligned and the rest right-aligned, which suits a name followed by
 * numbers. Each column is as wide as its widest cell.
 */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const formatRow = (cells: readonly string[]): string =>
    widths
      .map((width, column) => {
        const cell = cells[column] ?? '';
        return column === 0 ? cell.padEnd(width) : cell.padStart(width);
      })
      .join('  ')
      .trimEnd();
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  return [formatRow(headers), rule, ...rows.map(formatRow)].join('\n');
}

/**
 * Returns the path given by `--json PATH` or `--json=PATH` in `argv`, or
 * undefined when the option is absent. Throws when the path is missing.
 */
export function parseJsonPath(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg.startsWith('--json=')) {
      const path = arg.slice('--json='.length);
      if (path !== '') return path;
    } else if (arg === '--json') {
      const path = argv[i + 1];
      if (path !== undefined && !path.startsWith('--')) return path;
    } else {
      continue;
    }
    throw new Error('missing file path after --json; use --json PATH');
  }
  return undefined;
}

/** Machine and runtime facts to store next to measured figures. */
export interface Environment {
  node: string;
  platform: string;
  arch: string;
  cpuModel: string;
  cpuCount: number;
  /**
   * System load averages over 1, 5 and 15 minutes when the run started.
   * Near or above `cpuCount`, other processes competed for the cores and
   * the figures are noisy.
   */
  loadAverage: number[];
  date: string;
}

/** Describes the runtime and hardware the figures were measured on. */
export function describeEnvironment(): Environment {
  const cpuList = cpus();
  return {
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    cpuModel: cpuList[0]?.model ?? 'unknown',
    cpuCount: cpuList.length,
    loadAverage: loadavg(),
    date: new Date().toISOString(),
  };
}

/** Writes `value` to `path` as indented JSON with a trailing newline. */
export function writeJson(path: string, value: unknown): void {
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n');
}

/** Options for `withWorker`. */
export interface WorkerOptions {
  workerData?: unknown;
  transferList?: readonly TransferListItem[];
  /** Time allowed for the script's ready message, in milliseconds. */
  startTimeoutMs?: number;
}

/** A started worker plus a promise that rejects if it fails. */
export interface WorkerHandle {
  worker: Worker;
  /**
   * Never resolves, and rejects when the worker emits `error` or exits
   * before `withWorker` terminates it. Race it against every wait on the
   * worker, so a crashed worker fails the benchmark instead of hanging it.
   */
  failure: Promise<never>;
}

const tsxApiUrl = import.meta.resolve('tsx/esm/api');

/**
 * Builds the source of a worker that registers tsx and then imports the
 * TypeScript script. NOTE: the plain form, `new Worker(script, { execArgv:
 * ['--import', 'tsx'] })`, fails on Node 20.20 with
 * ERR_UNKNOWN_FILE_EXTENSION, because Node 20 does not apply loader hooks
 * registered through a worker's execArgv. Registering from inside the
 * worker works there and on later versions.
 */
function bootstrapSource(script: URL): string {
  return [
    `import(${JSON.stringify(tsxApiUrl)})`,
    `.then(({ register }) => { register();`,
    ` return import(${JSON.stringify(script.href)}); })`,
  ].join('');
}

/**
 * Starts the TypeScript worker script `script`, waits for its first
 * message (each fixture sends one once its listeners are set up), runs
 * `body`, and terminates the worker whether `body` resolves or throws.
 */
export async function withWorker<T>(
  script: URL,
  options: WorkerOptions,
  body: (handle: WorkerHandle) => Promise<T>,
): Promise<T> {
  const worker = new Worker(bootstrapSource(script), {
    eval: true,
    workerData: options.workerData,
    transferList: options.transferList as TransferListItem[] | undefined,
  });
  let terminating = false;
  const failure = new Promise<never>((_, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!terminating) {
        reject(new Error(`worker ${script.pathname} exited with code ${code}`));
      }
    });
  });
  // Attach a handler now so a failure after the last race is not reported
  // as an unhandled rejection.
  failure.catch(() => undefined);

  try {
    await Promise.race([
      waitForReady(worker, script, options.startTimeoutMs ?? 10_000),
      failure,
    ]);
    return await body({ worker, failure });
  } finally {
    terminating = true;
    await worker.terminate();
  }
}

function waitForReady(
  worker: Worker,
  script: URL,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new Error(
          `worker ${script.pathname} sent no ready message in ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    worker.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
