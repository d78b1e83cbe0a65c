/**
 * A driver for nodes on a browser page and in its Web Workers. A transport
 * is one `MessagePort` of a `MessageChannel`, so it can be sent to any
 * worker through another transport, and shared memory is a
 * SharedArrayBuffer, which `postMessage` shares instead of copying.
 *
 * Browsers give SharedArrayBuffer only to cross-origin isolated contexts,
 * so creating the driver fails at once on a page that is not isolated.
 *
 * Liveness: a browser fires no event on a MessagePort when the worker at
 * the other end is terminated (unless it supports the `close` event), so
 * this driver detects a lost peer in these ways, and only these:
 * - a transport closed by its owner (`node.close()`, a dropped link)
 *   posts a close message first, so the peer fails at once;
 * - the `close` event of MessagePort, where the browser fires it;
 * - with the `heartbeat` option, an endpoint posts a heartbeat every
 *   `intervalMs`, and its peer fails the transport after `timeoutMs`
 *   without any message (node workers send them by default);
 * - `terminate()` of a `WebNodeWorker` fails the parent's transport
 *   itself (see src/web/node-worker.ts).
 * A worker that is terminated by other means, or that calls
 * `self.close()`, goes unnoticed when no heartbeat runs and the browser
 * fires no `close` event (Chromium 156 fires none). Its routes then stay
 * open. A heartbeat timeout is delayed, never hastened, while the
 * watching thread itself stalls.
 *
 * This module uses web messaging only and imports no Node built-in.
 */
import { asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';
import { IpczError } from '../errors';
import type {
  ActivationOptions,
  Driver,
  DriverObject,
  Transport,
  TransportListener,
} from './driver';
import { PortDriverBase } from './port-driver';
import {
  PortTransport,
  checkMessagePort,
  type BatchPolicy,
  type PortMessage,
} from './port-transport';

/** The `family` of the Web Worker driver. */
export const WEB_WORKERS_FAMILY = 'web-workers';

/** Heartbeats that an endpoint sends so its peer can detect its loss. */
export interface HeartbeatOptions {
  /** Time between two heartbeats, in milliseconds. */
  intervalMs: number;
  /**
   * Silence after which the peer fails the transport, in milliseconds.
   * It must exceed `intervalMs`. A worker that blocks its event loop
   * for longer than this is treated as gone.
   */
  timeoutMs: number;
}

/** Options of `createWebWorkerDriver`. */
export interface WebWorkerDriverOptions {
  /**
   * Whether the driver may allocate shared memory (default `true`). False
   * models a sandboxed node, which must delegate every allocation.
   */
  canAllocate?: boolean;
  /**
   * Heartbeats sent on every transport this driver activates (default:
   * none). A peer watches for silence only after its first heartbeat, so
   * the two ends of a transport may differ.
   */
  heartbeat?: HeartbeatOptions;
  /** Scheduler of heartbeats and their timeouts (default asyncScheduler). */
  scheduler?: SchedulerLike;
}

/** Largest heartbeat timeout accepted from a peer, in ms (one day). */
const MAX_HEARTBEAT_TIMEOUT_MS = 24 * 60 * 60 * 1000;

/**
 * A message of the driver itself, posted alone instead of in a batch:
 * `close` precedes a deliberate close of the port, and `heartbeat`
 * promises another message within `timeoutMs`.
 */
type ControlMessage =
  | { ipczRxControl: 'close' }
  | { ipczRxControl: 'heartbeat'; timeoutMs: number };

/** Liveness settings an endpoint takes from the driver that activates it. */
interface LivenessSettings {
  heartbeat: HeartbeatOptions | undefined;
  scheduler: SchedulerLike;
}

// Copies the bytes at once, because the caller may reuse its buffer
// before the batch is posted. A batch grows until the end of the task.
const webBatchPolicy: BatchPolicy = {
  copyData: true,
  maxMessages: Infinity,
  maxBytes: Infinity,
};

/**
 * One endpoint of a transport: a wrapped `MessagePort`.
 *
 * Transmissions made in one task are posted together as one array when
 * the current microtasks have run, in order, which costs one structured
 * clone per task instead of one per message. Control messages follow the
 * batch that was pending when they were posted.
 */
export class WebWorkerTransport extends PortTransport<MessagePort> {
  private scheduler: SchedulerLike = asyncScheduler;
  private heartbeats: Subscription | null = null;
  private watchdog: Subscription | null = null;
  private lastHeardAt = 0;
  private peerTimeoutMs = 0;

  constructor(port: MessagePort) {
    super(port, webBatchPolicy);
  }

  activate(listener: TransportListener, settings: LivenessSettings): void {
    this.enterActiveState(listener);
    this.scheduler = settings.scheduler;
    this.port.addEventListener('message', this.onPortMessage);
    this.port.addEventListener('messageerror', this.onPortMessageError);
    this.port.addEventListener('close', this.onPortClose);
    // A port queues what arrives before start(), so messages sent before
    // activation are delivered now, in order.
    this.port.start();
    if (settings.heartbeat !== undefined) {
      this.startHeartbeats(settings.heartbeat);
    }
  }

  /**
   * Fails this endpoint as if its peer had gone, then closes it. The
   * owner of a worker calls this when it terminates the worker, because
   * the port cannot observe the termination.
   */
  disconnect(reason: string): void {
    this.fail(reason);
    this.close();
  }

  protected postBatch(batch: PortMessage[], transfer: MessagePort[]): void {
    this.port.postMessage(batch, transfer);
  }

  /** Posts a close message first, so the peer's listener gets `onError`. */
  protected override announceClose(): void {
    this.postControl({ ipczRxControl: 'close' });
  }

  protected override onFail(): void {
    this.stopTimers();
  }

  private postControl(message: ControlMessage): void {
    try {
      this.port.postMessage(message);
    } catch {
      // A control message contains no handles and clones without fail,
      // so a failed post leaves nothing to recover.
    }
  }

  private readonly onPortMessage = (event: MessageEvent): void => {
    this.lastHeardAt = this.scheduler.now();
    const payload: unknown = event.data;
    if (isControlMessage(payload)) {
      this.onControlMessage(payload);
      return;
    }
    if (!Array.isArray(payload)) {
      this.rejectMessage('port message is not an array of transmissions');
      return;
    }
    for (const entry of payload) {
      if (isPortMessage(entry)) {
        this.deliver(entry.data, entry.handles);
      } else if (this.delivering) {
        this.rejectMessage('port message entry lacks data or handles');
      }
    }
  };

  private onControlMessage(message: ControlMessage): void {
    if (message.ipczRxControl === 'close') {
      this.fail('peer transport closed');
      return;
    }
    const { timeoutMs } = message;
    if (
      !Number.isFinite(timeoutMs) ||
      timeoutMs <= 0 ||
      timeoutMs > MAX_HEARTBEAT_TIMEOUT_MS
    ) {
      this.rejectMessage(`heartbeat timeout ${String(timeoutMs)} is invalid`);
      return;
    }
    this.peerTimeoutMs = timeoutMs;
    if (this.watchdog === null) this.armWatchdog(timeoutMs);
  }

  private readonly onPortClose = (): void => {
    this.fail('peer transport closed');
  };

  private readonly onPortMessageError = (event: MessageEvent): void => {
    this.fail(`failed to deserialize a message: ${String(event.data)}`);
  };

  /** Posts a heartbeat now, so the peer starts watching, then repeatedly. */
  private startHeartbeats(options: HeartbeatOptions): void {
    const beat: ControlMessage = {
      ipczRxControl: 'heartbeat',
      timeoutMs: options.timeoutMs,
    };
    this.postControl(beat);
    const post = () => this.postControl(beat);
    this.heartbeats = this.scheduler.schedule(function repeat() {
      post();
      this.schedule(undefined, options.intervalMs);
    }, options.intervalMs);
  }

  /**
   * Checks after `delayMs` whether the peer kept its last heartbeat's
   * promise. Any message counts, so a busy transport needs no heartbeats.
   */
  private armWatchdog(delayMs: number): void {
    const dueAt = this.scheduler.now() + delayMs;
    this.watchdog = this.scheduler.schedule(() => {
      this.watchdog = null;
      if (!this.delivering) return;
      const now = this.scheduler.now();
      // A check that runs far past its time means this thread stalled
      // (a long task, a throttled background tab). The peer's heartbeats
      // may still wait in the port's queue, so the watch starts over.
      if (now - dueAt > this.peerTimeoutMs / 2) {
        this.lastHeardAt = now;
      }
      const silentMs = now - this.lastHeardAt;
      if (silentMs >= this.peerTimeoutMs) {
        this.fail(
          `peer sent nothing for ${silentMs} ms, past its heartbeat ` +
            `timeout of ${this.peerTimeoutMs} ms; its worker was probably ` +
            'terminated',
        );
        return;
      }
      this.armWatchdog(this.peerTimeoutMs - silentMs);
    }, delayMs);
  }

  private stopTimers(): void {
    this.heartbeats?.unsubscribe();
    this.heartbeats = null;
    this.watchdog?.unsubscribe();
    this.watchdog = null;
  }

  protected stopListening(): void {
    this.stopTimers();
    this.port.removeEventListener('message', this.onPortMessage);
    this.port.removeEventListener('messageerror', this.onPortMessageError);
    this.port.removeEventListener('close', this.onPortClose);
  }
}

function isControlMessage(value: unknown): value is ControlMessage {
  if (typeof value !== 'object' || value === null) return false;
  const control = (value as { ipczRxControl?: unknown }).ipczRxControl;
  if (control === 'close') return true;
  return (
    control === 'heartbeat' &&
    typeof (value as { timeoutMs?: unknown }).timeoutMs === 'number'
  );
}

function isPortMessage(value: unknown): value is PortMessage {
  if (typeof value !== 'object' || value === null) return false;
  const { data, handles } = value as Partial<PortMessage>;
  return data instanceof Uint8Array && Array.isArray(handles);
}

/**
 * Throws unless this context can run the Web Worker driver: it needs
 * MessageChannel (`UNIMPLEMENTED` when missing) and a cross-origin
 * isolated context with SharedArrayBuffer (`FAILED_PRECONDITION`).
 */
export function checkWebWorkerSupport(): void {
  if (typeof MessageChannel !== 'function') {
    throw new IpczError(
      'UNIMPLEMENTED',
      'the Web Worker driver needs MessageChannel, which this JavaScript ' +
        'environment does not provide',
    );
  }
  const isolated =
    (globalThis as { crossOriginIsolated?: unknown }).crossOriginIsolated;
  if (isolated !== true || typeof SharedArrayBuffer !== 'function') {
    const found =
      typeof SharedArrayBuffer === 'function'
        ? `crossOriginIsolated is ${String(isolated)}`
        : 'SharedArrayBuffer is missing';
    throw new IpczError(
      'FAILED_PRECONDITION',
      `the Web Worker driver needs shared memory, but ${found}. Browsers ` +
        'provide SharedArrayBuffer only to cross-origin isolated pages: ' +
        'serve the page and its worker scripts with the headers ' +
        '"Cross-Origin-Opener-Policy: same-origin" and ' +
        '"Cross-Origin-Embedder-Policy: require-corp"',
    );
  }
}

/**
 * Wraps a `MessagePort` as a transport of the Web Worker driver. The
 * other port of its channel must be wrapped on the other side. Throws
 * `INVALID_ARGUMENT` for anything but a MessagePort.
 */
export function wrapWebPort(port: MessagePort): WebWorkerTransport {
  checkMessagePort(port);
  return new WebWorkerTransport(port);
}

function checkHeartbeat(heartbeat: HeartbeatOptions | undefined): void {
  if (heartbeat === undefined) return;
  const { intervalMs, timeoutMs } = heartbeat;
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `heartbeat.intervalMs must be a positive number, got ${intervalMs}`,
    );
  }
  if (
    !Number.isFinite(timeoutMs) ||
    timeoutMs <= intervalMs ||
    timeoutMs > MAX_HEARTBEAT_TIMEOUT_MS
  ) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `heartbeat.timeoutMs must exceed intervalMs (${intervalMs}) and be ` +
        `at most ${MAX_HEARTBEAT_TIMEOUT_MS}, got ${timeoutMs}`,
    );
  }
}

