// Builds the library: ESM and CJS bundles of src/index.ts and an ESM
// bundle of the worker_threads helpers (src/workers/index.ts) with
// esbuild (rxjs and ts-pattern stay external), type declarations with
// tsc, then the browser bundles (test/browser/build.mjs).
//
// Usage: node build.mjs

import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';

const root = new URL('.', import.meta.url).pathname;
rmSync(`${root}dist`, { recursive: true, force: true });

const shared = {
  entryPoints: [`${root}src/index.ts`],
  bundle: true,
  platform: 'neutral',
  target: 'es2022',
  external: ['rxjs', 'rxjs/*', 'ts-pattern'],
  sourcemap: true,
  logLevel: 'warning',
};

// One ESM build of both entries with code splitting, so the main entry
// and the worker helpers share one copy of every class (Node, Portal,
// IpczError) instead of two that `instanceof` tells apart.
await build({
  ...shared,
  entryPoints: {
    index: `${root}src/index.ts`,
    workers: `${root}src/workers/index.ts`,
  },
  external: [...shared.external, 'node:*'],
  format: 'esm',
  splitting: true,
  outdir: `${root}dist`,
  chunkNames: 'chunks/[name]-[hash]',
});
await build({ ...shared, format: 'cjs', outfile: `${root}dist/index.cjs` });

execFileSync(
  process.execPath,
  [
    `${root}node_modules/typescript/bin/tsc`,
    '-p',
    `${root}tsconfig.build.json`,
  ],
  { stdio: 'inherit' },
);
execFileSync(process.execPath, [`${root}test/browser/build.mjs`], {
  stdio: 'inherit',
});
console.log('built dist/index.js, dist/index.cjs, dist/workers.js, ' +
  'dist/types and dist/browser');
