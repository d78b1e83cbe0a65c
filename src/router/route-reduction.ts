import type { Observable } from 'rxjs';
import type { FragmentRef } from '../link/fragment';
import type { NodeLink } from '../link/node-link';
import { RouterLinkState } from '../link/router-link-state';
import type { FragmentDescriptor, MessageOf } from '../wire/messages';
import { NodeName } from '../wire/node-name';
import { LocalRouterLink } from './local-router-link';
import { RemoteRouterLink, routerLinkOf } from './remote-router-link';
import type { RouteEdge } from './route-edge';
import type { Router } from './router';
import type { RouterLink } from './router-link';

/**
 * Route reduction, after ipcz's proxy bypass. A proxy X sits between the
 * route's far side P and the router T that took its portal. X requests a
 * bypass, P and T get a direct central link, and the links through X
 * decay once every parcel numbered before the switch has passed.
 *
 * X locks its central link to P first, naming T's node as the only one
 * allowed to ask P for the bypass, so two proxies next to each other
 * never both start one. Parcels keep their sequence numbers, so the
 * receiving queues order what arrives over old and new links.
 */
export interface ReductionContext {
  readonly name: NodeName | null;
  /** A link to `name`: the existing one, or one made by introduction. */
  establishLink(name: NodeName): Observable<NodeLink>;
  getLink(name: NodeName): NodeLink | undefined;
}

/** Reasons a bypass message is refused; the link it came on is dropped. */
type Rejection = string | null;

/**
 * Starts a bypass of proxy `x` when its inward edge is stable and its
 * outward link is central. Called after a flush that left both edges
 * stable.
 */
export function startSelfBypass(x: Router): void {
  if (x.bridge !== null) {
    startBridgeBypass(x);
    return;
  }
  const inward = x.inward;
  const outward = x.outward;
  if (!(inward instanceof RemoteRouterLink)) return;
  if (outward === null || outward.type !== 'central') return;
  const peer = outward.localPeer();
  if (peer !== null) {
    bypassWithLocalPeer(x, peer, inward, outward);
    return;
  }
  if (!(outward instanceof RemoteRouterLink)) return;
  if (!outward.tryLockForBypass(inward.remoteNodeName)) return;
  x.bypassInProgress = true;
  x.outwardEdge.startDecay();
  x.inwardEdge.startDecay();
  inward.nodeLink.send({
    type: 'BypassPeer',
    sublink: inward.sublink,
    bypassTargetNode: outward.remoteNodeName,
    bypassTargetSublink: outward.sublink,
  });
}

/**
 * Bypasses a merged pair of routers as if they were one proxy: `a`'s
 * outward link leads to one route's far end, its bridge peer's outward
 * link to the other's. The side whose peer is on this node, if any,
 * plays the proxy's outward (P) side.
 */
function startBridgeBypass(a: Router): void {
  const b = a.bridgePeer;
  if (b === null || a.bridgeBypassStarted || b.bypassInProgress) return;
  const linkA = a.outward;
  const linkB = b.outward;
  if (linkA === null || linkB === null) return;
  if (linkA.type !== 'central' || linkB.type !== 'central') return;
  if (!a.outwardEdge.isStable || !b.outwardEdge.isStable) return;
  const peerA = linkA.localPeer();
  const peerB = linkB.localPeer();

  // The lock's source name matters only to a remote peer checking a
  // bypass request; a node without a name yet locks with the null name.
  const localName = a.registry?.name ?? NodeName.invalid;
  if (peerA !== null && peerB !== null) {
    // Both links are locked so that neither far end can be starting a
    // bypass of its own while the two are joined.
    if (!linkA.tryLockForBypass(localName)) return;
    if (!linkB.tryLockForBypass(localName)) {
      linkA.unlock();
      return;
    }
    joinLocalPeers(a, b, peerA, peerB);
    return;
  }
  // Orient the pair so that a local peer, if any, is on the P side.
  const [towardP, towardT] = peerB !== null ? [b, a] : [a, b];
  const pLink = towardP.outward as RouterLink;
  const tLink = towardT.outward;
  if (!(tLink instanceof RemoteRouterLink)) return;
  // The link toward T decays too, so it is locked first: otherwise the
  // router at its far end could start a bypass of its own through it.
  if (!tLink.tryLockForBypass(localName)) return;
  const localP = pLink.localPeer();
  if (localP !== null) {
    if (bypassWithLocalPeer(towardT, localP, tLink, pLink, towardP)) {
      a.bridgeBypassStarted = b.bridgeBypassStarted = true;
    } else {
      tLink.unlock();
    }
    return;
  }
  if (
    !(pLink instanceof RemoteRouterLink) ||
    !pLink.tryLockForBypass(tLink.remoteNodeName)
  ) {
    tLink.unlock();
    return;
  }
  a.bridgeBypassStarted = b.bridgeBypassStarted = true;
  a.bypassInProgress = b.bypassInProgress = true;
  towardP.outwardEdge.startDecay();
  towardT.outwardEdge.startDecay();
  tLink.nodeLink.send({
    type: 'BypassPeer',
    sublink: tLink.sublink,
    bypassTargetNode: pLink.remoteNodeName,
    bypassTargetSublink: pLink.sublink,
  });
}

