/** Command-line options of the soak. */

/** Parsed options of a soak run. */
export interface SoakOptions {
  /** Seconds of random traffic before the run settles and reports. */
  seconds: number;
  /** Seed of every random choice, a 32-bit unsigned integer. */
  seed: number;
  /** Largest allowed growth of the summed heaps, in MiB. */
  maxHeapGrowthMib: number;
  /** Maximum wait between sending merge peers away and merging, in ms. */
  mergeDelayMs: number;
}

/** An invalid command line; the message names the option and the fix. */
export class UsageError extends Error {}

export const USAGE = `Usage: npm run soak -- [options]

Runs a broker on the main thread and four worker nodes on worker threads
(worker-0 sandboxed: it cannot allocate shared memory and delegates to
the broker). For the given time the workers open, move, merge and close
routes at random and send checksummed parcels both ways on every route.
The run then closes every route and checks that no parcel was lost,
reordered or corrupted, that no proxy is left and that the heap did not
grow by more than the limit. Exit code 0 means every check passed, 1 a
failed check, a crashed worker or a hang, 2 invalid options.

  --seconds N            seconds of random traffic (default 30)
  --seed N               seed of the random choices, 0 to 4294967295
                         (default: random, printed at the start); the
                         choices replay, thread timing does not
  --max-heap-growth MIB  largest allowed growth of the main thread's and
                         workers' heaps together, in MiB (default 64)
  --merge-delay MS       longest wait, in milliseconds, between sending
                         the peers of two fresh portals away and merging
                         the portals; half of the merges wait a random
                         1 to MS ms (default 20, 0 merges at once)
  --help                 print this help`;

const NAMES = ['--seconds', '--seed', '--max-heap-growth', '--merge-delay'];

function parseInteger(name: string, text: string, min: number, max: number) {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UsageError(
      `invalid ${name} value ${JSON.stringify(text)}: expected an integer ` +
        `from ${min} to ${max}`,
    );
  }
  return value;
}

/**
 * Parses `argv` (without the node and script paths). Returns 'help' for
 * `--help`; throws `UsageError` for an unknown option, a missing value
 * or a value out of range. `randomSeed` supplies the default seed.
 */
export function parseOptions(
  argv: readonly string[],
  randomSeed: () => number,
): SoakOptions | 'help' {
  const options: SoakOptions = {
    seconds: 30,
    seed: -1,
    maxHeapGrowthMib: 64,
    mergeDelayMs: 20,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    const [name, inline] = arg.split(/=(.*)/s, 2) as [string, string?];
    if (!NAMES.includes(name)) {
      throw new UsageError(`unknown option ${arg}; see --help`);
    }
    const value = inline ?? argv[++i];
    if (value === undefined || value === '') {
      throw new UsageError(`missing value after ${name}; see --help`);
    }
    if (name === '--seconds') {
      options.seconds = parseInteger(name, value, 1, 7 * 24 * 3600);
    } else if (name === '--seed') {
      options.seed = parseInteger(name, value, 0, 0xffffffff);
    } else if (name === '--merge-delay') {
      options.mergeDelayMs = parseInteger(name, value, 0, 10_000);
    } else {
      options.maxHeapGrowthMib = parseInteger(name, value, 1, 65536);
    }
  }
  if (options.seed < 0) options.seed = randomSeed();
  return options;
}
