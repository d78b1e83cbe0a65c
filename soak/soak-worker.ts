/**
 * The random workload of one soak worker. It keeps route ends, and on
 * every tick it sends checksummed parcels on each of them and now and
 * then opens, moves, merges or closes a route. Every parcel it takes is
 * checked for order and checksum; the counts go to the main thread on
 * request over the control portal.
 */
import type { Subscription } from 'rxjs';
import {
  Box,
  isIpczError,
  Portal,
  type Node,
  type Parcel,
  type SharedMemory,
} from '../src/index';
import {
  ParcelKind,
  decodeParcel,
  encodeParcel,
  routeTag,
  verifyChecksum,
  type DecodedParcel,
} from './parcel-format';
import {
  WORKER_COUNT,
  zeroCounters,
  type EndOutcome,
  type EndRecord,
  type EndState,
  type FromWorker,
  type RouteKind,
  type Side,
  type ToWorker,
  type WorkerReport,
  type WorkerStatus,
} from './protocol';
import { measureHeap } from './heap';
import { createRandom, type Random } from './random';

/** Milliseconds between ticks. */
const TICK_MS = 4;
/** Chance that a tick also opens, moves, merges or closes a route. */
const OPERATION_CHANCE = 0.08;
/** Chance that a tick sends one data parcel on a given end. */
const SEND_CHANCE = 0.35;
/** No opens or merges above this many held ends, no closes below MIN. */
const MAX_LIVE_ENDS = 20;
const MIN_LIVE_ENDS = 4;
/** Chance that a data parcel also carries a boxed shared memory region. */
const REGION_CHANCE = 0.05;
/** Regions allocated ahead, since allocation may be a round trip. */
const REGION_POOL_SIZE = 4;
const MAX_PAYLOAD_BYTES = 64 * 1024;
/**
 * Queue limits of data puts: a slow receiver makes puts fail with
 * RESOURCE_EXHAUSTED instead of letting queues, and the heap, grow.
 * Carry and fin parcels are put without limits, so they always go.
 */
const PUT_LIMITS = { maxQueuedParcels: 128, maxQueuedBytes: 2 * 1024 * 1024 };
/** A put refused for this long counts as a stalled route end, in ms. */
const STALL_MS = 20_000;

/** A route end held by this worker. */
interface RouteEnd {
  state: EndState;
  portal: Portal;
  subscription: Subscription | null;
  /** Tag the peer puts in its headers. */
  peerTag: number;
  ownTag: number;
  peerClosed: boolean;
  /** When puts started to be refused by the queue limits, or null. */
  refusedSince: number | null;
  stalled: boolean;
}

function otherSide(side: Side): Side {
  return side === 'a' ? 'b' : 'a';
}

function newState(route: string, side: Side, kind: RouteKind): EndState {
  return {
    route,
    side,
    kind,
    sent: 0,
    expected: 0,
    received: 0,
    finSent: false,
    finReceived: false,
    moves: 0,
  };
}

/** Options of a soak worker. */
export interface SoakWorkerOptions {
  index: number;
  seed: number;
  /** Maximum wait between sending merge peers away and merging, in ms. */
  mergeDelayMs: number;
  /** Resolves once shared memory allocation works on this node. */
  allocationReady: Promise<void>;
}

