import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

test('runner counts failures and crashes', () => {
  const result = spawnSync(process.execPath, ['test/run.mjs'], {
    env: {
      ...process.env,
      TEST_DIR: 'test/fixtures/runner',
      TEST_SUFFIX: '.fixture.ts',
      IPCZ_BROWSER_TESTS: '0',
    },
    encoding: 'utf8',
    timeout: 60_000,
  });
  const lines = result.stdout.trim().split('\n');
  assert.is(lines[lines.length - 1], '2 passed, 2 failed');
  assert.is(result.status, 1);
});

test.run();
