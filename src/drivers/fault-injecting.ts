/**
 * A driver wrapper that injects faults by a seeded plan, so that code
 * built on ipcz-rx can be tested against slow deliveries, transports that
 * break mid-stream and platforms that refuse shared memory.
 *
 * The wrapper adds no objects of its own: transports and memory are the
 * inner driver's, so a node on the wrapper interoperates with nodes on
 * the plain inner driver. Per-transport state is kept beside each
 * endpoint this driver activates or transmits on.
 */
import { asyncScheduler, type SchedulerLike } from 'rxjs';
import { IpczError } from '../errors';
import type {
  ActivationOptions,
  Driver,
  DriverObject,
  SerializedObject,
  SharedMemory,
  Transport,
  TransmitCheck,
  TransportListener,
} from './driver';

/**
 * Delays what arrives on transports this driver activated. Deliveries on
 * one transport keep their order: a message is never delivered before the
 * one that arrived ahead of it, so a short delay may wait behind a long
 * one.
 */
export interface DelayFault {
  /** Chance that a message is delayed, from 0 to 1 (default 1). */
  probability?: number;
  /** Minimum delay in milliseconds (default 0). */
  minMs?: number;
  /** Maximum delay in milliseconds. */
  maxMs: number;
}

/**
 * Severs transports once a number of messages crossed them. Both
 * directions count: those this driver transmitted on the endpoint and
 * those it delivered from it. When the count reaches `afterMessages`, the
 * endpoint is closed, so its peer's listener gets `onError`, and this
 * endpoint's listener gets `onError` too.
 */
export interface SeverFault {
  /** Messages that cross a transport before it is severed (at least 1). */
  afterMessages: number;
  /**
   * Indexes of the transports to sever, numbered from 0 in the order this
   * driver first used them (activation or first transmission). Omitted:
   * every transport.
   */
  transports?: readonly number[];
}

/**
 * Refuses `allocateSharedMemory` with `RESOURCE_EXHAUSTED`. With both
 * fields set, an allocation fails when either condition holds.
 */
export interface AllocationFault {
  /** Allocations that succeed before every later one fails. */
  failAfter?: number;
  /** Chance that one allocation fails, from 0 to 1, drawn from the seed. */
  probability?: number;
}

/** The faults `createFaultInjectingDriver` injects, and their seed. */
export interface FaultPlan {
  /**
   * Seed of every random choice (default 1). The same seed and the same
   * sequence of driver calls give the same faults.
   */
  seed?: number;
  delay?: DelayFault;
  sever?: SeverFault;
  allocation?: AllocationFault;
  /**
   * Scheduler of delayed deliveries (default `asyncScheduler`, so delays
   * run in virtual time inside `TestScheduler.run`).
   */
  scheduler?: SchedulerLike;
}

/** Counts of the faults injected so far. */
export interface FaultCounts {
  /** Messages whose delivery was delayed. */
  delayedMessages: number;
  /** Transports severed by the plan or by `sever`. */
  severedTransports: number;
  /** Allocations that succeeded. */
  allocations: number;
  /** Allocations refused with `RESOURCE_EXHAUSTED`. */
  refusedAllocations: number;
}

/** A driver that injects the faults of a plan into an inner driver. */
export interface FaultInjectingDriver extends Driver {
  /** The faults injected so far; the object is updated in place. */
  readonly faults: Readonly<FaultCounts>;
  /**
   * Severs `transport` now, as the plan would: the peer's listener gets
   * `onError` from the inner driver, and this endpoint's listener gets
   * `onError` with `reason` from the plan's scheduler. Messages not yet
   * delivered to this endpoint are dropped. Severing a transport that is
   * closed, deactivated or severed does nothing.
   */
  sever(transport: Transport, reason?: string): void;
}

type Entry =
  | { type: 'message'; data: Uint8Array; handles: readonly unknown[]; at: number }
  | { type: 'error'; reason: string }
  | { type: 'deactivated' };

/** Wrapper state of one transport endpoint. */
interface Endpoint {
  readonly transport: Transport;
  readonly index: number;
  listener: TransportListener | null;
  state: 'open' | 'deactivated' | 'closed' | 'severed';
  /** A failure reached the listener; only onDeactivated may follow. */
  failed: boolean;
  crossed: number;
  queue: Entry[];
  delivering: boolean;
  timerDue: number | null;
}

/** A deterministic PRNG (mulberry32): returns floats in [0, 1). */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkProbability(name: string, value: number | undefined): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `${name} must be a number from 0 to 1, got ${String(value)}`,
    );
  }
}

function checkCount(name: string, value: number | undefined, min: number) {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `${name} must be an integer of at least ${min}, got ${String(value)}`,
    );
  }
}

