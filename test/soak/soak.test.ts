import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** Time allowed for a 5-second soak, startup and settling included. */
const RUN_TIMEOUT_MS = 120_000;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runSoak(args: string[], timeoutMs: number): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'soak/soak.ts', ...args],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      stderr += `\nkilled after ${timeoutMs / 1000} s`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function lastLine(text: string): string {
  return text.trimEnd().split('\n').at(-1) ?? '';
}

test('soak runs 5 s cleanly', async () => {
  const args = ['--seconds', '5', '--seed', '3'];
  const result = await runSoak(args, RUN_TIMEOUT_MS);
  const output = `${result.stdout}\n${result.stderr}`;
  const last = lastLine(result.stdout);
  assert.match(
    last,
    /^soak: sent \d+, received \d+, lost 0, reordered 0, heap \+\d+ MiB$/,
    output,
  );
  const [, sent, received] = /sent (\d+), received (\d+)/.exec(last)!;
  assert.ok(Number(sent) > 0, 'no parcel was sent');
  assert.ok(Number(received) > 0, 'no parcel was received');
  assert.match(result.stdout, /^soak: seed 3, 5 s/m);
  assert.match(result.stdout, /proxies after settling: 0 /);
  assert.is(result.code, 0, output);
});

test('soak --help prints usage', async () => {
  const result = await runSoak(['--help'], 30_000);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, /^Usage: npm run soak/);
  assert.match(result.stdout, /--seconds N/);
  assert.match(result.stdout, /--seed N/);
});

test('soak rejects bad options with 2', async () => {
  const cases: [string[], RegExp][] = [
    [['--seconds', '0'], /invalid --seconds value "0"/],
    [['--seconds'], /missing value after --seconds/],
    [['--seed', 'x'], /invalid --seed value "x"/],
    [['--seed=4294967296'], /invalid --seed value/],
    [['--frobnicate'], /unknown option --frobnicate/],
  ];
  for (const [args, message] of cases) {
    const result = await runSoak(args, 30_000);
    assert.is(result.code, 2, args.join(' '));
    assert.is(result.stdout, '', args.join(' '));
    assert.is(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, message);
  }
});

test.run();
