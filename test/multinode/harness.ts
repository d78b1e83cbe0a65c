/**
 * The multinode test harness, modelled on ipcz's MULTINODE_TEST. Each
 * scenario is registered once per driver mode (`Name/mode`). Its main body
 * runs on a broker, and every other node runs a named node body that
 * talks to the main body only through portals.
 *
 * Node bodies live in the test file itself, exported in a record, and the
 * suite is registered with the module's URL. In the in-process modes the
 * harness calls a body directly on the test's own thread. In the worker
 * modes each spawned node runs in a worker_threads worker of its own:
 * worker-launcher.ts imports the module by URL there and looks the body
 * up by name. So bodies share state only through portals, and a scenario
 * whose main body reads other nodes' objects (`t.nodes`) declares that it
 * runs only in the in-process modes.
 *
 * Environment: IPCZ_MODES, a comma-separated list of driver modes to run
 * (default: all of them).
 */
import { isMainThread, MessageChannel, type Worker } from 'node:worker_threads';
import {
  firstValueFrom,
  filter,
  first,
  map,
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
  type ConnectOptions,
  type Driver,
  type Node,
  type Parcel,
  type PortalStatus,
  type Transport,
} from '../../src/index';
import { createWorkerDriver, wrapPort } from '../../src/workers';
import {
  recordBadMessages,
  RemoteBody,
  startBodyWorker,
} from './worker-nodes';

/**
 * The modes whose nodes all run on the test's thread, with the
 * in-process drivers, as ipcz's test drivers.
 */
export const IN_PROCESS_MODES = [
  'sync',
  'async',
  'async-forced-brokering',
  'async-delegated',
  'async-delegated-forced-brokering',
] as const;

/**
 * The modes whose spawned nodes each run in a worker_threads worker, with
 * the worker_threads driver; the broker stays on the test's thread. In
 * 'workers-delegated' every non-broker node is sandboxed (`canAllocate:
 * false`) and delegates allocation to the node it connects to.
 */
export const WORKER_MODES = ['workers', 'workers-delegated'] as const;

/** Every driver setup a scenario can run under. */
export const DRIVER_MODES = [...IN_PROCESS_MODES, ...WORKER_MODES] as const;

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
   * not connect and gets the transport instead. In the worker modes the
   * child runs in a worker nested in this node's worker.
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
  /**
   * Every node created so far in this scenario, the broker first. Only
   * the in-process modes have it: reading it in a worker mode throws,
   * because the other nodes live on other threads.
   */
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

/** Options of one scenario. */
export interface ScenarioOptions {
  /**
   * The modes the scenario supports (default: all). IPCZ_MODES narrows
   * them further. A scenario whose main body reads other nodes' objects
   * lists IN_PROCESS_MODES here.
   */
  modes?: readonly DriverMode[];
}

