import {
  BehaviorSubject,
  Observable,
  defer,
  distinctUntilChanged,
  map,
  of,
  throwError,
} from 'rxjs';
import type { Driver, SharedMemory } from '../drivers/driver';
import { isIpczError, IpczError } from '../errors';
import type { NodeLink } from '../link/node-link';
import type { NodeName } from '../wire/node-name';

/** Counters that `node.stats()` reports. */
export interface AllocationCounters {
  memoryRequestsSent: number;
  memoryRequestsServed: number;
  directAllocations: number;
}

/**
 * Chooses where a node's shared memory comes from: the driver, or the
 * node it connected to with `allocationDelegate: true`.
 *
 * Candidates are the links connected with the flag, in connection order.
 * The current delegate is the first candidate still up; when its link is
 * lost the choice moves to the next one, or to none. Requests in flight
 * on a lost link error with `UNAVAILABLE`; new requests go to the new
 * choice.
 */
export class AllocationDelegate {
  private readonly candidates: NodeLink[] = [];
  private readonly current = new BehaviorSubject<NodeLink | null>(null);

  /** The current delegate's node name, or null; replays the latest. */
  readonly delegate$: Observable<NodeName | null> = this.current.pipe(
    map((link) => (link === null ? null : link.remoteName)),
    distinctUntilChanged(
      (a, b) => a === b || (a !== null && b !== null && a.equals(b)),
    ),
  );

  constructor(
    private readonly driver: Driver,
    private readonly counters: AllocationCounters,
  ) {}

  /** Adds a link whose remote node was chosen as allocation delegate. */
  addCandidate(link: NodeLink): void {
    this.candidates.push(link);
    link.end$.subscribe(() => this.removeCandidate(link));
    if (this.current.value === null && link.isActive) this.current.next(link);
  }

  get currentLink(): NodeLink | null {
    return this.current.value;
  }

  /**
   * Returns a cold Observable of one region of at least `size` bytes,
   * through the delegate when there is one, else from the driver.
   */
  allocate(size: number): Observable<SharedMemory> {
    return defer(() => {
      const link = this.current.value;
      if (link !== null) {
        this.counters.memoryRequestsSent++;
        return link.requestMemory(size);
      }
      return this.allocateDirectly(size);
    });
  }

  close(): void {
    this.current.next(null);
    this.current.complete();
  }

  private allocateDirectly(size: number): Observable<SharedMemory> {
    try {
      const memory = this.driver.allocateSharedMemory(size);
      this.counters.directAllocations++;
      return of(memory);
    } catch (error) {
      if (isIpczError(error)) return throwError(() => error);
      return throwError(
        () =>
          new IpczError(
            'RESOURCE_EXHAUSTED',
            `the driver failed to allocate ${size} bytes: ${String(error)}`,
          ),
      );
    }
  }

  private removeCandidate(link: NodeLink): void {
    const index = this.candidates.indexOf(link);
    if (index >= 0) this.candidates.splice(index, 1);
    if (this.current.value !== link || this.current.closed) return;
    const next = this.candidates.find((candidate) => candidate.isActive);
    this.current.next(next ?? null);
  }
}
