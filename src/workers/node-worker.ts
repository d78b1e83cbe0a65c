/**
 * Nodes in worker_threads workers: `startNodeWorker` starts a worker and
 * connects the parent's node to it, and `connectToParent`, called inside
 * that worker, creates the worker's node and connects it back.
 *
 * The parent creates the transport pair with its own driver, keeps one
 * end and passes the other end's MessagePort to the worker in
 * `workerData` (and in the transfer list). When the worker exits or
 * crashes its port closes, so the parent's link fails and every route
 * through it gets peer closure, as with any other lost link.
 */
import {
  isMainThread,
  workerData as rawWorkerData,
  type MessagePort,
  type ResourceLimits,
  type Worker,
} from 'node:worker_threads';
import {
  WORKER_THREADS_FAMILY,
  WorkerTransport,
  createWorkerDriver,
  wrapPort,
} from '../drivers/worker-threads';
import { IpczError } from '../errors';
import { Node } from '../node/node';
import type { Portal } from '../router/portal';
import {
  checkParent,
  checkPortalCount,
  connectParentSide,
  connectWorkerSide,
  describeParentConnection,
  type ParentConnection,
} from './parent-connection';
import { startWorker, toScriptUrl } from './worker-bootstrap';

/** Options of `startNodeWorker`. */
export interface StartNodeWorkerOptions {
  /** Initial portals on the new link (default 1). */
  portals?: number;
  /**
   * Whether the worker's node delegates shared memory allocation to the
   * parent's node (ipcz's `IPCZ_CONNECT_NODE_TO_ALLOCATION_DELEGATE`).
   */
  allocationDelegate?: boolean;
  /**
   * Whether the worker's driver may allocate shared memory (default
   * true). False models a sandboxed node; it then needs
   * `allocationDelegate` to get any memory at all.
   */
  canAllocate?: boolean;
  /** Application data, returned by `connectToParent` in the worker. */
  workerData?: unknown;
  /** Extra objects to transfer with `workerData` (ports, buffers). */
  transferList?: readonly (MessagePort | ArrayBuffer)[];
  /** Label of the worker's node, also used as the worker's name. */
  label?: string;
  /** Memory limits of the worker, passed to `new Worker`. */
  resourceLimits?: ResourceLimits;
}

/** A started node worker, from the parent's side. */
export interface NodeWorker {
  worker: Worker;
  /** The parent's initial portals to the worker's node. */
  portals: Portal[];
  /**
   * Resolves with the worker's exit code when it stops: 0 for a normal
   * exit, 1 after an uncaught exception, and 1 after `terminate()`.
   */
  exited: Promise<number>;
  /**
   * The uncaught error the worker stopped with, or undefined. Recorded
   * so that a crashing worker does not also crash the parent thread.
   */
  readonly error: unknown;
}

/** The `workerData` of a node worker: the connection and the caller's. */
interface NodeWorkerData {
  ipczRxParent: ParentConnection<MessagePort>;
  application: unknown;
}

/**
 * Starts `script` in a new worker_threads Worker and connects `parent` to
 * the node that the script creates with `connectToParent`. Returns the
 * parent's initial portals at once; parcels put into them are delivered
 * once the worker has connected.
 *
 * A broker parent links the worker as a non-broker, so the worker's node
 * gets its name from it. A non-broker parent shares its broker
 * (`shareBroker` on its side, `inheritBroker` in the worker): the broker
 * then links the worker's node to itself and to the parent.
 *
 * `.ts` scripts run through tsx's loader, registered inside the worker.
 * Throws `INVALID_ARGUMENT` for a parent whose driver is not the
 * worker_threads driver or for invalid options.
 */
