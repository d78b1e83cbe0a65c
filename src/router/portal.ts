import {
  Observable,
  Subject,
  concat,
  defer,
  map,
  of,
  takeUntil,
} from 'rxjs';
import { IpczError } from '../errors';
import { Box } from './box';
import {
  checkTrapConditions,
  watchTrap,
  type TrapConditions,
  type TrapEvent,
} from './trap';
import { Parcel as RouterParcel, type ParcelObject } from './parcel';
import { LocalRouterLink } from './local-router-link';
import { Router, type PortalStatus, type RouterRegistry } from './router';

export type { PortalStatus } from './router';
export type { TrapConditions, TrapEvent } from './trap';

/** An object a parcel can carry besides bytes. */
export type Handle = Portal | Box;

export interface PutLimits {
  maxQueuedParcels?: number;
  maxQueuedBytes?: number;
}

export interface PutOptions {
  limits?: PutLimits;
}

export interface PendingPut {
  data: Uint8Array;
  commit(bytesWritten: number, handles?: Handle[]): void;
  abort(): void;
}

export interface PendingGet {
  data: Uint8Array;
  handles: Handle[];
  commit(bytesConsumed?: number): void;
  abort(): void;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** A received parcel: bytes plus handles. */
export class Parcel {
  constructor(
    readonly data: Uint8Array,
    readonly handles: Handle[],
    private readonly origin: RouterParcel,
  ) {}

  /** Decodes the data as UTF-8. */
  text(): string {
    return textDecoder.decode(this.data);
  }

  /**
   * Reports the parcel as invalid to the node link it came over, which is
   * dropped; `node.badMessages$` emits the reason. Throws
   * `FAILED_PRECONDITION` for a parcel that never left this node.
   */
  reject(reason: string): void {
    const source = this.origin.source;
    if (source === null) {
      throw new IpczError(
        'FAILED_PRECONDITION',
        'cannot reject a parcel that was sent from this node',
      );
    }
    source.reject(reason);
  }
}

type PortalState = 'open' | 'closed' | 'moved' | 'merged';

/**
 * One end of a route. Parcels put into a portal come out of its peer in
 * order; handles in them move with them.
 */
export class Portal {
  private state: PortalState = 'open';
  private pendingPut = false;
  private pendingGet = false;
  private reading = false;
  private readonly released = new Subject<void>();

  constructor(readonly router: Router) {}

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /**
   * Sends bytes and handles to the peer portal. All or nothing: when it
   * throws, nothing was sent and every handle is still usable.
   */
  put(
    data?: Uint8Array | string,
    handles: Handle[] = [],
    options: PutOptions = {},
  ): void {
    this.requireOpen('put');
    const bytes = toBytes(data);
    this.checkHandles(handles);
    this.checkLimits(bytes.byteLength, options.limits);
    this.sendParcel(bytes, handles, typeof data !== 'string');
  }

  /**
   * Takes the next parcel. Throws `UNAVAILABLE` when none is queued and
   * `NOT_FOUND` when the peer closed and every parcel was taken.
   */
  get(): Parcel {
    this.requireOpen('get');
    if (this.pendingGet) {
      throw new IpczError('ALREADY_EXISTS', 'a two-phase get is pending');
    }
    const parcel = this.router.takeInbound();
    if (parcel === undefined) throw this.nothingToGet();
    return this.wrapParcel(parcel);
  }

