import { TestScheduler } from 'rxjs/testing';
import * as assert from 'uvu/assert';

/**
 * Replaces each error in recorded marble frames by its `code` alone, so
 * errors compare by code and not by message or stack.
 */
export function keepErrorCodes(value: unknown): unknown {
  if (!Array.isArray(value)) return value;
  return value.map((frame: unknown) => {
    const notification = (frame as { notification?: { kind?: string } })
      .notification;
    if (notification?.kind !== 'E') return frame;
    const error = (notification as { error?: { code?: unknown } }).error;
    return {
      ...(frame as object),
      notification: { ...notification, error: { code: error?.code } },
    };
  });
}

/** A fresh TestScheduler comparing frames with uvu, errors by code. */
export function createScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => {
    assert.equal(keepErrorCodes(actual), keepErrorCodes(expected));
  });
}
