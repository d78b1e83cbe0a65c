import { Observable, Subject } from 'rxjs';
import type { Driver, SharedMemory, Transport } from '../drivers/driver';
import { IpczError } from '../errors';
import { Channel } from '../link/channel';
import { NodeLink } from '../link/node-link';
import {
  NodeLinkMemory,
  PRIMARY_BUFFER_SIZE,
} from '../link/node-link-memory';
import { Box } from '../router/box';
import { openPortalPair, Portal } from '../router/portal';
import { RemoteRouterLink } from '../router/remote-router-link';
import {
  startSelfBypass,
  type ReductionContext,
} from '../router/route-reduction';
import { Router, type RouterRegistry } from '../router/router';
import type { EncodedMessage } from '../wire/codec';
import type { LinkSide, NodeType } from '../wire/messages';
import { NodeName } from '../wire/node-name';
import { AllocationDelegate } from './allocation-delegate';
import { dispatchNodeMessage } from './node-dispatch';
import {
  BrokerToBrokerConnector,
  BrokerToNonBrokerConnector,
  checkConnectOptions,
  NonBrokerToBrokerConnector,
  ReferredNonBrokerConnector,
  type ConnectOptions,
} from './node-connector';
import { Introductions } from './introductions';
import { Referrals } from './referrals';

export interface NodeOptions {
  driver: Driver;
  broker?: boolean;
  label?: string;
  /** Limits a node applies when it serves RequestMemory as a delegate. */
  memoryDelegation?: {
    /** Largest single request served, in bytes (default 256 MiB). */
    maxRequestBytes?: number;
    /** Bytes served per link over its lifetime (default 1 GiB). */
    maxBytesPerLink?: number;
  };
}

export interface NodeStats {
  links: number;
  routers: number;
  proxies: number;
  memoryRequestsSent: number;
  memoryRequestsServed: number;
  memoryRequestsRefused: number;
  directAllocations: number;
}

export interface BadMessage {
  remote: NodeName | null;
  reason: string;
}

interface LinkRoles {
  asBroker?: boolean;
  otherBroker?: boolean;
  delegate?: boolean;
  servesAllocation?: boolean;
}

interface CreateLinkParams {
  channel: Channel;
  memory: SharedMemory;
  initialize: boolean;
  remoteName: NodeName;
  remoteType: NodeType;
  remoteProtocolVersion: number;
  side: LinkSide;
}

const DEFAULT_MAX_REQUEST_BYTES = 256 * 1024 * 1024;
const DEFAULT_MAX_BYTES_PER_LINK = 1024 * 1024 * 1024;

/**
 * One ipcz node: it owns portals, links to other nodes and the choice of
 * where its shared memory comes from. A broker names the nodes that
 * connect to it and introduces them to each other.
 */
export class Node implements RouterRegistry, ReductionContext {
  readonly driver: Driver;
  readonly isBroker: boolean;
  readonly label: string;
  private nodeName: NodeName | null = null;

  private readonly links = new Map<string, NodeLink>();
  private brokerLinkValue: NodeLink | null = null;
  private readonly servedLinks = new Map<NodeLink, number>();
  private readonly routers = new Set<Router>();
  private readonly badMessages = new Subject<BadMessage>();
  private readonly counters = {
    memoryRequestsSent: 0,
    memoryRequestsServed: 0,
    memoryRequestsRefused: 0,
    directAllocations: 0,
  };
  private readonly delegate: AllocationDelegate;
  readonly referrals: Referrals;
  private readonly maxRequestBytes: number;
  private readonly maxBytesPerLink: number;
  private closed = false;
  /** Channels whose handshake has not finished; closed with the node. */
  private readonly handshakes = new Set<Channel>();

  constructor(options: NodeOptions) {
    this.driver = options.driver;
    this.isBroker = options.broker === true;
    this.label = options.label ?? (this.isBroker ? 'broker' : 'node');
    this.delegate = new AllocationDelegate(this.driver, this.counters);
    this.referrals = new Referrals(this);
    this.maxRequestBytes =
      options.memoryDelegation?.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    this.maxBytesPerLink =
      options.memoryDelegation?.maxBytesPerLink ?? DEFAULT_MAX_BYTES_PER_LINK;
    if (this.isBroker) this.nodeName = this.generateName();
  }

  /** This node's name: a broker names itself; others wait for a broker. */
  get name(): NodeName | null {
    return this.nodeName;
  }

  /** Emits each time a link is dropped for bad input or a parcel rejected. */
  get badMessages$(): Observable<BadMessage> {
    return this.badMessages.asObservable();
  }

  /** The delegate's node name, or null; replays the current value. */
  get allocationDelegate$(): Observable<NodeName | null> {
    return this.delegate.delegate$;
  }

  get brokerLink(): NodeLink | null {
    return this.brokerLinkValue;
  }

