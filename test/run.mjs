// Runs every test/**/*.test.ts file in its own Node process (through tsx),
// two at a time, then (on a full run) the browser suite in headless
// Chromium, and ends with the line `N passed, N failed` over both.
//
// Usage: node test/run.mjs [FILTER...]
//   FILTER  keep only test files whose path contains one of these strings;
//           a filtered run skips the browser suite
// Environment:
//   TEST_TIMEOUT_SECONDS  per-file time limit (default 180)
//   TEST_JOBS             files run at once (default 2)
//   IPCZ_BROWSER_TESTS    0 leaves the browser suite out
//   CHROMIUM_PATH         the browser (default /usr/bin/chromium)
//   TEST_DIR, TEST_SUFFIX where to look and which file names to run
//                         (default test and .test.ts; the runner's own
//                         test points them at fixtures)

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);
const timeoutMs = Number(process.env.TEST_TIMEOUT_SECONDS ?? 180) * 1000;
const jobs = Number(process.env.TEST_JOBS ?? 2);

function findTests(dir) {
  const found = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...findTests(path));
    else if (entry.endsWith(suffix)) found.push(path);
  }
  return found;
}

const suffix = process.env.TEST_SUFFIX ?? '.test.ts';
const files = findTests(join(root, process.env.TEST_DIR ?? 'test'))
  .map((path) => relative(root, path))
  .filter((path) => filters.length === 0 || filters.some((f) => path.includes(f)))
  .sort();

function runFile(file, args = ['--import', 'tsx', file]) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => {
      output += `\n${file}: timed out after ${timeoutMs / 1000} s\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      // uvu's summary, or the plain closing line of the browser runner.
      const plain = /^(\d+) passed, (\d+) failed$/m.exec(output);
      const total = plain
        ? Number(plain[1]) + Number(plain[2])
        : Number(/Total:\s+(\d+)/.exec(output)?.[1] ?? 0);
      const passed = plain
        ? Number(plain[1])
        : Number(/Passed:\s+(\d+)/.exec(output)?.[1] ?? 0);
      // A file that crashed or exited non-zero with every test passing
      // still counts one failure, so a crash is never silent.
      let failed = total - passed;
      if (code !== 0 && failed === 0) failed = 1;
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      resolve({ file, passed, failed, output, seconds });
    });
  });
}

let passed = 0;
let failed = 0;
const queue = [...files];
async function worker() {
  for (let file = queue.shift(); file; file = queue.shift()) {
    const result = await runFile(file);
    passed += result.passed;
    failed += result.failed;
    const mark = result.failed === 0 ? 'ok  ' : 'FAIL';
    console.log(`${mark} ${file}: ${result.passed} passed, ${result.failed} failed (${result.seconds} s)`);
    if (result.failed > 0) console.log(result.output);
  }
}
await Promise.all(Array.from({ length: jobs }, worker));

const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (filters.length === 0 && process.env.IPCZ_BROWSER_TESTS !== '0') {
  if (existsSync(chromium)) {
    const result = await runFile('test/browser/run.mjs', [
      'test/browser/run.mjs',
    ]);
    passed += result.passed;
    failed += result.failed;
    const mark = result.failed === 0 ? 'ok  ' : 'FAIL';
    console.log(`${mark} browser suite: ${result.passed} passed, ` +
      `${result.failed} failed (${result.seconds} s)`);
    if (result.failed > 0) console.log(result.output);
  } else if (process.env.CI) {
    failed += 1;
    console.log(`FAIL browser suite: Chromium not found at ${chromium}`);
  } else {
    console.log(`note: browser suite not run: Chromium not found at ` +
      `${chromium}; install it with 'apt-get install -y chromium'`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && files.length > 0 ? 0 : 1);