function checkPlan(plan: FaultPlan): void {
  if (typeof plan !== 'object' || plan === null) {
    throw new IpczError('INVALID_ARGUMENT', 'a fault plan object is required');
  }
  if (plan.seed !== undefined && !Number.isInteger(plan.seed)) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `plan.seed must be an integer, got ${String(plan.seed)}`,
    );
  }
  const { delay, sever, allocation } = plan;
  if (delay !== undefined) {
    checkProbability('plan.delay.probability', delay.probability);
    const min = delay.minMs ?? 0;
    if (!(min >= 0) || !(delay.maxMs >= min) || !Number.isFinite(delay.maxMs)) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        'plan.delay needs 0 <= minMs <= maxMs (finite milliseconds), got ' +
          `minMs ${String(delay.minMs)} and maxMs ${String(delay.maxMs)}`,
      );
    }
  }
  if (sever !== undefined) {
    checkCount('plan.sever.afterMessages', sever.afterMessages, 1);
    if (sever.afterMessages === undefined) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        'plan.sever.afterMessages is required',
      );
    }
    for (const index of sever.transports ?? []) {
      checkCount('plan.sever.transports[]', index, 0);
    }
  }
  if (allocation !== undefined) {
    checkCount('plan.allocation.failAfter', allocation.failAfter, 0);
    checkProbability('plan.allocation.probability', allocation.probability);
  }
}

/**
 * Releases the handles of a message that will never be delivered. Handles
 * that are driver objects (those of the in-process drivers) are closed
 * through the inner driver, so a transport inside a lost message still
 * tells its peer.
 *
 * NOTE: handles of other drivers (MessagePorts) are left to garbage
 * collection, because the wrapper cannot tell how to release them.
 */
function releaseHandles(inner: Driver, handles: readonly unknown[]): void {
  for (const handle of handles) {
    const kind = (handle as { kind?: unknown } | null)?.kind;
    if (kind !== 'transport' && kind !== 'memory' && kind !== 'application') {
      continue;
    }
    try {
      inner.closeObject(handle as DriverObject);
    } catch {
      // A handle the inner driver does not own needs no release from us.
    }
  }
}

class FaultInjector implements FaultInjectingDriver {
  readonly family: string;
  readonly canAllocate: boolean;
  readonly faults: FaultCounts = {
    delayedMessages: 0,
    severedTransports: 0,
    allocations: 0,
    refusedAllocations: 0,
  };

  private readonly endpoints = new WeakMap<Transport, Endpoint>();
  private endpointCount = 0;
  // Separate streams, so that enabling one fault does not move the
  // random choices of another.
  private readonly delayRandom: () => number;
  private readonly allocationRandom: () => number;
  private readonly scheduler: SchedulerLike;
  private readonly severIndexes: ReadonlySet<number> | null;

  constructor(
    private readonly inner: Driver,
    private readonly plan: FaultPlan,
  ) {
    this.family = inner.family;
    this.canAllocate = inner.canAllocate;
    const seed = plan.seed ?? 1;
    this.delayRandom = createRandom(seed);
    this.allocationRandom = createRandom(seed ^ 0x5bd1e995);
    this.scheduler = plan.scheduler ?? asyncScheduler;
    const indexes = plan.sever?.transports;
    this.severIndexes = indexes === undefined ? null : new Set(indexes);
  }

  createTransports(): [Transport, Transport] {
    return this.inner.createTransports();
  }

  activateTransport(
    transport: Transport,
    listener: TransportListener,
    options: ActivationOptions,
  ): void {
    const endpoint = this.endpointOf(transport);
    if (endpoint.listener !== null || endpoint.state === 'deactivated') {
      throw new IpczError(
        'FAILED_PRECONDITION',
        'cannot activate a transport twice',
      );
    }
    endpoint.listener = listener;
    if (endpoint.state === 'severed') {
      // Severed before activation: the listener still learns of it.
      this.schedulePump(endpoint, this.scheduler.now());
      return;
    }
    this.inner.activateTransport(
      transport,
      {
        onMessage: (data, handles) =>
          this.onInnerMessage(endpoint, data, handles),
        onError: (reason) => this.post(endpoint, { type: 'error', reason }),
        onDeactivated: () => this.post(endpoint, { type: 'deactivated' }),
      },
      options,
    );
  }

  deactivateTransport(transport: Transport): void {
    const endpoint = this.endpointOf(transport);
    if (endpoint.state === 'severed' && endpoint.listener !== null) {
      // The inner endpoint is closed already, so it cannot deactivate.
      this.dropMessages(endpoint);
      endpoint.queue.push({ type: 'deactivated' });
      this.schedulePump(endpoint, this.scheduler.now());
      return;
    }
    this.inner.deactivateTransport(transport);
    endpoint.state = 'deactivated';
    this.dropMessages(endpoint);
  }

