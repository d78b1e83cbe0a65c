import { match, P } from 'ts-pattern';
import type { NodeLink } from '../link/node-link';
import { Box } from '../router/box';
import { Parcel, type ParcelObject } from '../router/parcel';
import {
  deserializeRouter,
  readParcelFragment,
  routerLinkOf,
} from '../router/remote-router-link';
import { decodeMessage } from '../wire/codec';
import {
  NULL_BUFFER_ID,
  type MessageOf,
  type NodeMessage,
} from '../wire/messages';
import {
  acceptBypassLink,
  acceptBypassPeer,
  acceptBypassPeerWithLink,
  flushRouter,
  proxyWillStop,
  stopProxying,
  stopProxyingToLocalPeer,
} from '../router/route-reduction';
import { introduce, Introductions } from './introductions';
import type { Node } from './node';

const MAX_SEQUENCE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Handles one message that arrived on an established node link. A
 * returned reason rejects the message, which drops the link.
 */
export function dispatchNodeMessage(
  node: Node,
  link: NodeLink,
  message: NodeMessage,
): void {
  // Parcels are most of the traffic; building the match chain for each
  // one cost about a sixth of a parcel's handling time in profiles.
  const rejection =
    message.type === 'AcceptParcel'
      ? acceptParcel(node, link, message)
      : handleMessage(node, link, message);
  if (rejection !== null) link.reject(rejection);
}

function handleMessage(
  node: Node,
  link: NodeLink,
  message: NodeMessage,
): string | null {
  return match(message)
    .with(
      {
        type: P.union(
          'ConnectFromBrokerToNonBroker',
          'ConnectFromNonBrokerToBroker',
          'ConnectToReferredBroker',
          'ConnectToReferredNonBroker',
          'ConnectFromBrokerToBroker',
        ),
      },
      (m) => `handshake message ${m.type} arrived on an established link`,
    )
    .with({ type: 'ReferNonBroker' }, (m) =>
      node.referrals.acceptReferral(link, m),
    )
    .with({ type: 'NonBrokerReferralAccepted' }, (m) =>
      fromBroker(link, m.type) ?? node.referrals.onAccepted(m),
    )
    .with({ type: 'NonBrokerReferralRejected' }, (m) =>
      fromBroker(link, m.type) ?? node.referrals.onRejected(m.referralId),
    )
    .with({ type: 'RequestIntroduction' }, (m) =>
      requestIntroduction(node, link, m),
    )
    .with({ type: 'AcceptIntroduction' }, (m) =>
      fromBroker(link, m.type) ??
      Introductions.of(node).accept(m),
    )
    .with({ type: 'RejectIntroduction' }, (m) =>
      fromBroker(link, m.type) ??
      Introductions.of(node).reject(m.name),
    )
    .with({ type: 'RequestIndirectIntroduction' }, () => {
      if (!node.isBroker || link.remoteType !== 'broker') {
        return 'RequestIndirectIntroduction must go from broker to broker';
      }
      // Brokers reach each other's nodes by asking every other broker for
      // an introduction (see requestIntroduction), so this node never
      // sends RequestIndirectIntroduction and ignores one that arrives.
      return null;
    })
    .with({ type: 'AddBlockBuffer' }, (m) => {
      if (m.buffer === null || m.buffer.kind !== 'memory') {
        return 'AddBlockBuffer carries no memory';
      }
      if (!link.memory.addBlockBuffer(m.id, m.blockSize, m.buffer)) {
        return (
          `AddBlockBuffer of buffer ${m.id} with ${m.blockSize}-byte blocks ` +
          'is invalid'
        );
      }
      return null;
    })
    .with({ type: 'AcceptParcel' }, (m) => acceptParcel(node, link, m))
    .with(
      { type: 'AcceptParcelDriverObjects' },
      () => 'split parcels (AcceptParcelDriverObjects) are not supported',
    )
    .with({ type: 'RouteClosed' }, (m) => {
      const binding = routerLinkOf(link, m.sublink);
      if (binding === undefined) return null;
      if (m.sequenceLength > MAX_SEQUENCE) {
        return `RouteClosed length ${m.sequenceLength} is out of range`;
      }
      return binding.router.acceptRouteClosureFrom(
        binding,
        Number(m.sequenceLength),
      );
    })
    .with({ type: 'RouteDisconnected' }, (m) => {
      const binding = routerLinkOf(link, m.sublink);
      binding?.deactivate();
      binding?.router.acceptRouteDisconnectedFrom(binding);
      return null;
    })
    .with({ type: 'SnapshotPeerQueueState' }, (m) => {
      routerLinkOf(link, m.sublink)?.router.onRemoteActivity();
      return null;
    })
    .with({ type: 'BypassPeer' }, (m) => acceptBypassPeer(link, m, node))
    .with({ type: 'AcceptBypassLink' }, (m) =>
      acceptBypassLink(link, m, node),
    )
    .with({ type: 'StopProxying' }, (m) => stopProxying(link, m))
    .with({ type: 'ProxyWillStop' }, (m) => proxyWillStop(link, m))
    .with({ type: 'BypassPeerWithLink' }, (m) =>
      acceptBypassPeerWithLink(link, m),
    )
    .with({ type: 'StopProxyingToLocalPeer' }, (m) =>
      stopProxyingToLocalPeer(link, m),
    )
    .with({ type: 'FlushRouter' }, (m) => flushRouter(link, m))
    .with({ type: 'RequestMemory' }, (m) => {
      node.serveMemoryRequest(link, m.size);
      return null;
    })
    // The link itself matches replies to its pending requests.
    .with({ type: 'ProvideMemory' }, () => null)
    .with({ type: 'RelayMessage' }, (m) => relayMessage(node, link, m))
    .with({ type: 'AcceptRelayedMessage' }, (m) =>
      acceptRelayedMessage(node, link, m),
    )
    .exhaustive();
}

