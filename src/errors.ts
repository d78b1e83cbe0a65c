/**
 * Result codes, named after ipcz's `IpczResult` values.
 */
export type IpczErrorCode =
  | 'CANCELLED'
  | 'UNKNOWN'
  | 'INVALID_ARGUMENT'
  | 'DEADLINE_EXCEEDED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'OUT_OF_RANGE'
  | 'UNIMPLEMENTED'
  | 'INTERNAL'
  | 'UNAVAILABLE'
  | 'DATA_LOSS';

/**
 * Error thrown for API misuse and emitted by Observables for later
 * failures. `code` is the ipcz result that the same failure returns.
 */
export class IpczError extends Error {
  readonly code: IpczErrorCode;

  constructor(code: IpczErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'IpczError';
    this.code = code;
  }
}

/** Checks for an IpczError without `instanceof`, which fails across realms. */
export function isIpczError(value: unknown): value is IpczError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { name?: unknown }).name === 'IpczError' &&
    typeof (value as { code?: unknown }).code === 'string'
  );
}
