/**
 * Runs on a page served without the cross-origin isolation headers, where
 * the Web Worker driver must refuse to start with a clear error.
 */
import { createWebWorkerDriver } from '../../src/web/index';
import { check, checkEqual, runTests, test } from './harness';

test('driver needs cross-origin isolation', async () => {
  check(globalThis.crossOriginIsolated !== true, 'page is not isolated');
  let error: { code?: unknown; message?: unknown } = {};
  try {
    createWebWorkerDriver();
  } catch (thrown) {
    error = thrown as typeof error;
  }
  checkEqual(error.code, 'FAILED_PRECONDITION', 'error code');
  const message = String(error.message);
  check(
    message.includes('Cross-Origin-Opener-Policy: same-origin'),
    `message names COOP: ${message}`,
  );
  check(
    message.includes('Cross-Origin-Embedder-Policy: require-corp'),
    `message names COEP: ${message}`,
  );
});

runTests();
