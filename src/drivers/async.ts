/**
 * The async driver: a transmission is delivered later, as if each node ran
 * on a thread of its own (ipcz's async reference driver gives each
 * transport a thread). Deliveries are scheduled on RxJS's
 * `asyncScheduler`, so inside `TestScheduler.run` a whole multi-node
 * exchange runs in virtual time.
 */
import { asyncScheduler } from 'rxjs';
import type { Driver } from './driver';
import {
  InProcessDriver,
  type DeliveryMode,
  type InProcessDriverOptions,
} from './in-process';

// One scheduled drain per endpoint delivers everything queued when it runs.
// Entries queued meanwhile wait for the next drain, so an endpoint that
// keeps receiving cannot starve the others.
const asyncDelivery: DeliveryMode = {
  schedule: (drain) => {
    asyncScheduler.schedule(drain);
  },
  batchPerDrain: true,
};

/**
 * Creates an in-process driver that delivers from `asyncScheduler` tasks,
 * in transmission order per transport. Its transports interoperate with
 * those of every other in-process driver.
 */
export function createAsyncDriver(options?: InProcessDriverOptions): Driver {
  return new InProcessDriver(asyncDelivery, options);
}