/** The workload of one soak worker node. */
export class SoakWorker {
  private readonly random: Random;
  private readonly counters = zeroCounters();
  private readonly ends = new Map<string, RouteEnd>();
  private readonly records: EndRecord[] = [];
  private readonly regions: SharedMemory[] = [];
  private readonly payloadSource: Uint8Array;
  private regionPending = false;
  private canAllocate = false;
  private stopping = false;
  private exiting = false;
  private nextRoute = 0;
  private stalledEnds = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly node: Node,
    private readonly control: Portal,
    private readonly options: SoakWorkerOptions,
  ) {
    this.random = createRandom(options.seed);
    this.payloadSource = new Uint8Array(2 * MAX_PAYLOAD_BYTES);
    for (let i = 0; i < this.payloadSource.length; i++) {
      this.payloadSource[i] = this.random.int(0, 255);
    }
    node.badMessages$.subscribe((bad) => {
      this.counters.badMessages++;
      // Printed here as well: the dropped link may be the control route.
      console.error(
        `soak: ${this.label} dropped a message from ` +
          `${bad.remote?.toString() ?? 'an unknown node'}: ${bad.reason}`,
      );
      this.fail(`dropped a message: ${bad.reason}`);
    });
    control.parcels$.subscribe({
      next: (parcel) => this.guard(() => this.onControl(parcel)),
      complete: () => this.onControlClosed(),
    });
    options.allocationReady.then(
      () => {
        this.canAllocate = true;
      },
      (error: unknown) => this.fail(`allocation delegate: ${String(error)}`),
    );
    this.timer = setTimeout(() => this.tick(), TICK_MS);
  }

  private get label(): string {
    return `worker-${this.options.index}`;
  }

  // --- Control portal ---

  private send(message: FromWorker, portal?: Portal): void {
    this.control.put(JSON.stringify(message), portal ? [portal] : []);
  }

  private fail(message: string): void {
    const text = `${this.label}: ${message}`;
    try {
      this.send({ type: 'failure', message: text });
    } catch {
      // The control route is gone, so the main thread fails on that.
      console.error(`soak: failure: ${text}`);
    }
  }

  /** Runs `action`, reporting what it throws to the main thread. */
  private guard(action: () => void): void {
    try {
      action();
    } catch (error) {
      const text = error instanceof Error ? error.stack : String(error);
      this.fail(text ?? String(error));
    }
  }

  private onControl(parcel: Parcel): void {
    const message = JSON.parse(parcel.text()) as ToWorker;
    switch (message.type) {
      case 'adopt': {
        const portal = parcel.handles[0];
        if (!(portal instanceof Portal)) {
          throw new Error('adopt message without a portal');
        }
        this.adopt(portal, message.state);
        break;
      }
      case 'status':
        this.send({ type: 'status', id: message.id, status: this.status() });
        break;
      case 'report':
        this.send({ type: 'report', id: message.id, report: this.report() });
        break;
      case 'stop':
        this.stop();
        break;
      case 'exit':
        this.exit();
        break;
    }
  }

  /**
   * Stops all work when the control route closes: the main thread has
   * gone, or this node's link to the broker was dropped, and the main
   * thread fails the run on its side.
   */
  private onControlClosed(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.stopping = true;
    if (this.exiting) return;
    console.error(`soak: ${this.label}: the control route closed; stopping`);
  }

  private status(): WorkerStatus {
    return {
      counters: { ...this.counters },
      liveEnds: this.ends.size,
      stalledEnds: this.stalledEnds,
      heapUsed: measureHeap(),
      stats: this.node.stats(),
    };
  }

  private report(): WorkerReport {
    return {
      ...this.status(),
      records: this.records,
      live: [...this.ends.values()].map((end) => end.state),
    };
  }

  /** Stops random work and starts the fin handshake on every end. */
  private stop(): void {
    this.stopping = true;
    for (const end of [...this.ends.values()]) this.sendFin(end);
  }

  private exit(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.stopping = true;
    this.exiting = true;
    this.node.close();
    setImmediate(() => process.exit(0));
  }

  // --- Route ends ---

  private adopt(portal: Portal, state: EndState): void {
    const end: RouteEnd = {
      state,
      portal,
      subscription: null,
      peerTag: routeTag(state.route, otherSide(state.side)),
      ownTag: routeTag(state.route, state.side),
      peerClosed: false,
      refusedSince: null,
      stalled: false,
    };
    this.ends.set(`${state.route}/${state.side}`, end);
    end.subscription = portal.parcels$.subscribe({
      next: (parcel) => this.guard(() => this.onParcel(end, parcel)),
      complete: () => this.guard(() => this.finish(end, 'peer')),
      error: (error: unknown) => this.fail(`parcels$ of ${state.route}: ${error}`),
    });
    if (this.stopping || state.finReceived) this.sendFin(end);
  }

  /** Stops reading `end` and returns its state, before it moves. */
  private detach(end: RouteEnd): EndState {
    end.subscription?.unsubscribe();
    end.subscription = null;
    this.ends.delete(`${end.state.route}/${end.state.side}`);
    end.state.moves++;
    return end.state;
  }

  /** Closes `end` and records its final counts; later calls do nothing. */
  private finish(end: RouteEnd, outcome: EndOutcome): void {
    const key = `${end.state.route}/${end.state.side}`;
    if (this.ends.get(key) !== end) return;
    this.ends.delete(key);
    end.subscription?.unsubscribe();
    end.subscription = null;
    if (end.portal.isOpen) end.portal.close();
    const { route, side, sent, received } = end.state;
    this.records.push({ route, side, sent, received, outcome });
    this.counters.endsFinished++;
  }

  private isUsable(end: RouteEnd): boolean {
    return !end.peerClosed && !end.state.finSent && !end.state.finReceived;
  }

  // --- Receiving ---

  private onParcel(end: RouteEnd, parcel: Parcel): void {
    const decoded = decodeParcel(parcel.data);
    if (decoded === null || !this.verify(end, parcel, decoded)) {
      this.counters.corrupted++;
    }
    if (decoded === null) return;

    const state = end.state;
    if (decoded.sequence !== state.expected) this.counters.reordered++;
    state.expected = Math.max(state.expected, decoded.sequence + 1);
    state.received++;
    this.counters.parcelsReceived++;

    if (decoded.kind === ParcelKind.carry) {
      const carried = parcel.handles[0];
      if (!(carried instanceof Portal)) {
        this.counters.corrupted++;
        return;
      }
      const carriedState = JSON.parse(
        new TextDecoder().decode(decoded.payload),
      ) as EndState;
      this.adopt(carried, carriedState);
    } else if (decoded.kind === ParcelKind.fin) {
      state.finReceived = true;
      this.sendFin(end);
    }
  }

  /** Checks the tag, the checksum and the boxed region of a parcel. */
  private verify(end: RouteEnd, parcel: Parcel, decoded: DecodedParcel) {
    if (decoded.tag !== end.peerTag) return false;
    if (!decoded.hasRegion) {
      const handles = decoded.kind === ParcelKind.carry ? 1 : 0;
      return (
        parcel.handles.length === handles &&
        verifyChecksum(parcel.data, decoded)
      );
    }
    const box = parcel.handles[0];
    if (parcel.handles.length !== 1 || !(box instanceof Box)) return false;
    const memory = box.unbox() as SharedMemory;
    if (memory.size < decoded.regionBytes) return false;
    this.counters.regionsReceived++;
    const bytes = memory.map().subarray(0, decoded.regionBytes);
    return verifyChecksum(parcel.data, decoded, bytes);
  }

  // --- Sending ---

  /**
   * Puts one parcel on `end` and counts it. Returns false, having sent
   * nothing, when the peer is known to be closed or the queue limits
   * refuse it.
   */
  private put(
    end: RouteEnd,
    kind: ParcelKind,
    payload: Uint8Array,
    handles: (Portal | Box)[] = [],
    region?: Uint8Array,
  ): boolean {
    const data = encodeParcel(
      { kind, tag: end.ownTag, sequence: end.state.sent },
      payload,
      region,
    );
    const limits = kind === ParcelKind.data ? PUT_LIMITS : undefined;
    // Counted before the put: a local peer takes the parcel inside put()
    // and may reply at once, so this end can finish, and report its
    // counts, before put() returns.
    end.state.sent++;
    if (kind === ParcelKind.fin) end.state.finSent = true;
    try {
      end.portal.put(data, handles, { limits });
    } catch (error) {
      end.state.sent--;
      if (kind === ParcelKind.fin) end.state.finSent = false;
      if (!isIpczError(error)) throw error;
      if (error.code === 'NOT_FOUND') {
        end.peerClosed = true;
        return false;
      }
      if (error.code === 'RESOURCE_EXHAUSTED') {
        this.counters.putsRefused++;
        this.noteRefused(end);
        return false;
      }
      throw error;
    }
    end.refusedSince = null;
    this.counters.parcelsSent++;
    this.counters.bytesSent += data.length + (region?.length ?? 0);
    return true;
  }

  private noteRefused(end: RouteEnd): void {
    const now = Date.now();
    end.refusedSince ??= now;
    if (!end.stalled && now - end.refusedSince > STALL_MS) {
      end.stalled = true;
      this.stalledEnds++;
      const status = end.portal.status();
      this.fail(
        `puts on route ${end.state.route} side ${end.state.side} were ` +
          `refused for ${STALL_MS / 1000} s: ${status.remoteParcels} ` +
          `parcels and ${status.remoteBytes} bytes queued at the peer`,
      );
    }
  }

  private payloadSize(): number {
    const band = this.random.next();
    if (band < 0.1) return 0;
    if (band < 0.45) return this.random.int(1, 64);
    if (band < 0.75) return this.random.int(65, 1024);
    if (band < 0.92) return this.random.int(1025, 16 * 1024);
    return this.random.int(16 * 1024 + 1, MAX_PAYLOAD_BYTES);
  }

  private payload(size: number): Uint8Array {
    const offset = this.random.int(0, this.payloadSource.length - size);
    return this.payloadSource.subarray(offset, offset + size);
  }

  private sendData(end: RouteEnd): void {
    const payload = this.payload(this.payloadSize());
    const memory =
      this.regions.length > 0 && this.random.chance(REGION_CHANCE)
        ? this.regions.pop()!
        : undefined;
    if (memory === undefined) {
      this.put(end, ParcelKind.data, payload);
      return;
    }

    const size = this.random.int(1, Math.min(memory.size, MAX_PAYLOAD_BYTES));
    const bytes = memory.map().subarray(0, size);
    bytes.set(this.payload(size));
    const box = this.node.box(memory);
    if (this.put(end, ParcelKind.data, payload, [box], bytes)) {
      this.counters.regionsSent++;
    } else {
      // A failed put leaves the box usable, so the region goes back.
      this.regions.push(box.unbox() as SharedMemory);
    }
  }

  /** Sends the fin, and closes once both fins have crossed. */
  private sendFin(end: RouteEnd): void {
    if (!end.state.finSent && !end.peerClosed) {
      this.put(end, ParcelKind.fin, new Uint8Array(0));
    }
    if (end.state.finSent && end.state.finReceived) {
      this.finish(end, 'handshake');
    }
  }

  private refillRegions(): void {
    if (
      !this.canAllocate ||
      this.regionPending ||
      this.regions.length >= REGION_POOL_SIZE
    ) {
      return;
    }
    this.regionPending = true;
    const size = this.random.int(1024, MAX_PAYLOAD_BYTES);
    this.node.allocateSharedMemory(size).subscribe({
      next: (memory) => this.regions.push(memory),
      error: (error: unknown) => {
        this.regionPending = false;
        this.fail(`allocating ${size} bytes of shared memory: ${error}`);
      },
      complete: () => {
        this.regionPending = false;
      },
    });
  }

  // --- Random operations ---

  private tick(): void {
    this.timer = null;
    this.guard(() => {
      if (!this.stopping) {
        this.refillRegions();
        if (this.random.chance(OPERATION_CHANCE)) this.operate();
        for (const end of [...this.ends.values()]) {
          if (this.isUsable(end) && this.random.chance(SEND_CHANCE)) {
            this.sendData(end);
          }
        }
      }
    });
    if (!this.control.isOpen || this.control.status().peerClosed) return;
    this.timer = setTimeout(() => this.tick(), TICK_MS);
  }

  private operate(): void {
    const live = this.ends.size;
    const roll = this.random.next();
    if (roll < 0.15) {
      if (live < MAX_LIVE_ENDS) this.open();
    } else if (roll < 0.25) {
      if (live < MAX_LIVE_ENDS) this.merge();
    } else if (roll < 0.5) {
      this.moveSome(false);
    } else if (roll < 0.8) {
      this.moveSome(true);
    } else if (live > MIN_LIVE_ENDS) {
      this.closeSome();
    }
  }

  private newRoute(): string {
    this.counters.endsCreated += 2;
    return `${this.options.index}.${this.nextRoute++}`;
  }

  private randomKind(): RouteKind {
    return this.random.chance(0.4) ? 'carrier' : 'cargo';
  }

  private usableEnds(filter: (end: RouteEnd) => boolean = () => true) {
    return [...this.ends.values()].filter(
      (end) => this.isUsable(end) && filter(end),
    );
  }

  /** Opens a route whose ends both start here; moves scatter them. */
  private open(): void {
    const route = this.newRoute();
    const kind = this.randomKind();
    const [a, b] = this.node.openPortals();
    this.adopt(a, newState(route, 'a', kind));
    this.adopt(b, newState(route, 'b', kind));
    this.counters.routesOpened++;
  }

  /**
   * Opens two pairs, sends one end of each away and merges the two that
   * stay: the ends sent away become the two ends of a new route.
   */
  private merge(): void {
    const route = this.newRoute();
    const kind = this.randomKind();
    const [left, leftPeer] = this.node.openPortals();
    const [right, rightPeer] = this.node.openPortals();
    this.sendAway(leftPeer, newState(route, 'a', kind), this.random.chance(0.5));
    this.sendAway(rightPeer, newState(route, 'b', kind), this.random.chance(0.5));
    const doMerge = () =>
      this.guard(() => {
        left.merge(right);
        this.counters.merges++;
      });
    // Merging later lets parcels from the moved ends queue up first, and
    // lets the merge meet the route reduction of the moved ends.
    const delay = this.random.int(1, Math.max(1, this.options.mergeDelayMs));
    if (this.options.mergeDelayMs === 0 || this.random.chance(0.5)) doMerge();
    else setTimeout(doMerge, delay);
  }

  /**
   * Sends an end that is not held in `ends` away: over a random carrier
   * route when `overRoute` and the end is cargo, else (and when no
   * carrier will take it) through the broker to a random worker, maybe
   * this one.
   */
  private sendAway(portal: Portal, state: EndState, overRoute: boolean) {
    if (overRoute && state.kind === 'cargo') {
      const carriers = this.usableEnds(
        (end) => end.state.kind === 'carrier' && end.state.route !== state.route,
      );
      if (carriers.length > 0) {
        const carrier = this.random.pick(carriers);
        const payload = new TextEncoder().encode(JSON.stringify(state));
        if (this.put(carrier, ParcelKind.carry, payload, [portal])) {
          this.counters.movesOverRoutes++;
          return;
        }
      }
    }
    const to = this.random.int(0, WORKER_COUNT - 1);
    this.send({ type: 'forward', to, state }, portal);
    this.counters.movesThroughBroker++;
  }

  private moveSome(overRoute: boolean): void {
    const candidates = this.usableEnds(
      (end) => !overRoute || end.state.kind === 'cargo',
    );
    if (candidates.length === 0) return;
    const end = this.random.pick(candidates);
    const state = this.detach(end);
    this.sendAway(end.portal, state, overRoute);
  }

  private closeSome(): void {
    const candidates = this.usableEnds();
    if (candidates.length === 0) return;
    const end = this.random.pick(candidates);
    if (end.state.kind === 'cargo') {
      this.counters.closesAbrupt++;
      this.finish(end, 'abrupt');
    } else {
      this.counters.closesHandshake++;
      this.sendFin(end);
    }
  }
}
