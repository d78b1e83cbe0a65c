import type { DriverObject } from '../drivers/driver';
import { IpczError } from '../errors';

/**
 * A driver object (shared memory, a transport) or an application value,
 * wrapped so that it can travel in a parcel. Unboxing takes the contents
 * out and spends the box; peeking leaves it usable.
 */
export class Box {
  private contents: DriverObject | null;

  constructor(contents: DriverObject) {
    this.contents = contents;
  }

  /** Whether the box still holds its contents. */
  get isSpent(): boolean {
    return this.contents === null;
  }

  /**
   * Returns the contents without taking them: a driver object as is, an
   * application object's value unwrapped. Throws `INVALID_ARGUMENT` once
   * the box is spent.
   */
  peek(): unknown {
    return unwrap(this.requireContents('peek'));
  }

  /** Takes the contents out; the box is spent afterwards. */
  unbox(): unknown {
    const contents = this.requireContents('unbox');
    this.contents = null;
    return unwrap(contents);
  }

  /** Takes the driver object out for transmission; the box is spent. */
  takeObject(): DriverObject {
    const contents = this.requireContents('send');
    this.contents = null;
    return contents;
  }

  /** The driver object, still owned by the box. */
  get object(): DriverObject | null {
    return this.contents;
  }

  /** Drops the contents. */
  close(): void {
    this.contents = null;
  }

  private requireContents(operation: string): DriverObject {
    if (this.contents === null) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `cannot ${operation} a box that was already unboxed, sent or closed`,
      );
    }
    return this.contents;
  }
}

function unwrap(object: DriverObject): unknown {
  return object.kind === 'application' ? object.value : object;
}
