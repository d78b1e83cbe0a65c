/**
 * Nodes in Web Workers: `startWebNodeWorker`, on the page, starts a worker
 * and connects the page's node to it, and `connectToParent`, called inside
 * that worker, creates the worker's node and connects it back.
 *
 * A browser worker has no `workerData`. A message that reaches a worker
 * before its script has added a listener is dropped, as happens when the
 * script connects only after an `await`. So the two sides shake hands
 * over the worker's own message channel: the worker posts `ready` from
 * `connectToParent`, and the parent replies with `connect`, which carries
 * one MessagePort of the transport and the connection flags. Messages of
 * this handshake carry an `ipczRx` key; an application that posts its own
 * messages to the worker should ignore those.
 *
 * A browser fires no event on a MessagePort when its worker is
 * terminated, so `WebNodeWorker.terminate()` also fails the parent's
 * transport, and every route through that link gets peer closure. Other
 * nodes linked to the worker directly learn of its end from the
 * heartbeats it sends by default. See the liveness notes in
 * src/drivers/web-workers.ts for what is detected otherwise.
 */
import {
  WEB_WORKERS_FAMILY,
  WebWorkerTransport,
  createWebWorkerDriver,
  wrapWebPort,
  type HeartbeatOptions,
} from '../drivers/web-workers';
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
} from '../workers/parent-connection';

/** Options of `startWebNodeWorker`. */
export interface StartWebNodeWorkerOptions {
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
  /**
   * Heartbeats that the worker's driver sends on all its transports
   * (default `DEFAULT_WORKER_HEARTBEAT`; `null` sends none). They are how
   * the worker's other peers notice its termination: once routes reduce,
   * other workers link to it directly, and `WebNodeWorker.terminate()`
   * can only fail the parent's own link.
   */
  heartbeat?: HeartbeatOptions | null;
  /** Application data, structured-cloned to `connectToParent`. */
  workerData?: unknown;
  /** Label of the worker's node, also the worker's name. */
  label?: string;
  /** Script type when a URL is given (default 'module'). */
  type?: WorkerType;
}

/** A started node worker, from the parent's side. */
export interface WebNodeWorker {
  readonly worker: Worker;
  /** The parent's initial portals to the worker's node. */
  readonly portals: Portal[];
  /**
   * Resolves when the worker's script has called `connectToParent` and
   * received the connection. Rejects with `UNAVAILABLE` when the worker
   * fails first, and the link has then failed. A script that does not
   * load, a worker that is not cross-origin isolated and `terminate()`
   * all fail it.
   */
  readonly started: Promise<void>;
  /** The last `error` event of the worker, or undefined. */
  readonly error: ErrorEvent | undefined;
  /**
   * Terminates the worker and fails the parent's link to it at once, so
   * every route through that link gets peer closure. Calling it again does
   * nothing.
   */
  terminate(): void;
}

/** Messages of the handshake over the worker's own channel. */
type HandshakeMessage =
  | { ipczRx: 'ready' }
  | { ipczRx: 'failed'; reason: string }
  | ({ ipczRx: 'connect' } & WebParentConnection);

/** Connection parameters the parent posts to the worker. */
interface WebParentConnection extends ParentConnection<MessagePort> {
  heartbeat: HeartbeatOptions | undefined;
  workerData: unknown;
}

/**
 * Default heartbeats of a node worker. A beat a second costs little. A
 * 10 s timeout drops a worker whose event loop is blocked that long, as
 * a long synchronous computation can do, so such a worker needs a larger
 * timeout or `heartbeat: null`.
 */
export const DEFAULT_WORKER_HEARTBEAT: Readonly<HeartbeatOptions> = {
  intervalMs: 1_000,
  timeoutMs: 10_000,
};

function readHandshake(data: unknown): HandshakeMessage | null {
  if (typeof data !== 'object' || data === null) return null;
  const kind = (data as { ipczRx?: unknown }).ipczRx;
  if (kind !== 'ready' && kind !== 'failed' && kind !== 'connect') {
    return null;
  }
  return data as HandshakeMessage;
}

function openWorker(
  script: string | URL | Worker,
  options: StartWebNodeWorkerOptions,
): Worker {
  if (typeof script === 'string' || script instanceof URL) {
    return new Worker(script, {
      type: options.type ?? 'module',
      name: options.label,
    });
  }
  if (typeof (script as Partial<Worker>)?.postMessage !== 'function') {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'script must be a URL, a string URL or a Worker',
    );
  }
  return script;
}

