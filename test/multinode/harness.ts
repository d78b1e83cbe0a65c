/**
 * The multinode test harness, modelled on ipcz's MULTINODE_TEST. Each
 * scenario is registered once per driver mode (`Name/mode`). Its main body
 * runs on a broker, and every other node runs a named node body that
 * talks to the main body only through portals.
 *
 * Node bodies live in the test file itself, exported in a record, and the
 * suite is registered with the module's URL. Today every node runs in the
 * test's own thread, because the in-process launcher calls the body
 * directly. A worker-thread launcher can instead import the module by URL
 * and look the body up by name, so bodies must share state only through
 * portals.
 *
 * Environment: IPCZ_MODES, a comma-separated list of driver modes to run
 * (default: all of them).
 */
import { isMainThread } from 'node:worker_threads';
import {
  firstValueFrom,
  filter,
  first,
  map,
  ReplaySubject,
  take,
  toArray,
  type Observable,
} from 'rxjs';
import { suite } from 'uvu';
import {
  Box,
  createNode,
  drivers,
  IpczError,
  Portal,
  type BadMessage,
  type Driver,
  type Node,
  type Parcel,
  type PortalStatus,
  type Transport,
} from '../../src/index';

/** The driver setups every scenario runs under, as ipcz's test drivers. */
export const DRIVER_MODES = [
  'sync',
  'async',
  'async-forced-brokering',
  'async-delegated',
  'async-delegated-forced-brokering',
] as const;

export type DriverMode = (typeof DRIVER_MODES)[number];

/** Time limit of one scenario in one mode, teardown excluded. */
export const SCENARIO_TIMEOUT_MS = 20_000;

/** Time limit of one wait in the helpers below. */
export const WAIT_TIMEOUT_MS = 10_000;

/** Context of a node body: its node and its portals to the spawner. */
export interface NodeContext {
  readonly mode: DriverMode;
  readonly node: Node;
  /** Initial portals connected to the spawner; empty for a raw spawn. */
  readonly portals: Portal[];
  /**
   * The node's end of its transport to the spawner when it was spawned
   * with `raw: true`: the node is not connected, and the body may send
   * bytes on it or close it. `null` otherwise.
   */
  readonly transport: Transport | null;
  /** The node's `badMessages$`, replayed from the node's creation. */
  readonly badMessages$: Observable<BadMessage>;
  /**
   * Starts a non-broker child that this node refers to its broker
   * (ipcz's SHARE_BROKER here, INHERIT_BROKER in the child). Returns this
   * node's initial portals to the child; with `raw: true` the child does
   * not connect and gets the transport instead.
   */
  spawnReferred(bodyName: string, options?: SpawnOptions): Portal[];
}

/** A node body: runs on its own node, as if on a thread of its own. */
export type NodeBody = (ctx: NodeContext) => Promise<void>;

export interface SpawnOptions {
  /** Initial portals on the spawner's side (default 1). */
  portals?: number;
  /** Initial portals on the child's side (default: `portals`). */
  childPortals?: number;
  /**
   * Leaves the child unconnected: its body gets the raw transport in
   * `ctx.transport` and `ctx.portals` is empty.
   */
  raw?: boolean;
}

/** Context of a scenario's main body, which runs on the broker. */
export interface TestContext {
  readonly mode: DriverMode;
  /** The broker node that the main body runs on. */
  readonly node: Node;
  /** The broker's driver, for raw transports in connection tests. */
  readonly driver: Driver;
  /** Every node created so far in this scenario, the broker first. */
  readonly nodes: readonly Node[];
  /** The broker's `badMessages$`, replayed from the broker's creation. */
  readonly badMessages$: Observable<BadMessage>;
  /** Starts a non-broker node and connects it to the broker. */
  spawn(bodyName: string, options?: SpawnOptions): Portal[];
  /** Starts another broker node and connects the two brokers. */
  spawnBroker(bodyName: string, options?: SpawnOptions): Portal[];
  /**
   * Starts a non-broker node that connects to a transport which the
   * broker leaves unconnected, and returns that transport.
   */
  spawnWithTransport(bodyName: string, options?: SpawnOptions): Transport;
}