/** Both far ends of a merged pair live here: link them directly. */
function joinLocalPeers(a: Router, b: Router, c: Router, d: Router): void {
  const sentByC = c.outbound.currentSequenceNumber;
  const sentByD = d.outbound.currentSequenceNumber;
  a.bridgeBypassStarted = b.bridgeBypassStarted = true;
  c.outwardEdge.startDecay(sentByC, sentByD);
  d.outwardEdge.startDecay(sentByD, sentByC);
  a.outwardEdge.startDecay(sentByD, sentByC);
  b.outwardEdge.startDecay(sentByC, sentByD);
  const [forC, forD] = LocalRouterLink.createPair('central', c, d, false);
  c.setOutwardLink(forC);
  d.setOutwardLink(forD);
  a.flush();
  b.flush();
}

/**
 * The edges of a proxy, or of a merged pair acting as one: `towardP`
 * leads to the router being joined directly to T, `towardT` to T.
 */
interface ProxyEdges {
  towardP: RouteEdge;
  towardT: RouteEdge;
  routers: Router[];
}

/** Edges of the proxy that received a message over `towardT`'s link. */
function edgesFromT(x: Router): ProxyEdges {
  const other = x.bridgePeer;
  if (other === null) {
    return { towardP: x.outwardEdge, towardT: x.inwardEdge, routers: [x] };
  }
  return {
    towardP: other.outwardEdge,
    towardT: x.outwardEdge,
    routers: [x, other],
  };
}

/** Edges of the proxy that received a message over `towardP`'s link. */
function edgesFromP(x: Router): ProxyEdges {
  const other = x.bridgePeer;
  if (other === null) {
    return { towardP: x.outwardEdge, towardT: x.inwardEdge, routers: [x] };
  }
  return {
    towardP: x.outwardEdge,
    towardT: other.outwardEdge,
    routers: [x, other],
  };
}

/**
 * X and P share this node: X builds the new central link from P to T
 * over its own link to T's node, so no introduction is needed. For a
 * merged pair, `xTowardP` is the half whose outward link leads to P and
 * `x` the half whose link leads to T. Returns whether it started.
 */
function bypassWithLocalPeer(
  x: Router,
  p: Router,
  inward: RemoteRouterLink,
  outward: RouterLink,
  xTowardP: Router = x,
): boolean {
  const nodeLink = inward.nodeLink;
  if (!outward.tryLockForBypass(inward.remoteNodeName)) return false;
  const ref = nodeLink.memory.tryAllocateRouterLinkState();
  if (ref === null) {
    // The allocation started growth; try again once it has finished.
    outward.unlock();
    nodeLink.memory.allocateRouterLinkState().subscribe({
      next: (grown) => {
        grown.release();
        x.flush(true);
      },
      error: () => {},
    });
    return false;
  }
  const sentByP = p.outbound.currentSequenceNumber;
  if (!p.outwardEdge.startDecay(sentByP, null)) {
    ref.release();
    outward.unlock();
    return false;
  }
  const towardT = x === xTowardP ? x.inwardEdge : x.outwardEdge;
  x.bypassInProgress = xTowardP.bypassInProgress = true;
  xTowardP.outwardEdge.startDecay(null, sentByP);
  towardT.startDecay(sentByP, null);

  const newSublink = nodeLink.memory.allocateSublinkIds(1);
  const descriptor = descriptorOf(ref);
  ref.clone(); // The reference the descriptor hands to T.
  const link = new RemoteRouterLink(
    nodeLink,
    newSublink,
    'central',
    'A',
    p,
    stateOf(ref),
    ref,
  );
  p.adoptOutwardLink(link);
  nodeLink.send({
    type: 'BypassPeerWithLink',
    sublink: inward.sublink,
    newSublink,
    newLinkStateFragment: descriptor,
    inboundSequenceLength: BigInt(sentByP),
  });
  p.flush(true);
  x.flush();
  xTowardP.flush();
  return true;
}

