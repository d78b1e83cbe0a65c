import { Observable, filter, map, takeUntil } from 'rxjs';
import { IpczError } from '../errors';
import type { PortalStatus, Router } from './router';

/** Conditions a trap watches, as ipcz's IPCZ_TRAP_* flags. */
export interface TrapConditions {
  peerClosed?: boolean;
  dead?: boolean;
  aboveMinLocalParcels?: number;
  aboveMinLocalBytes?: number;
  belowMaxRemoteParcels?: number;
  belowMaxRemoteBytes?: number;
  newLocalParcel?: boolean;
  consumedRemoteParcel?: boolean;
}

export interface TrapEvent {
  /** The watched conditions that hold (or just happened) now. */
  conditions: TrapConditions;
  status: PortalStatus;
}

/**
 * Watches `conditions` on `router` until `released` emits (the portal
 * closed or moved). See `Portal.trap` for what it emits.
 */
export function watchTrap(
  router: Router,
  released: Observable<void>,
  conditions: TrapConditions,
  isOpen: () => boolean,
): Observable<TrapEvent> {
  const watchesRemote =
    conditions.belowMaxRemoteParcels !== undefined ||
    conditions.belowMaxRemoteBytes !== undefined ||
    conditions.consumedRemoteParcel === true;
  return new Observable<TrapEvent>((subscriber) => {
    if (!isOpen()) {
      subscriber.complete();
      return;
    }
    if (watchesRemote) router.setRemoteMonitoring(true);
    let previous = evaluateLevels(conditions, router.status());
    if (Object.keys(previous).length > 0) {
      subscriber.next({ conditions: previous, status: router.status() });
    }
    const subscription = router.statusChanges
      .pipe(
        takeUntil(released),
        map((change) => {
          const levels = evaluateLevels(conditions, change.status);
          const fired = risingEdges(previous, levels);
          previous = levels;
          if (
            change.reason === 'new-local-parcel' &&
            conditions.newLocalParcel
          ) {
            fired.newLocalParcel = true;
          }
          if (
            change.reason === 'remote-activity' &&
            conditions.consumedRemoteParcel
          ) {
            fired.consumedRemoteParcel = true;
          }
          return { conditions: fired, status: change.status };
        }),
        filter((event) => Object.keys(event.conditions).length > 0),
      )
      .subscribe(subscriber);
    return () => {
      subscription.unsubscribe();
      if (watchesRemote && isOpen()) {
        router.setRemoteMonitoring(false);
      }
    };
  });
}

const countConditions = [
  'aboveMinLocalParcels',
  'aboveMinLocalBytes',
  'belowMaxRemoteParcels',
  'belowMaxRemoteBytes',
] as const;

const trapConditionNames = new Set([
  'peerClosed',
  'dead',
  'aboveMinLocalParcels',
  'aboveMinLocalBytes',
  'belowMaxRemoteParcels',
  'belowMaxRemoteBytes',
  'newLocalParcel',
  'consumedRemoteParcel',
]);

export function checkTrapConditions(conditions: TrapConditions): void {
  if (typeof conditions !== 'object' || conditions === null) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'trap conditions must be an object',
    );
  }
  const names = Object.keys(conditions);
  const unknown = names.find((name) => !trapConditionNames.has(name));
  if (unknown !== undefined) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      `unknown trap condition ${JSON.stringify(unknown)}`,
    );
  }
  // A count of 0 names a condition, so only undefined and false do not.
  const unset = (value: unknown) => value === undefined || value === false;
  if (names.every((name) => unset(conditions[name as keyof TrapConditions]))) {
    throw new IpczError(
      'INVALID_ARGUMENT',
      'trap conditions must name at least one condition',
    );
  }
  for (const key of countConditions) {
    const value = conditions[key];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `trap condition ${key} must be a non-negative integer, got ${value}`,
      );
    }
  }
}

/** Returns the level-triggered conditions that hold for `status`. */
function evaluateLevels(
  conditions: TrapConditions,
  status: PortalStatus,
): TrapConditions {
  const holds: TrapConditions = {};
  if (conditions.peerClosed && status.peerClosed) holds.peerClosed = true;
  if (conditions.dead && status.dead) holds.dead = true;
  const { aboveMinLocalParcels, aboveMinLocalBytes } = conditions;
  const { belowMaxRemoteParcels, belowMaxRemoteBytes } = conditions;
  if (
    aboveMinLocalParcels !== undefined &&
    status.localParcels > aboveMinLocalParcels
  ) {
    holds.aboveMinLocalParcels = aboveMinLocalParcels;
  }
  if (
    aboveMinLocalBytes !== undefined &&
    status.localBytes > aboveMinLocalBytes
  ) {
    holds.aboveMinLocalBytes = aboveMinLocalBytes;
  }
  if (
    belowMaxRemoteParcels !== undefined &&
    status.remoteParcels < belowMaxRemoteParcels
  ) {
    holds.belowMaxRemoteParcels = belowMaxRemoteParcels;
  }
  if (
    belowMaxRemoteBytes !== undefined &&
    status.remoteBytes < belowMaxRemoteBytes
  ) {
    holds.belowMaxRemoteBytes = belowMaxRemoteBytes;
  }
  return holds;
}

/** Returns the conditions in `now` that did not hold in `before`. */
function risingEdges(
  before: TrapConditions,
  now: TrapConditions,
): TrapConditions {
  const fired: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(now)) {
    if (!(key in before)) fired[key] = value;
  }
  return fired as TrapConditions;
}