/**
 * A driver whose transports are MessagePorts. Transports interoperate
 * with every other instance of this driver, on the page or in a worker.
 */
class WebWorkerDriver extends PortDriverBase<
  MessagePort,
  WebWorkerTransport
> {
  readonly family = WEB_WORKERS_FAMILY;
  protected readonly driverName = 'the Web Worker driver';
  private readonly liveness: LivenessSettings;

  constructor(options: WebWorkerDriverOptions) {
    super(options.canAllocate ?? true);
    this.liveness = {
      heartbeat: options.heartbeat,
      scheduler: options.scheduler ?? asyncScheduler,
    };
  }

  activateTransport(
    transport: Transport,
    listener: TransportListener,
    _options: ActivationOptions,
  ): void {
    this.toEndpoint(transport).activate(listener, this.liveness);
  }

  protected isEndpoint(object: DriverObject): object is WebWorkerTransport {
    return object instanceof WebWorkerTransport;
  }

  protected openChannel(): MessageChannel {
    return new MessageChannel();
  }

  protected createEndpoint(port: MessagePort): WebWorkerTransport {
    return new WebWorkerTransport(port);
  }
}

/**
 * Creates a driver for nodes on a browser page and in its Web Workers.
 * The page and each worker make their own driver. Throws
 * `FAILED_PRECONDITION` when the context is not cross-origin isolated
 * (no SharedArrayBuffer), `UNIMPLEMENTED` without MessageChannel, and
 * `INVALID_ARGUMENT` for invalid heartbeat options.
 */
export function createWebWorkerDriver(
  options: WebWorkerDriverOptions = {},
): Driver {
  checkWebWorkerSupport();
  checkHeartbeat(options.heartbeat);
  return new WebWorkerDriver(options);
}
