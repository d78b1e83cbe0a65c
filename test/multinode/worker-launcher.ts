/**
 * Entry of a node worker in the multinode harness's worker modes. It
 * imports the scenario module named in `workerData`, looks up the node
 * body by name, creates the node on a worker_threads driver, connects it
 * (unless the spawn was raw), runs the body and reports the outcome on
 * its control port. The worker then stays up, keeping its node open as
 * in-process nodes stay open, until the main thread terminates it.
 */
import {
  isMainThread,
  MessageChannel,
  workerData,
  type MessagePort,
} from 'node:worker_threads';
import { createNode, type Node, type Portal } from '../../src/index';
import { createWorkerDriver, wrapPort } from '../../src/workers';
import {
  findNodeBody,
  setScenarioName,
  type DriverMode,
  type NodeContext,
  type SpawnOptions,
} from './harness';
import {
  recordBadMessages,
  startBodyWorker,
  toWorkerError,
  type ControlMessage,
  type NodeWorkerSpec,
} from './worker-nodes';

if (isMainThread) {
  throw new Error(
    'worker-launcher.ts runs inside node workers that the multinode ' +
      'harness starts; it is not a test file',
  );
}

const spec = workerData as NodeWorkerSpec;
const control = spec.control;

function post(message: ControlMessage, transfer: MessagePort[] = []): void {
  control.postMessage(message, transfer);
}

function reportFailure(error: unknown): void {
  post({ kind: 'failed', error: toWorkerError(error) });
}

// An error thrown outside the body's promise chain, say in a
// subscription, fails the scenario instead of ending the worker silently.
process.on('uncaughtException', reportFailure);
process.on('unhandledRejection', reportFailure);

let nestedCount = 0;

/**
 * Starts a non-broker child in a nested worker that `node` refers to its
 * broker, as the in-process `spawnReferred` does, and hands the child's
 * control port to the main thread.
 */
function spawnReferred(
  node: Node,
  bodyName: string,
  options: SpawnOptions = {},
): Portal[] {
  const count = options.portals ?? 1;
  nestedCount += 1;
  const label = `${spec.label}.${nestedCount}`;
  const channel = new MessageChannel();
  const portals = node.connect(wrapPort(channel.port1), {
    portals: count,
    shareBroker: true,
  });
  const raw = options.raw === true;
  const { control: childControl } = startBodyWorker(
    {
      moduleUrl: spec.moduleUrl,
      scenario: spec.scenario,
      bodyName,
      mode: spec.mode,
      label,
      broker: false,
      canAllocate: !spec.delegated,
      delegated: spec.delegated,
      transport: channel.port2,
      connect: raw
        ? null
        : {
            portals: options.childPortals ?? count,
            inheritBroker: true,
            allocationDelegate: spec.delegated,
          },
    },
    (error) => reportFailure(new Error(
      `nested worker ${label} failed: ${toWorkerError(error).message}`,
    )),
  );
  post({ kind: 'spawned', bodyName, label, control: childControl }, [
    childControl,
  ]);
  return portals;
}

async function runBody(): Promise<void> {
  setScenarioName(spec.scenario);
  await import(spec.moduleUrl);
  const body = findNodeBody(spec.moduleUrl, spec.bodyName);
  const node = createNode({
    driver: createWorkerDriver({ canAllocate: spec.canAllocate }),
    broker: spec.broker,
    label: spec.label,
  });
  const badMessages$ = recordBadMessages(node);
  const transport = wrapPort(spec.transport);
  const portals = spec.connect === null
    ? []
    : node.connect(transport, spec.connect);
  const ctx: NodeContext = {
    mode: spec.mode as DriverMode,
    node,
    portals,
    transport: spec.connect === null ? transport : null,
    badMessages$,
    spawnReferred: (name, options) => spawnReferred(node, name, options),
  };
  await body(ctx);
}

runBody().then(() => post({ kind: 'finished' }), reportFailure);
// The control port is referenced while it listens, so the worker, and
// with it the node, lives until the main thread terminates it.
control.on('message', () => {});