  /**
   * Starts a two-phase put with a buffer of at least `capacity` bytes.
   * Throws `ALREADY_EXISTS` while another is pending and `NOT_FOUND` when
   * the peer is closed.
   */
  beginPut(capacity: number): PendingPut {
    this.requireOpen('beginPut');
    if (!Number.isSafeInteger(capacity) || capacity < 0) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `capacity must be a non-negative integer, got ${capacity}`,
      );
    }
    if (this.pendingPut) {
      throw new IpczError('ALREADY_EXISTS', 'a two-phase put is pending');
    }
    if (this.router.isPeerClosed) {
      throw new IpczError('NOT_FOUND', 'the portal\'s peer is closed');
    }
    const data = allocateBuffer(capacity);
    this.pendingPut = true;
    let done = false;
    const finish = () => {
      done = true;
      this.pendingPut = false;
    };
    return {
      data,
      commit: (bytesWritten: number, handles: Handle[] = []) => {
        if (done) {
          throw new IpczError('FAILED_PRECONDITION', 'the put has ended');
        }
        if (
          !Number.isSafeInteger(bytesWritten) ||
          bytesWritten < 0 ||
          bytesWritten > capacity
        ) {
          throw new IpczError(
            'INVALID_ARGUMENT',
            `bytesWritten must be in [0, ${capacity}], got ${bytesWritten}`,
          );
        }
        this.requireOpen('commit');
        this.checkHandles(handles);
        if (this.router.isPeerClosed) {
          throw new IpczError('NOT_FOUND', 'the portal\'s peer is closed');
        }
        finish();
        this.sendParcel(data.slice(0, bytesWritten), handles);
      },
      abort: () => {
        if (done) {
          throw new IpczError('FAILED_PRECONDITION', 'the put has ended');
        }
        finish();
      },
    };
  }

  /**
   * Starts a two-phase get of the front parcel. Committing fewer bytes
   * than `data.length` leaves the rest as the front parcel.
   */
  beginGet(): PendingGet {
    this.requireOpen('beginGet');
    if (this.pendingGet) {
      throw new IpczError('ALREADY_EXISTS', 'a two-phase get is pending');
    }
    const front = this.router.peekInbound();
    if (front === undefined) throw this.nothingToGet();
    this.pendingGet = true;
    const handles = front.objects.map(toHandle);
    let done = false;
    const finish = () => {
      done = true;
      this.pendingGet = false;
    };
    return {
      data: front.data,
      handles,
      commit: (bytesConsumed = front.data.byteLength) => {
        if (done) {
          throw new IpczError('FAILED_PRECONDITION', 'the get has ended');
        }
        if (
          !Number.isSafeInteger(bytesConsumed) ||
          bytesConsumed < 0 ||
          bytesConsumed > front.data.byteLength
        ) {
          throw new IpczError(
            'OUT_OF_RANGE',
            `bytesConsumed must be in [0, ${front.data.byteLength}], ` +
              `got ${bytesConsumed}`,
          );
        }
        finish();
        if (bytesConsumed === front.data.byteLength) {
          this.router.takeInbound();
        } else {
          this.router.consumePartial(bytesConsumed);
        }
      },
      abort: () => {
        if (done) {
          throw new IpczError('FAILED_PRECONDITION', 'the get has ended');
        }
        finish();
      },
    };
  }

  /**
   * Emits each parcel as it arrives (and every one already queued),
   * taking it from the portal. Completes once the peer closed and every
   * parcel it sent was emitted, or when this portal closes. One
   * subscriber at a time: a second concurrent one errors with
   * `FAILED_PRECONDITION`.
   */
  get parcels$(): Observable<Parcel> {
    return new Observable<Parcel>((subscriber) => {
      if (this.reading) {
        subscriber.error(
          new IpczError(
            'FAILED_PRECONDITION',
            'parcels$ already has a subscriber on this portal',
          ),
        );
        return;
      }
      if (!this.isOpen) {
        subscriber.complete();
        return;
      }
      this.reading = true;
      let draining = false;
      const drain = () => {
        if (draining) return;
        draining = true;
        try {
          while (!subscriber.closed && this.isOpen && !this.pendingGet) {
            const parcel = this.router.takeInbound();
            if (parcel === undefined) break;
            subscriber.next(this.wrapParcel(parcel));
          }
          if (this.router.isDead || !this.isOpen) subscriber.complete();
        } finally {
          draining = false;
        }
      };
      const subscription = this.router.statusChanges
        .pipe(takeUntil(this.released))
        .subscribe({
          next: (change) => {
            if (change.reason !== 'remote-activity') drain();
          },
          complete: () => subscriber.complete(),
        });
      drain();
      return () => {
        this.reading = false;
        subscription.unsubscribe();
      };
    });
  }

  /** Returns the portal's status, refreshing the peer's queue counts. */
  status(): PortalStatus {
    return this.router.status();
  }

  /** Emits the current status, then the status after each change. */
  get status$(): Observable<PortalStatus> {
    return defer(() =>
      concat(
        of(this.router.status()),
        this.router.statusChanges.pipe(
          takeUntil(this.released),
          map((change) => change.status),
        ),
      ),
    );
  }

  /**
   * Watches conditions. Emits when one already holds at subscription and
   * each time one becomes true again (edge-triggered); `newLocalParcel`
   * and `consumedRemoteParcel` fire on each such event. Completes when
   * the portal closes or is sent away.
   */
  trap(conditions: TrapConditions): Observable<TrapEvent> {
    this.requireOpen('trap');
    checkTrapConditions(conditions);
    return watchTrap(
      this.router,
      this.released,
      conditions,
      () => this.isOpen,
    );
  }

  /**
   * Merges this portal's route with `other`'s, as ipcz's MergePortals:
   * parcels from this portal's peer come out of `other`'s peer and the
   * reverse. Both portals are spent. Throws `INVALID_ARGUMENT` when
   * `other` is this portal, its local peer, or not an open portal, and
   * `FAILED_PRECONDITION` when either portal has sent or taken a parcel
   * or has a pending two-phase operation.
   */
  merge(other: Portal): void {
    this.requireOpen('merge');
    if (!(other instanceof Portal)) {
      throw new IpczError('INVALID_ARGUMENT', 'other must be a Portal');
    }
    if (other === this) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        'cannot merge a portal with itself',
      );
    }
    if (!other.isOpen) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        'cannot merge with a portal that was closed, sent or merged',
      );
    }
    if (this.router.outward?.localPeer() === other.router) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        'cannot merge a portal with its own local peer',
      );
    }
    for (const portal of [this, other]) {
      const router = portal.router;
      if (portal.hasPendingTwoPhase) {
        throw new IpczError(
          'FAILED_PRECONDITION',
          'cannot merge a portal with a pending two-phase put or get',
        );
      }
      if (
        router.outbound.currentSequenceLength > 0 ||
        router.inbound.currentSequenceNumber > 0
      ) {
        throw new IpczError(
          'FAILED_PRECONDITION',
          'cannot merge a portal that has sent or taken a parcel',
        );
      }
    }
    for (const portal of [this, other]) {
      portal.state = 'merged';
      portal.released.next();
      portal.released.complete();
    }
    this.router.mergeWith(other.router);
  }

  /** Closes the portal; the peer gets closure after every parcel sent. */
  close(): void {
    this.requireOpen('close');
    this.state = 'closed';
    this.pendingGet = false;
    this.pendingPut = false;
    this.released.next();
    this.released.complete();
    this.router.close();
  }

  /** Marks the portal as sent: its router now belongs to a parcel. */
  private releaseForTransfer(): Router {
    this.state = 'moved';
    this.released.next();
    this.released.complete();
    return this.router;
  }

  private sendParcel(
    bytes: Uint8Array,
    handles: Handle[],
    borrowed = false,
  ): void {
    if (this.router.isPeerClosed) {
      throw new IpczError('NOT_FOUND', 'the portal\'s peer is closed');
    }
    const objects: ParcelObject[] =
      handles.length === 0
        ? []
        : handles.map((handle) =>
            handle instanceof Portal
              ? handle.releaseForTransfer()
              : new Box(handle.takeObject()),
          );
    const parcel = new RouterParcel(bytes, objects);
    parcel.borrowed = borrowed;
    this.router.put(parcel);
  }

  private checkHandles(handles: Handle[]): void {
    if (!Array.isArray(handles)) {
      throw new IpczError('INVALID_ARGUMENT', 'handles must be an array');
    }
    if (handles.length === 0) return;
    const seen = new Set<Handle>();
    const peer = this.router.outward?.localPeer() ?? null;
    handles.forEach((handle, index) => {
      if (seen.has(handle)) {
        throw new IpczError(
          'INVALID_ARGUMENT',
          `handles[${index}] is listed more than once`,
        );
      }
      seen.add(handle);
      if (handle instanceof Portal) {
        checkSendablePortal(handle, index, this, peer);
      } else if (handle instanceof Box) {
        if (handle.isSpent) {
          throw new IpczError(
            'INVALID_ARGUMENT',
            `handles[${index}] is a box that was already unboxed or sent`,
          );
        }
      } else {
        throw new IpczError(
          'INVALID_ARGUMENT',
          `handles[${index}] is neither a Portal nor a Box`,
        );
      }
    });
  }

  private checkLimits(byteLength: number, limits: PutLimits | undefined) {
    if (limits === undefined) return;
    checkPutLimits(limits);
    // The status counts parcels still queued here as well as those sent.
    const status = this.router.status();
    const queuedParcels = status.remoteParcels;
    const queuedBytes = status.remoteBytes;
    const { maxQueuedParcels, maxQueuedBytes } = limits;
    if (maxQueuedParcels !== undefined && queuedParcels >= maxQueuedParcels) {
      throw new IpczError(
        'RESOURCE_EXHAUSTED',
        `${queuedParcels} parcels are queued for the peer, the limit is ` +
          `${maxQueuedParcels}`,
      );
    }
    if (
      maxQueuedBytes !== undefined &&
      queuedBytes + byteLength > maxQueuedBytes
    ) {
      throw new IpczError(
        'RESOURCE_EXHAUSTED',
        `${queuedBytes} bytes are queued for the peer, and ${byteLength} ` +
          `more would pass the limit of ${maxQueuedBytes}`,
      );
    }
  }

  private wrapParcel(parcel: RouterParcel): Parcel {
    return new Parcel(parcel.data, parcel.objects.map(toHandle), parcel);
  }

  private nothingToGet(): IpczError {
    if (this.router.isDead) {
      return new IpczError(
        'NOT_FOUND',
        'the peer is closed and every parcel was taken',
      );
    }
    return new IpczError('UNAVAILABLE', 'no parcel is queued');
  }

  private requireOpen(operation: string): void {
    if (this.state === 'open') return;
    const why = {
      closed: 'closed',
      moved: 'sent in a parcel',
      merged: 'merged with another portal',
    }[this.state];
    throw new IpczError(
      'INVALID_ARGUMENT',
      `cannot ${operation}: the portal was ${why}`,
    );
  }

  /** Whether a two-phase put or get is pending. */
  get hasPendingTwoPhase(): boolean {
    return this.pendingGet || this.pendingPut;
  }
}

