// Type-level checks of the public API and of exhaustive message dispatch.
// `npm test` type-checks this file first: each `@ts-expect-error` line
// must fail to compile, or the type check fails.
import { match, P } from 'ts-pattern';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createNode,
  drivers,
  type IpczErrorCode,
  type Portal,
  type PortalStatus,
} from '../src/index';
import type { MessageOf, NodeMessage } from '../src/wire/messages';

function publicApiTypes(portal: Portal): void {
  // @ts-expect-error: a node needs a driver.
  createNode({});
  // @ts-expect-error: parcel data is bytes or a string.
  portal.put(42);
  // @ts-expect-error: handles are portals or boxes.
  portal.put('x', ['not a handle']);
  const status: PortalStatus = portal.status();
  // @ts-expect-error: status fields are read-only facts, not methods.
  status.peerClosed();
  // @ts-expect-error: error codes are ipcz's names only.
  const code: IpczErrorCode = 'NOT_AN_IPCZ_CODE';
  void code;
}

function messageTypes(message: MessageOf<'RequestMemory'>): number {
  // @ts-expect-error: 64-bit fields are bigints, 32-bit ones numbers.
  const wrong: bigint = message.size;
  void wrong;
  return message.size;
}

/**
 * Dispatch that leaves out one message kind does not compile: the
 * node's handler is a ts-pattern match ending in `exhaustive()`.
 */
function incompleteDispatch(message: NodeMessage): string {
  return (
    match(message)
      .with({ type: 'RequestMemory' }, () => 'memory')
      .with({ type: P.not('RequestMemory') }, (m) =>
        m.type === 'ProvideMemory' ? 'answer' : 'other',
      )
      .exhaustive()
  );
}

function missingBranch(message: NodeMessage): string {
  return (
    match(message)
      .with({ type: 'RequestMemory' }, () => 'memory')
      // @ts-expect-error: every other message kind is unhandled.
      .exhaustive()
  );
}

test('type checks compile as expected', () => {
  // The checks above run at compile time; this keeps the functions used.
  assert.type(publicApiTypes, 'function');
  assert.type(messageTypes, 'function');
  assert.type(incompleteDispatch, 'function');
  assert.type(missingBranch, 'function');
  assert.type(drivers.sync, 'function');
});

test.run();