  closeTransport(transport: Transport): void {
    const endpoint = this.endpointOf(transport);
    if (endpoint.state === 'severed' || endpoint.state === 'closed') return;
    if (endpoint.state !== 'deactivated') {
      endpoint.listener = null;
      endpoint.queue = [];
    }
    endpoint.state = 'closed';
    this.inner.closeTransport(transport);
  }

  transmit(transport: Transport, data: Uint8Array, handles: unknown[]): void {
    const endpoint = this.endpointOf(transport);
    this.inner.transmit(transport, data, handles);
    if (endpoint.state === 'open') this.countCrossing(endpoint);
  }

  reportBadTransportActivity(transport: Transport, reason: string): void {
    this.inner.reportBadTransportActivity(transport, reason);
  }

  allocateSharedMemory(size: number): SharedMemory {
    const fault = this.plan.allocation;
    if (fault !== undefined) {
      const overCount =
        fault.failAfter !== undefined &&
        this.faults.allocations >= fault.failAfter;
      // Drawn on every call, so a refusal by count keeps later draws put.
      const draw = fault.probability === undefined ? 1 : this.allocationRandom();
      if (overCount || draw < (fault.probability ?? 0)) {
        this.faults.refusedAllocations++;
        throw new IpczError(
          'RESOURCE_EXHAUSTED',
          `the fault plan refused to allocate ${size} bytes of shared ` +
            `memory (allocation ${
              this.faults.allocations + this.faults.refusedAllocations
            })`,
        );
      }
    }
    const memory = this.inner.allocateSharedMemory(size);
    this.faults.allocations++;
    return memory;
  }

  duplicateSharedMemory(memory: SharedMemory): SharedMemory {
    return this.inner.duplicateSharedMemory(memory);
  }

  checkTransmit(object: DriverObject, transport: Transport): TransmitCheck {
    return this.inner.checkTransmit(object, transport);
  }

  serializeObject(object: DriverObject, transport: Transport): SerializedObject {
    return this.inner.serializeObject(object, transport);
  }

  deserializeObject(serialized: SerializedObject): DriverObject | string {
    return this.inner.deserializeObject(serialized);
  }

  closeObject(object: DriverObject): void {
    this.inner.closeObject(object);
  }

  generateRandomBytes(length: number): Uint8Array {
    return this.inner.generateRandomBytes(length);
  }

  sever(transport: Transport, reason = 'transport severed by fault plan'): void {
    const endpoint = this.endpointOf(transport);
    if (endpoint.state !== 'open') return;
    endpoint.state = 'severed';
    this.faults.severedTransports++;
    this.dropMessages(endpoint);
    endpoint.queue.push({ type: 'error', reason });
    // Closing the inner endpoint is what makes the peer see an error.
    this.inner.closeTransport(transport);
    // Inside a delivery, the error follows as soon as the listener
    // returns. Otherwise it comes from the scheduler, because a sever
    // may start inside the listener owner's own transmit call.
    if (!endpoint.delivering) {
      this.schedulePump(endpoint, this.scheduler.now());
    }
  }

  private endpointOf(transport: Transport): Endpoint {
    let endpoint = this.endpoints.get(transport);
    if (endpoint === undefined) {
      endpoint = {
        transport,
        index: this.endpointCount++,
        listener: null,
        state: 'open',
        failed: false,
        crossed: 0,
        queue: [],
        delivering: false,
        timerDue: null,
      };
      this.endpoints.set(transport, endpoint);
    }
    return endpoint;
  }

  private countCrossing(endpoint: Endpoint): void {
    endpoint.crossed++;
    const fault = this.plan.sever;
    if (fault === undefined || endpoint.crossed !== fault.afterMessages) {
      return;
    }
    if (this.severIndexes !== null && !this.severIndexes.has(endpoint.index)) {
      return;
    }
    this.sever(
      endpoint.transport,
      `transport severed by fault plan after ${fault.afterMessages} messages`,
    );
  }

  /** Picks when a message that arrives now may be delivered. */
  private deliveryTime(): number {
    const now = this.scheduler.now();
    const fault = this.plan.delay;
    if (fault === undefined) return now;
    // Both draws happen for every message, so the sequence of delays
    // depends only on the seed and the message count.
    const chance = this.delayRandom();
    const span = this.delayRandom();
    if (chance >= (fault.probability ?? 1)) return now;
    const min = fault.minMs ?? 0;
    const delay = min + span * (fault.maxMs - min);
    if (delay <= 0) return now;
    this.faults.delayedMessages++;
    return now + delay;
  }

