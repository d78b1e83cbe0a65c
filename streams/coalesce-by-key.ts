import {
  Observable,
  ReplaySubject,
  defer,
  throwError,
  type Subscription,
} from 'rxjs';

/**
 * Shares one run of an operation per key among all subscribers that
 * request it while it runs, as ipcz coalesces concurrent requests to grow
 * link memory for the same block size.
 */
export interface Coalescer<K, T> {
  /**
   * Returns a cold Observable. On subscription it starts `start(key)`
   * unless a run for `key` is already under way, and then mirrors that
   * run: it replays what the run emitted so far, then emits the rest and
   * completes or errors with it.
   *
   * A run is detached from its subscribers: it continues when they all
   * unsubscribe and ends only when its source does, or on `close`. The
   * next subscription after a run ended starts a new one.
   */
  run(key: K): Observable<T>;
  /**
   * Stops every run, errors its subscribers with `error`, and makes later
   * `run` subscriptions error with it at once. Only the first call has an
   * effect.
   */
  close(error: unknown): void;
  /** Whether a run for `key` is under way. */
  isRunning(key: K): boolean;
  readonly closed: boolean;
}

interface Run<T> {
  readonly subject: ReplaySubject<T>;
  subscription: Subscription | null;
}

/** Creates a coalescer whose runs for a key are `start(key)`. */
export function createCoalescer<K, T>(
  start: (key: K) => Observable<T>,
): Coalescer<K, T> {
  const runs = new Map<K, Run<T>>();
  let closed = false;
  let closeError: unknown;

  function finish(key: K, run: Run<T>): void {
    if (runs.get(key) === run) runs.delete(key);
  }

  function begin(key: K): Run<T> {
    const run: Run<T> = { subject: new ReplaySubject<T>(), subscription: null };
    // Registered before subscribing, so a source that calls back into
    // `run(key)` synchronously joins this run instead of starting another.
    runs.set(key, run);
    const subscription = start(key).subscribe({
      next: (value) => run.subject.next(value),
      error: (error: unknown) => {
        finish(key, run);
        run.subject.error(error);
      },
      complete: () => {
        finish(key, run);
        run.subject.complete();
      },
    });
    if (closed) subscription.unsubscribe();
    else if (runs.get(key) === run) run.subscription = subscription;
    return run;
  }

  function run(key: K): Observable<T> {
    return defer(() => {
      if (closed) return throwError(() => closeError);
      return (runs.get(key) ?? begin(key)).subject;
    });
  }

  function close(error: unknown): void {
    if (closed) return;
    closed = true;
    closeError = error;

    const stopped = [...runs.values()];
    runs.clear();
    for (const stoppedRun of stopped) {
      stoppedRun.subscription?.unsubscribe();
      stoppedRun.subject.error(error);
    }
  }

  return {
    run,
    close,
    isRunning: (key) => runs.has(key),
    get closed() {
      return closed;
    },
  };
}
