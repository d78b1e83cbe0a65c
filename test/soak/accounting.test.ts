import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tallyRoutes } from '../../soak/accounting';
import { UsageError, parseOptions } from '../../soak/options';
import {
  ParcelKind,
  decodeParcel,
  encodeParcel,
  routeTag,
  verifyChecksum,
} from '../../soak/parcel-format';
import type { EndRecord } from '../../soak/protocol';
import { createRandom, deriveSeed } from '../../soak/random';

function end(
  route: string,
  side: 'a' | 'b',
  sent: number,
  received: number,
  outcome: EndRecord['outcome'],
): EndRecord {
  return { route, side, sent, received, outcome };
}

test('tally counts loss toward takers', () => {
  const tally = tallyRoutes([
    end('0.1', 'a', 10, 7, 'handshake'),
    end('0.1', 'b', 7, 9, 'handshake'),
  ]);
  assert.is(tally.routes, 1);
  assert.is(tally.lost, 1);
  assert.is(tally.checkedParcels, 17);
  assert.is(tally.discarded, 0);
});

test('tally excuses abrupt receivers', () => {
  const tally = tallyRoutes([
    end('1.4', 'a', 5, 2, 'abrupt'),
    end('1.4', 'b', 8, 5, 'peer'),
  ]);
  assert.is(tally.lost, 0);
  assert.is(tally.discarded, 6);
  assert.is(tally.checkedParcels, 5);
});

test('tally flags incomplete and surplus', () => {
  const tally = tallyRoutes([
    end('2.0', 'a', 1, 0, 'peer'),
    end('2.1', 'a', 3, 0, 'handshake'),
    end('2.1', 'b', 0, 4, 'handshake'),
  ]);
  assert.equal(tally.incomplete, ['2.0: a']);
  assert.is(tally.surplus, 1);
});

test('parcel checksum covers header and region', () => {
  const tag = routeTag('3.7', 'a');
  const payload = new Uint8Array([1, 2, 3, 4, 5]);
  const region = new Uint8Array([9, 8, 7]);
  const data = encodeParcel(
    { kind: ParcelKind.data, tag, sequence: 42 },
    payload,
    region,
  );
  const decoded = decodeParcel(data)!;
  assert.is(decoded.sequence, 42);
  assert.is(decoded.tag, tag);
  assert.is(decoded.regionBytes, 3);
  assert.ok(decoded.hasRegion);
  assert.ok(verifyChecksum(data, decoded, region));

  const flipped = data.slice();
  flipped[flipped.length - 1]! ^= 1;
  assert.not.ok(verifyChecksum(flipped, decodeParcel(flipped)!, region));
  assert.not.ok(verifyChecksum(data, decoded, new Uint8Array([9, 8, 6])));
  const resequenced = data.slice();
  resequenced[11] = 43;
  assert.not.ok(verifyChecksum(resequenced, decodeParcel(resequenced)!, region));
  assert.is.not(routeTag('3.7', 'b'), tag);
  assert.is(decodeParcel(new Uint8Array(19)), null);
});

test('empty payload round-trips', () => {
  const data = encodeParcel(
    { kind: ParcelKind.fin, tag: 1, sequence: 0 },
    new Uint8Array(0),
  );
  const decoded = decodeParcel(data)!;
  assert.is(decoded.kind, ParcelKind.fin);
  assert.is(decoded.payload.length, 0);
  assert.ok(verifyChecksum(data, decoded));
});

test('options parse and reject', () => {
  assert.equal(parseOptions(['--seconds', '7', '--seed=5'], () => 1), {
    seconds: 7,
    seed: 5,
    maxHeapGrowthMib: 64,
    mergeDelayMs: 20,
  });
  assert.is((parseOptions([], () => 99) as { seed: number }).seed, 99);
  assert.is(parseOptions(['--help'], () => 1), 'help');
  const usageError = (args: string[]) => {
    try {
      parseOptions(args, () => 1);
    } catch (error) {
      return error instanceof UsageError ? error.message : String(error);
    }
    return 'no error';
  };
  assert.match(usageError(['--seconds', '-1']), /invalid --seconds value/);
  assert.match(usageError(['--seconds', '1.5']), /invalid --seconds value/);
  assert.match(usageError(['extra']), /unknown option extra/);
  assert.match(usageError(['--max-heap-growth', '0']), /--max-heap-growth/);
});

test('random replays from a seed', () => {
  const first = createRandom(deriveSeed(7, 2));
  const second = createRandom(deriveSeed(7, 2));
  const other = createRandom(deriveSeed(7, 3));
  const a = Array.from({ length: 8 }, () => first.int(0, 1000));
  const b = Array.from({ length: 8 }, () => second.int(0, 1000));
  const c = Array.from({ length: 8 }, () => other.int(0, 1000));
  assert.equal(a, b);
  assert.not.equal(a, c);
  assert.ok(a.every((n) => n >= 0 && n <= 1000));
});

test.run();
