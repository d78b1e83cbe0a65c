/**
 * What the multinode harness and its worker launcher share in the worker
 * modes. It defines the description of a node worker and the messages a
 * worker sends back about its node body. It also contains the code that
 * starts a node worker, used on the main thread and, for referred
 * children, inside workers, and the main thread's watcher of one body.
 *
 * Every node worker gets two MessagePorts: the transport of its node's
 * first connection, and a control port whose other end is on the main
 * thread. A worker that starts a nested worker sends the nested worker's
 * control port to the main thread, so the main thread hears from every
 * body directly, however deep it was started.
 */
import {
  MessageChannel,
  type MessagePort,
  type Worker,
} from 'node:worker_threads';
import { ReplaySubject, type Observable } from 'rxjs';
import type { BadMessage, ConnectOptions, Node } from '../../src/index';
import { startWorker } from '../../src/workers/worker-bootstrap';
import type { NodeBodyReference } from './harness';

/** The worker entry that runs one node body. */
const LAUNCHER_URL = new URL('./worker-launcher.ts', import.meta.url);

/**
 * Everything a node worker needs, passed in `workerData`. `moduleUrl` is
 * the scenario module that registers the node body `bodyName`.
 */
export interface NodeWorkerSpec extends NodeBodyReference {
  /** The scenario, as `Suite.Name/mode`, for messages. */
  scenario: string;
  /** The driver mode, as the harness names it. */
  mode: string;
  label: string;
  /** Whether the worker's node is a broker. */
  broker: boolean;
  /** Whether the worker's driver may allocate shared memory. */
  canAllocate: boolean;
  /** Whether referred children connect with `allocationDelegate`. */
  delegated: boolean;
  /** The worker's end of its first transport. */
  transport: MessagePort;
  /** The worker's end of its control channel to the main thread. */
  control: MessagePort;
  /**
   * How the worker's node connects on `transport`, or `null` for a raw
   * spawn, whose body gets the transport unconnected.
   */
  connect: ConnectOptions | null;
}

/** An error from a worker, flattened for `postMessage`. */
export interface WorkerError {
  message: string;
  stack: string | undefined;
  /** uvu's assertion diff, when the error is an assertion. */
  details: string | undefined;
}

/** Messages a node worker sends on its control port. */
export type ControlMessage =
  | { kind: 'finished' }
  | { kind: 'failed'; error: WorkerError }
  | {
      kind: 'spawned';
      bodyName: string;
      label: string;
      /** The main thread's end of the nested worker's control channel. */
      control: MessagePort;
    };

/** Flattens a thrown value into a WorkerError. */
export function toWorkerError(error: unknown): WorkerError {
  if (error instanceof Error) {
    const details = (error as { details?: unknown }).details;
    return {
      message: error.message,
      stack: error.stack,
      details: typeof details === 'string' ? details : undefined,
    };
  }
  return { message: String(error), stack: undefined, details: undefined };
}

/**
 * Builds the main thread's error for a failed body: its message names the
 * body and node, and its stack contains the worker's frames, so uvu prints
 * where in the worker the body failed.
 */
export function toBodyFailure(
  bodyName: string,
  label: string,
  error: WorkerError,
): Error {
  const message =
    `node body ${bodyName} on ${label} (in a worker) failed: ${error.message}`;
  const failure = new Error(message);
  const frames = (error.stack ?? '')
    .split('\n')
    .filter((line) => /^\s+at /.test(line));
  failure.stack = [`Error: ${message}`, ...frames].join('\n');
  if (error.details !== undefined) {
    (failure as Error & { details?: string }).details = error.details;
  }
  return failure;
}

/**
 * Records the `badMessages$` of `node` from now on, because a bad
 * handshake can be rejected before the node's body subscribes.
 */
export function recordBadMessages(node: Node): Observable<BadMessage> {
  const recorded = new ReplaySubject<BadMessage>();
  node.badMessages$.subscribe(recorded);
  return recorded.asObservable();
}

/**
 * A node worker just started: the Worker, and the other end of its
 * control channel, which the caller watches or passes to the main thread.
 */
export interface StartedNodeWorker {
  worker: Worker;
  control: MessagePort;
}

/**
 * Starts a node worker for `spec` minus its ports: the caller passes the
 * worker's end of the transport, and this function makes the control
 * channel. `onError` gets an error that the worker did not catch itself,
 * such as a failure to load tsx.
 */
export function startBodyWorker(
  spec: Omit<NodeWorkerSpec, 'control'>,
  onError: (error: unknown) => void,
): StartedNodeWorker {
  const channel = new MessageChannel();
  const workerSpec: NodeWorkerSpec = { ...spec, control: channel.port2 };
  const worker = startWorker(LAUNCHER_URL, {
    workerData: workerSpec,
    transferList: [spec.transport, channel.port2],
    name: spec.label,
  });
  worker.on('error', onError);
  return { worker, control: channel.port1 };
}

/** Callbacks of a RemoteBody. */
export interface RemoteBodyEvents {
  /** A nested worker that this body's node started. */
  onSpawned(bodyName: string, label: string, control: MessagePort): void;
  /**
   * A failure of the body or of its worker, also one reported after the
   * body returned (an uncaught error from a subscription it left).
   */
  onFailure(error: Error): void;
}

/**
 * The main thread's view of one node body running in a worker. `done`
 * resolves when the body returns and rejects when it throws, when the
 * worker reports an uncaught error, or when the worker goes away before
 * the body returned.
 */
export class RemoteBody {
  readonly done: Promise<void>;
  private finished = false;
  private failed = false;
  private stopped = false;
  private resolveDone: () => void = () => {};
  private rejectDone: (error: Error) => void = () => {};

  constructor(
    readonly bodyName: string,
    readonly label: string,
    private readonly control: MessagePort,
    private readonly events: RemoteBodyEvents,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // Keeps an unobserved failure from being reported as unhandled.
    this.done.catch(() => {});
    control.on('message', this.onMessage);
    control.on('close', this.onClose);
  }

  /** Fails the body with an error that did not come through the port. */
  fail(error: unknown): void {
    this.reportFailure(
      toBodyFailure(this.bodyName, this.label, toWorkerError(error)),
    );
  }

  /**
   * Stops watching and closes the port, at teardown. The worker's exit
   * that follows is then no failure.
   */
  stop(): void {
    this.stopped = true;
    this.control.off('message', this.onMessage);
    this.control.off('close', this.onClose);
    this.control.close();
  }

  private readonly onMessage = (message: ControlMessage): void => {
    if (this.stopped) return;
    switch (message.kind) {
      case 'finished':
        this.finished = true;
        if (!this.failed) this.resolveDone();
        break;
      case 'failed':
        this.reportFailure(
          toBodyFailure(this.bodyName, this.label, message.error),
        );
        break;
      case 'spawned':
        this.events.onSpawned(message.bodyName, message.label, message.control);
        break;
    }
  };

  /**
   * The worker went away. After its body finished that is no failure by
   * itself, because the launcher catches uncaught errors and reports them
   * on the port instead of dying.
   */
  private readonly onClose = (): void => {
    if (this.stopped || this.finished) return;
    this.reportFailure(
      new Error(
        `node body ${this.bodyName} on ${this.label}: its worker exited ` +
          'before the body finished',
      ),
    );
  };

  private reportFailure(error: Error): void {
    if (this.stopped) return;
    if (!this.finished && !this.failed) this.rejectDone(error);
    this.failed = true;
    this.events.onFailure(error);
  }
}