/**
 * Starts a Web Worker and connects `parent` to the node that its script
 * creates with `connectToParent`. `script` is the worker's URL (started
 * as a module unless `options.type` is 'classic') or a Worker the
 * caller already made, which lets bundlers see `new Worker(new URL(...))`.
 * Returns the parent's initial portals at once; parcels put into them are
 * delivered once the worker has connected.
 *
 * A broker parent links the worker as a non-broker, so the worker's node
 * gets its name from it. A non-broker parent shares its broker.
 *
 * Throws `INVALID_ARGUMENT` for a parent whose driver is not the Web
 * Worker driver or for invalid options, and `OUT_OF_RANGE` for more
 * initial portals than a link supports.
 */
export function startWebNodeWorker(
  parent: Node,
  script: string | URL | Worker,
  options: StartWebNodeWorkerOptions = {},
): WebNodeWorker {
  checkParent(
    parent,
    WEB_WORKERS_FAMILY,
    'Web Worker nodes need one made by createWebWorkerDriver()',
  );
  const portals = checkPortalCount('options.portals', options.portals);
  const heartbeat =
    options.heartbeat === undefined
      ? DEFAULT_WORKER_HEARTBEAT
      : options.heartbeat ?? undefined;
  if (heartbeat !== undefined) {
    // Checks the options here, where the caller can catch the error.
    createWebWorkerDriver({ heartbeat });
  }
  const [local, remote] = parent.driver.createTransports();
  if (
    !(local instanceof WebWorkerTransport) ||
    !(remote instanceof WebWorkerTransport)
  ) {
    throw new IpczError(
      'INTERNAL',
      'the Web Worker driver made a transport that is not a port',
    );
  }
  const worker = openWorker(script, options);
  const connection: WebParentConnection = {
    ...describeParentConnection(parent, remote.port, portals, options),
    heartbeat: heartbeat === undefined ? undefined : { ...heartbeat },
    workerData: options.workerData,
  };
  remote.markTransferred();
  return new StartedWorker(parent, worker, local, connection);
}

/** The parent's side of one node worker, from start to termination. */
class StartedWorker implements WebNodeWorker {
  readonly portals: Portal[];
  readonly started: Promise<void>;
  private lastError: ErrorEvent | undefined;
  private connection: WebParentConnection | null;
  private settleStart: (error?: IpczError) => void = () => undefined;
  private terminated = false;

  constructor(
    parent: Node,
    readonly worker: Worker,
    private readonly transport: WebWorkerTransport,
    connection: WebParentConnection,
  ) {
    this.connection = connection;
    this.started = new Promise<void>((resolve, reject) => {
      this.settleStart = (error) => (error ? reject(error) : resolve());
    });
    // A caller that never awaits it must not see an unhandled rejection.
    this.started.catch(() => undefined);
    worker.addEventListener('message', this.onMessage);
    worker.addEventListener('error', this.onError);
    try {
      this.portals = connectParentSide(
        parent,
        transport,
        connection.portals,
      );
    } catch (thrown) {
      // The worker would wait forever for a parent that never connected.
      this.terminate();
      throw thrown;
    }
  }

  get error(): ErrorEvent | undefined {
    return this.lastError;
  }

  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    this.stopListening();
    this.worker.terminate();
    this.connection?.port.close();
    this.connection = null;
    this.transport.disconnect('the worker was terminated');
    this.settleStart(
      new IpczError('UNAVAILABLE', 'the worker was terminated'),
    );
  }

  private readonly onMessage = (event: MessageEvent): void => {
    const message = readHandshake(event.data);
    if (message === null) return;
    if (message.ipczRx === 'failed') {
      this.failStart(`the worker failed to connect: ${message.reason}`);
      return;
    }
    const connection = this.connection;
    if (message.ipczRx !== 'ready' || connection === null) return;
    this.connection = null;
    const reply: HandshakeMessage = { ipczRx: 'connect', ...connection };
    this.worker.postMessage(reply, [connection.port]);
    this.settleStart();
  };

  private readonly onError = (event: ErrorEvent): void => {
    this.lastError = event;
    // Before the handshake an error means the script did not load or
    // threw at its top level, so the worker will never connect.
    if (this.connection !== null) {
      this.failStart(`the worker failed to start: ${describeError(event)}`);
    }
  };

  private failStart(reason: string): void {
    this.settleStart(new IpczError('UNAVAILABLE', reason));
    this.stopListening();
    this.terminated = true;
    this.worker.terminate();
    this.connection?.port.close();
    this.connection = null;
    this.transport.disconnect(reason);
  }

  private stopListening(): void {
    this.worker.removeEventListener('message', this.onMessage);
    this.worker.removeEventListener('error', this.onError);
  }
}

