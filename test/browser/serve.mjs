// Builds the browser test and example pages and serves them, with the
// library bundles, from a static server on 127.0.0.1.
//
// Pages import the library as /dist/browser/ipcz-rx.js and
// /dist/browser/ipcz-rx-worker.js, so the tests run the shipped bundles.
// Every response carries the headers that make a page cross-origin
// isolated (COOP same-origin, COEP require-corp), except under the
// /plain/ prefix, which serves the same files without them.
//
// Usage: node test/browser/serve.mjs
//   builds everything, serves it until interrupted and prints the URLs.

import { build } from 'esbuild';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBrowserBundles, rejectNodeBuiltins } from './build.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Folders the server exposes, relative to the repository root. */
const SERVED_FOLDERS = [
  'dist/browser/',
  'dist/browser-pages/',
  'test/browser/',
  'examples/browser/',
];

/** Flags for headless Chromium in a container without a GPU or network. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
};

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/**
 * Makes the pages' imports of the library entries load the built bundles
 * at run time instead of bundling the sources again.
 */
const useLibraryBundles = {
  name: 'use-library-bundles',
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: /\/src\/web\/(index|worker)$/ }, (args) => ({
      path: args.path.endsWith('worker')
        ? '/dist/browser/ipcz-rx-worker.js'
        : '/dist/browser/ipcz-rx.js',
      external: true,
    }));
  },
};

/** Builds the library bundles, then the pages into dist/browser-pages/. */
export async function buildPages() {
  const sizes = await buildBrowserBundles();
  await build({
    entryPoints: {
      'test/page': `${root}test/browser/page.ts`,
      'test/plain': `${root}test/browser/plain.ts`,
      'test/worker': `${root}test/browser/worker.ts`,
      'example/main': `${root}examples/browser/main.ts`,
      'example/worker': `${root}examples/browser/worker.ts`,
    },
    outdir: `${root}dist/browser-pages`,
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    conditions: ['es2015'],
    sourcemap: true,
    logLevel: 'silent',
    plugins: [useLibraryBundles, rejectNodeBuiltins],
  });
  return sizes;
}

function resolveFile(pathname) {
  const path = normalize(decodeURIComponent(pathname)).replace(/^\/+/, '');
  if (path.includes('..')) return null;
  if (!SERVED_FOLDERS.some((folder) => path.startsWith(folder))) return null;
  return join(root, path);
}

async function respond(request, response) {
  const url = new URL(request.url, 'http://127.0.0.1');
  const plain = url.pathname.startsWith('/plain/');
  const pathname = plain ? url.pathname.slice('/plain'.length) : url.pathname;
  const file = resolveFile(pathname);
  const headers = plain ? {} : { ...ISOLATION_HEADERS };
  if (file === null || request.method !== 'GET') {
    response.writeHead(404, headers).end('not found');
    return;
  }
  try {
    const body = await readFile(file);
    const type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
    response
      .writeHead(200, { ...headers, 'Content-Type': type, 'Cache-Control': 'no-store' })
      .end(body);
  } catch {
    response.writeHead(404, headers).end('not found');
  }
}

/**
 * Starts the static server on 127.0.0.1 at a free port. Resolves with
 * its base URL and a `close()` that stops it.
 */
export function startServer() {
  const server = createServer((request, response) => {
    respond(request, response).catch((error) => {
      response.writeHead(500).end(String(error));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        baseUrl: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildPages();
  const { baseUrl, close } = await startServer();
  console.log(`example: ${baseUrl}/examples/browser/index.html`);
  console.log(`tests:   ${baseUrl}/test/browser/index.html`);
  console.log('press Ctrl-C to stop');
  process.once('SIGINT', () => {
    void close().then(() => console.log('server stopped'));
  });
}
