import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createReplyMatcher } from '../../streams/reply-matcher';
import { closeOnEnd, type EndReason } from '../../streams/close-on-end';
import { createScheduler } from '../support/marbles';

/** An error with a `code`, which is all the marble comparison keeps. */
class CodedError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

/** Records each close, so a test can check it happened exactly once. */
function createRecordingTarget() {
  const closes: unknown[] = [];
  return { closes, close: (error: unknown) => closes.push(error) };
}

function describeEnd(reason: EndReason): CodedError {
  return new CodedError(
    reason.kind === 'error' ? 'UNAVAILABLE' : reason.kind.toUpperCase(),
  );
}

const closing = suite('closeOnEnd');

closing('passes values and completion', () => {
  const target = createRecordingTarget();
  createScheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
    const source = cold('-a-b-|');
    expectObservable(source.pipe(closeOnEnd(target, describeEnd))).toBe(
      '-a-b-|',
    );
    expectSubscriptions(source.subscriptions).toBe('^----!');
  });
  assert.equal(target.closes, [new CodedError('COMPLETE')]);
});

closing('closes with the error on error', () => {
  const target = createRecordingTarget();
  const failure = new CodedError('DATA_LOSS');
  const reasons: EndReason[] = [];
  createScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
    const source = hot('-a--#', undefined, failure);
    const piped = source.pipe(
      closeOnEnd(target, (reason) => {
        reasons.push(reason);
        return describeEnd(reason);
      }),
    );
    expectObservable(piped).toBe('-a--#', undefined, { code: 'DATA_LOSS' });
    expectSubscriptions(source.subscriptions).toBe('^---!');
  });
  assert.equal(reasons, [{ kind: 'error', error: failure }]);
  assert.is(target.closes.length, 1);
});

closing('closes once on unsubscribe', () => {
  const target = createRecordingTarget();
  createScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
    const source = hot('-a--b--c');
    expectObservable(
      source.pipe(closeOnEnd(target, describeEnd)),
      '^----!',
    ).toBe('-a--b');
    expectSubscriptions(source.subscriptions).toBe('^----!');
  });
  assert.equal(target.closes, [new CodedError('UNSUBSCRIBE')]);
});

closing('end of messages errors requests', () => {
  createScheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
    const matcher = createReplyMatcher<number, string>({
      release: () => {},
      onUnmatched: () => {},
    });
    const failure = new CodedError('DATA_LOSS');
    const messages = hot('---a---#', { a: 64 }, failure);
    const link = messages.pipe(
      closeOnEnd(matcher, () => new CodedError('UNAVAILABLE')),
    );
    link.subscribe({
      next: (size) => matcher.reply(size, `block of ${size}`),
      error: () => {},
    });

    expectObservable(matcher.request(64, () => {})).toBe('---(a|)', {
      a: 'block of 64',
    });
    expectObservable(matcher.request(64, () => {})).toBe(
      '-------#',
      undefined,
      { code: 'UNAVAILABLE' },
    );
    expectObservable(matcher.request(256, () => {}), '-----^').toBe(
      '-------#',
      undefined,
      { code: 'UNAVAILABLE' },
    );
    expectObservable(matcher.request(64, () => {}), '---------^').toBe(
      '---------#',
      undefined,
      { code: 'UNAVAILABLE' },
    );
    expectSubscriptions(messages.subscriptions).toBe('^------!');
  });
});

closing.run();