function describeError(event: ErrorEvent): string {
  if (event.message) return event.message;
  return `error event at ${event.filename || 'an unknown script'}`;
}

/** Options of `connectToParent`. */
export interface WebConnectToParentOptions {
  /**
   * Whether this worker's driver may allocate shared memory. It can only
   * narrow what the parent allowed: a parent that started the worker with
   * `canAllocate: false` keeps it sandboxed.
   */
  canAllocate?: boolean;
  /** Label of the new node; defaults to the parent's choice, else 'worker'. */
  label?: string;
}

/** The result of `connectToParent` inside the worker. */
export interface WebParentLink {
  /** The worker's node, on a Web Worker driver. */
  node: Node;
  /** The initial portals to the parent's node. */
  portals: Portal[];
  /** The `workerData` given to `startWebNodeWorker`. */
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

/** The parts of a dedicated worker's global scope that are used here. */
interface DedicatedWorkerScope {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', listener: (e: MessageEvent) => void): void;
  removeEventListener(
    type: 'message',
    listener: (e: MessageEvent) => void,
  ): void;
}

function getWorkerScope(): DedicatedWorkerScope {
  const scopeClass = (globalThis as { DedicatedWorkerGlobalScope?: unknown })
    .DedicatedWorkerGlobalScope;
  if (typeof scopeClass !== 'function' || !(globalThis instanceof scopeClass)) {
    throw new IpczError(
      'FAILED_PRECONDITION',
      'connectToParent must be called inside a dedicated Web Worker ' +
        'started by startWebNodeWorker',
    );
  }
  return globalThis as unknown as DedicatedWorkerScope;
}

let connectCalled = false;

/**
 * Creates this worker's node and connects it to the node that started the
 * worker with `startWebNodeWorker`, with the flags the parent asked for
 * (`toBroker` or `inheritBroker`, and `allocationDelegate`). Call it once
 * per worker. It posts `ready` to the parent and resolves when the
 * parent's connection arrives, so it never resolves in a worker that was
 * not started by `startWebNodeWorker`.
 *
 * Throws `FAILED_PRECONDITION` outside a dedicated worker or on a second
 * call. Rejects with `FAILED_PRECONDITION` when the worker is not cross-
 * origin isolated, after telling the parent, whose `started` rejects.
 */
export function connectToParent(
  options: WebConnectToParentOptions = {},
): Promise<WebParentLink> {
  const scope = getWorkerScope();
  if (connectCalled) {
    throw new IpczError(
      'FAILED_PRECONDITION',
      'connectToParent was already called in this worker',
    );
  }
  connectCalled = true;
  return new Promise<WebParentLink>((resolve, reject) => {
    const onMessage = (event: MessageEvent): void => {
      const message = readHandshake(event.data);
      if (message?.ipczRx !== 'connect') return;
      scope.removeEventListener('message', onMessage);
      try {
        resolve(connectNode(message, options));
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        scope.postMessage({ ipczRx: 'failed', reason });
        message.port.close();
        reject(error);
      }
    };
    scope.addEventListener('message', onMessage);
    scope.postMessage({ ipczRx: 'ready' });
  });
}

function connectNode(
  connection: WebParentConnection,
  options: WebConnectToParentOptions,
): WebParentLink {
  const canAllocate = connection.canAllocate && options.canAllocate !== false;
  const driver = createWebWorkerDriver({
    canAllocate,
    heartbeat: connection.heartbeat,
  });
  const node = new Node({
    driver,
    label: options.label ?? connection.label ?? 'worker',
  });
  const link = connectWorkerSide(
    node,
    wrapWebPort(connection.port),
    checkPortalCount('connection.portals', connection.portals),
    connection,
  );
  return {
    node,
    portals: link.portals,
    workerData: connection.workerData,
    delegateReady: link.delegateReady,
  };
}