function fromBroker(link: NodeLink, type: string): string | null {
  if (link.remoteType === 'broker') return null;
  return `${type} must come from a broker`;
}

/**
 * Introduces the requester to `m.name` when this broker links to it. A
 * broker asked by its own client for a node it does not know asks the
 * other brokers first (it is then introduced itself, and introduces the
 * client); a request from another broker is not passed on.
 */
function requestIntroduction(
  node: Node,
  link: NodeLink,
  m: MessageOf<'RequestIntroduction'>,
): string | null {
  if (!node.isBroker) return 'RequestIntroduction sent to a non-broker';
  const rejectRequest = () =>
    link.send({ type: 'RejectIntroduction', name: m.name });
  const target = node.getLink(m.name);
  if (target === link) {
    rejectRequest();
    return null;
  }
  if (target !== undefined) return introduce(node, link, target);
  if (link.remoteType === 'broker') {
    rejectRequest();
    return null;
  }
  Introductions.of(node)
    .establishLink(m.name)
    .subscribe({
      next: (found) => {
        if (link.isActive) introduce(node, link, found);
      },
      error: rejectRequest,
    });
  return null;
}


function acceptParcel(
  node: Node,
  link: NodeLink,
  m: MessageOf<'AcceptParcel'>,
): string | null {
  if (m.sequenceNumber > MAX_SEQUENCE) {
    return `parcel sequence number ${m.sequenceNumber} is out of range`;
  }
  const data = parcelData(link, m);
  if (data === null) {
    // The fragment's buffer is still on its way, because AddBlockBuffer
    // may be relayed through the broker. The router orders the parcel by
    // its sequence number whenever it arrives.
    waitForFragmentBuffer(node, link, m);
    return null;
  }
  if (typeof data === 'string') return data;
  const objects = deserializeObjects(node, link, m);
  if (typeof objects === 'string') return objects;

  const parcel = new Parcel(data, objects);
  parcel.sequenceNumber = Number(m.sequenceNumber);
  parcel.source = link;
  const binding = routerLinkOf(link, m.sublink);
  if (binding === undefined) {
    // The route closed while the parcel was on its way. Closing what it
    // carries lets those portals' peers see closure.
    parcel.closeObjects();
    return null;
  }
  return binding.router.acceptParcelFrom(binding, parcel);
}

