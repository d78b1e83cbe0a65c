// Runs the browser tests: builds the bundles and pages, serves them on
// 127.0.0.1, loads each test page in headless Chromium through
// playwright-core, prints one line per test and ends with the line
// `N passed, N failed`. Exits with 1 when a test fails or cannot run.
//
// Usage: node test/browser/run.mjs
// Environment:
//   CHROMIUM_PATH  browser executable (default /usr/bin/chromium; on
//                  Debian, `apt-get install -y chromium` provides it)

import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, buildPages, startServer } from './serve.mjs';

const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Time allowed for one page's whole run, in ms. */
const PAGE_TIMEOUT_MS = 180_000;

/** Test pages and whether each is served cross-origin isolated. */
const PAGES = [
  { path: '/test/browser/index.html', isolated: true },
  { path: '/plain/test/browser/plain.html', isolated: false },
];

async function runPage(browser, url) {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  try {
    await page.goto(url);
    await page.waitForFunction(() => window.ipczTestResults !== undefined, null, {
      timeout: 30_000,
    });
    const results = await page.evaluate(() => window.ipczTestResults);
    return { results, problems };
  } catch (error) {
    return {
      results: [{ name: `load ${url}`, passed: false, error: String(error) }],
      problems,
    };
  } finally {
    await page.close();
  }
}

async function main() {
  if (!existsSync(executablePath)) {
    console.error(
      `${executablePath} not found; install it with ` +
        '`apt-get update && apt-get install -y chromium` or set CHROMIUM_PATH',
    );
    console.log('0 passed, 1 failed');
    return 1;
  }
  const sizes = await buildPages();
  for (const [file, size] of Object.entries(sizes)) {
    console.log(
      `# dist/browser/${file}: ${size.minified} bytes minified, ` +
        `${size.gzipped} gzipped`,
    );
  }
  const server = await startServer();
  let browser;
  let passed = 0;
  let failed = 0;
  try {
    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
    for (const { path } of PAGES) {
      const timer = setTimeout(() => {
        console.error(`${path}: timed out after ${PAGE_TIMEOUT_MS} ms`);
        process.exit(1);
      }, PAGE_TIMEOUT_MS);
      const { results, problems } = await runPage(browser, server.baseUrl + path);
      clearTimeout(timer);
      for (const result of results) {
        const note = result.info ? ` (${result.info})` : '';
        if (result.passed) {
          passed++;
          console.log(`ok   ${result.name}${note}`);
        } else {
          failed++;
          console.log(`FAIL ${result.name}\n${result.error}`);
        }
      }
      for (const problem of problems) console.log(`# ${path}: ${problem}`);
    }
  } finally {
    await browser?.close();
    await server.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    console.log('0 passed, 1 failed');
    process.exit(1);
  },
);
