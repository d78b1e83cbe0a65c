/**
 * Generic RxJS building blocks used by the link layer. They import only
 * rxjs, so they can be tested and reused without the rest of ipcz-rx.
 */
export {
  createReplyMatcher,
  type Reply,
  type ReplyMatcher,
  type ReplyMatcherOptions,
} from './reply-matcher';
export { closeOnEnd, type Closable, type EndReason } from './close-on-end';
export { createCoalescer, type Coalescer } from './coalesce-by-key';