function deserializeObjects(
  node: Node,
  link: NodeLink,
  m: MessageOf<'AcceptParcel'>,
): ParcelObject[] | string {
  if (m.handleTypes.length === 0 && m.driverObjects.length === 0) {
    return m.newRouters.length === 0 ? [] : 'parcel carries unused routers';
  }
  const objects: ParcelObject[] = [];
  let routers = 0;
  let boxes = 0;
  const fail = (reason: string) => {
    for (const object of objects) object.close();
    for (const object of m.driverObjects.slice(boxes)) {
      link.channel.driver.closeObject(object);
    }
    return reason;
  };
  for (const handleType of m.handleTypes) {
    if (handleType === 'portal') {
      const descriptor = m.newRouters[routers++];
      if (descriptor === undefined) return fail('parcel lacks a router');
      const router = deserializeRouter(descriptor, link, node);
      if (typeof router === 'string') return fail(router);
      objects.push(router);
    } else if (handleType === 'box') {
      const object = m.driverObjects[boxes++];
      if (object === undefined) return fail('parcel lacks a boxed object');
      objects.push(new Box(object));
    } else {
      return fail('relayed boxes (split parcels) are not supported');
    }
  }
  if (routers !== m.newRouters.length || boxes !== m.driverObjects.length) {
    return fail('parcel carries routers or objects no handle refers to');
  }
  return objects;
}

function parcelData(
  link: NodeLink,
  m: MessageOf<'AcceptParcel'>,
): Uint8Array | string | null {
  if (m.parcelFragment.bufferId === NULL_BUFFER_ID) return m.parcelData;
  if (m.parcelData.byteLength !== 0) {
    return 'parcel has both inline data and a fragment';
  }
  return readParcelFragment(link, m.parcelFragment);
}

function waitForFragmentBuffer(
  node: Node,
  link: NodeLink,
  m: MessageOf<'AcceptParcel'>,
): void {
  link.memory.waitForBuffer(m.parcelFragment.bufferId).subscribe({
    next: () => {
      if (!link.isActive) return;
      const rejection = acceptParcel(node, link, m);
      if (rejection !== null) link.reject(rejection);
    },
    error: () => {
      for (const object of m.driverObjects) {
        link.channel.driver.closeObject(object);
      }
    },
  });
}

function relayMessage(
  node: Node,
  link: NodeLink,
  m: MessageOf<'RelayMessage'>,
): string | null {
  if (!node.isBroker) return 'RelayMessage sent to a non-broker';
  const target = node.getLink(m.destination);
  if (target === undefined) {
    for (const object of m.driverObjects) {
      link.channel.driver.closeObject(object);
    }
    return null;
  }
  target.send({
    type: 'AcceptRelayedMessage',
    source: link.remoteName,
    data: m.data,
    driverObjects: m.driverObjects,
  });
  return null;
}

function acceptRelayedMessage(
  node: Node,
  link: NodeLink,
  m: MessageOf<'AcceptRelayedMessage'>,
): string | null {
  const notFromBroker = fromBroker(link, m.type);
  if (notFromBroker !== null) return notFromBroker;
  const source = node.getLink(m.source);
  const decoded = decodeMessage({ data: m.data, objects: m.driverObjects });
  if (!decoded.ok) {
    return `relayed message is invalid: ${decoded.error.reason}`;
  }
  const inner = decoded.message;
  if (inner === null) return null;
  if (inner.type !== 'AcceptParcel' && inner.type !== 'AddBlockBuffer') {
    return `${inner.type} may not be relayed`;
  }
  if (source === undefined) {
    for (const object of m.driverObjects) {
      link.channel.driver.closeObject(object);
    }
    return null;
  }
  const rejection = source.channel.deliver(inner);
  if (rejection !== null) source.reject(rejection);
  return null;
}
