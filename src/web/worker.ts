/**
 * The entry for code inside a Web Worker: what a worker's node needs,
 * without the in-process drivers or `startWebNodeWorker`, so that a
 * worker bundle stays small. A worker script imports it, calls
 * `connectToParent` and uses the portals it returns.
 */
export { createNode } from '../index';
export { IpczError, isIpczError, type IpczErrorCode } from '../errors';
export type {
  ApplicationObject,
  Driver,
  DriverObject,
  SharedMemory,
  Transport,
} from '../drivers/driver';
export { Node } from '../node/node';
export type { BadMessage, NodeOptions, NodeStats } from '../node/node';
export type { ConnectOptions } from '../node/node-connector';
export { Portal, Parcel } from '../router/portal';
export type {
  Handle,
  PendingGet,
  PendingPut,
  PortalStatus,
  PutLimits,
  PutOptions,
  TrapConditions,
  TrapEvent,
} from '../router/portal';
export { Box } from '../router/box';
export { NodeName } from '../wire/node-name';
export {
  checkWebWorkerSupport,
  createWebWorkerDriver,
  wrapWebPort,
  WEB_WORKERS_FAMILY,
  type HeartbeatOptions,
  type WebWorkerDriverOptions,
} from '../drivers/web-workers';
export {
  connectToParent,
  type WebConnectToParentOptions,
  type WebParentLink,
} from './node-worker';