/** Registers scenarios of one suite; `run()` starts uvu. */
export interface MultinodeTest {
  (name: string, body: MainBody): void;
  (name: string, options: ScenarioOptions, body: MainBody): void;
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
 * Sets the scenario name that messages on this thread give. The worker
 * launcher calls it, because a worker runs one body of one scenario.
 */
export function setScenarioName(name: string): void {
  currentScenario = name;
}

/** Node bodies of every suite this thread loaded, by module URL. */
const nodeBodies = new Map<string, Readonly<Record<string, NodeBody>>>();

/**
 * Returns the node body `bodyName` of the suite that `moduleUrl`
 * registered on this thread, or throws when there is none.
 */
export function findNodeBody(moduleUrl: string, bodyName: string): NodeBody {
  const bodies = nodeBodies.get(moduleUrl);
  if (bodies === undefined) {
    throw new Error(
      `node bodies of ${moduleUrl} are not loaded: the module must call ` +
        'multinodeSuite with its own import.meta.url',
    );
  }
  const body = bodies[bodyName];
  if (body === undefined) {
    throw new Error(`no node body named ${bodyName} in ${moduleUrl}`);
  }
  return body;
}

/**
 * Creates the registration function of a multinode suite. `moduleUrl` is
 * the test file's `import.meta.url` and `nodes` its exported node bodies.
 * Each scenario is registered once per selected mode that it supports.
 * Registration and `run()` do nothing outside the main thread, so a
 * worker that imports the module for its node bodies runs no tests. The
 * node bodies are recorded on every thread.
 */
export function multinodeSuite(
  suiteName: string,
  moduleUrl: string,
  nodes: Readonly<Record<string, NodeBody>>,
): MultinodeTest {
  nodeBodies.set(moduleUrl, nodes);
  const tests = isMainThread ? suite(suiteName) : null;
  const selected = selectedModes();
  function register(name: string, body: MainBody): void;
  function register(
    name: string,
    options: ScenarioOptions,
    body: MainBody,
  ): void;
  function register(
    name: string,
    optionsOrBody: ScenarioOptions | MainBody,
    maybeBody?: MainBody,
  ): void {
    if (tests === null) return;
    const [options, body] = typeof optionsOrBody === 'function'
      ? [{}, optionsOrBody]
      : [optionsOrBody, maybeBody];
    if (body === undefined) {
      throw new Error(`scenario ${suiteName}.${name} has no main body`);
    }
    const supported = options.modes ?? DRIVER_MODES;
    for (const mode of selected) {
      if (!supported.includes(mode)) continue;
      const fullName = `${suiteName}.${name}/${mode}`;
      tests(`${name}/${mode}`, () =>
        runScenario(fullName, mode, body, moduleUrl),
      );
    }
  }
  return Object.assign(register, {
    run: () => {
      tests?.run();
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

/** Tells whether `mode` runs spawned nodes in workers. */
export function isWorkerMode(mode: DriverMode): boolean {
  return (WORKER_MODES as readonly string[]).includes(mode);
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
    case 'workers':
      return createWorkerDriver();
    case 'workers-delegated':
      return createWorkerDriver({ canAllocate: broker });
  }
}

/** Tells whether non-broker nodes in `mode` delegate allocation. */
function isDelegated(mode: DriverMode): boolean {
  return mode.includes('delegated');
}

/**
 * One run of a scenario: the nodes it made and the node bodies still
 * running, on this thread or in workers. The first node body to fail
 * fails the scenario at once, so a main body waiting on that node does
 * not sit out the timeout.
 */
class ScenarioRun {
  /** The nodes on this thread, which in worker modes are the brokers. */
  readonly nodes: Node[] = [];
  private readonly badMessages = new Map<Node, Observable<BadMessage>>();
  private readonly bodies: Promise<void>[] = [];
  private readonly workers: Worker[] = [];
  private readonly remoteBodies: RemoteBody[] = [];
  private nodeCount = 0;
  private rejectFailure: (error: unknown) => void = () => {};
  readonly failure = new Promise<never>((_, reject) => {
    this.rejectFailure = reject;
  });

  constructor(
    readonly name: string,
    readonly mode: DriverMode,
    private readonly moduleUrl: string,
  ) {
    // Keeps an unobserved failure from being reported as unhandled.
    this.failure.catch(() => {});
  }

  get inWorkers(): boolean {
    return isWorkerMode(this.mode);
  }

  /** Returns the label of the next node, counting every node spawned. */
  nextLabel(broker: boolean): string {
    this.nodeCount += 1;
    if (broker && this.nodeCount === 1) return 'broker';
    return `${broker ? 'broker' : 'node'}-${this.nodeCount}`;
  }

  createNode(broker: boolean, label = this.nextLabel(broker)): Node {
    const node = createNode({
      driver: createDriver(this.mode, broker),
      broker,
      label,
    });
    this.nodes.push(node);
    this.badMessages.set(node, recordBadMessages(node));
    return node;
  }

  badMessagesOf(node: Node): Observable<BadMessage> {
    const recorded = this.badMessages.get(node);
    if (recorded === undefined) {
      throw new Error(`node ${node.label} was not made by this scenario`);
    }
    return recorded;
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
    const body = findNodeBody(this.moduleUrl, bodyName);
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
    const [ours, theirs] = this.createTransports(broker);
    const portals = broker.connect(ours, {
      portals: count,
      toBroker: childIsBroker,
    });
    this.startChild(bodyName, childIsBroker, theirs, options, {
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
    const [ours, theirs] = this.createTransports(broker);
    this.startChild(bodyName, false, theirs, options, {
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

  /**
   * Closes every node on this thread and terminates every worker, also
   * after a failure or a timeout. Nested workers end with the worker
   * that started them.
   */
  async tearDown(): Promise<void> {
    for (const node of this.nodes) node.close();
    for (const remote of this.remoteBodies) remote.stop();
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  /**
   * Creates a transport pair on the broker's driver. In the worker modes
   * the second end is the MessagePort that goes to the child's worker.
   */
  private createTransports(broker: Node): [Transport, Transport | WorkerEnd] {
    if (!this.inWorkers) return broker.driver.createTransports();
    const channel = new MessageChannel();
    return [wrapPort(channel.port1), { port: channel.port2 }];
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
    this.connectAndLaunch(bodyName, child, theirs, options, {
      portals: options.childPortals ?? count,
      inheritBroker: true,
      allocationDelegate: isDelegated(this.mode),
    });
    return portals;
  }

  /** Starts a spawned child on this thread or in a worker. */
  private startChild(
    bodyName: string,
    childIsBroker: boolean,
    transport: Transport | WorkerEnd,
    options: SpawnOptions,
    connectOptions: ConnectOptions,
  ): void {
    if ('port' in transport) {
      this.startWorker(bodyName, childIsBroker, transport, options,
        connectOptions);
      return;
    }
    const child = this.createNode(childIsBroker);
    this.connectAndLaunch(bodyName, child, transport, options,
      connectOptions);
  }

  private connectAndLaunch(
    bodyName: string,
    child: Node,
    transport: Transport,
    options: SpawnOptions,
    connectOptions: ConnectOptions,
  ): void {
    if (options.raw === true) {
      this.launch(bodyName, child, [], transport);
      return;
    }
    const portals = child.connect(transport, connectOptions);
    this.launch(bodyName, child, portals, null);
  }

  private startWorker(
    bodyName: string,
    childIsBroker: boolean,
    transport: WorkerEnd,
    options: SpawnOptions,
    connectOptions: ConnectOptions,
  ): void {
    const label = this.nextLabel(childIsBroker);
    const delegated = isDelegated(this.mode);
    let remote: RemoteBody | undefined;
    const { worker, control } = startBodyWorker(
      {
        moduleUrl: this.moduleUrl,
        scenario: this.name,
        bodyName,
        mode: this.mode,
        label,
        broker: childIsBroker,
        canAllocate: childIsBroker || !delegated,
        delegated,
        transport: transport.port,
        connect: options.raw === true ? null : connectOptions,
      },
      (error) => remote?.fail(error),
    );
    this.workers.push(worker);
    remote = this.watch(bodyName, label, control);
  }

  /** Follows a body in a worker, and the bodies its node spawns. */
  private watch(
    bodyName: string,
    label: string,
    control: WorkerEnd['port'],
  ): RemoteBody {
    const remote = new RemoteBody(bodyName, label, control, {
      onSpawned: (childBody, childLabel, childControl) => {
        this.watch(childBody, childLabel, childControl);
      },
      onFailure: (error) => this.rejectFailure(error),
    });
    this.remoteBodies.push(remote);
    this.bodies.push(remote.done);
    return remote;
  }
}

/** The end of a transport pair that goes to a worker, as a bare port. */
interface WorkerEnd {
  port: MessageChannel['port2'];
}

/**
 * Runs one scenario in one mode and tears it down, as a registered
 * scenario runs under uvu. Exported for tests of the harness itself,
 * which check how a scenario fails.
 */
export async function runScenario(
  name: string,
  mode: DriverMode,
  body: MainBody,
  moduleUrl: string,
): Promise<void> {
  currentScenario = name;
  const run = new ScenarioRun(name, mode, moduleUrl);
  const broker = run.createNode(true);
  const t: TestContext = {
    mode,
    node: broker,
    driver: broker.driver,
    get nodes(): readonly Node[] {
      if (run.inWorkers) {
        throw new Error(
          `${name}: t.nodes is not available in the worker modes, because ` +
            'spawned nodes live in workers; register the scenario with ' +
            '{ modes: IN_PROCESS_MODES }',
        );
      }
      return run.nodes;
    },
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
    await run.tearDown();
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
