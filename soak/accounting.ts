/**
 * Loss accounting over the final records of every route end.
 *
 * A parcel is lost when its sender put it (the put returned) before the
 * sending end closed or the run stopped, on a route whose receiving end
 * did not close itself abruptly, and the receiving end never took it.
 * ipcz promises exactly this: a route closed from one end delivers
 * every parcel put before the close to the other end, which observes the
 * closure only after the last of them. So for each direction of each
 * route, `lost = sent - received` when the receiver finished by taking
 * everything (outcome `handshake` or `peer`). When the receiver closed
 * abruptly, parcels in flight toward it were discarded by design: they
 * count as `discarded`, not lost.
 */
import type { EndRecord } from './protocol';

/** Totals over every route of a run. */
export interface Tally {
  routes: number;
  /** Parcels sent on directions whose receiver took everything. */
  checkedParcels: number;
  lost: number;
  /** Parcels the receiver never took because it closed abruptly. */
  discarded: number;
  /** Directions where the receiver took more parcels than were sent. */
  surplus: number;
  /** Routes with one record or more than two, as `route: count`. */
  incomplete: string[];
}

/** Computes loss over `records`, which hold two per closed route. */
export function tallyRoutes(records: readonly EndRecord[]): Tally {
  const byRoute = new Map<string, EndRecord[]>();
  for (const record of records) {
    const ends = byRoute.get(record.route) ?? [];
    ends.push(record);
    byRoute.set(record.route, ends);
  }

  const tally: Tally = {
    routes: byRoute.size,
    checkedParcels: 0,
    lost: 0,
    discarded: 0,
    surplus: 0,
    incomplete: [],
  };
  for (const [route, ends] of byRoute) {
    const [first, second] = ends;
    if (ends.length !== 2 || first!.side === second!.side) {
      tally.incomplete.push(`${route}: ${ends.map((e) => e.side).join('')}`);
      continue;
    }
    addDirection(tally, first!, second!);
    addDirection(tally, second!, first!);
  }
  return tally;
}

function addDirection(tally: Tally, from: EndRecord, to: EndRecord): void {
  const missing = from.sent - to.received;
  if (missing < 0) {
    tally.surplus++;
    return;
  }
  if (to.outcome === 'abrupt') {
    tally.discarded += missing;
    return;
  }
  tally.checkedParcels += from.sent;
  tally.lost += missing;
}