export function startNodeWorker(
  parent: Node,
  script: string | URL,
  options: StartNodeWorkerOptions = {},
): NodeWorker {
  checkParent(
    parent,
    WORKER_THREADS_FAMILY,
    'node workers need one made by createWorkerDriver()',
  );
  const portals = checkPortalCount('options.portals', options.portals);
  const url = toScriptUrl(script);
  const [local, remote] = parent.driver.createTransports();
  if (!(remote instanceof WorkerTransport)) {
    throw new IpczError(
      'INTERNAL',
      'the worker_threads driver made a transport that is not a port',
    );
  }
  const port = remote.port;
  remote.markTransferred();

  const connection = describeParentConnection(parent, port, portals, options);
  const data: NodeWorkerData = {
    ipczRxParent: connection,
    application: options.workerData,
  };
  let worker: Worker;
  try {
    worker = startWorker(url, {
      workerData: data,
      transferList: [port, ...(options.transferList ?? [])],
      name: options.label,
      resourceLimits: options.resourceLimits,
    });
  } catch (error) {
    port.close();
    parent.driver.closeTransport(local);
    throw error;
  }

  let error: unknown;
  worker.on('error', (thrown) => {
    error = thrown;
  });
  const exited = new Promise<number>((resolve) => {
    worker.once('exit', resolve);
  });
  let parentPortals: Portal[];
  try {
    parentPortals = connectParentSide(parent, local, portals);
  } catch (thrown) {
    // The worker would wait forever for a parent that never connected.
    void worker.terminate();
    throw thrown;
  }
  return {
    worker,
    portals: parentPortals,
    exited,
    get error() {
      return error;
    },
  };
}

/** Options of `connectToParent`. */
export interface ConnectToParentOptions {
  /**
   * Whether this worker's driver may allocate shared memory. It can only
   * narrow what the parent allowed: a parent that started the worker with
   * `canAllocate: false` keeps it sandboxed.
   */
  canAllocate?: boolean;
  /** Label of the new node; defaults to the parent's choice, else 'worker'. */
  label?: string;
  /**
   * Initial portals on this side (default: the parent's count). When the
   * counts differ, portals beyond the smaller count see their peer closed.
   */
  portals?: number;
}

/** The result of `connectToParent` inside the worker. */
export interface ParentLink {
  /** The worker's node, on a worker_threads driver. */
  node: Node;
  /** The initial portals to the parent's node. */
  portals: Portal[];
  /** The `workerData` passed to `startNodeWorker`. */
  workerData: unknown;
  /**
   * Resolves once this node's shared memory allocation is delegated to
   * the parent, at once when the parent did not ask for delegation.
   * Rejects with `UNAVAILABLE` when the node closes first. Until it
   * resolves, `node.allocateSharedMemory` allocates directly, which a
   * sandboxed node cannot do.
   */
  delegateReady: Promise<void>;
}

function readParentConnection(
  value: unknown,
): ParentConnection<MessagePort> {
  const connection = (value as Partial<NodeWorkerData> | null | undefined)
    ?.ipczRxParent;
  if (
    typeof connection !== 'object' ||
    connection === null ||
    typeof connection.port !== 'object' ||
    typeof connection.portals !== 'number'
  ) {
    throw new IpczError(
      'FAILED_PRECONDITION',
      'workerData carries no parent connection; start this worker with ' +
        'startNodeWorker',
    );
  }
  return connection;
}

/**
 * Creates this worker's node and connects it to the node that started the
 * worker with `startNodeWorker`, with the flags the parent asked for
 * (`toBroker` or `inheritBroker`, and `allocationDelegate`). Call it once
 * per worker. Throws `FAILED_PRECONDITION` on the main thread, in a worker
 * not started by `startNodeWorker`, or on a second call.
 */
export function connectToParent(
  options: ConnectToParentOptions = {},
): ParentLink {
  if (isMainThread) {
    throw new IpczError(
      'FAILED_PRECONDITION',
      'connectToParent must be called inside a worker, not the main thread',
    );
  }
  const connection = readParentConnection(rawWorkerData);
  if (connected) {
    throw new IpczError(
      'FAILED_PRECONDITION',
      'connectToParent was already called in this worker',
    );
  }
  const portals =
    options.portals === undefined
      ? connection.portals
      : checkPortalCount('options.portals', options.portals);
  const canAllocate = connection.canAllocate && options.canAllocate !== false;
  const node = new Node({
    driver: createWorkerDriver({ canAllocate }),
    label: options.label ?? connection.label ?? 'worker',
  });
  const transport = wrapPort(connection.port);
  connected = true;
  const link = connectWorkerSide(node, transport, portals, connection);
  return {
    node,
    portals: link.portals,
    workerData: (rawWorkerData as NodeWorkerData).application,
    delegateReady: link.delegateReady,
  };
}

let connected = false;
