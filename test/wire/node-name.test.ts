import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NodeName } from '../../src/wire/node-name';

test('NodeName orders by high half first', () => {
  const a = new NodeName(1n, 5n);
  const b = new NodeName(2n, 0n);
  assert.is(a.compare(b), -1);
  assert.is(b.compare(a), 1);
  assert.is(a.compare(new NodeName(1n, 5n)), 0);
});

test('NodeName zero is invalid', () => {
  assert.is(NodeName.invalid.isValid(), false);
  assert.is(new NodeName(0n, 1n).isValid(), true);
});

test('NodeName hex string is 32 digits', () => {
  assert.is(new NodeName(1n, 2n).toString(), '0'.repeat(15) + '1' + '0'.repeat(15) + '2');
});

test.run();