/** T's side of BypassPeerWithLink: adopt the link X built to P. */
export function acceptBypassPeerWithLink(
  link: NodeLink,
  m: MessageOf<'BypassPeerWithLink'>,
): Rejection {
  const binding = routerLinkOf(link, m.sublink);
  const t = binding?.router;
  if (t === undefined || t.outward !== binding) {
    // The route closed meanwhile: drop the reference the offer carried,
    // or the state's block would never be freed.
    releaseOfferedState(link, m.newLinkStateFragment);
    return binding === undefined
      ? null
      : 'BypassPeerWithLink arrived on a link that is not outward';
  }
  const state = adoptState(link, m.newLinkStateFragment);
  if (typeof state === 'string') return state;
  if (state === null) {
    return waitForStateBuffer(link, m.newLinkStateFragment, () =>
      acceptBypassPeerWithLink(link, m),
    );
  }
  const sentByT = t.outbound.currentSequenceNumber;
  const sentByP = Number(m.inboundSequenceLength);
  if (!t.outwardEdge.startDecay(sentByT, sentByP)) {
    state.ref.release();
    return 'BypassPeerWithLink arrived while a link was decaying';
  }
  const newLink = new RemoteRouterLink(
    link,
    m.newSublink,
    'central',
    'B',
    t,
    state.state,
    state.ref,
  );
  link.send({
    type: 'StopProxyingToLocalPeer',
    sublink: binding.sublink,
    outboundSequenceLength: BigInt(sentByT),
  });
  t.setOutwardLink(newLink);
  return null;
}

/** Handles StopProxyingToLocalPeer at X: T's count of parcels via X. */
export function stopProxyingToLocalPeer(
  link: NodeLink,
  m: MessageOf<'StopProxyingToLocalPeer'>,
): Rejection {
  const binding = routerLinkOf(link, m.sublink);
  if (binding === undefined) return null;
  const edges = edgesFromT(binding.router);
  const p = edges.towardP.decaying?.localPeer() ?? null;
  if (edges.towardT.decaying !== binding || p === null) {
    return 'StopProxyingToLocalPeer arrived at a router that is not bypassed';
  }
  const sentByT = Number(m.outboundSequenceLength);
  p.outwardEdge.lengthFromDecaying = sentByT;
  edges.towardP.lengthToDecaying = sentByT;
  edges.towardT.lengthFromDecaying = sentByT;
  for (const router of edges.routers) router.bypassInProgress = false;
  for (const router of edges.routers) router.flush();
  p.flush();
  return null;
}

/**
 * T's side of BypassPeer: link to P's node (introduced if needed), make a
 * new central link to P and tell P with AcceptBypassLink.
 */
export function acceptBypassPeer(
  link: NodeLink,
  m: MessageOf<'BypassPeer'>,
  context: ReductionContext,
): Rejection {
  const binding = routerLinkOf(link, m.sublink);
  if (binding === undefined) return null;
  const t = binding.router;
  if (t.outward !== binding) return null;
  if (!t.outwardEdge.isStable) {
    t.deferUntilStable(() => acceptBypassPeer(link, m, context));
    return null;
  }
  if (context.name !== null && m.bypassTargetNode.equals(context.name)) {
    return bypassToLocalPeer(link, binding, m.bypassTargetSublink);
  }
  context.establishLink(m.bypassTargetNode).subscribe({
    next: (toP) => linkToRemotePeer(link, binding, toP, m.bypassTargetSublink),
    error: () => t.acceptRouteDisconnectedFrom(null),
  });
  return null;
}

