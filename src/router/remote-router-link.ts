import type { DriverObject } from '../drivers/driver';
import type { NodeLink, SublinkBinding } from '../link/node-link';
import type { FragmentRef } from '../link/fragment';
import type { RouterLinkState } from '../link/router-link-state';
import { MAX_FRAGMENT_SIZE } from '../link/node-link-memory';
import {
  NULL_BUFFER_ID,
  type FragmentDescriptor,
  type HandleType,
  type RouterDescriptor,
} from '../wire/messages';
import { NodeName } from '../wire/node-name';
import { Box } from './box';
import type { Parcel } from './parcel';
import { Router, type RouterRegistry } from './router';
import {
  oppositeSide,
  type LinkSide,
  type LinkType,
  type QueueState,
  type RouterLink,
} from './router-link';

export const NULL_FRAGMENT = { bufferId: NULL_BUFFER_ID, offset: 0, size: 0 };

const EMPTY = new Uint8Array(0);

/** Bytes before the data in a parcel fragment: u32 size, u32 reserved. */
export const PARCEL_FRAGMENT_HEADER_SIZE = 8;

/**
 * Copies parcel data into a block of the link's shared memory and returns
 * its descriptor, or null to send the data inline (empty data, data over
 * the largest block, or no free block: the allocation then also starts
 * growth, which later parcels benefit from). The size is stored last,
 * with a release store, so a reader that sees it also sees the data.
 */
function writeParcelFragment(
  nodeLink: NodeLink,
  data: Uint8Array,
): FragmentDescriptor | null {
  if (data.byteLength < 4096) return null;
  const total = data.byteLength + PARCEL_FRAGMENT_HEADER_SIZE;
  if (total > MAX_FRAGMENT_SIZE) return null;
  const fragment = nodeLink.memory.allocateFragment(total);
  const bytes = fragment.bytes;
  if (bytes === null || fragment.isNull()) return null;
  bytes.set(data, PARCEL_FRAGMENT_HEADER_SIZE);
  const header = new Int32Array(bytes.buffer, bytes.byteOffset, 2);
  Atomics.store(header, 0, data.byteLength);
  return fragment.descriptor;
}

/**
 * Copies parcel data out of a fragment the peer wrote, then frees the
 * block. Returns a reason when the fragment or its size is invalid, and
 * null when its buffer has not arrived yet.
 */
export function readParcelFragment(
  nodeLink: NodeLink,
  descriptor: FragmentDescriptor,
): Uint8Array | string | null {
  const fragment = nodeLink.memory.getFragment(descriptor);
  if (fragment.isPending()) return null;
  const bytes = fragment.bytes;
  if (fragment.isNull() || bytes === null) {
    return `parcel fragment in buffer ${descriptor.bufferId} is invalid`;
  }
  if (
    bytes.byteOffset % 4 !== 0 ||
    bytes.byteLength < PARCEL_FRAGMENT_HEADER_SIZE
  ) {
    return 'parcel fragment is misaligned or too small';
  }
  const header = new Int32Array(bytes.buffer, bytes.byteOffset, 2);
  const size = Atomics.load(header, 0);
  if (size < 0 || size > bytes.byteLength - PARCEL_FRAGMENT_HEADER_SIZE) {
    return `parcel fragment declares ${size} bytes in a ` +
      `${bytes.byteLength}-byte block`;
  }
  // A copy into ordinary memory: slicing the shared buffer directly is
  // several times slower, and the block is freed at once.
  const data = new Uint8Array(size);
  data.set(
    bytes.subarray(
      PARCEL_FRAGMENT_HEADER_SIZE,
      PARCEL_FRAGMENT_HEADER_SIZE + size,
    ),
  );
  nodeLink.memory.freeFragment(fragment);
  return data;
}

/**
 * A link from a router on this node to a router on another node: one
 * sublink of a node link. Central links carry a RouterLinkState in the
 * node link's shared memory for queue state; peripheral links have none.
 */
export class RemoteRouterLink implements RouterLink, SublinkBinding {
  private active = true;

