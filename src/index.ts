/**
 * ipcz-rx: a port of Chromium's ipcz IPC library, shaped as an RxJS
 * runtime. Nodes link over driver transports; portals are entangled
 * pairs whose parcels carry bytes, portals and boxed objects.
 */

import type { Driver } from './drivers/driver';
import type { InProcessDriverOptions } from './drivers/in-process';
import { createAsyncDriver } from './drivers/async';
import { createSyncDriver } from './drivers/sync';
import { IpczError } from './errors';
import { Node, type NodeOptions } from './node/node';

export { IpczError, isIpczError, type IpczErrorCode } from './errors';
export type {
  ApplicationObject,
  Driver,
  DriverObject,
  SharedMemory,
  Transport,
  TransportListener,
} from './drivers/driver';
export type { InProcessDriverOptions } from './drivers/in-process';
export { Node } from './node/node';
export type { BadMessage, NodeOptions, NodeStats } from './node/node';
export type { ConnectOptions } from './node/node-connector';
export { Portal, Parcel } from './router/portal';
export type {
  Handle,
  PendingGet,
  PendingPut,
  PortalStatus,
  PutLimits,
  PutOptions,
  TrapConditions,
  TrapEvent,
} from './router/portal';
export { Box } from './router/box';
export { NodeName } from './wire/node-name';
export {
  createFaultInjectingDriver,
  type AllocationFault,
  type DelayFault,
  type FaultCounts,
  type FaultInjectingDriver,
  type FaultPlan,
  type SeverFault,
} from './drivers/fault-injecting';

/** The in-process reference drivers. */
export const drivers = {
  /**
   * An in-process driver that delivers each transmission before
   * `transmit` returns (re-entrancy safe).
   */
  sync(options?: InProcessDriverOptions): Driver {
    return createSyncDriver(options);
  },
  /**
   * An in-process driver that delivers later, on RxJS's asyncScheduler,
   * so a whole exchange runs in virtual time inside `TestScheduler.run`.
   */
  async(options?: InProcessDriverOptions): Driver {
    return createAsyncDriver(options);
  },
};

/**
 * Creates a node. Throws `INVALID_ARGUMENT` when `options.driver` is
 * missing or is not a driver.
 */
export function createNode(options: NodeOptions): Node {
  if (typeof options !== 'object' || options === null) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'createNode needs an options object',
    );
  }
  const driver = options.driver as Partial<Driver> | undefined;
  if (
    typeof driver !== 'object' ||
    driver === null ||
    typeof driver.createTransports !== 'function' ||
    typeof driver.transmit !== 'function'
  ) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'options.driver must be a driver such as drivers.sync()',
    );
  }
  if (options.broker !== undefined && typeof options.broker !== 'boolean') {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `options.broker must be a boolean, got ${String(options.broker)}`,
    );
  }
  if (options.label !== undefined && typeof options.label !== 'string') {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `options.label must be a string, got ${String(options.label)}`,
    );
  }
  return new Node(options);
}
