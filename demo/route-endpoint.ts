/**
 * One end of a demo route: it replies to what the other end sends and
 * streams parcels to it. Both ends of a route run one, on any thread, so
 * a route can stream both ways at once.
 *
 * Every parcel starts with a `Kind` byte. Large payloads travel as shared
 * memory regions in a Box, with the SHA-256 of their contents in the
 * parcel data so the receiver can check what it maps.
 */

import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { firstValueFrom } from 'rxjs';
import type { Box, Node, Parcel, Portal, SharedMemory } from '../src/index';

const Kind = {
  ping: 1,
  pong: 2,
  data: 3,
  region: 4,
  fileChunk: 5,
  fileEnd: 6,
  fileDigest: 7,
  flush: 8,
  flushed: 9,
  fileAck: 10,
} as const;

/** Parcels the receiving end counted, as reported by a flush. */
export interface ReceivedCounts {
  parcels: number;
  bytes: number;
  regions: number;
  /** Regions whose SHA-256 did not match the sender's. */
  badRegions: number;
}

/** Counts and timings of one direction of a stream. */
export interface StreamReport {
  parcelsSent: number;
  bytesSent: number;
  /** Round-trip times of the pings, in microseconds, in send order. */
  roundTripsUs: number[];
  /** Counts from the far end, fetched after the stream. */
  received: ReceivedCounts;
}

/** The streaming load of one direction. */
export interface StreamPlan {
  /** Small parcels to send. */
  parcels: number;
  /** Bytes in each small parcel. */
  parcelBytes: number;
  /** Pings to time, sent one at a time after the small parcels. */
  pings: number;
  /** Shared memory regions to send. */
  regions: number;
  /** Bytes in each region. */
  regionBytes: number;
}

/** Chunks of a file sent in one parcel, and unacknowledged at most. */
const FILE_CHUNK_BYTES = 256 * 1024;
const FILE_ACK_EVERY = 8;
const FILE_WINDOW = 4 * FILE_ACK_EVERY;

const encoder = new TextEncoder();

function withKind(kind: number, body: Uint8Array = new Uint8Array(0)) {
  const data = new Uint8Array(body.length + 1);
  data[0] = kind;
  data.set(body, 1);
  return data;
}

function textOf(data: Uint8Array): string {
  return new TextDecoder().decode(data.subarray(1));
}

/** Fills `bytes` with a pattern that depends on `seed`. */
function fillPattern(bytes: Uint8Array, seed: number): void {
  const block = new Uint8Array(Math.min(bytes.length, 64 * 1024));
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + seed) & 0xff;
  for (let offset = 0; offset < bytes.length; offset += block.length) {
    bytes.set(block.subarray(0, bytes.length - offset), offset);
  }
}

/** Serves one portal of a route and streams to its peer. */
export class RouteEndpoint {
  readonly received: ReceivedCounts = {
    parcels: 0,
    bytes: 0,
    regions: 0,
    badRegions: 0,
  };
  /** Small parcels and regions sent so far, for progress lines. */
  sentParcels = 0;

  private readonly waiters = new Map<number, ((data: Uint8Array) => void)[]>();
  private fileHash = createHash('sha256');
  private fileChunks = 0;

  constructor(
    private readonly node: Node,
    readonly portal: Portal,
  ) {
    portal.parcels$.subscribe((parcel) => this.onParcel(parcel));
  }

  /** Sends `plan` to the peer and returns what was sent and measured. */
  async stream(plan: StreamPlan): Promise<StreamReport> {
    const report: StreamReport = {
      parcelsSent: 0,
      bytesSent: 0,
      roundTripsUs: [],
      received: { parcels: 0, bytes: 0, regions: 0, badRegions: 0 },
    };
    const small = new Uint8Array(plan.parcelBytes).fill(0x42);
    for (let i = 0; i < plan.parcels; i++) {
      this.put(withKind(Kind.data, small), report);
      // Yields now and then, so the far end's replies are handled.
      if (i % 256 === 255) await new Promise((resolve) => setImmediate(resolve));
    }
    for (let i = 0; i < plan.regions; i++) {
      await this.sendRegion(plan.regionBytes, i, report);
    }
    for (let i = 0; i < plan.pings; i++) {
      const started = process.hrtime.bigint();
      const pong = this.next(Kind.pong);
      this.put(withKind(Kind.ping), report);
      await pong;
      report.roundTripsUs.push(
        Number(process.hrtime.bigint() - started) / 1e3,
      );
    }
    const flushed = this.next(Kind.flushed);
    this.portal.put(withKind(Kind.flush));
    report.received = JSON.parse(textOf(await flushed)) as ReceivedCounts;
    return report;
  }

