/**
 * Entry of a soak worker thread: connects to the broker on the main
 * thread and runs the random workload of `SoakWorker`.
 */
import { connectToParent } from '../src/workers';
import type { SoakWorkerData } from './protocol';
import { SoakWorker } from './soak-worker';

const { node, portals, workerData, delegateReady } = connectToParent();
const { index, seed, mergeDelayMs } = workerData as SoakWorkerData;
new SoakWorker(node, portals[0]!, {
  index,
  seed,
  mergeDelayMs,
  allocationReady: delegateReady,
});
