// Builds the browser bundles of ipcz-rx into dist/browser/ with esbuild
// (platform 'browser') and records their sizes:
//   ipcz-rx.js         the page entry (src/web/index.ts), minified, with
//                      rxjs and ts-pattern bundled and tree-shaken
//   ipcz-rx-worker.js  the worker entry (src/web/worker.ts), likewise
//   esm/               both entries unminified, rxjs and ts-pattern left
//                      as imports, for applications that bundle them
//                      with their own code
//   sizes.json         minified and gzipped bytes of the two bundles
// The build fails when any module imports a Node built-in, and when a
// part of rxjs that the library never uses gets into a bundle.
//
// Usage: node test/browser/build.mjs

import { build } from 'esbuild';
import { builtinModules } from 'node:module';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const outDir = `${root}dist/browser`;

const entries = {
  'ipcz-rx': `${root}src/web/index.ts`,
  'ipcz-rx-worker': `${root}src/web/worker.ts`,
};

const builtins = new Set(builtinModules);

/**
 * Fails the build on any import of a Node built-in, with or without the
 * `node:` prefix, naming the importing file.
 */
export const rejectNodeBuiltins = {
  name: 'reject-node-builtins',
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: /.*/ }, (args) => {
      const bare = args.path.replace(/^node:/, '').split('/')[0];
      if (!args.path.startsWith('node:') && !builtins.has(bare)) return null;
      const importer = relative(root, args.importer) || '(entry)';
      return {
        errors: [
          {
            text:
              `${importer} imports the Node built-in "${args.path}", ` +
              'which browsers lack; keep it out of the browser entries',
          },
        ],
      };
    });
  },
};

const shared = {
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  // rxjs publishes ES2015 modules under this condition; the default
  // condition resolves to its ES5 build, which is larger.
  conditions: ['es2015'],
  sourcemap: true,
  logLevel: 'silent',
  plugins: [rejectNodeBuiltins],
};

/** rxjs modules that ipcz-rx never uses; finding one means no shaking. */
const UNUSED_RXJS = /rxjs\/dist\/[^/]+\/internal\/(ajax|testing|observable\/dom)\//;

function measure(file) {
  const bytes = readFileSync(file);
  return { minified: bytes.length, gzipped: gzipSync(bytes, { level: 9 }).length };
}

function checkTreeShaking(name, metafile) {
  const output = Object.entries(metafile.outputs).find(([path]) =>
    path.endsWith(`${name}.js`),
  );
  const inputs = Object.entries(output[1].inputs).filter(
    ([, input]) => input.bytesInOutput > 0,
  );
  const unused = inputs.map(([path]) => path).filter((p) => UNUSED_RXJS.test(p));
  if (unused.length > 0) {
    throw new Error(
      `${name}.js contains rxjs modules that ipcz-rx does not use, so ` +
        `tree-shaking failed: ${unused.join(', ')}`,
    );
  }
  const rxjsBytes = inputs
    .filter(([path]) => path.includes('node_modules/rxjs/'))
    .reduce((sum, [, input]) => sum + input.bytesInOutput, 0);
  const rxjsModules = inputs.filter(([path]) =>
    path.includes('node_modules/rxjs/'),
  ).length;
  return { rxjsBytes, rxjsModules };
}

/**
 * Builds every browser bundle into dist/browser/ and returns the sizes,
 * also written to dist/browser/sizes.json. Throws on a build error.
 */
export async function buildBrowserBundles() {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const sizes = {};
  for (const [name, entry] of Object.entries(entries)) {
    const result = await build({
      ...shared,
      entryPoints: { [name]: entry },
      outdir: outDir,
      minify: true,
      metafile: true,
    });
    sizes[`${name}.js`] = {
      ...measure(`${outDir}/${name}.js`),
      ...checkTreeShaking(name, result.metafile),
    };
  }
  await build({
    ...shared,
    entryPoints: { index: entries['ipcz-rx'], worker: entries['ipcz-rx-worker'] },
    outdir: `${outDir}/esm`,
    splitting: true,
    external: ['rxjs', 'rxjs/*', 'ts-pattern'],
  });
  writeFileSync(`${outDir}/sizes.json`, `${JSON.stringify(sizes, null, 2)}\n`);
  return sizes;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    const sizes = await buildBrowserBundles();
    for (const [file, size] of Object.entries(sizes)) {
      console.log(
        `dist/browser/${file}: ${size.minified} bytes minified, ` +
          `${size.gzipped} gzipped (rxjs: ${size.rxjsModules} modules, ` +
          `${size.rxjsBytes} bytes)`,
      );
    }
  } catch (error) {
    console.error(`browser build failed: ${error.message}`);
    process.exit(1);
  }
}