/** P lives on T's node: join them with a local central link. */
function bypassToLocalPeer(
  link: NodeLink,
  tBinding: RemoteRouterLink,
  targetSublink: bigint,
): Rejection {
  const pBinding = routerLinkOf(link, targetSublink);
  if (pBinding === undefined) return null;
  const t = tBinding.router;
  const p = pBinding.router;
  if (p.outward !== pBinding || !p.outwardEdge.isStable) {
    return 'BypassPeer names a router that is not the proxy\'s peer';
  }
  const sentByT = t.outbound.currentSequenceNumber;
  const sentByP = p.outbound.currentSequenceNumber;
  t.outwardEdge.startDecay(sentByT, sentByP);
  p.outwardEdge.startDecay(sentByP, sentByT);
  const [forP, forT] = LocalRouterLink.createPair('central', p, t, false);
  link.send({
    type: 'StopProxying',
    sublink: pBinding.sublink,
    inboundSequenceLength: BigInt(sentByP),
    outboundSequenceLength: BigInt(sentByT),
  });
  p.setOutwardLink(forP);
  t.setOutwardLink(forT);
  return null;
}

function linkToRemotePeer(
  toX: NodeLink,
  binding: RemoteRouterLink,
  toP: NodeLink,
  targetSublink: bigint,
): void {
  const t = binding.router;
  if (t.outward !== binding || !t.outwardEdge.isStable) return;
  const ref = toP.memory.tryAllocateRouterLinkState();
  if (ref === null) {
    toP.memory.allocateRouterLinkState().subscribe({
      next: (grown) => {
        grown.release();
        linkToRemotePeer(toX, binding, toP, targetSublink);
      },
      error: () => t.acceptRouteDisconnectedFrom(null),
    });
    return;
  }
  const sentByT = t.outbound.currentSequenceNumber;
  t.outwardEdge.startDecay(sentByT, null);
  const newSublink = toP.memory.allocateSublinkIds(1);
  const descriptor = descriptorOf(ref);
  ref.clone(); // The reference the descriptor hands to P.
  const newLink = new RemoteRouterLink(
    toP,
    newSublink,
    'central',
    'A',
    t,
    stateOf(ref),
    ref,
  );
  // T adopts the link before P replies, because under the sync driver
  // P's ProxyWillStop arrives inside this send. T flushes only after the
  // message introducing the sublink is on its way.
  t.adoptOutwardLink(newLink);
  toP.send({
    type: 'AcceptBypassLink',
    currentPeerNode: toX.remoteName,
    currentPeerSublink: targetSublink,
    inboundSequenceLengthFromBypassedLink: BigInt(sentByT),
    newSublink,
    newLinkStateFragment: descriptor,
  });
  t.flush(true);
}

/** P's side: T offers a direct link in place of the one through X. */
export function acceptBypassLink(
  link: NodeLink,
  m: MessageOf<'AcceptBypassLink'>,
  context: ReductionContext,
): Rejection {
  const toX = context.getLink(m.currentPeerNode);
  const binding =
    toX === undefined ? undefined : routerLinkOf(toX, m.currentPeerSublink);
  if (toX === undefined || binding === undefined) {
    // The route closed meanwhile; free the offered state's reference.
    releaseOfferedState(link, m.newLinkStateFragment);
    return null;
  }
  const p = binding.router;
  if (p.outward !== binding || binding.type !== 'central') {
    releaseOfferedState(link, m.newLinkStateFragment);
    return 'AcceptBypassLink names a link that is not central';
  }
  if (toX !== link && !binding.canNodeRequestBypass(link.remoteName)) {
    return `node ${link.remoteName} may not ask for this bypass`;
  }
  if (!p.outwardEdge.isStable) {
    p.deferUntilStable(() => {
      const rejection = acceptBypassLink(link, m, context);
      if (rejection !== null) link.reject(rejection);
    });
    return null;
  }
  const state = adoptState(link, m.newLinkStateFragment);
  if (typeof state === 'string') return state;
  if (state === null) {
    return waitForStateBuffer(link, m.newLinkStateFragment, () =>
      acceptBypassLink(link, m, context),
    );
  }
  const sentByP = p.outbound.currentSequenceNumber;
  const sentByT = Number(m.inboundSequenceLengthFromBypassedLink);
  p.outwardEdge.startDecay(sentByP, sentByT);
  const newLink = new RemoteRouterLink(
    link,
    m.newSublink,
    'central',
    'B',
    p,
    state.state,
    state.ref,
  );
  toX.send({
    type: 'StopProxying',
    sublink: binding.sublink,
    inboundSequenceLength: BigInt(sentByP),
    outboundSequenceLength: BigInt(sentByT),
  });
  link.send({
    type: 'ProxyWillStop',
    sublink: m.newSublink,
    inboundSequenceLength: BigInt(sentByP),
  });
  p.setOutwardLink(newLink);
  return null;
}

