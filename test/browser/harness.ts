/**
 * A small test harness for pages driven by test/browser/run.mjs. Each
 * test runs in turn with a time limit. The page publishes the promise of
 * all results as `window.ipczTestResults`, which the runner awaits.
 */

/** Outcome of one test; `info` is a note that the runner prints. */
export interface TestResult {
  name: string;
  passed: boolean;
  error?: string;
  info?: string;
}

type TestBody = () => Promise<string | void>;

/** Time allowed for one test, in ms. */
const TEST_TIMEOUT_MS = 20_000;

const tests: { name: string; body: TestBody }[] = [];

/** Registers a test. A body may return a note for the runner's output. */
export function test(name: string, body: TestBody): void {
  tests.push({ name, body });
}

/** Throws with `message` unless `condition` holds. */
export function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** Throws unless `actual` and `expected` have the same JSON form. */
export function checkEqual(
  actual: unknown,
  expected: unknown,
  subject: string,
): void {
  const actualJson = JSON.stringify(actual);
  const expectedJson = JSON.stringify(expected);
  if (actualJson !== expectedJson) {
    throw new Error(
      `${subject}: expected ${expectedJson.slice(0, 300)}, ` +
        `got ${actualJson.slice(0, 300)}`,
    );
  }
}

/** Returns the `code` of what `fn` throws, or 'no error'. */
export function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return String((error as { code?: unknown }).code ?? error);
  }
  return 'no error';
}

function withTimeout(body: TestBody): Promise<string | void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${TEST_TIMEOUT_MS} ms`)),
      TEST_TIMEOUT_MS,
    );
  });
  return Promise.race([body(), expired]).finally(() => clearTimeout(timer));
}

/** Runs every registered test in order and publishes the results. */
export function runTests(): void {
  const results = (async () => {
    const outcomes: TestResult[] = [];
    for (const { name, body } of tests) {
      try {
        const info = await withTimeout(body);
        outcomes.push({ name, passed: true, ...(info ? { info } : {}) });
      } catch (error) {
        const text = error instanceof Error ? error.stack ?? error.message : '';
        outcomes.push({ name, passed: false, error: text || String(error) });
      }
    }
    return outcomes;
  })();
  (window as unknown as { ipczTestResults: unknown }).ipczTestResults =
    results;
}
