// Takes the screenshot of the browser example for the docs: builds and
// serves the pages on 127.0.0.1, opens examples/browser/index.html in
// headless Chromium, lets parcels flow for a few seconds and saves the
// page as docs/browser-example.png.
//
// Usage: node test/browser/screenshot.mjs

import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, buildPages, startServer } from './serve.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Time the example runs before the screenshot, in ms. */
const RUN_TIME_MS = 3_000;

await buildPages();
const server = await startServer();
let browser;
try {
  browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
  const page = await browser.newPage({ viewport: { width: 1280, height: 400 } });
  await page.goto(`${server.baseUrl}/examples/browser/index.html`);
  await page.waitForFunction(
    () => document.querySelectorAll('#stats tbody tr').length === 3,
    null,
    { timeout: 10_000 },
  );
  await page.waitForTimeout(RUN_TIME_MS);
  mkdirSync(`${root}docs`, { recursive: true });
  await page.screenshot({ path: `${root}docs/browser-example.png`, fullPage: true });
  console.log('saved docs/browser-example.png');
} finally {
  await browser?.close();
  await server.close();
}