  /**
   * Connects to another node over `transport`. Returns the initial
   * portals at once; parcels put into them before the handshake ends are
   * delivered in order once it does.
   */
  connect(transport: Transport, options: ConnectOptions): Portal[] {
    this.requireOpen('connect');
    checkConnectOptions(options, this.isBroker);
    if (transport === null || typeof transport !== 'object') {
      throw new IpczError('INVALID_ARGUMENT', 'transport is required');
    }
    // The connector is made first: a broker allocates the link's memory
    // there, and a failure must throw before anything else changed.
    const routers: Router[] = [];
    const connector = options.shareBroker
      ? null
      : this.createConnector(transport, routers, options);
    for (let i = 0; i < options.portals; i++) routers.push(new Router(this));
    if (connector === null) {
      this.referrals.refer(transport, routers);
    } else {
      connector.start();
    }
    return routers.map((router) => new Portal(router));
  }

  openPortals(): [Portal, Portal] {
    this.requireOpen('openPortals');
    return openPortalPair(this);
  }

  /** Boxes a driver object or an application value. */
  box(contents: unknown): Box {
    this.requireOpen('box');
    if (contents === undefined) {
      throw new IpczError('INVALID_ARGUMENT', 'box contents are required');
    }
    const kind = (contents as { kind?: unknown } | null)?.kind;
    if (kind === 'memory' || kind === 'transport') {
      return new Box(contents as SharedMemory | Transport);
    }
    return new Box({ kind: 'application', value: contents });
  }

  /**
   * Allocates a shared memory region of at least `size` bytes, directly
   * or through the allocation delegate. Cold: nothing happens before
   * subscription. Errors with `PERMISSION_DENIED` when the driver cannot
   * allocate and there is no delegate, `RESOURCE_EXHAUSTED` when the
   * delegate refuses, and `UNAVAILABLE` when the delegate link is lost
   * first.
   */
  allocateSharedMemory(size: number): Observable<SharedMemory> {
    if (!Number.isSafeInteger(size) || size <= 0 || size > 0xffff_ffff) {
      throw new IpczError(
        'INVALID_ARGUMENT',
        `size must be an integer in [1, 2^32 - 1], got ${size}`,
      );
    }
    return this.delegate.allocate(size);
  }

  stats(): NodeStats {
    let proxies = 0;
    for (const router of this.routers) if (router.isProxy) proxies++;
    let links = 0;
    for (const link of this.links.values()) if (link.isActive) links++;
    return { links, routers: this.routers.size, proxies, ...this.counters };
  }

  /** Closes every link of the node; routes through it disconnect. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const links = [...this.links.values()];
    this.links.clear();
    for (const link of links) link.close('the node was closed');
    for (const channel of [...this.handshakes]) {
      channel.close('the node was closed');
    }
    for (const router of [...this.routers]) {
      router.acceptRouteDisconnectedFrom(null);
    }
    this.delegate.close();
    this.badMessages.complete();
  }

  // --- RouterRegistry and ReductionContext ---

  tryStartSelfBypass(router: Router): void {
    startSelfBypass(router);
  }

  establishLink(name: NodeName): Observable<NodeLink> {
    return Introductions.of(this).establishLink(name);
  }

  add(router: Router): void {
    this.routers.add(router);
  }

  remove(router: Router): void {
    this.routers.delete(router);
  }

  // --- Used by connectors, referrals and message handlers. ---

  generateName(): NodeName {
    for (;;) {
      const name = NodeName.fromBytes(this.driver.generateRandomBytes(16));
      if (name.isValid()) return name;
    }
  }

  requireName(): NodeName {
    if (this.nodeName === null) {
      throw new IpczError('FAILED_PRECONDITION', 'this node has no name yet');
    }
    return this.nodeName;
  }

  /** Takes the name a broker gave; later brokers' names are ignored. */
  assignName(name: NodeName): void {
    this.nodeName ??= name;
  }

  /** Allocates a link's primary buffer; only brokers do this. */
  allocatePrimaryBuffer(): SharedMemory {
    const memory = this.driver.allocateSharedMemory(PRIMARY_BUFFER_SIZE);
    this.counters.directAllocations++;
    return memory;
  }

  initializeLinkMemory(memory: SharedMemory): void {
    NodeLinkMemory.create(memory);
  }

  /** Builds a node link over a channel whose handshake just finished. */
  createLink(params: CreateLinkParams): NodeLink {
    let link: NodeLink | null = null;
    const memoryOptions = {
      allocate: (size: number) => this.allocateSharedMemory(size),
      shareBuffer: (id: bigint, blockSize: number, memory: SharedMemory) => {
        link?.send({
          type: 'AddBlockBuffer',
          id,
          blockSize,
          buffer: this.driver.duplicateSharedMemory(memory),
        });
      },
    };
    const memory = params.initialize
      ? NodeLinkMemory.create(params.memory, memoryOptions)
      : NodeLinkMemory.adopt(params.memory, memoryOptions);
    link = new NodeLink({
      channel: params.channel,
      memory,
      localName: this.requireName(),
      remoteName: params.remoteName,
      remoteType: params.remoteType,
      remoteProtocolVersion: params.remoteProtocolVersion,
      side: params.side,
    });
    return link;
  }