  constructor(
    readonly nodeLink: NodeLink,
    readonly sublink: bigint,
    readonly type: LinkType,
    readonly side: LinkSide,
    readonly router: Router,
    private state: RouterLinkState | null,
    /** Holds one reference on the state's fragment, released with the link. */
    private stateRef: FragmentRef | null = null,
  ) {
    nodeLink.bindSublink(sublink, this);
  }

  /** The node at the other end of the link. */
  get remoteNodeName(): NodeName {
    return this.nodeLink.remoteName;
  }

  localPeer(): null {
    return null;
  }

  acceptParcel(parcel: Parcel): void {
    if (!this.active) {
      parcel.closeObjects();
      return;
    }
    const handleTypes: HandleType[] = [];
    const newRouters: RouterDescriptor[] = [];
    const driverObjects: DriverObject[] = [];
    const moved: Router[] = [];
    for (const object of parcel.objects) {
      if (object instanceof Router) {
        const descriptor = serializeRouter(object, this.nodeLink);
        handleTypes.push('portal');
        newRouters.push(descriptor);
        moved.push(object);
      } else {
        handleTypes.push('box');
        driverObjects.push(object.takeObject());
      }
    }
    parcel.objects = [];
    const fragment = writeParcelFragment(this.nodeLink, parcel.data);
    this.nodeLink.send({
      type: 'AcceptParcel',
      sublink: this.sublink,
      sequenceNumber: BigInt(parcel.sequenceNumber),
      parcelData: fragment === null ? parcel.data : EMPTY,
      parcelFragment: fragment ?? NULL_FRAGMENT,
      handleTypes,
      newRouters,
      driverObjects,
    });
    // Each moved router adopts its new inward link only now that the
    // message introducing the sublink is on its way.
    for (const router of moved) beginProxying(router);
  }

  acceptRouteClosure(sequenceLength: number): void {
    if (!this.active) return;
    this.nodeLink.send({
      type: 'RouteClosed',
      sublink: this.sublink,
      sequenceLength: BigInt(sequenceLength),
    });
  }

  acceptRouteDisconnected(): void {
    if (!this.active) return;
    this.nodeLink.send({ type: 'RouteDisconnected', sublink: this.sublink });
  }

  updateQueueState(state: QueueState): boolean {
    if (this.state === null) return false;
    return this.state.updateQueueState(
      this.side,
      BigInt(state.parcels),
      BigInt(state.bytes),
    );
  }

  readPeerQueueState(): QueueState | null {
    if (this.state === null) return null;
    const peer = this.state.readQueueState(oppositeSide(this.side));
    return {
      parcels: Number(peer.numParcelsConsumed),
      bytes: Number(peer.numBytesConsumed),
    };
  }

  setMonitoring(enabled: boolean): void {
    this.state?.setMonitoring(oppositeSide(this.side), enabled);
  }

  snapshotPeer(): void {
    if (!this.active) return;
    this.nodeLink.send({
      type: 'SnapshotPeerQueueState',
      sublink: this.sublink,
    });
  }

  markSideStable(): void {
    this.state?.setSideStable(this.side);
  }

  tryLockForBypass(source: NodeName): boolean {
    return this.state?.tryLockForBypass(this.side, source) ?? false;
  }

  unlock(): void {
    this.state?.unlock(this.side);
  }

  canNodeRequestBypass(source: NodeName): boolean {
    return this.state?.canNodeRequestBypass(this.side, source) ?? false;
  }

  flushOtherSideIfWaiting(): void {
    const state = this.state;
    if (!this.active || state === null) return;
    if (state.resetWaitingBit(oppositeSide(this.side))) {
      this.nodeLink.send({ type: 'FlushRouter', sublink: this.sublink });
    }
  }

  deactivate(): void {
    if (!this.active) return;
    this.active = false;
    this.nodeLink.unbindSublink(this.sublink, this);
    this.stateRef?.release();
    this.stateRef = null;
  }

  onNodeLinkLost(): void {
    if (!this.active) return;
    this.active = false;
    this.stateRef?.release();
    this.stateRef = null;
    this.router.acceptRouteDisconnectedFrom(this);
  }

