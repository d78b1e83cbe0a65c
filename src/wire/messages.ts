/**
 * The node message table: every message two ipcz nodes exchange on a node
 * link, with ipcz's names and ids (protocol version 0 of ipcz's
 * `node_messages_generator.h`). The codec, the `NodeMessage` union and
 * the field types all derive from this one table.
 *
 * Field names are ipcz's names in camelCase. Params are laid out in field
 * order, each field at its natural alignment (8 for node names and
 * structs), which gives RouterDescriptor ipcz's offsets and size.
 *
 * NOTE: byte compatibility with upstream ipcz's other params structs is
 * assumed from that rule, not checked against ipcz's own bytes.
 */

import {
  arrayOf,
  driverObject,
  driverObjectArray,
  enumU32,
  enumU8,
  field,
  flags,
  message,
  nodeName,
  reserved,
  struct,
  u32,
  u64,
  u8,
  type FieldsObject,
  type MessageSpec,
  type ValueOf,
} from './types';

/** Side of a node link: the two ends of a link hold opposite sides. */
export const linkSideType = enumU8(['A', 'B']);
export type LinkSide = ValueOf<typeof linkSideType>;

/** The role of a node. */
export const nodeTypeType = enumU8(['broker', 'normal']);
export type NodeType = ValueOf<typeof nodeTypeType>;

/**
 * Kind of each object attached to a parcel: a portal takes the next router
 * descriptor, a box the next driver object, and a relayed box marks an
 * object sent apart in AcceptParcelDriverObjects.
 */
export const handleTypeType = enumU32(['portal', 'box', 'relayedBox']);
export type HandleType = ValueOf<typeof handleTypeType>;

/** The buffer id that marks a null fragment descriptor: 2^64 - 1. */
export const NULL_BUFFER_ID = 0xffff_ffff_ffff_ffffn;

/** A span of a link memory buffer. */
export const fragmentDescriptorType = struct('FragmentDescriptor', [
  field('bufferId', u64),
  field('offset', u32),
  field('size', u32),
]);
export type FragmentDescriptor = ValueOf<typeof fragmentDescriptorType>;

/** The wire form of a router that moves with a parcel (112 bytes). */
export const routerDescriptorType = struct('RouterDescriptor', [
  field('closedPeerSequenceLength', u64),
  field('newSublink', u64),
  field('newLinkStateFragment', fragmentDescriptorType),
  field('newDecayingSublink', u64),
  field('nextOutgoingSequenceNumber', u64),
  field('numBytesProduced', u64),
  field('nextIncomingSequenceNumber', u64),
  field('decayingIncomingSequenceLength', u64),
  field('numBytesConsumed', u64),
  field('flags', flags(['peerClosed', 'proxyAlreadyBypassed'])),
  field('proxyPeerNodeName', nodeName),
  field('proxyPeerSublink', u64),
]);
export type RouterDescriptor = ValueOf<typeof routerDescriptorType>;

const buffer = driverObject({ required: true });
const transport = driverObject({ required: true });

/**
 * Bits of the `flags` field added in version 1 of
 * ConnectFromNonBrokerToBroker and ConnectToReferredBroker.
 */
export const ConnectFlags = {
  /** The sender chose the receiver as its allocation delegate. */
  allocationDelegate: 1,
} as const;