  /**
   * Keeps a channel whose handshake is running, so that closing the node
   * closes it too; it is forgotten once it becomes a link or ends.
   */
  trackHandshake(channel: Channel): void {
    this.handshakes.add(channel);
    channel.end$.subscribe(() => this.handshakes.delete(channel));
  }

  /** Registers a link and starts handling its messages. */
  addLink(link: NodeLink, roles: LinkRoles): void {
    this.handshakes.delete(link.channel);
    if (this.closed) {
      link.close('the node was closed');
      return;
    }
    const key = link.remoteName.toString();
    const existing = this.links.get(key);
    if (existing !== undefined && existing.isActive) {
      link.close('a link to this node already exists');
      return;
    }
    this.links.set(key, link);
    if (roles.asBroker && this.brokerLinkValue === null) {
      this.brokerLinkValue = link;
      this.referrals.onBrokerLink(link);
    }
    if (!this.isBroker) link.relay = (encoded) => this.relay(link, encoded);
    if (roles.servesAllocation) this.servedLinks.set(link, 0);
    if (roles.delegate) this.delegate.addCandidate(link);

    link.messages$.subscribe((message) => {
      link.counters.received++;
      try {
        dispatchNodeMessage(this, link, message);
      } catch (error) {
        link.reject(`handling ${message.type} failed: ${String(error)}`);
      }
    });
    link.end$.subscribe((end) => {
      if (this.links.get(key) === link) this.links.delete(key);
      this.servedLinks.delete(link);
      if (this.brokerLinkValue === link) this.brokerLinkValue = null;
      if (end.badMessage) this.reportBadMessage(link.remoteName, end.reason);
    });
  }

  /** Active links to other brokers. */
  otherBrokerLinks(): NodeLink[] {
    return [...this.links.values()].filter(
      (link) => link.isActive && link.remoteType === 'broker',
    );
  }

  getLink(name: NodeName): NodeLink | undefined {
    const link = this.links.get(name.toString());
    return link?.isActive ? link : undefined;
  }

  reportBadMessage(remote: NodeName | null, reason: string): void {
    this.badMessages.next({ remote, reason });
  }

  /** Binds initial portals to sublinks of a link that just connected. */
  bindInitialPortals(
    link: NodeLink,
    routers: Router[],
    remotePortals: number,
  ): void {
    const count = Math.min(routers.length, remotePortals);
    routers.forEach((router, index) => {
      if (index >= count) {
        router.markPeerClosed();
        return;
      }
      const state = link.memory.getInitialRouterLinkState(index);
      const remote = new RemoteRouterLink(
        link,
        BigInt(index),
        'central',
        link.side,
        router,
        state,
      );
      router.setOutwardLink(remote);
    });
  }

  /** Fails the initial portals of a connection whose handshake failed. */
  failInitialPortals(routers: Router[]): void {
    for (const router of routers) router.acceptRouteDisconnectedFrom(null);
  }

  /** Serves RequestMemory from a link whose remote chose this node. */
  serveMemoryRequest(link: NodeLink, size: number): void {
    const served = this.servedLinks.get(link);
    let memory: SharedMemory | null = null;
    if (
      served !== undefined &&
      size > 0 &&
      size <= this.maxRequestBytes &&
      served + size <= this.maxBytesPerLink
    ) {
      try {
        memory = this.driver.allocateSharedMemory(size);
        this.servedLinks.set(link, served + size);
        this.counters.memoryRequestsServed++;
      } catch {
        memory = null;
      }
    }
    if (memory === null) this.counters.memoryRequestsRefused++;
    link.send({ type: 'ProvideMemory', size, buffer: memory });
  }

  /** Sends a message through the broker when its objects cannot go direct. */
  private relay(link: NodeLink, encoded: EncodedMessage): boolean {
    const broker = this.brokerLinkValue;
    if (broker === null || broker === link || !broker.isActive) return false;
    broker.send({
      type: 'RelayMessage',
      destination: link.remoteName,
      data: encoded.data,
      driverObjects: encoded.objects,
    });
    return true;
  }

  private createConnector(
    transport: Transport,
    routers: Router[],
    options: ConnectOptions,
  ) {
    if (this.isBroker && !options.toBroker) {
      return new BrokerToNonBrokerConnector(this, transport, routers, options);
    }
    if (this.isBroker) {
      return new BrokerToBrokerConnector(this, transport, routers, options);
    }
    if (options.inheritBroker) {
      return new ReferredNonBrokerConnector(this, transport, routers, options);
    }
    return new NonBrokerToBrokerConnector(this, transport, routers, options);
  }

  private requireOpen(operation: string): void {
    if (this.closed) {
      throw new IpczError(
        'FAILED_PRECONDITION',
        `cannot ${operation}: node ${this.label} is closed`,
      );
    }
  }
}

