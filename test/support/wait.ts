import type { Parcel, Portal } from '../../src/index';

/**
 * Resolves once `condition()` holds, polling every millisecond; rejects
 * after `timeoutMs` with an error naming `what`.
 */
export function until(
  condition: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (condition()) return resolve();
      if (Date.now() - started > timeoutMs) {
        return reject(new Error(`timed out waiting for ${what}`));
      }
      setTimeout(check, 1);
    };
    check();
  });
}

/** Takes the next parcel from `portal` once one is queued. */
export async function nextParcel(
  portal: Portal,
  what: string,
  timeoutMs?: number,
): Promise<Parcel> {
  await until(() => portal.status().localParcels > 0, what, timeoutMs);
  return portal.get();
}