  private onInnerMessage(
    endpoint: Endpoint,
    data: Uint8Array,
    handles: readonly unknown[],
  ): true | string {
    const at = this.deliveryTime();
    const listener = endpoint.listener;
    const immediate =
      at <= this.scheduler.now() &&
      endpoint.queue.length === 0 &&
      !endpoint.delivering &&
      listener !== null &&
      endpoint.state === 'open' &&
      !endpoint.failed;
    if (!immediate) {
      // Accepted now and checked at delivery; a rejection then is
      // reported as the inner driver would have reported it.
      this.post(endpoint, { type: 'message', data, handles, at });
      return true;
    }
    // Nothing is waiting: deliver on the inner driver's stack, so that a
    // plan without delays changes no timing and the inner driver handles
    // the rejection itself.
    endpoint.delivering = true;
    let result: true | string;
    try {
      result = listener.onMessage(data, handles);
    } finally {
      endpoint.delivering = false;
    }
    // On a rejection the inner driver calls onError next, which reaches
    // the listener through the queue.
    if (result === true && endpoint.state === 'open') {
      this.countCrossing(endpoint);
    }
    this.pump(endpoint);
    return result;
  }

  private post(endpoint: Endpoint, entry: Entry): void {
    if (entry.type === 'message' && endpoint.state !== 'open') {
      releaseHandles(this.inner, entry.handles);
      return;
    }
    if (entry.type === 'error' && endpoint.state === 'severed') return;
    endpoint.queue.push(entry);
    this.pump(endpoint);
  }

  private dropMessages(endpoint: Endpoint): void {
    const kept: Entry[] = [];
    for (const entry of endpoint.queue) {
      if (entry.type === 'message') releaseHandles(this.inner, entry.handles);
      else if (entry.type === 'deactivated') kept.push(entry);
    }
    endpoint.queue = kept;
  }

  /** Delivers what is due, in order, never inside another delivery. */
  private pump(endpoint: Endpoint): void {
    if (endpoint.delivering) return;
    endpoint.delivering = true;
    try {
      for (;;) {
        const listener = endpoint.listener;
        const entry = endpoint.queue[0];
        if (listener === null || entry === undefined) return;
        if (entry.type === 'message' && entry.at > this.scheduler.now()) {
          this.schedulePump(endpoint, entry.at);
          return;
        }
        endpoint.queue.shift();
        this.deliver(endpoint, listener, entry);
      }
    } finally {
      endpoint.delivering = false;
    }
  }

  private deliver(
    endpoint: Endpoint,
    listener: TransportListener,
    entry: Entry,
  ): void {
    switch (entry.type) {
      case 'message': {
        if (endpoint.failed || endpoint.state !== 'open') {
          releaseHandles(this.inner, entry.handles);
          return;
        }
        const result = listener.onMessage(entry.data, entry.handles);
        if (result === true) {
          this.countCrossing(endpoint);
          return;
        }
        // The inner driver saw `true`, so report the rejection as it
        // would: record it, then fail the transport for the listener.
        this.inner.reportBadTransportActivity(endpoint.transport, result);
        if (endpoint.state !== 'open' || endpoint.listener === null) return;
        endpoint.failed = true;
        listener.onError(`invalid message: ${result}`);
        return;
      }
      case 'error':
        if (endpoint.failed) return;
        endpoint.failed = true;
        listener.onError(entry.reason);
        return;
      case 'deactivated':
        endpoint.listener = null;
        endpoint.queue = [];
        listener.onDeactivated();
        return;
    }
  }

  private schedulePump(endpoint: Endpoint, due: number): void {
    if (endpoint.timerDue !== null && endpoint.timerDue <= due) return;
    endpoint.timerDue = due;
    const delay = Math.max(0, due - this.scheduler.now());
    this.scheduler.schedule(() => {
      if (endpoint.timerDue !== due) return;
      endpoint.timerDue = null;
      this.pump(endpoint);
    }, delay);
  }
}

/**
 * Wraps `inner` so that it injects the faults of `plan`: delayed
 * deliveries (order kept per transport), transports severed after a
 * number of messages, and refused shared memory allocations. Everything
 * else goes to `inner` unchanged, and with an empty plan the wrapper
 * changes no behavior or timing.
 *
 * A delayed message is accepted from the inner driver at once and handed
 * to the listener later, so with the sync driver it no longer arrives on
 * the sender's stack. When the listener rejects a delayed message, the
 * wrapper reports it with `reportBadTransportActivity` and calls
 * `onError`, as the inner driver does for a rejection.
 *
 * Throws `IpczError('INVALID_ARGUMENT')` for an invalid plan.
 *
 * @example
 * const driver = createFaultInjectingDriver(drivers.async(), {
 *   seed: 7,
 *   delay: { probability: 0.5, maxMs: 20 },
 *   sever: { afterMessages: 100, transports: [0] },
 *   allocation: { failAfter: 4 },
 * });
 * const node = createNode({ driver });
 */
export function createFaultInjectingDriver(
  inner: Driver,
  plan: FaultPlan,
): FaultInjectingDriver {
  checkPlan(plan);
  return new FaultInjector(inner, plan);
}