export type MainBody = (t: TestContext) => Promise<void>;

/** Registers scenarios of one suite; `run()` starts uvu. */
export interface MultinodeTest {
  (name: string, body: MainBody): void;
  run(): void;
}

/** Where a node body comes from, so another thread can find it. */
export interface NodeBodyReference {
  moduleUrl: string;
  bodyName: string;
}

let currentScenario = '(no scenario)';

/** Returns the scenario running now, as `Suite.Name/mode`. */
export function scenarioName(): string {
  return currentScenario;
}

/**
 * Creates the registration function of a multinode suite. `moduleUrl` is
 * the test file's `import.meta.url` and `nodes` its exported node bodies.
 * Each scenario is registered once per selected mode. Registration and
 * `run()` do nothing outside the main thread, so a worker that imports
 * the module for its node bodies runs no tests.
 */
export function multinodeSuite(
  suiteName: string,
  moduleUrl: string,
  nodes: Readonly<Record<string, NodeBody>>,
): MultinodeTest {
  const tests = suite(suiteName);
  const modes = selectedModes();
  const register = (name: string, body: MainBody) => {
    if (!isMainThread) return;
    for (const mode of modes) {
      const fullName = `${suiteName}.${name}/${mode}`;
      tests(`${name}/${mode}`, () =>
        runScenario(fullName, mode, body, (reference) => {
          if (reference.moduleUrl !== moduleUrl) {
            throw new Error(`node bodies of ${reference.moduleUrl} are not loaded`);
          }
          const nodeBody = nodes[reference.bodyName];
          if (nodeBody === undefined) {
            throw new Error(
              `no node body named ${reference.bodyName} in ${moduleUrl}`,
            );
          }
          return nodeBody;
        }, moduleUrl),
      );
    }
  };
  return Object.assign(register, {
    run: () => {
      if (isMainThread) tests.run();
    },
  });
}

function selectedModes(): DriverMode[] {
  const value = process.env.IPCZ_MODES;
  if (value === undefined || value.trim() === '') return [...DRIVER_MODES];
  const names = value.split(',').map((name) => name.trim());
  for (const name of names) {
    if (!(DRIVER_MODES as readonly string[]).includes(name)) {
      throw new Error(
        `IPCZ_MODES names unknown mode ${name}; valid modes are ` +
          DRIVER_MODES.join(', '),
      );
    }
  }
  return names as DriverMode[];
}

/** Creates the driver of a broker or non-broker node in `mode`. */
function createDriver(mode: DriverMode, broker: boolean): Driver {
  switch (mode) {
    case 'sync':
      return drivers.sync();
    case 'async':
      return drivers.async();
    case 'async-forced-brokering':
      return drivers.async({ forcedBrokering: true });
    case 'async-delegated':
      return drivers.async({ canAllocate: broker });
    case 'async-delegated-forced-brokering':
      return drivers.async({ canAllocate: broker, forcedBrokering: true });
  }
}

function isDelegated(mode: DriverMode): boolean {
  return mode.startsWith('async-delegated');
}

type ResolveBody = (reference: NodeBodyReference) => NodeBody;

/**
 * One run of a scenario: the nodes it made and the node bodies still
 * running. The first node body to fail fails the scenario at once, so a
 * main body waiting on that node does not sit out the timeout.
 */
class ScenarioRun {
  readonly nodes: Node[] = [];
  private readonly badMessages = new Map<Node, ReplaySubject<BadMessage>>();
  private readonly bodies: Promise<void>[] = [];
  private nodeCount = 0;
  private rejectFailure: (error: unknown) => void = () => {};
  readonly failure = new Promise<never>((_, reject) => {
    this.rejectFailure = reject;
  });

  constructor(
    readonly name: string,
    readonly mode: DriverMode,
    private readonly moduleUrl: string,
    private readonly resolveBody: ResolveBody,
  ) {
    // Keeps an unobserved failure from being reported as unhandled.
    this.failure.catch(() => {});
  }

