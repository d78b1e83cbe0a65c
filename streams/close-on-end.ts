import { Observable, type MonoTypeOperatorFunction } from 'rxjs';

/** Cause of the end of a `closeOnEnd` source. */
export type EndReason =
  | { readonly kind: 'complete' }
  | { readonly kind: 'error'; readonly error: unknown }
  | { readonly kind: 'unsubscribe' };

/** An object closed with an error, such as a ReplyMatcher. */
export interface Closable {
  close(error: unknown): void;
}

/**
 * Mirrors the source and closes `target` with `makeError(reason)` when the
 * source completes, errors or is unsubscribed. A link's message stream
 * uses it so that every request still waiting for a reply errors once no
 * reply can arrive.
 *
 * `target` is closed before the completion or error is forwarded, so
 * downstream handlers find it closed.
 */
export function closeOnEnd<T>(
  target: Closable,
  makeError: (reason: EndReason) => unknown,
): MonoTypeOperatorFunction<T> {
  return (source) =>
    new Observable<T>((subscriber) => {
      let ended = false;
      const end = (reason: EndReason): void => {
        if (ended) return;
        ended = true;
        target.close(makeError(reason));
      };

      const subscription = source.subscribe({
        next: (value) => subscriber.next(value),
        error: (error: unknown) => {
          end({ kind: 'error', error });
          subscriber.error(error);
        },
        complete: () => {
          end({ kind: 'complete' });
          subscriber.complete();
        },
      });

      return () => {
        subscription.unsubscribe();
        end({ kind: 'unsubscribe' });
      };
    });
}
