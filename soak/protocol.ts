/**
 * What the soak's main thread and its workers exchange on their control
 * portals, and the state a route end carries when it moves.
 *
 * Control messages are JSON text. A `forward` from a worker and an
 * `adopt` to a worker also carry one portal: the route end that moves
 * through the broker.
 */
import type { NodeStats } from '../src/index';

/** The two ends of a route. */
export type Side = 'a' | 'b';

/**
 * How a route may be used.
 *
 * - `carrier`: closes only by a fin handshake, so nothing in flight on
 *   it is ever discarded; it may carry `cargo` ends in its parcels, and
 *   it moves only through the broker.
 * - `cargo`: may be closed abruptly at either end, and may travel inside
 *   a carrier's parcels, but never carries a portal itself.
 *
 * Keeping the two apart means that a discarded parcel never holds a
 * portal, and that portals never nest more than one level, so two
 * portals can never end up queued inside each other (a cycle that ipcz
 * cannot deliver and that would look like a hang).
 */
export type RouteKind = 'carrier' | 'cargo';

/** Workers of the soak; worker 0 is sandboxed. */
export const WORKER_COUNT = 4;

/** The data of a route end that moves with its portal. */
export interface EndState {
  /** Route id: the opening worker's index and a counter, as `w.n`. */
  route: string;
  side: Side;
  kind: RouteKind;
  /** Parcels this end has put: also the next sequence number to send. */
  sent: number;
  /** Next sequence number expected from the peer. */
  expected: number;
  /** Parcels accepted from the peer. */
  received: number;
  finSent: boolean;
  finReceived: boolean;
  /** Times this end has moved to another holder. */
  moves: number;
}

/**
 * How a route end finished:
 * - `abrupt`: its holder closed it at random, dropping what was in
 *   flight toward it;
 * - `handshake`: it had sent its fin and taken the peer's fin;
 * - `peer`: the peer closed and every parcel the peer put was taken.
 */
export type EndOutcome = 'abrupt' | 'handshake' | 'peer';

/** The final counts of one route end, reported once it is closed. */
export interface EndRecord {
  route: string;
  side: Side;
  sent: number;
  received: number;
  outcome: EndOutcome;
}

/** Event counts of one worker. */
export interface WorkerCounters {
  parcelsSent: number;
  parcelsReceived: number;
  bytesSent: number;
  regionsSent: number;
  regionsReceived: number;
  /** Parcels whose sequence number was not the next expected one. */
  reordered: number;
  /** Parcels whose checksum, route tag or region did not match. */
  corrupted: number;
  /** Puts refused with RESOURCE_EXHAUSTED by the queue limits. */
  putsRefused: number;
  routesOpened: number;
  merges: number;
  movesThroughBroker: number;
  movesOverRoutes: number;
  closesAbrupt: number;
  closesHandshake: number;
  /** Route ends created here: two per opened or merged route. */
  endsCreated: number;
  /** Route ends closed here, each with an `EndRecord`. */
  endsFinished: number;
  /** Messages dropped by this node for protocol violations. */
  badMessages: number;
}

/** Creates zeroed counters. */
export function zeroCounters(): WorkerCounters {
  return {
    parcelsSent: 0,
    parcelsReceived: 0,
    bytesSent: 0,
    regionsSent: 0,
    regionsReceived: 0,
    reordered: 0,
    corrupted: 0,
    putsRefused: 0,
    routesOpened: 0,
    merges: 0,
    movesThroughBroker: 0,
    movesOverRoutes: 0,
    closesAbrupt: 0,
    closesHandshake: 0,
    endsCreated: 0,
    endsFinished: 0,
    badMessages: 0,
  };
}

/** A worker's reply to `status`. */
export interface WorkerStatus {
  counters: WorkerCounters;
  /** Route ends held by the worker now. */
  liveEnds: number;
  /** Route ends whose puts were refused by queue limits for 20 s. */
  stalledEnds: number;
  /** V8 heap in use after a full GC, in bytes. */
  heapUsed: number;
  stats: NodeStats;
}

/** A worker's reply to `report`: its status and every record. */
export interface WorkerReport extends WorkerStatus {
  records: EndRecord[];
  /** States of the ends it still holds, to name them when a run hangs. */
  live: EndState[];
}

/** The `workerData` of a soak worker. */
export interface SoakWorkerData {
  index: number;
  seed: number;
  /** Maximum wait before a merge, in ms (`--merge-delay`). */
  mergeDelayMs: number;
}

/** Messages from the main thread to a worker. */
export type ToWorker =
  | { type: 'adopt'; state: EndState }
  | { type: 'status'; id: number }
  | { type: 'report'; id: number }
  | { type: 'stop' }
  | { type: 'exit' };

/** Messages from a worker to the main thread. */
export type FromWorker =
  | { type: 'forward'; to: number; state: EndState }
  | { type: 'status'; id: number; status: WorkerStatus }
  | { type: 'report'; id: number; report: WorkerReport }
  | { type: 'failure'; message: string };