/** Handles StopProxying at X: sets where traffic switches links. */
export function stopProxying(
  link: NodeLink,
  m: MessageOf<'StopProxying'>,
): Rejection {
  const binding = routerLinkOf(link, m.sublink);
  if (binding === undefined) return null;
  const edges = edgesFromP(binding.router);
  if (edges.towardP.decaying !== binding || edges.towardT.decaying === null) {
    return 'StopProxying arrived at a router that is not being bypassed';
  }
  const sentByP = Number(m.inboundSequenceLength);
  const sentByT = Number(m.outboundSequenceLength);
  edges.towardT.lengthToDecaying = sentByP;
  edges.towardT.lengthFromDecaying = sentByT;
  edges.towardP.lengthToDecaying = sentByT;
  edges.towardP.lengthFromDecaying = sentByP;
  for (const router of edges.routers) router.bypassInProgress = false;
  for (const router of edges.routers) router.flush();
  return null;
}

/** Handles ProxyWillStop at T: P's count of parcels still sent via X. */
export function proxyWillStop(
  link: NodeLink,
  m: MessageOf<'ProxyWillStop'>,
): Rejection {
  const binding = routerLinkOf(link, m.sublink);
  if (binding === undefined) return null;
  const t = binding.router;
  if (t.outward !== binding || t.outwardEdge.decaying === null) {
    return 'ProxyWillStop arrived at a router that is not bypassing';
  }
  t.outwardEdge.lengthFromDecaying = Number(m.inboundSequenceLength);
  t.flush();
  return null;
}

/** Handles FlushRouter: retries a bypass that waited for stability. */
export function flushRouter(
  link: NodeLink,
  m: MessageOf<'FlushRouter'>,
): Rejection {
  routerLinkOf(link, m.sublink)?.router.flush(true);
  return null;
}


function descriptorOf(ref: FragmentRef): FragmentDescriptor {
  return ref.fragment.descriptor;
}

function stateOf(ref: FragmentRef): RouterLinkState {
  return new RouterLinkState(ref.fragment.bytes as Uint8Array);
}

/**
 * Maps the RouterLinkState the peer allocated. Returns null while its
 * buffer has not arrived, and a reason when the descriptor is invalid.
 */
function adoptState(
  link: NodeLink,
  descriptor: FragmentDescriptor,
): { state: RouterLinkState; ref: FragmentRef } | string | null {
  const fragment = link.memory.getFragment(descriptor);
  if (fragment.isPending()) return null;
  if (fragment.isNull() || fragment.bytes === null) {
    return 'link state fragment is null or out of bounds';
  }
  if (fragment.size < 64 || fragment.offset % 8 !== 0) {
    return `link state fragment of ${fragment.size} bytes is invalid`;
  }
  const ref = link.memory.adoptFragmentRef(fragment);
  return { state: new RouterLinkState(fragment.bytes), ref };
}

/**
 * Drops the reference to a RouterLinkState that a bypass offer handed
 * over, when the offer is not taken.
 */
function releaseOfferedState(
  link: NodeLink,
  descriptor: FragmentDescriptor,
): void {
  const state = adoptState(link, descriptor);
  if (state === null) {
    waitForStateBuffer(link, descriptor, () => {
      releaseOfferedState(link, descriptor);
      return null;
    });
    return;
  }
  if (typeof state !== 'string') state.ref.release();
}

function waitForStateBuffer(
  link: NodeLink,
  descriptor: FragmentDescriptor,
  retry: () => Rejection,
): Rejection {
  link.memory.waitForBuffer(descriptor.bufferId).subscribe({
    next: () => {
      const rejection = retry();
      if (rejection !== null) link.reject(rejection);
    },
    error: () => {},
  });
  return null;
}
