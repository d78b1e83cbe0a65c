/**
 * The sync driver: a transmission reaches the peer's listener before
 * `transmit` returns, as with ipcz's synchronous single-process reference
 * driver. A transmission made while the receiving endpoint's listener is
 * running is queued and delivered by that outer call once the listener
 * returns, so listeners never re-enter themselves. Messages that arrived
 * before activation are delivered inside `activateTransport`.
 */
import type { Driver } from './driver';
import {
  InProcessDriver,
  type DeliveryMode,
  type InProcessDriverOptions,
} from './in-process';

const syncDelivery: DeliveryMode = {
  schedule: (drain) => drain(),
  batchPerDrain: false,
};

/**
 * Creates an in-process driver that delivers on the sender's stack. Its
 * transports interoperate with those of every other in-process driver.
 */
export function createSyncDriver(options?: InProcessDriverOptions): Driver {
  return new InProcessDriver(syncDelivery, options);
}
