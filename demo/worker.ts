/**
 * A demo worker node. It connects to the broker with `connectToParent`
 * (two initial portals: commands, and a data route to the broker) and
 * runs the JSON commands that `main.ts` sends on the command portal,
 * replying to each with one JSON parcel, in order.
 */

import type { Portal } from '../src/index';
import { connectToParent } from '../src/workers';
import { RouteEndpoint, type StreamPlan } from './route-endpoint';

/** Commands from the main thread to a demo worker. */
export type WorkerCommand =
  | { op: 'open-route' }
  | { op: 'stream'; route: 'broker' | 'moved'; plan: StreamPlan }
  | { op: 'send-file'; path: string }
  | { op: 'stats' }
  | { op: 'close' };

const { node, portals, delegateReady } = connectToParent();
const [commands, brokerRoute] = portals as [Portal, Portal];
const routes = {
  broker: new RouteEndpoint(node, brokerRoute),
  moved: null as RouteEndpoint | null,
};

function movedRoute(): RouteEndpoint {
  if (routes.moved === null) throw new Error('no moved route yet');
  return routes.moved;
}

async function run(command: WorkerCommand): Promise<unknown> {
  // A sandboxed node can allocate only once its delegate is connected.
  await delegateReady;
  switch (command.op) {
    case 'open-route': {
      const [local, remote] = node.openPortals();
      routes.moved = new RouteEndpoint(node, local);
      commands.put('route', [remote]);
      return { opened: true };
    }
    case 'stream': {
      const route = command.route === 'broker' ? routes.broker : movedRoute();
      return route.stream(command.plan);
    }
    case 'send-file':
      return { digest: await movedRoute().sendFile(command.path, () => {}) };
    case 'stats':
      return node.stats();
    case 'close':
      setImmediate(() => node.close());
      return { closing: true };
  }
}

// Commands run one at a time, in arrival order. A parcel carrying a portal
// is the far end of a route that another worker opened.
let queue = Promise.resolve();
commands.parcels$.subscribe((parcel) => {
  const route = parcel.handles[0];
  if (route !== undefined) {
    routes.moved = new RouteEndpoint(node, route as Portal);
    return;
  }
  const command = JSON.parse(parcel.text()) as WorkerCommand;
  queue = queue.then(async () => {
    try {
      const result = await run(command);
      commands.put(JSON.stringify({ ok: true, result }));
    } catch (error) {
      commands.put(JSON.stringify({ ok: false, error: String(error) }));
    }
  });
});