  createNode(broker: boolean): Node {
    this.nodeCount += 1;
    const label = broker && this.nodeCount === 1
      ? 'broker'
      : `${broker ? 'broker' : 'node'}-${this.nodeCount}`;
    const node = createNode({
      driver: createDriver(this.mode, broker),
      broker,
      label,
    });
    this.nodes.push(node);
    // Recorded from the start, because a bad handshake can be rejected
    // before the node's body runs.
    const recorded = new ReplaySubject<BadMessage>();
    node.badMessages$.subscribe(recorded);
    this.badMessages.set(node, recorded);
    return node;
  }

  badMessagesOf(node: Node): Observable<BadMessage> {
    const recorded = this.badMessages.get(node);
    if (recorded === undefined) {
      throw new Error(`node ${node.label} was not made by this scenario`);
    }
    return recorded.asObservable();
  }

  /**
   * Starts `bodyName` on `node` in a later microtask, as a separate thread
   * would, and keeps its promise for the end of the scenario.
   */
  launch(
    bodyName: string,
    node: Node,
    portals: Portal[],
    transport: Transport | null,
  ): void {
    const body = this.resolveBody({ moduleUrl: this.moduleUrl, bodyName });
    const ctx: NodeContext = {
      mode: this.mode,
      node,
      portals,
      transport,
      badMessages$: this.badMessagesOf(node),
      spawnReferred: (name, options) => this.spawnReferred(node, name, options),
    };
    const running = Promise.resolve()
      .then(() => body(ctx))
      .catch((error: unknown) => {
        const wrapped = new Error(
          `node body ${bodyName} on ${node.label} failed: ${describe(error)}`,
        );
        wrapped.cause = error;
        this.rejectFailure(wrapped);
        throw wrapped;
      });
    running.catch(() => {});
    this.bodies.push(running);
  }

  spawn(
    bodyName: string,
    options: SpawnOptions,
    childIsBroker: boolean,
    broker: Node,
  ): Portal[] {
    const count = options.portals ?? 1;
    const child = this.createNode(childIsBroker);
    const [ours, theirs] = broker.driver.createTransports();
    const portals = broker.connect(ours, {
      portals: count,
      toBroker: childIsBroker,
    });
    this.startChild(bodyName, child, theirs, options, {
      portals: options.childPortals ?? count,
      toBroker: true,
      allocationDelegate: !childIsBroker && isDelegated(this.mode),
    });
    return portals;
  }

  spawnWithTransport(
    bodyName: string,
    options: SpawnOptions,
    broker: Node,
  ): Transport {
    const child = this.createNode(false);
    const [ours, theirs] = broker.driver.createTransports();
    this.startChild(bodyName, child, theirs, options, {
      portals: options.childPortals ?? options.portals ?? 1,
      toBroker: true,
      allocationDelegate: isDelegated(this.mode),
    });
    return ours;
  }

  /** Waits for every node body, failing on the first that fails. */
  async joinBodies(): Promise<void> {
    // Bodies may spawn more bodies while we wait, so loop until stable.
    let joined = 0;
    while (joined < this.bodies.length) {
      const pending = this.bodies.slice(joined);
      joined = this.bodies.length;
      await Promise.all(pending);
    }
  }

  closeAll(): void {
    for (const node of this.nodes) node.close();
  }

  private spawnReferred(
    referrer: Node,
    bodyName: string,
    options: SpawnOptions = {},
  ): Portal[] {
    const count = options.portals ?? 1;
    const child = this.createNode(false);
    const [ours, theirs] = referrer.driver.createTransports();
    const portals = referrer.connect(ours, {
      portals: count,
      shareBroker: true,
    });
    this.startChild(bodyName, child, theirs, options, {
      portals: options.childPortals ?? count,
      inheritBroker: true,
      allocationDelegate: isDelegated(this.mode),
    });
    return portals;
  }

  private startChild(
    bodyName: string,
    child: Node,
    transport: Transport,
    options: SpawnOptions,
    connectOptions: Parameters<Node['connect']>[1],
  ): void {
    if (options.raw === true) {
      this.launch(bodyName, child, [], transport);
      return;
    }
    const portals = child.connect(transport, connectOptions);
    this.launch(bodyName, child, portals, null);
  }
}

