/**
 * The connection between a parent's node and a node in a worker, as the
 * worker_threads helpers (./node-worker) and the Web Worker helpers
 * (../web/node-worker) both make it. The parent picks the flags and sends
 * them with one MessagePort of the transport; each side then connects its
 * node. The module imports no Node built-in, so the browser entry uses it
 * too.
 */
import { filter, firstValueFrom } from 'rxjs';
import type { Transport } from '../drivers/driver';
import { IpczError } from '../errors';
import { MAX_INITIAL_PORTALS } from '../link/node-link-memory';
import { Node } from '../node/node';
import type { Portal } from '../router/portal';

/** Initial portals on a worker's link when the caller names no count. */
const DEFAULT_PORTALS = 1;

/**
 * Connection parameters the parent sends to the worker with one end of
 * the transport, a port of type `P`.
 */
export interface ParentConnection<P> {
  port: P;
  portals: number;
  /** Whether the parent is a broker; otherwise it shares its broker. */
  parentIsBroker: boolean;
  allocationDelegate: boolean;
  canAllocate: boolean;
  label: string | undefined;
}

/** Options of a worker start that shape its connection. */
export interface ParentConnectionOptions {
  allocationDelegate?: boolean;
  canAllocate?: boolean;
  label?: string;
}

/** Initial portals and delegation state of a worker's new link. */
export interface WorkerSideLink {
  portals: Portal[];
  delegateReady: Promise<void>;
}

/**
 * Checks an initial portal count and returns it, or 1 when `value` is
 * undefined. Throws `INVALID_ARGUMENT` for anything but a positive integer
 * and `OUT_OF_RANGE` above the initial portals a link supports. `name`
 * labels the value in the message.
 */
export function checkPortalCount(name: string, value: unknown): number {
  if (value === undefined) return DEFAULT_PORTALS;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `${name} must be a positive integer, got ${String(value)}`,
    );
  }
  if (value > MAX_INITIAL_PORTALS) {
    throw new IpczError(
      'OUT_OF_RANGE',
      `${name} is ${value}; at most ${MAX_INITIAL_PORTALS} initial portals ` +
        'are supported',
    );
  }
  return value;
}

/**
 * Throws `INVALID_ARGUMENT` unless `parent` is a Node whose driver is of
 * `family`. `requirement` ends the message, naming the driver to use.
 */
export function checkParent(
  parent: Node,
  family: string,
  requirement: string,
): void {
  if (!(parent instanceof Node)) {
    throw new IpczError('INVALID_ARGUMENT', 'parent must be a Node');
  }
  if (parent.driver.family !== family) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `parent node ${parent.label} uses a ${parent.driver.family} driver; ` +
        requirement,
    );
  }
}

/** Builds the parameters that `parent` sends to a worker with `port`. */
export function describeParentConnection<P>(
  parent: Node,
  port: P,
  portals: number,
  options: ParentConnectionOptions,
): ParentConnection<P> {
  return {
    port,
    portals,
    parentIsBroker: parent.isBroker,
    allocationDelegate: options.allocationDelegate === true,
    canAllocate: options.canAllocate ?? true,
    label: options.label,
  };
}

/**
 * Connects `parent` to a worker's node over `transport`. A broker parent
 * links the worker as a non-broker, and a non-broker parent shares its
 * broker, which then links the worker's node to itself and the parent.
 */
export function connectParentSide(
  parent: Node,
  transport: Transport,
  portals: number,
): Portal[] {
  return parent.connect(
    transport,
    parent.isBroker ? { portals } : { portals, shareBroker: true },
  );
}

/**
 * Connects the worker's `node` to its parent over `transport`, with the
 * flags in `connection` (`toBroker` or `inheritBroker`, and
 * `allocationDelegate`).
 */
export function connectWorkerSide(
  node: Node,
  transport: Transport,
  portals: number,
  connection: ParentConnection<unknown>,
): WorkerSideLink {
  const nodePortals = node.connect(transport, {
    portals,
    toBroker: connection.parentIsBroker,
    inheritBroker: !connection.parentIsBroker,
    allocationDelegate: connection.allocationDelegate,
  });
  return {
    portals: nodePortals,
    delegateReady: connection.allocationDelegate
      ? waitForDelegate(node)
      : Promise.resolve(),
  };
}

function waitForDelegate(node: Node): Promise<void> {
  const ready = firstValueFrom(
    node.allocationDelegate$.pipe(filter((name) => name !== null)),
  ).then(
    () => undefined,
    () => {
      throw new IpczError(
        'UNAVAILABLE',
        `node ${node.label} closed before its allocation delegate connected`,
      );
    },
  );
  // A caller that never awaits it must not see an unhandled rejection.
  ready.catch(() => undefined);
  return ready;
}
