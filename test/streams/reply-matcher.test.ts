import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createReplyMatcher, type Reply } from '../../streams/reply-matcher';
import { createScheduler } from '../support/marbles';

/** An error with a `code`, which is all the marble comparison keeps. */
class CodedError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

interface Recorder {
  released: string[];
  unmatched: Array<[string, Reply<string>]>;
  sent: string[];
}

function createRecordingMatcher() {
  const record: Recorder = { released: [], unmatched: [], sent: [] };
  const matcher = createReplyMatcher<string, string>({
    release: (value) => record.released.push(value),
    onUnmatched: (key, reply) => record.unmatched.push([key, reply]),
  });
  const request = (key: string) =>
    matcher.request(key, () => record.sent.push(key));
  return { matcher, record, request };
}

/** A reply message as a test feeds it to the matcher. */
type Message =
  | { key: string; value: string }
  | { key: string; error: string };

function deliver(
  matcher: ReturnType<typeof createRecordingMatcher>['matcher'],
  message: Message,
): void {
  if ('value' in message) matcher.reply(message.key, message.value);
  else matcher.fail(message.key, new CodedError(message.error));
}

const matching = suite('ReplyMatcher');

matching('matches interleaved keys oldest first', () => {
  const { matcher, record, request } = createRecordingMatcher();
  createScheduler().run(({ hot, expectObservable }) => {
    const replies = hot<Message>('----a--b--c--d', {
      a: { key: 'y', value: 'y1' },
      b: { key: 'x', value: 'x1' },
      c: { key: 'x', value: 'x2' },
      d: { key: 'y', value: 'y2' },
    });
    replies.subscribe((message) => deliver(matcher, message));

    expectObservable(request('x'), '^').toBe('-------(a|)', { a: 'x1' });
    expectObservable(request('y'), '-^').toBe('----(a|)', { a: 'y1' });
    expectObservable(request('x'), '--^').toBe('----------(a|)', {
      a: 'x2',
    });
    expectObservable(request('y'), '---^').toBe('-------------(a|)', {
      a: 'y2',
    });
  });
  assert.equal(record.sent, ['x', 'y', 'x', 'y']);
  assert.equal(record.released, []);
  assert.equal(record.unmatched, []);
  assert.is(matcher.pendingCount('x'), 0);
  assert.is(matcher.pendingCount('y'), 0);
});

matching('sends only on subscription', () => {
  const { record, request } = createRecordingMatcher();
  createScheduler().run(({ cold, expectObservable }) => {
    const requests = cold('--a--b', { a: 'x', b: 'y' });
    const unsubscribed = request('z');
    void unsubscribed;
    expectObservable(requests).toBe('--a--b', { a: 'x', b: 'y' });
    requests.subscribe((key) => request(key).subscribe());
  });
  assert.equal(record.sent, ['x', 'y']);
});

matching('failure errors the oldest request', () => {
  const { matcher, record, request } = createRecordingMatcher();
  createScheduler().run(({ hot, expectObservable }) => {
    const replies = hot<Message>('--a--b--c', {
      a: { key: 'x', error: 'RESOURCE_EXHAUSTED' },
      b: { key: 'y', error: 'RESOURCE_EXHAUSTED' },
      c: { key: 'x', value: 'x2' },
    });
    replies.subscribe((message) => deliver(matcher, message));

    expectObservable(request('x')).toBe('--#', undefined, {
      code: 'RESOURCE_EXHAUSTED',
    });
    expectObservable(request('y')).toBe('-----#', undefined, {
      code: 'RESOURCE_EXHAUSTED',
    });
    expectObservable(request('x')).toBe('--------(a|)', { a: 'x2' });
  });
  assert.equal(record.unmatched, []);
  assert.equal(record.released, []);
});

matching('close errors every pending request', () => {
  const { matcher, record, request } = createRecordingMatcher();
  createScheduler().run(({ hot, expectObservable }) => {
    const events = hot('--a----c', {
      a: () => matcher.reply('x', 'x1'),
      c: () => matcher.close(new CodedError('UNAVAILABLE')),
    });
    events.subscribe((action) => action());

    const lost = { code: 'UNAVAILABLE' };
    expectObservable(request('x')).toBe('--(a|)', { a: 'x1' });
    expectObservable(request('x')).toBe('-------#', undefined, lost);
    expectObservable(request('x'), '---^').toBe('-------#', undefined, lost);
    expectObservable(request('y'), '----^').toBe('-------#', undefined, lost);
  });
  assert.is(matcher.closed, true);
  assert.is(matcher.pendingCount('x'), 0);
  assert.is(matcher.pendingCount('y'), 0);
  assert.equal(record.released, []);
});