async function runScenario(
  name: string,
  mode: DriverMode,
  body: MainBody,
  resolveBody: ResolveBody,
  moduleUrl: string,
): Promise<void> {
  currentScenario = name;
  const run = new ScenarioRun(name, mode, moduleUrl, resolveBody);
  const broker = run.createNode(true);
  const t: TestContext = {
    mode,
    node: broker,
    driver: broker.driver,
    nodes: run.nodes,
    badMessages$: run.badMessagesOf(broker),
    spawn: (bodyName, options = {}) =>
      run.spawn(bodyName, options, false, broker),
    spawnBroker: (bodyName, options = {}) =>
      run.spawn(bodyName, options, true, broker),
    spawnWithTransport: (bodyName, options = {}) =>
      run.spawnWithTransport(bodyName, options, broker),
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(
        new Error(`${name} timed out after ${SCENARIO_TIMEOUT_MS / 1000} s`),
      );
    }, SCENARIO_TIMEOUT_MS);
  });
  try {
    await Promise.race([body(t), run.failure, timeout]);
    await Promise.race([run.joinBodies(), run.failure, timeout]);
  } finally {
    clearTimeout(timer);
    run.closeAll();
    currentScenario = '(no scenario)';
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Resolves with `promise`, or rejects after `ms` with a message naming the
 * scenario and `what` was awaited.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  what: string,
  ms = WAIT_TIMEOUT_MS,
): Promise<T> {
  const scenario = currentScenario;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${scenario}: timed out waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Waits for the next parcel on `portal` and takes it. Rejects when the
 * peer closes with nothing left to read, or after WAIT_TIMEOUT_MS; both
 * messages name `label` and the scenario.
 */
export async function waitToGet(
  portal: Portal,
  label = 'portal',
): Promise<Parcel> {
  await withTimeout(
    firstValueFrom(portal.trap({ aboveMinLocalParcels: 0, dead: true })),
    `a parcel on ${label}`,
  );
  try {
    return portal.get();
  } catch (error) {
    if (error instanceof IpczError && error.code === 'NOT_FOUND') {
      throw new Error(
        `${currentScenario}: the peer of ${label} closed before a parcel ` +
          'arrived',
      );
    }
    throw error;
  }
}

/**
 * Waits for the next parcel on `portal` and takes it, or resolves `null`
 * once the portal is dead. For loops that serve until the peer closes,
 * so it waits up to the whole scenario time limit.
 */
export async function nextParcelOrDead(
  portal: Portal,
  label = 'portal',
): Promise<Parcel | null> {
  await withTimeout(
    firstValueFrom(portal.trap({ aboveMinLocalParcels: 0, dead: true })),
    `a parcel or closure on ${label}`,
    SCENARIO_TIMEOUT_MS,
  );
  return portal.status().localParcels > 0 ? portal.get() : null;
}

/** Waits for the next parcel and returns its text. */
export async function waitToGetText(
  portal: Portal,
  label = 'portal',
): Promise<string> {
  return (await waitToGet(portal, label)).text();
}

/** Waits until `predicate` holds for the status of `portal`. */
export function waitForStatus(
  portal: Portal,
  predicate: (status: PortalStatus) => boolean,
  what = 'a status change',
): Promise<PortalStatus> {
  return withTimeout(
    firstValueFrom(portal.status$.pipe(filter(predicate), first())),
    what,
  );
}

/** Waits until the peer of `portal` is closed. */
export function waitForPeerClosed(
  portal: Portal,
  label = 'portal',
): Promise<PortalStatus> {
  return waitForStatus(
    portal,
    (status) => status.peerClosed,
    `peer closure on ${label}`,
  );
}

/** Waits until `portal` is dead: peer closed and every parcel read. */
export function waitForDead(
  portal: Portal,
  label = 'portal',
): Promise<PortalStatus> {
  return waitForStatus(portal, (status) => status.dead, `${label} to die`);
}

/**
 * Puts an empty parcel and waits for one from the peer; both ends call it,
 * as ipcz's PingPong.
 */
export async function pingPong(portal: Portal, label = 'portal'): Promise<void> {
  portal.put();
  const parcel = await waitToGet(portal, label);
  if (parcel.data.byteLength !== 0) {
    throw new Error(
      `${currentScenario}: pingPong on ${label} got ${parcel.data.byteLength}` +
        ' bytes, expected an empty parcel',
    );
  }
}

const END_TO_END_MESSAGE = 'Ping!!!';

/**
 * Puts a fixed message and checks that the peer sent the same one; both
 * ends call it, as ipcz's VerifyEndToEnd.
 */
export async function verifyEndToEnd(
  portal: Portal,
  label = 'portal',
): Promise<void> {
  portal.put(END_TO_END_MESSAGE);
  const text = await waitToGetText(portal, label);
  if (text !== END_TO_END_MESSAGE) {
    throw new Error(
      `${currentScenario}: ${label} got ${JSON.stringify(text)}, expected ` +
        JSON.stringify(END_TO_END_MESSAGE),
    );
  }
}

/** Returns the `index`th handle of `parcel` as a portal, or throws. */
export function portalAt(parcel: Parcel, index = 0): Portal {
  const handle = parcel.handles[index];
  if (!(handle instanceof Portal)) {
    throw new Error(
      `${currentScenario}: parcel handle ${index} is not a portal`,
    );
  }
  return handle;
}

/** Returns the `index`th handle of `parcel` as a box, or throws. */
export function boxAt(parcel: Parcel, index = 0): Box {
  const handle = parcel.handles[index];
  if (!(handle instanceof Box)) {
    throw new Error(`${currentScenario}: parcel handle ${index} is not a box`);
  }
  return handle;
}

/**
 * Activates a raw transport that no node uses and resolves with the
 * reason given when it fails (its peer closed or rejected it). Messages
 * that arrive on it are accepted and ignored.
 */
export function waitForTransportError(
  driver: Driver,
  transport: Transport,
  label = 'raw transport',
): Promise<string> {
  const failed = new Promise<string>((resolve) => {
    driver.activateTransport(
      transport,
      {
        onMessage: () => true,
        onError: (reason) => resolve(reason),
        onDeactivated: () => {},
      },
      { isBroker: false },
    );
  });
  return withTimeout(failed, `an error on ${label}`);
}

/** Bytes that no node accepts as a message. */
export const GARBAGE = new Uint8Array([0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);

/**
 * Takes the next `count` parcels from `portal` through `parcels$` and
 * returns their texts in arrival order. Rejects when the peer closes
 * first or after `ms`.
 */
export function receiveTexts(
  portal: Portal,
  count: number,
  label = 'portal',
  ms = WAIT_TIMEOUT_MS,
): Promise<string[]> {
  const texts = firstValueFrom(
    portal.parcels$.pipe(
      map((parcel) => parcel.text()),
      take(count),
      toArray(),
      filter((all) => {
        if (all.length === count) return true;
        throw new Error(
          `${currentScenario}: the peer of ${label} closed after ` +
            `${all.length} of ${count} parcels`,
        );
      }),
    ),
  );
  return withTimeout(texts, `${count} parcels on ${label}`, ms);
}

/** Returns the first index where `actual` differs from `expected`, or -1. */
export function firstMismatch(
  actual: readonly string[],
  expected: readonly string[],
): number {
  const length = Math.max(actual.length, expected.length);
  for (let i = 0; i < length; i++) {
    if (actual[i] !== expected[i]) return i;
  }
  return -1;
}

/** Returns `${prefix}${i}` for each i in [0, count). */
export function numbered(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${i}`);
}

/** Calls `action` and checks that it throws an IpczError with `code`. */
export function expectIpczError(
  action: () => unknown,
  code: IpczError['code'],
  what: string,
): void {
  try {
    action();
  } catch (error) {
    if (error instanceof IpczError && error.code === code) return;
    throw new Error(
      `${currentScenario}: ${what} threw ${describe(error)}, expected ` +
        `IpczError ${code}`,
    );
  }
  throw new Error(
    `${currentScenario}: ${what} returned, expected IpczError ${code}`,
  );
}
