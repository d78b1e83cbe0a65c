/**
 * Starts a worker_threads Worker on a script that may be TypeScript.
 *
 * NOTE: on Node 20.20, `new Worker('x.ts', { execArgv: ['--import',
 * 'tsx'] })` fails with ERR_UNKNOWN_FILE_EXTENSION, because loader hooks
 * given in a worker's execArgv are not applied to that worker. So a
 * TypeScript script gets a small JavaScript entry, evaluated in the worker,
 * that registers tsx's loader from inside the worker and then imports the
 * script. JavaScript scripts start directly and need no tsx.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { IpczError } from '../errors';

/** File extensions that need tsx's loader in the worker. */
const TYPESCRIPT_EXTENSION = /\.[cm]?tsx?$/;

/** Turns a path or URL into a `file:` URL; relative paths use the cwd. */
export function toScriptUrl(script: string | URL): URL {
  if (script instanceof URL) return script;
  if (typeof script !== 'string' || script === '') {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `script must be a file path or a file: URL, got ${String(script)}`,
    );
  }
  if (script.startsWith('file:')) return new URL(script);
  return pathToFileURL(resolve(script));
}

/** Tells whether the script needs tsx's loader to run. */
export function isTypeScriptUrl(url: URL): boolean {
  return TYPESCRIPT_EXTENSION.test(url.pathname);
}

/**
 * Builds the evaluated entry of a TypeScript worker. tsx's `register`
 * installs its hooks on the worker's own loader, so imports made by the
 * script, including nested workers started the same way, load too.
 */
function typeScriptEntrySource(script: URL): string {
  let tsxApi: string;
  const where = `cannot start TypeScript worker ${fileURLToPath(script)}`;
  if (typeof import.meta.resolve !== 'function') {
    // Code compiled to CommonJS has no import.meta.resolve.
    throw new IpczError(
      'FAILED_PRECONDITION',
      `${where}: TypeScript workers need ES modules ("type": "module" in ` +
        'package.json); otherwise pass a compiled .js script',
    );
  }
  try {
    tsxApi = import.meta.resolve('tsx/esm/api');
  } catch (error) {
    throw new IpczError(
      'FAILED_PRECONDITION',
      `${where}: tsx was not found (${String(error)}); install tsx or ` +
        'pass a compiled .js script',
    );
  }
  return [
    `import(${JSON.stringify(tsxApi)})`,
    `.then(({ register }) => { register();`,
    ` return import(${JSON.stringify(script.href)}); })`,
  ].join('');
}

/**
 * Starts a worker on `script`. A `.ts`, `.mts` or `.cts` script runs
 * through tsx's loader (see the file comment); any other starts as is.
 */
export function startWorker(script: URL, options: WorkerOptions): Worker {
  if (script.protocol !== 'file:') {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `worker script must be a file: URL, got ${script.href}`,
    );
  }
  if (!isTypeScriptUrl(script)) return new Worker(script, options);
  return new Worker(typeScriptEntrySource(script), {
    ...options,
    eval: true,
  });
}