function checkSendablePortal(
  handle: Portal,
  index: number,
  sender: Portal,
  senderPeer: Router | null,
): void {
  if (handle === sender) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `handles[${index}] is the portal it is being sent through`,
    );
  }
  if (!handle.isOpen) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `handles[${index}] is a portal that was closed or already sent`,
    );
  }
  if (senderPeer !== null && handle.router === senderPeer) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `handles[${index}] is the local peer of the portal it is sent through`,
    );
  }
  if (handle.hasPendingTwoPhase) {
    throw new IpczError(
      'FAILED_PRECONDITION',
      `handles[${index}] has a pending two-phase put or get`,
    );
  }
}

/** Largest two-phase put buffer: 1 GiB, as the drivers' memory limit. */
export const MAX_PUT_CAPACITY = 1024 * 1024 * 1024;

function allocateBuffer(capacity: number): Uint8Array {
  if (capacity > MAX_PUT_CAPACITY) {
    throw new IpczError(
      'RESOURCE_EXHAUSTED',
      `capacity ${capacity} is over the limit of ${MAX_PUT_CAPACITY} bytes`,
    );
  }
  try {
    return new Uint8Array(capacity);
  } catch (error) {
    throw new IpczError(
      'RESOURCE_EXHAUSTED',
      `failed to allocate ${capacity} bytes: ${String(error)}`,
    );
  }
}

function toHandle(object: ParcelObject): Handle {
  return object instanceof Router ? new Portal(object) : object;
}

function toBytes(data: Uint8Array | string | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  if (typeof data === 'string') return textEncoder.encode(data);
  if (data instanceof Uint8Array) return data;
  throw new IpczError(
    'INVALID_ARGUMENT',
    `data must be a Uint8Array or a string, got ${typeof data}`,
  );
}

function checkPutLimits(limits: PutLimits): void {
  if (typeof limits !== 'object' || limits === null) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `options.limits must be an object, got ${String(limits)}`,
    );
  }
  for (const key of ['maxQueuedParcels', 'maxQueuedBytes'] as const) {
    const value = limits[key];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `options.limits.${key} must be a non-negative integer, got ` +
          String(value),
      );
    }
  }
}

/** Creates two entangled portals on one node, joined by a local link. */
export function openPortalPair(
  registry: RouterRegistry | null,
): [Portal, Portal] {
  const a = new Router(registry);
  const b = new Router(registry);
  const [forA, forB] = LocalRouterLink.createPair('central', a, b);
  a.setOutwardLink(forA);
  b.setOutwardLink(forB);
  return [new Portal(a), new Portal(b)];
}