/** All node messages, each with its sender, its occasion and its reply. */
export const nodeMessages = [
  // Broker to a new non-broker at connect, naming it. No reply.
  message('ConnectFromBrokerToNonBroker', 0, 0, [
    field('brokerName', nodeName),
    field('receiverName', nodeName),
    field('protocolVersion', u32),
    field('numInitialPortals', u32),
    field('buffer', buffer),
  ]),
  // Non-broker to its broker at connect, sent independently. No reply.
  message('ConnectFromNonBrokerToBroker', 1, 1, [
    field('protocolVersion', u32),
    field('numInitialPortals', u32),
    field('flags', u32, 1),
  ]),
  // Non-broker to its broker to refer a node. Reply: NonBrokerReferral*.
  message('ReferNonBroker', 2, 0, [
    field('referralId', u64),
    field('numInitialPortals', u32),
    field('transport', transport),
  ]),
  // Referred node to the broker. Reply: ConnectToReferredNonBroker.
  message('ConnectToReferredBroker', 3, 1, [
    field('protocolVersion', u32),
    field('numInitialPortals', u32),
    field('flags', u32, 1),
  ]),
  // Broker to a referred node, before telling the referrer. No reply.
  message('ConnectToReferredNonBroker', 4, 0, [
    field('name', nodeName),
    field('brokerName', nodeName),
    field('referrerName', nodeName),
    field('brokerProtocolVersion', u32),
    field('referrerProtocolVersion', u32),
    field('numInitialPortals', u32),
    field('brokerLinkBuffer', buffer),
    field('referrerLinkTransport', transport),
    field('referrerLinkBuffer', buffer),
  ]),
  // Broker to the referrer once the referred node is linked. No reply.
  message('NonBrokerReferralAccepted', 5, 0, [
    field('referralId', u64),
    field('protocolVersion', u32),
    field('numInitialPortals', u32),
    field('name', nodeName),
    field('transport', driverObject({ required: false })),
    field('buffer', driverObject({ required: false })),
  ]),
  // Broker to the referrer when the referral failed. No reply.
  message('NonBrokerReferralRejected', 6, 0, [field('referralId', u64)]),
  // Each broker to the other at a broker-to-broker connect. No reply.
  message('ConnectFromBrokerToBroker', 7, 0, [
    field('name', nodeName),
    field('protocolVersion', u32),
    field('numInitialPortals', u32),
    field('buffer', buffer),
  ]),
  // Node to a broker for a link. Reply: Accept or RejectIntroduction.
  message('RequestIntroduction', 10, 0, [field('name', nodeName)]),
  // Broker to both nodes it introduces, one transport end each. No reply.
  message('AcceptIntroduction', 11, 0, [
    field('name', nodeName),
    field('linkSide', linkSideType),
    field('remoteNodeType', nodeTypeType),
    field('remoteProtocolVersion', u32),
    field('transport', transport),
    field('memory', buffer),
  ]),
  // Broker to a node whose RequestIntroduction failed. No reply.
  message('RejectIntroduction', 12, 0, [field('name', nodeName)]),
  // Broker to the target's broker. Reply: AcceptIntroduction to both.
  message('RequestIndirectIntroduction', 13, 0, [
    field('sourceNode', nodeName),
    field('targetNode', nodeName),
  ]),
  // Either end (maybe relayed) sharing a link memory buffer. No reply.
  message('AddBlockBuffer', 14, 0, [
    field('id', u64),
    field('blockSize', u32),
    field('buffer', buffer),
  ]),
  // Router to the next router on a route, carrying a parcel. No reply.
  message('AcceptParcel', 20, 0, [
    field('sublink', u64),
    field('sequenceNumber', u64),
    field('parcelData', arrayOf(u8)),
    field('parcelFragment', fragmentDescriptorType),
    field('handleTypes', arrayOf(handleTypeType)),
    field('newRouters', arrayOf(routerDescriptorType)),
    field('driverObjects', driverObjectArray),
  ]),
  // Relayed by the broker: objects of a split AcceptParcel. No reply.
  message('AcceptParcelDriverObjects', 21, 0, [
    field('sublink', u64),
    field('sequenceNumber', u64),
    field('driverObjects', driverObjectArray),
  ]),
  // Toward the other side once one side closed. No reply.
  message('RouteClosed', 22, 0, [
    field('sublink', u64),
    field('sequenceLength', u64),
  ]),
  // Along every link of a router that lost its route. No reply.
  message('RouteDisconnected', 23, 0, [field('sublink', u64)]),
  // Router to a central peer that watches its queue state. No reply.
  message('SnapshotPeerQueueState', 24, 0, [field('sublink', u64)]),
  // Proxy to its inward peer, which then sends AcceptBypassLink.
  message('BypassPeer', 30, 0, [
    field('sublink', u64),
    field('reserved0', reserved(8)),
    field('bypassTargetNode', nodeName),
    field('bypassTargetSublink', u64),
  ]),
  // Inward peer to the proxy's peer. Reply: StopProxying, ProxyWillStop.
  message('AcceptBypassLink', 31, 0, [
    field('currentPeerNode', nodeName),
    field('currentPeerSublink', u64),
    field('inboundSequenceLengthFromBypassedLink', u64),
    field('newSublink', u64),
    field('newLinkStateFragment', fragmentDescriptorType),
  ]),
  // Bypassing router to the proxy, with final lengths. No reply.
  message('StopProxying', 32, 0, [
    field('sublink', u64),
    field('inboundSequenceLength', u64),
    field('outboundSequenceLength', u64),
  ]),
  // Bypassing router to the proxy's inward peer. No reply.
  message('ProxyWillStop', 33, 0, [
    field('sublink', u64),
    field('inboundSequenceLength', u64),
  ]),
  // Proxy whose outward peer is local. Reply: StopProxyingToLocalPeer.
  message('BypassPeerWithLink', 34, 0, [
    field('sublink', u64),
    field('newSublink', u64),
    field('newLinkStateFragment', fragmentDescriptorType),
    field('inboundSequenceLength', u64),
  ]),
  // Inward peer to the proxy on BypassPeerWithLink. No reply.
  message('StopProxyingToLocalPeer', 35, 0, [
    field('sublink', u64),
    field('outboundSequenceLength', u64),
  ]),
  // To a router whose bypass lock attempt waits on our side. No reply.
  message('FlushRouter', 36, 0, [field('sublink', u64)]),
  // Node to its allocation delegate. Reply: ProvideMemory, same size.
  message('RequestMemory', 64, 0, [field('size', u32)]),
  // Allocation delegate on RequestMemory, null buffer if it failed. No reply.
  message('ProvideMemory', 65, 0, [
    field('size', u32),
    field('buffer', driverObject({ required: false })),
  ]),
  // Node to its broker for objects that cannot go direct. No reply.
  message('RelayMessage', 66, 0, [
    field('destination', nodeName),
    field('data', arrayOf(u8)),
    field('driverObjects', driverObjectArray),
  ]),
  // Broker forwarding a RelayMessage to its destination. No reply.
  message('AcceptRelayedMessage', 67, 0, [
    field('source', nodeName),
    field('data', arrayOf(u8)),
    field('driverObjects', driverObjectArray),
  ]),
] as const;

/** One row of the node message table. */
export type NodeMessageSpec = (typeof nodeMessages)[number];

/** The name of a node message. */
export type NodeMessageName = NodeMessageSpec['name'];

type MessageObject<S> =
  S extends MessageSpec<infer N, infer F>
    ? { [K in keyof ({ type: N } & FieldsObject<F>)]: ({
        type: N;
      } & FieldsObject<F>)[K] }
    : never;

/** Any node message as a value, discriminated by `type`. */
export type NodeMessage = MessageObject<NodeMessageSpec>;

/** The node message named `N`. */
export type MessageOf<N extends NodeMessageName> = Extract<
  NodeMessage,
  { type: N }
>;
