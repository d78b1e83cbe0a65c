import { Observable, type Subscriber } from 'rxjs';

/** The reply to one request: a value, or an error for that request. */
export type Reply<V> =
  | { readonly kind: 'value'; readonly value: V }
  | { readonly kind: 'error'; readonly error: unknown };

/** Callbacks through which a matcher hands back what no request can take. */
export interface ReplyMatcherOptions<K, V> {
  /**
   * Disposes of a value that replied to a request whose subscriber had
   * already unsubscribed, or that arrived after `close`.
   */
  release(value: V): void;
  /**
   * Called for a reply or failure whose key has no pending request. The
   * peer sent a reply that no request expects, a protocol violation.
   */
  onUnmatched(key: K, reply: Reply<V>): void;
}

/**
 * Pairs replies with requests by key, oldest request first. It suits
 * protocols with no request ids that rely on in-order delivery, such as
 * ipcz's RequestMemory and ProvideMemory, keyed by size.
 */
export interface ReplyMatcher<K, V> {
  /**
   * Returns a cold Observable. Each subscription appends a pending request
   * for `key` and then calls `send`, so a reply delivered synchronously
   * inside `send` already finds it. The Observable emits the value that
   * replies to this request and completes, or errors with the error given to
   * `fail` or `close`; when `send` throws, it errors with that exception
   * and the request is withdrawn.
   *
   * Unsubscribing before the reply keeps the request in line, because the
   * peer still replies to it. That reply is then passed to `release`
   * instead, and later requests for the key get their own replies.
   */
  request(key: K, send: () => void): Observable<V>;
  /**
   * Completes the oldest pending request for `key` with `value`. Returns
   * false when no request was pending (after calling `onUnmatched`, or
   * `release` once the matcher is closed).
   */
  reply(key: K, value: V): boolean;
  /**
   * Errors the oldest pending request for `key` with `error`. Returns
   * false when no request was pending (after calling `onUnmatched`, unless
   * the matcher is closed).
   */
  fail(key: K, error: unknown): boolean;
  /**
   * Errors every pending request with `error`. Later requests error with
   * it at once, and later replies are released. Only the first call has
   * an effect.
   */
  close(error: unknown): void;
  /** Number of pending requests for `key`, cancelled ones included. */
  pendingCount(key: K): number;
  readonly closed: boolean;
}

/** A pending request; `subscriber` is null once it was cancelled. */
interface PendingRequest<V> {
  subscriber: Subscriber<V> | null;
}

/** Creates a matcher that pairs replies with requests per key, FIFO. */
export function createReplyMatcher<K, V>(
  options: ReplyMatcherOptions<K, V>,
): ReplyMatcher<K, V> {
  const pending = new Map<K, PendingRequest<V>[]>();
  let closed = false;
  let closeError: unknown;

  function takeOldest(key: K): PendingRequest<V> | undefined {
    const queue = pending.get(key);
    if (queue === undefined) return undefined;
    const oldest = queue.shift();
    if (queue.length === 0) pending.delete(key);
    return oldest;
  }

  function withdraw(key: K, entry: PendingRequest<V>): void {
    const queue = pending.get(key);
    if (queue === undefined) return;
    const index = queue.indexOf(entry);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) pending.delete(key);
  }

  function request(key: K, send: () => void): Observable<V> {
    return new Observable<V>((subscriber) => {
      if (closed) {
        subscriber.error(closeError);
        return;
      }
      const entry: PendingRequest<V> = { subscriber };
      const queue = pending.get(key);
      if (queue === undefined) pending.set(key, [entry]);
      else queue.push(entry);

      try {
        send();
      } catch (error) {
        // Nothing was sent, so no reply will come for this entry.
        withdraw(key, entry);
        entry.subscriber = null;
        subscriber.error(error);
        return;
      }

      return () => {
        // The reply is still on its way. Keeping the slot makes it land
        // here and not on a newer request.
        entry.subscriber = null;
      };
    });
  }

  function reply(key: K, value: V): boolean {
    if (closed) {
      options.release(value);
      return false;
    }
    const oldest = takeOldest(key);
    if (oldest === undefined) {
      options.onUnmatched(key, { kind: 'value', value });
      return false;
    }
    const subscriber = oldest.subscriber;
    oldest.subscriber = null;
    if (subscriber === null) {
      options.release(value);
    } else {
      subscriber.next(value);
      subscriber.complete();
    }
    return true;
  }

  function fail(key: K, error: unknown): boolean {
    if (closed) return false;
    const oldest = takeOldest(key);
    if (oldest === undefined) {
      options.onUnmatched(key, { kind: 'error', error });
      return false;
    }
    const subscriber = oldest.subscriber;
    oldest.subscriber = null;
    subscriber?.error(error);
    return true;
  }

  function close(error: unknown): void {
    if (closed) return;
    closed = true;
    closeError = error;

    // Detach everything first: an error callback may re-enter the matcher.
    const entries = [...pending.values()].flat();
    pending.clear();
    for (const entry of entries) {
      const subscriber = entry.subscriber;
      entry.subscriber = null;
      subscriber?.error(error);
    }
  }

  return {
    request,
    reply,
    fail,
    close,
    pendingCount: (key) => pending.get(key)?.length ?? 0,
    get closed() {
      return closed;
    },
  };
}