  describe(): string {
    return (
      `remote ${this.type} link (side ${this.side}) on sublink ` +
      `${this.sublink} to node ${this.nodeLink.remoteName}`
    );
  }
}

/** Returns the remote router link bound to `sublink` of `link`, if any. */
export function routerLinkOf(
  link: NodeLink,
  sublink: bigint,
): RemoteRouterLink | undefined {
  const binding = link.getSublink(sublink);
  return binding instanceof RemoteRouterLink ? binding : undefined;
}

/**
 * Describes a router that is leaving this node in a parcel, and turns it
 * into a proxy-to-be: its queues stay where they are, and the descriptor
 * gives the new router where the sequences continue.
 */
function serializeRouter(router: Router, nodeLink: NodeLink): RouterDescriptor {
  const newSublink = nodeLink.memory.allocateSublinkIds(1);
  const finalInbound = router.inbound.finalSequenceLength;
  router.markMovedAway();
  // The proxy listens on the new sublink before the descriptor goes out,
  // so that the new router may send as soon as it exists.
  const inwardLink = new RemoteRouterLink(
    nodeLink,
    newSublink,
    'peripheral-inward',
    'A',
    router,
    null,
  );
  pendingInwardLinks.set(router, inwardLink);
  return {
    closedPeerSequenceLength: BigInt(finalInbound ?? 0),
    newSublink,
    newLinkStateFragment: NULL_FRAGMENT,
    newDecayingSublink: 0n,
    nextOutgoingSequenceNumber: BigInt(router.outbound.currentSequenceLength),
    numBytesProduced: BigInt(router.totalBytesProduced),
    nextIncomingSequenceNumber: BigInt(router.inbound.currentSequenceNumber),
    decayingIncomingSequenceLength: 0n,
    numBytesConsumed: BigInt(router.totalBytesConsumed),
    peerClosed: finalInbound !== null,
    proxyAlreadyBypassed: false,
    proxyPeerNodeName: NodeName.invalid,
    proxyPeerSublink: 0n,
  };
}

const pendingInwardLinks = new WeakMap<Router, RemoteRouterLink>();

function beginProxying(router: Router): void {
  const link = pendingInwardLinks.get(router);
  pendingInwardLinks.delete(router);
  if (link !== undefined) router.beginProxying(link);
}

/** Largest sequence number or length a router accepts from a peer. */
const MAX_SEQUENCE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Builds the router for a portal that arrived in a parcel over `nodeLink`.
 * Returns a reason when the descriptor is invalid.
 */
export function deserializeRouter(
  descriptor: RouterDescriptor,
  nodeLink: NodeLink,
  registry: RouterRegistry | null,
): Router | string {
  const next = descriptor.nextIncomingSequenceNumber;
  const outgoing = descriptor.nextOutgoingSequenceNumber;
  if (next > MAX_SEQUENCE || outgoing > MAX_SEQUENCE) {
    return 'router descriptor sequence number out of range';
  }
  if (nodeLink.getSublink(descriptor.newSublink) !== undefined) {
    return `router descriptor names sublink ${descriptor.newSublink}, ` +
      'which is already in use';
  }
  const router = new Router(registry);
  router.resetQueues(Number(next), Number(outgoing));
  router.restoreByteCounts(
    Number(descriptor.numBytesProduced),
    Number(descriptor.numBytesConsumed),
  );
  if (descriptor.peerClosed) {
    const length = descriptor.closedPeerSequenceLength;
    if (
      length > MAX_SEQUENCE ||
      !router.inbound.setFinalSequenceLength(Number(length))
    ) {
      router.close();
      return `invalid closed peer sequence length ${length}`;
    }
  }
  const link = new RemoteRouterLink(
    nodeLink,
    descriptor.newSublink,
    'peripheral-outward',
    'B',
    router,
    null,
  );
  router.setOutwardLink(link);
  return router;
}

/** Wraps a driver object that arrived in a parcel. */
export function boxFor(object: DriverObject): Box {
  return new Box(object);
}
