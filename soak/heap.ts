/**
 * Heap measurement for the soak. Figures are taken right after a full
 * garbage collection, so they count live objects rather than garbage
 * that V8 has not collected yet.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null = null;

/**
 * Returns the V8 heap in use by the calling thread, in bytes, after a
 * full collection. The first call enables `gc` at run time, because
 * the soak runs under tsx without `--expose-gc` on the command line.
 */
export function measureHeap(): number {
  if (gc === null) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
  return getHeapStatistics().used_heap_size;
}
