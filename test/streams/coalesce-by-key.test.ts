import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createCoalescer } from '../../streams/coalesce-by-key';
import { createScheduler } from '../support/marbles';

/** An error with a `code`, which is all the marble comparison keeps. */
class CodedError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

const coalescing = suite('createCoalescer');

coalescing('shares one run per key', () => {
  const started: string[] = [];
  createScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
    const small = cold('----a|');
    const large = cold('--b|');
    const coalescer = createCoalescer<string, string>((key) => {
      started.push(key);
      return key === 'small' ? small : large;
    });

    expectObservable(coalescer.run('small')).toBe('----a|');
    expectObservable(coalescer.run('small'), '--^').toBe('----a|');
    expectObservable(coalescer.run('large'), '-^').toBe('---b|');
    expectSubscriptions(small.subscriptions).toBe('^----!');
    expectSubscriptions(large.subscriptions).toBe('-^--!');
  });
  assert.equal(started, ['small', 'large']);
});

coalescing('late joiner gets replay', () => {
  createScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
    const source = cold('-a---b|');
    const coalescer = createCoalescer<number, string>(() => source);
    expectObservable(coalescer.run(1)).toBe('-a---b|');
    expectObservable(coalescer.run(1), '---^').toBe('---a-b|');
    expectSubscriptions(source.subscriptions).toBe('^-----!');
  });
});

coalescing('new run after the last ended', () => {
  createScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
    const failure = new CodedError('RESOURCE_EXHAUSTED');
    const source = cold('--#', undefined, failure);
    const coalescer = createCoalescer<number, string>(() => source);
    const exhausted = { code: 'RESOURCE_EXHAUSTED' };
    expectObservable(coalescer.run(1)).toBe('--#', undefined, exhausted);
    expectObservable(coalescer.run(1), '-^').toBe('--#', undefined, exhausted);
    expectObservable(coalescer.run(1), '---^').toBe(
      '-----#',
      undefined,
      exhausted,
    );
    expectSubscriptions(source.subscriptions).toBe(['^-!', '---^-!']);
  });
});

coalescing('run outlives its subscribers', () => {
  createScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
    const source = cold('-----a|');
    const coalescer = createCoalescer<number, string>(() => source);
    expectObservable(coalescer.run(1), '^-!').toBe('---');
    expectObservable(coalescer.run(1), '---^').toBe('-----a|');
    expectSubscriptions(source.subscriptions).toBe('^-----!');
  });
});

coalescing('synchronous source completes', () => {
  let starts = 0;
  createScheduler().run(({ cold, expectObservable }) => {
    const coalescer = createCoalescer<number, string>(() => {
      starts += 1;
      return cold('(a|)');
    });
    expectObservable(coalescer.run(1)).toBe('(a|)');
    expectObservable(coalescer.run(1), '--^').toBe('--(a|)');
  });
  assert.is(starts, 2);
});

coalescing('close stops runs and later calls', () => {
  createScheduler().run(
    ({ cold, hot, expectObservable, expectSubscriptions }) => {
      const source = cold('------a|');
      const coalescer = createCoalescer<number, string>(() => source);
      hot('---a').subscribe(() =>
        coalescer.close(new CodedError('UNAVAILABLE')),
      );
      const lost = { code: 'UNAVAILABLE' };
      expectObservable(coalescer.run(1)).toBe('---#', undefined, lost);
      expectObservable(coalescer.run(2), '-^').toBe('---#', undefined, lost);
      expectObservable(coalescer.run(1), '----^').toBe(
        '----#',
        undefined,
        lost,
      );
      expectSubscriptions(source.subscriptions).toBe(['^--!', '-^-!']);
    },
  );
});

coalescing('isRunning follows the run', () => {
  const scheduler = createScheduler();
  scheduler.run(({ cold }) => {
    const coalescer = createCoalescer<number, string>(() => cold('--a|'));
    coalescer.run(7).subscribe();
    assert.is(coalescer.isRunning(7), true);
    assert.is(coalescer.isRunning(8), false);
    scheduler.flush();
    assert.is(coalescer.isRunning(7), false);
  });
});

coalescing.run();