matching('cancelled request keeps its place', () => {
  const { matcher, record, request } = createRecordingMatcher();
  createScheduler().run(({ hot, expectObservable }) => {
    const replies = hot<Message>('-----a--b--c', {
      a: { key: 'x', value: 'x1' },
      b: { key: 'x', value: 'x2' },
      c: { key: 'x', value: 'x3' },
    });
    replies.subscribe((message) => deliver(matcher, message));

    // The first and third requests unsubscribe before their replies
    // arrive, so x1 and x3 are released and the second request still
    // gets x2. The fourth waits for a fourth reply.
    expectObservable(request('x'), '^--!').toBe('---');
    expectObservable(request('x'), '-^').toBe('--------(a|)', { a: 'x2' });
    expectObservable(request('x'), '--^-------!').toBe('----------');
    expectObservable(request('x'), '---^').toBe('--------------');
  });
  assert.equal(record.released, ['x1', 'x3']);
  assert.equal(record.sent, ['x', 'x', 'x', 'x']);
  assert.is(matcher.pendingCount('x'), 1);
  assert.equal(record.unmatched, []);
});

matching('cancelled request then failure', () => {
  const { matcher, record, request } = createRecordingMatcher();
  createScheduler().run(({ hot, expectObservable }) => {
    const replies = hot<Message>('---a--b', {
      a: { key: 'x', error: 'RESOURCE_EXHAUSTED' },
      b: { key: 'x', value: 'x2' },
    });
    replies.subscribe((message) => deliver(matcher, message));

    expectObservable(request('x'), '^-!').toBe('--');
    expectObservable(request('x')).toBe('------(a|)', { a: 'x2' });
  });
  assert.equal(record.released, []);
  assert.equal(record.unmatched, []);
});

matching('unsolicited reply is reported', () => {
  const { matcher, record, request } = createRecordingMatcher();
  const failure = new CodedError('RESOURCE_EXHAUSTED');
  createScheduler().run(({ hot, expectObservable }) => {
    const events = hot('-a-b---c-d', {
      a: () => matcher.reply('x', 'stray'),
      b: () => matcher.fail('y', failure),
      c: () => matcher.reply('x', 'x1'),
      d: () => matcher.reply('x', 'x2'),
    });
    events.subscribe((action) => action());

    expectObservable(request('x'), '-----^').toBe('-------(a|)', {
      a: 'x1',
    });
  });
  assert.equal(record.unmatched, [
    ['x', { kind: 'value', value: 'stray' }],
    ['y', { kind: 'error', error: failure }],
    ['x', { kind: 'value', value: 'x2' }],
  ]);
  assert.equal(record.released, []);
});

matching('request after close errors at once', () => {
  const { matcher, record, request } = createRecordingMatcher();
  matcher.close(new CodedError('UNAVAILABLE'));
  createScheduler().run(({ expectObservable }) => {
    expectObservable(request('x'), '--^').toBe('--#', undefined, {
      code: 'UNAVAILABLE',
    });
  });
  assert.equal(record.sent, []);
});

matching('reply after close is released', () => {
  const { matcher, record } = createRecordingMatcher();
  matcher.close(new CodedError('UNAVAILABLE'));
  assert.is(matcher.reply('x', 'late'), false);
  assert.is(matcher.fail('x', new CodedError('RESOURCE_EXHAUSTED')), false);
  assert.equal(record.released, ['late']);
  assert.equal(record.unmatched, []);
});

matching('reply inside send is matched', () => {
  const { matcher, record } = createRecordingMatcher();
  createScheduler().run(({ expectObservable }) => {
    const echoed = matcher.request('x', () => matcher.reply('x', 'now'));
    expectObservable(echoed, '-^').toBe('-(a|)', { a: 'now' });
  });
  assert.equal(record.unmatched, []);
});

matching('throwing send withdraws request', () => {
  const { matcher, record, request } = createRecordingMatcher();
  createScheduler().run(({ hot, expectObservable }) => {
    hot('----a').subscribe(() => matcher.reply('x', 'x1'));
    const broken = matcher.request('x', () => {
      throw new CodedError('PERMISSION_DENIED');
    });
    expectObservable(broken).toBe('#', undefined, {
      code: 'PERMISSION_DENIED',
    });
    expectObservable(request('x'), '-^').toBe('----(a|)', { a: 'x1' });
  });
  assert.equal(record.unmatched, []);
});

matching.run();
