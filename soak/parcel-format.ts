/**
 * The layout of soak parcels. Every parcel on a soak route starts with a
 * 20-byte header, followed by the payload:
 *
 *   offset 0   u8   kind (data, carry or fin)
 *   offset 1   u8   flags (bit 0: a boxed shared memory region follows)
 *   offset 2   u16  zero
 *   offset 4   u32  route tag: FNV-1a of the route id and sending side
 *   offset 8   u32  sequence number on this route and direction
 *   offset 12  u32  bytes of the boxed region that are checked
 *   offset 16  u32  FNV-1a checksum of bytes 0 to 15, the payload and
 *                   the checked region bytes
 *
 * The route tag makes a parcel delivered on the wrong route, or from the
 * wrong end, fail its check even when its bytes are intact.
 */

/** Header size in bytes. */
export const HEADER_BYTES = 20;

/** Parcel kinds. */
export const ParcelKind = {
  /** Payload bytes, and sometimes a boxed shared memory region. */
  data: 1,
  /** Carries a route end (a portal); the payload is its `EndState`. */
  carry: 2,
  /** The sender's last parcel on this route: it will put nothing more. */
  fin: 3,
} as const;

export type ParcelKind = (typeof ParcelKind)[keyof typeof ParcelKind];

const FLAG_REGION = 1;
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Folds `bytes` into a running FNV-1a hash. */
export function fnv1a(bytes: Uint8Array, hash = FNV_OFFSET): number {
  let h = hash;
  for (let i = 0; i < bytes.length; i++) {
    h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
  }
  return h >>> 0;
}

const encoder = new TextEncoder();

/** Computes the tag of the parcels that `side` of `route` sends. */
export function routeTag(route: string, side: string): number {
  return fnv1a(encoder.encode(`${route}/${side}`));
}

/** Header fields set by the sender. */
export interface ParcelHeader {
  kind: ParcelKind;
  tag: number;
  sequence: number;
}

/**
 * Builds a parcel around `payload`. With `region`, the checksum covers
 * its bytes too and the parcel is flagged as carrying a boxed region.
 * The caller boxes the region in the same put.
 */
export function encodeParcel(
  header: ParcelHeader,
  payload: Uint8Array,
  region?: Uint8Array,
): Uint8Array {
  const data = new Uint8Array(HEADER_BYTES + payload.length);
  const view = new DataView(data.buffer);
  view.setUint8(0, header.kind);
  view.setUint8(1, region === undefined ? 0 : FLAG_REGION);
  view.setUint32(4, header.tag);
  view.setUint32(8, header.sequence);
  view.setUint32(12, region?.length ?? 0);
  data.set(payload, HEADER_BYTES);
  view.setUint32(16, checksumOf(data, region));
  return data;
}

function checksumOf(data: Uint8Array, region: Uint8Array | undefined) {
  let hash = fnv1a(data.subarray(0, 16));
  hash = fnv1a(data.subarray(HEADER_BYTES), hash);
  if (region !== undefined) hash = fnv1a(region, hash);
  return hash;
}

/** A parsed parcel header and the payload that follows it. */
export interface DecodedParcel extends ParcelHeader {
  payload: Uint8Array;
  /** Bytes of the boxed region covered by the checksum; 0 without one. */
  regionBytes: number;
  hasRegion: boolean;
  checksum: number;
}

/** Parses a parcel, or returns null when it is shorter than a header. */
export function decodeParcel(data: Uint8Array): DecodedParcel | null {
  if (data.length < HEADER_BYTES) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return {
    kind: view.getUint8(0) as ParcelKind,
    hasRegion: (view.getUint8(1) & FLAG_REGION) !== 0,
    tag: view.getUint32(4),
    sequence: view.getUint32(8),
    regionBytes: view.getUint32(12),
    checksum: view.getUint32(16),
    payload: data.subarray(HEADER_BYTES),
  };
}

/**
 * Tells whether `data` matches its checksum, including the first
 * `regionBytes` bytes of `region` when the parcel has one.
 */
export function verifyChecksum(
  data: Uint8Array,
  parcel: DecodedParcel,
  region?: Uint8Array,
): boolean {
  return checksumOf(data, region) === parcel.checksum;
}