  /**
   * Streams the file at `path` in chunks and returns the SHA-256 (hex)
   * that the far end computed over what it received.
   */
  async sendFile(
    path: string,
    onChunk: (bytes: number) => void,
  ): Promise<string> {
    const file = await open(path, 'r');
    try {
      let sent = 0;
      let acked = 0;
      for (;;) {
        const chunk = new Uint8Array(FILE_CHUNK_BYTES);
        const { bytesRead } = await file.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) break;
        while (sent - acked >= FILE_WINDOW) {
          await this.next(Kind.fileAck);
          acked += FILE_ACK_EVERY;
        }
        this.portal.put(withKind(Kind.fileChunk, chunk.subarray(0, bytesRead)));
        sent++;
        onChunk(bytesRead);
      }
    } finally {
      await file.close();
    }
    const digest = this.next(Kind.fileDigest);
    this.portal.put(withKind(Kind.fileEnd));
    return textOf(await digest);
  }

  private put(data: Uint8Array, report: StreamReport, handles: Box[] = []) {
    this.portal.put(data, handles);
    report.parcelsSent++;
    report.bytesSent += data.length;
    this.sentParcels++;
  }

  private async sendRegion(
    size: number,
    seed: number,
    report: StreamReport,
  ): Promise<void> {
    const memory = await firstValueFrom(this.node.allocateSharedMemory(size));
    const bytes = memory.map().subarray(0, size);
    fillPattern(bytes, seed);
    const digest = createHash('sha256').update(bytes).digest('hex');
    const body = encoder.encode(`${size} ${digest}`);
    this.put(withKind(Kind.region, body), report, [this.node.box(memory)]);
    report.bytesSent += size;
  }

  private next(kind: number): Promise<Uint8Array> {
    return new Promise((resolve) => {
      const list = this.waiters.get(kind) ?? [];
      list.push(resolve);
      this.waiters.set(kind, list);
    });
  }

  private resolveWaiter(kind: number, data: Uint8Array): void {
    this.waiters.get(kind)?.shift()?.(data);
  }

  private onParcel(parcel: Parcel): void {
    const data = parcel.data;
    switch (data[0]) {
      case Kind.ping:
        this.portal.put(withKind(Kind.pong));
        break;
      case Kind.data:
        this.received.parcels++;
        this.received.bytes += data.length;
        break;
      case Kind.region:
        this.checkRegion(parcel);
        break;
      case Kind.fileChunk:
        this.fileHash.update(data.subarray(1));
        this.fileChunks++;
        if (this.fileChunks % FILE_ACK_EVERY === 0) {
          this.portal.put(withKind(Kind.fileAck));
        }
        break;
      case Kind.fileEnd: {
        const digest = this.fileHash.digest('hex');
        this.fileHash = createHash('sha256');
        this.fileChunks = 0;
        this.portal.put(withKind(Kind.fileDigest, encoder.encode(digest)));
        break;
      }
      case Kind.flush:
        this.portal.put(
          withKind(Kind.flushed, encoder.encode(JSON.stringify(this.received))),
        );
        break;
      case Kind.pong:
      case Kind.flushed:
      case Kind.fileDigest:
      case Kind.fileAck:
        this.resolveWaiter(data[0], data);
        break;
      default:
        parcel.reject(`unknown demo parcel kind ${data[0]}`);
    }
  }

  private checkRegion(parcel: Parcel): void {
    const [sizeText, expected] = textOf(parcel.data).split(' ');
    const size = Number(sizeText);
    const memory = (parcel.handles[0] as Box | undefined)?.unbox() as
      | SharedMemory
      | undefined;
    this.received.parcels++;
    this.received.regions++;
    if (memory === undefined || !(size <= memory.size)) {
      this.received.badRegions++;
      return;
    }
    const bytes = memory.map().subarray(0, size);
    const digest = createHash('sha256').update(bytes).digest('hex');
    if (digest !== expected) this.received.badRegions++;
    this.received.bytes += parcel.data.length + size;
  }
}
