/**
 * The browser entry of ipcz-rx: everything of the main entry, plus the
 * Web Worker driver and the helpers that start nodes in Web Workers. It
 * imports no Node built-in; each worker script imports `./worker` (or
 * this entry) and calls `connectToParent`.
 */
export * from '../index';
export {
  checkWebWorkerSupport,
  createWebWorkerDriver,
  wrapWebPort,
  WEB_WORKERS_FAMILY,
  type HeartbeatOptions,
  type WebWorkerDriverOptions,
} from '../drivers/web-workers';
export {
  DEFAULT_WORKER_HEARTBEAT,
  connectToParent,
  startWebNodeWorker,
  type StartWebNodeWorkerOptions,
  type WebConnectToParentOptions,
  type WebNodeWorker,
  type WebParentLink,
} from './node-worker';
