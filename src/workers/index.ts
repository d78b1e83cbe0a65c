/**
 * Helpers that run ipcz-rx nodes in worker_threads workers. They need the
 * worker_threads driver, so they live apart from the main entry, which
 * runs anywhere.
 */
export {
  connectToParent,
  startNodeWorker,
  type ConnectToParentOptions,
  type NodeWorker,
  type ParentLink,
  type StartNodeWorkerOptions,
} from './node-worker';
export { createWorkerDriver, wrapPort } from '../drivers/worker-threads';
export type { WorkerDriverOptions } from '../drivers/worker-threads';
